"""Chains and assets the policy engine can name, built in and added by the owner.

Amounts in policies and requests are decimal strings in token units; the registry's `decimals`
turns them into integer base units, so limits compare exactly ("at the limit" is allowed, one
base unit above is not). Money is never a float.

Each chain has a fee ceiling (`max_fee`, native units): the most one transaction's network fee
may cost there. A request over it is denied whatever the policy says, because a fee is spent
even when the transaction fails. Built-in chains carry defaults; an added chain without
`--max-fee` gets its family's default.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from keysafe.chains import Chain

# The fee ceiling of a chain that names none, per family, in native units. 0.05 ETH pays
# 500,000 gas at 100 gwei; 0.01 SOL is 2,000 base fees with a generous priority fee.
DEFAULT_MAX_FEE: Final[dict[str, Decimal]] = {"evm": Decimal("0.05"), "solana": Decimal("0.01")}


@dataclass(frozen=True, slots=True)
class ChainInfo:
    name: str
    family: Chain
    chain_id: int | None  # EVM chain id; None for Solana clusters
    rpc: str | None = None
    builtin: bool = True
    # The most one transaction's network fee may cost, in native units; None: the family default.
    max_fee: Decimal | None = None

    @property
    def native(self) -> str:
        return "ETH" if self.family == "evm" else "SOL"

    @property
    def fee_ceiling(self) -> Decimal:
        return self.max_fee if self.max_fee is not None else DEFAULT_MAX_FEE[self.family]

    @property
    def fee_ceiling_text(self) -> str:
        """The ceiling as plain digits, for people and JSON."""
        return decimal_text(self.fee_ceiling)


@dataclass(frozen=True, slots=True)
class AssetInfo:
    symbol: str
    chain: str
    address: str | None  # None for the chain's native coin
    decimals: int
    builtin: bool = True

    @property
    def identity(self) -> str:
        """What budget rows are kept by: the chain and the contract or mint ("base:0x8335…",
        "ethereum:native"). Two tokens that share a symbol have different identities, so their
        base units, which may count different decimals, are never added up as they are."""
        if self.address is None:
            return f"{self.chain}:native"
        # EVM addresses compare without case (checksum casing varies); base58 mints with it.
        address = self.address.lower() if self.address[:2].lower() == "0x" else self.address
        return f"{self.chain}:{address}"


# Test networks get generous ceilings: their coins are free, and test gas prices swing wildly.
BUILTIN_CHAINS: Final = (
    ChainInfo("ethereum", Chain.EVM, 1, max_fee=Decimal("0.05")),
    ChainInfo("sepolia", Chain.EVM, 11155111, max_fee=Decimal("1")),
    ChainInfo("base", Chain.EVM, 8453, max_fee=Decimal("0.01")),
    ChainInfo("base-sepolia", Chain.EVM, 84532, max_fee=Decimal("1")),
    ChainInfo("local", Chain.EVM, 31337, "http://127.0.0.1:8545", max_fee=Decimal("10")),
    ChainInfo("solana", Chain.SOLANA, None, max_fee=Decimal("0.01")),
    ChainInfo("solana-devnet", Chain.SOLANA, None, max_fee=Decimal("1")),
    ChainInfo("solana-local", Chain.SOLANA, None, "http://127.0.0.1:8899", max_fee=Decimal("10")),
)

BUILTIN_TOKENS: Final = (
    AssetInfo("USDC", "ethereum", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6),
    AssetInfo("USDC", "base", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", 6),
)


class UnknownName(LookupError):
    """A chain or asset the registry does not know: the rule using it cannot be evaluated."""


@dataclass(frozen=True, slots=True)
class Registry:
    chains: tuple[ChainInfo, ...]
    assets: tuple[AssetInfo, ...]

    @classmethod
    def builtin(cls) -> Registry:
        natives = tuple(
            AssetInfo(c.native, c.name, None, 18 if c.family == "evm" else 9)
            for c in BUILTIN_CHAINS
        )
        return cls(BUILTIN_CHAINS, natives + BUILTIN_TOKENS)

    def with_additions(self, chains: list[ChainInfo], assets: list[AssetInfo]) -> Registry:
        # A chain re-added without its own ceiling keeps the one it had (a built-in's default).
        previous = {c.name: c.max_fee for c in self.chains}
        chains = [
            dataclasses.replace(c, max_fee=previous.get(c.name)) if c.max_fee is None else c
            for c in chains
        ]
        names = {c.name for c in chains}
        base_chains = tuple(c for c in self.chains if c.name not in names) + tuple(chains)
        extra_natives = tuple(
            AssetInfo(c.native, c.name, None, 18 if c.family == "evm" else 9, builtin=False)
            for c in chains
            if not any(a.chain == c.name and a.address is None for a in self.assets)
        )
        keys = {(a.chain, a.symbol) for a in assets}
        base_assets = tuple(a for a in self.assets if (a.chain, a.symbol) not in keys)
        return Registry(base_chains, base_assets + extra_natives + tuple(assets))

    def chain(self, ref: str | int) -> ChainInfo:
        """Resolve a chain name ("base") or EVM chain id (8453 or "8453")."""
        text = str(ref).strip().lower()
        for c in self.chains:
            if c.name == text or (c.chain_id is not None and str(c.chain_id) == text):
                return c
        raise UnknownName(f"unknown chain '{str(ref)[:40]}'")

    def asset(self, chain: ChainInfo, ref: str) -> AssetInfo:
        """Resolve a symbol ("USDC") or token address on `chain`."""
        text = ref.strip()
        for a in self.assets:
            if a.chain != chain.name:
                continue
            if a.symbol.upper() == text.upper():
                return a
            if a.address is not None and _same_address(a.address, text, chain.family):
                return a
        raise UnknownName(f"unknown asset '{text[:60]}' on {chain.name}")

    def same_symbol(self, symbol: str) -> tuple[AssetInfo, ...]:
        """Every asset named `symbol`, on any chain (a policy's caps name assets by symbol)."""
        wanted = symbol.upper()
        return tuple(a for a in self.assets if a.symbol.upper() == wanted)

    def symbols(self) -> frozenset[str]:
        return frozenset(a.symbol.upper() for a in self.assets)

    def native_asset(self, chain: ChainInfo) -> AssetInfo:
        """The asset a chain's fees are paid in (ETH, SOL)."""
        for a in self.assets:
            if a.chain == chain.name and a.address is None:
                return a
        raise UnknownName(f"no native asset registered for {chain.name}")

    def asset_contract(self, address: str) -> AssetInfo | None:
        """The registered EVM token at `address` on any chain, or None."""
        for a in self.assets:
            if a.address is not None and a.address.lower() == address.lower():
                chain = next((c for c in self.chains if c.name == a.chain), None)
                if chain is not None and chain.family == "evm":
                    return a
        return None


def _same_address(a: str, b: str, family: Chain) -> bool:
    return a.lower() == b.lower() if family == "evm" else a == b


def to_base_units(amount: Decimal, decimals: int) -> int:
    """Exact conversion; an amount finer than the asset's smallest unit is refused.

    Works on the digits, not through Decimal arithmetic, whose 28-digit context would round
    "0.0100000000000000000000000000001" onto a cap.
    """
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError("is not a finite number")
    value = int("".join(map(str, digits)) or "0")
    shift = exponent + decimals
    units: int
    if shift >= 0:
        units = value * 10**shift
    else:
        units, rest = divmod(value, 10 ** (-shift))
        if rest:
            raise ValueError(f"has more than {decimals} decimal places")
    return -units if sign else units


def from_base_units(units: int, decimals: int) -> str:
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**decimals)
    text = f"{whole}.{frac:0{decimals}d}".rstrip("0").rstrip(".") if decimals else str(whole)
    return sign + text


def decimal_text(amount: Decimal) -> str:
    """A Decimal as plain digits (never "1E-8"), the form `parse_decimal` reads back."""
    return format(amount, "f")


_DECIMAL = re.compile(r"\d+(\.\d+)?|\.\d+")


def parse_decimal(text: str) -> Decimal:
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text.strip()):
        raise ValueError("is not a plain decimal number (digits and one '.', e.g. \"12.5\")")
    try:
        d = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise ValueError("is not a decimal number") from None
    if not d.is_finite() or d < 0:
        raise ValueError("must be a finite number of at least 0")
    return d
