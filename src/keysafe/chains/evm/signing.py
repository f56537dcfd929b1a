"""Signing inside the vault, and checking the result before anyone sees it (DESIGN.md step 6).

Every function here verifies its own output: the signer is recovered from the signature and must
be the key's address, and a signed transaction is decoded again by eth-account's own decoder
(independent of `tx.parse_transaction`) and compared field by field with the transaction the
policy checked. Any difference raises `IntegrityError` and the signature is never returned.

Signatures are low-S (EIP-2): eth-account (via eth-keys/coincurve) produces canonical RFC 6979
signatures, and this module checks it.

Keys: eth-account copies the key into immutable `bytes` and its own key objects, which cannot be
wiped; the caller's `SecretBytes` is wiped by the caller, so wiping here is best effort. No error
raised here carries the key, its hex, or an exception chained from code that saw it.

    with vault.open_key(wallet.key_ref) as key:
        signed = sign_transaction(tx, key)       # verified against tx before it is returned
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import rlp  # type: ignore[import-untyped]  # pyrlp ships no type hints
from coincurve.utils import GROUP_ORDER_INT
from eth_account import Account
from eth_account._utils.legacy_transactions import Transaction as _LegacyTransaction
from eth_account._utils.legacy_transactions import (
    UnsignedTransaction as _UnsignedLegacy,
)
from eth_account._utils.legacy_transactions import (
    encode_transaction,
    serializable_unsigned_transaction_from_dict,
)
from eth_account._utils.signing import to_eth_v
from eth_account.messages import SignableMessage, _hash_eip191_message, encode_defunct
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from keysafe.chains.addresses import evm_address_from_private, to_checksum
from keysafe.chains.evm.intents import encode_typed
from keysafe.chains.evm.tx import EvmTx, to_eth_account_dict
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, InternalError, MalformedRequestError

__all__ = [
    "SignedTx",
    "assemble_message_signature",
    "assemble_transaction",
    "message_hash",
    "personal_digest",
    "sign_personal_message",
    "sign_transaction",
    "sign_typed_data",
    "transaction_hash",
    "verify_signed",
]

logger = logging.getLogger(__name__)

_HALF_ORDER: Final = GROUP_ORDER_INT // 2


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A signed transaction, ready to send, and who signed it."""

    raw_hex: str  # "0x" + the signed transaction, ready for eth_sendRawTransaction
    tx_hash: str  # "0x" + keccak256(raw)
    sender: str  # EIP-55 address recovered from the signature


def _integrity(field: str, what: str) -> NoReturn:
    raise IntegrityError(
        f"The signed result's {field} {what}, so it was not returned. Nothing was sent.",
        next_step="retry once; if it happens again, report it: keysafe or a library misbehaves.",
        field=field,
    )


def _key_bytes(key: SecretBytes) -> bytes:
    if len(key) != 32:
        raise MalformedRequestError(
            "the wallet key is not a 32-byte secp256k1 key.",
            next_step="check the wallet record; EVM keys are 32 bytes.",
        )
    # An immutable copy eth-account needs; it cannot be wiped (best effort, see module docstring).
    return bytes(key.reveal())


def _signer_address(key: SecretBytes) -> str:
    failed = False
    try:
        address = evm_address_from_private(key)
    except ValueError:
        failed = True
    if failed:
        raise MalformedRequestError(
            "the wallet key is not a valid secp256k1 private key.",
            next_step="check the wallet record.",
        )
    return address


def _library_failure(step: str, exc_type: str) -> NoReturn:
    # Raised outside the `except` block on purpose: the library's exception may hold its
    # arguments (the key), so it must not ride along as __context__.
    raise InternalError(
        f"{step} failed inside the signing library ({exc_type}). Nothing was signed.",
        next_step="report this as a bug with the incident id.",
    )


def _check_low_s(s: int) -> None:
    if not 0 < s <= _HALF_ORDER:
        _integrity("signature", "has a high S value (EIP-2 requires low S)")


# --------------------------------------------------------------------------------------------
# Transactions


def sign_transaction(tx: EvmTx, key: SecretBytes) -> SignedTx:
    """Sign a complete transaction and verify the result against `tx` before returning it.

    Raises:
        MalformedRequestError: fields still missing, or `tx.sender` is not this key's address.
        IntegrityError: the signed transaction differs from `tx` (never returned).
    """
    address = _signer_address(key)
    if tx.sender is not None and tx.sender != address:
        raise MalformedRequestError(
            f"the transaction says it is from {tx.sender}, but this wallet is {address}.",
            next_step="send it from the wallet it names, or drop the 'from' field.",
        )
    tx_dict = to_eth_account_dict(tx)  # refuses an incomplete transaction
    failure: str | None = None
    try:
        signed = Account.sign_transaction(tx_dict, _key_bytes(key))
    except Exception as exc:
        failure = type(exc).__name__
    if failure is not None:
        _library_failure("transaction signing", failure)
    raw = bytes(signed.raw_transaction)
    result = SignedTx("0x" + raw.hex(), "0x" + bytes(signed.hash).hex(), address)
    verify_signed(result, tx, address)
    return result


# --------------------------------------------------------------------------------------------
# Signatures made elsewhere (threshold wallets): the hash to sign, then the same checks


def transaction_hash(tx: EvmTx) -> bytes:
    """The 32-byte hash a signer signs for `tx` (keccak256 of the unsigned encoding; EIP-155
    for legacy transactions). A threshold party computes it itself from the transaction it
    checked, never taking a hash from someone else.

    Raises:
        MalformedRequestError: the transaction is incomplete.
    """
    return bytes(serializable_unsigned_transaction_from_dict(to_eth_account_dict(tx)).hash())


def assemble_transaction(tx: EvmTx, r: int, s: int, recovery_id: int, sender: str) -> SignedTx:
    """Encode `tx` with a signature made elsewhere and check it as `sign_transaction` checks
    its own: it must recover to `sender`, have low S, and decode back to `tx`.

    Raises:
        IntegrityError: the signature does not fit (the result is never returned).
    """
    if recovery_id not in (0, 1):
        _integrity("signature", "has a recovery id other than 0 or 1")
    unsigned = serializable_unsigned_transaction_from_dict(to_eth_account_dict(tx))
    if isinstance(unsigned, TypedTransaction):
        v = recovery_id
    else:
        chain = None if isinstance(unsigned, _UnsignedLegacy) else tx.chain_id
        v = to_eth_v(recovery_id, chain)
    raw = encode_transaction(unsigned, vrs=(v, r, s))
    result = SignedTx("0x" + raw.hex(), "0x" + keccak(raw).hex(), sender)
    verify_signed(result, tx, sender)
    return result


def message_hash(signable: SignableMessage) -> bytes:
    """The 32-byte EIP-191 hash of an encoded message (personal_sign or EIP-712)."""
    return bytes(_hash_eip191_message(signable))


def personal_digest(message_bytes: bytes) -> tuple[SignableMessage, bytes]:
    """personal_sign over `message_bytes`: the encoded message and the hash a signer signs
    (one place for every party of a 2-of-3 signature, so they cannot hash it differently)."""
    signable = encode_defunct(primitive=bytes(message_bytes))
    return signable, message_hash(signable)


def assemble_message_signature(
    signable: SignableMessage, r: int, s: int, recovery_id: int, sender: str
) -> str:
    """ "0x" + r‖s‖v hex (v = 27/28) for a signature made elsewhere, after checking it has low S
    and recovers to `sender`.

    Raises:
        IntegrityError: it does not (the signature is never returned).
    """
    if recovery_id not in (0, 1):
        _integrity("signature", "has a recovery id other than 0 or 1")
    _check_low_s(s)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + recovery_id])
    failed = False
    try:
        recovered = Account.recover_message(signable, signature=signature)
    except Exception:
        failed = True
    if failed or recovered != sender:
        _integrity("signer", "is not the wallet that was asked to sign")
    return "0x" + signature.hex()


@dataclass(frozen=True, slots=True)
class _Decoded:
    type: int
    chain_id: int | None
    nonce: int
    to: str | None
    value: int
    data: bytes
    gas: int
    gas_price: int | None
    max_fee_per_gas: int | None
    max_priority_fee_per_gas: int | None
    access_list: tuple[tuple[str, tuple[str, ...]], ...]
    s: int


def _decode_signed(raw: bytes) -> _Decoded:
    """Decode with eth-account's own sedes, independently of keysafe's parser."""
    if raw[:1] in (b"\x01", b"\x02"):
        d = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        to = bytes(d["to"])
        access = tuple(
            (
                to_checksum("0x" + bytes(e["address"]).hex()),
                tuple("0x" + int(k).to_bytes(32, "big").hex() for k in e["storageKeys"]),
            )
            for e in d.get("accessList", ())
        )
        return _Decoded(
            type=int(d["type"]),
            chain_id=int(d["chainId"]),
            nonce=int(d["nonce"]),
            to=to_checksum("0x" + to.hex()) if to else None,
            value=int(d["value"]),
            data=bytes(d["data"]),
            gas=int(d["gas"]),
            gas_price=int(d["gasPrice"]) if "gasPrice" in d else None,
            max_fee_per_gas=int(d["maxFeePerGas"]) if "maxFeePerGas" in d else None,
            max_priority_fee_per_gas=(
                int(d["maxPriorityFeePerGas"]) if "maxPriorityFeePerGas" in d else None
            ),
            access_list=access,
            s=int(d["s"]),
        )
    if raw[:1] >= b"\xc0":
        d = rlp.decode(raw, _LegacyTransaction).as_dict()
        v = int(d["v"])
        # EIP-155: v = chainId * 2 + 35 + recovery id; 27/28 means no replay protection.
        chain_id = (v - 35) // 2 if v >= 37 else None
        to = bytes(d["to"])
        return _Decoded(
            type=0,
            chain_id=chain_id,
            nonce=int(d["nonce"]),
            to=to_checksum("0x" + to.hex()) if to else None,
            value=int(d["value"]),
            data=bytes(d["data"]),
            gas=int(d["gas"]),
            gas_price=int(d["gasPrice"]),
            max_fee_per_gas=None,
            max_priority_fee_per_gas=None,
            access_list=(),
            s=int(d["s"]),
        )
    raise ValueError("unknown transaction type")


def verify_signed(signed: SignedTx, expected: EvmTx, expected_sender: str) -> None:
    """Check a signed transaction against the transaction the policy judged.

    Recovers the sender, decodes the raw bytes again and compares sender, type, chain id, nonce,
    to, value, data, gas, fees and access list.

    Raises:
        IntegrityError: naming the first field that differs (`facts["field"]`).
    """
    text = signed.raw_hex[2:] if signed.raw_hex[:2] == "0x" else signed.raw_hex
    failed = False
    try:
        raw = bytes.fromhex(text)
        decoded = _decode_signed(raw)
        recovered = Account.recover_transaction(raw)
    except Exception:
        failed = True
    if failed or not raw:
        _integrity("encoding", "cannot be decoded")
    if "0x" + keccak(raw).hex() != signed.tx_hash.lower():
        _integrity("hash", "does not match its bytes")
    if recovered != expected_sender or signed.sender != expected_sender:
        _integrity("sender", "is not the wallet that was asked to sign")
    _check_low_s(decoded.s)
    want = {
        "type": expected.type,
        "chain": expected.chain_id,
        "nonce": expected.nonce,
        "to": expected.to,
        "value": expected.value,
        "data": bytes(expected.data),
        "gas": expected.gas,
        "gasPrice": expected.gas_price,
        "maxFeePerGas": expected.max_fee_per_gas,
        "maxPriorityFeePerGas": expected.max_priority_fee_per_gas,
        "accessList": tuple((e.address, e.storage_keys) for e in expected.access_list),
    }
    got = {
        "type": decoded.type,
        "chain": decoded.chain_id,
        "nonce": decoded.nonce,
        "to": decoded.to,
        "value": decoded.value,
        "data": decoded.data,
        "gas": decoded.gas,
        "gasPrice": decoded.gas_price,
        "maxFeePerGas": decoded.max_fee_per_gas,
        "maxPriorityFeePerGas": decoded.max_priority_fee_per_gas,
        "accessList": decoded.access_list,
    }
    for name, value in want.items():
        if got[name] != value:
            _integrity(name, "differs from the checked request")


# --------------------------------------------------------------------------------------------
# Messages


def _signature_hex(signature: Any) -> tuple[str, int]:
    sig = bytes(signature)
    if len(sig) != 65:
        _integrity("signature", "is not 65 bytes")
    return "0x" + sig.hex(), int.from_bytes(sig[32:64], "big")


def sign_personal_message(message_bytes: bytes, key: SecretBytes) -> tuple[str, str]:
    """EIP-191 personal_sign over `message_bytes` (the prefix is added here).

    Returns:
        (signature as "0x" + r‖s‖v hex with v = 27/28, the signer's address)
    """
    if not isinstance(message_bytes, bytes | bytearray) or not message_bytes:
        raise MalformedRequestError(
            "the message to sign must be non-empty bytes.",
            next_step="decode the request with intent_from_personal_message first.",
        )
    signable = encode_defunct(primitive=bytes(message_bytes))
    return _sign_signable(signable, key, "message signing")


def sign_typed_data(doc: Mapping[str, Any], key: SecretBytes) -> str:
    """eth_signTypedData_v4: sign EIP-712 typed data; "0x" + r‖s‖v hex, v = 27/28.

    The document is validated again (it is what gets signed); judge it first with
    `intent_from_typed_data`, which also checks its chain.
    """
    signature, _ = _sign_signable(encode_typed(doc), key, "typed-data signing")
    return signature


def _sign_signable(signable: SignableMessage, key: SecretBytes, what: str) -> tuple[str, str]:
    """Sign an EIP-191/712 message, then prove it: low-S, and it recovers to the wallet."""
    address = _signer_address(key)
    failure: str | None = None
    try:
        signed = Account.sign_message(signable, _key_bytes(key))
    except Exception as exc:
        failure = type(exc).__name__  # never the message: library errors may quote the key
    if failure is not None:
        _library_failure(what, failure)
    signature, s = _signature_hex(signed.signature)
    _check_low_s(s)
    if Account.recover_message(signable, signature=bytes.fromhex(signature[2:])) != address:
        _integrity("signer", "is not the wallet that was asked to sign")
    return signature, address
