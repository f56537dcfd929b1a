"""Where the relay keeps undelivered envelopes: one FIFO mailbox per routing id.

A message stays in its recipient's mailbox until the recipient acks it or its TTL runs out, so a
connection that drops between delivery and ack loses nothing (at-least-once). `MemoryMailboxes`
serves one relay instance; `RedisMailboxes` lets several instances share mailboxes and wake-ups
(and survive a restart of any of them). Nothing but the envelopes, their ids and expiry is kept.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

logger = logging.getLogger("keysafe.relay")


@dataclass(frozen=True)
class Envelope:
    """One stored message: who sent it, its id, its opaque body, and when it expires (unix s)."""

    sender: str
    id: str
    body: bytes
    expires_at: float


class PutResult(Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # the same (sender, id) was stored within the TTL: kept once
    FULL = "full"


@dataclass(eq=False)  # compared and hashed by identity: a set holds each live one
class Subscription:
    """Wake-ups for one routing id. `wait` returns once something may have arrived since it last
    returned: the flag is sticky, so a wake-up between a `pending` call and the next `wait` is
    never lost."""

    rid: str
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    def poke(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True if woken, False after `timeout` seconds without a wake-up."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class Mailboxes(ABC):
    """The relay's store. `put` files a message, `pending` lists a mailbox (FIFO, unexpired,
    delivered or not), `ack` deletes, `subscribe` gives wake-ups for a routing id."""

    def __init__(self, *, ttl: float, cap: int) -> None:
        self.ttl = ttl
        self.cap = cap
        self._subs: dict[str, set[Subscription]] = {}

    @abstractmethod
    async def put(self, to: str, sender: str, msg_id: str, body: bytes) -> PutResult:
        """File a message for `to`, expiring after the TTL.

        Raises:
            Exception: the store is unreachable (Redis); nothing was filed.
        """

    @abstractmethod
    async def pending(self, rid: str, limit: int = 100) -> list[Envelope]:
        """The oldest `limit` unexpired messages of `rid`'s mailbox, oldest first."""

    @abstractmethod
    async def ack(self, rid: str, ids: Iterable[str]) -> None:
        """Delete these messages from `rid`'s mailbox (unknown ids are ignored)."""

    async def subscribe(self, rid: str) -> Subscription:
        """Wake-ups for `rid`, live before this returns; end them with `unsubscribe`."""
        sub = Subscription(rid)
        self._subs.setdefault(rid, set()).add(sub)
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.rid)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.rid]

    def _wake_local(self, rid: str) -> None:
        for sub in self._subs.get(rid, ()):
            sub.poke()

    async def start(self) -> None:  # noqa: B027 - a hook only a remote store needs
        """Connect to the store, if it is remote."""

    async def close(self) -> None:  # noqa: B027 - a hook only a remote store needs
        """Release the store's connections."""


class MemoryMailboxes(Mailboxes):
    """Mailboxes in this process's memory: one relay instance, lost on restart."""

    def __init__(self, *, ttl: float, cap: int) -> None:
        super().__init__(ttl=ttl, cap=cap)
        self._boxes: dict[str, OrderedDict[str, Envelope]] = {}
        # (to, sender, id) -> expiry, in insertion order; with one TTL that is expiry order too.
        self._seen: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def _prune(self, rid: str, now: float) -> OrderedDict[str, Envelope] | None:
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        box = self._boxes.get(rid)
        if box is None:
            return None
        for key in [k for k, env in box.items() if env.expires_at <= now]:
            del box[key]
        if not box:
            del self._boxes[rid]
            return None
        return box

    async def put(self, to: str, sender: str, msg_id: str, body: bytes) -> PutResult:
        now = time.time()
        box = self._prune(to, now)
        if (to, sender, msg_id) in self._seen or (box is not None and msg_id in box):
            return PutResult.DUPLICATE
        if box is not None and len(box) >= self.cap:
            return PutResult.FULL
        expires = now + self.ttl
        self._seen[(to, sender, msg_id)] = expires
        self._boxes.setdefault(to, OrderedDict())[msg_id] = Envelope(sender, msg_id, body, expires)
        self._wake_local(to)
        return PutResult.STORED

    async def pending(self, rid: str, limit: int = 100) -> list[Envelope]:
        box = self._prune(rid, time.time())
        return [] if box is None else list(box.values())[:limit]

    async def ack(self, rid: str, ids: Iterable[str]) -> None:
        box = self._boxes.get(rid)
        if box is None:
            return
        for msg_id in ids:
            box.pop(msg_id, None)
        if not box:
            del self._boxes[rid]


# Every key of one mailbox carries the routing id as a hash tag, so a script touches one slot.
# q: ZSET id -> sequence (FIFO order); x: ZSET id -> expiry (ms); m: HASH id -> envelope JSON;
# d:SENDER:ID: the idempotency marker, kept for the TTL after the message is acked.
# Both scripts first drop the mailbox's expired messages (`now` in ms, from the server's clock).
_DROP_EXPIRED = (
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', x, '-inf', now)
if #old > 0 then
  redis.call('ZREM', q, unpack(old)); redis.call('ZREM', x, unpack(old));"""
    """ redis.call('HDEL', m, unpack(old))
end
"""
)
_PUT = (
    """
local q, x, m, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local seen, id, ttl, cap = KEYS[5], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
"""
    + _DROP_EXPIRED
    + """
if redis.call('EXISTS', seen) == 1 or redis.call('HEXISTS', m, id) == 1 then return 'duplicate' end
if redis.call('ZCARD', q) >= cap then return 'full' end
local exp = now + ttl
redis.call('SET', seen, '1', 'PX', ttl)
redis.call('ZADD', q, redis.call('INCR', seq), id)
redis.call('ZADD', x, exp, id)
redis.call('HSET', m, id, string.format('{"e":%d,', exp) .. ARGV[4])
for _, k in ipairs({q, x, m, seq}) do
  local left = redis.call('PTTL', k)
  if left < ttl then redis.call('PEXPIRE', k, ttl) end
end
redis.call('PUBLISH', ARGV[5], '1')
return 'stored'
"""
)
_PENDING = (
    """
local q, x, m = KEYS[1], KEYS[2], KEYS[3]
"""
    + _DROP_EXPIRED
    + """
local ids = redis.call('ZRANGE', q, 0, tonumber(ARGV[1]) - 1)
if #ids == 0 then return {} end
return redis.call('HMGET', m, unpack(ids))
"""
)
_WAKE_PREFIX = "ksr:wake:"


def _keys(rid: str) -> tuple[str, str, str, str]:
    return f"ksr:{{{rid}}}:q", f"ksr:{{{rid}}}:x", f"ksr:{{{rid}}}:m", f"ksr:{{{rid}}}:seq"


class RedisMailboxes(Mailboxes):
    """Mailboxes in Redis, shared by every relay instance pointed at it. A put PUBLISHes on the
    recipient's channel, and the instance holding that recipient's connection delivers at once;
    a restarted instance finds every unacked message where it was."""

    def __init__(self, url: str, *, ttl: float, cap: int) -> None:
        super().__init__(ttl=ttl, cap=cap)
        import redis.asyncio as redis  # here: a memory-only relay does not need it loaded

        self._redis: Any = redis.Redis.from_url(url)
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._confirmed: dict[str, asyncio.Event] = {}
        self._put: Any = self._redis.register_script(_PUT)
        self._pending: Any = self._redis.register_script(_PENDING)

    async def start(self) -> None:
        await self._redis.ping()
        self._pubsub = self._redis.pubsub()
        # A channel of this instance alone keeps the pub/sub connection open while no
        # recipient is connected here, so the reader always has a connection to read.
        await self._pubsub.subscribe(f"ksr:instance:{secrets.token_hex(8)}")
        self._reader = asyncio.create_task(self._read(), name="relay-redis-wakeups")

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: the connection is re-made on the next read
                logger.warning("relay: redis wake-ups interrupted (%s)", type(exc).__name__)
                await asyncio.sleep(0.5)
                self._wake_all()  # a wake-up may have been missed: everyone looks again
                continue
            if message is None:
                continue
            channel = message["channel"].decode()
            if not channel.startswith(_WAKE_PREFIX):
                continue
            rid = channel.removeprefix(_WAKE_PREFIX)
            if message["type"] == "subscribe" and rid in self._confirmed:
                self._confirmed[rid].set()
            elif message["type"] == "message":
                self._wake_local(rid)

    def _wake_all(self) -> None:
        for rid in list(self._subs):
            self._wake_local(rid)

    async def subscribe(self, rid: str) -> Subscription:
        first = rid not in self._subs
        sub = await super().subscribe(rid)
        if first:
            confirmed = self._confirmed.setdefault(rid, asyncio.Event())
            await self._pubsub.subscribe(_WAKE_PREFIX + rid)
            try:  # live before we return: a put after this point wakes the subscriber
                await asyncio.wait_for(confirmed.wait(), 5.0)
            except TimeoutError:
                logger.warning("relay: redis did not confirm a subscription for %s", rid[:8])
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        await super().unsubscribe(sub)
        if sub.rid not in self._subs:
            self._confirmed.pop(sub.rid, None)
            await self._pubsub.unsubscribe(_WAKE_PREFIX + sub.rid)

    async def put(self, to: str, sender: str, msg_id: str, body: bytes) -> PutResult:
        q, x, m, seq = _keys(to)
        rest = json.dumps({"f": sender, "i": msg_id, "b": base64.b64encode(body).decode()})[1:]
        seen = f"ksr:{{{to}}}:d:{sender}:{msg_id}"
        answer = await self._put(
            keys=[q, x, m, seq, seen],
            args=[msg_id, int(self.ttl * 1000), self.cap, rest, _WAKE_PREFIX + to],
        )
        return PutResult(answer.decode() if isinstance(answer, bytes) else answer)

    async def pending(self, rid: str, limit: int = 100) -> list[Envelope]:
        q, x, m, _ = _keys(rid)
        raw = await self._pending(keys=[q, x, m], args=[limit])
        out: list[Envelope] = []
        for item in raw:
            if item is None:  # deleted between the two reads of the script: cannot happen
                continue
            data = json.loads(item)
            out.append(
                Envelope(data["f"], data["i"], base64.b64decode(data["b"]), data["e"] / 1000)
            )
        return out

    async def ack(self, rid: str, ids: Iterable[str]) -> None:
        id_list = list(ids)
        if not id_list:
            return
        q, x, m, _ = _keys(rid)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(q, *id_list)
            pipe.zrem(x, *id_list)
            pipe.hdel(m, *id_list)
            await pipe.execute()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._redis.aclose()
