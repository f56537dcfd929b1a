"""The client end of the relay, used by the vault and by an agent's sidecar alike.

A `RelayLink` keeps one connection to a relay open in the background (a WebSocket, or the HTTP
long-poll API where WebSockets are blocked), reconnects forever with exponential backoff and full
jitter, and gives the caller each message once: a message redelivered after a reconnect, before
or after the caller acked it, is recognised by its id and not handed out again. Sends retry with
the same id until the relay confirms them; the relay stores an id once, so a retry never doubles
a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from nacl.signing import SigningKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from keysafe.errors import MalformedRequestError, code_for_status
from keysafe.hosts import is_loopback
from keysafe.relay import link_errors
from keysafe.relay import routing as r

logger = logging.getLogger("keysafe.relay")

Transport = Literal["auto", "ws", "poll"]
_ATTEMPT_TIMEOUT_S = 10.0  # one try of a send; the send itself retries until its own timeout
MAX_MESSAGE = 4 * 1024 * 1024  # the largest message body a link takes from its relay
_ACKED_KEEP = 10_000  # ids acked recently, so a redelivery is re-acked and not handed out again
_ACKED_FOR_S = 3600.0


@dataclass(frozen=True)
class Delivered:
    """A message the relay delivered: its sender's routing id, its id and its opaque body."""

    sender: str
    id: str
    body: bytes


class _Disconnected(Exception):
    """The connection dropped before the relay answered; the send is tried again."""


class _HandshakeRefused(Exception):
    """The relay (or a proxy before it) answered the WebSocket upgrade with an HTTP status."""


class _AuthRefused(Exception):
    """The relay refused this link's key or signature (wrong clock, for the HTTP API)."""


def _relay_urls(url: str, allow_insecure: bool) -> tuple[str, str, str]:
    """The relay's WebSocket URL, its HTTP base URL and its base path, from the URL given.

    Raises:
        MalformedRequestError: not a ws(s):// or http(s):// URL, or plain text to a remote
            host without `allow_insecure`.
    """
    parts = urlsplit(url)
    secure = {"ws": False, "http": False, "wss": True, "https": True}.get(parts.scheme)
    if secure is None or not parts.hostname:
        raise MalformedRequestError(
            f"'{url[:100]}' is not a relay URL.",
            next_step="give it as wss://HOST[:PORT] or https://HOST[:PORT].",
        )
    if not secure and not is_loopback(parts.hostname):
        if not allow_insecure:
            raise MalformedRequestError(
                f"Refusing plain-text {parts.scheme}:// to {parts.hostname}: the envelopes stay "
                "encrypted, but who talks to whom would cross the network in clear.",
                next_step="use wss:// (TLS in front of the relay), or allow_insecure=True.",
            )
        logger.warning("relay link to %s without TLS (allowed by the caller)", parts.hostname)
    base = parts.path.rstrip("/")
    ws_url = urlunsplit(("wss" if secure else "ws", parts.netloc, base + r.WS_PATH, "", ""))
    http_base = urlunsplit(("https" if secure else "http", parts.netloc, base, "", ""))
    return ws_url, http_base, base


class RelayLink:
    """One endpoint's connection to a relay.

    Args:
        url: the relay's base URL: ws://, wss://, http:// or https:// (e.g. wss://relay.example).
        key: this endpoint's Ed25519 key; its routing id is `rid`.
        transport: "ws", "poll" (HTTP long-poll), or "auto": WebSocket, and long-poll from the
            first time the WebSocket upgrade is answered with an HTTP status instead.
        backoff_base: first reconnect delay cap in seconds, doubled each failed attempt...
        backoff_max: ...up to this; each delay is uniform in [0, cap] (full jitter).
        allow_insecure: accept ws:// or http:// to a host that is not loopback. The bodies are
            end-to-end encrypted either way, but without TLS anyone on the path sees who talks
            to whom and when, and can drop messages; so it is refused unless asked for (and then
            logged as a warning).

    Raises:
        MalformedRequestError: the URL is not one of those forms, or is plain text to a remote
            host without `allow_insecure`.
    """

    def __init__(
        self,
        url: str,
        key: SigningKey,
        *,
        transport: Transport = "auto",
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        allow_insecure: bool = False,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self._ws_url, self._http_base, self._base_path = _relay_urls(url, allow_insecure)
        self._key = key
        self.rid: str = r.routing_id(key.verify_key.encode())
        self._transport: Transport = transport
        self._mode: Literal["ws", "poll"] = "poll" if transport == "poll" else "ws"
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._inbox: asyncio.Queue[Delivered] = asyncio.Queue()
        self._held: set[str] = set()  # handed out or queued, not yet acked
        self._acked: OrderedDict[str, float] = OrderedDict()
        self._ack_backlog: set[str] = set()  # acked by the caller, not yet told to the relay
        self._waiters: dict[str, list[asyncio.Future[r.Sent | r.ErrorFrame]]] = {}
        self._ws: ClientConnection | None = None
        self._http: httpx.AsyncClient | None = None
        self._ready = asyncio.Event()
        self._was_ready = False
        self._max_body: int | None = None
        # What this end accepts, whatever the relay says its cap is: a hostile relay must not
        # make it buffer a giant frame (one message on the WebSocket, a poll's answer over HTTP).
        self._max_frame = 4 * (max_message + 2) // 3 + 4096
        self._max_poll = 8 * self._max_frame
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        """True while the relay has accepted this link's key on a live connection."""
        return self._ready.is_set()

    @property
    def transport(self) -> Literal["ws", "poll"]:
        """What the link uses now ("auto" turns into one of these)."""
        return self._mode

    async def start(self) -> None:
        """Connect in the background; returns at once. Reconnects until `close`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"relay-link-{self.rid[:8]}")

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a live connection; True if there is one."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop reconnecting and close the connection. Unacked messages stay at the relay."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._gone()

    # --- sending --------------------------------------------------------------------------

    async def send(self, to: str, msg_id: str, body: bytes, *, timeout: float = 30.0) -> None:
        """Send `body` to routing id `to` and return once the relay has stored it.

        Tries again through reconnects, with the same `msg_id`: the relay keeps one copy.

        Args:
            to: the recipient's routing id.
            msg_id: 32 lowercase hex characters, unique per message (e.g. secrets.token_hex(16)).
            body: the opaque (end-to-end encrypted) envelope.
            timeout: seconds to keep trying.

        Raises:
            MalformedRequestError: `to` or `msg_id` is malformed, or the relay refused the frame.
            PayloadTooLargeError: the body is over the relay's cap.
            RateLimitedError: the relay still refuses (rate limit, full mailbox) at the timeout.
            NotAuthenticatedError: the relay refuses this key (or, over HTTP, this clock).
            VaultUnreachableError: no answer from the relay within `timeout`, or the link is closed.
        """
        link_errors.check_address(to, msg_id)
        link_errors.check_size(len(body), self._max_body)
        b64 = r.encode_body(body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        attempt = 0
        while True:
            if self._closed:
                raise link_errors.link_closed()
            left = deadline - loop.time()
            if left <= 0:
                raise link_errors.no_answer(timeout, self._http_base)
            if not self._ready.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), left)
                continue
            try:
                answer = await self._transmit(to, msg_id, b64, min(left, _ATTEMPT_TIMEOUT_S))
            except (_Disconnected, TimeoutError):
                continue
            if isinstance(answer, r.Sent):
                return
            wait = link_errors.wait_after(answer, len(body))
            if wait is None:
                wait = self._backoff(attempt)
            attempt += 1
            if loop.time() + wait > deadline:
                raise link_errors.still_refused(answer)
            await asyncio.sleep(wait)

    async def _transmit(
        self, to: str, msg_id: str, b64: str, timeout: float
    ) -> r.Sent | r.ErrorFrame:
        if self._mode == "poll":
            return await self._transmit_http(to, msg_id, b64, timeout)
        ws = self._ws
        if ws is None:
            raise _Disconnected
        future: asyncio.Future[r.Sent | r.ErrorFrame] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(msg_id, []).append(future)
        try:
            try:
                await ws.send(r.dump(r.Send(to=to, id=msg_id, body=b64)))
            except ConnectionClosed:
                raise _Disconnected from None
            return await asyncio.wait_for(future, timeout)
        finally:
            waiting = self._waiters.get(msg_id, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiters.pop(msg_id, None)

    async def _transmit_http(
        self, to: str, msg_id: str, b64: str, timeout: float
    ) -> r.Sent | r.ErrorFrame:
        content = json.dumps({"to": to, "id": msg_id, "body": b64}).encode()
        try:
            resp = await self._post(r.SEND_PATH, content, timeout)
        except httpx.HTTPError:
            await asyncio.sleep(min(1.0, timeout))
            raise _Disconnected from None
        if resp.status_code == 200:
            return r.Sent(id=msg_id)
        if resp.status_code >= 500 and resp.status_code != 507:
            await asyncio.sleep(min(1.0, timeout))
            raise _Disconnected
        try:
            error = resp.json()["error"]
            return r.ErrorFrame(
                id=msg_id, code=str(error["code"]), retry_after=error.get("retry_after")
            )
        except (ValueError, KeyError, TypeError):
            return r.ErrorFrame(id=msg_id, code=code_for_status(resp.status_code))

    # --- receiving ------------------------------------------------------------------------

    async def receive(self) -> Delivered:
        """The next message; it stays at the relay (and comes back after a reconnect, though not
        through this link again) until `ack`."""
        return await self._inbox.get()

    async def ack(self, msg_id: str) -> None:
        """Tell the relay to delete a message the caller has handled. Never raises: an ack the
        relay did not get is sent again after the next reconnect."""
        self._held.discard(msg_id)
        self._acked[msg_id] = time.monotonic()
        self._acked.move_to_end(msg_id)
        while len(self._acked) > _ACKED_KEEP or (
            self._acked and next(iter(self._acked.values())) < time.monotonic() - _ACKED_FOR_S
        ):
            self._acked.popitem(last=False)
        self._ack_backlog.add(msg_id)
        await self._flush_acks()

    async def _flush_acks(self) -> None:
        if not self._ack_backlog or not self._ready.is_set():
            return
        ids = sorted(self._ack_backlog)
        if self._mode == "ws":
            ws = self._ws
            if ws is None:
                return
            for msg_id in ids:
                try:
                    await ws.send(r.dump(r.Ack(id=msg_id)))
                except ConnectionClosed:
                    return
                self._ack_backlog.discard(msg_id)
            return
        content = json.dumps({"ids": ids[:2000]}).encode()
        try:
            resp = await self._post(r.ACK_PATH, content, _ATTEMPT_TIMEOUT_S)
        except httpx.HTTPError:
            return
        if resp.status_code == 200:
            self._ack_backlog.difference_update(ids[:2000])

    def _deliver(self, sender: str, msg_id: str, b64: str) -> None:
        if msg_id in self._held:
            return  # redelivered while the caller still has it
        if msg_id in self._acked:
            self._ack_backlog.add(msg_id)  # our ack was lost: say it again, hand nothing out
            return
        body = r.decode_body(b64)
        if body is None:
            logger.warning("relay delivered a malformed body (id %s); ignored", msg_id[:8])
            return
        self._held.add(msg_id)
        self._inbox.put_nowait(Delivered(sender, msg_id, body))

    # --- the connection -------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        cap = min(self._backoff_max, self._backoff_base * 2 ** min(attempt, 30))
        return random.uniform(0, cap)  # noqa: S311 - jitter, not a secret

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                if self._mode == "ws":
                    await self._run_ws()
                else:
                    await self._run_poll()
            except asyncio.CancelledError:
                raise
            except _HandshakeRefused as exc:
                if self._transport == "auto":
                    logger.info("relay refused the WebSocket (HTTP %s): long-poll from now on", exc)
                    self._mode = "poll"
                    attempt = 0
                    self._gone()
                    continue
                logger.warning("relay refused the WebSocket (HTTP %s)", exc)
            except _AuthRefused:
                logger.warning("relay refused link %s's key", self.rid[:8])
            except Exception as exc:
                logger.info("relay link %s down (%s)", self.rid[:8], type(exc).__name__)
            self._gone()
            if self._was_ready:
                self._was_ready = False
                attempt = 0
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    def _up(self, max_body: int | None) -> None:
        self._max_body = max_body
        self._ready.set()
        self._was_ready = True
        logger.info("relay link %s up (%s)", self.rid[:8], self._mode)

    def _gone(self) -> None:
        """The connection is down: every send waiting for an answer tries again later."""
        self._ready.clear()
        self._ws = None
        for waiting in self._waiters.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(_Disconnected())

    async def _run_ws(self) -> None:
        try:
            ws = await connect(
                self._ws_url, max_size=self._max_frame, open_timeout=10, close_timeout=2
            )
        except InvalidStatus as exc:
            raise _HandshakeRefused(str(exc.response.status_code)) from None
        async with ws:
            challenge = r.parse_relay_frame(await asyncio.wait_for(ws.recv(), 10))
            if not isinstance(challenge, r.Challenge):
                raise _Disconnected
            pub = self._key.verify_key.encode().hex()
            sig = r.hello_signature(self._key, challenge.nonce)
            await ws.send(r.dump(r.Hello(pub=pub, sig=sig)))
            try:
                ready = r.parse_relay_frame(await asyncio.wait_for(ws.recv(), 10))
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == r.CLOSE_BAD_HELLO:
                    raise _AuthRefused from None
                raise
            if not isinstance(ready, r.Ready):
                raise _Disconnected
            self._ws = ws
            self._up(ready.max_body)
            await self._flush_acks()
            async for raw in ws:
                frame = r.parse_relay_frame(raw)
                if isinstance(frame, r.Msg):
                    self._deliver(frame.sender, frame.id, frame.body)
                elif isinstance(frame, (r.Sent, r.ErrorFrame)) and frame.id is not None:
                    for future in self._waiters.get(frame.id, []):
                        if not future.done():
                            future.set_result(frame)
                if self._ack_backlog:
                    await self._flush_acks()

    async def _post(self, path: str, content: bytes, timeout: float) -> httpx.Response:
        client = self._http
        if client is None:
            raise httpx.ConnectError("not connected")
        full = self._base_path + path
        headers = self._signed_headers(full, content)
        return await client.post(full, content=content, headers=headers, timeout=timeout)

    def _signed_headers(self, full: str, content: bytes) -> dict[str, str]:
        """The HTTP API's headers for a POST of `content` to path `full`, signed by this key."""
        return {
            r.AUTH_HEADER: r.http_auth(self._key, "POST", full, content),
            "content-type": "application/json",
        }

    async def _poll(self, wait: float) -> list[dict[str, str]]:
        skip = sorted(self._held)[:2000]
        content = json.dumps({"wait": wait, "skip": skip}).encode()
        full = self._base_path + r.POLL_PATH
        headers = self._signed_headers(full, content)
        client = self._http
        if client is None:
            raise _Disconnected
        async with client.stream(
            "POST", full, content=content, headers=headers, timeout=wait + _ATTEMPT_TIMEOUT_S
        ) as resp:
            if resp.status_code == 401:
                raise _AuthRefused
            resp.raise_for_status()
            raw = bytearray()
            async for chunk in resp.aiter_bytes():
                raw += chunk
                if len(raw) > self._max_poll:
                    raise _Disconnected  # a relay that sends more than this end takes
        messages = json.loads(raw)["messages"]
        assert isinstance(messages, list)
        return messages

    async def _run_poll(self) -> None:
        async with httpx.AsyncClient(base_url=self._http_base) as client:
            self._http = client
            try:
                await self._poll(0)  # proves the key before the link says it is connected
                self._up(None)  # the HTTP API does not say its cap: the relay's TOO_LARGE does
                while not self._closed:
                    await self._flush_acks()
                    for m in await self._poll(r.MAX_POLL_WAIT_S):
                        self._deliver(m["from"], m["id"], m["body"])
            finally:
                self._http = None


async def handed_over_in_order(link: RelayLink, to: str, body: bytes) -> None:
    """Send `body` to `to` under a fresh message id, in the order of the calls.

    Messages numbered in sequence must leave in that order (relay/envelope.py `Freshness`
    refuses one that arrives after a later one), but waiting for each one's round trip to the
    relay before sending the next would cap a busy end at one message per round trip. asyncio
    starts tasks in the order they are created, and a send writes its frame before it first waits
    for the relay's answer, so sends started one after another leave in order without waiting
    for each other. (Across a reconnect, a resent one may still arrive late: it is refused, and
    its sender's retry, sealed anew, is not.)
    """
    await asyncio.create_task(link.send(to, secrets.token_hex(16), body))
