"""The credential proxy's kept-alive upstream connections (one HTTP client per unlocked vault).

Two local HTTP/1.1 upstreams that keep connections open record, for every request, the
connection it came on (the client's port), the Host it was addressed to, its Authorization and
its Cookie header. Reuse is checked (calls share a connection), and so is what reuse must never
do: carry a cookie one agent received into another agent's call, or put one host's request (or
credential) on another host's connection.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import PolicyDeniedError
from keysafe.service import agents, credentials, policies, proxy
from keysafe.service.models import Attachment, HttpRequestRequest
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

SECRET_A = "sk-host-a-CANARY-0b1c2d3e"
SECRET_B = "sk-host-b-CANARY-4f5a6b7c"
POLICY = """\
version: 1
rules:
  - name: both
    allow: [http.request]
    credentials: [cred-a, cred-b]
"""


@dataclass
class Upstream:
    port: int = 0
    other: int = 0
    seen: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)  # for /held

    def connections(self) -> set[str]:
        return {s["conn"] for s in self.seen}


def _serve(up: Upstream) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps the connection open between requests

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            up.seen.append(
                {
                    "conn": str(self.client_address[1]),
                    "path": self.path,
                    "host": self.headers.get("Host", ""),
                    "authorization": self.headers.get("Authorization", ""),
                    "cookie": self.headers.get("Cookie", ""),
                }
            )
            path = urlsplit(self.path)
            if path.path == "/held":  # one chunk now, the rest once the test says so
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"6\r\nfirst \r\n")
                self.wfile.flush()
                up.release.wait(10)
                self.wfile.write(b"4\r\nlast\r\n0\r\n\r\n")
                return
            if path.path == "/redirect-away":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{up.other}/landed")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            query = parse_qs(path.query)
            self.send_response(302 if "then" in query else 200)
            if "then" in query:  # on to a page that wants the session
                self.send_header("Location", "/echo")
            if path.path == "/login":  # a session for whoever called
                self.send_header("Set-Cookie", f"session={query['as'][0]}-session; Path=/")
            body = json.dumps({"cookie": self.headers.get("Cookie")}).encode()
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    up.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def hosts() -> Iterator[tuple[Upstream, Upstream]]:
    a, b = Upstream(), Upstream()
    servers = [_serve(a), _serve(b)]
    a.other, b.other = b.port, a.port
    yield a, b
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def vault(tmp_path: Path, hosts: tuple[Upstream, Upstream]) -> Iterator[Vault]:
    a, b = hosts
    v, _ = init_vault(
        Home(tmp_path / "h"),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
        clock=lambda: datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    )
    for name, secret, up in (("cred-a", SECRET_A, a), ("cred-b", SECRET_B, b)):
        credentials.add_credential(
            v,
            name,
            SecretBytes(bytearray(secret.encode())),
            hosts=[f"127.0.0.1:{up.port}"],
            attach=Attachment.bearer(),
        )
    for agent in ("alice", "bob"):
        agents.add_agent(v, agent)
        policies.set_policy(v, agent, POLICY)
    yield v
    v.lock()  # closes the kept connections
    v.db.close()


def _get(vault: Vault, agent: str, cred: str, url: str, **kw: Any) -> proxy.HttpResult:
    call = HttpRequestRequest(credential=cred, method="GET", url=url, **kw)
    res = proxy.http_request(vault, agent, call)
    assert isinstance(res, proxy.HttpResult) and res.status_code == 200, res
    return res


def test_calls_share_one_kept_alive_connection_until_the_vault_locks(
    vault: Vault, hosts: tuple[Upstream, Upstream]
) -> None:
    a, _ = hosts
    for agent in ("alice", "bob", "alice"):
        _get(vault, agent, "cred-a", f"http://127.0.0.1:{a.port}/echo")
    assert len(a.seen) == 3 and len(a.connections()) == 1  # one connection, three calls
    vault.lock()  # the client and its connections go with the unlock
    vault.unlock(SecretBytes(bytearray(b"passphrase-123")))
    _get(vault, "alice", "cred-a", f"http://127.0.0.1:{a.port}/echo")
    assert len(a.connections()) == 2


def test_attack_a_cookie_one_agent_received_never_reaches_another_agents_call(
    vault: Vault, hosts: tuple[Upstream, Upstream]
) -> None:
    a, _ = hosts
    _get(vault, "alice", "cred-a", f"http://127.0.0.1:{a.port}/login?as=alice")
    bob = _get(vault, "bob", "cred-a", f"http://127.0.0.1:{a.port}/echo")
    again = _get(vault, "alice", "cred-a", f"http://127.0.0.1:{a.port}/echo")
    assert len(a.connections()) == 1, "the calls did not share a connection: nothing was tested"
    assert [s["cookie"] for s in a.seen] == ["", "", ""]
    assert "alice-session" not in (bob.body or "") + (again.body or "")


def test_a_calls_own_redirect_still_carries_the_cookie_it_was_given(
    vault: Vault, hosts: tuple[Upstream, Upstream]
) -> None:
    a, _ = hosts
    _get(vault, "alice", "cred-a", f"http://127.0.0.1:{a.port}/login?as=alice&then=1")
    assert [s["cookie"] for s in a.seen] == ["", "session=alice-session"]
    _get(vault, "bob", "cred-a", f"http://127.0.0.1:{a.port}/echo")  # ... and dies with it
    assert a.seen[-1]["cookie"] == ""


def test_attack_a_kept_connection_never_carries_a_request_or_credential_to_another_host(
    vault: Vault, hosts: tuple[Upstream, Upstream]
) -> None:
    a, b = hosts
    _get(vault, "alice", "cred-a", f"http://127.0.0.1:{a.port}/echo")  # a connection to A, kept
    # cred-a aimed at B, with a Host header naming A: refused before anything is sent.
    with pytest.raises(PolicyDeniedError, match="only sent to"):
        proxy.http_request(
            vault,
            "alice",
            HttpRequestRequest(
                credential="cred-a",
                method="GET",
                url=f"http://127.0.0.1:{b.port}/echo",
                headers={"Host": f"127.0.0.1:{a.port}"},
            ),
        )
    # cred-b at B with a Host header naming A: goes to B, addressed to B.
    _get(
        vault,
        "bob",
        "cred-b",
        f"http://127.0.0.1:{b.port}/echo",
        headers={"Host": f"127.0.0.1:{a.port}"},
    )
    # A redirect from A to B: B gets the hop, without cred-a.
    _get(vault, "alice", "cred-a", f"http://127.0.0.1:{a.port}/redirect-away")
    _get(vault, "alice", "cred-a", f"http://127.0.0.1:{a.port}/echo")
    assert [s["path"] for s in a.seen] == ["/echo", "/redirect-away", "/echo"]
    assert [s["path"] for s in b.seen] == ["/echo", "/landed"]
    assert len(a.connections()) == 1  # A's connection was kept throughout, B's never rode on it
    for up, secret in ((a, SECRET_A), (b, SECRET_B)):
        assert all(s["host"] == f"127.0.0.1:{up.port}" for s in up.seen)
        assert all(s["authorization"] in ("", f"Bearer {secret}") for s in up.seen)
    assert b.seen[1]["authorization"] == ""  # the redirect hop carried no credential


def test_a_call_under_way_when_the_vault_locks_still_finishes(
    vault: Vault, hosts: tuple[Upstream, Upstream]
) -> None:
    """Locking retires the shared client: no new call takes it, a stream already sent reads
    to its end (as when every call had a client of its own), then it is closed."""
    a, _ = hosts
    held = HttpRequestRequest(
        credential="cred-a", method="GET", url=f"http://127.0.0.1:{a.port}/held"
    )
    stream = proxy.http_stream(vault, "alice", held)
    assert isinstance(stream, proxy.HttpStream)
    try:
        chunks = stream.chunks()
        got = [next(chunks)]
        vault.lock()
        a.release.set()
        got += list(chunks)
    finally:
        stream.close()
    assert b"".join(got) == b"first last"
    vault.unlock(SecretBytes(bytearray(b"passphrase-123")))
    _get(vault, "alice", "cred-a", f"http://127.0.0.1:{a.port}/echo")
    assert len(a.connections()) == 2  # a new client after the unlock
