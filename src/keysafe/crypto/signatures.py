"""Hazmat: Ed25519 and secp256k1-ECDSA signature checks (and Ed25519 signing) over libraries.

Verification never raises on bad input: anything malformed, out of range or wrong is `False`.
What each check enforces, beyond "the equation holds":

Ed25519 (libsodium via PyNaCl, RFC 8032 with libsodium's strict rules)
    * public key exactly 32 bytes, signature exactly 64 bytes;
    * S canonical (S < L, checked here and again by libsodium), so signatures are not malleable;
    * libsodium also rejects non-canonical and small-order public keys and small-order R, and
      compares R byte for byte (a non-canonical R never verifies).

secp256k1 ECDSA over SHA-256(message) (libsecp256k1 via coincurve)
    * public key compressed (33 bytes, 02/03) or uncompressed (65 bytes, 04); the "hybrid"
      06/07 encodings libsecp256k1 would accept are refused;
    * DER signatures must be strict, minimal DER: they must re-encode to the same bytes
      (no BER lengths, no padding, no trailing data, no negative integers);
    * P1363 signatures are exactly 64 bytes, r ‖ s big-endian;
    * 0 < r < n and 0 < s < n;
    * high S (s > n/2) is accepted and normalised by default, as ECDSA allows. With
      `low_s_only=True` (Bitcoin BIP-62/BIP-146, Ethereum EIP-2) a high-S signature is refused.

No primitive is implemented here: the only arithmetic is range checks against the group orders
and s ↦ n - s.
"""

from __future__ import annotations

import hashlib
from typing import Final

from coincurve import PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

__all__ = [
    "ED25519_PUBLIC_KEY_SIZE",
    "ED25519_SEED_SIZE",
    "ED25519_SIGNATURE_SIZE",
    "SECP256K1_N",
    "sign_ed25519",
    "verify_ed25519",
    "verify_secp256k1_ecdsa_der",
    "verify_secp256k1_ecdsa_p1363",
]

ED25519_PUBLIC_KEY_SIZE: Final = 32
ED25519_SIGNATURE_SIZE: Final = 64
ED25519_SEED_SIZE: Final = 32
# Order of the Ed25519 base point (RFC 8032, section 5.1).
ED25519_L: Final = 2**252 + 27742317777372353535851937790883648493

# Order of the secp256k1 group (SEC 2, section 2.4.1).
SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N: Final = SECP256K1_N // 2
_P1363_SIZE: Final = 64

_BAD_INPUT: Final = (ValueError, TypeError, OverflowError)


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True only if `signature` is a strict, canonical Ed25519 signature of `message`."""
    try:
        if len(public_key) != ED25519_PUBLIC_KEY_SIZE or len(signature) != ED25519_SIGNATURE_SIZE:
            return False
        if int.from_bytes(signature[32:], "little") >= ED25519_L:
            return False
        VerifyKey(bytes(public_key)).verify(bytes(message), bytes(signature))
    except (BadSignatureError, CryptoError, *_BAD_INPUT):
        return False
    return True


def sign_ed25519(seed32: bytes | bytearray, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature (R ‖ S) of `message` under the key from a 32-byte seed.

    Signing is not input validation: a seed of the wrong size raises ValueError.
    """
    if len(seed32) != ED25519_SEED_SIZE:
        raise ValueError(f"Ed25519 seed must be {ED25519_SEED_SIZE} bytes")
    # PyNaCl needs `bytes`, so a short-lived copy of the seed exists (best-effort wiping).
    return SigningKey(bytes(seed32)).sign(bytes(message)).signature


def _secp256k1_public_key(public_key: bytes) -> PublicKey | None:
    n = len(public_key)
    if not ((n == 33 and public_key[0] in (2, 3)) or (n == 65 and public_key[0] == 4)):
        return None
    try:
        return PublicKey(bytes(public_key))
    except _BAD_INPUT:
        return None


def _verify_rs(public_key: bytes, message: bytes, r: int, s: int, *, low_s_only: bool) -> bool:
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        return False
    if s > _HALF_N:
        if low_s_only:
            return False
        # libsecp256k1 verifies low-S only; (r, s) and (r, n - s) are the same ECDSA signature.
        s = SECP256K1_N - s
    key = _secp256k1_public_key(public_key)
    if key is None:
        return False
    digest = hashlib.sha256(message).digest()
    return key.verify(encode_dss_signature(r, s), digest, hasher=None)


def verify_secp256k1_ecdsa_der(
    public_key: bytes, message: bytes, signature_der: bytes, *, low_s_only: bool = False
) -> bool:
    """True only if `signature_der` is a strict-DER ECDSA signature of SHA-256(`message`)."""
    try:
        der = bytes(signature_der)
        r, s = decode_dss_signature(der)
        # `cryptography` already parses strict DER; the round trip pins "one encoding per
        # signature" down here in case a future parser is laxer.
        if encode_dss_signature(r, s) != der:
            return False
        return _verify_rs(public_key, bytes(message), r, s, low_s_only=low_s_only)
    except _BAD_INPUT:
        return False


def verify_secp256k1_ecdsa_p1363(
    public_key: bytes, message: bytes, sig_rs64: bytes, *, low_s_only: bool = False
) -> bool:
    """True only if `sig_rs64` (r ‖ s, 32 bytes each) is an ECDSA signature of SHA-256(message)."""
    try:
        if len(sig_rs64) != _P1363_SIZE:
            return False
        r = int.from_bytes(sig_rs64[:32], "big")
        s = int.from_bytes(sig_rs64[32:], "big")
        return _verify_rs(public_key, bytes(message), r, s, low_s_only=low_s_only)
    except _BAD_INPUT:
        return False
