"""Black-box tests of the everyday `keysafe` commands: init, status, credentials, data, wallets,
passphrase change, help and usage errors.

Every CLI call is a real subprocess (Python start-up plus Argon2id, about a second), so the tests
share one initialised vault per module: `vault` copies that vault directory (modes preserved)
into each test's own KEYSAFE_HOME instead of running `keysafe init` again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from eth_utils import is_checksum_address
from mnemonic import Mnemonic
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from tests.conftest import HARDHAT_ADDRESS_0, PASSPHRASE, Cli, Result, shared_once

HARDHAT_KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
NEW_PASSPHRASE = "a brand new passphrase for the vault"
CANARY = "canary-sk-3f9c1e7a5b2d4c6e8f0a"
WORDLIST = frozenset(Mnemonic("english").wordlist)

STATUS_FIELDS = {
    "initialized",
    "home",
    "vault_id",
    "created_at",
    "credentials",
    "data",
    "wallets",
    "audit_entries",
    "audit_head",
    "unlock_failures",
}
CREDENTIAL_FIELDS = {"name", "hosts", "attach", "created_at", "updated_at"}
DATA_FIELDS = {"name", "class", "format", "fields", "created_at", "updated_at"}
WALLET_FIELDS = {"name", "chain", "address", "source", "index", "created_at"}


# -- helpers -------------------------------------------------------------------------------------


def cli_at(home: Path) -> Cli:
    """A Cli like the `keysafe` fixture's, bound to `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    return Cli(home, env | {"KEYSAFE_HOME": str(home), "KEYSAFE_PASSPHRASE": PASSPHRASE})


def assert_user_error(r: Result, code: str) -> str:
    """Exit 1 and exactly one stderr line `Error [CODE]: … Next: …`, no traceback. Returns it."""
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert r.exit_code == 1, f"exit {r.exit_code}: {r.stderr}{r.stdout}"
    assert r.stderr.endswith("\n") and r.stderr.count("\n") == 1, repr(r.stderr)
    line = r.stderr.rstrip("\n")
    assert line.startswith(f"Error [{code}]:"), line
    assert "Next:" in line, line
    return line


def assert_usage_error(r: Result) -> None:
    assert r.exit_code == 2, f"exit {r.exit_code}: {r.stderr}{r.stdout}"
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert "Usage:" in r.stderr, r.stderr


def as_json(r: Result) -> Any:
    return json.loads(r.stdout)


def home_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.iterdir()) if p.is_file())


def assert_valid_phrase(phrase: str) -> list[str]:
    words = phrase.split()
    assert len(words) == 24, phrase
    assert all(w in WORDLIST for w in words), phrase
    assert Mnemonic("english").check(phrase), "BIP-39 checksum does not match"
    return words


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_vault(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One freshly initialised vault for the whole run, and its `init --json` output."""

    def build(root: Path) -> dict[str, Any]:
        return as_json(cli_at(root / "home").ok("init", "--json"))

    root, init = shared_once(tmp_path_factory, "keysafe-test-cli-vault", build)
    return root / "home", init


@pytest.fixture
def vault_template(shared_vault: tuple[Path, dict[str, Any]]) -> Path:
    return shared_vault[0]


@pytest.fixture
def vault(keysafe: Cli, vault_template: Path) -> Cli:
    """Overrides conftest's `vault`: a copy of one freshly initialised vault (same files, modes)."""
    shutil.copytree(vault_template, keysafe.home)
    return keysafe


# -- init and status -----------------------------------------------------------------------------


def test_status_on_missing_home_reports_uninitialized_without_creating_it(keysafe: Cli) -> None:
    st = as_json(keysafe.ok("status", "--json"))
    assert st == {"initialized": False, "home": str(keysafe.home)}
    text = keysafe.ok("status").stdout
    assert "keysafe init" in text
    assert not keysafe.home.exists()


def test_init_json_gives_hex_vault_id_and_valid_24_word_phrase_matching_status(
    keysafe: Cli,
) -> None:
    out = as_json(keysafe.ok("init", "--json"))
    assert set(out) == {"vault_id", "recovery_phrase"}
    assert re.fullmatch(r"[0-9a-f]{32}", out["vault_id"]), out["vault_id"]
    assert_valid_phrase(out["recovery_phrase"])

    st = as_json(keysafe.ok("status", "--json"))
    assert set(st) >= STATUS_FIELDS
    assert st["initialized"] is True
    assert st["vault_id"] == out["vault_id"]
    assert st["home"] == str(keysafe.home)
    assert (st["credentials"], st["data"], st["wallets"], st["unlock_failures"]) == (0, 0, 0, 0)
    assert st["audit_entries"] >= 1
    assert re.fullmatch(r"[0-9a-f]{64}", st["audit_head"])
    # Shown once: never stored in the clear, never repeated by status.
    assert out["recovery_phrase"] not in json.dumps(st)
    assert out["recovery_phrase"].encode() not in home_bytes(keysafe.home)


def test_init_text_shows_vault_id_and_numbered_phrase_different_per_vault(
    keysafe: Cli, shared_vault: tuple[Path, dict[str, Any]]
) -> None:
    r = keysafe.ok("init")
    m = re.search(r"Vault ([0-9a-f]{32}) created", r.stdout)
    assert m, r.stdout
    numbered = re.findall(r"(\d+)\. ([a-z]+)", r.stdout)
    assert [int(n) for n, _ in numbered] == list(range(1, 25)), r.stdout
    words = assert_valid_phrase(" ".join(w for _, w in numbered))
    assert "keysafe recover" in r.stdout

    other = shared_vault[1]  # another vault, made by `init --json`
    assert other["vault_id"] != m.group(1)
    assert other["recovery_phrase"].split() != words


def test_init_on_existing_vault_is_refused_with_one_line(vault: Cli) -> None:
    db = vault.home / "vault.db"
    before = db.read_bytes()
    r = vault("init", "--json")
    line = assert_user_error(r, "ALREADY_EXISTS")
    assert str(vault.home) in line
    assert r.stdout == ""  # no new recovery phrase is shown
    assert db.read_bytes() == before


def test_init_with_too_short_passphrase_is_refused_and_creates_no_vault(keysafe: Cli) -> None:
    r = keysafe("init", env={"KEYSAFE_PASSPHRASE": "short"})
    assert_user_error(r, "MALFORMED_REQUEST")
    assert not (keysafe.home / "vault.db").exists()


# -- credentials ---------------------------------------------------------------------------------


def test_credential_add_list_remove_roundtrip_never_shows_the_secret(vault: Cli) -> None:
    added = as_json(
        vault.ok(
            "credential",
            "add",
            "github",
            "--host",
            "api.github.com",
            "--header",
            "Authorization: Bearer {secret}",
            "--json",
            input=CANARY,
        )
    )
    assert set(added) >= CREDENTIAL_FIELDS
    listed = as_json(vault.ok("credential", "list", "--json"))
    assert isinstance(listed, list) and len(listed) == 1
    cred = listed[0]
    assert set(cred) >= CREDENTIAL_FIELDS
    assert cred["name"] == "github"
    assert cred["hosts"] == ["api.github.com"]
    assert cred["attach"] == {
        "type": "header",
        "name": "Authorization",
        "template": "Bearer {secret}",
    }
    assert cred == added

    vault.ok("credential", "remove", "github")
    assert as_json(vault.ok("credential", "list", "--json")) == []
    assert_user_error(vault("credential", "remove", "github"), "NOT_FOUND")

    for output in vault.outputs:
        assert CANARY not in output
    assert CANARY.encode() not in home_bytes(vault.home)


def test_credential_add_duplicate_name_is_refused(vault: Cli) -> None:
    args = ("credential", "add", "gh", "--host", "api.github.com", "--bearer")
    vault.ok(*args, input="first-secret")
    line = assert_user_error(vault(*args, input="second-secret"), "ALREADY_EXISTS")
    assert "gh" in line
    assert "second-secret" not in line


def test_credential_add_without_host_is_a_usage_error(keysafe: Cli) -> None:
    r = keysafe("credential", "add", "gh", "--bearer", input="s3cret")
    assert_usage_error(r)
    assert "--host" in r.stderr


@pytest.mark.parametrize(
    "template",
    ["Authorization: Bearer", "Bearer {secret}"],
    ids=["no-secret-placeholder", "no-header-name"],
)
def test_credential_add_bad_header_template_is_refused(vault: Cli, template: str) -> None:
    r = vault(
        "credential",
        "add",
        "gh",
        "--host",
        "api.github.com",
        "--header",
        template,
        input="s3cret-value",
    )
    line = assert_user_error(r, "MALFORMED_REQUEST")
    assert "{secret}" in line


# -- data ----------------------------------------------------------------------------------------


def test_data_set_json_and_text_then_list_shows_class_format_and_fields(vault: Cli) -> None:
    secret_email = "owner-canary@example.com"
    vault.ok(
        "data",
        "set",
        "profile",
        "--class",
        "sensitive",
        input=json.dumps({"email": secret_email, "name": "Ada"}),
    )
    vault.ok("data", "set", "note", input="a plain text note, canary-text-77\n")
    listed = as_json(vault.ok("data", "list", "--json"))
    assert all(set(d) >= DATA_FIELDS for d in listed)
    by_name = {d["name"]: d for d in listed}
    assert set(by_name) == {"profile", "note"}
    assert by_name["profile"]["class"] == "sensitive"
    assert by_name["profile"]["format"] == "json"
    assert by_name["profile"]["fields"] == ["email", "name"]
    assert by_name["note"]["class"] == "standard"
    assert by_name["note"]["format"] == "text"
    assert by_name["note"]["fields"] == []
    for output in vault.outputs:
        assert secret_email not in output
        assert "canary-text-77" not in output


def test_data_set_critical_class_is_refused(vault: Cli) -> None:
    r = vault("data", "set", "seed", "--class", "critical", input="x")
    assert_user_error(r, "MALFORMED_REQUEST")


# -- wallets -------------------------------------------------------------------------------------


def test_wallet_create_evm_and_solana_json_shapes_then_list_matches(vault: Cli) -> None:
    evm = as_json(vault.ok("wallet", "create", "main", "--chain", "evm", "--json"))
    assert set(evm) == {"name", "chain", "address"}
    assert (evm["name"], evm["chain"]) == ("main", "evm")
    assert is_checksum_address(evm["address"]), evm["address"]

    sol = as_json(vault.ok("wallet", "create", "sol", "--chain", "solana", "--json"))
    assert set(sol) == {"name", "chain", "address"}
    assert (sol["name"], sol["chain"]) == ("sol", "solana")
    assert str(Pubkey.from_string(sol["address"])) == sol["address"]

    listed = as_json(vault.ok("wallet", "list", "--json"))
    assert all(set(w) >= WALLET_FIELDS for w in listed)
    by_name = {w["name"]: w for w in listed}
    assert by_name["main"]["address"] == evm["address"]
    assert by_name["sol"]["address"] == sol["address"]
    assert by_name["main"]["source"] == by_name["sol"]["source"] == "derived"
    assert by_name["main"]["index"] == by_name["sol"]["index"] == 0


def test_wallet_create_duplicate_name_is_refused(vault: Cli) -> None:
    vault.ok("wallet", "create", "w", "--chain", "evm")
    line = assert_user_error(vault("wallet", "create", "w", "--chain", "solana"), "ALREADY_EXISTS")
    assert "'w'" in line


def test_wallet_duplicate_error_suggests_a_command_that_exists(vault: Cli) -> None:
    vault.ok("wallet", "create", "w", "--chain", "evm")
    line = assert_user_error(vault("wallet", "create", "w", "--chain", "evm"), "ALREADY_EXISTS")
    assert "choose another name" in line
    suggested = re.findall(r"`keysafe ([a-z ]+?)(?: w)?`", line)
    for command in suggested:
        r = invoke_in_process([*command.split(), "--help"], vault.home.parent / "nohome")
        assert r.exit_code == 0, f"`keysafe {command}` does not exist: {r.output}"


def test_wallet_import_hardhat_key_gives_known_address(vault: Cli) -> None:
    out = as_json(
        vault.ok("wallet", "import", "hh", "--chain", "evm", "--json", input=HARDHAT_KEY_0 + "\n")
    )
    assert out == {"name": "hh", "chain": "evm", "address": HARDHAT_ADDRESS_0}
    listed = as_json(vault.ok("wallet", "list", "--json"))
    assert [(w["name"], w["address"], w["source"], w["index"]) for w in listed] == [
        ("hh", HARDHAT_ADDRESS_0, "imported", None)
    ]
    key_hex = HARDHAT_KEY_0[2:]
    for output in vault.outputs:
        assert key_hex not in output.lower()
    assert key_hex.encode() not in home_bytes(vault.home).lower()


def test_wallet_import_solana_base58_keypair_gives_its_pubkey(vault: Cli) -> None:
    kp = Keypair()
    out = as_json(vault.ok("wallet", "import", "ph", "--chain", "solana", "--json", input=str(kp)))
    assert out == {"name": "ph", "chain": "solana", "address": str(kp.pubkey())}
    for output in vault.outputs:
        assert str(kp) not in output


def test_wallet_import_invalid_key_is_refused_without_echoing_it(vault: Cli) -> None:
    bad = "0x" + "zz" * 32
    line = assert_user_error(
        vault("wallet", "import", "bad", "--chain", "evm", input=bad), "MALFORMED_REQUEST"
    )
    assert bad not in line


# -- passphrase change ---------------------------------------------------------------------------


def test_passphrase_change_old_stops_working_and_new_works(vault: Cli) -> None:
    vault.ok("passphrase", "change", env={"KEYSAFE_NEW_PASSPHRASE": NEW_PASSPHRASE})
    assert_user_error(vault("wallet", "list"), "WRONG_PASSPHRASE")
    vault.ok("wallet", "list", "--json", env={"KEYSAFE_PASSPHRASE": NEW_PASSPHRASE})


def test_passphrase_change_without_new_passphrase_is_refused(vault: Cli) -> None:
    line = assert_user_error(vault("passphrase", "change"), "MALFORMED_REQUEST")
    assert "KEYSAFE_NEW_PASSPHRASE" in line


# -- help and usage ------------------------------------------------------------------------------


def invoke_in_process(args: list[str], home: Path) -> Any:
    """Run the Typer app in this process (only for --help: no vault, no secrets, no Argon2)."""
    from typer.testing import CliRunner

    from keysafe.cli import app as cli_app

    cli_app.register([])  # every command
    env = {"KEYSAFE_HOME": str(home), "COLUMNS": "200", "TERMINAL_WIDTH": "200"}
    return CliRunner().invoke(cli_app.app, args, env=env, prog_name="keysafe")


def test_root_help_exits_0_and_lists_every_command(keysafe: Cli) -> None:
    r = keysafe.ok("--help")
    assert "Traceback" not in r.stderr
    assert "agents" in r.stdout
    for command in (
        "init",
        "status",
        "recover",
        "audit",
        "passphrase",
        "backup",
        "credential",
        "data",
        "wallet",
        "mcp",
        "proxy",
        "run",
    ):
        assert re.search(rf"\b{command}\b", r.stdout), command
    assert not keysafe.home.exists()


HELP_CASES = [
    (("init",), "recovery phrase"),
    (("status",), "vault exists"),
    (("recover",), "recovery phrase"),
    (("demo",), "throwaway vault"),
    (("audit",), "audit log"),
    (("audit", "verify"), "audit log"),
    (("passphrase",), "passphrase"),
    (("passphrase", "change"), "Change the passphrase"),
    (("backup",), "backups"),
    (("backup", "create"), "encrypted"),
    (("backup", "restore"), "Restore"),
    (("credential",), "API keys"),
    (("credential", "add"), "Store a credential"),
    (("credential", "list"), "List credentials"),
    (("credential", "remove"), "Delete a credential"),
    (("credential", "placeholder"), "opaque stand-in"),
    (("mcp",), "MCP server"),
    (("proxy",), "local credential proxy"),
    (("run",), "after the owner approves"),
    (("agent", "add"), "--mcp-config"),
    (("data",), "Personal data"),
    (("data", "set"), "JSON or text"),
    (("data", "list"), "List data"),
    (("data", "remove"), "Delete a data"),
    (("wallet",), "wallets"),
    (("wallet", "create"), "Create a wallet"),
    (("wallet", "import"), "Import a private key"),
    (("wallet", "list"), "List wallets"),
]


@pytest.mark.parametrize(("command", "says"), HELP_CASES, ids=[" ".join(c) for c, _ in HELP_CASES])
def test_subcommand_help_exits_0_and_says_what_it_does(
    command: tuple[str, ...], says: str, tmp_path: Path
) -> None:
    r = invoke_in_process([*command, "--help"], tmp_path / "nohome")
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.replace("│", " ").split())
    assert f"keysafe {' '.join(command)}" in text
    assert says.lower() in text.lower(), text
    assert not (tmp_path / "nohome").exists()


def test_unknown_command_is_a_usage_error(keysafe: Cli) -> None:
    assert_usage_error(keysafe("frobnicate"))


def test_unknown_option_is_a_usage_error(keysafe: Cli) -> None:
    assert_usage_error(keysafe("status", "--no-such-option"))


def test_unknown_chain_is_a_usage_error(keysafe: Cli) -> None:
    r = keysafe("wallet", "create", "w", "--chain", "bitcoin")
    assert_usage_error(r)
    assert "bitcoin" in r.stderr


def test_vault_template_files_are_private(vault_template: Path) -> None:
    """Sanity check of the copy trick: the template (and so every copy) keeps 0700/0600."""
    assert stat.S_IMODE(vault_template.stat().st_mode) == 0o700
    for child in vault_template.iterdir():
        assert stat.S_IMODE(child.stat().st_mode) == 0o600, child


def test_shell_completion_completes_commands_and_subcommands(keysafe: Cli) -> None:
    assert "--install-completion" in keysafe.ok("--help").stdout
    for words, cword, want in (("keysafe ag", "1", "agent"), ("keysafe agent pa", "2", "pause")):
        env = {"_KEYSAFE_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
        assert keysafe.ok(env=env).stdout.split() == [want]


def test_license_file_matches_pyproject() -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    assert 'license = "Apache-2.0"' in pyproject and 'license-files = ["LICENSE"]' in pyproject


def test_rotation_policy_is_set_shown_and_its_due_rotations_listed_with_the_fix(
    vault: Cli,
) -> None:
    vault.ok("agent", "add", "bot", "--json")
    shown = json.loads(vault.ok("rotation-policy", "--json").stdout)
    assert shown == {"policy": "after 90d", "due": []}
    r = vault("rotation-policy", "--after", "1y")
    assert r.exit_code == 1 and "30d, 12h" in r.stderr + r.stdout
    set_ = json.loads(
        vault.ok("rotation-policy", "--after", "30d", "--after-uses", "0", "--json").stdout
    )
    assert set_ == {"policy": "after 30d", "due": []}
    # A use count of 0 is "none": nothing is due until the token is 30 days old.
    status = json.loads(vault.ok("status", "--json").stdout)
    assert status["rotations_due"] == []
    # An hour-long policy makes the token due once it is older than that: shown by status.
    vault.ok("rotation-policy", "--after", "1h")
    text = vault.ok("rotation-policy").stdout
    assert "replaced after 1h" in text and "Nothing is due." in text
    audit = vault.ok("audit", "--json").stdout
    assert audit.count('"rotation.policy"') == 2  # the refused 1y wrote nothing
