"""A request resolved against the compiled registry: its chain, its asset, and what it spends.

Rules this module enforces: a chain the registry does not hold, an asset unknown on its chain,
an amount finer than the asset's unit, or a fee with no chain or native asset to charge it to
refuses the request (`Refused`) before any rule is read. A fee is spent in the chain's native
asset: added to the value when the request moves that asset, a second spend otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from keysafe.policy.compiled import Asset, Chain, CompiledRegistry
from keysafe.policy.intent import Intent
from keysafe.policy.reasons import Reason
from keysafe.policy.registry import from_base_units, parse_decimal, to_base_units


class Refused(Exception):
    """The request cannot be judged by any rule; the engine denies it with no rule named."""

    def __init__(self, code: Reason, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class Spend:
    """One asset the request spends: `units` in base units, of which `fee_units` is network fee."""

    asset: Asset
    units: int
    unlimited: bool = False
    fee_units: int = 0

    def text(self) -> str:
        sym, decimals = self.asset.symbol, self.asset.decimals
        if self.unlimited:
            return f"an unlimited amount of {sym}"
        total = from_base_units(self.units, decimals)
        if not self.fee_units:
            return f"{total} {sym}"
        fee = from_base_units(self.fee_units, decimals)
        if self.fee_units == self.units:
            return f"up to {fee} {sym} in network fees"
        value = from_base_units(self.units - self.fee_units, decimals)
        return f"{total} {sym} ({value} {sym} + up to {fee} {sym} network fee)"


@dataclass(slots=True)
class Resolved:
    intent: Intent
    chain: Chain | None
    asset: Asset | None
    unlimited: bool
    when: datetime
    fee: Decimal | None  # the most the network fee can cost, native units
    spends: list[Spend]  # what caps and windows are charged, per asset


# An amount as most requests write it: ASCII digits, and decimals after one '.'.
_PLAIN_AMOUNT: Final = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


def base_units(text: str, decimals: int | None) -> int:
    """An amount in base units, exactly as parse_decimal and to_base_units read it (their
    errors, in their order). Plain amounts skip the Decimal round trip; anything else takes it.

    Raises:
        ValueError: not a plain decimal, no asset to judge it by, or finer than the asset's unit.
    """
    plain = _PLAIN_AMOUNT.fullmatch(text)
    if plain is None or decimals is None or decimals < 0:
        amount = parse_decimal(text)
        if decimals is None:
            raise ValueError("needs an asset to be judged")
        return to_base_units(amount, decimals)
    whole, frac = plain.groups("")
    if len(frac) > decimals:
        if frac[decimals:].strip("0"):
            raise ValueError(f"has more than {decimals} decimal places")
        frac = frac[:decimals]
    return int(whole + frac.ljust(decimals, "0"))


def resolve(intent: Intent, reg: CompiledRegistry, when: datetime) -> Resolved:
    """The request's chain, asset and spends (the fee included), in base units.

    Raises:
        Refused: the chain or asset is unknown, or the amount or fee cannot be judged.
    """
    chain = asset = None
    if intent.chain is not None:
        chain = reg.chain(intent.chain)
        if chain is None:
            raise _unknown_chain(intent)
    if intent.asset is not None:
        asset = chain.asset(intent.asset) if chain is not None else None
        if asset is None:
            raise _unknown_asset(intent, chain)
    unlimited = intent.is_unlimited
    units = None
    if intent.amount is not None and not unlimited:
        try:
            units = base_units(intent.amount, None if asset is None else asset.decimals)
        except ValueError as exc:
            raise Refused(
                Reason.UNEVALUABLE, f"The amount {exc}, so it cannot be judged."
            ) from None
    spends: list[Spend] = []
    if asset is not None:
        spends.append(Spend(asset, units or 0, unlimited))
    fee = None
    if intent.fee is not None:
        fee = _add_fee(intent.fee, chain, spends, unlimited)
    return Resolved(intent, chain, asset, unlimited, when, fee, spends)


def _unknown_chain(intent: Intent) -> Refused:
    """The request names a chain the registry does not hold."""
    return Refused(
        Reason.UNKNOWN_CHAIN,
        f"The chain '{str(intent.chain)[:40]}' is not in the chain registry, so no rule "
        "can judge this request. Nothing was signed.",
    )


def _unknown_asset(intent: Intent, chain: Chain | None) -> Refused:
    """The request names an asset with no chain, or one its chain does not know."""
    if chain is None:
        return Refused(Reason.UNEVALUABLE, "The request names an asset but no chain.")
    return Refused(
        Reason.UNKNOWN_ASSET,
        f"The asset '{str(intent.asset)[:60]}' is not known on {chain.name}, so its amount "
        "cannot be judged. Nothing was signed.",
    )


def _add_fee(text: str, chain: Chain | None, spends: list[Spend], unlimited: bool) -> Decimal:
    """The fee as a native amount; charged to `spends`: added to the native asset's spend when
    the request moves it, else a spend of its own.

    Raises:
        Refused: no chain, no native asset, or an amount the native asset cannot hold.
    """
    if chain is None:
        raise Refused(Reason.UNEVALUABLE, "The request names a network fee but no chain.")
    native = chain.native
    if native is None:
        raise Refused(
            Reason.UNEVALUABLE,
            f"The network fee no native asset registered for {chain.name}, so it cannot be judged.",
        )
    try:
        fee = parse_decimal(text)
        fee_units = to_base_units(fee, native.decimals)
    except ValueError as exc:
        raise Refused(
            Reason.UNEVALUABLE, f"The network fee {exc}, so it cannot be judged."
        ) from None
    if fee_units and spends and spends[0].asset is native:
        spends[0] = Spend(native, spends[0].units + fee_units, unlimited, fee_units)
    elif fee_units:
        spends.append(Spend(native, fee_units, False, fee_units))
    return fee
