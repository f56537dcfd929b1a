"""Policies, agents and settings are sealed under the owner's key (issue 13, hole 10).

Reproduced before: with no key at all, editing `policies.source` in the database file raised the
per-transaction cap from 0.01 to 10 ETH and the server signed 5 ETH; keyed `audit verify` said ok.
The same kind of edit re-activated a paused agent, switched pause-all off, and swapped an
agent's token hash for one the attacker holds. Each is refused now with INTEGRITY_ERROR, while
the owner's brakes (pause, revoke, pause-all) still work with the vault locked.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from pathlib import Path

import httpx

from keysafe.policy.rules import parse_policy
from tests.conftest import Cli
from tests.e2e.server_fixture import (
    R1,
    STANDARD_POLICY,
    agent_headers,
    cli_env,
    error_of,
    evm_tx,
    keysafe_server,
)

ETH = 10**18
# What someone who can write the file (not the owner) puts in place of the bot's policy.
GREEDY_POLICY = STANDARD_POLICY.replace('max_per_tx: {ETH: "0.01"}', 'max_per_tx: {ETH: "10"}')
GREEDY_POLICY = GREEDY_POLICY.replace('approve_above: {ETH: "0.005"}', 'approve_above: {ETH: "10"}')
GREEDY_POLICY = GREEDY_POLICY.replace('max: {ETH: "1"}', 'max: {ETH: "100"}')


def _db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "vault.db", isolation_level=None)


def _edit(home: Path, sql: str, *params: object) -> None:
    con = _db(home)
    try:
        con.execute(sql, params)
    finally:
        con.close()


def _sign(url: str, token: str, value: int, nonce: int = 0) -> httpx.Response:
    body = {"wallet": "main", "transaction": evm_tx(value, to=R1, nonce=nonce)}
    return httpx.post(
        f"{url}/v1/agent/sign-transaction", json=body, headers=agent_headers(token), timeout=30
    )


def test_attack_edited_policy_is_refused_and_audit_verify_says_so(
    standard_home: tuple[Path, str], tmp_path: Path
) -> None:
    path, token = standard_home
    greedy = parse_policy(GREEDY_POLICY)
    _edit(
        path,
        "UPDATE policies SET source = ?, digest = ? WHERE agent = 'bot'",
        GREEDY_POLICY,
        greedy.digest(),
    )
    env = cli_env(path)
    with keysafe_server(env, "--unlock", log_dir=tmp_path) as server:
        r = _sign(server.url, token, 5 * ETH)
        assert r.status_code >= 400, f"5 ETH was signed under an edited policy: {r.text}"
        err = error_of(r)
        assert err["code"] == "INTEGRITY_ERROR", err
        assert "policy" in err["message"] and "bot" in err["message"]
        # What the agent is told it may do comes from the same sealed rows.
        caps = httpx.get(f"{server.url}/v1/agent/capabilities", headers=agent_headers(token))
        assert error_of(caps)["code"] == "INTEGRITY_ERROR"
    cli = Cli(path, env)
    verify = cli("audit", "verify", "--json")
    assert verify.exit_code == 1
    state = json.loads(verify.stdout)["state"]
    assert [(s["table"], s["key"], s["state"]) for s in state] == [("policies", "bot", "broken")]
    # An edited row never travels in a backup, and review never seals it.
    backup = cli("backup", "create", str(tmp_path / "b.ksbackup"))
    assert backup.exit_code != 0 and "INTEGRITY_ERROR" in backup.stderr + backup.stdout
    assert not (tmp_path / "b.ksbackup").exists()
    assert cli("agent", "seal", "--yes").exit_code == 1
    # Setting the policy again (with the key) is the way back.
    policy = tmp_path / "policy.yaml"
    policy.write_text(STANDARD_POLICY, encoding="utf-8")
    cli.ok("policy", "set", "bot", str(policy))
    assert json.loads(cli.ok("audit", "verify", "--json").stdout)["state"] == []


def test_attack_unpause_and_pause_all_off_by_editing_the_file(
    standard_home: tuple[Path, str], tmp_path: Path
) -> None:
    path, token = standard_home
    env = cli_env(path)
    cli = Cli(path, env)  # the owner's CLI works beside the running server (same files)
    with keysafe_server(env, "--unlock", log_dir=tmp_path) as server:
        cli.ok("agent", "pause", "bot")
        _edit(path, "UPDATE agents SET status = 'active' WHERE name = 'bot'")
        r = _sign(server.url, token, ETH // 1000)
        assert r.status_code >= 400, f"signed for an agent the owner paused: {r.text}"
        assert error_of(r)["code"] == "INTEGRITY_ERROR", r.text
        cli.ok("agent", "revoke", "bot")  # the owner's way out: revoking works on any row

        other = json.loads(cli.ok("agent", "add", "bot2", "--json").stdout)["token"]
        policy = tmp_path / "policy.yaml"
        policy.write_text(STANDARD_POLICY, encoding="utf-8")
        cli.ok("policy", "set", "bot2", str(policy))
        for sql in (
            "UPDATE settings SET value = '0' WHERE key = 'paused_all'",
            "DELETE FROM settings WHERE key = 'paused_all'",
        ):
            cli.ok("pause-all")
            _edit(path, sql)
            r = _sign(server.url, other, ETH // 1000)
            assert r.status_code >= 400, f"signed under pause-all after `{sql}`: {r.text}"
            assert error_of(r)["code"] == "INTEGRITY_ERROR", r.text
        # Review: the deleted switch comes back ON, never off.
        cli.ok("agent", "seal", "--yes")
        r = _sign(server.url, other, ETH // 1000)
        assert r.status_code == 403 and "PAUSED_ALL" in r.text, r.text
        cli.ok("resume-all")
        assert _sign(server.url, other, ETH // 1000).status_code == 200


def test_attack_swapped_token_hash_does_not_authenticate(
    standard_home: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = standard_home
    mine = "ks_agent_" + secrets.token_urlsafe(32)
    _edit(
        path,
        "UPDATE agents SET token_hash = ? WHERE name = 'bot'",
        hashlib.sha256(mine.encode()).hexdigest(),
    )
    with keysafe_server(cli_env(path), "--unlock", log_dir=tmp_path) as server:
        r = _sign(server.url, mine, ETH // 1000)
        assert r.status_code >= 400, f"a token written into the file signed: {r.text}"
        assert error_of(r)["code"] == "INTEGRITY_ERROR", r.text
        # A row copied from another agent does not verify either (the seal names the row).
        con = _db(path)
        try:
            mac = con.execute("SELECT mac FROM agents WHERE name = 'signer'").fetchone()[0]
        finally:
            con.close()
        _edit(path, "UPDATE agents SET mac = ? WHERE name = 'bot'", mac)
        assert error_of(_sign(server.url, mine, ETH // 1000))["code"] == "INTEGRITY_ERROR"


def test_locked_vault_still_takes_the_owners_brakes(
    standard_home: tuple[Path, str], tmp_path: Path
) -> None:
    path, token = standard_home
    with keysafe_server(cli_env(path), log_dir=tmp_path) as server:
        session = server.login()  # unlocks
        owner = {"authorization": f"Bearer {session}"}
        locked = httpx.post(f"{server.url}/v1/owner/lock", headers=owner, timeout=30)
        assert locked.status_code == 200, locked.text
        paused = httpx.post(f"{server.url}/v1/owner/agents/bot/pause", headers=owner, timeout=30)
        assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text
        resumed = httpx.post(f"{server.url}/v1/owner/agents/bot/resume", headers=owner, timeout=30)
        assert error_of(resumed)["code"] == "VAULT_LOCKED"
        server.login()  # unlocks again: the unsealed pause is honoured, not refused as tampering
        r = _sign(server.url, token, ETH // 1000)
        assert r.status_code == 403 and "AGENT_PAUSED" in r.text, r.text
        resumed = httpx.post(f"{server.url}/v1/owner/agents/bot/resume", headers=owner, timeout=30)
        assert resumed.status_code == 200, resumed.text
        assert _sign(server.url, token, ETH // 1000).status_code == 200


def test_vault_from_before_the_seals_is_reviewed_then_served(
    standard_home: tuple[Path, str], tmp_path: Path
) -> None:
    """A vault at schema 0006 (no seals): after the upgrade nothing permissive is used until the
    owner has seen it and sealed it; then everything works as before."""
    path, token = standard_home
    con = _db(path)
    try:
        con.execute("DELETE FROM settings WHERE key = 'paused_all'")
        for table in ("agents", "policies", "settings"):
            con.execute(f"ALTER TABLE {table} DROP COLUMN mac")
        con.execute("DROP TABLE ledger_totals")  # 0008 came after
        con.execute("UPDATE alembic_version SET version_num = '0006'")
    finally:
        con.close()
    env = cli_env(path)
    cli = Cli(path, env)
    with keysafe_server(env, "--unlock", log_dir=tmp_path) as server:  # migrates to the head
        err = error_of(_sign(server.url, token, ETH // 1000))
        assert err["code"] == "INTEGRITY_ERROR" and "keysafe agent seal" in err["next"], err
        listed = json.loads(cli.ok("agent", "seal", "--json").stdout)
        assert listed["sealed"] == 0
        assert {(r["table"], r["key"], r["state"]) for r in listed["rows"]} == {
            ("agents", "bot", "unsealed"),
            ("agents", "signer", "unsealed"),
            ("policies", "bot", "unsealed"),
            ("policies", "signer", "unsealed"),
            ("settings", "paused_all", "unsealed"),
        }
        sealed = cli.ok("agent", "seal", "--yes")
        assert "Sealed 5 row(s)." in sealed.stdout
        assert _sign(server.url, token, ETH // 1000).status_code == 200
    verify = json.loads(cli.ok("audit", "verify", "--json").stdout)
    assert verify["ok"] is True and verify["state"] == []
    assert any(e["action"] == "state.seal" for e in json.loads(cli.ok("audit", "--json").stdout))
