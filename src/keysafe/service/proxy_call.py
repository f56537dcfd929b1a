"""One proxied HTTP call as the agent asked for it, checked and made ready for the gate
(service/proxy.py runs it).

Rules this module enforces:
- Only the HTTP methods in METHODS, and one body: text (`body`) or bytes (`body_base64`).
- The URL is made absolute (a bare path goes to the credential's first host), checked and put in
  its canonical form before anything judges it: the URL that is judged is the URL that is sent.
- A host the credential does not name is refused before the policy is asked (HOST_NOT_ALLOWED).
- The gate's fingerprint covers the method, the URL and the exact bytes sent.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from keysafe.approvals import Kind
from keysafe.errors import MalformedRequestError, PolicyDeniedError
from keysafe.policy.intent import Intent
from keysafe.service import gate, settings
from keysafe.service.models import HttpRequestRequest, RecordKind
from keysafe.service.proxy_hosts import absolute_url, canonical_url, may_carry, url_target
from keysafe.service.record_meta import credential_meta
from keysafe.vault.records import RecordInfo
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP call, checked and judged-ready: what the gate decides on and proxy sends."""

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


def _checked_method(method: str) -> str:
    method = method.upper()
    if method not in METHODS:
        raise MalformedRequestError(
            f"'{method[:10]}' is not an HTTP method keysafe sends.",
            next_step=f"use one of {', '.join(sorted(METHODS))}.",
        )
    return method


def prepare(
    vault: Vault,
    agent: str,
    request: HttpRequestRequest,
    *,
    approval_id: str | None,
    dry_run: bool,
) -> Call:
    """`agent`'s call, checked, with the gate request it is decided on.

    Raises:
        VaultLockedError: the vault is locked.
        MalformedRequestError: a method, body or URL keysafe does not send.
        NotFoundError: no such credential.
        PolicyDeniedError: the URL's host is not one of the credential's (nothing was sent).
    """
    vault.require_unlocked()
    credential, method = request.credential, _checked_method(request.method)
    raw = _body_bytes(request.body, request.body_base64)
    with vault.db.read() as conn:
        info = vault.get_record(conn, RecordKind.CREDENTIAL, credential)
        cap = settings.response_cap(vault, conn)
    url = absolute_url(info, request.url)
    scheme, host, port = url_target(url)
    url = canonical_url(url)  # from here on, the URL that is judged is the URL that is sent
    if not may_carry(info, scheme, host, port):
        raise PolicyDeniedError(
            f"Credential '{credential}' is only sent to {', '.join(credential_meta(info).hosts)}"
            + (" over https" if scheme == "http" else "")
            + f"; this request goes to {scheme}://{host}:{port}. Nothing was sent.",
            next_step="call one of the credential's hosts, or ask the owner to add this host.",
            reason_code="HOST_NOT_ALLOWED",
        )
    path = urlsplit(url).path or "/"
    what = f"{method} {host}{path} with credential {credential}"
    intent = Intent.http_request(credential=credential, method=method, url=url, summary=what[:500])
    # What is sent, exactly: a text body as before (approvals parked earlier keep their
    # fingerprint), a binary one as its bytes.
    sent: str | bytes = (raw or b"") if request.body_base64 is not None else (request.body or "")
    req = gate.Request(
        agent=agent,
        kind=Kind.HTTP_REQUEST,
        intent=intent,
        wire=request.model_copy(update={"method": method, "url": url}),
        payload=gate.fingerprint_of(method, url, sent),
        target=f"credential:{credential}",
        audit_action="http.request",
        approval_id=approval_id,
        facts={"name": credential, "method": method, "host": host, "path": path},
        reaches_out=True,
        dry_run=dry_run,
    )
    return Call(info, req, method, url, request.headers or {}, raw, cap)
