"""The key hierarchy: phrase entropy → master key and vault id; wraps bind what they wrap."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from keysafe.crypto import aead
from keysafe.crypto.kdf import Argon2Params
from keysafe.crypto.secret import SecretBytes
from keysafe.testing import CHEAP_KDF
from keysafe.vault import hierarchy

ENTROPY = bytes(range(32))
OTHER_ENTROPY = bytes(range(1, 33))
PASSPHRASE = b"correct horse battery staple"


def _master(entropy: bytes = ENTROPY) -> SecretBytes:
    return hierarchy.master_from_entropy(entropy)


def test_master_from_entropy_same_entropy_gives_same_master_and_vault_id() -> None:
    a, b = _master(), _master()
    assert a == b
    assert len(a) == 32
    assert hierarchy.vault_id_for(a) == hierarchy.vault_id_for(b)


def test_master_from_entropy_different_entropy_gives_different_master_and_vault_id() -> None:
    a, b = _master(), _master(OTHER_ENTROPY)
    assert a != b
    assert hierarchy.vault_id_for(a) != hierarchy.vault_id_for(b)


def test_master_from_entropy_is_not_the_entropy() -> None:
    assert bytes(_master().reveal()) != ENTROPY


def test_vault_id_is_32_hex_and_not_a_prefix_of_the_master() -> None:
    master = _master()
    vid = hierarchy.vault_id_for(master)
    assert len(vid) == 32
    int(vid, 16)
    assert vid not in bytes(master.reveal()).hex()


def test_subkeys_differ_by_purpose_and_from_the_master() -> None:
    master = _master()
    audit_key, backup_key = (
        hierarchy.subkey(master, "audit-hmac"),
        hierarchy.subkey(master, "backup"),
    )
    assert audit_key != backup_key
    assert master not in (audit_key, backup_key)
    assert hierarchy.subkey(master, "audit-hmac") == audit_key


# -- master key wrap ---------------------------------------------------------------------------


def test_wrap_master_then_unwrap_with_right_passphrase_returns_master() -> None:
    master = _master()
    vid = hierarchy.vault_id_for(master)
    wrapped = hierarchy.wrap_master(master, SecretBytes(PASSPHRASE), vid, CHEAP_KDF)
    assert bytes(master.reveal()) not in wrapped.ciphertext
    assert hierarchy.unwrap_master(wrapped, SecretBytes(PASSPHRASE), vid) == master


def test_wrap_master_twice_uses_fresh_salt_and_nonce() -> None:
    master = _master()
    vid = hierarchy.vault_id_for(master)
    a = hierarchy.wrap_master(master, SecretBytes(PASSPHRASE), vid, CHEAP_KDF)
    b = hierarchy.wrap_master(master, SecretBytes(PASSPHRASE), vid, CHEAP_KDF)
    assert a.salt != b.salt
    assert a.nonce != b.nonce
    assert a.ciphertext != b.ciphertext


def test_unwrap_master_wrong_passphrase_raises_decryption_error() -> None:
    master = _master()
    vid = hierarchy.vault_id_for(master)
    wrapped = hierarchy.wrap_master(master, SecretBytes(PASSPHRASE), vid, CHEAP_KDF)
    with pytest.raises(aead.DecryptionError):
        hierarchy.unwrap_master(wrapped, SecretBytes(b"correct horse battery stapler"), vid)


def test_unwrap_master_other_vault_id_raises_decryption_error() -> None:
    master = _master()
    vid = hierarchy.vault_id_for(master)
    wrapped = hierarchy.wrap_master(master, SecretBytes(PASSPHRASE), vid, CHEAP_KDF)
    other_vid = hierarchy.vault_id_for(_master(OTHER_ENTROPY))
    with pytest.raises(aead.DecryptionError):
        hierarchy.unwrap_master(wrapped, SecretBytes(PASSPHRASE), other_vid)


def _params_blind_kdf(
    passphrase: bytes | bytearray, salt: bytes, params: Argon2Params
) -> bytearray:
    """A stand-in KDF that ignores the cost parameters, so only the AAD can notice them."""
    return bytearray(hashlib.sha256(bytes(passphrase) + salt).digest())


@pytest.mark.parametrize(
    "edited",
    [
        dataclasses.replace(CHEAP_KDF, memory_kib=2048),
        dataclasses.replace(CHEAP_KDF, time_cost=2),
        dataclasses.replace(CHEAP_KDF, parallelism=2),
    ],
    ids=["memory changed", "time cost changed", "parallelism changed"],
)
def test_unwrap_master_edited_kdf_params_raise_decryption_error(
    monkeypatch: pytest.MonkeyPatch, edited: Argon2Params
) -> None:
    # With a KDF that ignores the parameters the key-encryption key is the same whatever the
    # header says, so a failure here proves the parameters are bound into the AAD.
    monkeypatch.setattr(hierarchy, "argon2id", _params_blind_kdf)
    master = _master()
    vid = hierarchy.vault_id_for(master)
    wrapped = hierarchy.wrap_master(master, SecretBytes(PASSPHRASE), vid, CHEAP_KDF)
    assert hierarchy.unwrap_master(wrapped, SecretBytes(PASSPHRASE), vid) == master
    with pytest.raises(aead.DecryptionError):
        hierarchy.unwrap_master(
            dataclasses.replace(wrapped, params=edited), SecretBytes(PASSPHRASE), vid
        )


# -- epoch key wrap ----------------------------------------------------------------------------


def _wrapped_epoch(number: int = 1) -> tuple[SecretBytes, str, SecretBytes, bytes, bytes]:
    master = _master()
    vid = hierarchy.vault_id_for(master)
    key = SecretBytes.adopt(aead.new_key())
    nonce, wrapped = hierarchy.wrap_epoch_key(master, vid, number, key)
    return master, vid, key, nonce, wrapped


def test_wrap_epoch_key_then_unwrap_returns_key() -> None:
    master, vid, key, nonce, wrapped = _wrapped_epoch(1)
    assert hierarchy.unwrap_epoch_key(master, vid, 1, nonce, wrapped) == key


def test_unwrap_epoch_key_other_epoch_number_raises_decryption_error() -> None:
    master, vid, _, nonce, wrapped = _wrapped_epoch(1)
    with pytest.raises(aead.DecryptionError):
        hierarchy.unwrap_epoch_key(master, vid, 2, nonce, wrapped)


def test_unwrap_epoch_key_other_vault_id_raises_decryption_error() -> None:
    master, _, _, nonce, wrapped = _wrapped_epoch(1)
    with pytest.raises(aead.DecryptionError):
        hierarchy.unwrap_epoch_key(master, "0" * 32, 1, nonce, wrapped)


def test_unwrap_epoch_key_other_master_raises_decryption_error() -> None:
    _, vid, _, nonce, wrapped = _wrapped_epoch(1)
    with pytest.raises(aead.DecryptionError):
        hierarchy.unwrap_epoch_key(_master(OTHER_ENTROPY), vid, 1, nonce, wrapped)
