"""An unsigned transaction from a JSON dict, as `eth_sendTransaction` takes it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from keysafe.chains.addresses import checksum_or_none
from keysafe.chains.evm._tx_model import (
    DECIMAL_DIGITS,
    HEX_DIGITS,
    MAX_DATA_BYTES,
    MAX_HEX_CHARS,
    NONCE_MAX,
    UINT64_MAX,
    UINT256_MAX,
    AccessListEntry,
    EvmTx,
    agree_chain,
    bad,
)

logger = logging.getLogger(__name__)

# JSON key -> EvmTx attribute. `input` is the JSON-RPC name of `data`, `gasLimit` is ethers'.
_DICT_KEYS: Final[dict[str, str]] = {
    "type": "type",
    "chainId": "chain_id",
    "nonce": "nonce",
    "to": "to",
    "value": "value",
    "data": "data",
    "input": "data",
    "gas": "gas",
    "gasLimit": "gas",
    "gasPrice": "gas_price",
    "maxFeePerGas": "max_fee_per_gas",
    "maxPriorityFeePerGas": "max_priority_fee_per_gas",
    "accessList": "access_list",
    "from": "sender",
}


def tx_from_dict(raw: Mapping[str, Any], chain_id: int | None) -> EvmTx:
    """A transaction from an eth_sendTransaction dict; `chain_id` is the request's chain."""
    unknown = sorted(str(k)[:40] for k in raw if k not in _DICT_KEYS)
    if unknown:
        bad(
            f"unknown transaction field(s): {', '.join(unknown[:5])}.",
            next_step=f"use only: {', '.join(_DICT_KEYS)}.",
        )
    values: dict[str, Any] = {}
    for key, attr in _DICT_KEYS.items():
        if key not in raw:
            continue
        if attr in values and key in ("input", "gasLimit"):
            # Some serializers send both spellings; they must then agree.
            other = "data" if key == "input" else "gas"
            parsed = _parse_field(key, raw[key])
            if parsed is not None and values[attr] is not None and parsed != values[attr]:
                bad(f"'{other}' and '{key}' are both given and differ; give one.")
            if values[attr] is None:
                values[attr] = parsed
            continue
        values[attr] = _parse_field(key, raw[key])

    type_given = values.pop("type", None)
    has_legacy_fee = values.get("gas_price") is not None
    has_1559_fee = (
        values.get("max_fee_per_gas") is not None
        or values.get("max_priority_fee_per_gas") is not None
    )
    if has_legacy_fee and has_1559_fee:
        bad(
            "gasPrice and maxFeePerGas/maxPriorityFeePerGas are both given; a transaction pays "
            "one way.",
            next_step="give gasPrice (types 0, 1) or maxFeePerGas and maxPriorityFeePerGas "
            "(type 2).",
        )
    tx_type = type_given
    if tx_type is None:
        # Without a type, the fee fields say which; with none, EIP-1559 (what current wallets
        # send), its fees filled from the RPC.
        tx_type = (1 if values.get("access_list") is not None else 0) if has_legacy_fee else 2
    values["chain_id"] = agree_chain(values.get("chain_id"), chain_id)
    values.setdefault("nonce", None)
    values.setdefault("to", None)
    values.setdefault("value", 0)
    if values.get("data") is None:
        values["data"] = b""
    values["access_list"] = tuple(values.get("access_list") or ())
    return EvmTx(type=tx_type, **values)


def _parse_field(key: str, value: Any) -> Any:
    if value is None and key != "value":
        # Serializers send null for "not set": no type or chain id given, fields to fill, no
        # data, `to` null for contract creation. A null value is refused: it is never implied.
        return None
    if key == "type":
        t = _quantity(key, value, UINT64_MAX)
        if t not in (0, 1, 2):
            bad(
                f"transaction type {t} is not supported; keysafe signs legacy (0), EIP-2930 (1) "
                "and EIP-1559 (2) transactions."
            )
        return t
    if key in ("to", "from"):
        return _address(key, value)
    if key in ("data", "input"):
        return _hex_bytes(key, value)
    if key == "accessList":
        return _access_list_from_json(value)
    if key == "chainId":
        return _quantity(key, value, UINT64_MAX)
    if key == "nonce":
        return _quantity(key, value, NONCE_MAX)
    if key in ("gas", "gasLimit"):
        return _quantity(key, value, UINT64_MAX)
    return _quantity(key, value, UINT256_MAX)


def _quantity(name: str, value: Any, maximum: int) -> int:
    """An integer from a JSON number, "0x" hex or a decimal string."""
    if isinstance(value, bool):
        bad(f"{name} must be a number, not true/false.")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 80:  # 78 decimal digits or 0x + 64 hex digits hold any uint256
            bad(f"{name} is larger than the largest allowed value (2^256 - 1).")
        if text[:2] in ("0x", "0X"):
            digits = text[2:]
            if not digits or HEX_DIGITS.fullmatch(digits) is None:
                bad(f"{name} is not a hex quantity (0x followed by hex digits).")
            number = int(digits, 16)
        elif DECIMAL_DIGITS.fullmatch(text):
            number = int(text)
        else:
            bad(f'{name} must be an integer, as a JSON number, "0x" hex or a decimal string.')
    else:
        bad(f'{name} must be an integer, as a JSON number, "0x" hex or a decimal string.')
    if number < 0:
        bad(f"{name} must not be negative.")
    if number > maximum:
        bad(f"{name} is larger than the largest allowed value (2^{maximum.bit_length()} - 1).")
    return number


def _address(name: str, value: Any) -> str:
    if not isinstance(value, str):
        bad(f"{name} must be an address string (0x followed by 40 hex digits).")
    address = checksum_or_none(value.strip())
    if address is None:
        bad(
            f"{name} is not a valid address: expected 0x followed by 40 hex digits, with a "
            "valid EIP-55 checksum if mixed case."
        )
    return address


def _hex_bytes(name: str, value: Any) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        bad(f'{name} must be a "0x" hex string.')
    if len(value) > MAX_HEX_CHARS:
        bad(f"{name} is too large; at most {MAX_DATA_BYTES} bytes are accepted.")
    text = value.strip()
    if text[:2] not in ("0x", "0X"):
        bad(f'{name} must start with "0x".')
    digits = text[2:]
    if HEX_DIGITS.fullmatch(digits) is None:
        bad(f"{name} contains characters that are not hex digits.")
    if len(digits) % 2:
        bad(f"{name} has an odd number of hex digits, so it is not whole bytes.")
    return bytes.fromhex(digits)


def _storage_key(value: Any) -> str:
    if not isinstance(value, str) or value[:2] not in ("0x", "0X"):
        bad('accessList storage keys must be "0x" followed by 64 hex digits.')
    digits = value[2:]
    if len(digits) != 64 or HEX_DIGITS.fullmatch(digits) is None:
        bad('accessList storage keys must be "0x" followed by 64 hex digits.')
    return "0x" + digits.lower()


def _access_list_from_json(value: Any) -> tuple[AccessListEntry, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        bad("accessList must be a list of {address, storageKeys}.")
    entries = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) != {"address", "storageKeys"}:
            bad("each accessList entry must be an object with exactly address and storageKeys.")
        keys = item["storageKeys"]
        if not isinstance(keys, list):
            bad("accessList storageKeys must be a list.")
        entries.append(
            AccessListEntry(
                _address("accessList address", item["address"]),
                tuple(_storage_key(k) for k in keys),
            )
        )
    return tuple(entries)
