"""Addresses and wallet keys for EVM chains and Solana.

Derivation paths match the common wallets: MetaMask (EVM) uses BIP-32 m/44'/60'/0'/0/{index},
Phantom (Solana) uses SLIP-10 ed25519 m/44'/501'/{index}'/0'.

Imported private keys are parsed here too. Parse errors never quote the input (it is a secret),
and no exception that could hold the input is chained to them (`__cause__`/`__context__`).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re

from coincurve import PrivateKey, PublicKey
from coincurve.utils import GROUP_ORDER_INT
from eth_utils.address import to_checksum_address as _eth_to_checksum_address
from eth_utils.crypto import keccak
from solders.pubkey import Pubkey

from keysafe.chains.base58 import base58_decode
from keysafe.chains.hd import (
    HARDENED,
    bip32_derive,
    slip10_ed25519_derive,
    slip10_ed25519_public,
)
from keysafe.crypto.secret import SecretBytes

__all__ = [
    "EVM_PATH",
    "SOLANA_PATH",
    "derive_evm",
    "derive_solana",
    "evm_address_from_private",
    "evm_address_from_public",
    "is_evm_address",
    "is_solana_address",
    "parse_evm_private_key",
    "parse_solana_private_key",
    "solana_address_from_seed",
    "to_checksum",
]

EVM_PATH = "m/44'/60'/0'/0/{index}"
SOLANA_PATH = "m/44'/501'/{index}'/0'"

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX_KEY = re.compile(r"(?:0[xX])?[0-9a-fA-F]{64}")
_MAX_KEY_TEXT = 1024  # longer than any accepted key format (a 64-int JSON array is < 300 chars)


def _raw(key: SecretBytes | bytes | bytearray) -> bytes | bytearray:
    return key.reveal() if isinstance(key, SecretBytes) else key


def _check_index(index: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < HARDENED:
        raise ValueError("account index must be an int in 0..2^31-1")


# --------------------------------------------------------------------------------------------
# EVM


def evm_address_from_public(pub: bytes) -> str:
    """EIP-55 address of a secp256k1 public key (33-byte compressed, 65-byte or 64-byte raw)."""
    raw = bytes(pub)
    if len(raw) == 64:
        raw = b"\x04" + raw
    if len(raw) not in (33, 65):
        raise ValueError("public key must be 33 (compressed), 65 or 64 bytes")
    try:
        point = PublicKey(raw)
    except ValueError:
        raise ValueError("public key is not a valid secp256k1 point") from None
    uncompressed = point.format(compressed=False)
    return _eth_to_checksum_address(keccak(uncompressed[1:])[-20:])


def evm_address_from_private(key: SecretBytes | bytes | bytearray) -> str:
    """EIP-55 address of a 32-byte secp256k1 private key."""
    raw = _raw(key)
    if len(raw) != 32:
        raise ValueError("EVM private key must be 32 bytes")
    try:
        pub = PrivateKey(bytes(raw)).public_key
    except ValueError:
        raise ValueError("EVM private key is out of range for secp256k1") from None
    return evm_address_from_public(pub.format(compressed=False))


def is_evm_address(s: object) -> bool:
    """True for "0x" + 40 hex digits that are all lower case, all upper case, or valid EIP-55."""
    if not isinstance(s, str) or _HEX_ADDRESS.fullmatch(s) is None:
        return False
    body = s[2:]
    if body == body.lower() or body == body.upper():
        return True
    return _eth_to_checksum_address(s) == s


def to_checksum(s: str) -> str:
    """EIP-55 form of an address. Mixed-case input must already carry a valid checksum."""
    if not is_evm_address(s):
        raise ValueError(
            "not an EVM address: expected 0x followed by 40 hex digits, "
            "with a valid EIP-55 checksum if mixed case"
        )
    return _eth_to_checksum_address(s)


def checksum_or_none(value: object) -> str | None:
    """EIP-55 form of `value`, or None when it is not an EVM address string (as `to_checksum`)."""
    if isinstance(value, str) and is_evm_address(value):
        return _eth_to_checksum_address(value)
    return None


def derive_evm(seed: bytes | bytearray, index: int) -> tuple[SecretBytes, str]:
    """MetaMask-compatible account `index`: (32-byte private key, EIP-55 address)."""
    _check_index(index)
    xk = bip32_derive(seed, EVM_PATH.format(index=index))
    return xk.key, evm_address_from_private(xk.key)


def parse_evm_private_key(text: str) -> SecretBytes:
    """Parse a hex private key (64 hex digits, optional 0x) as MetaMask exports it."""
    if not isinstance(text, str):
        raise ValueError("EVM private key must be given as a string")
    stripped = text.strip()
    if len(stripped) > _MAX_KEY_TEXT or _HEX_KEY.fullmatch(stripped) is None:
        raise ValueError(
            "EVM private key must be 64 hex digits (32 bytes), with or without a 0x prefix"
        )
    if stripped[:2] in ("0x", "0X"):
        stripped = stripped[2:]
    key = bytearray.fromhex(stripped)
    if not 0 < int.from_bytes(key, "big") < GROUP_ORDER_INT:
        key[:] = bytes(len(key))
        raise ValueError("EVM private key is out of range for secp256k1 (zero or >= n)")
    return SecretBytes.adopt(key)


# --------------------------------------------------------------------------------------------
# Solana


def solana_address_from_seed(seed32: SecretBytes | bytes | bytearray) -> str:
    """Base58 address of the Ed25519 key whose 32-byte private seed is given."""
    return str(Pubkey(slip10_ed25519_public(seed32)))


def is_solana_address(s: object) -> bool:
    """True when `s` is Base58 for exactly 32 bytes (on-curve or not: PDAs are addresses too)."""
    if not isinstance(s, str) or not 32 <= len(s) <= 44:
        return False
    try:
        return len(base58_decode(s)) == 32
    except ValueError:
        return False


def derive_solana(seed: bytes | bytearray, index: int) -> tuple[SecretBytes, str]:
    """Phantom-compatible account `index`: (32-byte Ed25519 private seed, Base58 address)."""
    _check_index(index)
    xk = slip10_ed25519_derive(seed, SOLANA_PATH.format(index=index))
    return xk.key, solana_address_from_seed(xk.key)


_SOLANA_FORMATS = (
    "a Base58 64-byte keypair (as Phantom exports it), a JSON array of 64 numbers "
    "(a solana-keygen file), or 64 hex digits (a 32-byte seed)"
)


def _seed_from_keypair(keypair: bytearray) -> SecretBytes:
    """Split a 64-byte secret||public keypair, checking the public half. Wipes `keypair`."""
    try:
        seed = keypair[:32]
        expected = slip10_ed25519_public(seed)
        if not hmac.compare_digest(expected, bytes(keypair[32:])):
            seed[:] = bytes(32)
            raise ValueError(
                "Solana keypair is inconsistent: its public half does not match its secret half"
            )
        return SecretBytes.adopt(seed)
    finally:
        keypair[:] = bytes(len(keypair))


_NOT_JSON = object()


def _parse_json_keypair(text: str) -> bytearray:
    error = ValueError("Solana key JSON must be an array of 64 integers in 0..255")
    values: object = _NOT_JSON
    # Raise outside any handler: a JSONDecodeError holds the whole input in `.doc`, and would
    # otherwise ride along as `__context__`.
    with contextlib.suppress(ValueError):
        values = json.loads(text)
    if not isinstance(values, list) or len(values) != 64:
        raise error
    out = bytearray()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            out[:] = bytes(len(out))
            raise error
        out.append(value)
    return out


def parse_solana_private_key(text: str) -> SecretBytes:
    """Parse an imported Solana private key and return its 32-byte Ed25519 seed.

    Accepts a Base58 64-byte keypair (Phantom's export), a JSON array of 64 ints (solana-keygen's
    file format) or a 32-byte seed as 64 hex digits (optional 0x). For keypairs the public half
    must match the secret half.
    """
    if not isinstance(text, str):
        raise ValueError("Solana private key must be given as a string")
    stripped = text.strip()
    if len(stripped) > _MAX_KEY_TEXT:
        raise ValueError(f"Solana private key is too long; expected {_SOLANA_FORMATS}")
    if stripped.startswith("["):
        return _seed_from_keypair(_parse_json_keypair(stripped))
    if _HEX_KEY.fullmatch(stripped) is not None:
        if stripped[:2] in ("0x", "0X"):
            stripped = stripped[2:]
        return SecretBytes.adopt(bytearray.fromhex(stripped))
    try:
        decoded = base58_decode(stripped)
    except ValueError:
        raise ValueError(
            f"Solana private key is not recognised; expected {_SOLANA_FORMATS}"
        ) from None
    if len(decoded) == 64:
        return _seed_from_keypair(decoded)
    length = len(decoded)
    decoded[:] = bytes(length)
    if length == 32:
        raise ValueError(
            "this Base58 value is 32 bytes, which is the size of a Solana address (public key), "
            f"not a private key; expected {_SOLANA_FORMATS}"
        )
    raise ValueError(f"Solana private key decodes to the wrong length; expected {_SOLANA_FORMATS}")
