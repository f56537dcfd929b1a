"""`keysafe relay` as separate processes: two instances sharing one Redis, an instance killed
with SIGKILL mid-session and restarted, the long-poll fallback, TTL, and logs free of bodies."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import subprocess

import pytest
from nacl.signing import SigningKey

from keysafe.relay.link import Delivered, RelayLink, Transport
from keysafe.testing import free_port
from tests.relay_fixture import KEYSAFE, redis_server, relay_process

pytestmark = pytest.mark.slow


def new_id() -> str:
    return secrets.token_hex(16)


async def link(url: str, transport: Transport = "auto") -> RelayLink:
    out = RelayLink(
        url, SigningKey.generate(), transport=transport, backoff_base=0.1, backoff_max=1.0
    )
    await out.start()
    assert await out.wait_connected(10), url
    return out


async def take(receiver: RelayLink, timeout: float = 10) -> Delivered:
    return await asyncio.wait_for(receiver.receive(), timeout)


def test_two_instances_on_one_redis_deliver_across_in_both_directions() -> None:
    async def go(a_url: str, b_url: str, b_poll_url: str) -> None:
        vault = await link(a_url, "ws")
        agent = await link(b_url, "ws")
        await agent.send(vault.rid, new_id(), b"agent via B")
        got = await take(vault)
        assert (got.sender, got.body) == (agent.rid, b"agent via B")
        await vault.ack(got.id)
        await vault.send(agent.rid, new_id(), b"vault via A")
        back = await take(agent)
        assert (back.sender, back.body) == (vault.rid, b"vault via A")
        await agent.ack(back.id)
        # An agent behind a network that blocks WebSockets: long-poll on B, vault on A's socket.
        poller = await link(b_poll_url, "poll")
        await poller.send(vault.rid, new_id(), b"polled")
        got = await take(vault)
        assert got.body == b"polled" and got.sender == poller.rid
        await vault.send(poller.rid, new_id(), b"to the poller")
        assert (await take(poller)).body == b"to the poller"
        for each in (vault, agent, poller):
            await each.close()

    with (
        redis_server() as redis_url,
        relay_process(free_port(), redis_url) as a,
        relay_process(free_port(), redis_url) as b,
    ):
        asyncio.run(asyncio.wait_for(go(a.ws_url, b.ws_url, b.url), 30))


def test_a_relay_killed_mid_session_loses_and_duplicates_nothing() -> None:
    async def go(a: object, a_url: str, b_url: str) -> None:
        receiver = await link(a_url, "ws")
        sender = await link(b_url, "ws")
        sender_on_a = await link(a_url, "ws")
        sent: list[str] = []
        for i in range(20):
            msg_id = new_id()
            await sender.send(receiver.rid, msg_id, f"before {i}".encode())
            sent.append(msg_id)
        handed: list[str] = []
        for i in range(10):  # 10 delivered, of which 5 acked; 10 never delivered
            got = await take(receiver)
            handed.append(got.id)
            if i < 5:
                await receiver.ack(got.id)
        await asyncio.sleep(0.3)  # let the acks reach the relay before the kill
        a.kill()  # type: ignore[attr-defined]
        assert await _until(lambda: not receiver.connected)
        for i in range(10):  # queued in Redis through B while A is dead
            msg_id = new_id()
            await sender.send(receiver.rid, msg_id, f"during {i}".encode())
            sent.append(msg_id)
        late = new_id()  # a send through the dead instance: it waits, then goes through
        pending_send = asyncio.create_task(
            sender_on_a.send(receiver.rid, late, b"late", timeout=20)
        )
        sent.append(late)
        await asyncio.sleep(0.5)
        assert not pending_send.done()
        await asyncio.to_thread(a.restart)  # type: ignore[attr-defined]
        assert await receiver.wait_connected(10)  # reconnected by itself
        await asyncio.wait_for(pending_send, 20)
        while len(set(handed)) < len(sent):
            got = await take(receiver)
            handed.append(got.id)
            await receiver.ack(got.id)
        for msg_id in handed[5:10]:  # the 5 handed out before the kill, acked only now
            await receiver.ack(msg_id)
        with pytest.raises(TimeoutError):  # nothing more, nothing twice
            await take(receiver, 1.5)
        assert sorted(handed) == sorted(sent)
        assert len(handed) == len(set(handed))
        for each in (receiver, sender, sender_on_a):
            await each.close()

    with (
        redis_server() as redis_url,
        relay_process(free_port(), redis_url) as a,
        relay_process(free_port(), redis_url) as b,
    ):
        asyncio.run(asyncio.wait_for(go(a, a.ws_url, b.ws_url), 40))


async def _until(check: object, timeout: float = 10) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


CANARY = b"CANARY-" + secrets.token_hex(8).encode()


def _canary_forms() -> list[str]:
    """The canary as text, and inside base64 at each of the three alignments."""
    forms = [CANARY.decode()]
    for pad in (b"", b"x", b"xy"):
        encoded = base64.b64encode(pad + CANARY).decode()
        forms.append(encoded[4:-4])  # the middle, which any base64 holding the canary contains
    return forms


def test_logs_hold_no_body_and_expired_messages_are_not_delivered() -> None:
    async def go(ws_url: str, http_url: str) -> None:
        import httpx

        from keysafe.relay import routing as r

        vault = await link(ws_url, "ws")
        agent = await link(http_url, "poll")
        await agent.send(vault.rid, new_id(), CANARY)
        await agent.send(vault.rid, new_id(), b"prefix " + CANARY + b" suffix")
        await vault.send(agent.rid, new_id(), CANARY)
        for receiver in (vault, vault, agent):
            got = await take(receiver)
            assert CANARY in got.body
            await receiver.ack(got.id)
        with pytest.raises(Exception):  # noqa: B017 - over the cap: refused, body not logged
            await agent.send(vault.rid, new_id(), CANARY * 1000, timeout=3)
        # Malformed requests holding the canary: refused without quoting it.
        key = SigningKey.generate()
        bad = (
            b'{"to": "'
            + vault.rid.encode()
            + b'", "id": "'
            + new_id().encode()
            + b'", "body": "'
            + CANARY
            + b'!"}'
        )
        async with httpx.AsyncClient(base_url=http_url) as client:
            for content in (bad, b"{" + CANARY):
                resp = await client.post(
                    r.SEND_PATH,
                    content=content,
                    headers={r.AUTH_HEADER: r.http_auth(key, "POST", r.SEND_PATH, content)},
                )
                assert resp.status_code == 400
        # TTL: a message for a recipient that is not there expires before it comes.
        absent = SigningKey.generate()
        await agent.send(RelayLink(ws_url, absent).rid, new_id(), b"expires")
        await asyncio.sleep(1.6)
        late = RelayLink(ws_url, absent, transport="ws")
        await late.start()
        assert await late.wait_connected(10)
        with pytest.raises(TimeoutError):
            await take(late, 1.0)
        for each in (vault, agent, late):
            await each.close()

    with relay_process(
        free_port(), extra_args=("--verbose", "--ttl", "1", "--max-body", "4096")
    ) as relay:
        asyncio.run(asyncio.wait_for(go(relay.ws_url, relay.url), 30))
        log = relay.log()
    assert "relay listening on http://127.0.0.1" in log
    assert "send " in log and "deliver " in log  # per-message lines were written...
    for form in _canary_forms():
        assert form not in log, form  # ...and none holds a body


def test_help_and_a_busy_port() -> None:
    help_text = subprocess.run(
        [KEYSAFE, "relay", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "TLS" in help_text and "plaintext" in help_text and "--redis" in help_text
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [KEYSAFE, "relay", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "already in use" in lines[0], done.stderr
