"""End to end on a real local EVM node (ganache): allowed sends land, an over-limit one does not.

Acceptance (chains issue, 3): an allowed ETH send and an allowed ERC-20 transfer land on the node;
an over-limit one is refused with nothing broadcast and no budget consumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode

from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import PolicyDeniedError
from keysafe.service import agents, audit, policies, registry, signing, wallets
from keysafe.service.models import SignTransactionRequest
from keysafe.service.signing_gate import SignResult
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault
from tests.evm_node import Node
from tests.evm_node import evm_node_fixture as evm_node_fixture  # the session fixture `evm_node`

BOB = "0x1111111111111111111111111111111111111111"
ETH = 10**18
TKN = 10**6

POLICY = """
version: 1
rules:
  - name: pay-bob
    allow: [evm.transfer]
    wallets: [main]
    chains: [local]
    assets: [ETH, TKN]
    recipients: ["0x1111111111111111111111111111111111111111"]
    max_per_tx: {ETH: "1", TKN: "100"}
    limits:
      - {window: 24h, max: {ETH: "1.5", TKN: "150"}}
"""


@dataclass
class World:
    node: Node
    vault: Vault
    address: str
    token: str


@pytest.fixture(scope="module")
def node(evm_node: Node) -> Node:
    return evm_node


@pytest.fixture
def world(node: Node, tmp_path: Path) -> Iterator[World]:
    vault, _ = init_vault(
        Home(tmp_path / "home"),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
        clock=lambda: datetime.now(UTC),
    )
    w = wallets.create_wallet(vault, "main", Chain.EVM)
    registry.add_chain(vault, "local", family="evm", chain_id=31337, rpc=node.url)
    token = node.deploy_token("Test Token", "TKN", 6, 10**6 * TKN)
    registry.add_asset(vault, "TKN", chain="local", address=token, decimals=6)
    node.send_from_node({"to": w.address, "value": hex(5 * ETH)})
    transfer = "0xa9059cbb" + encode(["address", "uint256"], [w.address, 1000 * TKN]).hex()
    node.send_from_node({"to": token, "data": transfer, "gas": hex(200_000)})
    agents.add_agent(vault, "payer")
    policies.set_policy(vault, "payer", POLICY)
    yield World(node, vault, w.address, token)
    vault.lock()


def live_units(vault: Vault) -> list[tuple[str, str]]:
    with vault.db.read() as conn:
        rows = conn.execute(
            t.ledger.select().where(t.ledger.c.state.in_(("reserved", "committed")))
        ).all()
    return [(r.asset, r.units) for r in rows]


def fee_wei(result: SignResult) -> int:
    """The max fee the node filled in (gas × max fee per gas), as the intent carries it."""
    return int(Decimal(result.intent["fee"]) * ETH)


def send(world: World, tx: dict[str, Any], declared: dict[str, Any] | None = None) -> SignResult:
    """The agent "payer" sends `tx` from the wallet "main"."""
    ask = SignTransactionRequest(wallet="main", transaction=tx, declared=declared)
    return signing.sign_transaction(world.vault, "payer", ask, broadcast=True)


def test_send_allowed_eth_transfer_lands_on_the_node(world: World) -> None:
    before = world.node.balance(BOB)
    tx = {"to": BOB, "value": hex(ETH // 2), "chainId": 31337}  # nonce, gas, fees from the node

    result = send(world, tx)

    assert result.status == "sent"
    receipt = world.node.wait(result.tx_hash or "")
    assert receipt["status"] == "0x1"
    assert receipt["from"].lower() == world.address.lower()
    assert world.node.balance(BOB) - before == ETH // 2
    fee = fee_wei(result)
    assert 0 < fee < ETH // 100  # the node's gas price is realistic
    assert live_units(world.vault) == [("local:native", str(ETH // 2 + fee))]  # value + max fee


def test_send_allowed_erc20_transfer_lands_on_the_node(world: World) -> None:
    before = world.node.token_balance(world.token, BOB)
    data = "0xa9059cbb" + encode(["address", "uint256"], [BOB, 50 * TKN]).hex()
    tx = {"to": world.token, "data": data, "value": "0x0", "chainId": 31337}

    result = send(world, tx, declared={"asset": "TKN", "amount": "50", "to": BOB})

    assert result.status == "sent"
    assert world.node.wait(result.tx_hash or "")["status"] == "0x1"
    assert world.node.token_balance(world.token, BOB) - before == 50 * TKN
    assert "50 TKN" in result.summary


def test_send_over_limit_is_refused_nothing_broadcast_no_budget_used(world: World) -> None:
    nonce_before = world.node.nonce(world.address)
    balance_before = world.node.balance(BOB)

    with pytest.raises(PolicyDeniedError) as info:
        send(world, {"to": BOB, "value": hex(2 * ETH), "chainId": 31337})

    assert info.value.facts["reason_code"] == "OVER_PER_TX_LIMIT"
    assert info.value.facts["rule"] == "pay-bob"
    assert world.node.nonce(world.address) == nonce_before
    assert world.node.balance(BOB) == balance_before
    assert live_units(world.vault) == []
    assert audit.verify(world.vault).ok


def test_send_over_the_24h_window_is_refused_after_earlier_spends(world: World) -> None:
    first = send(world, {"to": BOB, "value": hex(ETH * 9 // 10), "chainId": 31337})
    nonce_before = world.node.nonce(world.address)

    # 0.9 + 0.6 ETH of value is exactly the 1.5 ETH window; with the fees it is over.
    with pytest.raises(PolicyDeniedError) as info:
        send(world, {"to": BOB, "value": hex(ETH * 6 // 10), "chainId": 31337})

    assert info.value.code == "BUDGET_EXCEEDED"
    assert world.node.nonce(world.address) == nonce_before
    assert live_units(world.vault) == [("local:native", str(ETH * 9 // 10 + fee_wei(first)))]


def test_declared_amount_that_differs_from_the_transaction_is_refused(world: World) -> None:
    from keysafe.errors import MalformedRequestError

    with pytest.raises(MalformedRequestError, match="declares amount"):
        send(
            world,
            {"to": BOB, "value": hex(ETH // 10), "chainId": 31337},
            declared={"amount": "0.01"},
        )
    assert live_units(world.vault) == []


def test_owner_sees_the_wallet_balance_from_the_node(world: World) -> None:
    view = next(w for w in wallets.list_wallets(world.vault) if w.name == "main")
    got = {b["chain"]: b for b in wallets.balances(world.vault, view)}
    assert got["local"] == {"chain": "local", "asset": "ETH", "balance": "5"}  # funded 5 ETH
    assert "solana-local" not in got  # only chains of the wallet's family
