"""What every HTTP surface checks on a request body before any parser sees it.

The vault API, the MCP endpoint and the local proxy read a body whole (either framing) and
refuse it past a size cap (413), and refuse a JSON body nested deeper than `MAX_DEPTH` (400)
before anything parses it. The depth check is not a nicety: eth-account pulls in py_ecc, which
raises the interpreter's recursion limit to 100,000, and past a few ten thousand levels a
recursive parser overflows the C stack and kills the process — a vault that comes back locked,
for one request that needed no token. `pin_recursion_limit` puts the limit back once every
import is done, so a parser that does recurse too far raises instead of crashing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keysafe.errors import (
    KeysafeError,
    MalformedRequestError,
    PayloadTooLargeError,
    code_for_status,
    from_dict,
)

MAX_BODY: Final = 1024 * 1024
# The ASGI scope key that names a paired sidecar's agent (set only in-process, by
# api/relay_end.py, after the envelope was opened and checked; a network request cannot set it).
RELAYED_AGENT: Final = "keysafe.relayed_agent"
MAX_DEPTH: Final = 64
RECURSION_LIMIT: Final = 1000  # CPython's default: every keysafe path stays far below it

# Every byte that is not a bracket goes; braces become brackets (only the nesting matters).
_SKELETON: Final = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_EXACT: Final = 4096  # brackets walked one by one; beyond this, no legitimate body goes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def too_deep(body: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """True when `body`, read as JSON, nests arrays and objects more than `limit` deep (an open
    bracket counts as a level whether or not it is ever closed: a recursive parser descends just
    as far). A body that is merely malformed at a shallow depth is left to the parser, so the
    routes' own order of checks (the owner check before anything else) still holds.

    Linear in the body: escape pairs are dropped (left to right, as JSON reads them), the text
    inside strings is dropped and everything but brackets is dropped, in C-speed passes; a short
    skeleton is then walked exactly, a long one (over _EXACT brackets) is reduced by removing
    innermost `[]` pairs `limit` times and refused if any bracket is still open.
    """
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if b"[" not in raw and b"{" not in raw:
        return False
    raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(raw.split(b'"')[0::2])  # even pieces lie outside strings
    skeleton = outside.translate(_SKELETON, _NOT_BRACKETS)
    if len(skeleton) <= _EXACT:
        depth = 0
        for byte in skeleton:
            depth += 1 if byte == 0x5B else -1  # '['
            if depth > limit:
                return True
        return False
    for _ in range(limit):
        shorter = skeleton.replace(b"[]", b"")
        if shorter == skeleton:
            break
        skeleton = shorter
    return b"[" in skeleton


def nesting_error() -> MalformedRequestError:
    return MalformedRequestError(
        f"The request's JSON is nested more than {MAX_DEPTH} levels deep (or leaves a bracket "
        "open); nothing was parsed.",
        next_step="send a flatter JSON body; no keysafe request needs that depth.",
    )


def loads(raw: bytes | str) -> Any:
    """`json.loads` that refuses a too-deep document before parsing it.

    Raises:
        MalformedRequestError: nested deeper than MAX_DEPTH, or not JSON.
    """
    if too_deep(raw):
        raise nesting_error()
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise MalformedRequestError(
            "The request is not valid JSON.", next_step="send a JSON object."
        ) from None


def pin_recursion_limit() -> None:
    """Put the recursion limit back to CPython's default (py_ecc raises it on import); every
    surface calls this after its imports, before it serves anyone."""
    sys.setrecursionlimit(RECURSION_LIMIT)


def error_response(err: KeysafeError, status: int | None = None) -> JSONResponse:
    """`err` as an error body, with its STATUS code (or `status`)."""
    return JSONResponse(
        {"error": err.to_dict()},
        status_code=err.http_status if status is None else status,
        headers={"x-keysafe-error": str(err.code)},
    )


def http_error_handler(next_step: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A handler for Starlette's own refusals (no such route, a method the route does not take)
    that answers keysafe error bodies with `next_step`; every HTTP surface installs one (the API
    with its own next step), so a refusal reads the same everywhere."""

    async def http_error(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, HTTPException):  # Starlette calls this for HTTPException only
            raise exc
        err = from_dict(
            {
                "code": code_for_status(exc.status_code),
                "message": str(exc.detail)[:200],
                "next": next_step,
            }
        )
        answer = error_response(err, exc.status_code)
        answer.headers.update(exc.headers or {})  # e.g. Allow, which a 405 must carry
        return answer

    return http_error


# For Starlette(exception_handlers=…): every refusal of such a surface is an error body.
EXCEPTION_HANDLERS: Final = {HTTPException: http_error_handler("check the path and the method.")}


class BodyGuard:
    """ASGI wrapper: reads the body first, whatever its framing (Content-Length or chunked),
    answers 413 past `max_body` and 400 for JSON nested past MAX_DEPTH, before the wrapped
    application parses any of it; then replays the body to it."""

    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # a disconnect: let the app see it
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                mib, kib = divmod(self.max_body, 1024 * 1024)
                cap = f"{mib} MiB" if not kib else f"{self.max_body // 1024} KiB"
                too_large = PayloadTooLargeError(
                    f"The request body is over {cap}.", next_step="send a smaller request."
                )
                await error_response(too_large)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if too_deep(body):
            await error_response(nesting_error())(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
