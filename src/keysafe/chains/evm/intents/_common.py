"""What every EVM recogniser shares: its two refusals, the registry lookups, and how a decoded
intent gets its summary."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NoReturn, Unpack

from pydantic import ValidationError

from keysafe.chains.evm.intents._summary import summarize
from keysafe.errors import MalformedRequestError, PolicyDeniedError
from keysafe.policy.intent import UNLIMITED, EvmOrigin, Intent
from keysafe.policy.registry import AssetInfo, ChainInfo, Registry, UnknownName, from_base_units

logger = logging.getLogger(__name__)

# Approvals at or above this many base units are unlimited. 2^128 is far beyond any real token
# supply, and wallets commonly approve max uint256 or max uint160 (Permit2): all are "unlimited".
UNLIMITED_FROM: Final = 2**128


def bad(what: str, next_step: str = "fix the request and send it again.") -> NoReturn:
    """Refuse a malformed request (MalformedRequestError)."""
    raise MalformedRequestError(what, next_step=next_step)


def refuse(what: str, next_step: str) -> NoReturn:
    """Well-formed, but keysafe cannot bound what signing it would give away."""
    raise PolicyDeniedError(
        f"{what} Nothing was signed.", next_step=next_step, reason_code="UNJUDGEABLE_TYPED_DATA"
    )


def described(
    draft: Callable[[], Intent], *, how: str | None = None, summary: str | None = None
) -> Intent:
    """The intent `draft` builds, with `summary` or one made from its fields (and `how`)."""
    try:
        intent = draft()
    except ValidationError:
        # Field limits (message length, …) are checked before this point; reaching here is a bug.
        bad("the decoded request does not fit an intent.", next_step="report this as a bug.")
    return intent.with_summary(summary or summarize(intent, how=how))


def require_evm(chain: ChainInfo) -> int:
    """`chain`'s chain id.

    Raises:
        MalformedRequestError: `chain` is not an EVM chain.
    """
    if chain.family != "evm" or chain.chain_id is None:
        bad(f"{chain.name} is not an EVM chain.", next_step="name an EVM chain for this request.")
    return chain.chain_id


@dataclass(frozen=True, slots=True)
class Token:
    """A token contract, and what the registry knows of it (None: an unknown token)."""

    address: str
    info: AssetInfo | None

    @property
    def asset(self) -> str:
        """The registry's symbol, or the address of an unknown token."""
        return self.info.symbol if self.info else self.address

    def amount(self, units: int) -> str:
        """`units` in token units, or as base units when the token is unknown."""
        return from_base_units(units, self.info.decimals) if self.info else str(units)


def token(registry: Registry, chain: ChainInfo, address: str) -> Token:
    """The token at `address` on `chain`, known only when the registry lists that address."""
    try:
        info = registry.asset(chain, address)
    except UnknownName:
        return Token(address, None)
    # A symbol that happens to look like an address must not stand in for another token.
    if info.address is None or info.address.lower() != address.lower():
        return Token(address, None)
    return Token(address, info)


def native(registry: Registry, chain: ChainInfo) -> AssetInfo:
    """`chain`'s native asset (18 decimals unless the registry says otherwise)."""
    try:
        info = registry.asset(chain, chain.native)
    except UnknownName:
        return AssetInfo(chain.native, chain.name, None, 18)
    return info if info.address is None else AssetInfo(chain.native, chain.name, None, 18)


def approval(
    chain: ChainInfo,
    token: Token,
    spender: str,
    units: int,
    contract: str,
    *,
    how: str | None,
    selector: str | None = None,
    function: str | None = None,
    **origin: Unpack[EvmOrigin],
) -> Intent:
    """`spender` may take `units` of `token`: unlimited from UNLIMITED_FROM base units."""
    unlimited = units >= UNLIMITED_FROM
    return described(
        lambda: Intent.evm_approve(
            chain=chain.name,
            spender=spender,
            contract=contract,
            asset=token.asset,
            amount=UNLIMITED if unlimited else token.amount(units),
            unlimited=unlimited,
            selector=selector,
            function=function,
            **origin,
        ),
        how=how,
    )
