"""Permits: typed data whose signature lets a spender take tokens later.

EIP-2612, DAI and ERC-4494 permits and Permit2 PermitSingle/PermitBatch become `evm.approve`;
Permit2 signature transfers become `evm.transfer` to the spender (it picks the final recipient).
A message that looks like a permit but has an unknown shape is judged as the worst it could be:
an unlimited approval. Each recogniser here is a (matches, build) pair of `_typed_data`'s table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Unpack

from keysafe.chains.evm.abi import PERMIT2_ADDRESS
from keysafe.chains.evm.intents._common import UNLIMITED_FROM, approval, bad, described, token
from keysafe.chains.evm.intents._eip712 import Shape, TypedMessage, read_address, read_uint
from keysafe.chains.evm.intents._summary import chain_label, short
from keysafe.policy.intent import UNLIMITED, EvmFields, Intent

logger = logging.getLogger(__name__)

_EIP2612: Final = (
    ("owner", "address"),
    ("spender", "address"),
    ("value", "uint256"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
)
_DAI: Final = (
    ("holder", "address"),
    ("spender", "address"),
    ("nonce", "uint256"),
    ("expiry", "uint256"),
    ("allowed", "bool"),
)
_ERC4494: Final = (
    ("spender", "address"),
    ("tokenId", "uint256"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
)
_P2_DETAILS: Final = (
    ("token", "address"),
    ("amount", "uint160"),
    ("expiration", "uint48"),
    ("nonce", "uint48"),
)
_P2_PERMISSIONS: Final = (("token", "address"), ("amount", "uint256"))
_P2_SINGLE: Final = (
    ("details", "PermitDetails"),
    ("spender", "address"),
    ("sigDeadline", "uint256"),
)
_P2_BATCH: Final = (
    ("details", "PermitDetails[]"),
    ("spender", "address"),
    ("sigDeadline", "uint256"),
)
_P2_TRANSFER_HEAD: Final = (("spender", "address"), ("nonce", "uint256"), ("deadline", "uint256"))
_P2_TRANSFER_NAMES: Final = frozenset(
    {
        "PermitTransferFrom",
        "PermitBatchTransferFrom",
        "PermitWitnessTransferFrom",
        "PermitBatchWitnessTransferFrom",
    }
)
_P2_PERMITTED: Final = (
    (("permitted", "TokenPermissions"),),
    (("permitted", "TokenPermissions[]"),),
)


# --------------------------------------------------------------------------------------------
# EIP-2612, DAI and ERC-4494 permits: the token is the verifying contract


def _signed_approval(t: TypedMessage, contract: str, units: int, *, how: str) -> Intent:
    """The message's `spender` may take `units` of the token at `contract`."""
    return approval(
        t.chain,
        token(t.registry, t.chain, contract),
        t.address("spender"),
        units,
        contract,
        how=how,
        **t.origin,
    )


def _eip2612(t: TypedMessage, verifying: str) -> Intent:
    return _signed_approval(t, verifying, t.uint("value"), how="by EIP-2612 permit signature")


def _permit_intent(
    t: TypedMessage,
    *,
    how: str | None = None,
    summary: str | None = None,
    moves: bool = False,
    **fields: Unpack[EvmFields],
) -> Intent:
    """What a permit lets its `spender` do with the tokens of `contract` (the `fields`): take
    them later (an approval) or, when it `moves` them now (a signature transfer), receive them.
    The intent also carries the message's domain and primary type."""
    every: EvmFields = {**fields, **t.origin}
    if moves:
        to = fields.get("spender")
        return described(lambda: Intent.evm_transfer(chain=t.chain.name, to=to, **every), how=how)
    return described(
        lambda: Intent.evm_approve(chain=t.chain.name, **every), how=how, summary=summary
    )


def _dai(t: TypedMessage, verifying: str) -> Intent:
    allowed = t.message.get("allowed")
    if not isinstance(allowed, bool):
        bad("typed data field allowed must be true or false.")
    coin = token(t.registry, t.chain, verifying)
    return _permit_intent(
        t,
        contract=verifying,
        spender=t.address("spender"),
        unlimited=allowed,
        asset=coin.asset,
        amount=UNLIMITED if allowed else "0",
        how="by DAI-style permit signature",
    )


def _erc4494(t: TypedMessage, verifying: str) -> Intent:
    token_id = t.uint("tokenId")
    spender = t.address("spender")
    return _permit_intent(
        t,
        contract=verifying,
        spender=spender,
        unlimited=False,
        summary=f"approve {short(spender)} to take NFT #{str(token_id)[:40]} of "
        f"{short(verifying)} on {chain_label(t.chain.name)} by permit signature",
    )


_TOKEN_PERMITS: Final[dict[Shape, Callable[[TypedMessage, str], Intent]]] = {
    _EIP2612: _eip2612,
    _DAI: _dai,
    _ERC4494: _erc4494,
}


def is_token_permit(t: TypedMessage) -> bool:
    """An EIP-2612, DAI or ERC-4494 `Permit`."""
    return t.primary == "Permit" and t.shape in _TOKEN_PERMITS


def token_permit(t: TypedMessage) -> Intent:
    """EIP-2612 or DAI (an approval of the token), or ERC-4494 (one NFT)."""
    verifying = t.verifying
    if verifying is None:
        bad("a permit without domain.verifyingContract cannot name its token.")
    return _TOKEN_PERMITS[t.shape](t, verifying)


# --------------------------------------------------------------------------------------------
# Permit2: the tokens are named in the message


def _entries(value: Any, *, many: bool) -> list[Any]:
    if many:
        if not isinstance(value, list):
            bad("the Permit2 message must list its token entries.")
        return value
    return [value]


def _one_token(entries: list[Any]) -> tuple[str, int]:
    """(token, total amount) of Permit2 entries, which must all name the same token."""
    if not entries:
        bad("the Permit2 message names no token.")
    tokens: dict[str, int] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            bad("a Permit2 entry must be an object with token and amount.")
        address = read_address("token", entry.get("token"))
        tokens[address] = tokens.get(address, 0) + read_uint("amount", entry.get("amount"))
    if len(tokens) > 1:
        bad(
            f"this Permit2 batch covers {len(tokens)} different tokens; one request is judged "
            "for one asset.",
            next_step="sign one Permit2 permit per token.",
        )
    ((address, units),) = tokens.items()
    return address, units


def is_permit2_allowance(t: TypedMessage) -> bool:
    """A Permit2 PermitSingle or PermitBatch of the canonical shape."""
    return (
        t.primary in ("PermitSingle", "PermitBatch")
        and t.shape in (_P2_SINGLE, _P2_BATCH)
        and t.fields("PermitDetails") == _P2_DETAILS
    )


def permit2_allowance(t: TypedMessage) -> Intent:
    """PermitSingle / PermitBatch: an allowance of one token (a batch must name one token)."""
    entries = _entries(t.message.get("details"), many=t.primary == "PermitBatch")
    token_addr, units = _one_token(entries)
    return _signed_approval(t, token_addr, units, how="via Permit2 signature")


def is_permit2_transfer(t: TypedMessage) -> bool:
    """A Permit2 signature transfer (with or without a witness)."""
    shape = t.shape
    return (
        t.primary in _P2_TRANSFER_NAMES
        and shape[:1] in _P2_PERMITTED
        and shape[1:4] == _P2_TRANSFER_HEAD
        and (len(shape) == 4 or (len(shape) == 5 and shape[4][0] == "witness"))
        and t.fields("TokenPermissions") == _P2_PERMISSIONS
    )


def permit2_transfer(t: TypedMessage) -> Intent:
    """A Permit2 signature transfer: the spender takes the tokens and picks the recipient."""
    many = t.shape[0][1] == "TokenPermissions[]"
    token_addr, units = _one_token(_entries(t.message.get("permitted"), many=many))
    coin = token(t.registry, t.chain, token_addr)
    unlimited = units >= UNLIMITED_FROM
    return _permit_intent(
        t,
        contract=token_addr,
        spender=t.address("spender"),
        unlimited=unlimited,
        asset=coin.asset,
        amount=UNLIMITED if unlimited else coin.amount(units),
        how="by Permit2 signature transfer (the spender picks the final recipient)",
        moves=True,
    )


# --------------------------------------------------------------------------------------------
# Anything else permit-like


def looks_like_permit(t: TypedMessage) -> bool:
    """Named like a permit, or for the Permit2 contract, whatever its shape."""
    return "permit" in t.primary.lower() or t.verifying == PERMIT2_ADDRESS


def loose_permit(t: TypedMessage) -> Intent:
    """Something permit-like keysafe cannot read exactly: judged as the worst it could be."""
    spender_raw = t.message.get("spender")
    spender = read_address("spender", spender_raw) if isinstance(spender_raw, str) else None
    return _permit_intent(
        t,
        contract=t.verifying,
        spender=spender,
        unlimited=True,
        amount=UNLIMITED,
        summary=f'APPROVE UNLIMITED: unrecognised permit "{t.label}" for '
        f"{short(t.verifying)} on {chain_label(t.chain.name)}, judged as an unlimited approval",
    )
