"""Use, not possession, for API keys: keysafe makes the HTTP call with the credential attached
and returns the response with the secret scrubbed out.

Rules this module enforces:
- The credential goes only to the hosts it names (`host[:port]`), over https; plain http only to
  loopback hosts (local services, tests), as service/proxy_hosts.py decides. A redirect is
  followed, but the credential is attached only on hops to an allowed host; it never follows
  the agent anywhere else.
- The policy decides first (`http.request` with credential, method and URL); an `ask` parks the
  request for the owner like any other.
- The secret is scrubbed from the response headers and body (also in its Basic-auth, base64 and
  URL-encoded forms) before anything returns. The body is scrubbed as bytes, chunk by chunk
  (service/proxy_scrub.py): the end of a chunk that could be the start of a secret form is held
  back until the next chunk shows whether it is one, so a secret split across chunks is caught
  and a stream still flows.
- Bodies are bytes both ways (an image upload or download arrives byte for byte); a JSON answer
  carries a body that is not UTF-8 as `body_base64`.
- The answer is capped (`keysafe serve --max-response`, default 10 MiB, service/settings.py):
  over the cap is an error, never a silently shortened body; a stream already under way is cut
  off (the client sees an incomplete response) and audited as such. Timeouts are set.
- Calls share one HTTP client per unlocked vault (service/proxy_client.py), and whether the
  credential goes with a request is decided per hop as above. A call's own redirect hops carry
  the cookies that call received, and nothing outlives the call.
- Every call is audited once, with method, host, path, status, body size, and how it ended:
  never the secret or bodies. A call the upstream answered counts against the budget even when
  its answer was over the cap or the client stopped reading.

    call = HttpRequestRequest(credential="openai", method="POST", url="/v1/chat/completions")
    stream = http_stream(vault, "bot", call)
    if isinstance(stream, HttpStream):
        try:
            for chunk in stream.chunks():  # scrubbed bytes, as the upstream sends them
                ...
        finally:
            stream.close()  # settles and audits the call: always call it
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from keysafe.agent_models import PendingApproval
from keysafe.errors import (
    KeysafeError,
    PayloadTooLargeError,
    PolicyDeniedError,
    UpstreamUnavailableError,
)
from keysafe.service import gate
from keysafe.service.models import HttpRequestRequest, SecretBytes
from keysafe.service.proxy_call import Call, prepare
from keysafe.service.proxy_client import client_for
from keysafe.service.proxy_scrub import Scrubber, scrub
from keysafe.service.proxy_send import follow
from keysafe.service.record_meta import credential_meta
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

# The content codings httpx undoes (proxy_send.ACCEPT_ENCODING asks for these); an answer in any
# other cannot be scrubbed.
_DECODED: Final = frozenset({"identity", "gzip", "x-gzip", "deflate"})
# The body is returned decoded (httpx undoes gzip/br) and re-framed, so these would lie.
_NOT_RETURNED: Final = frozenset(
    {"set-cookie", "transfer-encoding", "content-length", "connection", "content-encoding"}
)


def _absent(value: object) -> bool:
    return value is None


class HttpResult(BaseModel):
    """The upstream's answer to the call, the secret scrubbed out. Its JSON is the agent's
    answer (`agent_models.HttpResult`): the status code, the headers, and the body as text or,
    when it is not UTF-8 (an image, a zip), as base64. How the call went (redirects, size) is
    audited, never shown; `status` tells it from a `PendingApproval` and is not shown either."""

    model_config = ConfigDict(frozen=True)

    status: Literal["done"] = Field(default="done", exclude=True)
    status_code: int
    headers: dict[str, str]
    body: str | None = Field(default=None, exclude_if=_absent)  # the body when it is UTF-8 text
    body_base64: str | None = Field(default=None, exclude_if=_absent)  # else its bytes
    redirects: int = Field(default=0, exclude=True)  # hops followed
    size: int = Field(default=0, exclude=True)  # bytes the upstream sent

    def stored(self) -> dict[str, Any]:
        """Every field, the ones not shown included: what an idempotent replay loads."""
        return {name: getattr(self, name) for name in type(self).model_fields}


def _secret_forms(secret: str, attach: dict[str, Any]) -> list[str]:
    forms = {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}
    if attach.get("type") == "basic":
        forms.add(base64.b64encode(f"{attach['name']}:{secret}".encode()).decode())
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


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


def _http_view(r: HttpResult) -> dict[str, Any]:
    return r.model_dump(mode="json")


# HTTP calls carry no idempotency key today; the codec still round-trips a result exactly.
_CODEC: gate.Codec[HttpResult] = gate.Codec(
    dump=HttpResult.stored, load=HttpResult.model_validate, facts=_http_facts, view=_http_view
)


class HttpStream:
    """An upstream answer on its way: status and headers now, the scrubbed body as it arrives.

    `chunks()` yields the body and raises PayloadTooLargeError past the cap,
    UpstreamUnavailableError when the upstream breaks off; `close()` must follow (in a `finally`),
    whatever happened: it frees the connection and settles and audits the call, once.
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
            UpstreamUnavailableError: the upstream broke off or timed out.
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
                UpstreamUnavailableError(
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
        facts = {
            "status": self.status_code,
            "bytes": self._size,
            "redirects": self.redirects,
            "ended": self._ended,
        }
        try:
            try:
                self._response.close()  # back to the pool when read to its end, else dropped
            finally:
                self._release()
        finally:
            if failure is not None:
                gate.settle(
                    self._vault, self._req, self._rid, facts=facts, failure=failure, spent=True
                )
            elif result is not None:
                gate.settle(
                    self._vault,
                    self._req,
                    self._rid,
                    result=_CODEC.dump(result),
                    facts=facts,
                    view=_http_view(result),
                )
            else:
                gate.settle(self._vault, self._req, self._rid, facts=facts)


def _admit_and_open(
    vault: Vault, call: Call, transport: httpx.BaseTransport | None
) -> HttpResult | PendingApproval | HttpStream:
    """Steps 1–5 of the gate, then the call up to the upstream's headers."""
    if call.req.dry_run:
        gate.run(vault, call.req, _never, _CODEC)  # raises DryRun with the decision
    admission = gate.admit(vault, call.req)
    if admission.replay is not None:
        return _CODEC.load(admission.replay)
    if admission.parked is not None:
        return PendingApproval(status="pending_approval", **admission.parked.pending())
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
    request: HttpRequestRequest,
    *,
    approval_id: str | None = None,
    transport: httpx.BaseTransport | None = None,
    dry_run: bool = False,
) -> HttpResult | PendingApproval:
    """Make `agent`'s HTTP call with `request.credential` attached, if its policy allows it; the
    whole answer comes back with the secret scrubbed out (the MCP tool, JSON clients, approvals).

    Args:
        request: the call; its body is text (`body`) or binary (`body_base64`), not both.
        approval_id: the owner approved this parked call; it runs now.
        transport: httpx transport (tests).
        dry_run: decide only (raises gate.DryRun).

    Raises:
        PolicyDeniedError: the host or the policy refuses it (nothing was sent).
        PayloadTooLargeError: the answer is over the response cap (the call was made).
        UpstreamUnavailableError: the upstream could not be reached or broke off.
    """
    call = prepare(vault, agent, request, approval_id=approval_id, dry_run=dry_run)
    opened = _admit_and_open(vault, call, transport)
    if not isinstance(opened, HttpStream):
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
        status_code=opened.status_code,
        headers=opened.headers,
        body=text,
        body_base64=b64,
        redirects=opened.redirects,
        size=opened.size,
    )
    opened.close(res)
    return res


def http_stream(
    vault: Vault,
    agent: str,
    request: HttpRequestRequest,
    *,
    transport: httpx.BaseTransport | None = None,
) -> HttpResult | PendingApproval | HttpStream:
    """The same call as `http_request`, answered as a stream: an HttpStream once the upstream's
    headers are in (the caller iterates `chunks()` and must `close()` it), or a PendingApproval
    when the owner must approve first.

    Raises:
        PolicyDeniedError: the host or the policy refuses it (nothing was sent).
        PayloadTooLargeError: the upstream declared a body over the cap (the call was made).
        UpstreamUnavailableError: the upstream could not be reached.
    """
    call = prepare(vault, agent, request, approval_id=None, dry_run=False)
    return _admit_and_open(vault, call, transport)


def _open(
    vault: Vault,
    call: Call,
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
    client, release = client_for(vault, transport)
    try:
        final, url, hops = follow(client, call, secret, forms)
    except BaseException:
        release()  # the call's use of the client ends; the shared client stays for the next
        raise
    finally:
        del secret
    out_headers = {
        k: scrub(v, forms) for k, v in final.headers.items() if k.lower() not in _NOT_RETURNED
    }
    return HttpStream(
        vault,
        call.req,
        request_id,
        release,
        final,
        Scrubber(forms),
        host=str(urlsplit(url).hostname),
        headers=out_headers,
        redirects=hops,
        cap=call.cap,
    )
