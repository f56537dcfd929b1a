"""The agent's side of a 2-of-3 EVM signature (`keysafe mcp`), against a vault that cheats: the
agent's own checks name the vault, and a failed check on the pair's OT state bans the pair in
this process and, through a marker beside the share file, in the next one."""

from __future__ import annotations

import asyncio
import base64
import secrets
from pathlib import Path
from typing import Any, cast

import pytest

from keysafe.errors import MalformedRequestError
from keysafe.mcp_server import threshold
from keysafe.mpc import share_file
from keysafe.mpc.dkls import cosigner, signing
from keysafe.mpc.frost.keys import AGENT, USER
from keysafe.mpc.share_file import SecretBytes, Share
from keysafe.remote import AgentClient
from keysafe.testing import CHEAP_KDF
from tests.unit.mpc.dkls_helpers import Wallet, make_wallet

TOKEN = "ks_agent_dkls-agent-side-test-token"
SHARE_KEY = "the agent share key of the agent-side test"
TX = {
    "type": 2,
    "chainId": 31337,
    "nonce": 0,
    "to": "0x1111111111111111111111111111111111111111",
    "value": 1,
    "gas": 21000,
    "maxFeePerGas": 2 * 10**9,
    "maxPriorityFeePerGas": 10**9,
}


class BentVault:
    """The vault's side, run with keysafe's own protocol code, bending its round 2."""

    def __init__(self, wallet: Wallet, bend: bool) -> None:
        self.wallet, self.bend, self.opened = wallet, bend, 0

    async def threshold_commit(self, name: str) -> dict[str, Any]:
        self.opened += 1
        self.sid = secrets.token_bytes(32)
        return {"session_id": self.sid.hex(), "protocol": "dkls23", "wallet": name}

    async def threshold_exchange(self, body: dict[str, Any]) -> dict[str, Any]:
        digest = cosigner.transaction_digest(body["transaction"])
        state, first = signing.round1(
            self.wallet.keys[USER], self.wallet.pairs[(USER, AGENT)], digest, self.sid
        )
        second = bytearray(signing.round2(state, base64.b64decode(body["round1"])))
        if self.bend:
            second[-1] ^= 1  # the multiplication check value u[1]
        return {
            "session_id": self.sid.hex(),
            "round1": base64.b64encode(first).decode(),
            "round2": base64.b64encode(bytes(second)).decode(),
        }


def _client(vault: BentVault) -> AgentClient:
    return cast(AgentClient, vault)  # the two methods the agent side calls


@pytest.fixture(scope="module")
def wallet() -> Wallet:
    return make_wallet(b"dkls-agent-side")


def _share_file(wallet: Wallet, path: Path) -> None:
    share = Share(wallet.keys[AGENT], {p: wallet.pairs[(AGENT, p)] for p in (USER, 3)})
    doc = share_file.seal_agent_share(
        "team", "vault-id", share, SecretBytes(bytearray(SHARE_KEY.encode())), params=CHEAP_KDF
    )
    share_file.write(path, doc)


def test_attack_cheating_vault_is_named_and_banned_across_restarts(
    wallet: Wallet, tmp_path: Path
) -> None:
    path = tmp_path / "team-agent.json"
    _share_file(wallet, path)
    share = threshold.load_shares(TOKEN, str(path), share_key=SHARE_KEY)["team"]
    honest = BentVault(wallet, bend=False)
    part = asyncio.run(threshold.transaction_part(_client(honest), share, "team", TX, None))
    assert set(part) == {"session_id", "round2", "round3"}

    with pytest.raises(MalformedRequestError) as caught:
        asyncio.run(
            threshold.transaction_part(
                _client(BentVault(wallet, bend=True)), share, "team", TX, None
            )
        )
    assert caught.value.facts.get("culprit") == USER and caught.value.facts.get("banned")
    assert (tmp_path / "team-agent.json.banned").exists()
    # this process, and the next one (the marker): the pair is done, nothing is even asked
    again = threshold.load_shares(TOKEN, str(path), share_key=SHARE_KEY)["team"]
    opened = honest.opened
    for which in (share, again):
        with pytest.raises(MalformedRequestError, match="no longer signs"):
            asyncio.run(threshold.transaction_part(_client(honest), which, "team", TX, None))
    assert honest.opened == opened
