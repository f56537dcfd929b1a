"""The unsigned EVM transaction type and its invariants, checked whenever one is built
(module doc of `keysafe.chains.evm.tx`)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final, NoReturn

from keysafe.errors import MalformedRequestError

logger = logging.getLogger(__name__)

UINT256_MAX: Final = 2**256 - 1
UINT64_MAX: Final = 2**64 - 1
# EIP-2681: a nonce must stay below 2^64 - 1 so that it can still be incremented.
NONCE_MAX: Final = 2**64 - 2
# Calldata above this is refused before any decoding. Mainnet transactions are capped at 128 KiB
# by the txpool; initcode at 48 KiB (EIP-3860). Twice the txpool cap leaves room for L2s.
MAX_DATA_BYTES: Final = 256 * 1024
MAX_HEX_CHARS: Final = 2 * (MAX_DATA_BYTES + 4096)

HEX_DIGITS: Final = re.compile(r"[0-9a-fA-F]*")
DECIMAL_DIGITS: Final = re.compile(r"[0-9]+")

FEE_FIELDS: Final = ("gas_price", "max_fee_per_gas", "max_priority_fee_per_gas")
FILLABLE: Final = ("nonce", "gas", *FEE_FIELDS)


def bad(what: str, next_step: str = "fix the transaction and send it again.") -> NoReturn:
    """Refuse a malformed transaction (MalformedRequestError)."""
    raise MalformedRequestError(what, next_step=next_step)


@dataclass(frozen=True, slots=True)
class AccessListEntry:
    """One EIP-2930 access-list entry: an address and the storage slots it pre-warms."""

    address: str  # EIP-55
    storage_keys: tuple[str, ...] = ()  # each "0x" + 64 lower-case hex digits


@dataclass(frozen=True, slots=True)
class EvmTx:
    """An unsigned transaction. Fields left None are to be filled from the chain's RPC.

    Built by `parse_transaction` (or `with_filled`); the constructor checks every invariant, so
    an `EvmTx` that exists is well-formed.
    """

    type: int  # 0 legacy (signed with EIP-155), 1 EIP-2930, 2 EIP-1559
    chain_id: int
    nonce: int | None
    to: str | None  # EIP-55; None creates a contract
    value: int
    data: bytes
    gas: int | None = None
    gas_price: int | None = None  # types 0 and 1
    max_fee_per_gas: int | None = None  # type 2
    max_priority_fee_per_gas: int | None = None  # type 2
    access_list: tuple[AccessListEntry, ...] = ()  # types 1 and 2
    # The `from` the agent declared, if any. Never used to sign: the signer compares it with the
    # wallet's own address and refuses a mismatch, so an agent cannot be confused about who pays.
    sender: str | None = None

    def __post_init__(self) -> None:
        if self.type not in (0, 1, 2):
            bad(f"transaction type {self.type} is not supported (use 0, 1 or 2).")
        check_range("chainId", self.chain_id, 1, UINT64_MAX)
        if self.nonce is not None:
            check_range("nonce", self.nonce, 0, NONCE_MAX)
        if self.gas is not None:
            check_range("gas", self.gas, 0, UINT64_MAX)
        check_range("value", self.value, 0, UINT256_MAX)
        for name in FEE_FIELDS:
            fee = getattr(self, name)
            if fee is not None:
                check_range(name, fee, 0, UINT256_MAX)
        if not isinstance(self.data, bytes):
            bad("data must be bytes.")
        if len(self.data) > MAX_DATA_BYTES:
            bad(f"data is {len(self.data)} bytes; at most {MAX_DATA_BYTES} are accepted.")
        if self.type == 2:
            if self.gas_price is not None:
                bad(
                    "an EIP-1559 (type 2) transaction takes maxFeePerGas and "
                    "maxPriorityFeePerGas, not gasPrice."
                )
            if (
                self.max_fee_per_gas is not None
                and self.max_priority_fee_per_gas is not None
                and self.max_priority_fee_per_gas > self.max_fee_per_gas
            ):
                bad("maxPriorityFeePerGas is above maxFeePerGas, so no node would accept it.")
        elif self.max_fee_per_gas is not None or self.max_priority_fee_per_gas is not None:
            bad(
                f"a type {self.type} transaction takes gasPrice, not maxFeePerGas or "
                "maxPriorityFeePerGas (those are for type 2)."
            )
        if self.type == 0 and self.access_list:
            bad("a legacy (type 0) transaction cannot carry an access list; use type 1 or 2.")

    def missing_fields(self) -> tuple[str, ...]:
        """Names (JSON spelling) of the fields still to fill before the transaction can be
        signed."""
        fees = ("max_fee_per_gas", "max_priority_fee_per_gas") if self.type == 2 else ("gas_price",)
        return tuple(
            _JSON_NAME[name] for name in ("nonce", "gas", *fees) if getattr(self, name) is None
        )


_JSON_NAME: Final[dict[str, str]] = {
    "nonce": "nonce",
    "gas": "gas",
    "gas_price": "gasPrice",
    "max_fee_per_gas": "maxFeePerGas",
    "max_priority_fee_per_gas": "maxPriorityFeePerGas",
}


def check_range(name: str, value: object, low: int, high: int) -> None:
    """Refuse `value` unless it is an int in low..high."""
    if isinstance(value, bool) or not isinstance(value, int):
        bad(f"{name} must be an integer.")
    if value < low:
        bad(f"{name} must be at least {low}.")
    if value > high:
        bits = high.bit_length()
        bad(f"{name} is larger than the largest allowed value (2^{bits} - 1 or less).")


def agree_chain(given: int | None, expected: int | None) -> int:
    """The chain id: the transaction's or the request's, which must agree when both are given."""
    if given is None and expected is None:
        bad(
            "the transaction has no chainId and no chain was named.",
            next_step="give chainId, or name the chain the request is for.",
        )
    if given is not None and expected is not None and given != expected:
        bad(
            f"the transaction is for chain id {given}, but the request is for chain id {expected}.",
            next_step="sign it on the chain it was built for, or rebuild it for this chain.",
        )
    result = given if given is not None else expected
    assert result is not None
    return result
