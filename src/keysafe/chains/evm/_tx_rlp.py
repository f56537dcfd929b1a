"""An unsigned transaction from RLP hex: an EIP-2718 envelope or a legacy list."""

from __future__ import annotations

import logging
from typing import Any

import rlp  # type: ignore[import-untyped]  # pyrlp ships no type hints

from keysafe.chains.addresses import to_checksum
from keysafe.chains.evm import _tx_model as limits
from keysafe.chains.evm._tx_model import AccessListEntry, EvmTx, agree_chain, bad

logger = logging.getLogger(__name__)


def tx_from_rlp_hex(text: str, chain_id: int | None) -> EvmTx:
    """A transaction from unsigned RLP as hex; `chain_id` is the request's chain."""
    if len(text) > limits.MAX_HEX_CHARS:
        bad(
            f"the transaction is too large; at most {limits.MAX_DATA_BYTES} bytes of data are "
            "accepted."
        )
    digits = text.strip()
    if digits[:2] in ("0x", "0X"):
        digits = digits[2:]
    if not digits:
        bad("the transaction hex is empty.")
    if limits.HEX_DIGITS.fullmatch(digits) is None:
        bad("the transaction is neither a JSON object nor hex-encoded RLP.")
    if len(digits) % 2:
        bad("the transaction hex has an odd number of digits.")
    raw = bytes.fromhex(digits)
    first = raw[0]
    if first >= 0xC0:
        return _legacy_from_rlp(_rlp_list(raw), chain_id)
    if first == 0x01:
        return _typed_from_rlp(1, _rlp_list(raw[1:]), chain_id)
    if first == 0x02:
        return _typed_from_rlp(2, _rlp_list(raw[1:]), chain_id)
    if first in (0x03, 0x04):
        kind = "EIP-4844 blob" if first == 0x03 else "EIP-7702 set-code"
        bad(f"{kind} transactions (type {first}) are not supported.")
    bad(f"unknown transaction type byte 0x{first:02x}; expected 0x01, 0x02 or a legacy RLP list.")


def _rlp_list(raw: bytes) -> list[Any]:
    failure: str | None = None
    try:
        # strict: trailing bytes after the list are refused.
        decoded = rlp.decode(raw, strict=True)
    except rlp.exceptions.RLPException as exc:
        failure = type(exc).__name__
    except Exception:  # rlp raises a few plain exceptions on odd input
        failure = "decoding failed"
    if failure is not None:
        bad(f"the transaction is not valid RLP ({failure}).")
    if not isinstance(decoded, list):
        bad("the transaction RLP is a string, not a list of fields.")
    return decoded


def _rlp_bytes(name: str, item: Any) -> bytes:
    if not isinstance(item, bytes):
        bad(f"RLP field {name} is a list where bytes were expected.")
    return item


def _rlp_int(name: str, item: Any, maximum: int) -> int:
    b = _rlp_bytes(name, item)
    if b[:1] == b"\x00":
        bad(f"RLP field {name} is not a canonical integer (leading zero byte).")
    if len(b) > 32:
        bad(f"RLP field {name} is larger than 2^256 - 1.")
    value = int.from_bytes(b, "big")
    if value > maximum:
        bad(f"RLP field {name} is larger than the largest allowed value.")
    return value


def _rlp_to(item: Any) -> str | None:
    b = _rlp_bytes("to", item)
    if not b:
        return None
    if len(b) != 20:
        bad(f"RLP field to is {len(b)} bytes; an address is 20 (or empty to create a contract).")
    return to_checksum("0x" + b.hex())


def _rlp_access_list(item: Any) -> tuple[AccessListEntry, ...]:
    if not isinstance(item, list):
        bad("RLP field accessList is not a list.")
    entries = []
    for entry in item:
        if not isinstance(entry, list) or len(entry) != 2:
            bad("each RLP accessList entry must be [address, [storageKeys]].")
        address = _rlp_bytes("accessList address", entry[0])
        if len(address) != 20:
            bad("an RLP accessList address is not 20 bytes.")
        keys = entry[1]
        if not isinstance(keys, list) or any(
            not isinstance(k, bytes) or len(k) != 32 for k in keys
        ):
            bad("RLP accessList storage keys must be a list of 32-byte values.")
        entries.append(
            AccessListEntry(to_checksum("0x" + address.hex()), tuple("0x" + k.hex() for k in keys))
        )
    return tuple(entries)


def _legacy_from_rlp(items: list[Any], chain_id: int | None) -> EvmTx:
    if len(items) == 9:
        tx_chain = _rlp_int("chainId", items[6], limits.UINT64_MAX)
        if items[7] != b"" or items[8] != b"":
            bad(
                "this legacy transaction is already signed (or its last two EIP-155 fields are "
                "not zero).",
                next_step="send the unsigned transaction: [nonce, gasPrice, gas, to, value, data, "
                "chainId, 0, 0].",
            )
    elif len(items) == 6:
        # Pre-EIP-155: no chain id. keysafe still signs with EIP-155, on the requested chain.
        tx_chain = None
    else:
        bad(
            f"a legacy transaction has 6 or 9 RLP fields (unsigned); this one has {len(items)}.",
            next_step="send the unsigned transaction, not a signed one.",
        )
    return EvmTx(
        type=0,
        chain_id=agree_chain(tx_chain, chain_id),
        nonce=_rlp_int("nonce", items[0], limits.NONCE_MAX),
        gas_price=_rlp_int("gasPrice", items[1], limits.UINT256_MAX),
        gas=_rlp_int("gas", items[2], limits.UINT64_MAX),
        to=_rlp_to(items[3]),
        value=_rlp_int("value", items[4], limits.UINT256_MAX),
        data=_rlp_bytes("data", items[5]),
    )


def _typed_from_rlp(tx_type: int, items: list[Any], chain_id: int | None) -> EvmTx:
    unsigned = 8 if tx_type == 1 else 9
    if len(items) == unsigned + 3:
        bad(
            f"this type {tx_type} transaction is already signed.",
            next_step="send the unsigned transaction.",
        )
    if len(items) != unsigned:
        bad(f"a type {tx_type} transaction has {unsigned} RLP fields; this one has {len(items)}.")
    tx_chain = _rlp_int("chainId", items[0], limits.UINT64_MAX)
    nonce = _rlp_int("nonce", items[1], limits.NONCE_MAX)
    if tx_type == 1:
        fees: dict[str, Any] = {"gas_price": _rlp_int("gasPrice", items[2], limits.UINT256_MAX)}
        rest = items[3:]
    else:
        fees = {
            "max_priority_fee_per_gas": _rlp_int(
                "maxPriorityFeePerGas", items[2], limits.UINT256_MAX
            ),
            "max_fee_per_gas": _rlp_int("maxFeePerGas", items[3], limits.UINT256_MAX),
        }
        rest = items[4:]
    return EvmTx(
        type=tx_type,
        chain_id=agree_chain(tx_chain, chain_id),
        nonce=nonce,
        gas=_rlp_int("gas", rest[0], limits.UINT64_MAX),
        to=_rlp_to(rest[1]),
        value=_rlp_int("value", rest[2], limits.UINT256_MAX),
        data=_rlp_bytes("data", rest[3]),
        access_list=_rlp_access_list(rest[4]),
        **fees,
    )
