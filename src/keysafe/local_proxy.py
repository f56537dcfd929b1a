"""`keysafe proxy`: a local HTTP endpoint unmodified SDKs point at, one route per credential.

    http://127.0.0.1:8421/openai/v1/chat/completions  →  https://api.openai.com/v1/chat/completions

The SDK's API key is a placeholder (`ksp_…`, from `keysafe credential placeholder`). This process
is a thin client of the vault: it finds the placeholder wherever the SDK put it (Authorization
bearer or basic, any header, a query parameter), strips it, and forwards the call to the vault's
`/v1/agent/http` with the placeholder as the caller's credential. The vault checks it stands for
this route's credential and this agent, applies the policy, attaches the real secret only for the
credential's own hosts, scrubs it from the answer and audits the call. No secret ever passes
through here. Bodies go as bytes both ways, and the answer streams (`?stream=true` on the vault's
route): server-sent events reach the SDK as the upstream sends them, and an answer the vault cuts
off (over its response cap) reaches it as an incomplete response, not a short whole one.

Any local process, and any web page in the owner's browser, can reach a loopback port, so:
- only a placeholder authorises a call (the proxy has no credential of its own to fall back on);
- the Host header must name loopback with this proxy's port (DNS rebinding gets nothing);
- a request with a foreign `Origin` or `Sec-Fetch-Site: cross-site` is refused (a page cannot
  drive it), and `access-control-*` and `set-cookie` never come back from upstream (a page could
  not read the answer, and no upstream session sticks to the loopback origin).
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from keysafe import wire
from keysafe.errors import (
    ApprovalRequiredError,
    KeysafeError,
    MisdirectedRequestError,
    NotAuthenticatedError,
    VaultUnreachableError,
)
from keysafe.remote import AgentClient, RemoteError, pooled, vault_url
from keysafe.remote import answer as remote_answer

DEFAULT_PORT: Final = 8421
MAX_BODY: Final = 512 * 1024  # what the vault accepts as a request body
_PLACEHOLDER: Final = re.compile(r"ksp_[A-Za-z0-9_-]{20,100}")
# Never forwarded: hop-by-hop, framing, and what the vault sets itself.
_DROP: Final = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "authorization",
        "cookie",
        "accept-encoding",
    }
)
UPSTREAM_HEADER: Final = "x-keysafe-upstream"  # the vault's mark on an upstream's own answer
# Never returned: framing, and what would let a web page read the answer or keep a session.
_DROP_BACK: Final = frozenset(
    {"content-length", "transfer-encoding", "connection", "content-encoding", "set-cookie"}
)


class StreamCut(Exception):
    """Raised into the server to end a started answer without its closing chunk."""


def _find_placeholder(request: Request) -> tuple[str | None, dict[str, str], str]:
    """(placeholder, headers to forward, query to forward): the placeholder removed from both."""
    found: str | None = None
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        k = key.lower()
        text = value
        if k == "authorization" and value.lower().startswith("basic "):
            try:
                text = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8", "replace")
            except ValueError:
                text = value
        m = _PLACEHOLDER.search(text)
        if m:
            found = found or m.group(0)
            continue  # the header that carried the placeholder is the credential's slot
        if k not in _DROP:
            headers[key] = value
    query: list[tuple[str, str]] = []
    for k, v in parse_qsl(request.url.query, keep_blank_values=True):
        m = _PLACEHOLDER.fullmatch(v)
        if m:
            found = found or v
            continue
        query.append((k, v))
    return found, headers, urlencode(query)


def _raw_path(request: Request, credential: str) -> str:
    """The path after /CREDENTIAL exactly as the client sent it: percent-escapes (%2F, %3F, %25)
    must reach the upstream unchanged, so the decoded route parameter will not do."""
    raw = request.scope.get("raw_path") or b""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else ""
    prefix = f"/{credential}/"
    if text.startswith(prefix):
        return text[len(prefix) - 1 :]
    return "/" + str(request.path_params["path"])


# An SDK takes any 2xx for the upstream's success, so "approve first" (202 on the vault's own
# API, where a pending approval is an answer) is a 403 here: the one status the proxy sets itself.
APPROVAL_STATUS: Final = 403


def _error(exc: KeysafeError, status: int | None = None) -> JSONResponse:
    """`exc` as the proxy's answer: the vault's own status for an error the vault gave, else
    its STATUS row (or `status`, for the one override above)."""
    if status is None:
        status = exc.status if isinstance(exc, RemoteError) else exc.http_status
    return JSONResponse(
        {"error": exc.to_dict()}, status_code=status, headers={"x-keysafe-error": str(exc.code)}
    )


_LOOPBACK: Final = ("127.0.0.1", "localhost", "[::1]")


def _foreign(request: Request, port: int) -> KeysafeError | None:
    """Why a request did not come from a local program talking to this port, if it did not."""
    allowed = {f"{name}:{port}" for name in _LOOPBACK}
    if request.headers.get("host", "").lower() not in allowed:
        return MisdirectedRequestError(
            "This proxy answers only to http://127.0.0.1:PORT (or localhost) on its own port.",
            next_step=f"point the SDK's base URL at http://127.0.0.1:{port}/CREDENTIAL/….",
        )
    origin = request.headers.get("origin")
    cross = request.headers.get("sec-fetch-site", "").lower() == "cross-site"
    if cross or (origin is not None and origin.lower() not in {f"http://{a}" for a in allowed}):
        return MisdirectedRequestError(
            "The proxy does not serve web pages: this request came from a browser page.",
            next_step="call the proxy from a program (an SDK or curl), not from a web page.",
        )
    return None


async def _relay(answer: httpx.Response) -> AsyncIterator[bytes]:
    """The vault's stream, passed on chunk by chunk. A stream the vault cut off (over the cap,
    upstream broke off) is cut off here too: the SDK sees an incomplete answer, never a short
    one that looks whole."""
    try:
        async for chunk in answer.aiter_bytes():
            yield chunk
    except httpx.HTTPError:
        raise StreamCut("the vault's answer broke off") from None
    finally:
        with anyio.CancelScope(shield=True):
            await answer.aclose()


async def _vault_answer(answer: httpx.Response) -> Response:
    """The vault's own JSON answer: pending approval, or an error, in the vault's words."""
    try:
        await answer.aread()
    finally:
        await answer.aclose()
    try:
        res = remote_answer(answer)
    except RemoteError as exc:
        return _error(exc)
    if res.get("status") == "pending_approval":
        pending = ApprovalRequiredError(
            f"The owner must approve this call first: {res.get('summary')}.",
            next_step=f"ask the owner to approve {res.get('approval_id')} for a while "
            "(`keysafe approve ID --for 1h`), then retry.",
            approval_id=str(res.get("approval_id")),
        )
        return _error(pending, APPROVAL_STATUS)
    return _error(
        VaultUnreachableError(
            "The vault answered the proxy with something it does not understand.",
            next_step="run the proxy and the vault server from the same keysafe version.",
        )
    )


def create_app(*, port: int = DEFAULT_PORT, url: str | None = None) -> wire.BodyGuard:
    """The proxy's ASGI app for 127.0.0.1:`port`, talking to the vault at `url`."""
    base = url or vault_url()
    pool: dict[str, httpx.AsyncClient] = {}

    async def forward(request: Request) -> Response:
        refused = _foreign(request, port)
        if refused is not None:
            return _error(refused)
        credential = request.path_params["credential"]
        placeholder, headers, query = _find_placeholder(request)
        if placeholder is None:
            return _error(
                NotAuthenticatedError(
                    "No keysafe placeholder in this request; only a placeholder authorises a call.",
                    next_step="use the placeholder from `keysafe credential placeholder "
                    f"{credential} --agent NAME` as the SDK's API key.",
                )
            )
        caller = placeholder
        raw = await request.body()  # size and depth already checked by wire.BodyGuard
        path = _raw_path(request, credential) + (f"?{query}" if query else "")
        call: dict[str, Any] = {
            "credential": credential,
            "method": request.method,
            "url": path,
            "headers": headers,
        }
        if raw:
            try:
                call["body"] = raw.decode("utf-8")  # text goes as text (the exact bytes again)
            except UnicodeDecodeError:
                call["body_base64"] = base64.b64encode(raw).decode()
        client = AgentClient(caller, url=base, http=pooled(pool))
        try:
            answer = await client.http_request_stream(call)
        except KeysafeError as exc:
            return _error(exc)
        if answer.headers.get(UPSTREAM_HEADER) != "1":
            return await _vault_answer(answer)
        out_headers = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() not in _DROP_BACK
            and not k.lower().startswith(("access-control-", "x-keysafe-"))
        }
        return StreamingResponse(
            _relay(answer), status_code=answer.status_code, headers=out_headers
        )

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    app = Starlette(
        routes=[Route("/{credential}/{path:path}", forward, methods=methods)],
        exception_handlers=dict(wire.EXCEPTION_HANDLERS),
    )
    wire.pin_recursion_limit()
    return wire.BodyGuard(app, max_body=MAX_BODY)


def run(port: int = DEFAULT_PORT, *, url: str | None = None) -> None:
    import uvicorn

    uvicorn.run(
        create_app(port=port, url=url),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
