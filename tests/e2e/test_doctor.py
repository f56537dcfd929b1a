"""`keysafe doctor` through the real CLI: a healthy home, bad permissions, chain RPCs that are
down or on another network, a running server, and findings that warn or fail.

Doctor needs no passphrase and changes nothing, so each test copies one shared vault (the one
tests/e2e/test_cli.py builds) and runs doctor on it with KEYSAFE_PASSPHRASE unset. KEYSAFE_URL
always names a port nothing listens on unless the test starts a server, so no other test's
server on 8420 can answer.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from keysafe.testing import free_port
from tests.conftest import Cli, Result, shared_once
from tests.e2e.server_fixture import cli_env, keysafe_server
from tests.e2e.test_cli import cli_at

API_KEY = "doctor-canary-3c1f9a7e5d"  # in RPC URLs: must never be printed
CHECKS = ["home", "vault", "lock", "server", "rpc", "kdf", "unlock", "pause-all", "seals", "audit"]
DEVNET_GENESIS = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def build(root: Path) -> dict[str, Any]:
        out = cli_at(root / "home").ok("init", "--json").stdout
        return dict(json.loads(out))

    root, _ = shared_once(tmp_path_factory, "keysafe-test-cli-vault", build)
    return root / "home"


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "home"
    shutil.copytree(template, dest)
    return dest


def doctor(home: Path, *args: str, url: str | None = None) -> Result:
    """`keysafe doctor ARGS` on `home`, without the passphrase."""
    env = cli_env(home, KEYSAFE_URL=url or f"http://127.0.0.1:{free_port()}")
    env.pop("KEYSAFE_PASSPHRASE")
    return Cli(home, env)("doctor", *args)


def checks(r: Result) -> dict[str, dict[str, Any]]:
    body = json.loads(r.stdout)
    assert body["ok"] == (r.exit_code == 0), r.stdout
    return {c["check"]: c for c in body["checks"]}


def assert_only_these_not_ok(found: dict[str, dict[str, Any]], expected: dict[str, str]) -> None:
    """Every check ok except `expected` (check -> status); each non-ok one says what to fix."""
    assert {k: c["status"] for k, c in found.items() if c["status"] != "ok"} == expected, found
    for c in found.values():
        assert (c["fix"] is None) == (c["status"] == "ok"), c


def test_doctor_on_a_healthy_home_says_ok_to_every_check_and_exits_0(home: Path) -> None:
    (home / "serve.lock").touch(mode=0o600)  # as a stopped `keysafe serve` leaves it
    before = {p.name: p.read_bytes() for p in home.iterdir()}
    r = doctor(home, "--json")
    assert r.exit_code == 0 and r.stderr == "", r.stderr + r.stdout
    found = checks(r)
    assert list(found) == CHECKS
    assert_only_these_not_ok(found, {})
    assert "Argon2id 64 MiB, 3 pass(es), 4 lane(s)" in found["kdf"]["summary"]
    assert "No keysafe server is running" in found["server"]["summary"]
    assert "left from a server that has stopped" in found["lock"]["summary"]
    # Read-only: the vault's files are as they were. New files are only SQLite's side files (an
    # empty WAL, the shared-memory index) and the log every command opens, all 0600.
    after = {p.name: p.read_bytes() for p in home.iterdir()}
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) <= {"vault.db-wal", "vault.db-shm", "keysafe.log"}
    assert after.get("vault.db-wal", b"") == before.get("vault.db-wal", b"")
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in home.iterdir())


def test_doctor_on_a_missing_home_fails_and_says_to_run_init(tmp_path: Path) -> None:
    r = doctor(tmp_path / "nowhere", "--json")
    assert r.exit_code == 1
    found = checks(r)
    assert list(found) == ["home"] and found["home"]["status"] == "fail"
    assert "keysafe init" in found["home"]["fix"]
    assert not (tmp_path / "nowhere").exists()


def test_doctor_names_open_permissions_and_its_fix_makes_them_ok(home: Path) -> None:
    home.chmod(0o755)
    (home / "vault.db").chmod(0o644)
    r = doctor(home, "--json")
    assert r.exit_code == 1
    found = checks(r)
    assert_only_these_not_ok(found, {"home": "fail", "vault": "warn"})
    assert "mode 0755" in found["home"]["summary"] and "vault.db 0644" in found["home"]["summary"]
    assert f"chmod 700 {home}" in found["home"]["fix"]
    assert f"chmod 600 {home / 'vault.db'}" in found["home"]["fix"]
    # An open database is not even opened: SQLite would create its side files just as open.
    assert "was not opened" in found["vault"]["summary"]
    assert not (home / "vault.db-wal").exists() and not (home / "vault.db-shm").exists()
    home.chmod(0o700)
    (home / "vault.db").chmod(0o600)
    text = doctor(home)  # as a person reads it
    assert text.exit_code == 0 and text.stderr == "", text.stderr
    assert text.stdout.splitlines()[0] == f"keysafe doctor: {home}"
    assert "  ok    home  " in text.stdout
    assert text.stdout.endswith("10 ok, 0 warning(s), 0 failure(s).\n")


class _StandIn(BaseHTTPRequestHandler):
    """A JSON-RPC node that says it is Ethereum mainnet (chain id 1) and Solana devnet."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        result = {"eth_chainId": "0x1", "getGenesisHash": DEVNET_GENESIS}[body["method"]]
        data = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_doctor_checks_each_rpc_reaches_its_own_network_and_never_shows_its_key(
    home: Path, node: str
) -> None:
    # The rows `keysafe chain add NAME --rpc URL` writes (inserted directly: the CLI would cost
    # an unlock per chain).
    down = f"http://127.0.0.1:{free_port()}/v3/{API_KEY}"
    with sqlite3.connect(home / "vault.db") as db:
        db.executemany(
            "INSERT INTO registry_chains (name, family, chain_id, rpc) VALUES (?, ?, ?, ?)",
            [
                ("arbitrum", "evm", 42161, down),
                ("ethereum", "evm", 1, f"{node}/v3/{API_KEY}"),
                ("solana", "solana", None, f"{node}/?api-key={API_KEY}"),
            ],
        )
    db.close()
    r = doctor(home, "--json")
    assert r.exit_code == 1
    found = checks(r)
    assert_only_these_not_ok(found, {"rpc:arbitrum": "fail", "rpc:solana": "fail"})
    assert "could not be reached" in found["rpc:arbitrum"]["summary"]
    assert found["rpc:ethereum"]["summary"] == f"ethereum: {node} answers, chain id 1."
    assert f"genesis hash {DEVNET_GENESIS}" in found["rpc:solana"]["summary"]
    assert "another network" in found["rpc:solana"]["summary"]
    assert API_KEY not in r.stdout + r.stderr


def test_doctor_sees_the_running_server_and_one_that_serves_another_home(
    home: Path, tmp_path: Path, template: Path
) -> None:
    with keysafe_server(cli_env(home), log_dir=tmp_path) as server:
        found = checks(doctor(home, "--json", url=server.url))
        assert_only_these_not_ok(found, {})
        assert found["server"]["summary"].startswith("keysafe serve ")
        assert "vault locked" in found["server"]["summary"]
        assert "holds this home's server lock" in found["lock"]["summary"]
        other = tmp_path / "other"
        shutil.copytree(template, other)
        found = checks(doctor(other, "--json", url=server.url))
        assert_only_these_not_ok(found, {"server": "warn"})
        assert "serves another vault" in found["server"]["summary"]


def test_doctor_warns_on_weak_kdf_failed_unlocks_pause_all_and_fails_on_a_tampered_audit(
    home: Path,
) -> None:
    db = sqlite3.connect(home / "vault.db")
    with db:
        weak = {"memory_kib": 8192, "time_cost": 1, "parallelism": 1, "length": 32}
        db.execute("UPDATE vault SET kdf_params = ?, unlock_failures = 4", (json.dumps(weak),))
        db.execute("UPDATE settings SET value = '1', mac = NULL WHERE key = 'paused_all'")
    r = doctor(home, "--json")
    assert r.exit_code == 0, r.stdout  # warnings only
    found = checks(r)
    assert_only_these_not_ok(
        found, {"kdf": "warn", "unlock": "warn", "pause-all": "warn", "seals": "warn"}
    )
    assert "keysafe passphrase change" in found["kdf"]["fix"]
    assert "4 wrong passphrase(s)" in found["unlock"]["summary"]
    assert "keysafe resume-all" in found["pause-all"]["fix"]
    assert "setting paused_all" in found["seals"]["summary"]
    with db:
        db.execute("UPDATE audit SET outcome = 'failure' WHERE seq = 1")
    db.close()
    found = checks(doctor(home, "--json"))
    assert found["audit"]["status"] == "fail"
    assert "seq 1" in found["audit"]["summary"]
