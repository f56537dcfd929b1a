"""The credential proxy against real local upstreams that record what they receive.

Acceptance (agent surfaces, 2): the credential arrives only at allowed hosts; a redirect to
another host carries no credential; an upstream that echoes the credential back has it scrubbed;
the agent-visible output never contains it.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from keysafe.agent_models import PendingApproval
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, PayloadTooLargeError, PolicyDeniedError
from keysafe.service import agents, approvals, credentials, policies, proxy, settings
from keysafe.service.models import Attachment, HttpRequestRequest
from keysafe.service.proxy_scrub import REDACTED, Scrubber
from keysafe.service.proxy_send import ACCEPT_ENCODING
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

CANARY = "sk-CANARY-7f3e9a1c5b2d"
CAP = 4096  # the response cap these tests set


@dataclass
class Upstream:
    port: int
    seen: list[dict[str, str]] = field(default_factory=list)
    other: int = 0  # the port of the *other* upstream, for cross-host redirects


def _serve(up: Upstream) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            up.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            if self.path.startswith("/redirect-away"):
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{up.other}/landed")
                self.end_headers()
                return
            if self.path.startswith("/redirect-home"):
                self.send_response(302)
                self.send_header("Location", "/echo")
                self.end_headers()
                return
            if self.path.startswith("/bytes"):  # binary in, binary out (reversed)
                got = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                up.seen[-1]["body"] = got.hex()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(got)))
                self.end_headers()
                self.wfile.write(got[::-1])
                return
            if self.path.startswith(("/cdn", "/forced-br")):
                # A CDN that compresses as the client asks (or always, for /forced-br). No brotli
                # codec is installed here, so the echo is only labelled br: what matters is that
                # keysafe could not undo real br, so could not scrub what it hides.
                wanted = self.headers.get("Accept-Encoding", "")
                coding = "br" if "br" in wanted or self.path.startswith("/forced-br") else None
                body = json.dumps({"you_sent": self.headers.get("Authorization")}).encode()
                self.send_response(200)
                if coding:
                    self.send_header("Content-Encoding", coding)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if self.path.startswith("/big"):
                body = b"x" * (CAP + 10)
                if self.path.startswith("/big-unsized"):  # no length: the cap finds out late
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(body)
                    return
            else:  # /echo: a careless API that repeats the credential back
                body = json.dumps(
                    {"you_sent": self.headers.get("Authorization"), "path": self.path}
                ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Echo", str(self.headers.get("Authorization")))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    up.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    allowed, other = Upstream(0), Upstream(0)
    servers = [_serve(allowed), _serve(other)]
    allowed.other, other.other = other.port, allowed.port
    yield allowed, other
    for s in servers:
        s.shutdown()


@pytest.fixture
def vault(tmp_path: Path, upstreams: tuple[Upstream, Upstream]) -> Vault:
    allowed, _ = upstreams
    admin = f"http://127.0.0.1:{allowed.port}/admin/**"
    v, _ = init_vault(
        Home(tmp_path / "h"),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
        clock=lambda: datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    )
    credentials.add_credential(
        v,
        "api",
        SecretBytes(bytearray(CANARY.encode())),
        hosts=[f"127.0.0.1:{allowed.port}"],
        attach=Attachment.bearer(),
    )
    agents.add_agent(v, "bot")
    policies.set_policy(
        v,
        "bot",
        "version: 1\nrules:\n  - name: api\n    allow: [http.request]\n    credentials: [api]\n"
        "    methods: [GET]\n  - name: ask-admin\n    ask: [http.request]\n"
        f'    urls: ["{admin}"]\n',
    )
    return v


def _call(
    vault: Vault, agent: str, credential: str, method: str, url: str, **fields: Any
) -> proxy.HttpResult | PendingApproval:
    """`proxy.http_request` with the request's fields given one by one."""
    call = HttpRequestRequest(credential=credential, method=method, url=url, **fields)
    return proxy.http_request(vault, agent, call)


def _http(
    vault: Vault, agent: str, credential: str, method: str, url: str, **fields: Any
) -> proxy.HttpResult:
    """`_call` that the policy allows: the upstream's answer, not a parked request."""
    res = _call(vault, agent, credential, method, url, **fields)
    assert isinstance(res, proxy.HttpResult), res
    return res


def _out(result: proxy.HttpResult) -> str:
    return json.dumps(result.model_dump(mode="json"))


def test_credential_arrives_at_the_allowed_host_and_is_scrubbed_on_the_way_back(
    vault: Vault, upstreams: tuple[Upstream, Upstream]
) -> None:
    allowed, _ = upstreams
    res = _http(vault, "bot", "api", "GET", f"http://127.0.0.1:{allowed.port}/echo")
    assert res.status_code == 200
    assert allowed.seen[-1]["authorization"] == f"Bearer {CANARY}"
    assert CANARY not in _out(res)
    assert REDACTED in (res.body or "") and REDACTED in res.headers["x-echo"]


def test_redirect_to_another_host_carries_no_credential(
    vault: Vault, upstreams: tuple[Upstream, Upstream]
) -> None:
    allowed, other = upstreams
    res = _http(vault, "bot", "api", "GET", f"http://127.0.0.1:{allowed.port}/redirect-away")
    assert res.status_code == 200
    assert other.seen and other.seen[-1]["path"] == "/landed"
    assert "authorization" not in other.seen[-1]
    assert CANARY not in _out(res)


def test_redirect_on_the_same_host_keeps_the_credential(
    vault: Vault, upstreams: tuple[Upstream, Upstream]
) -> None:
    allowed, _ = upstreams
    _http(vault, "bot", "api", "GET", f"http://127.0.0.1:{allowed.port}/redirect-home")
    assert [s["path"] for s in allowed.seen] == ["/redirect-home", "/echo"]
    assert all(s.get("authorization") == f"Bearer {CANARY}" for s in allowed.seen)


def test_a_host_the_credential_does_not_name_is_refused_and_nothing_is_sent(
    vault: Vault, upstreams: tuple[Upstream, Upstream]
) -> None:
    _, other = upstreams
    with pytest.raises(PolicyDeniedError, match="only sent to"):
        _http(vault, "bot", "api", "GET", f"http://127.0.0.1:{other.port}/echo")
    assert other.seen == []


def test_plain_http_to_a_non_loopback_host_is_refused(vault: Vault) -> None:
    credentials.add_credential(
        vault,
        "remote",
        SecretBytes(bytearray(b"remote-secret")),
        hosts=["api.example.com"],
        attach=Attachment.bearer(),
    )
    with pytest.raises(PolicyDeniedError, match="over https"):
        _http(vault, "bot", "remote", "GET", "http://api.example.com/x")


def test_policy_method_rule_denies_post(vault: Vault, upstreams: tuple[Upstream, Upstream]) -> None:
    allowed, _ = upstreams
    with pytest.raises(PolicyDeniedError):
        _http(vault, "bot", "api", "POST", f"http://127.0.0.1:{allowed.port}/echo", body="{}")


def test_ask_rule_parks_then_approval_runs_it(
    vault: Vault, upstreams: tuple[Upstream, Upstream]
) -> None:
    allowed, _ = upstreams
    res = _call(vault, "bot", "api", "GET", f"http://127.0.0.1:{allowed.port}/admin/x")
    assert isinstance(res, PendingApproval) and allowed.seen == []
    done = approvals.approve(vault, res.approval_id)
    assert done.status == "approved" and done.result is not None
    assert done.result["status_code"] == 200
    assert CANARY not in json.dumps(done.for_owner())


@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_an_answer_over_the_cap_is_an_error_and_still_counts(
    vault: Vault, upstreams: tuple[Upstream, Upstream], path: str
) -> None:
    allowed, _ = upstreams
    settings.set_max_response(vault, CAP)
    with pytest.raises(PayloadTooLargeError, match="over keysafe's 4 KiB response cap"):
        _http(vault, "bot", "api", "GET", f"http://127.0.0.1:{allowed.port}{path}")
    with vault.db.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(t.audit.select())]
        states = [r.state for r in conn.execute(t.ledger.select())]
    assert states in ([], ["committed"])  # the upstream answered: the call counts
    done = [r for r in rows if r["action"] == "http.request"]
    facts = json.loads(done[-1]["details"])
    assert done[-1]["outcome"] == "failure" and facts["code"] == "PAYLOAD_TOO_LARGE"
    assert facts["ended"] == "cap" and facts["status"] == 200


def test_a_binary_body_goes_and_comes_back_byte_for_byte(
    vault: Vault, upstreams: tuple[Upstream, Upstream]
) -> None:
    allowed, _ = upstreams
    blob = bytes(range(256)) * 4
    res = _http(
        vault,
        "bot",
        "api",
        "GET",
        f"http://127.0.0.1:{allowed.port}/bytes",
        body_base64=base64.b64encode(blob).decode(),
    )
    assert res.body is None and base64.b64decode(res.body_base64 or "") == blob[::-1]
    assert allowed.seen[-1]["body"] == blob.hex()


SPLIT_SECRET = "sk-split-0123456789abcdef"
FORMS = proxy._secret_forms(SPLIT_SECRET, {"type": "bearer"})


@pytest.mark.parametrize("form", FORMS, ids=["base64", "plain"])
def test_attack_a_secret_split_at_every_point_across_chunks_never_passes(form: str) -> None:
    text = f"data: before {form} after\n\n".encode()
    for cut in range(1, len(text)):
        for second in range(cut + 1, len(text) + 1):  # and a third chunk, anywhere after
            scrub = Scrubber(FORMS)
            out = b"".join(
                [scrub.feed(text[:cut]), scrub.feed(text[cut:second]), scrub.feed(text[second:])]
            )
            out += scrub.flush()
            assert out == f"data: before {REDACTED} after\n\n".encode(), (cut, second)


def test_scrubber_holds_back_only_what_could_start_a_secret() -> None:
    scrub = Scrubber(FORMS)
    assert scrub.feed(b"data: one\n\n") == b"data: one\n\n"  # a whole event passes at once
    assert scrub.feed(b"data: sk-spl") == b"data: "  # could be the secret: held
    assert scrub.feed(b"endid\n\n") == b"sk-splendid\n\n"  # was not: passed on


def test_audit_records_the_call_but_never_the_secret(
    vault: Vault, upstreams: tuple[Upstream, Upstream]
) -> None:
    allowed, _ = upstreams
    _http(vault, "bot", "api", "GET", f"http://127.0.0.1:{allowed.port}/echo?q=1")
    with vault.db.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(t.audit.select())]
    calls = [r for r in rows if r["action"] == "http.request"]
    assert calls and json.loads(calls[-1]["details"])["status"] == 200
    assert json.loads(calls[-1]["details"])["path"] == "/echo"
    assert CANARY not in json.dumps(rows)


def test_unreachable_upstream_is_audited_as_failure_and_leaves_no_spend(
    vault: Vault, upstreams: tuple[Upstream, Upstream], tmp_path: Path
) -> None:
    import socket

    from keysafe.errors import UpstreamUnavailableError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed once the block ends: nothing listens there
    credentials.add_credential(
        vault,
        "dead",
        SecretBytes(bytearray(b"dead-secret-123")),
        hosts=[f"127.0.0.1:{dead}"],
        attach=Attachment.bearer(),
    )
    policies.set_policy(
        vault,
        "bot",
        "version: 1\nrules:\n  - name: dead\n    allow: [http.request]\n    credentials: [dead]\n"
        "    limits: [{window: 1h, max_count: 5}]\n",
    )
    with pytest.raises(UpstreamUnavailableError):
        _http(vault, "bot", "dead", "GET", f"http://127.0.0.1:{dead}/x")
    with vault.db.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(t.audit.select())]
        states = [r.state for r in conn.execute(t.ledger.select())]
    assert states == ["released"]
    failed = [r for r in rows if r["action"] == "http.request" and r["outcome"] == "failure"]
    assert failed and "dead-secret-123" not in json.dumps(rows)


def test_an_unsealed_cap_is_honoured_only_downwards(vault: Vault) -> None:
    with vault.db.write() as conn:  # as if written into the file, without the owner's seal
        conn.execute(t.settings.insert().values(key="max_response", value=str(10**8), mac=None))
    with vault.db.read() as conn:
        assert settings.response_cap(vault, conn) == settings.DEFAULT_MAX_RESPONSE
    with vault.db.write() as conn:
        conn.execute(t.settings.update().values(value="2048"))
    with vault.db.read() as conn:
        assert settings.response_cap(vault, conn) == 2048
    settings.set_max_response(vault, 10**8)  # sealed: honoured as set
    with vault.db.read() as conn:
        assert settings.response_cap(vault, conn) == 10**8
    with vault.db.write() as conn:  # a sealed value edited in the file: refused, not ignored
        conn.execute(t.settings.update().values(value=str(10**8 + 1)))
    with vault.db.read() as conn, pytest.raises(IntegrityError, match="response cap"):
        settings.response_cap(vault, conn)


def test_attack_the_agent_cannot_ask_for_an_encoding_keysafe_cannot_undo(
    vault: Vault, upstreams: tuple[Upstream, Upstream]
) -> None:
    """Brotli (or zstd) bodies pass httpx undecoded when its codecs are not installed: the
    scrubber would see compressed bytes, and the agent could decompress the echoed key."""
    allowed, _ = upstreams
    res = _http(
        vault,
        "bot",
        "api",
        "GET",
        f"http://127.0.0.1:{allowed.port}/cdn",
        headers={"Accept-Encoding": "br, zstd"},
    )
    assert allowed.seen[-1]["accept-encoding"] == ACCEPT_ENCODING
    assert CANARY not in _out(res)


def test_attack_an_answer_keysafe_cannot_decode_is_refused_and_still_counts(
    vault: Vault, upstreams: tuple[Upstream, Upstream]
) -> None:
    allowed, _ = upstreams
    with pytest.raises(PolicyDeniedError) as caught:
        _http(vault, "bot", "api", "GET", f"http://127.0.0.1:{allowed.port}/forced-br")
    assert caught.value.facts.get("reason_code") == "UNCHECKABLE_ANSWER"
    assert "call itself was made" in str(caught.value) and CANARY not in str(caught.value)
    with vault.db.read() as conn:
        outcome = conn.execute(
            t.audit.select()
            .where(t.audit.c.action == "http.request")
            .order_by(t.audit.c.seq.desc())
        ).first()
    assert outcome is not None and outcome.outcome != "success"
