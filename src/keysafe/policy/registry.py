"""Chains and assets the policy engine can name, built in and added by the owner.

Amounts in policies and requests are decimal strings in token units; the registry's `decimals`
turns them into integer base units, so limits compare exactly ("at the limit" is allowed, one
base unit above is not). Money is never a float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

Family = Literal["evm", "solana"]


@dataclass(frozen=True, slots=True)
class ChainInfo:
    name: str
    family: Family
    chain_id: int | None  # EVM chain id; None for Solana clusters
    rpc: str | None = None
    builtin: bool = True

    @property
    def native(self) -> str:
        return "ETH" if self.family == "evm" else "SOL"


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


BUILTIN_CHAINS: Final = (
    ChainInfo("ethereum", "evm", 1),
    ChainInfo("sepolia", "evm", 11155111),
    ChainInfo("base", "evm", 8453),
    ChainInfo("base-sepolia", "evm", 84532),
    ChainInfo("local", "evm", 31337, "http://127.0.0.1:8545"),
    ChainInfo("solana", "solana", None),
    ChainInfo("solana-devnet", "solana", None),
    ChainInfo("solana-local", "solana", None, "http://127.0.0.1:8899"),
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


def _same_address(a: str, b: str, family: Family) -> bool:
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
