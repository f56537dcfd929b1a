"""Use, not possession, for API keys: keysafe makes the HTTP call with the credential attached
and returns the response with the secret scrubbed out.

Rules this module enforces:
- The credential goes only to the hosts it names (`host[:port]`), over https; plain http only to
  loopback hosts (local services, tests). A redirect is followed, but the credential is attached
  only on hops to an allowed host; it never follows the agent anywhere else.
- The policy decides first (`http.request` with credential, method and URL); an `ask` parks the
  request for the owner like any other.
- The secret is scrubbed from the response headers and body (also in its Basic-auth, base64 and
  URL-encoded forms) before anything returns. The body is scrubbed as bytes, chunk by chunk:
  the end of a chunk that could be the start of a secret form is held back until the next chunk
  shows whether it is one, so a secret split across chunks is caught and a stream still flows.
- Bodies are bytes both ways (an image upload or download arrives byte for byte); a JSON answer
  carries a body that is not UTF-8 as `body_base64`.
- The answer is capped (`keysafe serve --max-response`, default 10 MiB, service/settings.py):
  over the cap is an error, never a silently shortened body; a stream already under way is cut
  off (the client sees an incomplete response) and audited as such. Timeouts are set.
- Calls share one HTTP client per unlocked vault (kept-alive connections, per upstream origin):
  the connection pool matches scheme, host and port exactly, so a request only ever travels on
  a connection to its own URL's host, and whether the credential goes with it is decided per
  hop as above. The shared client keeps no cookies (its jar refuses them all); a call's own
  redirect hops carry the cookies that call received, as before, and nothing outlives the call.
  Locking the vault retires the client (vault.volatile): it is closed once the calls under way
  have ended, and the next unlock makes a new one.
- Every call is audited once, with method, host, path, status, body size, and how it ended:
  never the secret or bodies. A call the upstream answered counts against the budget even when
  its answer was over the cap or the client stopped reading.

    stream = http_stream(vault, "bot", "openai", "POST", "/v1/chat/completions", body=b"…")
    if isinstance(stream, HttpStream):
        try:
            for chunk in stream.chunks():  # scrubbed bytes, as the upstream sends them
                ...
        finally:
            stream.close()  # settles and audits the call: always call it
"""

from __future__ import annotations

import base64
import binascii
import functools
import http.cookiejar
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

import httpx

from keysafe.approvals import Kind
from keysafe.errors import (
    ChainUnavailableError,
    KeysafeError,
    MalformedRequestError,
    PayloadTooLargeError,
    PolicyDeniedError,
)
from keysafe.hosts import is_loopback
from keysafe.policy import urls
from keysafe.policy.intent import Intent
from keysafe.service import gate, settings
from keysafe.service.models import HttpRequestRequest, RecordKind, SecretBytes
from keysafe.service.record_meta import credential_meta
from keysafe.vault.vault import RecordInfo, Vault

logger = logging.getLogger(__name__)

MAX_REDIRECTS: Final = 5
# Read: the longest silence between two pieces of an answer. A model that thinks before its
# first token (or answers unstreamed) is silent for a minute and more; 15 s cut those off.
TIMEOUT: Final = httpx.Timeout(120.0, connect=5.0)
# Kept-alive upstream connections: no cap on how many (one agent's long streams must not make
# another agent's call wait for a free one), a few idle ones per host kept, and an idle one
# dropped before the 5 s many servers (Node's default) close theirs, so a kept connection is
# rarely closed under a request.
LIMITS: Final = httpx.Limits(
    max_connections=None, max_keepalive_connections=32, keepalive_expiry=4.0
)
_CLIENT: Final = "proxy.client"  # vault.volatile's key: the shared client, retired on lock
_HOP_BODY_MAX: Final = 64 * 1024  # a redirect's body read (and dropped) to keep its connection
_CLIENT_LOCK = threading.Lock()  # one client is made, however many calls start at once
_HOP_BY_HOP: Final = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "authorization", "cookie",
    # keysafe chooses the encodings (ACCEPT_ENCODING): an answer in one it cannot undo would reach
    # the agent without its secrets scrubbed.
    "accept-encoding",
})  # fmt: skip
# What httpx undoes without optional packages; the scrubber must see the plain body.
ACCEPT_ENCODING: Final = "gzip, deflate"
_DECODED: Final = frozenset({"identity", "gzip", "x-gzip", "deflate"})
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REDACTED: Final = "[redacted by keysafe]"
_REDACTED_BYTES: Final = REDACTED.encode()
# The body is returned decoded (httpx undoes gzip/br) and re-framed, so these would lie.
_NOT_RETURNED: Final = frozenset(
    {"set-cookie", "transfer-encoding", "content-length", "connection", "content-encoding"}
)


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: str  # done | pending_approval
    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # the body when it is UTF-8 text
    body_base64: str | None = None  # the body when it is not (an image, a zip): its bytes
    approval_id: str | None = None
    expires_at: str | None = None
    summary: str = ""
    redirects: int = 0  # hops followed (audited; not part of the agent's answer)
    size: int = 0  # bytes the upstream sent (audited; not part of the agent's answer)

    def to_dict(self) -> dict[str, Any]:
        if self.status == "pending_approval":
            return {"status": self.status, "approval_id": self.approval_id,
                    "expires_at": self.expires_at, "summary": self.summary}  # fmt: skip
        out: dict[str, Any] = {"status_code": self.status_code, "headers": self.headers}
        if self.body_base64 is not None:
            out["body_base64"] = self.body_base64
        else:
            out["body"] = self.body
        return out


def _target(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise MalformedRequestError(
            "Only http(s) URLs with a host can be called.", next_step="pass a full https:// URL."
        )
    if parts.username or parts.password:
        raise MalformedRequestError(
            "URLs with user:password@ are refused.", next_step="the credential is attached for you."
        )
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise MalformedRequestError(
            "The URL's port is not a number.", next_step="fix the URL."
        ) from None
    return scheme, parts.hostname.lower(), port


def _canonical(url: str) -> str:
    try:
        return urls.canonical(url)
    except urls.BadUrl as exc:
        raise MalformedRequestError(
            f"The URL cannot be judged as it is written: {exc}. Nothing was sent.",
            next_step="send the plain path (no encoded '/', '\\' or ';'); keysafe sends exactly "
            "the URL its policy judged.",
        ) from None


def _absolute(info: RecordInfo, url: str) -> str:
    """A bare path ("/v1/models") goes to the credential's first host: how the local proxy's
    per-credential routes reach it without knowing the hosts themselves."""
    if not url.startswith("/") or url.startswith("//"):
        return url
    host = credential_meta(info).hosts[0]
    if host.startswith("*."):
        raise MalformedRequestError(
            f"Credential '{info.name}' names a wildcard host ({host}), so a bare path has no host.",
            next_step="pass a full https:// URL on one of its hosts.",
        )
    scheme = "http" if is_loopback(host.rsplit(":", 1)[0]) else "https"
    return f"{scheme}://{host}{url}"


def _allowed(info: RecordInfo, scheme: str, host: str, port: int) -> bool:
    """May the secret go to scheme://host:port? Only to the credential's own hosts, and in clear
    only on loopback."""
    if scheme == "http" and not is_loopback(host):
        return False
    default = 443 if scheme == "https" else 80
    for entry in credential_meta(info).hosts:
        name, _, p = entry.partition(":")
        want_port = int(p) if p else default
        if want_port != port:
            continue
        if name == host or (name.startswith("*.") and host.endswith(name[1:]) and host != name[2:]):
            return True
    return False


def _secret_forms(secret: str, attach: dict[str, Any]) -> list[str]:
    forms = {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}
    if attach.get("type") == "basic":
        forms.add(base64.b64encode(f"{attach['name']}:{secret}".encode()).decode())
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


def _scrub(text: str, forms: list[str]) -> str:
    for f in forms:
        text = text.replace(f, REDACTED)
    return text


class Scrubber:
    """Takes every secret form out of a byte stream, however the stream is cut into chunks.

    Each chunk is scrubbed together with what was held back from the one before; then the
    longest tail that is the start of a form (and only that) is held back again, since the next
    chunk may complete it. A form that ends inside the buffer has been replaced, and one that
    runs past its end starts inside the held tail, so no form reaches the output whole. Text
    that cannot start a form (an SSE event's closing blank line) is never held: events still
    arrive as they are sent.
    """

    def __init__(self, forms: list[str]) -> None:
        self._forms = [f.encode() for f in forms]  # longest first, as _secret_forms sorts them
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        """The scrubbed bytes of `chunk` that are safe to pass on now."""
        buf = self._held + chunk
        for f in self._forms:
            buf = buf.replace(f, _REDACTED_BYTES)
        keep = self._start_of_form(buf)
        self._held = buf[len(buf) - keep :] if keep else b""
        return buf[: len(buf) - keep]

    def flush(self) -> bytes:
        """What is still held at the end of a complete body (the start of a form, never a whole
        one). A body cut short (over the cap, or broken) is not flushed."""
        out, self._held = self._held, b""
        return out

    def _start_of_form(self, buf: bytes) -> int:
        """The length of the longest tail of `buf` that is a proper prefix of a form."""
        if not buf:
            return 0
        best, last = 0, buf[-1:]
        for f in self._forms:
            # Only the prefixes that end in buf's last byte can match: find those, not all.
            k = f.find(last, 0, len(f) - 1)
            while k != -1:
                n = k + 1
                if n > best and n <= len(buf) and buf.endswith(f[:n]):
                    best = n
                k = f.find(last, k + 1, len(f) - 1)
        return best


def _over_cap(host: str, status: int, cap: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The answer from {host} (HTTP {status}) is over keysafe's {_size(cap)} response cap, so "
        "it was not passed on. The call itself was made.",
        next_step="ask for less (a page, a range, a smaller size), or ask the owner to raise the "
        "cap (`keysafe serve --max-response BYTES`).",
        cap_bytes=cap,
    )


def _size(n: int) -> str:
    mib, rest = divmod(n, 1024 * 1024)
    if not rest:
        return f"{mib} MiB"
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n}-byte"


def _http_facts(r: HttpResult) -> dict[str, Any]:
    return {"status": r.status_code, "bytes": r.size, "redirects": r.redirects}


# HTTP calls carry no idempotency key today; the codec still round-trips a result exactly.
_CODEC: gate.Codec[HttpResult] = gate.Codec(
    dump=lambda r: r.to_dict() | {"status": r.status, "redirects": r.redirects, "size": r.size},
    load=lambda d: HttpResult(
        str(d["status"]),
        d.get("status_code"),
        dict(d.get("headers") or {}),
        d.get("body"),
        d.get("body_base64"),
        redirects=int(d.get("redirects") or 0),
        size=int(d.get("size") or 0),
    ),
    facts=_http_facts,
    view=HttpResult.to_dict,
)


class HttpStream:
    """An upstream answer on its way: status and headers now, the scrubbed body as it arrives.

    `chunks()` yields the body and raises PayloadTooLargeError past the cap, ChainUnavailableError
    when the upstream breaks off; `close()` must follow (in a `finally`), whatever happened: it
    frees the connection and settles and audits the call, once.
    """

    def __init__(
        self,
        vault: Vault,
        req: gate.Request,
        request_id: str,
        release: Callable[[], None],
        response: httpx.Response,
        scrubber: Scrubber,
        *,
        host: str,
        headers: dict[str, str],
        redirects: int,
        cap: int,
    ) -> None:
        self.status_code = response.status_code
        self.headers = headers
        self.redirects = redirects
        self._vault, self._req, self._rid = vault, req, request_id
        self._release, self._response, self._scrubber = release, response, scrubber
        self._host, self._cap = host, cap
        self._size = 0
        self._ended = "client_closed"  # until the body ends or fails
        self._failure: KeysafeError | None = None
        self._settled = False

    def chunks(self) -> Iterator[bytes]:
        """The body, scrubbed, chunk by chunk as the upstream sends it.

        Raises:
            PayloadTooLargeError: the body went past the response cap (nothing more is sent).
            ChainUnavailableError: the upstream broke off or timed out.
        """
        try:
            for chunk in self._response.iter_bytes():
                self._size += len(chunk)
                if self._size > self._cap:
                    # The held tail is dropped with the rest: a cut never passes on the start
                    # of a secret form.
                    raise self.refuse_over_cap()
                out = self._scrubber.feed(chunk)
                if out:
                    yield out
        except httpx.HTTPError as exc:
            raise self._fail(
                "upstream_failed",
                ChainUnavailableError(
                    f"The answer from {self._host} broke off ({type(exc).__name__}).",
                    next_step="retry; if it keeps happening, check the service.",
                ),
            ) from None
        tail = self._scrubber.flush()
        self._ended = "complete"
        if tail:
            yield tail

    def declared_over_cap(self) -> bool:
        """The upstream says (Content-Length, no compression) that its body is over the cap."""
        length = self._response.headers.get("content-length", "")
        encoded = self._response.headers.get("content-encoding", "identity") != "identity"
        return length.isdigit() and not encoded and int(length) > self._cap

    def undecodable(self) -> str | None:
        """A content coding of the answer keysafe cannot undo (so cannot scrub), or None."""
        codings = self._response.headers.get("content-encoding", "")
        for coding in (c.strip().lower() for c in codings.split(",")):
            if coding and coding not in _DECODED:
                return str(coding)[:20]
        return None

    def refuse_encoding(self, coding: str) -> KeysafeError:
        return self._fail(
            "undecodable",
            PolicyDeniedError(
                f"The answer from {self._host} is encoded as '{coding}', which keysafe cannot "
                "check for the credential, so it was not passed on. The call itself was made.",
                next_step="retry without asking for that encoding; keysafe asks for gzip or "
                "deflate itself.",
                reason_code="UNCHECKABLE_ANSWER",
            ),
        )

    def refuse_over_cap(self) -> KeysafeError:
        return self._fail("cap", _over_cap(self._host, self.status_code, self._cap))

    @property
    def size(self) -> int:
        """Body bytes received from the upstream so far."""
        return self._size

    def _fail(self, how: str, err: KeysafeError) -> KeysafeError:
        if self._failure is None:
            self._ended, self._failure = how, err
        return err

    def close(self, result: HttpResult | None = None) -> None:
        """Free the upstream connection and settle the call (once): committed, since the
        upstream answered; audited with its status, size and how it ended. `result` is the
        buffered answer, stored for an approval that ran this call."""
        if self._settled:
            return
        self._settled = True
        # How it ended, before the connection is closed: closing it under a reader that is still
        # waiting (the client went away) makes that reader fail, which is not how it ended.
        failure = self._failure
        facts = {"status": self.status_code, "bytes": self._size, "redirects": self.redirects,
                 "ended": self._ended}  # fmt: skip
        try:
            try:
                self._response.close()  # back to the pool when read to its end, else dropped
            finally:
                self._release()
        finally:
            if failure is not None:
                gate.settle(self._vault, self._req, self._rid, facts=facts,
                            failure=failure, spent=True)  # fmt: skip
            elif result is not None:
                gate.settle(self._vault, self._req, self._rid, result=_CODEC.dump(result),
                            facts=facts, view=result.to_dict())  # fmt: skip
            else:
                gate.settle(self._vault, self._req, self._rid, facts=facts)


@dataclass(frozen=True, slots=True)
class _Call:
    """One HTTP call, checked and judged-ready: what the gate decides on and `_open` sends."""

    info: RecordInfo
    req: gate.Request
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    cap: int


def _body_bytes(body: str | None, body_base64: str | None) -> bytes | None:
    if body is not None and body_base64 is not None:
        raise MalformedRequestError(
            "A request has one body: 'body' (text) or 'body_base64' (bytes), not both.",
            next_step="send only one of them.",
        )
    if body_base64 is None:
        return body.encode() if body is not None else None
    try:
        return base64.b64decode(body_base64, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequestError(
            "'body_base64' is not base64.", next_step="send the body's bytes base64-encoded."
        ) from None


def _prepare(
    vault: Vault,
    agent: str,
    credential: str,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None,
    body: str | None,
    body_base64: str | None,
    approval_id: str | None,
    dry_run: bool,
) -> _Call:
    vault.require_unlocked()
    method = method.upper()
    if method not in METHODS:
        raise MalformedRequestError(
            f"'{method[:10]}' is not an HTTP method keysafe sends.",
            next_step=f"use one of {', '.join(sorted(METHODS))}.",
        )
    raw = _body_bytes(body, body_base64)
    with vault.db.read() as conn:
        info = vault.get_record(conn, RecordKind.CREDENTIAL, credential)
        cap = settings.response_cap(vault, conn)
    url = _absolute(info, url)
    scheme, host, port = _target(url)
    url = _canonical(url)  # from here on, the URL that is judged is the URL that is sent
    if not _allowed(info, scheme, host, port):
        raise PolicyDeniedError(
            f"Credential '{credential}' is only sent to {', '.join(credential_meta(info).hosts)}"
            + (" over https" if scheme == "http" else "")
            + f"; this request goes to {scheme}://{host}:{port}. Nothing was sent.",
            next_step="call one of the credential's hosts, or ask the owner to add this host.",
            reason_code="HOST_NOT_ALLOWED",
        )
    path = urlsplit(url).path or "/"
    what = f"{method} {host}{path} with credential {credential}"
    intent = Intent(
        action="http.request", credential=credential, method=method, url=url, summary=what[:500]
    )
    wire = HttpRequestRequest(
        credential=credential, method=method, url=url, headers=headers, body=body,
        body_base64=body_base64,
    )  # fmt: skip
    # What is sent, exactly: a text body as before (approvals parked earlier keep their
    # fingerprint), a binary one as its bytes.
    sent: str | bytes = (raw or b"") if body_base64 is not None else (body or "")
    req = gate.Request(
        agent=agent, kind=Kind.HTTP_REQUEST, wire=wire, intent=intent,
        payload=gate.fingerprint_of(method, url, sent),
        target=f"credential:{credential}", audit_action="http.request", approval_id=approval_id,
        facts={"name": credential, "method": method, "host": host, "path": path},
        reaches_out=True, dry_run=dry_run,
    )  # fmt: skip
    return _Call(info, req, method, url, headers or {}, raw, cap)


def _admit_and_open(
    vault: Vault, call: _Call, transport: httpx.BaseTransport | None
) -> HttpResult | HttpStream:
    """Steps 1–5 of the gate, then the call up to the upstream's headers."""
    if call.req.dry_run:
        gate.run(vault, call.req, _never, _CODEC)  # raises DryRun with the decision
    admission = gate.admit(vault, call.req)
    if admission.replay is not None:
        return _CODEC.load(admission.replay)
    if admission.parked is not None:
        return HttpResult("pending_approval", **admission.parked.pending())
    gate.raise_denied(admission.decision, call.req.agent)
    try:
        with vault.db.read() as conn, vault.open_record(conn, call.info) as secret:
            stream = _open(vault, call, admission.request_id, secret, transport)
    except BaseException as exc:
        # Nothing came back from the upstream: the reservation is released.
        gate.settle(vault, call.req, admission.request_id, failure=exc)
        raise
    coding = stream.undecodable()
    if coding is not None or stream.declared_over_cap():
        try:
            raise stream.refuse_encoding(coding) if coding else stream.refuse_over_cap()
        finally:
            stream.close()
    return stream


def _never(_request_id: str) -> HttpResult:  # pragma: no cover - a dry run never acts
    raise AssertionError("a dry run does not act")


def http_request(
    vault: Vault,
    agent: str,
    credential: str,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    body_base64: str | None = None,
    approval_id: str | None = None,
    transport: httpx.BaseTransport | None = None,
    dry_run: bool = False,
) -> HttpResult:
    """Make `agent`'s HTTP call with `credential` attached, if its policy allows it; the whole
    answer comes back with the secret scrubbed out (the MCP tool, JSON clients, approvals).

    Args:
        body: a text body; body_base64: a binary one (not both).
        approval_id: the owner approved this parked call; it runs now.
        transport: httpx transport (tests).
        dry_run: decide only (raises gate.DryRun).

    Raises:
        PolicyDeniedError: the host or the policy refuses it (nothing was sent).
        PayloadTooLargeError: the answer is over the response cap (the call was made).
        ChainUnavailableError: the upstream could not be reached or broke off.
    """
    call = _prepare(
        vault, agent, credential, method, url, headers=headers, body=body,
        body_base64=body_base64, approval_id=approval_id, dry_run=dry_run,
    )  # fmt: skip
    opened = _admit_and_open(vault, call, transport)
    if isinstance(opened, HttpResult):
        return opened
    try:
        raw = b"".join(opened.chunks())
    except BaseException:
        opened.close()
        raise
    try:
        text, b64 = raw.decode("utf-8"), None
    except UnicodeDecodeError:
        text, b64 = None, base64.b64encode(raw).decode()
    res = HttpResult(
        "done", opened.status_code, opened.headers, text, b64,
        redirects=opened.redirects, size=opened.size,
    )  # fmt: skip
    opened.close(res)
    return res


def http_stream(
    vault: Vault,
    agent: str,
    credential: str,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    body_base64: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> HttpResult | HttpStream:
    """The same call as `http_request`, answered as a stream: an HttpStream once the upstream's
    headers are in (the caller iterates `chunks()` and must `close()` it), or the
    pending_approval HttpResult when the owner must approve first.

    Raises:
        PolicyDeniedError: the host or the policy refuses it (nothing was sent).
        PayloadTooLargeError: the upstream declared a body over the cap (the call was made).
        ChainUnavailableError: the upstream could not be reached.
    """
    call = _prepare(
        vault, agent, credential, method, url, headers=headers, body=body,
        body_base64=body_base64, approval_id=None, dry_run=False,
    )  # fmt: skip
    return _admit_and_open(vault, call, transport)


def _attach(info: RecordInfo, secret: str, url: str, headers: dict[str, str]) -> str:
    attach = credential_meta(info).attach
    kind, name, template = (
        attach.get("type"),
        attach.get("name", ""),
        attach.get("template", "{secret}"),
    )
    if kind == "header":
        headers[name] = template.replace("{secret}", secret)
    elif kind == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()
    elif kind == "query":
        parts = urlsplit(url)
        extra = urlencode({name: secret})
        url = urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))
    return url


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """The system's CA bundle, loaded once: building it was most of a proxied call's cost.
    (A cache of a read-only trust store, not state: it never changes while keysafe runs.)"""
    return httpx.create_ssl_context()


def _without_secret(url: str, forms: list[str]) -> str | None:
    """A redirect target with the secret taken out (a server that keeps the query string would
    otherwise carry a query-attached key to the next host); None when the secret sits elsewhere
    in the URL and cannot be taken out: the redirect is then not followed."""
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not any(f in v or f in k for f in forms)
    ]
    clean = urlunsplit(parts._replace(query=urlencode(query)))
    return None if any(f in clean for f in forms) else clean


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """The shared client's jar policy: no cookie is ever stored or sent, so nothing one call
    (one agent, one credential) received can reach another call."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def _new_client(transport: httpx.BaseTransport | None) -> httpx.Client:
    return httpx.Client(
        timeout=TIMEOUT, follow_redirects=False, transport=transport, verify=_tls_context(),
        limits=LIMITS, cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
    )  # fmt: skip


class _Shared:
    """The vault's shared client and the calls using it. Locking the vault retires it
    (`close`, from Vault.lock): no new call takes it, and it is closed, connections and all,
    as soon as the calls already under way have ended, so a lock does not cut off a call
    (a long stream) that was sent before it, as none was before the client was shared."""

    def __init__(self) -> None:
        self.client = _new_client(None)
        self._calls = 0
        self._retired = False
        self._guard = threading.Lock()

    def acquire(self) -> httpx.Client | None:
        """The client for one more call, or None once retired."""
        with self._guard:
            if self._retired:
                return None
            self._calls += 1
            return self.client

    def release(self) -> None:
        with self._guard:
            self._calls -= 1
            done = self._retired and self._calls == 0
        if done:
            self.client.close()

    def close(self) -> None:
        with self._guard:
            self._retired = True
            done = self._calls == 0
        if done:
            self.client.close()


def _client(
    vault: Vault, transport: httpx.BaseTransport | None
) -> tuple[httpx.Client, Callable[[], None]]:
    """The client for a call and what ends the call's use of it: the vault's shared client,
    made on first use; a client of the call's own (closed at its end) when a test passes a
    transport, or when the vault locked a moment ago."""
    if transport is None:
        with _CLIENT_LOCK:
            shared: _Shared | None = vault.volatile.get(_CLIENT)
            if shared is None and vault.is_unlocked:
                shared = vault.volatile[_CLIENT] = _Shared()
        client = shared.acquire() if shared is not None else None
        if shared is not None and client is not None:
            return client, shared.release
    own = _new_client(transport)
    return own, own.close


def _open(
    vault: Vault,
    call: _Call,
    request_id: str,
    secret_buf: SecretBytes,
    transport: httpx.BaseTransport | None,
) -> HttpStream:
    """Send the call (following redirects as the module docstring says) up to the final answer's
    headers; the body is left to the returned stream."""
    info = call.info
    # httpx needs str headers: this copy of the secret lives only while the call is sent (best
    # effort); the scrubber keeps its forms for as long as the answer streams.
    secret = bytes(secret_buf.reveal()).decode("utf-8", "replace")
    forms = _secret_forms(secret, credential_meta(info).attach)
    # The agent cannot set (or smuggle a second copy of) the header the credential goes in.
    attach = credential_meta(info).attach
    own = str(attach.get("name", "")).lower() if attach.get("type") == "header" else ""
    base = {
        k: v
        for k, v in call.headers.items()
        if k.lower() not in _HOP_BY_HOP and not (k.lower() == own and own)
    }
    hops = 0
    current, current_method, current_body = call.url, call.method, call.body
    client, release = _client(vault, transport)
    # This call's cookies: what one hop set goes to the next hop it matches (as a browser
    # would), and dies with the call; the shared client's own jar stays empty.
    jar = httpx.Cookies()
    r: httpx.Response | None = None
    try:
        while True:
            scheme, host, port = _target(current)
            headers = dict(base) | {"Accept-Encoding": ACCEPT_ENCODING}
            target = current
            if _allowed(info, scheme, host, port):
                target = _attach(info, secret, current, headers)
            request = client.build_request(
                current_method, target, headers=headers, content=current_body, cookies=jar
            )
            r = client.send(request, stream=True)
            jar.extract_cookies(r)
            following = (
                _without_secret(urljoin(current, r.headers["location"]), forms)
                if r.is_redirect and hops < MAX_REDIRECTS and "location" in r.headers
                else None
            )
            if following is None:
                final = r
                break
            _finish_hop(r)
            hops += 1
            current = following
            if r.status_code in (301, 302, 303) and current_method != "HEAD":
                current_method, current_body = "GET", None
    except httpx.HTTPError as exc:
        _drop(release, r)
        raise ChainUnavailableError(
            f"The call to {urlsplit(current).hostname} failed ({type(exc).__name__}).",
            next_step="check the service is reachable, then retry.",
        ) from None
    except BaseException:
        _drop(release, r)
        raise
    finally:
        del secret
    out_headers = {
        k: _scrub(v, forms) for k, v in final.headers.items() if k.lower() not in _NOT_RETURNED
    }
    return HttpStream(
        vault, call.req, request_id, release, final, Scrubber(forms),
        host=str(urlsplit(current).hostname), headers=out_headers, redirects=hops, cap=call.cap,
    )  # fmt: skip


def _finish_hop(response: httpx.Response) -> None:
    """Done with a redirect: a short body (most are empty) is read to its end so its kept-alive
    connection can carry the next hop; anything else is closed, and the connection with it
    (a connection is only ever reused after an answer read to its end)."""
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) <= _HOP_BODY_MAX:
        response.read()
    response.close()


def _drop(release: Callable[[], None], response: httpx.Response | None) -> None:
    """After a failed call: its last answer's connection is let go (never reused half-read),
    and the call's use of the client ends (the shared client stays for the next call)."""
    try:
        if response is not None:
            response.close()
    finally:
        release()
