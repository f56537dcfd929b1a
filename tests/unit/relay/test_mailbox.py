"""Both mailbox stores keep the same promises: FIFO, once per (sender, id) within the TTL, a cap,
expiry, ack-only deletion, and wake-ups that are never lost."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator

import pytest

from keysafe.relay.mailbox import Mailboxes, MemoryMailboxes, PutResult, RedisMailboxes
from tests.relay_fixture import redis_server

A, B, C = (secrets.token_hex(16) for _ in range(3))


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


Factory = Callable[..., Awaitable[Mailboxes]]


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest) -> Iterator[Factory]:
    async def factory(ttl: float = 30.0, cap: int = 1000) -> Mailboxes:
        if request.param == "memory":
            box: Mailboxes = MemoryMailboxes(ttl=ttl, cap=cap)
        else:
            box = RedisMailboxes(request.getfixturevalue("redis_url"), ttl=ttl, cap=cap)
        await box.start()
        return box

    yield factory


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro_fn())  # type: ignore[arg-type]


def rid() -> str:
    return secrets.token_hex(16)


def test_fifo_and_ack_deletes_only_what_is_acked(make: Factory) -> None:
    async def go() -> None:
        box = await make()
        to = rid()
        ids = [secrets.token_hex(16) for _ in range(5)]
        for i, msg_id in enumerate(ids):
            assert await box.put(to, A, msg_id, f"m{i}".encode()) is PutResult.STORED
        assert [e.id for e in await box.pending(to)] == ids
        assert [e.body for e in await box.pending(to, limit=2)] == [b"m0", b"m1"]
        # Reading does not delete: only an ack does.
        assert len(await box.pending(to)) == 5
        await box.ack(to, [ids[1], ids[3], secrets.token_hex(16)])
        assert [e.id for e in await box.pending(to)] == [ids[0], ids[2], ids[4]]
        # Another recipient's ack of the same ids touches nothing here.
        await box.ack(rid(), ids)
        assert len(await box.pending(to)) == 3
        assert await box.pending(rid()) == []
        await box.close()

    run(go)


def test_the_same_sender_and_id_is_stored_once_even_after_the_ack(make: Factory) -> None:
    async def go() -> None:
        box = await make()
        to, msg_id = rid(), secrets.token_hex(16)
        assert await box.put(to, A, msg_id, b"one") is PutResult.STORED
        assert await box.put(to, A, msg_id, b"one") is PutResult.DUPLICATE
        assert len(await box.pending(to)) == 1
        await box.ack(to, [msg_id])
        # A retry after the recipient acked must not deliver it a second time.
        assert await box.put(to, A, msg_id, b"one") is PutResult.DUPLICATE
        assert await box.pending(to) == []
        # The same id to another recipient is another message.
        assert await box.put(rid(), A, msg_id, b"one") is PutResult.STORED
        await box.close()

    run(go)


def test_a_full_mailbox_refuses_until_something_is_acked(make: Factory) -> None:
    async def go() -> None:
        box = await make(cap=3)
        to = rid()
        ids = [secrets.token_hex(16) for _ in range(4)]
        for msg_id in ids[:3]:
            assert await box.put(to, A, msg_id, b"x") is PutResult.STORED
        assert await box.put(to, B, ids[3], b"x") is PutResult.FULL
        await box.ack(to, [ids[0]])
        assert await box.put(to, B, ids[3], b"x") is PutResult.STORED
        await box.close()

    run(go)


def test_an_expired_message_is_never_delivered_and_frees_its_place(make: Factory) -> None:
    async def go() -> None:
        box = await make(ttl=0.3, cap=1)
        to = rid()
        assert await box.put(to, A, secrets.token_hex(16), b"old") is PutResult.STORED
        assert len(await box.pending(to)) == 1
        await asyncio.sleep(0.45)
        assert await box.pending(to) == []
        assert await box.put(to, A, secrets.token_hex(16), b"new") is PutResult.STORED
        assert [e.body for e in await box.pending(to)] == [b"new"]
        await box.close()

    run(go)


def test_a_put_wakes_the_recipients_subscription_and_only_it(make: Factory) -> None:
    async def go() -> None:
        box = await make()
        to, other = rid(), rid()
        sub, other_sub = await box.subscribe(to), await box.subscribe(other)
        assert not await sub.wait(0.05)
        await box.put(to, A, secrets.token_hex(16), b"x")
        assert await sub.wait(2.0)
        assert not await other_sub.wait(0.2)
        # A put between two waits is not lost: the flag waits for the next `wait`.
        await box.put(to, A, secrets.token_hex(16), b"y")
        await asyncio.sleep(0.2)
        assert await sub.wait(0.01)
        await box.unsubscribe(sub)
        await box.unsubscribe(other_sub)
        await box.close()

    run(go)


def test_redis_wakes_a_subscriber_of_another_instance(redis_url: str) -> None:
    async def go() -> None:
        one = RedisMailboxes(redis_url, ttl=30, cap=10)
        two = RedisMailboxes(redis_url, ttl=30, cap=10)
        await one.start()
        await two.start()
        to = rid()
        sub = await one.subscribe(to)
        await two.put(to, C, secrets.token_hex(16), b"across")
        assert await sub.wait(2.0)
        assert [e.body for e in await one.pending(to)] == [b"across"]
        await one.unsubscribe(sub)
        await one.close()
        await two.close()

    run(go)
