"""The sidecar gives up at once on a refusal the relay would repeat (a body over the relay's
--max-body, a malformed frame, a signature it rejects), instead of sending the same sealed
message every few seconds until its two-minute deadline and then answering 502."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from nacl.signing import SigningKey

from keysafe.errors import PayloadTooLargeError
from keysafe.relay.envelope import Identity, Kind
from keysafe.relay.link import RelayLink
from keysafe.relay.server import RelayConfig
from keysafe.relay.sidecar_state import SidecarState
from keysafe.sidecar import REQUEST_DEADLINE_S, _Channel, local_app
from tests.relay_fixture import running_relay

TOKEN = "ks_local_test-token"


async def _channel(url: str) -> _Channel:
    link = RelayLink(url, SigningKey.generate(), backoff_base=0.05, backoff_max=0.5)
    await link.start()
    assert await link.wait_connected(5)
    # Nobody listens as the vault: a body the relay takes would wait for the deadline.
    return _Channel(me=Identity.generate(), vault=Identity.generate().public, link=link)


def _run(test: Callable[[str], Awaitable[None]]) -> None:
    async def go() -> None:
        async with running_relay(RelayConfig(max_body=2000)) as url:
            await asyncio.wait_for(test(url), 30)

    asyncio.run(go())


def test_attack_a_body_over_the_relays_cap_is_refused_at_once_not_retried() -> None:
    async def test(url: str) -> None:
        channel = await _channel(url)
        started = time.monotonic()
        with pytest.raises(PayloadTooLargeError) as refused:
            await channel.ask(Kind.REQUEST, {"body": "x" * 4000})
        # Before the fix: VaultUnreachableError after REQUEST_DEADLINE_S (120 s) of resends.
        assert time.monotonic() - started < REQUEST_DEADLINE_S / 10
        assert "--max-body" in (refused.value.next_step or "")
        await channel.link.close()

    _run(test)


def test_the_local_api_answers_413_with_the_relays_cap() -> None:
    async def test(url: str) -> None:
        channel = await _channel(url)
        state = SidecarState(  # only the local token's hash is read here
            agent="bot",
            relay=url,
            vault=Identity.generate().public.to_text(),
            public=channel.me.public.to_text(),
            kdf={},
            salt="",
            nonce="",
            sealed="",
            local_token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest(),
            paired_at="",
        )
        transport = httpx.ASGITransport(app=local_app(state, channel))
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            resp = await client.post(
                "/v1/agent/sign",
                headers={"authorization": f"Bearer {TOKEN}"},
                content=b'{"pad": "' + b"y" * 3000 + b'"}',  # under the sidecar's 1 MiB
            )
        assert resp.status_code == 413, resp.text
        error = resp.json()["error"]
        assert error["code"] == "PAYLOAD_TOO_LARGE"
        assert "relay takes at most 2000" in error["message"]
        await channel.link.close()

    _run(test)
