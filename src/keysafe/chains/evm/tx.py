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

Layout: `_tx_model` holds `EvmTx` and its invariants, `_tx_json` and `_tx_rlp` read the two
forms; this module is the public API.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import rlp  # type: ignore[import-untyped]  # pyrlp ships no type hints

from keysafe.chains.evm._tx_json import tx_from_dict
from keysafe.chains.evm._tx_model import (
    FILLABLE,
    MAX_DATA_BYTES,
    NONCE_MAX,
    UINT64_MAX,
    UINT256_MAX,
    AccessListEntry,
    EvmTx,
    bad,
)
from keysafe.chains.evm._tx_rlp import tx_from_rlp_hex

__all__ = [
    "MAX_DATA_BYTES",
    "NONCE_MAX",
    "UINT64_MAX",
    "UINT256_MAX",
    "AccessListEntry",
    "EvmTx",
    "encode_unsigned",
    "parse_transaction",
    "to_eth_account_dict",
    "with_filled",
]

logger = logging.getLogger(__name__)


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
        tx = tx_from_dict(payload, chain_id)
    elif isinstance(payload, str):
        tx = tx_from_rlp_hex(payload, chain_id)
    else:
        bad("a transaction must be a JSON object or unsigned RLP as a hex string.")
    return tx


def with_filled(tx: EvmTx, **fields: int) -> EvmTx:
    """A copy of `tx` with missing fields (nonce, gas, fees) set.

    A field that is already set keeps its value: a filler never overrides what the agent asked
    for. Fields that do not apply to the type (gasPrice on type 2) are skipped, so one fee
    quote can serve every type.
    """
    changes: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in FILLABLE:
            raise ValueError(f"{name} cannot be filled; only {', '.join(FILLABLE)}")
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
            tx.nonce,
            tx.gas_price,
            tx.gas,
            to,
            tx.value,
            tx.data,
            tx.chain_id,
            0,
            0,
        ]
        return bytes(rlp.encode(fields))
    if tx.type == 1:
        fields = [tx.chain_id, tx.nonce, tx.gas_price, tx.gas, to, tx.value, tx.data, access]
        return b"\x01" + bytes(rlp.encode(fields))
    fields = [
        tx.chain_id,
        tx.nonce,
        tx.max_priority_fee_per_gas,
        tx.max_fee_per_gas,
        tx.gas,
        to,
        tx.value,
        tx.data,
        access,
    ]
    return b"\x02" + bytes(rlp.encode(fields))


def _require_complete(tx: EvmTx) -> None:
    missing = tx.missing_fields()
    if missing:
        bad(
            f"the transaction is missing {', '.join(missing)}.",
            next_step="give those fields, or configure an RPC for the chain so keysafe fills them.",
        )
