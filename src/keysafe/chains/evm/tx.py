"""Unsigned EVM transactions: parsed from what an agent sends, encoded for signing.

Accepted forms (`parse_transaction`):

- a JSON dict as in `eth_sendTransaction` / `eth_signTransaction`: quantities as JSON integers,
  "0x" hex or decimal strings; `data` (or `input`) as "0x" hex; `to` null for contract creation;
- unsigned RLP as hex (with or without 0x): an EIP-2718 envelope `0x01 || rlp([...])` (EIP-2930)
  or `0x02 || rlp([...])` (EIP-1559), or a legacy list, either EIP-155
  `[nonce, gasPrice, gas, to, value, data, chainId, 0, 0]` or pre-EIP-155 (6 items).

Rules enforced here, each refused with `MalformedRequestError` naming what is wrong:

- unknown dict fields are refused (a field we ignore could change what gets signed);
- fee fields must fit the type: `gasPrice` for types 0/1, `maxFeePerGas`/`maxPriorityFeePerGas`
  for type 2, never both kinds;
- every quantity fits its width (uint256 for value and fees, uint64 for nonce, gas and chain id:
  EIP-2681, EIP-2294); RLP integers must be canonical (no leading zero bytes);
- the chain id must be given, by the transaction or by the caller, and both must agree. Legacy
  transactions are always signed with EIP-155 replay protection, even when given pre-EIP-155;
- RLP that is signed (has v, r, s), has trailing bytes or is of an unsupported type (EIP-4844
  blobs, EIP-7702 set-code) is refused.

Error messages quote sizes and field names, never the input itself.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import rlp  # type: ignore[import-untyped]

from keysafe.chains.addresses import checksum_or_none, to_checksum
from keysafe.errors import MalformedRequestError

__all__ = [
    "AccessListEntry",
    "EvmTx",
    "encode_unsigned",
    "parse_transaction",
    "to_eth_account_dict",
    "with_filled",
]

logger = logging.getLogger(__name__)

UINT256_MAX: Final = 2**256 - 1
UINT64_MAX: Final = 2**64 - 1
# EIP-2681: a nonce must stay below 2^64 - 1 so that it can still be incremented.
NONCE_MAX: Final = 2**64 - 2
# Calldata above this is refused before any decoding. Mainnet transactions are capped at 128 KiB
# by the txpool; initcode at 48 KiB (EIP-3860). Twice the txpool cap leaves room for L2s.
MAX_DATA_BYTES: Final = 256 * 1024
_MAX_HEX_CHARS: Final = 2 * (MAX_DATA_BYTES + 4096)

_HEX: Final = re.compile(r"[0-9a-fA-F]*")
_DECIMAL: Final = re.compile(r"[0-9]+")

_FEE_FIELDS: Final = ("gas_price", "max_fee_per_gas", "max_priority_fee_per_gas")
_FILLABLE: Final = ("nonce", "gas", *_FEE_FIELDS)

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


def _bad(what: str, next_step: str = "fix the transaction and send it again.") -> NoReturn:
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
            _bad(f"transaction type {self.type} is not supported (use 0, 1 or 2).")
        _check_range("chainId", self.chain_id, 1, UINT64_MAX)
        if self.nonce is not None:
            _check_range("nonce", self.nonce, 0, NONCE_MAX)
        if self.gas is not None:
            _check_range("gas", self.gas, 0, UINT64_MAX)
        _check_range("value", self.value, 0, UINT256_MAX)
        for name in _FEE_FIELDS:
            fee = getattr(self, name)
            if fee is not None:
                _check_range(name, fee, 0, UINT256_MAX)
        if not isinstance(self.data, bytes):
            _bad("data must be bytes.")
        if len(self.data) > MAX_DATA_BYTES:
            _bad(f"data is {len(self.data)} bytes; at most {MAX_DATA_BYTES} are accepted.")
        if self.type == 2:
            if self.gas_price is not None:
                _bad(
                    "an EIP-1559 (type 2) transaction takes maxFeePerGas and "
                    "maxPriorityFeePerGas, not gasPrice."
                )
            if (
                self.max_fee_per_gas is not None
                and self.max_priority_fee_per_gas is not None
                and self.max_priority_fee_per_gas > self.max_fee_per_gas
            ):
                _bad("maxPriorityFeePerGas is above maxFeePerGas, so no node would accept it.")
        elif self.max_fee_per_gas is not None or self.max_priority_fee_per_gas is not None:
            _bad(
                f"a type {self.type} transaction takes gasPrice, not maxFeePerGas or "
                "maxPriorityFeePerGas (those are for type 2)."
            )
        if self.type == 0 and self.access_list:
            _bad("a legacy (type 0) transaction cannot carry an access list; use type 1 or 2.")

    def missing_fields(self) -> tuple[str, ...]:
        """Names (JSON spelling) of the fields still to fill before the transaction can be signed."""
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


def _check_range(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _bad(f"{name} must be an integer.")
    if value < low:
        _bad(f"{name} must be at least {low}.")
    if value > high:
        bits = high.bit_length()
        _bad(f"{name} is larger than the largest allowed value (2^{bits} - 1 or less).")


# --------------------------------------------------------------------------------------------
# Public API


def parse_transaction(payload: str | Mapping[str, Any], *, chain_id: int | None = None) -> EvmTx:
    """Parse an unsigned transaction from a JSON dict or unsigned RLP hex.

    Args:
        payload: the dict (hex or decimal quantities) or the RLP as hex, 0x optional.
        chain_id: the chain the request is for (from the registry). Used when the transaction
            has none; refused when the transaction names a different one.

    Raises:
        MalformedRequestError: anything malformed, ambiguous or for another chain.
    """
    if isinstance(payload, Mapping):
        tx = _from_dict(payload, chain_id)
    elif isinstance(payload, str):
        tx = _from_rlp_hex(payload, chain_id)
    else:
        _bad("a transaction must be a JSON object or unsigned RLP as a hex string.")
    return tx


def with_filled(tx: EvmTx, **fields: int) -> EvmTx:
    """A copy of `tx` with missing fields (nonce, gas, fees) set.

    A field that is already set keeps its value: a filler never overrides what the agent asked
    for. Fields that do not apply to the type (gasPrice on type 2) are skipped, so one fee
    quote can serve every type.
    """
    changes: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in _FILLABLE:
            raise ValueError(f"{name} cannot be filled; only {', '.join(_FILLABLE)}")
        if getattr(tx, name) is not None:
            continue
        if tx.type == 2 and name == "gas_price":
            continue
        if tx.type != 2 and name in ("max_fee_per_gas", "max_priority_fee_per_gas"):
            continue
        changes[name] = value
    if (
        tx.type == 2
        and "max_priority_fee_per_gas" in changes
        and (tx.max_fee_per_gas is not None or "max_fee_per_gas" in changes)
    ):
        # A filled tip must not exceed a cap the agent chose (or that was filled alongside it).
        cap = changes.get("max_fee_per_gas", tx.max_fee_per_gas)
        assert cap is not None
        changes["max_priority_fee_per_gas"] = min(changes["max_priority_fee_per_gas"], cap)
    if "max_fee_per_gas" in changes and tx.max_priority_fee_per_gas is not None:
        # …and a filled cap must leave room for a tip the agent chose.
        changes["max_fee_per_gas"] = max(changes["max_fee_per_gas"], tx.max_priority_fee_per_gas)
    return dataclasses.replace(tx, **changes) if changes else tx


def to_eth_account_dict(tx: EvmTx) -> dict[str, Any]:
    """The dict eth-account's `Account.sign_transaction` takes. The transaction must be complete."""
    _require_complete(tx)
    d: dict[str, Any] = {
        "chainId": tx.chain_id,
        "nonce": tx.nonce,
        "gas": tx.gas,
        "value": tx.value,
        "data": bytes(tx.data),
        # eth-account encodes contract creation as an empty `to`.
        "to": tx.to if tx.to is not None else b"",
    }
    if tx.type == 0:
        # No "type" key: eth-account then builds a legacy transaction, EIP-155 since chainId is set.
        d["gasPrice"] = tx.gas_price
        return d
    d["type"] = tx.type
    d["accessList"] = [
        {"address": e.address, "storageKeys": list(e.storage_keys)} for e in tx.access_list
    ]
    if tx.type == 1:
        d["gasPrice"] = tx.gas_price
    else:
        d["maxFeePerGas"] = tx.max_fee_per_gas
        d["maxPriorityFeePerGas"] = tx.max_priority_fee_per_gas
    return d


def encode_unsigned(tx: EvmTx) -> bytes:
    """The unsigned serialization whose keccak256 is what gets signed (EIP-155 / EIP-2718)."""
    _require_complete(tx)
    to = bytes.fromhex(tx.to[2:]) if tx.to is not None else b""
    access = [
        [bytes.fromhex(e.address[2:]), [bytes.fromhex(k[2:]) for k in e.storage_keys]]
        for e in tx.access_list
    ]
    if tx.type == 0:
        fields: list[Any] = [
            tx.nonce, tx.gas_price, tx.gas, to, tx.value, tx.data, tx.chain_id, 0, 0,
        ]  # fmt: skip
        return bytes(rlp.encode(fields))
    if tx.type == 1:
        fields = [tx.chain_id, tx.nonce, tx.gas_price, tx.gas, to, tx.value, tx.data, access]
        return b"\x01" + bytes(rlp.encode(fields))
    fields = [
        tx.chain_id, tx.nonce, tx.max_priority_fee_per_gas, tx.max_fee_per_gas, tx.gas, to,
        tx.value, tx.data, access,
    ]  # fmt: skip
    return b"\x02" + bytes(rlp.encode(fields))


def _require_complete(tx: EvmTx) -> None:
    missing = tx.missing_fields()
    if missing:
        _bad(
            f"the transaction is missing {', '.join(missing)}.",
            next_step="give those fields, or configure an RPC for the chain so keysafe fills them.",
        )


# --------------------------------------------------------------------------------------------
# JSON dict


def _from_dict(raw: Mapping[str, Any], chain_id: int | None) -> EvmTx:
    unknown = sorted(str(k)[:40] for k in raw if k not in _DICT_KEYS)
    if unknown:
        _bad(
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
                _bad(f"'{other}' and '{key}' are both given and differ; give one.")
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
        _bad(
            "gasPrice and maxFeePerGas/maxPriorityFeePerGas are both given; a transaction pays "
            "one way.",
            next_step="give gasPrice (types 0, 1) or maxFeePerGas and maxPriorityFeePerGas (type 2).",
        )
    tx_type = type_given
    if tx_type is None:
        # Without a type, the fee fields say which; with none, EIP-1559 (what current wallets
        # send), its fees filled from the RPC.
        tx_type = (1 if values.get("access_list") is not None else 0) if has_legacy_fee else 2
    values["chain_id"] = _agree_chain(values.get("chain_id"), chain_id)
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
            _bad(
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
        _bad(f"{name} must be a number, not true/false.")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 80:  # 78 decimal digits or 0x + 64 hex digits hold any uint256
            _bad(f"{name} is larger than the largest allowed value (2^256 - 1).")
        if text[:2] in ("0x", "0X"):
            digits = text[2:]
            if not digits or _HEX.fullmatch(digits) is None:
                _bad(f"{name} is not a hex quantity (0x followed by hex digits).")
            number = int(digits, 16)
        elif _DECIMAL.fullmatch(text):
            number = int(text)
        else:
            _bad(f'{name} must be an integer, as a JSON number, "0x" hex or a decimal string.')
    else:
        _bad(f'{name} must be an integer, as a JSON number, "0x" hex or a decimal string.')
    if number < 0:
        _bad(f"{name} must not be negative.")
    if number > maximum:
        _bad(f"{name} is larger than the largest allowed value (2^{maximum.bit_length()} - 1).")
    return number


def _address(name: str, value: Any) -> str:
    if not isinstance(value, str):
        _bad(f"{name} must be an address string (0x followed by 40 hex digits).")
    address = checksum_or_none(value.strip())
    if address is None:
        _bad(
            f"{name} is not a valid address: expected 0x followed by 40 hex digits, with a "
            "valid EIP-55 checksum if mixed case."
        )
    return address


def _hex_bytes(name: str, value: Any) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        _bad(f'{name} must be a "0x" hex string.')
    if len(value) > _MAX_HEX_CHARS:
        _bad(f"{name} is too large; at most {MAX_DATA_BYTES} bytes are accepted.")
    text = value.strip()
    if text[:2] not in ("0x", "0X"):
        _bad(f'{name} must start with "0x".')
    digits = text[2:]
    if _HEX.fullmatch(digits) is None:
        _bad(f"{name} contains characters that are not hex digits.")
    if len(digits) % 2:
        _bad(f"{name} has an odd number of hex digits, so it is not whole bytes.")
    return bytes.fromhex(digits)


def _storage_key(value: Any) -> str:
    if not isinstance(value, str) or value[:2] not in ("0x", "0X"):
        _bad('accessList storage keys must be "0x" followed by 64 hex digits.')
    digits = value[2:]
    if len(digits) != 64 or _HEX.fullmatch(digits) is None:
        _bad('accessList storage keys must be "0x" followed by 64 hex digits.')
    return "0x" + digits.lower()


def _access_list_from_json(value: Any) -> tuple[AccessListEntry, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        _bad("accessList must be a list of {address, storageKeys}.")
    entries = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) != {"address", "storageKeys"}:
            _bad("each accessList entry must be an object with exactly address and storageKeys.")
        keys = item["storageKeys"]
        if not isinstance(keys, list):
            _bad("accessList storageKeys must be a list.")
        entries.append(
            AccessListEntry(
                _address("accessList address", item["address"]),
                tuple(_storage_key(k) for k in keys),
            )
        )
    return tuple(entries)


def _agree_chain(given: int | None, expected: int | None) -> int:
    if given is None and expected is None:
        _bad(
            "the transaction has no chainId and no chain was named.",
            next_step="give chainId, or name the chain the request is for.",
        )
    if given is not None and expected is not None and given != expected:
        _bad(
            f"the transaction is for chain id {given}, but the request is for chain id {expected}.",
            next_step="sign it on the chain it was built for, or rebuild it for this chain.",
        )
    result = given if given is not None else expected
    assert result is not None
    return result


# --------------------------------------------------------------------------------------------
# Unsigned RLP


def _from_rlp_hex(text: str, chain_id: int | None) -> EvmTx:
    if len(text) > _MAX_HEX_CHARS:
        _bad(f"the transaction is too large; at most {MAX_DATA_BYTES} bytes of data are accepted.")
    digits = text.strip()
    if digits[:2] in ("0x", "0X"):
        digits = digits[2:]
    if not digits:
        _bad("the transaction hex is empty.")
    if _HEX.fullmatch(digits) is None:
        _bad("the transaction is neither a JSON object nor hex-encoded RLP.")
    if len(digits) % 2:
        _bad("the transaction hex has an odd number of digits.")
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
        _bad(f"{kind} transactions (type {first}) are not supported.")
    _bad(f"unknown transaction type byte 0x{first:02x}; expected 0x01, 0x02 or a legacy RLP list.")


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
        _bad(f"the transaction is not valid RLP ({failure}).")
    if not isinstance(decoded, list):
        _bad("the transaction RLP is a string, not a list of fields.")
    return decoded


def _rlp_bytes(name: str, item: Any) -> bytes:
    if not isinstance(item, bytes):
        _bad(f"RLP field {name} is a list where bytes were expected.")
    return item


def _rlp_int(name: str, item: Any, maximum: int) -> int:
    b = _rlp_bytes(name, item)
    if b[:1] == b"\x00":
        _bad(f"RLP field {name} is not a canonical integer (leading zero byte).")
    if len(b) > 32:
        _bad(f"RLP field {name} is larger than 2^256 - 1.")
    value = int.from_bytes(b, "big")
    if value > maximum:
        _bad(f"RLP field {name} is larger than the largest allowed value.")
    return value


def _rlp_to(item: Any) -> str | None:
    b = _rlp_bytes("to", item)
    if not b:
        return None
    if len(b) != 20:
        _bad(f"RLP field to is {len(b)} bytes; an address is 20 (or empty to create a contract).")
    return to_checksum("0x" + b.hex())


def _rlp_access_list(item: Any) -> tuple[AccessListEntry, ...]:
    if not isinstance(item, list):
        _bad("RLP field accessList is not a list.")
    entries = []
    for entry in item:
        if not isinstance(entry, list) or len(entry) != 2:
            _bad("each RLP accessList entry must be [address, [storageKeys]].")
        address = _rlp_bytes("accessList address", entry[0])
        if len(address) != 20:
            _bad("an RLP accessList address is not 20 bytes.")
        keys = entry[1]
        if not isinstance(keys, list) or any(
            not isinstance(k, bytes) or len(k) != 32 for k in keys
        ):
            _bad("RLP accessList storage keys must be a list of 32-byte values.")
        entries.append(
            AccessListEntry(to_checksum("0x" + address.hex()), tuple("0x" + k.hex() for k in keys))
        )
    return tuple(entries)


def _legacy_from_rlp(items: list[Any], chain_id: int | None) -> EvmTx:
    if len(items) == 9:
        tx_chain = _rlp_int("chainId", items[6], UINT64_MAX)
        if items[7] != b"" or items[8] != b"":
            _bad(
                "this legacy transaction is already signed (or its last two EIP-155 fields are "
                "not zero).",
                next_step="send the unsigned transaction: [nonce, gasPrice, gas, to, value, data, "
                "chainId, 0, 0].",
            )
    elif len(items) == 6:
        # Pre-EIP-155: no chain id. keysafe still signs with EIP-155, on the requested chain.
        tx_chain = None
    else:
        _bad(
            f"a legacy transaction has 6 or 9 RLP fields (unsigned); this one has {len(items)}.",
            next_step="send the unsigned transaction, not a signed one.",
        )
    return EvmTx(
        type=0,
        chain_id=_agree_chain(tx_chain, chain_id),
        nonce=_rlp_int("nonce", items[0], NONCE_MAX),
        gas_price=_rlp_int("gasPrice", items[1], UINT256_MAX),
        gas=_rlp_int("gas", items[2], UINT64_MAX),
        to=_rlp_to(items[3]),
        value=_rlp_int("value", items[4], UINT256_MAX),
        data=_rlp_bytes("data", items[5]),
    )


def _typed_from_rlp(tx_type: int, items: list[Any], chain_id: int | None) -> EvmTx:
    unsigned = 8 if tx_type == 1 else 9
    if len(items) == unsigned + 3:
        _bad(
            f"this type {tx_type} transaction is already signed.",
            next_step="send the unsigned transaction.",
        )
    if len(items) != unsigned:
        _bad(f"a type {tx_type} transaction has {unsigned} RLP fields; this one has {len(items)}.")
    tx_chain = _rlp_int("chainId", items[0], UINT64_MAX)
    nonce = _rlp_int("nonce", items[1], NONCE_MAX)
    if tx_type == 1:
        fees: dict[str, Any] = {"gas_price": _rlp_int("gasPrice", items[2], UINT256_MAX)}
        rest = items[3:]
    else:
        fees = {
            "max_priority_fee_per_gas": _rlp_int("maxPriorityFeePerGas", items[2], UINT256_MAX),
            "max_fee_per_gas": _rlp_int("maxFeePerGas", items[3], UINT256_MAX),
        }
        rest = items[4:]
    return EvmTx(
        type=tx_type,
        chain_id=_agree_chain(tx_chain, chain_id),
        nonce=nonce,
        gas=_rlp_int("gas", rest[0], UINT64_MAX),
        to=_rlp_to(rest[1]),
        value=_rlp_int("value", rest[2], UINT256_MAX),
        data=_rlp_bytes("data", rest[3]),
        access_list=_rlp_access_list(rest[4]),
        **fees,
    )
