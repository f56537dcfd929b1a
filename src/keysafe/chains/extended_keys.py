"""BIP-32 extended keys as strings: xprv/xpub (mainnet) and tprv/tpub (testnet).

A serialized key is 78 bytes in Base58Check: version (4), depth (1), parent fingerprint (4),
child number (4), chain code (32) and the key (33: 0x00 ‖ secret, or a compressed point).
Parsing rejects everything BIP-32 test vector 5 lists, and error messages never quote the input,
which may be a secret.
"""

from __future__ import annotations

import logging
from typing import Final

from coincurve import PublicKey

from keysafe.chains._buffers import wipe
from keysafe.chains.base58 import base58check_decode, base58check_encode
from keysafe.chains.hd import (
    ExtendedPrivateKey,
    ExtendedPublicKey,
    bip32_neuter,
    is_valid_secp256k1_secret,
)
from keysafe.crypto.secret import SecretBytes

__all__ = ["bip32_parse_extended_key", "bip32_serialize_private", "bip32_serialize_public"]

logger = logging.getLogger(__name__)

# BIP-32 serialization version bytes.
_XPRV: Final = bytes.fromhex("0488ade4")
_XPUB: Final = bytes.fromhex("0488b21e")
_TPRV: Final = bytes.fromhex("04358394")
_TPUB: Final = bytes.fromhex("043587cf")
_SERIALIZED_LEN: Final = 78
_MAX_EXTENDED_KEY_CHARS: Final = 120  # 82 bytes are 111 or 112 Base58 characters


def _serialize(
    version: bytes, depth: int, fingerprint: bytes, child: int, chain: bytes, key: bytearray
) -> str:
    payload = bytearray(version)
    payload.append(depth)
    payload += fingerprint
    payload += child.to_bytes(4, "big")
    payload += chain
    payload += key
    try:
        return base58check_encode(payload)
    finally:
        wipe(payload)


def bip32_serialize_private(xk: ExtendedPrivateKey, *, mainnet: bool = True) -> str:
    """Base58Check xprv (or tprv with mainnet=False). The result is a secret."""
    key = bytearray(b"\0")
    key += xk.key.reveal()
    try:
        return _serialize(
            _XPRV if mainnet else _TPRV,
            xk.depth,
            xk.parent_fingerprint,
            xk.child_number,
            xk.chain_code,
            key,
        )
    finally:
        wipe(key)


def bip32_serialize_public(
    xk: ExtendedPrivateKey | ExtendedPublicKey, *, mainnet: bool = True
) -> str:
    """Base58Check xpub (or tpub with mainnet=False)."""
    pub = xk if isinstance(xk, ExtendedPublicKey) else bip32_neuter(xk)
    return _serialize(
        _XPUB if mainnet else _TPUB,
        pub.depth,
        pub.parent_fingerprint,
        pub.child_number,
        pub.chain_code,
        bytearray(pub.key),
    )


def bip32_parse_extended_key(text: str) -> ExtendedPrivateKey | ExtendedPublicKey:
    """Parse and validate an xprv/xpub/tprv/tpub string.

    Rejects everything BIP-32 test vector 5 lists: bad checksum, unknown version, version and
    key-prefix mismatch, zero depth with non-zero parent fingerprint or index, a private key
    outside 1..n-1, and a public key that is not a point on the curve. Error messages never
    quote the input, which may be a secret.

    Raises:
        ValueError: any of the above (the message says which, without the input).
    """
    raw = _decode(text)
    try:
        version = bytes(raw[0:4])
        depth = raw[4]
        fingerprint = bytes(raw[5:9])
        child_number = int.from_bytes(raw[9:13], "big")
        chain_code = bytes(raw[13:45])
        key = raw[45:78]
        try:
            private = _is_private(version)
            if depth == 0 and fingerprint != b"\0\0\0\0":
                raise ValueError("extended key has zero depth but a non-zero parent fingerprint")
            if depth == 0 and child_number != 0:
                raise ValueError("extended key has zero depth but a non-zero child index")
            build = _private_key if private else _public_key
            return build(key, chain_code, depth, fingerprint, child_number)
        finally:
            wipe(key)
    finally:
        wipe(raw)


def _decode(text: str) -> bytearray:
    """The 78 serialized bytes of `text` (the caller wipes them)."""
    if not isinstance(text, str):
        raise ValueError("extended key must be a string")
    text = text.strip()
    if len(text) > _MAX_EXTENDED_KEY_CHARS:
        raise ValueError("extended key is too long")
    try:
        raw = base58check_decode(text)
    except ValueError as exc:
        raise ValueError(f"extended key is malformed: {exc}") from None
    if len(raw) != _SERIALIZED_LEN:
        wipe(raw)
        raise ValueError(f"extended key must decode to {_SERIALIZED_LEN} bytes")
    return raw


def _is_private(version: bytes) -> bool:
    if version in (_XPRV, _TPRV):
        return True
    if version in (_XPUB, _TPUB):
        return False
    raise ValueError("unknown extended key version (expected xprv, xpub, tprv, tpub)")


def _private_key(
    key: bytearray, chain_code: bytes, depth: int, fingerprint: bytes, child_number: int
) -> ExtendedPrivateKey:
    if key[0] != 0:
        raise ValueError("extended private key version with a key that does not start with 0x00")
    secret = key[1:]
    if not is_valid_secp256k1_secret(secret):
        wipe(secret)
        raise ValueError("extended private key is not in 1..n-1")
    return ExtendedPrivateKey(
        key=SecretBytes.adopt(secret),
        chain_code=chain_code,
        depth=depth,
        parent_fingerprint=fingerprint,
        child_number=child_number,
    )


def _public_key(
    key: bytearray, chain_code: bytes, depth: int, fingerprint: bytes, child_number: int
) -> ExtendedPublicKey:
    if key[0] not in (2, 3):
        raise ValueError(
            "extended public key version with a key that is not a compressed point "
            "(prefix must be 02 or 03)"
        )
    pub = bytes(key)
    try:
        PublicKey(pub)
    except ValueError:
        raise ValueError("extended public key is not a valid secp256k1 point") from None
    return ExtendedPublicKey(
        key=pub,
        chain_code=chain_code,
        depth=depth,
        parent_fingerprint=fingerprint,
        child_number=child_number,
    )
