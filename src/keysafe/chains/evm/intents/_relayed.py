"""Typed data that moves value when a relayer submits it: EIP-3009 transfer authorizations
(USDC, x402) become a transfer of the token; ERC-2771 ForwardRequest, MetaTransaction and Safe
SafeTx become the inner call, decoded like a transaction's calldata.

Each must name its chain (domain chainId; a MetaTransaction may put it in the salt), an
authorization or forwarded call must be `from` the signing wallet, and a value-moving type of an
unknown shape is refused. Safe delegatecalls and gas refunds are refused outright.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from keysafe.chains.addresses import to_checksum
from keysafe.chains.evm.intents._common import bad, described, refuse, token
from keysafe.chains.evm.intents._eip712 import Shape, TypedMessage
from keysafe.chains.evm.intents._summary import short
from keysafe.chains.evm.intents._transactions import call_intent
from keysafe.policy.intent import Intent

logger = logging.getLogger(__name__)

_EIP3009: Final = (
    ("from", "address"),
    ("to", "address"),
    ("value", "uint256"),
    ("validAfter", "uint256"),
    ("validBefore", "uint256"),
    ("nonce", "bytes32"),
)
EIP3009_NAMES: Final = frozenset({"TransferWithAuthorization", "ReceiveWithAuthorization"})
# ERC-2771 forwarders: OpenZeppelin's MinimalForwarder (no deadline) and ERC2771Forwarder (uint48
# deadline before data). Compared as name → type: the order only changes the hash, which the
# forwarder checks, not what the call does.
_FORWARD: Final = {
    "from": "address",
    "to": "address",
    "value": "uint256",
    "gas": "uint256",
    "nonce": "uint256",
    "data": "bytes",
}
_META_TX: Final = (("nonce", "uint256"), ("from", "address"), ("functionSignature", "bytes"))
_SAFE_TX: Final = (
    ("to", "address"),
    ("value", "uint256"),
    ("data", "bytes"),
    ("operation", "uint8"),
    ("safeTxGas", "uint256"),
    ("baseGas", "uint256"),
    ("gasPrice", "uint256"),
    ("gasToken", "address"),
    ("refundReceiver", "address"),
    ("nonce", "uint256"),
)

_EIP3009_SHAPE: Final = (
    '"{label}" does not have the EIP-3009 fields (from, to, value, validAfter, validBefore, '
    "nonce), so keysafe cannot tell what it moves."
)
_EIP3009_UNNAMED: Final = (
    "a transfer authorization without domain.verifyingContract cannot name its token."
)
# primaryType -> (its fields; the refusal of another shape, "{label}" its name; the refusal of a
# message without domain.verifyingContract)
_EXPECTED: Final[dict[str, tuple[Shape, str, str]]] = {
    "TransferWithAuthorization": (_EIP3009, _EIP3009_SHAPE, _EIP3009_UNNAMED),
    "ReceiveWithAuthorization": (_EIP3009, _EIP3009_SHAPE, _EIP3009_UNNAMED),
    "MetaTransaction": (
        _META_TX,
        "this MetaTransaction does not have the fields nonce, from, functionSignature, so "
        "keysafe cannot tell what it runs.",
        "a MetaTransaction without domain.verifyingContract cannot name its contract.",
    ),
    "SafeTx": (
        _SAFE_TX,
        "this SafeTx does not have the fields of a Safe 1.3+ transaction (to, value, data, "
        "operation, safeTxGas, baseGas, gasPrice, gasToken, refundReceiver, nonce).",
        "a SafeTx without domain.verifyingContract cannot name its Safe.",
    ),
}


def _bound_to_chain(t: TypedMessage) -> None:
    """A value-moving message must name its chain, or its signature is valid wherever the
    contract exists at that address (Safe before 1.3 signs no chain id)."""
    if "chainId" in t.domain:
        return  # read_typed already held it to the request's chain
    salt = t.domain.get("salt")
    if (
        t.primary == "MetaTransaction"
        and isinstance(salt, str)
        and re.fullmatch(r"0x[0-9a-fA-F]{64}", salt)
    ):
        # Biconomy-style meta transactions put the chain id in the domain salt.
        if int(salt, 16) != t.chain.chain_id:
            bad(
                f"the typed data is for chain id {int(salt, 16)} (domain salt), but the request is "
                f"for {t.chain.name} (chain id {t.chain.chain_id}).",
                next_step="sign it on the chain it names.",
            )
        return
    bad(
        f'the "{t.primary}" message names no chain (domain chainId), so its signature would be '
        "valid on every chain where the contract exists.",
        next_step="add domain.chainId (and the EIP712Domain field for it).",
    )


def _own_sender(t: TypedMessage) -> str:
    """The message's `from`, which must be the signing wallet (when one is given)."""
    _bound_to_chain(t)
    sender = t.address("from")
    wallet = t.wallet_address
    if wallet is not None and sender.lower() != wallet.lower():
        bad(
            f'the "{t.primary}" message acts for {sender} (from), which is not the signing '
            f"wallet {to_checksum(wallet)}.",
            next_step="set from to the wallet's own address.",
        )
    return sender


def _target(t: TypedMessage) -> tuple[str, int, bytes]:
    """The inner call's (to, value, data) of a forwarded call or a Safe transaction."""
    return t.address("to"), t.uint("value"), t.bytes_of("data")


def _execute(t: TypedMessage, to: str, value: int, data: bytes, *, how: str) -> Intent:
    return call_intent(to, value, data, t.registry, t.chain, how=how, **t.origin)


def _contract_of(t: TypedMessage) -> str:
    """The verifying contract of a message of exactly its expected shape; refused otherwise."""
    shape, wrong_shape, unnamed = _EXPECTED[t.primary]
    if t.shape != shape:
        bad(wrong_shape.format(label=t.label))
    verifying = t.verifying
    if verifying is None:
        bad(unnamed)
    return verifying


def authorization(t: TypedMessage) -> Intent:
    """EIP-3009 Transfer/ReceiveWithAuthorization: the token moves from the wallet to `to`."""
    verifying = _contract_of(t)
    sender = _own_sender(t)
    coin = token(t.registry, t.chain, verifying)
    to = t.address("to")
    amount = coin.amount(t.uint("value"))
    return described(
        lambda: Intent.evm_transfer(
            chain=t.chain.name,
            to=to,
            contract=verifying,
            asset=coin.asset,
            amount=amount,
            **t.origin,
        ),
        how=f"by EIP-3009 signed authorization ({t.label}) from {short(sender)}",
    )


def _is_forwarder_shape(shape: Shape) -> bool:
    fields: Mapping[str, Any] = dict(shape)
    extra = {k: v for k, v in fields.items() if k not in _FORWARD}
    return (
        len(fields) == len(shape)
        and all(fields.get(k) == t for k, t in _FORWARD.items())
        and extra in ({}, {"deadline": "uint48"}, {"deadline": "uint256"})
    )


def forwarded(t: TypedMessage) -> Intent:
    """An ERC-2771 ForwardRequest: the forwarder calls `to` as the wallet."""
    if not _is_forwarder_shape(t.shape):
        bad(
            "this ForwardRequest is not an ERC-2771 forwarder request (from, to, value, gas, "
            "nonce, data and an optional deadline), so keysafe cannot tell what it runs."
        )
    sender = _own_sender(t)
    return _execute(t, *_target(t), how=f"by ERC-2771 forwarded call from {short(sender)}")


def meta_transaction(t: TypedMessage) -> Intent:
    """A MetaTransaction: the verifying contract runs `functionSignature` for the wallet."""
    verifying = _contract_of(t)
    sender = _own_sender(t)
    data = t.bytes_of("functionSignature")
    return _execute(t, verifying, 0, data, how=f"by meta-transaction from {short(sender)}")


def safe_transaction(t: TypedMessage) -> Intent:
    """A SafeTx: the Safe at verifyingContract runs the call with its own funds."""
    verifying = _contract_of(t)
    _bound_to_chain(t)
    _refuse_unbounded_safe_tx(t)
    to, value, data = _target(t)
    nonce = str(t.uint("nonce"))[:20]
    return _execute(
        t, to, value, data, how=f"by Safe transaction of Safe {short(verifying)} (nonce {nonce})"
    )


def _refuse_unbounded_safe_tx(t: TypedMessage) -> None:
    operation = t.uint("operation")
    if operation not in (0, 1):
        bad("SafeTx operation must be 0 (call) or 1 (delegatecall).")
    if operation == 1:
        refuse(
            "This Safe transaction is a delegatecall: the target's code would run as the Safe "
            "and could do anything with its funds and settings.",
            next_step="send a plain call (operation 0), or the Safe's owners sign it themselves.",
        )
    if t.uint("gasPrice") != 0:
        refuse(
            "This Safe transaction refunds gas (gasPrice is not 0): the Safe would pay "
            "(gas used + baseGas) × gasPrice to the refund receiver, an amount keysafe cannot "
            "bound.",
            next_step="set gasPrice to 0 and pay gas from the executing account.",
        )
