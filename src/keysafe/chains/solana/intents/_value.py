"""What a transaction costs (the network fee) and moves (the sum of its transfers)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from keysafe.chains.solana.intents._common import refuse
from keysafe.chains.solana.intents._programs import (
    BUDGET_NAMES,
    DEFAULT_UNITS_PER_INSTRUCTION,
    LAMPORTS_PER_SIGNATURE,
    MAX_COMPUTE_UNITS,
    MAX_DECIMALS,
    MICRO_LAMPORTS,
    PRECOMPILES,
    SOL_DECIMALS,
    SYSTEM_PROGRAM,
)
from keysafe.chains.solana.intents._steps import Approve, Budget, Step, Transfer
from keysafe.chains.solana.tx import SolanaTx
from keysafe.policy.registry import AssetInfo, ChainInfo, Registry, from_base_units

logger = logging.getLogger(__name__)

# -- fees -------------------------------------------------------------------------------------


def priority_fee(steps: Sequence[Step]) -> int:
    """The largest priority fee in lamports: ceil(price × unit limit / 10^6)."""
    budget: dict[int, int] = {}
    for n, s in enumerate(steps):
        if isinstance(s, Budget):
            if s.kind in budget:
                raise refuse(
                    f"Instruction {n} repeats the compute-budget instruction "
                    f"{BUDGET_NAMES[s.kind]}; the runtime refuses duplicates."
                )
            budget[s.kind] = s.value
    price = budget.get(3, 0)
    if not price:
        return 0
    others = sum(1 for s in steps if not isinstance(s, Budget))
    limit = budget.get(2, DEFAULT_UNITS_PER_INSTRUCTION * others)
    return math.ceil(price * min(limit, MAX_COMPUTE_UNITS) / MICRO_LAMPORTS)


def network_fee(tx: SolanaTx, priority: int) -> int:
    """The most the fee payer can be charged, in lamports: 5000 per signature (the transaction's
    and each one its precompile instructions verify, which the runtime charges alike) plus the
    priority fee."""
    signatures = len(tx.required_signers)
    for ix in tx.instructions:
        data = bytes(ix.data)
        if tx.program_id(ix) in PRECOMPILES and data:
            signatures += data[0]
    return LAMPORTS_PER_SIGNATURE * signatures + priority


# -- the value a transaction moves ------------------------------------------------------------


@dataclass
class Value:
    """The sum of a transaction's transfers: one asset, one recipient."""

    asset: str | None  # symbol, mint address, or None (unknown: amount in base units)
    decimals: int | None  # None: amount is in base units
    units: int = 0
    destinations: list[str | None] = field(default_factory=list)
    sources: list[str | None] = field(default_factory=list)
    mint: str | None = None
    known: bool = False  # the asset is in the registry
    function: str = ""
    unknown_why: str = "the transfer names no mint"  # when asset is None

    @property
    def amount(self) -> str:
        """The summed amount in token units (base units when the decimals are unknown)."""
        if self.decimals is None:
            return str(self.units)
        return from_base_units(self.units, self.decimals)

    @property
    def to(self) -> str | None:
        """The one recipient, or None when there are several or one is unresolved."""
        targets = set(self.destinations)
        return next(iter(targets)) if len(targets) == 1 else None


def native_asset(registry: Registry, chain: ChainInfo) -> AssetInfo:
    """The chain's native asset (SOL, 9 decimals, unless the registry says otherwise)."""
    for a in registry.assets:
        if a.chain == chain.name and a.address is None:
            return a
    return AssetInfo(chain.native, chain.name, None, SOL_DECIMALS)


def _by_mint(registry: Registry, chain: ChainInfo, mint: str) -> AssetInfo | None:
    # Match the mint address exactly; a symbol that happens to equal a mint must not match.
    for a in registry.assets:
        if a.chain == chain.name and a.address == mint:
            return a
    return None


def asset_of(
    t: Transfer | Approve, registry: Registry, chain: ChainInfo
) -> tuple[tuple[str, ...], Value]:
    """The asset key (transfers are summed only within one key) and an empty Value for it."""
    if t.program == SYSTEM_PROGRAM:
        native = native_asset(registry, chain)
        return ("native",), Value(native.symbol, native.decimals, known=True, function=t.function)
    if t.decimals is not None and t.decimals > MAX_DECIMALS:
        raise refuse(
            f"Instruction {t.function} says its token has {t.decimals} decimals; keysafe judges "
            f"tokens with at most {MAX_DECIMALS}.",
            next_step="check the mint's decimals; no real token uses that many.",
        )
    if t.mint is not None and t.mint.address is not None and t.decimals is not None:
        mint = t.mint.address
        info = _by_mint(registry, chain, mint)
        if info is not None and info.decimals != t.decimals:
            raise refuse(
                f"Instruction {t.function} says mint {mint} has {t.decimals} decimals, but the "
                f"registry knows it as {info.symbol} with {info.decimals}; the amount cannot be "
                "judged.",
                next_step="fix the decimals in the transaction, or correct the registry entry.",
            )
        asset = info.symbol if info is not None else mint
        value = Value(asset, t.decimals, mint=mint, known=info is not None, function=t.function)
        return ("mint", t.program, mint), value
    # Plain transfer (no mint), or a mint loaded from a lookup table: the asset is unknown and
    # the amount stays in base units. Same source account → same token.
    value = Value(None, None, function=t.function)
    if t.mint is not None:
        value.unknown_why = "its mint comes from a lookup table"
    return ("unknown", t.program, t.source.describe()), value


def value_of(transfers: Sequence[Transfer], registry: Registry, chain: ChainInfo) -> Value | None:
    """What `transfers` move together; None when there are none."""
    if not transfers:
        return None
    key0, value = asset_of(transfers[0], registry, chain)
    for t in transfers:
        key, other = asset_of(t, registry, chain)
        if key != key0 or other.decimals != value.decimals:
            raise refuse(
                "The transaction moves more than one asset; keysafe judges one asset per "
                "transaction, so it cannot tell what this one spends.",
                next_step="send one transaction per asset.",
            )
        value.units += t.units
        value.destinations.append(t.destination.address)
        value.sources.append(t.authority.address)
        if t.function != value.function:
            value.function = t.function.split(".")[0] + ".transfers"
    resolved = {d for d in value.destinations if d is not None}
    if len(resolved) > 1:
        raise refuse(
            f"The transaction sends to {len(resolved)} different recipients; keysafe judges one "
            "recipient per transaction.",
            next_step="send one transaction per recipient.",
        )
    return value


# -- signers ----------------------------------------------------------------------------------
