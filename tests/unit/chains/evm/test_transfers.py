"""The EVM transfers keysafe builds decode to exactly the transfer asked for."""

from __future__ import annotations

import pytest

from keysafe.chains.evm.intents import intent_from_tx
from keysafe.chains.evm.transfers import transfer_tx
from keysafe.chains.evm.tx import parse_transaction, with_filled
from keysafe.policy.registry import Registry

BOB = "0x1111111111111111111111111111111111111111"
USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"


@pytest.mark.parametrize(
    ("token", "units", "asset", "amount"),
    [(None, 25 * 10**16, "ETH", "0.25"), (USDC_BASE, 12_500_000, "USDC", "12.5")],
    ids=["ETH", "USDC"],
)
def test_built_transfer_decodes_to_what_was_asked(
    token: str | None, units: int, asset: str, amount: str
) -> None:
    built = transfer_tx(chain_id=8453, to=BOB, units=units, token=token.lower() if token else None)
    tx = parse_transaction(built)
    # Nonce, gas and fees are the RPC's to fill, as for any transaction an agent sends.
    assert (tx.type, tx.chain_id) == (2, 8453)
    assert tx.missing_fields() == ("nonce", "gas", "maxFeePerGas", "maxPriorityFeePerGas")
    tx = with_filled(tx, nonce=0, gas=60_000, max_fee_per_gas=10**9, max_priority_fee_per_gas=1)
    reg = Registry.builtin()
    intent = intent_from_tx(tx, registry=reg, chain=reg.chain("base"))
    assert (intent.action, intent.asset, intent.amount) == ("evm.transfer", asset, amount)
    assert intent.to is not None and intent.to.lower() == BOB
    assert (intent.contract or "").lower() == (USDC_BASE.lower() if token else "")
    assert intent.fee == "0.00006"
