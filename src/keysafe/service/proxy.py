"""Use, not possession, for API keys: keysafe makes the HTTP call with the credential attached
and returns the response with the secret scrubbed out.

Rules this module enforces:
- The credential goes only to the hosts it names (`host[:port]`), over https; plain http only to
  loopback hosts (local services, tests). A redirect is followed, but the credential is attached
  only on hops to an allowed host; it never follows the agent anywhere else.
- The policy decides first (`http.request` with credential, method and URL); an `ask` parks the
  request for the owner like any other.
- The secret is scrubbed from the response headers and body (also in its Basic-auth, base64 and
  URL-encoded forms) before anything returns; bodies are capped at 1 MiB; timeouts are set.
- Every call is audited with method, host, path, status and size: never the secret or bodies.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

import httpx

from keysafe.approvals import Kind
from keysafe.errors import (
    ChainUnavailableError,
    MalformedRequestError,
    PolicyDeniedError,
)
from keysafe.policy import urls
from keysafe.policy.intent import Intent
from keysafe.service import gate
from keysafe.service.models import HttpRequestRequest, RecordKind, SecretBytes
from keysafe.vault.vault import RecordInfo, Vault

logger = logging.getLogger(__name__)

MAX_RESPONSE: Final = 1024 * 1024
MAX_REDIRECTS: Final = 5
TIMEOUT: Final = httpx.Timeout(15.0, connect=5.0)
_HOP_BY_HOP: Final = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "authorization", "cookie",
})  # fmt: skip
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REDACTED: Final = "[redacted by keysafe]"
# The body is returned decoded (httpx undoes gzip/br) and re-framed, so these would lie.
_NOT_RETURNED: Final = frozenset(
    {"set-cookie", "transfer-encoding", "content-length", "connection", "content-encoding"}
)


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: str  # done | pending_approval
    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    truncated: bool = False
    approval_id: str | None = None
    expires_at: str | None = None
    summary: str = ""
    redirects: int = 0  # hops followed (audited; not part of the agent's answer)

    def to_dict(self) -> dict[str, Any]:
        if self.status == "pending_approval":
            return {"status": self.status, "approval_id": self.approval_id,
                    "expires_at": self.expires_at, "summary": self.summary}  # fmt: skip
        return {"status_code": self.status_code, "headers": self.headers, "body": self.body,
                "truncated": self.truncated}  # fmt: skip


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
    host = str(info.meta.get("hosts", [""])[0])
    if host.startswith("*."):
        raise MalformedRequestError(
            f"Credential '{info.name}' names a wildcard host ({host}), so a bare path has no host.",
            next_step="pass a full https:// URL on one of its hosts.",
        )
    scheme = "http" if _is_loopback(host.rsplit(":", 1)[0]) else "https"
    return f"{scheme}://{host}{url}"


def _allowed(info: RecordInfo, scheme: str, host: str, port: int) -> bool:
    """May the secret go to scheme://host:port? Only to the credential's own hosts, and in clear
    only on loopback."""
    if scheme == "http" and not _is_loopback(host):
        return False
    default = 443 if scheme == "https" else 80
    for entry in info.meta.get("hosts", []):
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


def _read_scrubbed(r: httpx.Response, forms: list[str]) -> tuple[str, bool]:
    """The answer's body, scrubbed, cut to MAX_RESPONSE characters: (text, truncated).

    The scrub runs before the cut, over enough extra bytes to hold any secret form that starts
    before the cut whole; a tail that is still the start of a form is redacted too, so a cut never
    leaves a secret minus its last characters.
    """
    margin = max((len(f.encode()) for f in forms), default=0) + 4  # + a split UTF-8 character
    raw = bytearray()
    for chunk in r.iter_bytes():
        raw += chunk
        if len(raw) > MAX_RESPONSE + margin:
            break
    text = _scrub(bytes(raw).decode("utf-8", "replace"), forms)
    if len(raw) <= MAX_RESPONSE:
        return text, False
    text = text[:MAX_RESPONSE]
    tail = max(
        (k for f in forms for k in range(1, min(len(f), len(text) + 1)) if text.endswith(f[:k])),
        default=0,
    )
    return (text[:-tail] + REDACTED if tail else text), True


def _http_facts(r: HttpResult) -> dict[str, Any]:
    return {"status": r.status_code, "bytes": len(r.body or ""), "redirects": r.redirects}


# HTTP calls carry no idempotency key today; the codec still round-trips a result exactly.
_CODEC: gate.Codec[HttpResult] = gate.Codec(
    dump=lambda r: r.to_dict() | {"status": r.status, "redirects": r.redirects},
    load=lambda d: HttpResult(
        str(d["status"]),
        d.get("status_code"),
        dict(d.get("headers") or {}),
        d.get("body"),
        bool(d.get("truncated")),
        redirects=int(d.get("redirects") or 0),
    ),
    facts=_http_facts,
    view=HttpResult.to_dict,
)


def http_request(
    vault: Vault,
    agent: str,
    credential: str,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    approval_id: str | None = None,
    transport: httpx.BaseTransport | None = None,
    dry_run: bool = False,
) -> HttpResult:
    """Make `agent`'s HTTP call with `credential` attached, if its policy allows it; the answer
    comes back with the secret scrubbed out."""
    vault.require_unlocked()
    method = method.upper()
    if method not in METHODS:
        raise MalformedRequestError(
            f"'{method[:10]}' is not an HTTP method keysafe sends.",
            next_step=f"use one of {', '.join(sorted(METHODS))}.",
        )
    with vault.db.read() as conn:
        info = vault.get_record(conn, RecordKind.CREDENTIAL, credential)
    url = _absolute(info, url)
    scheme, host, port = _target(url)
    url = _canonical(url)  # from here on, the URL that is judged is the URL that is sent
    if not _allowed(info, scheme, host, port):
        raise PolicyDeniedError(
            f"Credential '{credential}' is only sent to {', '.join(info.meta.get('hosts', []))}"
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
        credential=credential, method=method, url=url, headers=headers, body=body
    )
    req = gate.Request(
        agent=agent, kind=Kind.HTTP_REQUEST, wire=wire, intent=intent,
        payload=gate.fingerprint_of(method, url, body or ""),  # what is sent, exactly
        target=f"credential:{credential}", audit_action="http.request", approval_id=approval_id,
        facts={"name": credential, "method": method, "host": host, "path": path},
        reaches_out=True, dry_run=dry_run,
    )  # fmt: skip

    def act(_request_id: str) -> HttpResult:
        with vault.db.read() as conn, vault.open_record(conn, info) as secret:
            return _send(info, secret, method, url, headers or {}, body, transport)

    out = gate.run(vault, req, act, _CODEC)
    if isinstance(out, gate.Parked):
        return HttpResult("pending_approval", **out.pending())
    return out


def _attach(info: RecordInfo, secret: str, url: str, headers: dict[str, str]) -> str:
    attach = info.meta.get("attach", {})
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


def _send(
    info: RecordInfo,
    secret_buf: SecretBytes,
    method: str,
    url: str,
    agent_headers: dict[str, str],
    body: str | None,
    transport: httpx.BaseTransport | None,
) -> HttpResult:
    # httpx needs str headers: this copy of the secret lives only for the call (best effort).
    secret = bytes(secret_buf.reveal()).decode("utf-8", "replace")
    forms = _secret_forms(secret, info.meta.get("attach", {}))
    # The agent cannot set (or smuggle a second copy of) the header the credential goes in.
    attach = info.meta.get("attach", {})
    own = str(attach.get("name", "")).lower() if attach.get("type") == "header" else ""
    base = {
        k: v
        for k, v in agent_headers.items()
        if k.lower() not in _HOP_BY_HOP and not (k.lower() == own and own)
    }
    hops = 0
    current, current_method, current_body = url, method, body
    try:
        with httpx.Client(
            timeout=TIMEOUT, follow_redirects=False, transport=transport, verify=_tls_context()
        ) as client:
            while True:
                scheme, host, port = _target(current)
                headers = dict(base)
                target = current
                if _allowed(info, scheme, host, port):
                    target = _attach(info, secret, current, headers)
                with client.stream(current_method, target, headers=headers,
                                   content=current_body.encode() if current_body is not None else None) as r:  # fmt: skip
                    following = (
                        _without_secret(urljoin(current, r.headers["location"]), forms)
                        if r.is_redirect and hops < MAX_REDIRECTS and "location" in r.headers
                        else None
                    )
                    if following is not None:
                        hops += 1
                        current = following
                        if r.status_code in (301, 302, 303) and current_method != "HEAD":
                            current_method, current_body = "GET", None
                        continue
                    text, truncated = _read_scrubbed(r, forms)
                    out_headers = {
                        k: _scrub(v, forms)
                        for k, v in r.headers.items()
                        if k.lower() not in _NOT_RETURNED
                    }
                    return HttpResult(
                        "done", r.status_code, out_headers, text, truncated, redirects=hops
                    )
    except httpx.HTTPError as exc:
        raise ChainUnavailableError(
            f"The call to {urlsplit(current).hostname} failed ({type(exc).__name__}).",
            next_step="check the service is reachable, then retry.",
        ) from None
    finally:
        del secret
