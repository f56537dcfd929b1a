"""The relay's ASGI app: a WebSocket and an HTTP long-poll API over the same mailboxes.

Each endpoint proves its Ed25519 key (a signed challenge on the WebSocket, a signed header on each
HTTP request) and from then on may send to any routing id and read only its own mailbox. Bodies
are opaque: the relay decodes base64 only to measure them, and never logs or keeps one past its
TTL. Logs name routing ids (shortened), sizes and times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from keysafe.errors import STATUS, ErrorCode
from keysafe.relay import routing as r
from keysafe.relay.mailbox import (
    Envelope,
    Mailboxes,
    MemoryMailboxes,
    PutResult,
    RedisMailboxes,
    Subscription,
)

logger = logging.getLogger("keysafe.relay")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RelayConfig:
    """What one relay instance allows. Rate limits are per instance (not shared through Redis)."""

    max_body: int = r.DEFAULT_MAX_BODY  # decoded bytes
    ttl: float = r.DEFAULT_TTL_S
    rate: float = r.DEFAULT_RATE  # messages per second per sender
    burst: float = r.DEFAULT_BURST
    mailbox_cap: int = r.DEFAULT_MAILBOX_CAP
    redis_url: str | None = None
    websocket: bool = True  # False: only the HTTP long-poll API (tests the links' fallback)
    hello_timeout: float = 10.0
    window: int = 100  # messages delivered and not yet acked, per connection
    recheck: float = 5.0  # a connection looks at its mailbox at least this often (a lost wake-up)
    max_handshakes_per_ip: int = 64  # connections open before their hello, per address

    @property
    def ws_max_frame(self) -> int:
        """The largest WebSocket frame accepted: a body at the cap in base64, plus room for the
        envelope of the frame and some slack, so a body a little over the cap gets TOO_LARGE
        rather than a closed connection."""
        return 2 * (4 * (self.max_body + 2) // 3) + 4096


class TokenBuckets:
    """A token bucket per key: `rate` tokens a second, at most `burst` held."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float | None = None) -> float | None:
        """None if a token was taken, else the seconds until one is there."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:  # forget senders whose bucket has refilled
            full = [
                k
                for k, (t, at) in self._buckets.items()
                if t + (now - at) * self.rate >= self.burst
            ]
            for k in full:
                del self._buckets[k]
        return None


@dataclass(frozen=True)
class Refusal:
    code: ErrorCode
    message: str
    retry_after: float | None = None


class StoreUnavailable(Exception):
    """The mailbox store could not be reached; nothing was stored."""


def _short(rid: str) -> str:
    return rid[:8]


class Relay:
    """The state of one relay instance: its store, limits and live WebSockets."""

    def __init__(self, config: RelayConfig, mailboxes: Mailboxes) -> None:
        self.config = config
        self.mailboxes = mailboxes
        self.buckets = TokenBuckets(config.rate, config.burst)
        self.sockets: dict[str, WebSocket] = {}
        self.handshaking: Counter[str] = Counter()

    async def accept_send(self, sender: str, to: str, msg_id: str, body_b64: str) -> Refusal | None:
        """File one message from `sender`, or say why not.

        Raises:
            StoreUnavailable: the store is unreachable (the sender retries with the same id).
        """
        body = r.decode_body(body_b64)
        if body is None:
            return Refusal(ErrorCode.MALFORMED_REQUEST, "body is not base64")
        if len(body) > self.config.max_body:
            logger.info(
                "refused %s -> %s: %d bytes over the cap", _short(sender), _short(to), len(body)
            )
            return Refusal(ErrorCode.PAYLOAD_TOO_LARGE, f"body over {self.config.max_body} bytes")
        wait = self.buckets.take(sender)
        if wait is not None:
            return Refusal(ErrorCode.RATE_LIMITED, "too many messages", round(wait, 3))
        try:
            result = await self.mailboxes.put(to, sender, msg_id, body)
        except Exception as exc:
            logger.warning("mailbox store unavailable (%s)", type(exc).__name__)
            raise StoreUnavailable from None
        logger.debug(
            "send %s -> %s id %s: %d bytes, %s",
            _short(sender),
            _short(to),
            msg_id[:8],
            len(body),
            result.value,
        )
        if result is PutResult.FULL:
            return Refusal(ErrorCode.MAILBOX_FULL, "the recipient's mailbox is full", 1.0)
        return None


# --- WebSocket ----------------------------------------------------------------------------------


async def _recv(ws: WebSocket) -> str | bytes | None:
    """The next frame's data, or None once the peer is gone."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        return None
    data = message.get("text")
    return data if data is not None else message.get("bytes") or b""


async def _handshake(relay: Relay, ws: WebSocket) -> str | None:
    """Challenge, hello, verify: the connection's routing id, or None (closed)."""
    nonce = secrets.token_bytes(32)
    await ws.send_text(r.dump(r.Challenge(nonce=nonce.hex())))
    try:
        data = await asyncio.wait_for(_recv(ws), relay.config.hello_timeout)
    except TimeoutError:
        await ws.close(code=r.CLOSE_BAD_HELLO, reason="no hello")
        return None
    if data is None:
        return None
    frame = r.parse_client_frame(data)
    rid = r.verify_hello(frame.pub, frame.sig, nonce) if isinstance(frame, r.Hello) else None
    if rid is None:
        logger.info("hello refused (bad signature or frame)")
        await ws.close(code=r.CLOSE_BAD_HELLO, reason="bad hello")
    return rid


async def _ws_endpoint(relay: Relay, ws: WebSocket) -> None:
    ip = ws.client.host if ws.client else "?"
    if relay.handshaking[ip] >= relay.config.max_handshakes_per_ip:
        await ws.close(code=1013)  # before accept: the client sees the handshake refused
        return
    relay.handshaking[ip] += 1
    try:
        await ws.accept()
        rid = await _handshake(relay, ws)
    except WebSocketDisconnect:
        return
    finally:
        relay.handshaking[ip] -= 1
        if not relay.handshaking[ip]:
            del relay.handshaking[ip]
    if rid is not None:
        await _session(relay, ws, rid)


async def _session(relay: Relay, ws: WebSocket, rid: str) -> None:
    lock = asyncio.Lock()

    async def send(text: str) -> None:
        async with lock:
            await ws.send_text(text)

    old = relay.sockets.get(rid)
    relay.sockets[rid] = ws
    if old is not None:  # the newer connection wins: the older is likely a dead link
        logger.info("%s reconnected: older connection closed", _short(rid))
        with contextlib.suppress(Exception):
            await old.close(code=r.CLOSE_REPLACED, reason="replaced")
    sub: Subscription | None = None
    deliverer: asyncio.Task[None] | None = None
    logger.info("%s connected (websocket)", _short(rid))
    try:
        sub = await relay.mailboxes.subscribe(rid)
        deliverer = asyncio.create_task(_deliver(relay, ws, rid, sub, set(), send))
        await send(r.dump(r.Ready(rid=rid, max_body=relay.config.max_body)))
        while (data := await _recv(ws)) is not None:
            frame = r.parse_client_frame(data)
            if isinstance(frame, r.Send):
                try:
                    refusal = await relay.accept_send(rid, frame.to, frame.id, frame.body)
                except StoreUnavailable:
                    await ws.close(code=1011, reason="store unavailable")  # the link retries
                    break
                if refusal is None:
                    await send(r.dump(r.Sent(id=frame.id)))
                else:
                    error = r.ErrorFrame(
                        id=frame.id, code=refusal.code, retry_after=refusal.retry_after
                    )
                    await send(r.dump(error))
            elif isinstance(frame, r.Ack):
                await relay.mailboxes.ack(rid, [frame.id])
                sub.poke()  # room in the window: the deliverer may send more
            else:
                await send(r.dump(r.ErrorFrame(code=ErrorCode.MALFORMED_REQUEST)))
    except (WebSocketDisconnect, RuntimeError):  # RuntimeError: sent to a closed socket
        pass
    except Exception as exc:
        logger.warning("%s: connection ended by %s", _short(rid), type(exc).__name__)
        with contextlib.suppress(Exception):
            await ws.close(code=1011)
    finally:
        if deliverer is not None:
            deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await deliverer
        if sub is not None:
            with contextlib.suppress(Exception):
                await relay.mailboxes.unsubscribe(sub)
        if relay.sockets.get(rid) is ws:
            del relay.sockets[rid]
        logger.info("%s disconnected", _short(rid))


async def _deliver(
    relay: Relay,
    ws: WebSocket,
    rid: str,
    sub: Subscription,
    delivered: set[str],
    send: Callable[[str], Awaitable[None]],
) -> None:
    """Send `rid` each message of its mailbox once per connection, oldest first, keeping at most
    `window` delivered and unacked; an acked or expired message leaves `delivered` when the next
    read no longer lists it."""
    window = relay.config.window
    try:
        while True:
            batch = await relay.mailboxes.pending(rid, limit=window)
            delivered &= {env.id for env in batch}
            for env in batch:
                if len(delivered) >= window:
                    break
                if env.id in delivered:
                    continue
                await send(
                    r.dump(
                        r.Msg.model_validate(
                            {"from": env.sender, "id": env.id, "body": r.encode_body(env.body)}
                        )
                    )
                )
                delivered.add(env.id)
                logger.debug(
                    "deliver %s -> %s id %s: %d bytes",
                    _short(env.sender),
                    _short(rid),
                    env.id[:8],
                    len(env.body),
                )
            await sub.wait(relay.config.recheck)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the store or the socket failed: the client reconnects
        logger.warning("%s: delivery stopped by %s", _short(rid), type(exc).__name__)
        with contextlib.suppress(Exception):
            await ws.close(code=1011)


# --- HTTP long-poll -----------------------------------------------------------------------------


# What a link (or anyone else) does about each refusal; the codes are keysafe's ErrorCodes.
_NEXT: Final[dict[ErrorCode, str]] = {
    ErrorCode.PAYLOAD_TOO_LARGE: "send a smaller message.",
    ErrorCode.NOT_AUTHENTICATED: "sign the request with the link's key (and check the clock).",
    ErrorCode.MALFORMED_REQUEST: "send the body the route expects (the relay protocol).",
    ErrorCode.RATE_LIMITED: "wait retry_after seconds, then send again.",
    ErrorCode.MAILBOX_FULL: "wait retry_after seconds: the recipient must collect first.",
    ErrorCode.RELAY_UNAVAILABLE: "retry in a few seconds.",
}


def _error(code: ErrorCode, message: str, retry_after: float | None = None) -> JSONResponse:
    """A refusal of the long-poll API, with the code's STATUS and, when it says how long to
    wait, Retry-After."""
    error: dict[str, object] = {"code": str(code), "message": message, "next": _NEXT[code]}
    headers = {}
    if retry_after is not None:
        error["retry_after"] = retry_after
        headers["retry-after"] = str(max(1, round(retry_after)))
    return JSONResponse({"error": error}, status_code=STATUS[code][0], headers=headers)


async def _read_capped(request: Request, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _authed(relay: Relay, request: Request) -> tuple[str, bytes] | Response:
    """The caller's routing id and the request body, or the refusal to answer."""
    body = await _read_capped(request, relay.config.ws_max_frame)
    if body is None:
        return _error(ErrorCode.PAYLOAD_TOO_LARGE, "request body too large")
    header = request.headers.get(r.AUTH_HEADER, "")
    rid = r.verify_http_auth(header, request.method, request.url.path, body)
    if rid is None:
        return _error(
            ErrorCode.NOT_AUTHENTICATED, f"missing, stale or badly signed {r.AUTH_HEADER}"
        )
    return rid, body


def _parse(model: type[M], body: bytes) -> M | None:
    try:
        return model.model_validate_json(body)
    except ValidationError:  # its message quotes the input: dropped
        return None


def _post_route(
    path: str,
    relay: Relay,
    model: type[M],
    handler: Callable[[Relay, Request, str, M], Awaitable[Response]],
    *,
    expected: str,
    empty: bytes = b"",
) -> Route:
    """A POST route whose handler gets the caller's routing id and its request parsed as
    `model` (an empty body read as `empty`); anything else is refused before it runs
    (`expected`: what a good body holds)."""

    async def endpoint(request: Request) -> Response:
        authed = await _authed(relay, request)
        if isinstance(authed, Response):
            return authed
        rid, body = authed
        frame = _parse(model, body or empty)
        if frame is None:
            return _error(ErrorCode.MALFORMED_REQUEST, f"expected {expected}")
        return await handler(relay, request, rid, frame)

    return Route(path, endpoint, methods=["POST"])


def _store_unavailable() -> JSONResponse:
    return _error(ErrorCode.RELAY_UNAVAILABLE, "the relay's store is unavailable; retry")


async def _send(relay: Relay, request: Request, rid: str, frame: r.SendRequest) -> Response:
    try:
        refusal = await relay.accept_send(rid, frame.to, frame.id, frame.body)
    except StoreUnavailable:
        return _store_unavailable()
    if refusal is not None:
        return _error(refusal.code, refusal.message, refusal.retry_after)
    return JSONResponse({"ok": True})


async def _poll(relay: Relay, request: Request, rid: str, frame: r.PollRequest) -> Response:
    try:
        batch = await _wait_for_batch(relay, request, rid, frame)
    except Exception as exc:
        logger.warning("poll by %s failed: %s", _short(rid), type(exc).__name__)
        return _store_unavailable()
    if batch:
        logger.debug("poll %s: %d message(s)", _short(rid), len(batch))
    messages = [{"from": e.sender, "id": e.id, "body": r.encode_body(e.body)} for e in batch]
    return JSONResponse({"messages": messages})


async def _wait_for_batch(
    relay: Relay, request: Request, rid: str, frame: r.PollRequest
) -> list[Envelope]:
    """The messages waiting for `rid` (less those the poll skips), up to a window's worth;
    waits up to `frame.wait` seconds for the first, or until the caller goes away."""
    skip = set(frame.skip)
    deadline = time.monotonic() + frame.wait
    sub = await relay.mailboxes.subscribe(rid)
    try:
        while True:
            batch = [
                e
                for e in await relay.mailboxes.pending(rid, relay.config.window + len(skip))
                if e.id not in skip
            ]
            left = deadline - time.monotonic()
            if batch or left <= 0 or await request.is_disconnected():
                break
            await sub.wait(min(left, relay.config.recheck))
    finally:
        with contextlib.suppress(Exception):
            await relay.mailboxes.unsubscribe(sub)
    return batch[: relay.config.window]


async def _ack(relay: Relay, request: Request, rid: str, frame: r.AckRequest) -> Response:
    try:
        await relay.mailboxes.ack(rid, frame.ids)
    except Exception as exc:
        logger.warning("ack by %s failed: %s", _short(rid), type(exc).__name__)
        return _store_unavailable()
    return JSONResponse({"ok": True})


async def _health(request: Request) -> Response:
    return JSONResponse({"ok": True})


def make_relay_app(config: RelayConfig, *, mailboxes: Mailboxes | None = None) -> Starlette:
    """The relay as an ASGI app (run it with uvicorn, ws="websockets-sansio", and
    ws_max_size=config.ws_max_frame).

    Args:
        config: limits and the store (Redis if `config.redis_url`, else memory).
        mailboxes: a store to use instead (tests).
    """
    store = mailboxes or (
        RedisMailboxes(config.redis_url, ttl=config.ttl, cap=config.mailbox_cap)
        if config.redis_url
        else MemoryMailboxes(ttl=config.ttl, cap=config.mailbox_cap)
    )
    relay = Relay(config, store)

    async def websocket(ws: WebSocket) -> None:
        await _ws_endpoint(relay, ws)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.start()
        try:
            yield
        finally:
            await store.close()

    routes: list[Route | WebSocketRoute] = [
        Route(r.HEALTH_PATH, _health, methods=["GET"]),
        _post_route(r.SEND_PATH, relay, r.SendRequest, _send, expected="{to, id, body}"),
        _post_route(
            r.POLL_PATH, relay, r.PollRequest, _poll, expected="{wait: 0..25}", empty=b"{}"
        ),
        _post_route(r.ACK_PATH, relay, r.AckRequest, _ack, expected="{ids: [...]}"),
    ]
    if config.websocket:
        routes.append(WebSocketRoute(r.WS_PATH, websocket))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.relay = relay
    return app
