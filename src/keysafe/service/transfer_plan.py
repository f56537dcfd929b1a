"""Resolving a transfer asked for in plain terms (service/transfer.py) against the registry:
which chain, which asset, how many base units, to whom, each refused with the field it names.

Apart from building and sending the transaction because nothing here asks the chain or the
vault: it is the pure check of the request, run before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from keysafe.chains.addresses import is_evm_address, is_solana_address, to_checksum
from keysafe.errors import MalformedRequestError, NotFoundError
from keysafe.policy.registry import (
    AssetInfo,
    ChainInfo,
    Registry,
    UnknownName,
    from_base_units,
    parse_decimal,
    to_base_units,
)
from keysafe.service.models import TransferRequest
from keysafe.service.record_meta import Wallet

NATIVE: Final = "native"
# The widest amount each family's transfer carries: ERC-20 and ETH values are uint256, SOL and
# SPL amounts u64.
_MAX_UNITS: Final = {"evm": 2**256 - 1, "solana": 2**64 - 1}
_EVM_ZERO: Final = "0x" + "0" * 40
_FAMILY: Final = {"evm": "an EVM", "solana": "a Solana"}
_ASSET_NEXT: Final = (
    'use an asset your policy names (list_capabilities shows your rules), or "native" for '
    "the chain's own coin; the owner registers a token with `keysafe asset add`."
)


def field_error(what: str, next_step: str, field: str) -> MalformedRequestError:
    """The error for one wrong field of a transfer, naming the field."""
    return MalformedRequestError(what, next_step=next_step, field=field)


@dataclass(frozen=True, slots=True)
class Plan:
    """A transfer resolved against the registry, before anything is asked of the chain."""

    chain: ChainInfo
    asset: AssetInfo
    to: str  # EVM: EIP-55; Solana: base58
    units: int

    @property
    def amount(self) -> str:
        return from_base_units(self.units, self.asset.decimals)

    @property
    def asset_ref(self) -> str:
        """How the parked request names the asset: never a symbol the owner might re-register."""
        return self.asset.address if self.asset.address is not None else NATIVE


# -- resolving the request ------------------------------------------------------------------


def _family_chains(reg: Registry, family: str) -> list[ChainInfo]:
    return [c for c in reg.chains if c.family == family]


def _matches(reg: Registry, chain: ChainInfo, ref: str) -> list[AssetInfo]:
    """The registered assets on `chain` that `ref` names (a symbol in any case, an address, or
    "native"), each once."""
    text = ref.strip()
    if text.lower() == NATIVE:
        return [a for a in reg.assets if a.chain == chain.name and a.address is None][:1]
    found: dict[str, AssetInfo] = {}
    for a in reg.assets:
        if a.chain != chain.name:
            continue
        by_symbol = a.symbol.upper() == text.upper()
        by_address = a.address is not None and (
            a.address.lower() == text.lower() if chain.family == "evm" else a.address == text
        )
        if by_symbol or by_address:
            found.setdefault(a.identity, a)
    return list(found.values())


def _chain(reg: Registry, family: str, ref: str | None, asset: str) -> ChainInfo:
    if ref is not None:
        try:
            info = reg.chain(ref)
        except UnknownName:
            names = ", ".join(c.name for c in _family_chains(reg, family))
            raise field_error(
                f"'chain' names no chain keysafe knows ('{ref[:40]}').",
                f"use one of {names}.",
                "chain",
            ) from None
        if info.family != family:
            raise field_error(
                f"'chain' is {info.name}, {_FAMILY[info.family]} chain, but wallet is "
                f"{_FAMILY[family]} wallet.",
                f"use {_FAMILY[family]} chain, or {_FAMILY[info.family]} wallet.",
                "chain",
            )
        return info
    candidates = [c for c in _family_chains(reg, family) if _matches(reg, c, asset)]
    if not candidates:
        raise NotFoundError(
            f"'asset' '{asset[:40]}' is not registered on {_FAMILY[family]} chain.",
            next_step=_ASSET_NEXT,
            field="asset",
        )
    if asset.strip().lower() == NATIVE or len(candidates) > 1:
        where = ", ".join(c.name for c in candidates)
        raise field_error(
            f"'chain' is needed: '{asset[:40]}' is on {where}.",
            "pass chain, e.g. one your policy names (list_capabilities shows your rules).",
            "chain",
        )
    return candidates[0]


def _asset(reg: Registry, chain: ChainInfo, ref: str) -> AssetInfo:
    found = _matches(reg, chain, ref)
    if len(found) > 1:
        addresses = ", ".join(a.address or NATIVE for a in found)
        raise field_error(
            f"'asset' '{ref[:40]}' names {len(found)} registered assets on {chain.name} "
            f"({addresses}).",
            "pass the token's address as asset.",
            "asset",
        )
    if not found:
        elsewhere = sorted(
            {c.name for c in _family_chains(reg, chain.family) if _matches(reg, c, ref)}
        )
        where = f" (it is on {', '.join(elsewhere)})" if elsewhere else ""
        raise NotFoundError(
            f"'asset' '{ref[:40]}' is not registered on {chain.name}{where}.",
            next_step=_ASSET_NEXT,
            field="asset",
        )
    return found[0]


def _units(amount: str, asset: AssetInfo, family: str) -> int:
    what = f"'amount' must be a plain decimal string in whole {asset.symbol}, e.g. \"0.5\""
    try:
        value = parse_decimal(amount)
    except ValueError:
        raise field_error(
            f"{what}: no sign, exponent, NaN or infinity.", "send the amount as digits.", "amount"
        ) from None
    try:
        units = to_base_units(value, asset.decimals)
    except ValueError:
        raise field_error(
            f"'amount' has more decimal places than {asset.symbol} has ({asset.decimals}).",
            f"round the amount to {asset.decimals} decimal places.",
            "amount",
        ) from None
    if units <= 0:
        raise field_error("'amount' must be more than zero.", "send a positive amount.", "amount")
    if units > _MAX_UNITS[family]:
        raise field_error(
            f"'amount' is more {asset.symbol} than {_FAMILY[family]} transfer can carry.",
            "send a smaller amount.",
            "amount",
        )
    return units


def _recipient(reg: Registry, chain: ChainInfo, to: str) -> str:
    text = to.strip()
    if chain.family == "evm":
        if not is_evm_address(text):
            raise field_error(
                "'to' is not an EVM address (0x and 40 hex digits, a valid EIP-55 checksum if "
                "mixed case).",
                "pass the recipient's address.",
                "to",
            )
        address = to_checksum(text)
        if address.lower() == _EVM_ZERO:
            raise field_error(
                "'to' is the zero address; what is sent there is lost.",
                "pass the recipient's address.",
                "to",
            )
    else:
        if not is_solana_address(text):
            raise field_error(
                "'to' is not a Solana address (base58 for 32 bytes).",
                "pass the recipient's wallet address.",
                "to",
            )
        address = text
    token = next(
        (
            a
            for a in reg.assets
            if a.chain == chain.name
            and a.address is not None
            and (
                a.address.lower() == address.lower()
                if chain.family == "evm"
                else a.address == address
            )
        ),
        None,
    )
    if token is not None:
        raise field_error(
            f"'to' is the {token.symbol} token's own "
            f"{'contract' if chain.family == 'evm' else 'mint'}"
            "; what is sent there is lost.",
            "pass the recipient's wallet address.",
            "to",
        )
    return address


def plan_transfer(reg: Registry, found: Wallet, wire: TransferRequest) -> Plan:
    """The transfer `wire` asks for, resolved against the registry: chain, asset, amount in
    base units and recipient, each checked (the rules in service/transfer.py's docstring).

    Raises:
        MalformedRequestError: a field is wrong (the error's `field` names it), the wallet is a
            2-of-3 wallet, or the chain has no RPC.
        NotFoundError: the asset is not registered on the chain.
    """
    if found.threshold is not None:
        raise field_error(
            f"Wallet '{found.name}' is a 2-of-3 threshold wallet: its share on the agent's side "
            "must sign the exact transaction, which transfer builds inside the vault.",
            "build the transaction yourself and use send_transaction for this wallet.",
            "wallet",
        )
    family = str(found.chain)
    chain = _chain(reg, family, wire.chain, wire.asset)
    asset = _asset(reg, chain, wire.asset)
    units = _units(wire.amount, asset, family)
    to = _recipient(reg, chain, wire.to)
    if chain.rpc is None:
        raise field_error(
            f"Chain '{chain.name}' has no RPC, so keysafe cannot build or send a transfer there.",
            "the owner sets one with `keysafe chain add NAME --rpc URL`.",
            "chain",
        )
    return Plan(chain, asset, to, units)
