"""Base58 and Base58Check (Bitcoin alphabet): an encoding, not a cryptographic primitive.

Used for Solana addresses and keys and for BIP-32 extended keys. Errors never quote the input,
which may be a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from keysafe.chains._buffers import wipe

__all__ = ["base58_decode", "base58_encode", "base58check_decode", "base58check_encode"]

logger = logging.getLogger(__name__)

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_VALUES = {ch: value for value, ch in enumerate(_B58_ALPHABET)}
_MAX_B58_CHARS = 1024


def base58_encode(data: bytes | bytearray) -> str:
    """Bitcoin-alphabet Base58; each leading zero byte becomes a leading '1'."""
    zeros = len(data) - len(bytes(data).lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(_B58_ALPHABET[remainder])
    return "1" * zeros + "".join(reversed(digits))


def base58_decode(text: str) -> bytearray:
    """Decode Bitcoin-alphabet Base58. Errors never quote the input (it may be a secret)."""
    if not isinstance(text, str):
        raise ValueError("Base58 input must be a string")
    if len(text) > _MAX_B58_CHARS:
        raise ValueError("Base58 input is too long")
    number = 0
    for ch in text:
        value = _B58_VALUES.get(ch)
        if value is None:
            raise ValueError("not valid Base58 (a character outside the Base58 alphabet)")
        number = number * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    out = bytearray(zeros)
    out += number.to_bytes((number.bit_length() + 7) // 8, "big")
    return out


def _checksum(payload: bytes | bytearray) -> bytes:
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]


def base58check_encode(payload: bytes | bytearray) -> str:
    """Base58 of `payload` followed by its 4-byte double-SHA-256 checksum."""
    buf = bytearray(payload)
    buf += _checksum(payload)
    try:
        return base58_encode(buf)
    finally:
        wipe(buf)


def base58check_decode(text: str) -> bytearray:
    """Decode Base58Check and verify its 4-byte double-SHA-256 checksum."""
    raw = base58_decode(text)
    try:
        if len(raw) < 4:
            raise ValueError("Base58Check data is too short to hold a checksum")
        payload = raw[:-4]
        if not hmac.compare_digest(_checksum(payload), bytes(raw[-4:])):
            wipe(payload)
            raise ValueError("Base58Check checksum does not match (mistyped or truncated?)")
        return payload
    finally:
        wipe(raw)
