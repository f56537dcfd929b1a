"""`keysafe proxy` end to end: a real `keysafe serve --unlock`, real `keysafe proxy` processes and
local upstreams (threads) that record every request they receive.

Acceptance (agent surfaces, 2, and the proxy bullets): an unmodified SDK carrying a placeholder
(`ksp_…`) as its API key reaches the credential's host with the real secret attached, and only
there; a redirect to another host carries no credential; an echoed secret is scrubbed; the
placeholder never reaches any upstream and is refused (and audited) anywhere but its own
credential's HTTP call; it always acts as the agent it was issued to; revoking the agent or
removing the credential kills it; the policy still applies. Canary: the agent side never sees
the secret, and neither the proxy's nor the server's logs hold it.

The vault is built once per module in-process (fast KDF, service calls: a CLI run costs ~0.6 s
each); the module's server runs on a copy, and tests that revoke or remove get a copy of their own.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from keysafe.crypto.secret import SecretBytes
from keysafe.service import agents, credentials, placeholders, policies
from keysafe.service.models import Attachment
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF, free_port, stop_process
from keysafe.vault.home import Home
from tests.conftest import PASSPHRASE, Cli
from tests.e2e.server_fixture import KEYSAFE, Server, cli_env, error_of, keysafe_server

REDACTED = "[redacted by keysafe]"
CAP = 64 * 1024  # the module's server runs with --max-response CAP
BASIC_USER = "apiuser"
# One random secret per credential, fresh for each test process (alphanumeric and '-', so its
# URL-encoded form is itself).
CREDENTIALS = ("api", "hdr", "basicc", "qry", "openai", "narrow", "asky", "shared", "other")
SECRETS: dict[str, str] = {
    name: f"sk-{name}-CANARY-{secrets.token_hex(16)}" for name in CREDENTIALS
}
CHAT_COMPLETION = {
    "id": "chatcmpl-keysafe-test",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "x",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hello from upstream"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
}


# -- upstream stand-ins --------------------------------------------------------------------------


@dataclass
class Upstream:
    """A local HTTP service that records every request (method, path, headers, body)."""

    port: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    other: int = 0  # the other upstream's port, for cross-host redirects
    # /sse sends its second event only once the client has seen the first (or after 10 s,
    # saying so): a proxy that buffered the stream would make the client wait for the end.
    release: threading.Event = field(default_factory=threading.Event)

    def text(self) -> str:
        return json.dumps(self.seen)


def _serve(up: Upstream) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = raw.decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            up.seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": headers,
                    "body": body,
                    "raw": raw.hex(),
                }
            )
            if self.path.startswith("/sse"):
                self._events(headers)
                return
            if self.path.startswith("/cut-at/"):
                self._cut_at(int(self.path.rsplit("/", 1)[1]), headers)
                return
            if self.path.startswith(("/redirect-away", "/redirect-keep-query")):
                # A move to another host; the second kind keeps the query, as many APIs do.
                query = urlsplit(self.path).query
                keep = self.path.startswith("/redirect-keep-query") and query
                self.send_response(302)
                self.send_header(
                    "Location",
                    f"http://127.0.0.1:{up.other}/landed" + (f"?{query}" if keep else ""),
                )
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path == "/v1/chat/completions" and self.command == "POST":
                out = json.dumps(CHAT_COMPLETION).encode()
            elif self.path.startswith("/bytes"):  # what came, byte for byte, and every byte
                out = raw + bytes(range(256))
            elif self.path.startswith("/over-cap"):  # says up front that it is too big
                out = b"x" * (CAP + 1)
            else:  # a careless API that repeats the credential back, in the body and headers
                out = json.dumps(
                    {
                        "path": self.path,
                        "authorization": headers.get("authorization"),
                        "x-api-key": headers.get("x-api-key"),
                    }
                ).encode()
            self.send_response(200)
            kind = "application/octet-stream" if self.path.startswith("/bytes") else "json"
            self.send_header("Content-Type", kind.replace("json", "application/json"))
            if self.path.startswith("/cors"):  # what would let a web page read the answer
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Credentials", "true")
                self.send_header("Set-Cookie", "session=upstream; Path=/")
            self.send_header("X-Echo-Auth", str(headers.get("authorization")))
            self.send_header("X-Echo-Key", str(headers.get("x-api-key")))
            self.send_header("X-Echo-Path", self.path)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def _events(self, headers: dict[str, str]) -> None:
            """Server-sent events, as a model API streams tokens; the caller's Authorization is
            reflected too, cut across two writes."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()  # no length: HTTP/1.0, the body ends when the connection does
            self._send(b"event: first\ndata: one\n\n")
            seen_first = up.release.wait(10)
            self._send(b"data: " + (b"released" if seen_first else b"NOT-released") + b"\n\n")
            auth = (headers.get("authorization") or "").encode()
            half = len(auth) // 2
            self._send(b'data: {"echo": "' + auth[:half])
            self._send(auth[half:] + b'"}\n\n')
            self._send(b"data: [DONE]\n\n")

        def _cut_at(self, n: int, headers: dict[str, str]) -> None:
            """The credential echoed at the end of an unsized body, so that keysafe's cap
            falls inside it, `n` characters from its end."""
            secret = (headers.get("authorization") or "").removeprefix("Bearer ").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            filler = CAP - len(secret) + n
            for start in range(0, filler, 4096):
                self._send(b"x" * min(4096, filler - start))
            self._send(secret)

        def _send(self, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    up.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# -- the vault -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    home: Path
    tokens: dict[str, str]  # agent -> ks_agent_… token
    ph: dict[str, str]  # credential -> bot's placeholder


def _bot_policy(allowed_port: int) -> str:
    return f"""\
version: 1
rules:
  - name: creds
    allow: [http.request]
    credentials: [api, hdr, basicc, qry, openai, other]
  - name: narrow
    allow: [http.request]
    credentials: [narrow]
    urls: ["http://127.0.0.1:{allowed_port}/ok/**"]
  - name: asky
    ask: [http.request]
    credentials: [asky]
  - name: no-admin
    deny: [http.request]
    credentials: [api]
    urls: ["http://127.0.0.1:{allowed_port}/admin/**"]
"""


BOB_POLICY = """\
version: 1
rules:
  - name: shared-only
    allow: [http.request]
    credentials: [shared]
"""


def _seal(home: Path) -> None:
    """The modes keysafe itself gives a home (the server refuses anything looser)."""
    os.chmod(home, 0o700)
    for child in home.iterdir():
        if child.is_file():
            os.chmod(child, 0o600)


def _build(root: Path, allowed: int, other: int) -> Built:
    home = Home(root / "home")
    vault, phrase = init_vault(home, SecretBytes(bytearray(PASSPHRASE.encode())), kdf=CHEAP_KDF)
    phrase.wipe()
    attach = {
        "api": Attachment.bearer(),
        "hdr": Attachment.header("X-Api-Key: {secret}"),
        "basicc": Attachment.basic(BASIC_USER),
        "qry": Attachment.query("key"),
        "openai": Attachment.bearer(),
        "narrow": Attachment.bearer(),
        "asky": Attachment.bearer(),
        "shared": Attachment.bearer(),
        "other": Attachment.bearer(),
    }
    with vault:
        for name, how in attach.items():
            port = other if name == "other" else allowed
            credentials.add_credential(
                vault,
                name,
                SecretBytes(bytearray(SECRETS[name].encode())),
                hosts=[f"127.0.0.1:{port}"],
                attach=how,
            )
        tokens: dict[str, str] = {}
        for agent, policy in (("bot", _bot_policy(allowed)), ("bob", BOB_POLICY)):
            _, token = agents.add_agent(vault, agent)
            assert token is not None
            tokens[agent] = bytes(token.reveal()).decode()
            policies.set_policy(vault, agent, policy)
        ph = {}
        for name in CREDENTIALS:  # bot holds a placeholder for each
            issued = placeholders.issue(vault, name, "bot")
            ph[name] = bytes(issued.reveal()).decode()
    _seal(home.path)
    return Built(home.path, tokens, ph)


def _copy(built: Built, dest: Path) -> Path:
    home = dest / "home"
    shutil.copytree(built.home, home)
    _seal(home)
    return home


# -- processes -----------------------------------------------------------------------------------


@dataclass
class Proxy:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    agent_home: Path  # the proxy's own KEYSAFE_HOME: where its keysafe.log goes

    def logs(self) -> str:
        out = self.log_path.read_text(errors="replace")
        log = self.agent_home / "keysafe.log"
        return out + (log.read_text(errors="replace") if log.exists() else "")


def _agent_env(agent_home: Path, url: str, token: str | None = None) -> dict[str, str]:
    """An agent-side environment: the vault's URL, no passphrase, no vault files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYSAFE_", "OPENAI_"))}
    env |= {"KEYSAFE_URL": url, "KEYSAFE_HOME": str(agent_home)}
    if token is not None:
        env["KEYSAFE_AGENT_TOKEN"] = token
    return env


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running_proxies(
    vault_url: str, root: Path, tokens: Mapping[str, str | None]
) -> Iterator[dict[str, Proxy]]:
    """Start one `keysafe proxy --port FREE` per entry (with that KEYSAFE_AGENT_TOKEN, or none),
    all at once; yield when every port answers; stop them after."""
    started: dict[str, Proxy] = {}
    try:
        for label, token in tokens.items():
            agent_home = root / f"agent-{label}"
            agent_home.mkdir(mode=0o700)
            port = free_port()
            log_path = root / f"proxy-{label}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    [KEYSAFE, "proxy", "--port", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_agent_env(agent_home, vault_url, token),
                )
            started[label] = Proxy(f"http://127.0.0.1:{port}", proc, log_path, agent_home)
        deadline = time.monotonic() + 30
        for p in started.values():
            port = int(p.url.rsplit(":", 1)[1])
            while not _port_open(port):
                if p.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"keysafe proxy did not start:\n{p.logs()}")
                time.sleep(0.05)
        yield started
    finally:
        for p in started.values():
            stop_process(p.proc)


# -- fixtures ------------------------------------------------------------------------------------


@dataclass
class Stack:
    built: Built
    server: Server
    proxy: Proxy  # no agent token of its own: placeholders only
    proxy_bob: Proxy  # runs with agent bob's KEYSAFE_AGENT_TOKEN set, which must authorise nothing
    allowed: Upstream
    other: Upstream
    seen_by_agent: list[str] = field(default_factory=list)
    session: str = ""  # the owner's, opened on first use

    def call(
        self, method: str, path: str, *, via: Proxy | None = None, **kw: Any
    ) -> httpx.Response:
        """A request to a proxy, as an SDK would make it; remembers what the agent saw."""
        base = (via or self.proxy).url
        r = httpx.request(method, base + path, timeout=30, **kw)
        self.seen_by_agent.append(_visible(r))
        return r

    def vault_call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A request straight to the vault's routes (what an agent could also try)."""
        r = httpx.request(method, self.server.url + path, timeout=30, **kw)
        self.seen_by_agent.append(_visible(r))
        return r

    def owner(self) -> dict[str, str]:
        """The owner's session header (one login per server)."""
        self.session = self.session or self.server.login()
        return {"authorization": f"Bearer {self.session}"}

    def audit(self) -> list[dict[str, Any]]:
        """The owner's view of the audit log (GET /v1/owner/audit)."""
        r = httpx.get(
            f"{self.server.url}/v1/owner/audit",
            params={"limit": 1000},
            headers=self.owner(),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        rows: list[dict[str, Any]] = r.json()
        return rows


def _visible(r: httpx.Response) -> str:
    return r.text + json.dumps(dict(r.headers))


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    allowed, other = Upstream(), Upstream()
    servers = [_serve(allowed), _serve(other)]
    allowed.other, other.other = other.port, allowed.port
    yield allowed, other
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, upstreams: tuple[Upstream, Upstream]) -> Built:
    allowed, other = upstreams
    return _build(tmp_path_factory.mktemp("proxy-vault"), allowed.port, other.port)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, built: Built, upstreams: tuple[Upstream, Upstream]
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("proxy-stack")
    home = _copy(built, root)
    with (
        keysafe_server(
            cli_env(home),
            "--unlock",
            "--rate-limit",
            "1000",
            "--max-response",
            str(CAP),
            log_dir=root,
        ) as server,
        running_proxies(server.url, root, {"plain": None, "bob": built.tokens["bob"]}) as px,
    ):
        yield Stack(built, server, px["plain"], px["bob"], *upstreams)


@pytest.fixture(autouse=True)
def _fresh_records(upstreams: tuple[Upstream, Upstream]) -> None:
    for up in upstreams:
        up.seen.clear()
        up.release.clear()


def _secret_forms(name: str) -> list[str]:
    s = SECRETS[name]
    forms = [s, base64.b64encode(s.encode()).decode()]
    if name == "basicc":
        forms.append(base64.b64encode(f"{BASIC_USER}:{s}".encode()).decode())
    return forms


def _assert_no_secret(text: str, where: str) -> None:
    for name in SECRETS:
        for form in _secret_forms(name):
            assert form not in text, f"secret of {name!r} ({form[:12]}…) in {where}"


def _assert_no_placeholder(st: Stack) -> None:
    upstream_text = st.allowed.text() + st.other.text()
    for name, ph in st.built.ph.items():
        assert ph not in upstream_text, f"the placeholder of {name!r} reached an upstream"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _last_seq(st: Stack) -> int:
    return max(int(a["seq"]) for a in st.audit())


def _refusals_since(st: Stack, seq: int) -> list[dict[str, Any]]:
    """`placeholder.refused` audit rows written after `seq` (tests on one server run in turn)."""
    return [a for a in st.audit() if a["seq"] > seq and a["action"] == "placeholder.refused"]


def _refused_as_misuse(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert err["code"] == "POLICY_DENIED", err
    assert err.get("reason_code") == "PLACEHOLDER_MISUSED", err
    return err


# -- the credential reaches its own host, in its own slot ----------------------------------------


def _sent_as(st: Stack, case: str) -> tuple[str, str, dict[str, Any]]:
    """(credential, path, request kwargs): how an SDK might carry the placeholder."""
    ph = st.built.ph
    cases: dict[str, tuple[str, str, dict[str, Any]]] = {
        "bearer": ("api", "/api/echo", {"headers": _bearer(ph["api"])}),
        "custom-header": ("hdr", "/hdr/echo", {"headers": {"X-Api-Key": ph["hdr"]}}),
        "basic-password": ("basicc", "/basicc/echo", {"headers": _basic("anyone", ph["basicc"])}),
        "query-param": ("qry", "/qry/echo", {"params": {"key": ph["qry"], "q": "1"}}),
        # The proxy finds the placeholder wherever the SDK puts it, whatever the credential's slot.
        "bearer-cred-in-query": ("api", "/api/echo", {"params": {"api_key": ph["api"]}}),
        "bearer-cred-in-header": ("api", "/api/echo", {"headers": {"X-Goog-Api-Key": ph["api"]}}),
    }
    return cases[case]


def _assert_in_slot(credential: str, request: dict[str, Any]) -> None:
    secret = SECRETS[credential]
    headers = request["headers"]
    query = parse_qs(urlsplit(request["path"]).query)
    if credential == "api":
        assert headers.get("authorization") == f"Bearer {secret}", request
    elif credential == "hdr":
        assert headers.get("x-api-key") == secret, request
        assert "authorization" not in headers, request
    elif credential == "basicc":
        want = base64.b64encode(f"{BASIC_USER}:{secret}".encode()).decode()
        assert headers.get("authorization") == f"Basic {want}", request
    elif credential == "qry":
        assert query.get("key") == [secret], request
        assert query.get("q") == ["1"], request  # the SDK's other parameters still arrive
        assert "authorization" not in headers, request
    else:  # pragma: no cover - a case without a check is a bug in this test
        raise AssertionError(credential)


@pytest.mark.parametrize(
    "case",
    [
        "bearer",
        "custom-header",
        "basic-password",
        "query-param",
        "bearer-cred-in-query",
        "bearer-cred-in-header",
    ],
)
def test_placeholder_is_swapped_for_the_secret_in_the_credentials_slot_at_its_host(
    stack: Stack, case: str
) -> None:
    credential, path, kw = _sent_as(stack, case)
    r = stack.call("GET", path, **kw)
    assert r.status_code == 200, r.text
    assert len(stack.allowed.seen) == 1 and stack.other.seen == []
    request = stack.allowed.seen[0]
    assert urlsplit(request["path"]).path == "/echo"
    _assert_in_slot(credential, request)
    # Whatever header or parameter carried the placeholder was not forwarded at all.
    assert "x-goog-api-key" not in request["headers"]
    assert "api_key" not in parse_qs(urlsplit(request["path"]).query)
    _assert_no_placeholder(stack)


@pytest.mark.parametrize("case", ["bearer", "custom-header", "basic-password", "query-param"])
def test_an_upstream_echoing_the_secret_has_it_scrubbed_from_body_and_headers(
    stack: Stack, case: str
) -> None:
    credential, path, kw = _sent_as(stack, case)
    r = stack.call("GET", path, **kw)
    assert r.status_code == 200, r.text
    _assert_in_slot(credential, stack.allowed.seen[0])  # it really went out, and came back
    _assert_no_secret(_visible(r), f"the proxy's answer ({case})")
    echoed = {
        "api": ("authorization", "x-echo-auth"),
        "hdr": ("x-api-key", "x-echo-key"),
        "basicc": ("authorization", "x-echo-auth"),
        "qry": ("path", "x-echo-path"),
    }[credential]
    body_field, header = echoed
    assert REDACTED in r.json()[body_field], r.text
    assert REDACTED in r.headers[header], dict(r.headers)


def test_a_credential_goes_to_its_own_host_only(stack: Stack) -> None:
    r = stack.call("GET", "/other/echo", headers=_bearer(stack.built.ph["other"]))
    assert r.status_code == 200, r.text
    assert stack.allowed.seen == []
    assert [s["headers"].get("authorization") for s in stack.other.seen] == [
        f"Bearer {SECRETS['other']}"
    ]


@pytest.mark.parametrize("case", ["bearer", "custom-header", "basic-password", "query-param"])
def test_a_redirect_to_another_host_carries_no_credential(stack: Stack, case: str) -> None:
    credential, _, kw = _sent_as(stack, case)
    r = stack.call("GET", f"/{credential}/redirect-away", **kw)
    assert r.status_code == 200, r.text
    first = stack.allowed.seen
    assert len(first) == 1 and first[0]["path"].startswith("/redirect-away")
    _assert_in_slot(credential, first[0])  # the allowed host got it on the first hop
    assert [urlsplit(s["path"]).path for s in stack.other.seen] == ["/landed"]
    landed = stack.other.seen[0]
    assert "authorization" not in landed["headers"] and "x-api-key" not in landed["headers"]
    assert "key=" not in landed["path"]
    _assert_no_secret(stack.other.text(), "the other host's records")
    _assert_no_placeholder(stack)
    _assert_no_secret(_visible(r), "the redirected answer")


def test_a_redirect_keeping_the_query_carries_no_query_credential_to_another_host(
    stack: Stack,
) -> None:
    r = stack.call("GET", "/qry/redirect-keep-query", params={"key": stack.built.ph["qry"]})
    [first] = stack.allowed.seen
    assert parse_qs(urlsplit(first["path"]).query).get("key") == [SECRETS["qry"]], first
    _assert_no_secret(stack.other.text(), "the other host's records")
    _assert_no_secret(_visible(r), "the redirected answer")


def test_a_redirect_keeping_the_query_still_works_for_header_credentials(stack: Stack) -> None:
    r = stack.call(
        "GET", "/api/redirect-keep-query", params={"q": "1"}, headers=_bearer(stack.built.ph["api"])
    )
    assert r.status_code == 200, r.text
    assert [s["path"] for s in stack.other.seen] == ["/landed?q=1"]
    assert "authorization" not in stack.other.seen[0]["headers"]
    _assert_no_secret(stack.other.text(), "the other host's records")


def test_percent_escapes_in_the_path_reach_the_upstream_as_the_sdk_sent_them(
    stack: Stack,
) -> None:
    r = stack.call("GET", "/api/items/a%3Fb%25c%20d", headers=_bearer(stack.built.ph["api"]))
    assert r.status_code == 200, r.text
    assert [s["path"] for s in stack.allowed.seen] == ["/items/a%3Fb%25c%20d"]


def test_an_encoded_slash_in_the_path_is_refused_with_what_to_do(stack: Stack) -> None:
    # A server may decode %2F into a separator the policy never saw: keysafe will not guess.
    r = stack.call("GET", "/api/items/a%2Fb", headers=_bearer(stack.built.ph["api"]))
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "MALFORMED_REQUEST" and "encoded" in err["message"]
    assert stack.allowed.seen == []


@pytest.mark.parametrize("trick", ["//127.0.0.1:{port}/echo", "/http://127.0.0.1:{port}/echo"])
def test_a_path_naming_another_host_never_reaches_it(stack: Stack, trick: str) -> None:
    path = "/api" + trick.format(port=stack.other.port)
    r = stack.call("GET", path, headers=_bearer(stack.built.ph["api"]))
    assert stack.other.seen == []
    _assert_no_secret(_visible(r), "the answer")
    _assert_no_placeholder(stack)


# -- an unmodified SDK ---------------------------------------------------------------------------


def test_the_openai_sdk_works_unchanged_with_a_placeholder_as_its_key(stack: Stack) -> None:
    from openai import OpenAI

    client = OpenAI(
        base_url=f"{stack.proxy.url}/openai/v1",
        api_key=stack.built.ph["openai"],
        max_retries=0,
        timeout=30,
    )
    done = client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "say hello"}]
    )
    assert done.id == "chatcmpl-keysafe-test"
    assert done.choices[0].message.content == "hello from upstream"
    assert done.usage is not None and done.usage.total_tokens == 6
    [request] = stack.allowed.seen
    assert request["method"] == "POST" and request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {SECRETS['openai']}"
    sent = json.loads(request["body"])
    assert sent["model"] == "x" and sent["messages"][0]["content"] == "say hello"
    assert stack.other.seen == []
    _assert_no_placeholder(stack)


# -- misuse of a placeholder ---------------------------------------------------------------------


def test_a_placeholder_on_another_credentials_proxy_route_is_refused_and_audited(
    stack: Stack,
) -> None:
    before = _last_seq(stack)
    r = stack.call("GET", "/hdr/echo", headers=_bearer(stack.built.ph["api"]))
    err = _refused_as_misuse(r)
    assert r.headers["x-keysafe-error"] == "POLICY_DENIED"
    assert "'api'" in err["message"] and "/api/" in err["next"]
    assert stack.allowed.seen == [] and stack.other.seen == []
    [row] = _refusals_since(stack, before)
    assert row["actor"] == "agent:bot" and row["outcome"] == "denied"
    assert row["target"] == "credential:api"
    assert row["details"]["reason"] == "another credential"


def test_a_placeholder_sent_to_the_vault_for_another_credential_is_refused(stack: Stack) -> None:
    body = {"credential": "hdr", "method": "GET", "url": "/echo"}
    before = _last_seq(stack)
    for route in ("/v1/agent/http", "/v1/agent/http-request"):
        r = stack.vault_call("POST", route, json=body, headers=_bearer(stack.built.ph["api"]))
        _refused_as_misuse(r)
    assert stack.allowed.seen == []
    rows = _refusals_since(stack, before)
    assert [r["details"]["reason"] for r in rows] == ["another credential"] * 2
    # …while for its own credential the same routes take it.
    own = {"credential": "api", "method": "GET", "url": "/echo"}
    r = stack.vault_call(
        "POST", "/v1/agent/http-request", json=own, headers=_bearer(stack.built.ph["api"])
    )
    assert r.status_code == 200, r.text
    assert r.json()["status_code"] == 200
    _assert_in_slot("api", stack.allowed.seen[0])


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        ("GET", "/v1/agent/capabilities", None),
        ("GET", "/v1/agent/whoami", None),
        ("GET", "/v1/agent/address/main", None),
        ("POST", "/v1/agent/credential-release", {"credential": "api", "purpose": "x"}),
        ("POST", "/v1/agent/read-data", {"name": "profile"}),
        ("GET", "/v1/agent/approvals/apr_000000000000000000000000", None),
    ],
)
def test_a_placeholder_on_any_other_vault_route_is_refused_and_audited(
    stack: Stack, method: str, route: str, body: Any
) -> None:
    ph = stack.built.ph["api"]
    before = _last_seq(stack)
    r = stack.vault_call(method, route, json=body, headers=_bearer(ph))
    _refused_as_misuse(r)
    [row] = _refusals_since(stack, before)
    assert row["actor"] == "agent:bot" and row["target"] == "credential:api"
    assert row["details"]["reason"] == "not a credential call"
    assert ph not in json.dumps(stack.audit())


def test_a_placeholder_never_opens_owner_routes(stack: Stack) -> None:
    for route in ("/v1/owner/audit", "/v1/owner/approvals"):
        r = stack.vault_call("GET", route, headers=_bearer(stack.built.ph["api"]))
        assert r.status_code == 401, r.text
        assert error_of(r)["code"] == "NOT_AUTHENTICATED"


def test_a_made_up_placeholder_is_401_and_sends_nothing(stack: Stack) -> None:
    fake = "ksp_" + secrets.token_urlsafe(32)
    for via in (stack.proxy, stack.proxy_bob):  # the proxy's own token is no fallback for it
        r = stack.call("GET", "/api/echo", via=via, headers=_bearer(fake))
        assert r.status_code == 401, r.text
        assert error_of(r)["code"] == "NOT_AUTHENTICATED"
        assert r.headers["x-keysafe-error"] == "NOT_AUTHENTICATED"
        assert fake not in r.text
    r = stack.vault_call("GET", "/v1/agent/capabilities", headers=_bearer(fake))
    assert r.status_code == 401 and error_of(r)["code"] == "NOT_AUTHENTICATED"
    assert stack.allowed.seen == [] and stack.other.seen == []


def test_without_placeholder_or_agent_token_the_proxy_answers_401(stack: Stack) -> None:
    r = stack.call("GET", "/api/echo", headers={"authorization": "Bearer sk-not-a-placeholder"})
    assert r.status_code == 401, r.text
    err = error_of(r)
    assert err["code"] == "NOT_AUTHENTICATED" and "placeholder" in err["next"]
    assert r.headers["x-keysafe-error"] == "NOT_AUTHENTICATED"
    assert stack.allowed.seen == []


def test_attack_the_proxys_own_agent_token_authorises_nothing(stack: Stack) -> None:
    # A proxy started with KEYSAFE_AGENT_TOKEN in its environment (bob's, whose policy allows
    # `shared`) used to spend it on any request without a placeholder: any local process could.
    r = stack.call("GET", "/shared/echo", via=stack.proxy_bob)
    assert r.status_code == 401, r.text
    err = error_of(r)
    assert err["code"] == "NOT_AUTHENTICATED" and "placeholder" in err["next"]
    assert stack.allowed.seen == []


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "evil.example"},
        {"host": "rebound.example:{port}"},
        {"host": "127.0.0.1:1"},
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"origin": "http://localhost:3000"},
        {"sec-fetch-site": "cross-site"},
    ],
    ids=[
        "foreign-host",
        "rebound-host",
        "other-port",
        "foreign-origin",
        "null-origin",
        "other-local-origin",
        "cross-site",
    ],
)
def test_attack_a_web_page_or_rebound_name_cannot_use_the_proxy(
    stack: Stack, headers: dict[str, str]
) -> None:
    port = stack.proxy.url.rsplit(":", 1)[1]
    sent = {k: v.format(port=port) for k, v in headers.items()}
    r = stack.call("GET", "/api/echo", headers=_bearer(stack.built.ph["api"]) | sent)
    assert r.status_code == 421, r.text
    assert error_of(r)["code"] == "MISDIRECTED_REQUEST"
    assert stack.allowed.seen == []


def test_a_program_on_loopback_is_served_under_any_loopback_name(stack: Stack) -> None:
    port = stack.proxy.url.rsplit(":", 1)[1]
    for extra in ({"host": f"localhost:{port}"}, {"origin": f"http://127.0.0.1:{port}"}):
        r = stack.call("GET", "/api/echo", headers=_bearer(stack.built.ph["api"]) | extra)
        assert r.status_code == 200, r.text


def test_attack_upstream_cors_and_cookies_never_reach_the_caller(stack: Stack) -> None:
    r = stack.call("GET", "/api/cors", headers=_bearer(stack.built.ph["api"]))
    assert r.status_code == 200, r.text
    assert stack.allowed.seen  # the upstream did answer with them
    leaked = [k for k in r.headers if k.lower().startswith("access-control-") or k == "set-cookie"]
    assert leaked == [], leaked


def test_a_placeholder_always_acts_as_the_agent_it_was_issued_to(stack: Stack) -> None:
    # Bot's placeholder for `shared`, through a proxy that holds bob's token, is judged by bot's
    # policy (bob's would allow it).
    r = stack.call(
        "GET", "/shared/echo", via=stack.proxy_bob, headers=_bearer(stack.built.ph["shared"])
    )
    assert r.status_code == 403, r.text
    assert error_of(r)["code"] == "POLICY_DENIED"
    assert stack.allowed.seen == []
    # And bot's placeholder for `api` (bob has no rule for it) works there, audited as bot.
    r = stack.call(
        "GET", "/api/echo-as-bot", via=stack.proxy_bob, headers=_bearer(stack.built.ph["api"])
    )
    assert r.status_code == 200, r.text
    calls = [
        a
        for a in stack.audit()
        if a["action"] == "http.request" and a["details"].get("path") == "/echo-as-bot"
    ]
    assert [c["actor"] for c in calls] == ["agent:bot"]


# -- the policy still applies --------------------------------------------------------------------


def test_the_policy_applies_through_the_proxy(stack: Stack) -> None:
    ph = _bearer(stack.built.ph["narrow"])
    ok = stack.call("GET", "/narrow/ok/thing", headers=ph)
    assert ok.status_code == 200, ok.text
    assert [s["path"] for s in stack.allowed.seen] == ["/ok/thing"]
    stack.allowed.seen.clear()
    r = stack.call("GET", "/narrow/elsewhere", headers=ph)
    assert r.status_code == 403, r.text
    assert error_of(r)["code"] == "POLICY_DENIED"
    assert r.headers["x-keysafe-error"] == "POLICY_DENIED"
    assert stack.allowed.seen == []


def test_an_ask_rule_answers_approval_required_and_a_retry_passes_once_approved_for_a_while(
    stack: Stack,
) -> None:
    r = stack.call("GET", "/asky/echo", headers=_bearer(stack.built.ph["asky"]))
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert err["code"] == "APPROVAL_REQUIRED"
    assert r.headers["x-keysafe-error"] == "APPROVAL_REQUIRED"
    approval_id = err["approval_id"]
    assert approval_id.startswith("apr_") and approval_id in err["next"]
    assert stack.allowed.seen == []
    done = httpx.post(
        f"{stack.server.url}/v1/owner/approvals/{approval_id}/approve",
        json={"for_seconds": 600},  # what the error's next step tells the owner to do
        headers=stack.owner(),
        timeout=30,
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "approved"
    assert [s["headers"]["authorization"] for s in stack.allowed.seen] == [
        f"Bearer {SECRETS['asky']}"
    ]
    _assert_no_secret(done.text, "the owner's view of the approved call")
    retry = stack.call("GET", "/asky/echo", headers=_bearer(stack.built.ph["asky"]))
    assert retry.status_code == 200, retry.text
    assert len(stack.allowed.seen) == 2
    _assert_no_secret(_visible(retry), "the retried answer")


def test_a_body_over_512_kib_is_refused_before_the_vault(stack: Stack) -> None:
    r = stack.call(
        "POST", "/api/echo", headers=_bearer(stack.built.ph["api"]), content=b"x" * (513 * 1024)
    )
    assert r.status_code == 413, r.text
    assert error_of(r)["code"] == "PAYLOAD_TOO_LARGE"
    assert stack.allowed.seen == []


def _stream(
    st: Stack, via: str, path: str, *, method: str = "GET"
) -> AbstractContextManager[httpx.Response]:
    """A streamed call to the upstream: through the local proxy, or straight to the vault's
    route with `?stream=true`."""
    if via == "proxy":
        return httpx.stream(
            method, f"{st.proxy.url}/api{path}", headers=_bearer(st.built.ph["api"]), timeout=30
        )
    return httpx.stream(
        "POST",
        f"{st.server.url}/v1/agent/http?stream=true",
        headers=_bearer(st.built.tokens["bot"]),
        timeout=30,
        json={
            "credential": "api",
            "method": method,
            "url": f"http://127.0.0.1:{st.allowed.port}{path}",
        },
    )


def _read_events(st: Stack, via: str) -> tuple[httpx.Response, list[str]]:
    """The /sse stream's data lines; the upstream is let go on once the first one is here."""
    lines: list[str] = []
    with _stream(st, via, "/sse") as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: "):
                lines.append(line[6:])
                st.allowed.release.set()
    st.seen_by_agent.append("\n".join(lines) + json.dumps(dict(r.headers)))
    return r, lines


@pytest.mark.parametrize("via", ["proxy", "vault"])
def test_server_sent_events_arrive_as_the_upstream_sends_them(stack: Stack, via: str) -> None:
    seq = _last_seq(stack)
    r, lines = _read_events(stack, via)
    assert r.headers["content-type"].startswith("text/event-stream")
    # The second event is sent only after the client saw the first: streamed, not buffered.
    assert lines[:2] == ["one", "released"], lines
    assert lines[-1] == "[DONE]"
    calls = [a for a in stack.audit() if a["seq"] > seq and a["action"] == "http.request"]
    assert len(calls) == 1, calls  # one audit row for the call, with its size and ending
    details = calls[0]["details"]
    assert calls[0]["outcome"] == "success"
    assert details["ended"] == "complete" and details["bytes"] > 40 and details["status"] == 200


@pytest.mark.parametrize("via", ["proxy", "vault"])
def test_attack_a_secret_reflected_split_across_stream_chunks_is_scrubbed(
    stack: Stack, via: str
) -> None:
    _, lines = _read_events(stack, via)
    assert json.loads(lines[2]) == {"echo": f"Bearer {REDACTED}"}, lines
    assert SECRETS["api"] in json.dumps(stack.allowed.seen)  # it did go out
    _assert_no_secret("\n".join(stack.seen_by_agent), "the streamed answer")


def test_a_client_that_stops_reading_a_stream_is_audited_and_the_call_counts(
    stack: Stack,
) -> None:
    seq = _last_seq(stack)
    with _stream(stack, "vault", "/sse") as r:
        assert next(r.iter_lines()) == "event: first"
    stack.allowed.release.set()  # the upstream may finish; keysafe has stopped relaying it
    deadline = time.monotonic() + 20
    calls: list[dict[str, Any]] = []
    while not calls and time.monotonic() < deadline:  # settled once the server sees the close
        calls = [a for a in stack.audit() if a["seq"] > seq and a["action"] == "http.request"]
    assert [(c["outcome"], c["details"]["ended"]) for c in calls] == [("success", "client_closed")]


def test_a_binary_body_goes_up_and_comes_back_byte_for_byte(stack: Stack) -> None:
    blob = secrets.token_bytes(3000) + b"\xff\xfe\x00\x80"  # not UTF-8
    r = stack.call("POST", "/api/bytes", headers=_bearer(stack.built.ph["api"]), content=blob)
    assert r.status_code == 200, r.text[:200]
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == blob + bytes(range(256))
    assert stack.allowed.seen[-1]["raw"] == blob.hex()
    # The JSON form of the vault's route carries the bytes as base64, both ways.
    r = stack.vault_call(
        "POST",
        "/v1/agent/http-request",
        headers=_bearer(stack.built.tokens["bot"]),
        json={
            "credential": "api",
            "method": "POST",
            "url": f"http://127.0.0.1:{stack.allowed.port}/bytes",
            "body_base64": base64.b64encode(blob).decode(),
        },
    )
    assert r.status_code == 200, r.text[:300]
    assert base64.b64decode(r.json()["body_base64"]) == blob + bytes(range(256))
    assert "body" not in r.json()


@pytest.mark.parametrize("via", ["proxy", "vault"])
def test_an_answer_declared_over_the_cap_is_refused_with_what_to_do(stack: Stack, via: str) -> None:
    with _stream(stack, via, "/over-cap") as r:
        r.read()
    stack.seen_by_agent.append(_visible(r))
    assert r.status_code == 413, r.text[:300]
    err = error_of(r)
    assert err["code"] == "PAYLOAD_TOO_LARGE"
    assert "over keysafe's 64 KiB response cap" in err["message"]
    assert "--max-response" in err["next"]


@pytest.mark.parametrize(("via", "n"), [("vault", 1), ("proxy", 1), ("proxy", 5), ("proxy", 20)])
def test_attack_a_stream_cut_by_the_cap_ends_in_an_error_and_leaks_no_prefix(
    stack: Stack, via: str, n: int
) -> None:
    seq = _last_seq(stack)
    got = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),  # incomplete: never a short "whole" answer
        _stream(stack, via, f"/cut-at/{n}") as r,
    ):
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            got += chunk
    secret = SECRETS["api"]
    assert 0 < len(got) <= CAP and set(got) == {ord("x")}, got[-80:]
    assert secret[:4].encode() not in got
    calls = [a for a in stack.audit() if a["seq"] > seq and a["action"] == "http.request"]
    assert [(c["outcome"], c["details"]["code"], c["details"]["ended"]) for c in calls] == [
        ("failure", "PAYLOAD_TOO_LARGE", "cap")
    ]


TRICKS = [
    "/admin/x",
    "//admin/x",
    "/%61dmin/x",
    "/admin;/x",
    "/ok/../admin/x",
    "/./admin/x",
    "/%2e%2e/admin/x",
    "/x/%2e%2e/admin/x",
    "/admin%2fx",
    "/admin%3b/x",
    "/admin\\x",
]


@pytest.mark.parametrize("trick", TRICKS)
def test_attack_a_url_deny_rule_holds_whatever_the_spelling(stack: Stack, trick: str) -> None:
    port = stack.allowed.port
    # Straight to the vault's route, with a full URL…
    r = stack.vault_call(
        "POST",
        "/v1/agent/http-request",
        headers={"authorization": f"Bearer {stack.built.tokens['bot']}"},
        json={"credential": "api", "method": "GET", "url": f"http://127.0.0.1:{port}{trick}"},
    )
    assert r.status_code in (400, 403), r.text
    assert error_of(r)["code"] in ("POLICY_DENIED", "MALFORMED_REQUEST")
    # …and through the local proxy, as an SDK would send it.
    r = stack.call("GET", f"/api{trick}", headers=_bearer(stack.built.ph["api"]))
    assert r.status_code in (400, 403), r.text
    assert stack.allowed.seen == [], stack.allowed.seen


def test_the_url_judged_is_the_url_sent(stack: Stack) -> None:
    r = stack.call(
        "GET", "/api/ok/./x//y/%7Euser/../z?q=%2F", headers=_bearer(stack.built.ph["api"])
    )
    assert r.status_code == 200, r.text
    assert [s["path"] for s in stack.allowed.seen] == ["/ok/x/y/z?q=%2F"]


def test_attack_deeply_nested_json_is_refused_before_anything_parses_it(stack: Stack) -> None:
    for headers in ({}, _bearer(stack.built.ph["api"])):
        r = stack.call("POST", "/api/echo", headers=headers, content=b"[" * 400_000)
        assert r.status_code == 400, r.text
        assert error_of(r)["code"] == "MALFORMED_REQUEST"
    assert stack.allowed.seen == []
    assert stack.proxy.proc.poll() is None


# -- revocation ----------------------------------------------------------------------------------


@pytest.fixture
def private(
    tmp_path: Path, built: Built, upstreams: tuple[Upstream, Upstream]
) -> Iterator[tuple[Stack, Cli]]:
    """A server and proxy of this test's own (it changes the vault), and the owner's CLI."""
    home = _copy(built, tmp_path)
    env = cli_env(home)
    with (
        keysafe_server(env, "--unlock", log_dir=tmp_path) as server,
        running_proxies(server.url, tmp_path, {"plain": None}) as px,
    ):
        yield Stack(built, server, px["plain"], px["plain"], *upstreams), Cli(home, env)


def test_after_agent_revoke_its_placeholder_is_refused(private: tuple[Stack, Cli]) -> None:
    st, cli = private
    ph = _bearer(st.built.ph["api"])
    assert st.call("GET", "/api/echo", headers=ph).status_code == 200
    st.allowed.seen.clear()
    cli.ok("agent", "revoke", "bot")
    r = st.call("GET", "/api/echo", headers=ph)
    assert r.status_code == 401, r.text
    assert error_of(r)["code"] == "NOT_AUTHENTICATED"
    assert st.allowed.seen == []


def test_after_credential_remove_and_re_add_the_old_placeholder_is_dead(
    private: tuple[Stack, Cli],
) -> None:
    st, cli = private
    old = st.built.ph["api"]
    assert st.call("GET", "/api/echo", headers=_bearer(old)).status_code == 200
    st.allowed.seen.clear()
    cli.ok("credential", "remove", "api")
    new_secret = f"sk-api-REPLACED-{secrets.token_hex(16)}"
    cli.ok(
        "credential",
        "add",
        "api",
        "--host",
        f"127.0.0.1:{st.allowed.port}",
        "--bearer",
        input=new_secret,
    )
    r = st.call("GET", "/api/echo", headers=_bearer(old))
    assert r.status_code == 401, r.text
    assert error_of(r)["code"] == "NOT_AUTHENTICATED"
    assert st.allowed.seen == []
    # A placeholder issued for the new credential works, and carries the new secret.
    out = json.loads(cli.ok("credential", "placeholder", "api", "--agent", "bot", "--json").stdout)
    assert set(out) == {"credential", "agent", "placeholder"}
    assert out["credential"] == "api" and out["agent"] == "bot"
    new = out["placeholder"]
    assert new.startswith("ksp_") and new != old
    r = st.call("GET", "/api/echo", headers=_bearer(new))
    assert r.status_code == 200, r.text
    assert [s["headers"]["authorization"] for s in st.allowed.seen] == [f"Bearer {new_secret}"]
    assert new_secret not in _visible(r)
    assert new not in st.allowed.text()


# -- canary --------------------------------------------------------------------------------------


def test_canary_no_secret_in_anything_the_agent_side_saw_or_in_any_log(stack: Stack) -> None:
    # A round of everything: each attachment echoed, redirected, misused, and an SDK call.
    for case in ("bearer", "custom-header", "basic-password", "query-param"):
        credential, path, kw = _sent_as(stack, case)
        stack.call("GET", path, **kw)
        stack.call("GET", f"/{credential}/redirect-away", **kw)
        stack.call("GET", "/other/echo", **kw)
    stack.call("GET", "/shared/echo", via=stack.proxy_bob)
    openai_ph = _bearer(stack.built.ph["openai"])
    stack.call("POST", "/openai/v1/chat/completions", headers=openai_ph, json={"model": "x"})
    stack.vault_call("GET", "/v1/agent/capabilities", headers=_bearer(stack.built.ph["api"]))
    secrets_sent = " ".join(json.dumps(s["headers"]) + s["path"] for s in stack.allowed.seen)
    assert SECRETS["api"] in secrets_sent and SECRETS["qry"] in secrets_sent  # they did go out
    _assert_no_secret("\n".join(stack.seen_by_agent), "the agent's responses")
    _assert_no_secret(stack.proxy.logs() + stack.proxy_bob.logs(), "the proxies' logs")
    server_home = Path(stack.server.env["KEYSAFE_HOME"])
    _assert_no_secret(stack.server.log(), "the server's output")
    _assert_no_secret(
        (server_home / "keysafe.log").read_text(errors="replace"), "the vault's log file"
    )
    _assert_no_secret(json.dumps(stack.audit()), "the audit log")
    for name, ph in stack.built.ph.items():
        assert ph not in stack.server.log() + stack.proxy.logs(), f"placeholder {name} logged"
