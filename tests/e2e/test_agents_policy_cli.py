"""Black-box CLI: `keysafe agent …`, `pause-all`/`resume-all`, `policy set|show|lint|check`,
`chain add`, `asset add`.

One pristine vault with agent `bot` under the example policy is built per xdist worker (module
fixture); read-only tests use it directly, tests that change state work on a private copy. That
keeps the number of keysafe subprocesses small (each costs about a second).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSPHRASE, Cli, Result
from tests.policy_examples import example_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_POLICY = REPO / "examples" / "policy.yaml"
R1 = "0x1111111111111111111111111111111111111111"
MONDAY_9AM = "2026-11-23T09:00:00Z"
SATURDAY_9AM = "2026-11-28T09:00:00Z"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
DAI_ON_BASE = "0x50c5725949A6F0c72E6C4a641F24049A917DB0Cb"

LINT_ERRORS = """\
version: 1
rules:
  - name: bad-chain
    allow: [evm.transfer]
    wallets: [main]
    chains: [no-such-chain]
    assets: [ETH]
  - name: bad-action
    allow: [evm.teleport]
    wallets: [main]
    chains: [base]
"""

LINT_WARNINGS_ONLY = """\
version: 1
rules:
  - name: never-asks
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
    assets: [ETH]
    max_per_tx: {ETH: "0.01"}
    approve_above: {ETH: "0.02"}
"""


def _env(home: Path) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")} | {
        "KEYSAFE_HOME": str(home),
        "KEYSAFE_PASSPHRASE": PASSPHRASE,
    }


@dataclass
class Pristine:
    cli: Cli
    added: dict[str, Any]  # `agent add bot --policy example --json`
    files: Path


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    root = tmp_path_factory.mktemp("agents-cli")
    home = root / "home"
    cli = Cli(home, _env(home))
    cli.ok("init", "--json")
    full = root / "example-full.yaml"  # the example with its optional parts switched on
    full.write_text(example_text(), encoding="utf-8")
    added = json.loads(cli.ok("agent", "add", "bot", "--policy", str(full), "--json").stdout)
    return Pristine(cli, added, root)


@pytest.fixture
def copy(pristine: Pristine, tmp_path: Path) -> Cli:
    """A CLI on a private copy of the pristine vault, free to change."""
    home = tmp_path / "home"
    shutil.copytree(pristine.cli.home, home)
    os.chmod(home, 0o700)
    return Cli(home, _env(home))


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _request(**fields: Any) -> str:
    return json.dumps(
        {"action": "evm.transfer", "chain": "base", "wallet": "main", "to": R1, "time": MONDAY_9AM}
        | fields
    )


def _check(cli: Cli, tmp_path: Path, request: str, agent: str = "bot") -> Result:
    path = _write(tmp_path, "request.json", request)
    return cli("policy", "check", agent, str(path), "--json")


def _agents(cli: Cli) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in json.loads(cli.ok("agent", "list", "--json").stdout)}


def _db_rows(home: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(home / "vault.db")) as conn:
        return conn.execute(sql).fetchall()


# -- agent add / list / rotate -------------------------------------------------------------------


def test_agent_add_with_policy_json_prints_token_and_policy_hash(pristine: Pristine) -> None:
    a = pristine.added
    assert a["token"].startswith("ks_agent_")
    assert len(a["token"]) > len("ks_agent_") + 32
    assert HEX64.match(a["policy_hash"])
    assert (a["name"], a["status"], a["auth"], a["last_seen"]) == ("bot", "active", "token", None)


def test_agent_add_mcp_config_prints_only_the_json_entry_on_stdout(copy: Cli) -> None:
    stdio = copy.ok("agent", "add", "desk", "--mcp-config")
    entry = json.loads(stdio.stdout)["mcpServers"]["keysafe"]  # stdout is the JSON, nothing else
    assert entry["args"] == ["mcp"] and entry["env"]["KEYSAFE_AGENT_TOKEN"].startswith("ks_agent_")
    assert "added" in stdio.stderr and "ks_agent_" not in stdio.stderr
    http = copy.ok("agent", "add", "remote-desk", "--mcp-config", "http")
    entry = json.loads(http.stdout)["mcpServers"]["keysafe"]
    assert entry["type"] == "http" and entry["url"] == "http://127.0.0.1:8422/mcp"
    assert entry["headers"]["Authorization"].startswith("Bearer ks_agent_")
    wrong = copy("agent", "add", "other", "--mcp-config", "sse")  # a usage error: no agent made
    assert wrong.exit_code == 2 and "sse" in wrong.stderr, wrong.stderr
    assert "other" not in {a["name"] for a in json.loads(copy.ok("agent", "list", "--json").stdout)}


def test_agent_list_json_has_every_field_and_never_the_token(pristine: Pristine) -> None:
    r = pristine.cli.ok("agent", "list", "--json")
    (bot,) = json.loads(r.stdout)
    assert set(bot) == {"name", "status", "created_at", "last_seen", "policy_hash", "auth"}
    assert bot["name"] == "bot"
    assert bot["status"] == "active"
    assert bot["policy_hash"] == pristine.added["policy_hash"]
    assert bot["auth"] == "token"
    assert bot["last_seen"] is None
    assert bot["created_at"] == pristine.added["created_at"]
    assert pristine.added["token"] not in r.stdout + r.stderr


def test_policy_show_json_hash_matches_agent_and_source_is_the_file(pristine: Pristine) -> None:
    shown = json.loads(pristine.cli.ok("policy", "show", "bot", "--json").stdout)
    assert shown["agent"] == "bot"
    assert shown["hash"] == pristine.added["policy_hash"]
    assert shown["source"] == example_text()


def test_agent_rotate_token_prints_a_different_token(copy: Cli, pristine: Pristine) -> None:
    out = json.loads(copy.ok("agent", "rotate-token", "bot", "--json").stdout)
    assert out["name"] == "bot"
    assert out["token"].startswith("ks_agent_")
    assert out["token"] != pristine.added["token"]
    hashes = [r[0] for r in _db_rows(copy.home, "SELECT token_hash FROM agents")]
    assert pristine.added["token"] not in hashes and out["token"] not in hashes


def test_agent_pause_resume_revoke_reflected_in_list_and_revoke_is_final(
    copy: Cli, tmp_path: Path
) -> None:
    allowed = _request(asset="USDC", amount="5")
    assert "paused" in copy.ok("agent", "pause", "bot").stdout
    assert _agents(copy)["bot"]["status"] == "paused"
    paused = _check(copy, tmp_path, allowed)
    assert paused.exit_code == 4
    assert json.loads(paused.stdout)["code"] == "AGENT_PAUSED"

    copy.ok("agent", "resume", "bot")
    assert _check(copy, tmp_path, allowed).exit_code == 0

    copy.ok("agent", "revoke", "bot")
    bot = _agents(copy)["bot"]
    assert bot["status"] == "revoked"
    again = copy("agent", "resume", "bot")
    assert again.exit_code == 1
    assert "revoked" in again.stderr
    assert _agents(copy)["bot"]["status"] == "revoked"


def test_pause_all_denies_with_paused_all_and_resume_all_lifts_it(
    copy: Cli, tmp_path: Path
) -> None:
    allowed = _request(asset="USDC", amount="5")
    copy.ok("pause-all")
    r = _check(copy, tmp_path, allowed)
    assert r.exit_code == 4
    assert (json.loads(r.stdout)["decision"], json.loads(r.stdout)["code"]) == (
        "deny",
        "PAUSED_ALL",
    )
    copy.ok("resume-all")
    assert _check(copy, tmp_path, allowed).exit_code == 0


def test_agent_add_policy_with_lint_errors_exit_1_and_no_agent_created(
    copy: Cli, tmp_path: Path
) -> None:
    bad = _write(tmp_path, "bad.yaml", LINT_ERRORS)
    r = copy("agent", "add", "badbot", "--policy", str(bad), "--json")
    assert r.exit_code == 1
    assert "MALFORMED_REQUEST" in r.stderr
    assert "ks_agent_" not in r.stdout + r.stderr
    assert set(_agents(copy)) == {"bot"}


# -- policy lint -------------------------------------------------------------------------------


def test_policy_lint_example_exit_0_with_no_errors(keysafe: Cli) -> None:
    r = keysafe("policy", "lint", str(EXAMPLE_POLICY))
    assert r.exit_code == 0, r.stderr
    assert "0 errors" in r.stdout
    assert "ok to set" in r.stdout


def test_policy_lint_errors_exit_1_naming_each_error(keysafe: Cli, tmp_path: Path) -> None:
    r = keysafe("policy", "lint", str(_write(tmp_path, "bad.yaml", LINT_ERRORS)))
    assert r.exit_code == 1
    assert "2 errors" in r.stdout
    assert "no-such-chain" in r.stdout
    assert "evm.teleport" in r.stdout


def test_policy_lint_errors_json_lists_rules_and_ok_false(keysafe: Cli, tmp_path: Path) -> None:
    r = keysafe("policy", "lint", str(_write(tmp_path, "bad.yaml", LINT_ERRORS)), "--json")
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert report["ok"] is False
    assert {e["rule"] for e in report["errors"]} == {"bad-chain", "bad-action"}
    assert all(e["level"] == "error" for e in report["errors"])


def test_policy_lint_warnings_only_exit_0_and_prints_warning(keysafe: Cli, tmp_path: Path) -> None:
    r = keysafe("policy", "lint", str(_write(tmp_path, "warn.yaml", LINT_WARNINGS_ONLY)))
    assert r.exit_code == 0, r.stderr
    assert "warning" in r.stdout
    assert "never-asks" in r.stdout
    assert "0 errors, 1 warnings" in r.stdout


UNSCOPED_SIGNING = """\
version: 1
rules:
  - name: any-wallet
    allow: [evm.transfer]
    chains: [base]
    max_per_tx: {ETH: "0.01"}
"""


def test_policy_lint_signing_rule_without_wallets_exit_1(keysafe: Cli, tmp_path: Path) -> None:
    r = keysafe("policy", "lint", str(_write(tmp_path, "unscoped.yaml", UNSCOPED_SIGNING)))
    assert r.exit_code == 1
    assert "any-wallet" in r.stdout
    assert "wallets:" in r.stdout


def test_policy_set_signing_rule_without_wallets_refused(copy: Cli, tmp_path: Path) -> None:
    before = _agents(copy)["bot"]["policy_hash"]
    r = copy("policy", "set", "bot", str(_write(tmp_path, "unscoped.yaml", UNSCOPED_SIGNING)))
    assert r.exit_code == 1
    assert "MALFORMED_REQUEST" in r.stderr and "any-wallet" in r.stderr
    assert _agents(copy)["bot"]["policy_hash"] == before


def test_policy_lint_in_a_vault_warns_about_a_wallet_it_does_not_hold(copy: Cli) -> None:
    r = copy("policy", "lint", str(EXAMPLE_POLICY), "--json")
    assert r.exit_code == 0, r.stderr
    warnings = json.loads(r.stdout)["warnings"]
    assert {
        w["rule"] for w in warnings if "wallet 'main' is not in this vault" in w["message"]
    } == {
        "pay-small-on-base",
        "sign-in-with-ethereum",
        "contract-calls-need-a-human",
    }
    copy.ok("wallet", "create", "main", "--chain", "evm")
    r = copy("policy", "lint", str(EXAMPLE_POLICY), "--json")
    assert [w for w in json.loads(r.stdout)["warnings"] if "in this vault" in w["message"]] == []


# -- policy check --------------------------------------------------------------------------------

CASES = [
    pytest.param(
        _request(asset="USDC", amount="12.5"),
        3,
        "ask",
        "APPROVAL_REQUIRED",
        "pay-small-on-base",
        id="ask-12.5-usdc",
    ),
    pytest.param(
        _request(asset="USDC", amount="30"),
        4,
        "deny",
        "OVER_PER_TX_LIMIT",
        "pay-small-on-base",
        id="deny-30-usdc-over-per-tx",
    ),
    pytest.param(
        _request(asset="NOPE", amount="1"),
        4,
        "deny",
        "UNKNOWN_ASSET",
        None,
        id="deny-unknown-asset",
    ),
    pytest.param(
        _request(chain="atlantis", asset="ETH", amount="0.001"),
        4,
        "deny",
        "UNKNOWN_CHAIN",
        None,
        id="deny-unknown-chain",
    ),
    pytest.param(
        _request(action="evm.teleport", asset="ETH", amount="0.001"),
        4,
        "deny",
        "UNKNOWN_ACTION",
        None,
        id="deny-unknown-action",
    ),
    pytest.param(
        _request(asset="USDC", amount="5", time=SATURDAY_9AM),
        4,
        "deny",
        "POLICY_DENIED",
        "business-hours-only",
        id="deny-outside-hours",
    ),
    pytest.param(
        _request(asset="USDC", amount="5", to="0x" + "3" * 40),
        4,
        "deny",
        "NO_MATCHING_RULE",
        None,
        id="deny-other-recipient",
    ),
    pytest.param(
        _request(asset="USDC", amount="5", wallet="other"),
        4,
        "deny",
        "NO_MATCHING_RULE",
        None,
        id="deny-wallet-no-rule-names",
    ),
    pytest.param(
        _request(asset="USDC", amount="5", wallet=None),
        4,
        "deny",
        "NO_MATCHING_RULE",
        None,
        id="deny-no-wallet-named",
    ),
]


@pytest.mark.parametrize("request_json,exit_code,decision,code,rule", CASES)
def test_policy_check_ask_or_deny_exit_code_and_json_decision(
    pristine: Pristine,
    tmp_path: Path,
    request_json: str,
    exit_code: int,
    decision: str,
    code: str,
    rule: str | None,
) -> None:
    r = _check(pristine.cli, tmp_path, request_json)
    assert r.exit_code == exit_code, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"decision", "rule", "code", "reason", "windows"}
    assert (out["decision"], out["code"], out["rule"]) == (decision, code, rule)
    assert out["reason"]


def test_policy_check_allowed_5_usdc_exit_0_json_shows_rule_and_windows(
    pristine: Pristine, tmp_path: Path
) -> None:
    r = _check(pristine.cli, tmp_path, _request(asset="USDC", amount="5"))
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["decision"], out["code"], out["rule"]) == ("allow", None, "pay-small-on-base")
    assert {
        "rule": "pay-small-on-base",
        "window": "24h",
        "kind": "amount",
        "asset": "USDC",
        "limit": "100",
        "used": "0",
        "requested": "5",
        "left": "100",
        "after": "95",
        "ok": True,
    } in out["windows"]
    assert {
        "rule": "pay-small-on-base",
        "window": "1h",
        "kind": "count",
        "asset": None,
        "limit": "10",
        "used": "0",
        "requested": "1",
        "left": "10",
        "after": "9",
        "ok": True,
    } in out["windows"]


def test_policy_check_from_stdin_dash_allowed(pristine: Pristine) -> None:
    r = pristine.cli(
        "policy", "check", "bot", "-", "--json", input=_request(asset="USDC", amount="5")
    )
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["decision"] == "allow"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"action": "evm.transfer", "chain": ', id="not-json"),
        pytest.param('{"chain": "base", "extra_field": 1}', id="no-action-extra-field"),
    ],
)
def test_policy_check_malformed_request_file_exit_1(
    pristine: Pristine, tmp_path: Path, body: str
) -> None:
    r = _check(pristine.cli, tmp_path, body)
    assert r.exit_code == 1
    assert "MALFORMED_REQUEST" in r.stderr
    assert r.stdout.strip() == ""


def test_policy_check_reserves_and_records_nothing(copy: Cli, tmp_path: Path) -> None:
    audit_before = _db_rows(copy.home, "SELECT count(*) FROM audit")
    allowed = _request(asset="USDC", amount="5")
    for _ in range(2):
        assert _check(copy, tmp_path, allowed).exit_code == 0
    assert _db_rows(copy.home, "SELECT * FROM ledger") == []
    assert _db_rows(copy.home, "SELECT * FROM idempotency") == []
    assert _db_rows(copy.home, "SELECT count(*) FROM audit") == audit_before


# -- policy set audit ----------------------------------------------------------------------------


def test_policy_set_audited_with_policy_hash_and_diff(copy: Cli, tmp_path: Path) -> None:
    text = example_text()
    changed = text.replace(
        'max_per_tx: {ETH: "0.01", USDC: "25"}', 'max_per_tx: {ETH: "0.01", USDC: "20"}'
    )
    assert changed != text
    changed = re.sub(
        r"  - name: sign-in-with-ethereum\n.*?\n(?=  - name:)", "", changed, flags=re.S
    )
    changed = changed.replace(
        "expires:",
        "  - name: read-profile\n    allow: [data.read]\n    data: [profile]\nexpires:",
    )
    path = _write(tmp_path, "v2.yaml", changed)
    out = copy.ok("policy", "set", "bot", str(path)).stdout
    assert "set for agent 'bot'" in out

    entries = json.loads(copy.ok("audit", "--json").stdout)
    sets = [e for e in entries if e["action"] == "policy.set"]
    assert len(sets) == 2
    first, second = (e["details"] for e in sets)
    assert HEX64.match(first["policy_hash"]) and HEX64.match(second["policy_hash"])
    assert first["previous_hash"] is None
    assert second["previous_hash"] == first["policy_hash"]
    assert second["policy_hash"] != first["policy_hash"]
    assert "pay-small-on-base" in first["diff"]["added"]
    assert second["diff"] == {
        "added": ["read-profile"],
        "removed": ["sign-in-with-ethereum"],
        "changed": ["pay-small-on-base"],
    }
    assert sets[1]["target"] == "agent:bot"
    assert _agents(copy)["bot"]["policy_hash"] == second["policy_hash"]


# -- registry --------------------------------------------------------------------------------------


def test_chain_add_then_policy_naming_it_lints_clean(copy: Cli, tmp_path: Path) -> None:
    policy = _write(
        tmp_path,
        "arb.yaml",
        "version: 1\nrules:\n  - name: arb-small\n    allow: [evm.transfer]\n"
        "    wallets: [main]\n"
        '    chains: [arbitrum]\n    assets: [ETH]\n    max_per_tx: {ETH: "0.01"}\n',
    )
    before = copy("policy", "lint", str(policy))
    assert before.exit_code == 1
    assert "arbitrum" in before.stdout
    copy.ok("chain", "add", "arbitrum", "--chain-id", "42161", "--rpc", "https://arb1.example.org")
    after = copy("policy", "lint", str(policy))
    assert after.exit_code == 0, after.stdout
    assert "0 errors" in after.stdout


def test_asset_add_then_policy_check_with_that_asset(copy: Cli, tmp_path: Path) -> None:
    copy.ok("asset", "add", "DAI", "--chain", "base", "--address", DAI_ON_BASE, "--decimals", "18")
    policy = _write(
        tmp_path,
        "dai.yaml",
        f"version: 1\nrules:\n  - name: dai-small\n    allow: [evm.transfer]\n    wallets: [main]\n"
        f"    chains: [base]\n"
        f'    assets: [DAI]\n    recipients: ["{R1}"]\n    max_per_tx: {{DAI: "10"}}\n',
    )
    copy.ok("policy", "set", "bot", str(policy))
    ok = _check(copy, tmp_path, _request(asset="DAI", amount="5"))
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["rule"] == "dai-small"
    over = _check(copy, tmp_path, _request(asset="DAI", amount="10.000000000000000001"))
    assert over.exit_code == 4
    assert json.loads(over.stdout)["code"] == "OVER_PER_TX_LIMIT"


def test_chain_add_max_fee_is_listed_and_caps_the_fee(copy: Cli, tmp_path: Path) -> None:
    listed = {c["name"]: c for c in json.loads(copy.ok("chain", "list", "--json").stdout)}
    assert (listed["ethereum"]["max_fee"], listed["base"]["max_fee"]) == ("0.05", "0.01")
    request = _request(asset="ETH", amount="0.001", fee="0.0002")
    before = _check(copy, tmp_path, request)
    assert json.loads(before.stdout)["code"] != "FEE_TOO_HIGH", before.stdout

    added = copy.ok("chain", "add", "base", "--chain-id", "8453", "--max-fee", "0.0001")
    assert "fee ceiling 0.0001 ETH" in added.stdout
    listed = {c["name"]: c for c in json.loads(copy.ok("chain", "list", "--json").stdout)}
    assert listed["base"]["max_fee"] == "0.0001"
    assert "0.0001 ETH" in copy.ok("chain", "list").stdout
    after = _check(copy, tmp_path, request)
    assert after.exit_code == 4
    assert json.loads(after.stdout)["code"] == "FEE_TOO_HIGH"
    # Changing the RPC alone keeps the ceiling the owner set.
    copy.ok("chain", "add", "base", "--chain-id", "8453", "--rpc", "https://base.example.org")
    listed = {c["name"]: c for c in json.loads(copy.ok("chain", "list", "--json").stdout)}
    assert (listed["base"]["max_fee"], listed["base"]["rpc"]) == (
        "0.0001",
        "https://base.example.org",
    )

    bad = copy("chain", "add", "base", "--chain-id", "8453", "--max-fee", "lots")
    assert bad.exit_code == 1
    assert "MALFORMED_REQUEST" in bad.stderr
