"""The link both ends use: sends confirmed once, messages handed out once, the long-poll fallback,
and the errors a caller sees."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import pytest
from nacl.signing import SigningKey

from keysafe.errors import (
    MalformedRequestError,
    PayloadTooLargeError,
    RateLimitedError,
    VaultUnreachableError,
)
from keysafe.relay.link import RelayLink
from keysafe.relay.server import RelayConfig
from keysafe.testing import free_port
from tests.relay_fixture import running_relay


def run(config: RelayConfig, test: Callable[[str], Awaitable[None]]) -> None:
    async def go() -> None:
        async with running_relay(config) as url:
            await asyncio.wait_for(test(url), 40)

    asyncio.run(go())


async def started(url: str, key: SigningKey | None = None, **kw: object) -> RelayLink:
    link = RelayLink(url, key or SigningKey.generate(), backoff_base=0.05, backoff_max=0.5, **kw)  # type: ignore[arg-type]
    await link.start()
    assert await link.wait_connected(5)
    return link


def new_id() -> str:
    return secrets.token_hex(16)


@pytest.mark.parametrize("transport", ["ws", "poll"])
def test_send_receive_ack_both_ways(transport: str) -> None:
    async def test(url: str) -> None:
        vault = await started(url, transport=transport)
        agent = await started(url, transport=transport)
        assert vault.connected and vault.transport == transport
        await agent.send(vault.rid, new_id(), b"request")
        got = await asyncio.wait_for(vault.receive(), 5)
        assert (got.sender, got.body) == (agent.rid, b"request")
        await vault.ack(got.id)
        await vault.send(agent.rid, new_id(), b"response")
        back = await asyncio.wait_for(agent.receive(), 5)
        assert (back.sender, back.body) == (vault.rid, b"response")
        await agent.ack(back.id)
        await vault.close()
        await agent.close()
        assert not vault.connected

    run(RelayConfig(), test)


@pytest.mark.parametrize("transport", ["ws", "poll"])
def test_an_unacked_message_comes_back_to_the_next_link_and_an_acked_one_does_not(
    transport: str,
) -> None:
    async def test(url: str) -> None:
        key = SigningKey.generate()
        sender = await started(url, transport=transport)
        ids = [new_id() for _ in range(3)]
        for i, msg_id in enumerate(ids):
            await sender.send(RelayLink(url, key).rid, msg_id, f"m{i}".encode())
        first = await started(url, key, transport=transport)
        got = [await asyncio.wait_for(first.receive(), 5) for _ in ids]
        assert [d.id for d in got] == ids
        await first.ack(ids[0])
        await asyncio.sleep(0.3)  # the link hands each out once: nothing more comes
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first.receive(), 0.5)
        await first.close()
        second = await started(url, key, transport=transport)
        again = [await asyncio.wait_for(second.receive(), 5) for _ in range(2)]
        assert [d.id for d in again] == ids[1:]
        await sender.close()
        await second.close()

    run(RelayConfig(), test)


def test_auto_falls_back_to_long_poll_when_the_websocket_is_refused() -> None:
    async def test(url: str) -> None:
        vault = await started(url.replace("http", "ws", 1), transport="auto")
        agent = await started(url, transport="auto")
        assert vault.transport == "poll" and agent.transport == "poll"
        await agent.send(vault.rid, new_id(), b"through long-poll")
        got = await asyncio.wait_for(vault.receive(), 5)
        assert got.body == b"through long-poll"
        await vault.ack(got.id)
        await vault.close()
        await agent.close()

    run(RelayConfig(websocket=False), test)


def test_a_ws_only_link_does_not_fall_back() -> None:
    async def test(url: str) -> None:
        link = RelayLink(url, SigningKey.generate(), transport="ws", backoff_base=0.05)
        await link.start()
        assert not await link.wait_connected(1.0)
        assert link.transport == "ws"
        await link.close()

    run(RelayConfig(websocket=False), test)


@pytest.mark.parametrize("transport", ["ws", "poll"])
def test_too_large_and_rate_limited_sends_raise(transport: str) -> None:
    async def test(url: str) -> None:
        link = await started(url, transport=transport)
        to = SigningKey.generate()
        to_rid = RelayLink(url, to).rid
        with pytest.raises(PayloadTooLargeError):
            await link.send(to_rid, new_id(), b"x" * 2001, timeout=5)
        await link.send(to_rid, new_id(), b"x" * 2000, timeout=5)
        await link.send(to_rid, new_id(), b"x", timeout=5)  # the bucket is now empty (burst 2)...
        with pytest.raises(RateLimitedError):  # ... and refills at 0.2/s: not within 1 s
            await link.send(to_rid, new_id(), b"x", timeout=1.0)
        with pytest.raises(MalformedRequestError):
            await link.send("not-a-rid", new_id(), b"x")
        await link.close()

    run(RelayConfig(max_body=2000, rate=0.2, burst=2), test)


def test_a_send_to_an_unreachable_relay_times_out_as_unreachable() -> None:
    async def go() -> None:
        link = RelayLink(f"ws://127.0.0.1:{free_port()}", SigningKey.generate(), backoff_base=0.05)
        await link.start()
        with pytest.raises(VaultUnreachableError):
            await link.send(new_id(), new_id(), b"x", timeout=0.5)
        assert not link.connected
        await link.close()

    asyncio.run(go())


def test_plain_text_to_a_remote_host_needs_allow_insecure(caplog: pytest.LogCaptureFixture) -> None:
    key = SigningKey.generate()
    for url in ("ws://relay.example.com", "http://10.0.0.5:8443"):
        with pytest.raises(MalformedRequestError):
            RelayLink(url, key)
    with pytest.raises(MalformedRequestError):
        RelayLink("ftp://relay.example.com", key)
    RelayLink("wss://relay.example.com", key)
    RelayLink("ws://[::1]:8443", key)
    with caplog.at_level("WARNING", logger="keysafe.relay"):
        RelayLink("ws://relay.example.com", key, allow_insecure=True)
    assert "without TLS" in caplog.text
