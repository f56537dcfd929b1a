"""The relay's protocol as a client without the link sees it: raw WebSocket frames and signed
HTTP requests against the app served in-process."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from keysafe.relay import routing as r
from keysafe.relay.server import RelayConfig
from tests.relay_fixture import running_relay


def run(config: RelayConfig, test: Callable[[str], Awaitable[None]]) -> None:
    async def go() -> None:
        async with running_relay(config) as url:
            await asyncio.wait_for(test(url), 30)

    asyncio.run(go())


def rid_of(key: SigningKey) -> str:
    return r.routing_id(key.verify_key.encode())


async def hello(url: str, key: SigningKey) -> ClientConnection:
    """A WebSocket past its hello (the ready frame checked)."""
    ws = await connect(url.replace("http", "ws", 1) + r.WS_PATH)
    challenge = json.loads(await ws.recv())
    assert challenge["type"] == "challenge" and len(challenge["nonce"]) == 64
    sig = r.hello_signature(key, challenge["nonce"])
    await ws.send(json.dumps({"type": "hello", "pub": key.verify_key.encode().hex(), "sig": sig}))
    ready = json.loads(await ws.recv())
    assert ready["type"] == "ready" and ready["rid"] == rid_of(key)
    return ws


async def send(
    ws: ClientConnection, to: str, body: bytes, msg_id: str | None = None
) -> dict[str, Any]:
    msg_id = msg_id or secrets.token_hex(16)
    frame = {"type": "send", "to": to, "id": msg_id, "body": base64.b64encode(body).decode()}
    await ws.send(json.dumps(frame))
    answer: dict[str, Any] = json.loads(await ws.recv())
    assert answer["id"] == msg_id
    return answer


async def next_msg(ws: ClientConnection, timeout: float = 3.0) -> dict[str, Any] | None:
    try:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    except TimeoutError:
        return None
    assert frame["type"] == "msg", frame
    return frame


async def post(
    url: str, key: SigningKey, path: str, payload: Any, *, header_key: SigningKey | None = None
) -> httpx.Response:
    content = json.dumps(payload).encode()
    header = r.http_auth(key, "POST", path, content)
    if header_key is not None:  # another's public key in front of this key's signature
        _, ts, sig = header.split(".")
        header = f"{header_key.verify_key.encode().hex()}.{ts}.{sig}"
    async with httpx.AsyncClient(base_url=url) as client:
        return await client.post(path, content=content, headers={r.AUTH_HEADER: header}, timeout=40)


def test_a_hello_with_a_wrong_signature_is_closed_with_4401() -> None:
    async def test(url: str) -> None:
        key, other = SigningKey.generate(), SigningKey.generate()
        async with connect(url.replace("http", "ws", 1) + r.WS_PATH) as ws:
            challenge = json.loads(await ws.recv())
            # Signed by another key than the one claimed.
            sig = r.hello_signature(other, challenge["nonce"])
            await ws.send(
                json.dumps({"type": "hello", "pub": key.verify_key.encode().hex(), "sig": sig})
            )
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == r.CLOSE_BAD_HELLO
        async with connect(url.replace("http", "ws", 1) + r.WS_PATH) as ws:
            challenge = json.loads(await ws.recv())
            # Right key, but a signature over another nonce (a replayed hello).
            sig = r.hello_signature(key, secrets.token_hex(32))
            await ws.send(
                json.dumps({"type": "hello", "pub": key.verify_key.encode().hex(), "sig": sig})
            )
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == r.CLOSE_BAD_HELLO

    run(RelayConfig(), test)


def test_delivery_is_fifo_and_unacked_messages_come_back_on_the_next_connection() -> None:
    async def test(url: str) -> None:
        alice, bob = SigningKey.generate(), SigningKey.generate()
        a = await hello(url, alice)
        bodies = [f"message {i}".encode() for i in range(4)]
        for body in bodies:
            assert (await send(a, rid_of(bob), body))["type"] == "sent"
        b = await hello(url, bob)
        got = [await next_msg(b) for _ in bodies]
        assert [base64.b64decode(m["body"]) for m in got if m] == bodies
        assert all(m and m["from"] == rid_of(alice) for m in got)
        assert got[0] and got[2]
        for m in (got[0], got[2]):
            await b.send(json.dumps({"type": "ack", "id": m["id"]}))
        await asyncio.sleep(0.2)
        assert await next_msg(b, 0.3) is None  # each is delivered once per connection
        await b.close()
        b = await hello(url, bob)  # unacked: 1 and 3, in order
        again = [await next_msg(b) for _ in range(2)]
        assert [m["id"] for m in again if m] == [got[1]["id"], got[3]["id"]]  # type: ignore[index]
        assert await next_msg(b, 0.3) is None
        await a.close()
        await b.close()

    run(RelayConfig(), test)


def test_a_second_connection_of_the_same_key_replaces_the_first() -> None:
    async def test(url: str) -> None:
        key = SigningKey.generate()
        first = await hello(url, key)
        second = await hello(url, key)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(first.recv(), 3)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == r.CLOSE_REPLACED
        sender = await hello(url, SigningKey.generate())
        assert (await send(sender, rid_of(key), b"to the newest"))["type"] == "sent"
        assert await next_msg(second) is not None
        await second.close()
        await sender.close()

    run(RelayConfig(), test)


def test_a_body_over_the_cap_is_refused_on_both_apis() -> None:
    async def test(url: str) -> None:
        alice, bob = SigningKey.generate(), SigningKey.generate()
        a = await hello(url, alice)
        assert (await send(a, rid_of(bob), b"x" * 1000))["type"] == "sent"
        answer = await send(a, rid_of(bob), b"x" * 1001)
        assert answer["type"] == "error" and answer["code"] == "PAYLOAD_TOO_LARGE"
        resp = await post(
            url,
            alice,
            r.SEND_PATH,
            {
                "to": rid_of(bob),
                "id": secrets.token_hex(16),
                "body": base64.b64encode(b"y" * 1001).decode(),
            },
        )
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        b = await hello(url, bob)
        assert await next_msg(b) is not None
        assert await next_msg(b, 0.3) is None  # only the one within the cap was stored
        await a.close()
        await b.close()

    run(RelayConfig(max_body=1000), test)


def test_a_sender_over_its_rate_is_refused_with_a_retry_time() -> None:
    async def test(url: str) -> None:
        alice, bob = SigningKey.generate(), SigningKey.generate()
        a = await hello(url, alice)
        answers = [await send(a, rid_of(bob), b"x") for _ in range(8)]
        codes = [x.get("code", x["type"]) for x in answers]
        assert codes[:5] == ["sent"] * 5 and set(codes[5:]) == {"RATE_LIMITED"}
        assert 0 < answers[-1]["retry_after"] <= 1.0
        # Another sender has its own bucket.
        c = await hello(url, SigningKey.generate())
        assert (await send(c, rid_of(bob), b"x"))["type"] == "sent"
        # Over HTTP: 429 with the wait.
        resp = await post(
            url, alice, r.SEND_PATH, {"to": rid_of(bob), "id": secrets.token_hex(16), "body": ""}
        )
        assert resp.status_code == 429 and resp.json()["error"]["code"] == "RATE_LIMITED"
        await asyncio.sleep(0.6)  # two tokens at 2/s... at least one back
        assert (await send(a, rid_of(bob), b"x"))["type"] == "sent"
        await a.close()
        await c.close()

    run(RelayConfig(rate=2, burst=5), test)


def test_the_same_id_sent_twice_is_answered_sent_twice_and_stored_once() -> None:
    async def test(url: str) -> None:
        alice, bob = SigningKey.generate(), SigningKey.generate()
        a = await hello(url, alice)
        msg_id = secrets.token_hex(16)
        assert (await send(a, rid_of(bob), b"once", msg_id))["type"] == "sent"
        assert (await send(a, rid_of(bob), b"once", msg_id))["type"] == "sent"
        resp = await post(
            url, alice, r.SEND_PATH, {"to": rid_of(bob), "id": msg_id, "body": "b25jZQ=="}
        )
        assert resp.status_code == 200 and resp.json() == {"ok": True}
        b = await hello(url, bob)
        first = await next_msg(b)
        assert first is not None and first["id"] == msg_id
        assert await next_msg(b, 0.5) is None
        await a.close()
        await b.close()

    run(RelayConfig(), test)


def test_an_expired_message_is_dropped_not_delivered() -> None:
    async def test(url: str) -> None:
        alice, bob = SigningKey.generate(), SigningKey.generate()
        a = await hello(url, alice)
        assert (await send(a, rid_of(bob), b"stale"))["type"] == "sent"
        await asyncio.sleep(0.7)
        assert (await send(a, rid_of(bob), b"fresh"))["type"] == "sent"
        b = await hello(url, bob)
        m = await next_msg(b)
        assert m is not None and base64.b64decode(m["body"]) == b"fresh"
        assert await next_msg(b, 0.3) is None
        await a.close()
        await b.close()

    run(RelayConfig(ttl=0.5), test)


def test_long_poll_reads_only_the_signers_own_mailbox() -> None:
    async def test(url: str) -> None:
        alice, bob, mallory = (SigningKey.generate() for _ in range(3))
        resp = await post(
            url,
            alice,
            r.SEND_PATH,
            {
                "to": rid_of(bob),
                "id": secrets.token_hex(16),
                "body": base64.b64encode(b"for bob").decode(),
            },
        )
        assert resp.status_code == 200
        # Mallory signs a poll but names Bob's key: refused.
        resp = await post(url, mallory, r.POLL_PATH, {"wait": 0}, header_key=bob)
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "NOT_AUTHENTICATED"
        # Her own mailbox is empty, whatever she asks for.
        resp = await post(url, mallory, r.POLL_PATH, {"wait": 0})
        assert resp.status_code == 200 and resp.json() == {"messages": []}
        resp = await post(url, mallory, r.ACK_PATH, {"ids": []})
        assert resp.status_code == 200
        # No header at all.
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.post(r.POLL_PATH, json={"wait": 0})).status_code == 401
        # Bob gets it, and still gets it until he acks.
        for _ in range(2):
            resp = await post(url, bob, r.POLL_PATH, {"wait": 0})
            (m,) = resp.json()["messages"]
            assert m["from"] == rid_of(alice) and base64.b64decode(m["body"]) == b"for bob"
        # Mallory's ack of Bob's message id touches her own mailbox only.
        assert (await post(url, mallory, r.ACK_PATH, {"ids": [m["id"]]})).status_code == 200
        assert len((await post(url, bob, r.POLL_PATH, {"wait": 0})).json()["messages"]) == 1
        assert (await post(url, bob, r.ACK_PATH, {"ids": [m["id"]]})).json() == {"ok": True}
        assert (await post(url, bob, r.POLL_PATH, {"wait": 0})).json() == {"messages": []}

    run(RelayConfig(), test)


def test_a_long_poll_returns_as_soon_as_a_message_arrives() -> None:
    async def test(url: str) -> None:
        alice, bob = SigningKey.generate(), SigningKey.generate()
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiting = asyncio.create_task(post(url, bob, r.POLL_PATH, {"wait": 10}))
        await asyncio.sleep(0.3)
        a = await hello(url, alice)
        await send(a, rid_of(bob), b"wake up")
        resp = await waiting
        assert len(resp.json()["messages"]) == 1
        assert loop.time() - started < 3
        # Held ids may be skipped: then the poll waits for something new, and ends at `wait`.
        held = resp.json()["messages"][0]["id"]
        started = loop.time()
        resp = await post(url, bob, r.POLL_PATH, {"wait": 0.5, "skip": [held]})
        assert resp.json() == {"messages": []} and loop.time() - started >= 0.5
        await a.close()

    run(RelayConfig(), test)


def test_a_stale_or_tampered_http_request_is_refused() -> None:
    async def test(url: str) -> None:
        key = SigningKey.generate()
        content = json.dumps({"wait": 0}).encode()
        async with httpx.AsyncClient(base_url=url) as client:
            stale = r.http_auth(key, "POST", r.POLL_PATH, content, now_ms=1_000_000)
            resp = await client.post(r.POLL_PATH, content=content, headers={r.AUTH_HEADER: stale})
            assert resp.status_code == 401
            good = r.http_auth(key, "POST", r.POLL_PATH, content)
            resp = await client.post(
                r.POLL_PATH, content=b'{"wait": 1}', headers={r.AUTH_HEADER: good}
            )
            assert resp.status_code == 401
            resp = await client.post(r.POLL_PATH, content=content, headers={r.AUTH_HEADER: good})
            assert resp.status_code == 200

    run(RelayConfig(), test)


def test_health_answers() -> None:
    async def test(url: str) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get(r.HEALTH_PATH)).json() == {"ok": True}

    run(RelayConfig(), test)


def test_connections_that_never_say_hello_are_capped_per_address_and_timed_out() -> None:
    async def test(url: str) -> None:
        ws_url = url.replace("http", "ws", 1) + r.WS_PATH
        idle = [await connect(ws_url) for _ in range(2)]
        with pytest.raises(InvalidStatus):  # a third, before either said hello: refused
            await connect(ws_url)
        for ws in idle:  # and the silent ones are closed after the hello timeout
            await ws.recv()  # the challenge
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 3)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == r.CLOSE_BAD_HELLO
        ok = await hello(url, SigningKey.generate())  # room again
        await ok.close()

    run(RelayConfig(max_handshakes_per_ip=2, hello_timeout=0.5), test)
