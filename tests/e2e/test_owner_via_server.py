"""Owner commands go through the running, unlocked `keysafe serve` of their home (issue 14, item
10).

One `keysafe unlock` opens an owner session; after that the owner's changes reach the server's
vault without the passphrase being asked again, and the server sees them at once. A locked
server is left locked (the command opens the files itself, with the passphrase), and only the
server that holds this home's serve lock is ever contacted: a URL left in the lock file by a dead
server, or planted there, gets nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from tests.conftest import PASSPHRASE, Cli
from tests.e2e.server_fixture import (
    MILLI_ETH,
    STANDARD_POLICY,
    Server,
    agent_headers,
    cli_env,
    copy_home,
    evm_tx,
    keysafe_server,
    standard_vault,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Cli, str]]:
    pristine = standard_vault(tmp_path_factory)
    home = copy_home(pristine, tmp_path_factory.mktemp("owner-via-server"))
    with keysafe_server(cli_env(home)) as server:  # starts locked
        # The owner unlocks once; every later command runs without KEYSAFE_PASSPHRASE.
        Cli(home, cli_env(home)).ok("unlock", env={"KEYSAFE_URL": server.url})
        no_passphrase = {k: v for k, v in cli_env(home).items() if k != "KEYSAFE_PASSPHRASE"}
        yield server, Cli(home, no_passphrase), pristine.tokens["bot"]


def _capabilities(server: Server, token: str) -> httpx.Response:
    with server.client() as c:
        return c.get("/v1/agent/capabilities", headers=agent_headers(token))


def _dry_run(server: Server, token: str, value_wei: int = MILLI_ETH) -> str:
    """What the server's gate would decide now for a small payment to R1 (allowed normally)."""
    body = {
        "action": "sign_transaction",
        "request": {"wallet": "main", "transaction": evm_tx(value_wei)},
    }
    with server.client() as c:
        r = c.post("/v1/agent/check", json=body, headers=agent_headers(token))
    assert r.status_code == 200, r.text
    return str(r.json()["decision"])


def test_changes_reach_the_running_server_without_the_passphrase(
    served: tuple[Server, Cli, str], tmp_path: Path
) -> None:
    server, cli, bot = served
    assert _dry_run(server, bot) == "allow"

    cli.ok("agent", "pause", "bot")
    assert _capabilities(server, bot).json()["status"] == "paused"
    assert _dry_run(server, bot) == "deny"
    cli.ok("agent", "resume", "bot")
    assert _dry_run(server, bot) == "allow"

    cli.ok("pause-all")
    assert _dry_run(server, bot) == "deny"
    cli.ok("resume-all")
    assert _dry_run(server, bot) == "allow"

    policy = tmp_path / "p.yaml"
    policy.write_text(STANDARD_POLICY.replace('approve_above: {ETH: "0.005"}', "", 1))
    assert _dry_run(server, bot, 8 * MILLI_ETH) == "ask"
    out = cli.ok("policy", "set", "bot", str(policy)).stdout
    assert "set for agent 'bot'" in out
    assert _dry_run(server, bot, 8 * MILLI_ETH) == "allow"  # the server holds the new policy

    added = json.loads(cli.ok("agent", "add", "helper", "--policy", str(policy), "--json").stdout)
    assert added["token"].startswith("ks_agent_") and added["policy_hash"]
    assert _capabilities(server, added["token"]).status_code == 200
    rotated = json.loads(cli.ok("agent", "rotate-token", "helper", "--json").stdout)["token"]
    assert _capabilities(server, added["token"]).status_code == 401
    assert _capabilities(server, rotated).status_code == 200

    wallet = json.loads(cli.ok("wallet", "create", "second", "--chain", "evm", "--json").stdout)
    listed = json.loads(cli.ok("wallet", "list", "--json").stdout)
    assert wallet["address"] in {w["address"] for w in listed}

    canary = "ghp_CANARYvia0server0f00d"
    cli.ok("credential", "add", "gh", "--host", "api.github.com", "--bearer", input=canary)
    cli.ok("credential", "remove", "gh")
    assert all(canary not in o for o in cli.outputs)
    assert canary not in server.log()

    # It was the server that did it: the owner's changes are in its audit log, as the owner's.
    with server.client() as c:
        session = server.login()
        rows = c.get("/v1/owner/audit?limit=200", headers={"authorization": f"Bearer {session}"})
    actions = {(e["actor"], e["action"]) for e in rows.json()}
    assert {("owner", "policy.set"), ("owner", "credential.add")} <= actions, actions

    status = json.loads(cli.ok("status", "--json").stdout)["server"]
    assert status == {"running": True, "url": server.url, "unlocked": True}


def test_the_other_owner_commands_reach_the_server_too(served: tuple[Server, Cli, str]) -> None:
    """Data, imported keys, placeholders, chains, assets, owner signatures and sealing: none of
    them asks for the passphrase (the CLI has none), so each went through the owner session, and
    no secret handed over comes back in any output or the server's log."""
    server, cli, _ = served
    email = "canary-owner-op@example.org"
    stored = json.loads(cli.ok("data", "set", "profile.canary", "--json", input=email).stdout)
    assert stored["name"] == "profile.canary" and stored["format"] == "text"

    key = "0x" + "7e" * 31 + "01"  # a private key handed over on stdin
    imported = json.loads(
        cli.ok("wallet", "import", "imported", "--chain", "evm", "--json", input=key).stdout
    )
    assert imported["address"] == Account.from_key(key).address

    signed = json.loads(cli.ok("wallet", "sign-message", "imported", "hi", "--json").stdout)
    assert (
        Account.recover_message(encode_defunct(text="hi"), signature=signed["signature"])
        == (imported["address"])
    )

    cli.ok("credential", "add", "gh2", "--host", "api.github.com", "--bearer", input="ghp_x")
    placeholder = json.loads(
        cli.ok("credential", "placeholder", "gh2", "--agent", "bot", "--json").stdout
    )["placeholder"]
    assert placeholder.startswith("ksp_")

    cli.ok("chain", "add", "devnet9", "--family", "evm", "--chain-id", "9999", "--max-fee", "0.5")
    cli.ok(
        "asset",
        "add",
        "TOK",
        "--chain",
        "devnet9",
        "--decimals",
        "6",
        "--address",
        "0x" + "ab" * 20,
    )
    assets = json.loads(cli.ok("asset", "list", "--json").stdout)
    assert {"symbol": "TOK", "chain": "devnet9", "decimals": 6} in [
        {k: a[k] for k in ("symbol", "chain", "decimals")} for a in assets
    ]

    assert "Every agent, policy and setting is sealed." in cli.ok("agent", "seal").stdout

    for secret in (email, key, key[2:]):
        assert all(secret not in o for o in cli.outputs)
        assert secret not in server.log()
    session = server.login()
    with server.client() as c:
        rows = c.get("/v1/owner/audit?limit=500", headers={"authorization": f"Bearer {session}"})
    actions = {e["action"] for e in rows.json() if e["actor"] == "owner"}
    assert {
        "data.set",
        "wallet.import",
        "wallet.sign_message",
        "placeholder.issue",
        "chain.add",
        "asset.add",
    } <= actions
    assert key[2:] not in rows.text and email not in rows.text


def test_backups_are_made_and_restored_by_the_server(
    served: tuple[Server, Cli, str], tmp_path: Path
) -> None:
    """`backup create` and `backup restore` run in the server (the CLI has no passphrase), the
    file is the owner's alone, and a record removed after the backup comes back from it."""
    server, cli, _ = served
    file = tmp_path / "vault.ksbackup"
    cli.ok("data", "set", "kept.in.backup", input="then")
    made = json.loads(cli.ok("backup", "create", str(file), "--json").stdout)
    assert made["file"] == str(file) and made["records"] > 0 and "blob" not in made
    assert file.read_bytes().startswith(b"KEYSAFE-BACKUP-1\n")
    assert file.stat().st_mode & 0o777 == 0o600
    refused = cli("backup", "create", str(file))  # never overwrites
    assert refused.exit_code != 0 and file.stat().st_size > 0

    cli.ok("data", "remove", "kept.in.backup")
    assert "kept.in.backup" not in cli.ok("data", "list").stdout
    restored = json.loads(cli.ok("backup", "restore", str(file), "--yes", "--json").stdout)
    assert restored["records"] == made["records"] and restored["agents_paused"] is False
    assert "kept.in.backup" in cli.ok("data", "list").stdout

    session = server.login()
    with server.client() as c:
        rows = c.get("/v1/owner/audit?limit=500", headers={"authorization": f"Bearer {session}"})
    actions = [e["action"] for e in rows.json() if e["actor"] == "owner"]
    assert "backup.create" in actions and "backup.restore" in actions


def test_attack_backup_operations_take_no_path_and_no_junk(
    served: tuple[Server, Cli, str],
) -> None:
    """The server never reads or writes a file for a backup (the CLI does): an operation naming
    a path to write is refused, and so is a restore of bytes that are not a backup."""
    server, _, _ = served
    session = server.login()
    for op in (
        {"kind": "backup.restore", "blob": "not base64!"},
        {"kind": "backup.restore", "blob": "a2V5c2FmZQ=="},  # base64, not a backup
        {"kind": "backup.create", "file": "/tmp/x", "path": "/etc/cron.d/x"},
    ):
        with server.client() as c:
            r = c.post("/v1/owner/ops", json=op, headers={"authorization": f"Bearer {session}"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "MALFORMED_REQUEST"


def test_a_locked_server_stays_locked(served: tuple[Server, Cli, str]) -> None:
    server, cli, _ = served
    cli.ok("lock")
    try:
        # No session to use and no passphrase: the command must not reach into the server.
        refused = cli("agent", "pause", "bot")
        assert refused.exit_code != 0
        assert "passphrase" in (refused.stderr + refused.stdout).lower()
        # With the passphrase it opens the files itself; the server stays locked.
        cli.ok("agent", "pause", "bot", env={"KEYSAFE_PASSPHRASE": PASSPHRASE})
        assert httpx.get(f"{server.url}/v1/health").json()["unlocked"] is False
        assert "locked (`keysafe unlock`)" in cli.ok("status").stdout
        cli.ok("agent", "resume", "bot", env={"KEYSAFE_PASSPHRASE": PASSPHRASE})
    finally:
        cli.ok("unlock", env={"KEYSAFE_PASSPHRASE": PASSPHRASE, "KEYSAFE_URL": server.url})


def test_attack_agent_token_on_the_owner_operation_route(served: tuple[Server, Cli, str]) -> None:
    server, _, bot = served
    with server.client() as c:
        r = c.post(
            "/v1/owner/ops",
            json={"kind": "pause-all", "paused": False},
            headers=agent_headers(bot),
        )
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "NOT_AUTHENTICATED"


def test_attack_an_attachment_the_cli_would_not_build(served: tuple[Server, Cli, str]) -> None:
    server, _, _ = served
    op = {
        "kind": "credential.add",
        "name": "evil",
        "hosts": ["api.github.com"],
        "secret": "eA==",
        "attach": {"type": "header", "name": "X-Leak", "template": "{secret}{secret}"},
    }
    session = server.login()
    with server.client() as c:
        r = c.post("/v1/owner/ops", json=op, headers={"authorization": f"Bearer {session}"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "MALFORMED_REQUEST"


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b'{"ok": true, "unlocked": true}'
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


def test_attack_a_url_left_in_the_lock_file_gets_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A server that died (or someone with write access to the file) leaves a URL behind; with no
    process holding the lock, the CLI must not send that URL a login with the passphrase."""
    home = copy_home(standard_vault(tmp_path_factory), tmp_path_factory.mktemp("stale-lock"))
    listener = HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{listener.server_address[1]}"
        (home / "serve.lock").write_text(json.dumps({"url": url, "pid": 1}))
        (home / "serve.lock").chmod(0o600)
        cli = Cli(home, cli_env(home))
        cli.ok("agent", "pause", "bot")
        assert json.loads(cli.ok("status", "--json").stdout)["server"]["running"] is False
        assert _Recorder.seen == []
    finally:
        listener.shutdown()


def test_attack_the_default_address_is_never_sent_the_passphrase(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Another local user listens on 127.0.0.1:8420 while the owner's server is not running:
    `keysafe unlock`, `approvals` and `lock` must not send it a login (or trust its answers)."""
    home = copy_home(standard_vault(tmp_path_factory), tmp_path_factory.mktemp("default-port"))
    try:
        listener = HTTPServer(("127.0.0.1", 8420), _Recorder)
    except OSError:
        pytest.skip("127.0.0.1:8420 is in use here, so this attack cannot be staged")
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    _Recorder.seen.clear()
    try:
        cli = Cli(home, cli_env(home))  # KEYSAFE_URL unset, as for an owner at a terminal
        refused = cli("unlock")
        assert refused.exit_code == 1
        assert "No keysafe server is running on this home" in refused.stderr
        cli.ok("approvals")  # answered from the vault files, not by the listener
        assert cli("lock").exit_code == 1
        assert _Recorder.seen == []
    finally:
        listener.shutdown()
        listener.server_close()
