"""What a transaction (or a call that typed data executes) does: a native or token transfer, an
approval, a call or a deployment.

Token transfers and approvals are recognised by their function signature in `_TOKEN_CALLS`; a
call that carries native value is never reduced to its token movement (module doc of
`keysafe.chains.evm.intents`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Unpack

from keysafe.chains.evm.abi import PERMIT2_ADDRESS, DecodedCall, decode_call, lookup
from keysafe.chains.evm.intents._common import (
    approval,
    bad,
    described,
    native,
    require_evm,
    token,
)
from keysafe.chains.evm.intents._summary import short
from keysafe.chains.evm.tx import EvmTx
from keysafe.policy.intent import UNLIMITED, EvmOrigin, Intent
from keysafe.policy.registry import AssetInfo, ChainInfo, Registry, from_base_units

logger = logging.getLogger(__name__)


def intent_from_tx(tx: EvmTx, *, registry: Registry, chain: ChainInfo) -> Intent:
    """Decode what `tx` would do on `chain`.

    Raises:
        MalformedRequestError: the transaction is for another chain, or its calldata is
            malformed (shorter than a selector, truncated arguments of a known function).
    """
    chain_id = require_evm(chain)
    if tx.chain_id != chain_id:
        bad(
            f"the transaction is for chain id {tx.chain_id}, but the request is for "
            f"{chain.name} (chain id {chain_id}).",
            next_step="sign it on the chain it was built for, or rebuild it for this chain.",
        )
    coin = native(registry, chain)
    fee = _max_fee(tx, coin)
    if tx.to is None:
        endowed = from_base_units(tx.value, coin.decimals) if tx.value else None
        return described(
            lambda: Intent.evm_deploy(
                chain=chain.name, fee=fee, asset=coin.symbol if tx.value else None, amount=endowed
            ),
            how=f"({len(tx.data)} bytes of init code)",
        )
    return call_intent(tx.to, tx.value, tx.data, registry, chain, fee=fee)


def _max_fee(tx: EvmTx, coin: AssetInfo) -> str | None:
    """gas × (maxFeePerGas or gasPrice) in ETH: the most the transaction can cost in fees.
    None while the RPC has yet to fill gas or the price (the signing flow fills them first)."""
    price = tx.max_fee_per_gas if tx.type == 2 else tx.gas_price
    if tx.gas is None or price is None:
        return None
    return from_base_units(tx.gas * price, coin.decimals)


def call_intent(
    to: str,
    value: int,
    data: bytes,
    registry: Registry,
    chain: ChainInfo,
    *,
    how: str | None = None,
    **origin: Unpack[EvmOrigin],
) -> Intent:
    """What calling `to` with `value` wei and `data` does: a native or token transfer, an
    approval, or a call. Shared by transactions and by typed data that executes a call."""
    coin = native(registry, chain)
    call = decode_call(data)
    if call is None:
        return described(
            lambda: Intent.evm_transfer(
                chain=chain.name,
                to=to,
                asset=coin.symbol,
                amount=from_base_units(value, coin.decimals),
                **origin,
            ),
            how=how,
        )
    recognise = _TOKEN_CALLS.get(call.function or "")
    if value == 0 and recognise is not None:
        token_intent = recognise(_TokenCall(call, to, registry, chain, how, origin))
        if token_intent is not None:
            return token_intent
    notes = [n for n in (_call_note(call), how) if n]
    return described(
        lambda: Intent.evm_call(
            chain=chain.name,
            contract=to,
            asset=coin.symbol if value else None,
            amount=from_base_units(value, coin.decimals) if value else None,
            selector=call.selector,
            function=call.function,
            **origin,
        ),
        how=" ".join(notes) or None,
    )


def _call_note(call: DecodedCall) -> str | None:
    """For batching calls, name the inner functions so the owner sees what is batched."""
    inner: list[bytes] = []
    args = call.args
    if call.name == "multicall":
        inner = list(args.get("data", ()))
    elif call.name in ("aggregate", "tryAggregate"):
        inner = [c[1] for c in args.get("calls", ())]
    elif call.name == "aggregate3":
        inner = [c[2] for c in args.get("calls", ())]
    if not inner:
        return None
    names = []
    for data in inner[:5]:
        spec = lookup("0x" + bytes(data[:4]).hex()) if len(data) >= 4 else None
        names.append(spec.name if spec else "unknown")
    more = f" and {len(inner) - 5} more" if len(inner) > 5 else ""
    return f"({len(inner)} inner calls: {', '.join(names)}{more})"


# --------------------------------------------------------------------------------------------
# Token transfers and approvals, by function signature


@dataclass(frozen=True, slots=True)
class _TokenCall:
    """A decoded call without native value to `contract`, and how it was reached."""

    call: DecodedCall
    contract: str
    registry: Registry
    chain: ChainInfo
    how: str | None  # the mechanism (typed data), noted after the call's own note
    origin: EvmOrigin

    def note(self, text: str | None) -> str | None:
        """`text` and the mechanism, as one note (None when both are empty)."""
        return " ".join(n for n in (text, self.how) if n) or None


def _transfer(c: _TokenCall) -> Intent:
    """transfer and transferFrom: the token moves to `to`."""
    a = c.call.args
    coin = token(c.registry, c.chain, c.contract)
    taken = (
        f"taken from {short(a['from'])} (transferFrom)" if c.call.name == "transferFrom" else None
    )
    return described(
        lambda: Intent.evm_transfer(
            chain=c.chain.name,
            to=a["to"],
            contract=c.contract,
            asset=coin.asset,
            amount=coin.amount(a["amount"]),
            selector=c.call.selector,
            function=c.call.function,
            **c.origin,
        ),
        how=c.note(taken),
    )


def _approve(c: _TokenCall) -> Intent:
    """approve and increaseAllowance: the spender may take the amount (or more)."""
    more = (
        "more (increaseAllowance adds to the allowance)"
        if c.call.name == "increaseAllowance"
        else None
    )
    a = c.call.args
    return approval(
        c.chain,
        token(c.registry, c.chain, c.contract),
        a["spender"],
        a["amount"],
        c.contract,
        how=c.note(more),
        selector=c.call.selector,
        function=c.call.function,
        **c.origin,
    )


def _approve_all(c: _TokenCall) -> Intent:
    """setApprovalForAll: every NFT of the collection, or a revocation."""
    approved = bool(c.call.args["approved"])
    return described(
        lambda: Intent.evm_approve(
            chain=c.chain.name,
            spender=c.call.args["operator"],
            contract=c.contract,
            amount=UNLIMITED if approved else None,
            unlimited=approved,
            selector=c.call.selector,
            function=c.call.function,
            **c.origin,
        ),
        how=c.note(None),
    )


def _permit2_approve(c: _TokenCall) -> Intent | None:
    """Permit2's approve: an allowance of another token, held by the Permit2 contract."""
    if c.contract != PERMIT2_ADDRESS:
        return None
    a = c.call.args
    return approval(
        c.chain,
        token(c.registry, c.chain, a["token"]),
        a["spender"],
        a["amount"],
        a["token"],
        how=c.note("via Permit2"),
        selector=c.call.selector,
        function=c.call.function,
        **c.origin,
    )


# Each recogniser gives the token movement, or None when the call is not one after all.
_TOKEN_CALLS: Final[dict[str, Callable[[_TokenCall], Intent | None]]] = {
    "transfer(address,uint256)": _transfer,
    "transferFrom(address,address,uint256)": _transfer,
    "approve(address,uint256)": _approve,
    "increaseAllowance(address,uint256)": _approve,
    "setApprovalForAll(address,bool)": _approve_all,
    "approve(address,address,uint160,uint48)": _permit2_approve,
}
