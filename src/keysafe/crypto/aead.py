"""Hazmat: XChaCha20-Poly1305 (IETF variant) over libsodium via PyNaCl.

The caller chooses the nonce and the associated data; misuse is easy here, so only recipes
(`vault/records.py`, `vault/hierarchy.py`, `vault/backup.py`) call this module. Every decryption
failure raises one bare `DecryptionError`: which byte was wrong is an oracle, not a message.
"""

from __future__ import annotations

import os
from typing import Final

from nacl import bindings
from nacl.exceptions import CryptoError

KEY_SIZE: Final = bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES  # 32
NONCE_SIZE: Final = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
TAG_SIZE: Final = bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16


class DecryptionError(Exception):
    """The ciphertext, tag, key, nonce or associated data is wrong. Deliberately vague."""

    def __init__(self) -> None:
        super().__init__("decryption failed")


def new_nonce() -> bytes:
    # 192-bit random nonces: collisions are negligible, so no counter state is needed.
    return os.urandom(NONCE_SIZE)


def new_key() -> bytearray:
    return bytearray(os.urandom(KEY_SIZE))


def _check(key: bytes | bytearray, nonce: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"XChaCha20-Poly1305 key must be {KEY_SIZE} bytes")
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"XChaCha20-Poly1305 nonce must be {NONCE_SIZE} bytes")


def encrypt(
    key: bytes | bytearray, nonce: bytes, plaintext: bytes | bytearray, aad: bytes
) -> bytes:
    """Return ciphertext ‖ tag."""
    _check(key, nonce)
    # libsodium takes bytes; the copy of the key it gets is short-lived (best-effort wiping).
    return bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        bytes(plaintext), aad, nonce, bytes(key)
    )


def decrypt(key: bytes | bytearray, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytearray:
    """Return the plaintext as a bytearray the caller wipes; raise DecryptionError on any fault."""
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE or len(ciphertext) < TAG_SIZE:
        raise DecryptionError()
    try:
        plain = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, aad, nonce, bytes(key)
        )
    except CryptoError:
        raise DecryptionError() from None
    return bytearray(plain)
