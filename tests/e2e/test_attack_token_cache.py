"""The server's quick bearer check (service/agents.py `authenticate_token_quick`) against the
owner's brakes: a revoked agent, a rotated token or a row edited in the file must be refused on
the very next request, and a paused agent (or pause-all) must act on nothing, whoever made the
change: the server itself (owner routes, the owner's CLI through it) or another process writing
the same vault file (as the owner's CLI does when it finds no unlocked server).

Each token is "warmed" first (two whoami calls: the first verifies the row's seal and notes
last_seen, the second is answered by the quick check), so what is tested is the remembered
state, not the first look. One real `keysafe serve --unlock` on a vault built in-process (fast
KDF) serves the module; each test has agents of its own.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from keysafe.crypto.secret import SecretBytes
from keysafe.service import agents, credentials, policies
from keysafe.service.context import open_vault
from keysafe.service.models import Attachment
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault
from tests.conftest import PASSPHRASE, Cli
from tests.e2e.server_fixture import Server, agent_headers, cli_env, error_of, keysafe_server

AGENTS = (
    "revoke-srv",
    "revoke-cli",
    "revoke-file",
    "rotate-srv",
    "rotate-file",
    "pause-srv",
    "pause-file",
    "all-file",
    "edited",
)
POLICY = """\
version: 1
rules:
  - name: api
    allow: [http.request]
    credentials: [api]
"""


@dataclass
class Stack:
    server: Server
    home: Path
    tokens: dict[str, str]
    upstream_hits: list[str]
    upstream: str  # http://127.0.0.1:PORT
    session: str = ""  # the owner's, opened on first use

    def whoami(self, token: str) -> httpx.Response:
        return httpx.get(f"{self.server.url}/v1/agent/whoami", headers=agent_headers(token))

    def warm(self, *names: str) -> None:
        for name in names:
            for _ in range(2):
                r = self.whoami(self.tokens[name])
                assert r.status_code == 200 and r.json() == {"agent": name}, r.text

    def call_upstream(self, token: str) -> httpx.Response:
        body = {"credential": "api", "method": "GET", "url": f"{self.upstream}/x"}
        return httpx.post(
            f"{self.server.url}/v1/agent/http-request", json=body, headers=agent_headers(token)
        )

    def owner(self, method: str, path: str, **kw: object) -> httpx.Response:
        self.session = self.session or self.server.login()
        return httpx.request(
            method,
            f"{self.server.url}{path}",
            headers={"authorization": f"Bearer {self.session}"},
            **kw,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            hits.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True).start()
    port = upstream.server_address[1]
    root = tmp_path_factory.mktemp("token-cache")
    home = Home(root / "home")
    vault, phrase = init_vault(home, SecretBytes(bytearray(PASSPHRASE.encode())), kdf=CHEAP_KDF)
    phrase.wipe()
    tokens: dict[str, str] = {}
    with vault:
        credentials.add_credential(
            vault,
            "api",
            SecretBytes(bytearray(b"sk-token-cache-test")),
            hosts=[f"127.0.0.1:{port}"],
            attach=Attachment.bearer(),
        )
        for name in AGENTS:
            _, token = agents.add_agent(vault, name)
            assert token is not None
            tokens[name] = bytes(token.reveal()).decode()
            policies.set_policy(vault, name, POLICY)
    os.chmod(home.path, 0o700)
    for child in home.path.iterdir():
        os.chmod(child, 0o600)
    env = cli_env(home.path)
    try:
        with keysafe_server(env, "--unlock", "--rate-limit", "1000", log_dir=root) as server:
            yield Stack(server, home.path, tokens, hits, f"http://127.0.0.1:{port}")
    finally:
        upstream.shutdown()
        upstream.server_close()


@pytest.fixture
def other_process(stack: Stack) -> Iterator[Vault]:
    """The vault file opened by this test process (not the server), unlocked."""
    vault = open_vault(Home(stack.home))
    with SecretBytes(bytearray(PASSPHRASE.encode())) as secret:
        vault.unlock(secret)
    try:
        yield vault
    finally:
        vault.lock()
        vault.db.close()


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert error_of(r)["code"] == "NOT_AUTHENTICATED"


def test_attack_revoked_agents_are_refused_at_once_whoever_revokes(
    stack: Stack, other_process: Vault
) -> None:
    stack.warm("revoke-srv", "revoke-cli", "revoke-file")
    r = stack.owner("POST", "/v1/owner/agents/revoke-srv/revoke")
    assert r.status_code == 200, r.text
    _refused(stack.whoami(stack.tokens["revoke-srv"]))
    # The owner's CLI, which sends the change to the running server.
    cli = Cli(stack.home, cli_env(stack.home))
    cli.ok("agent", "revoke", "revoke-cli")
    _refused(stack.whoami(stack.tokens["revoke-cli"]))
    # Another process writing the vault file the server has open.
    agents.set_status(other_process, "revoke-file", "revoked")
    _refused(stack.whoami(stack.tokens["revoke-file"]))
    for name in ("revoke-srv", "revoke-cli", "revoke-file"):
        _refused(stack.call_upstream(stack.tokens[name]))
    assert stack.upstream_hits == []


def test_attack_a_rotated_token_is_refused_at_once_and_the_new_one_works(
    stack: Stack, other_process: Vault
) -> None:
    stack.warm("rotate-srv", "rotate-file")
    r = stack.owner(
        "POST", "/v1/owner/ops", json={"kind": "agent.rotate-token", "name": "rotate-srv"}
    )
    assert r.status_code == 200, r.text
    new_srv = r.json()["token"]
    new_file = bytes(agents.rotate_token(other_process, "rotate-file").reveal()).decode()
    for name, new in (("rotate-srv", new_srv), ("rotate-file", new_file)):
        _refused(stack.whoami(stack.tokens[name]))
        assert stack.whoami(new).json() == {"agent": name}


def test_attack_paused_agents_and_pause_all_act_on_nothing_whoever_pauses(
    stack: Stack, other_process: Vault
) -> None:
    stack.warm("pause-srv", "pause-file", "all-file")
    assert stack.call_upstream(stack.tokens["all-file"]).status_code == 200  # works before
    stack.upstream_hits.clear()
    r = stack.owner("POST", "/v1/owner/agents/pause-srv/pause")
    assert r.status_code == 200, r.text
    agents.set_status(other_process, "pause-file", "paused")
    for name in ("pause-srv", "pause-file"):
        assert stack.call_upstream(stack.tokens[name]).status_code == 403
    agents.set_paused_all(other_process, True)
    try:
        assert stack.call_upstream(stack.tokens["all-file"]).status_code == 403
    finally:
        agents.set_paused_all(other_process, False)
    assert stack.upstream_hits == []


def test_attack_a_row_edited_in_the_file_is_not_honoured_from_memory(stack: Stack) -> None:
    """Someone who can write the database swaps a warmed agent's token hash for their own:
    the seal no longer matches the row, so neither token works."""
    stack.warm("edited")
    forged = "ks_agent_" + "f" * 43
    with sqlite3.connect(stack.home / "vault.db", timeout=30) as db:
        db.execute(
            "UPDATE agents SET token_hash = ? WHERE name = 'edited'",
            (hashlib.sha256(forged.encode()).hexdigest(),),
        )
    assert stack.whoami(forged).status_code != 200
    _refused(stack.whoami(stack.tokens["edited"]))
