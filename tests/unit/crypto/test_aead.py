"""XChaCha20-Poly1305 against draft-irtf-cfrg-xchacha-03 (A.3.1) and Wycheproof."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from keysafe.crypto.aead import (
    KEY_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    DecryptionError,
    decrypt,
    encrypt,
)
from tests.vectors import load_json

DRAFT = load_json("xchacha20/draft-irtf-cfrg-xchacha-03.json")
A31 = {k: bytes.fromhex(v) for k, v in DRAFT["aead_xchacha20_poly1305"].items()}
KEY, IV, PT, AAD = A31["key"], A31["iv"], A31["plaintext"], A31["aad"]
CT_TAG = A31["ciphertext"] + A31["tag"]


def _flip(data: bytes, i: int) -> bytes:
    out = bytearray(data)
    out[i] ^= 0x01
    return bytes(out)


def test_sizes() -> None:
    assert (KEY_SIZE, NONCE_SIZE, TAG_SIZE) == (32, 24, 16)
    assert len(A31["tag"]) == TAG_SIZE


def test_draft_a31_encrypt() -> None:
    assert encrypt(KEY, IV, PT, AAD) == CT_TAG


def test_draft_a31_decrypt_round_trip() -> None:
    plain = decrypt(KEY, IV, CT_TAG, AAD)
    assert isinstance(plain, bytearray)
    assert plain == PT
    # bytearray inputs (how keys are held in the vault) give the same answer
    assert encrypt(bytearray(KEY), IV, bytearray(PT), AAD) == CT_TAG
    assert decrypt(bytearray(KEY), IV, CT_TAG, AAD) == PT


def test_draft_a31_every_flipped_ciphertext_or_tag_byte_rejected() -> None:
    for i in range(len(CT_TAG)):
        with pytest.raises(DecryptionError):
            decrypt(KEY, IV, _flip(CT_TAG, i), AAD)


def test_draft_a31_every_flipped_aad_byte_rejected() -> None:
    for i in range(len(AAD)):
        with pytest.raises(DecryptionError):
            decrypt(KEY, IV, CT_TAG, _flip(AAD, i))
    with pytest.raises(DecryptionError):
        decrypt(KEY, IV, CT_TAG, b"")
    with pytest.raises(DecryptionError):
        decrypt(KEY, IV, CT_TAG, AAD + b"\x00")


def test_draft_a31_wrong_key_or_nonce_rejected() -> None:
    with pytest.raises(DecryptionError):
        decrypt(_flip(KEY, 0), IV, CT_TAG, AAD)
    # the last 8 nonce bytes go to the inner ChaCha20 nonce, the first 16 to HChaCha20
    for i in (0, 15, 16, 23):
        with pytest.raises(DecryptionError):
            decrypt(KEY, _flip(IV, i), CT_TAG, AAD)


def test_decrypt_truncated_rejected() -> None:
    with pytest.raises(DecryptionError):
        decrypt(KEY, IV, CT_TAG[:-1], AAD)
    with pytest.raises(DecryptionError):
        decrypt(KEY, IV, CT_TAG[: TAG_SIZE - 1], AAD)
    with pytest.raises(DecryptionError):
        decrypt(KEY, IV, b"", AAD)


def _hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 from `cryptography`'s ChaCha20 block, for an independent cross-check only.

    One ChaCha20 block is rounds(state) + state (word-wise, mod 2^32); `cryptography` takes the
    16-byte HChaCha20 input as its counter ‖ nonce (state words 12-15). HChaCha20 outputs words
    0-3 and 12-15 of rounds(state), so subtract the known state words back out.
    """
    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor().update(bytes(64))
    words = [int.from_bytes(block[4 * i : 4 * i + 4], "little") for i in range(16)]
    constants = [int.from_bytes(b"expand 32-byte k"[4 * i : 4 * i + 4], "little") for i in range(4)]
    nonce_words = [int.from_bytes(nonce16[4 * i : 4 * i + 4], "little") for i in range(4)]
    out = [(w - c) % 2**32 for w, c in zip(words[0:4], constants, strict=True)]
    out += [(w - n) % 2**32 for w, n in zip(words[12:16], nonce_words, strict=True)]
    return b"".join(w.to_bytes(4, "little") for w in out)


def test_draft_hchacha20_subkey() -> None:
    vec = DRAFT["hchacha20"]
    subkey = _hchacha20(bytes.fromhex(vec["key"]), bytes.fromhex(vec["nonce"]))
    assert subkey == bytes.fromhex(vec["subkey"])


def test_draft_a31_equals_chacha20_poly1305_sub_call() -> None:
    # XChaCha20-Poly1305(k, n) = ChaCha20-Poly1305(HChaCha20(k, n[:16]), 0^4 ‖ n[16:]):
    # libsodium's output checked against an independent implementation (OpenSSL).
    fixed = A31["fixed_common_part_32bit"]
    inner = ChaCha20Poly1305(_hchacha20(KEY, IV[:16]))
    assert inner.encrypt(fixed + IV[16:], PT, AAD) == CT_TAG
    assert encrypt(KEY, IV, b"other", b"ad") == inner.encrypt(fixed + IV[16:], b"other", b"ad")


@pytest.mark.parametrize("key_size", [0, 16, 31, 33, 64])
def test_wrong_key_size_rejected(key_size: int) -> None:
    with pytest.raises(ValueError, match="key"):
        encrypt(bytes(key_size), IV, PT, AAD)
    with pytest.raises(DecryptionError):
        decrypt(bytes(key_size), IV, CT_TAG, AAD)


@pytest.mark.parametrize("nonce_size", [0, 8, 12, 16, 23, 25, 32])
def test_wrong_nonce_size_rejected(nonce_size: int) -> None:
    with pytest.raises(ValueError, match="nonce"):
        encrypt(KEY, bytes(nonce_size), PT, AAD)
    with pytest.raises(DecryptionError):
        decrypt(KEY, bytes(nonce_size), CT_TAG, AAD)


def test_decryption_error_is_vague() -> None:
    with pytest.raises(DecryptionError) as bad_tag:
        decrypt(KEY, IV, _flip(CT_TAG, len(CT_TAG) - 1), AAD)
    with pytest.raises(DecryptionError) as bad_size:
        decrypt(KEY, IV[:12], CT_TAG, AAD)
    assert str(bad_tag.value) == str(bad_size.value) == "decryption failed"


def _wycheproof() -> list[Any]:
    data = load_json("wycheproof/xchacha20_poly1305_test.json")
    assert data["algorithm"] == "XCHACHA20-POLY1305"
    params = [
        pytest.param(
            {k: bytes.fromhex(test[k]) for k in ("key", "iv", "aad", "msg", "ct", "tag")},
            test,
            id=f"tc{test['tcId']}",
        )
        for group in data["testGroups"]
        for test in group["tests"]
    ]
    assert len(params) == data["numberOfTests"]
    return params


@pytest.mark.parametrize(("b", "test"), _wycheproof())
def test_wycheproof(b: dict[str, bytes], test: dict[str, Any]) -> None:
    key, iv, aad, msg, ct_tag = b["key"], b["iv"], b["aad"], b["msg"], b["ct"] + b["tag"]
    if test["result"] == "valid":
        assert encrypt(key, iv, msg, aad) == ct_tag
        assert decrypt(key, iv, ct_tag, aad) == msg
    elif test["result"] == "invalid":
        if len(iv) != NONCE_SIZE:  # InvalidNonceSize cases
            with pytest.raises(ValueError, match="nonce"):
                encrypt(key, iv, msg, aad)
        with pytest.raises(DecryptionError):
            decrypt(key, iv, ct_tag, aad)
    else:  # acceptable: either outcome, but no crash
        assert test["result"] == "acceptable"
        with contextlib.suppress(DecryptionError):
            decrypt(key, iv, ct_tag, aad)
