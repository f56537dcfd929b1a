"""The key hierarchy: recovery phrase → master key → epoch keys → data keys.

- master key  = HKDF-SHA256(BIP-39 entropy, info="keysafe/v1/master-key")
- vault id    = HKDF-SHA256(master, info="keysafe/v1/vault-id")[:16], hex: the same phrase always
                rebuilds the same vault id, and the id reveals nothing about the key
- passphrase  → Argon2id(salt) → key-encryption key that wraps the master key (XChaCha20-Poly1305)
- or a KMS    → a random key-encryption key, wrapped by the KMS (vault/kms/), takes the
              Argon2id key's place for the master key and the passphrase's sealing key; the
              master key's associated data then names the provider and key instead of Argon2id's
              settings, so a header moved to another provider, key or vault does not open
- epoch keys  random, each sealed (HPKE, RFC 9180) to two X25519 public keys: the passphrase's
              (its private half wrapped by the passphrase's key-encryption key, opened only
              while unlocking) and the recovery phrase's (its private half derived from the
              phrase). Not by the master key: an old copy of the database together with the
              current master key opens no epoch key (forward secrecy). Vaults written before
              schema 0009 wrap them by the master key until the phrase is used once.
              Data keys are wrapped by the current epoch key.
- subkeys     HKDF(master, info="keysafe/v1/<purpose>") for the audit HMAC, backups and the
              seals on agents, policies and settings (vault/seals.py)

Every wrap binds what it wraps to the vault and its purpose in the associated data, so a
wrapped key copied into another vault or another slot does not open.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from keysafe.crypto import aead, jcs
from keysafe.crypto.kdf import Argon2Params, argon2id, hkdf_sha256
from keysafe.crypto.secret import SecretBytes

SALT_SIZE: Final = 16
Subkey = Literal["audit-hmac", "backup", "state-mac", "relay-sign", "relay-kem", "owner-login"]


def master_from_entropy(entropy: bytes | bytearray) -> SecretBytes:
    return SecretBytes.adopt(hkdf_sha256(entropy, info=b"keysafe/v1/master-key"))


def vault_id_for(master: SecretBytes) -> str:
    return bytes(hkdf_sha256(master.reveal(), info=b"keysafe/v1/vault-id", length=16)).hex()


def subkey(master: SecretBytes, purpose: Subkey) -> SecretBytes:
    return SecretBytes.adopt(hkdf_sha256(master.reveal(), info=f"keysafe/v1/{purpose}".encode()))


@dataclass(frozen=True, slots=True)
class WrappedMaster:
    salt: bytes
    nonce: bytes
    ciphertext: bytes
    params: Argon2Params


def _master_aad(vault_id: str, params: Argon2Params) -> bytes:
    return jcs.dumps({"purpose": "master-key", "vault": vault_id, "kdf": params.to_dict()})


def _kms_master_aad(vault_id: str, binding: Mapping[str, str]) -> bytes:
    return jcs.dumps({"purpose": "master-key", "vault": vault_id, "kms": dict(binding)})


def wrap_master_for_kms(
    kek: SecretBytes, master: SecretBytes, vault_id: str, binding: Mapping[str, str]
) -> tuple[bytes, bytes]:
    """The master key under a KMS-wrapped key-encryption key: (nonce, ciphertext)."""
    nonce = aead.new_nonce()
    return nonce, aead.encrypt(
        kek.reveal(), nonce, master.reveal(), _kms_master_aad(vault_id, binding)
    )


def unwrap_master_for_kms(
    kek: SecretBytes, nonce: bytes, wrapped: bytes, vault_id: str, binding: Mapping[str, str]
) -> SecretBytes:
    """Raises aead.DecryptionError when the key is not this vault's (or the header was edited)."""
    return SecretBytes.adopt(
        aead.decrypt(kek.reveal(), nonce, wrapped, _kms_master_aad(vault_id, binding))
    )


def new_kek() -> SecretBytes:
    """A random key-encryption key, for a KMS to wrap."""
    return SecretBytes.adopt(aead.new_key())


def derive_kek(passphrase: SecretBytes, salt: bytes, params: Argon2Params) -> SecretBytes:
    """The passphrase's key-encryption key (Argon2id)."""
    return SecretBytes.adopt(argon2id(passphrase.reveal(), salt, params))


def wrap_master_with(
    kek: SecretBytes, salt: bytes, master: SecretBytes, vault_id: str, params: Argon2Params
) -> WrappedMaster:
    nonce = aead.new_nonce()
    ct = aead.encrypt(kek.reveal(), nonce, master.reveal(), _master_aad(vault_id, params))
    return WrappedMaster(salt, nonce, ct, params)


def wrap_master(
    master: SecretBytes, passphrase: SecretBytes, vault_id: str, params: Argon2Params
) -> WrappedMaster:
    salt = os.urandom(SALT_SIZE)
    with derive_kek(passphrase, salt, params) as kek:
        return wrap_master_with(kek, salt, master, vault_id, params)


def unwrap_master_with(kek: SecretBytes, wrapped: WrappedMaster, vault_id: str) -> SecretBytes:
    """Raises aead.DecryptionError when the key is wrong (or the header was edited)."""
    plain = aead.decrypt(
        kek.reveal(), wrapped.nonce, wrapped.ciphertext, _master_aad(vault_id, wrapped.params)
    )
    return SecretBytes.adopt(plain)


def unwrap_master(wrapped: WrappedMaster, passphrase: SecretBytes, vault_id: str) -> SecretBytes:
    """Raises aead.DecryptionError when the passphrase is wrong (or the header was edited)."""
    with derive_kek(passphrase, wrapped.salt, wrapped.params) as kek:
        return unwrap_master_with(kek, wrapped, vault_id)


# -- sealing epoch keys (schema 0009) ----------------------------------------------------------

_SUITE: Final = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


def phrase_seal_key(entropy: bytes | bytearray) -> X25519PrivateKey:
    """The recovery phrase's sealing key: derived from the phrase, never stored."""
    raw = hkdf_sha256(entropy, info=b"keysafe/v1/epoch-seal-phrase")
    try:
        return X25519PrivateKey.from_private_bytes(bytes(raw))
    finally:
        raw[:] = bytes(len(raw))


def new_seal_key() -> X25519PrivateKey:
    """A fresh sealing key for the passphrase (a new one at every passphrase change)."""
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _seal_key_aad(vault_id: str, public: bytes) -> bytes:
    return jcs.dumps({"purpose": "epoch-seal-key", "vault": vault_id, "public": public.hex()})


def wrap_seal_key(kek: SecretBytes, vault_id: str, key: X25519PrivateKey) -> tuple[bytes, bytes]:
    """The passphrase's sealing key, wrapped by the passphrase's key-encryption key."""
    nonce = aead.new_nonce()
    raw = key.private_bytes_raw()
    return nonce, aead.encrypt(kek.reveal(), nonce, raw, _seal_key_aad(vault_id, public_bytes(key)))


def unwrap_seal_key(
    kek: SecretBytes, vault_id: str, public: bytes, nonce: bytes, wrapped: bytes
) -> X25519PrivateKey:
    """Raises aead.DecryptionError when the key is wrong (or the header was edited)."""
    raw = aead.decrypt(kek.reveal(), nonce, wrapped, _seal_key_aad(vault_id, public))
    try:
        return X25519PrivateKey.from_private_bytes(bytes(raw))
    finally:
        raw[:] = bytes(len(raw))


def seal_epoch_key(public: bytes, vault_id: str, number: int, key: SecretBytes) -> bytes:
    """`key` sealed to `public`, bound to this vault and epoch."""
    return _SUITE.encrypt(
        key.reveal(), X25519PublicKey.from_public_bytes(public), info=_epoch_aad(vault_id, number)
    )


def open_epoch_key(
    seal_key: X25519PrivateKey, vault_id: str, number: int, sealed: bytes
) -> SecretBytes:
    """Raises aead.DecryptionError when `sealed` was not sealed to this key as this epoch."""
    try:
        return SecretBytes.adopt(
            bytearray(_SUITE.decrypt(sealed, seal_key, info=_epoch_aad(vault_id, number)))
        )
    except (InvalidTag, ValueError):
        raise aead.DecryptionError from None


def _epoch_aad(vault_id: str, number: int) -> bytes:
    return jcs.dumps({"purpose": "epoch-key", "vault": vault_id, "epoch": number})


def wrap_epoch_key(
    master: SecretBytes, vault_id: str, number: int, key: SecretBytes
) -> tuple[bytes, bytes]:
    nonce = aead.new_nonce()
    return nonce, aead.encrypt(master.reveal(), nonce, key.reveal(), _epoch_aad(vault_id, number))


def unwrap_epoch_key(
    master: SecretBytes, vault_id: str, number: int, nonce: bytes, wrapped: bytes
) -> SecretBytes:
    return SecretBytes.adopt(
        aead.decrypt(master.reveal(), nonce, wrapped, _epoch_aad(vault_id, number))
    )


def _link_key(prev: SecretBytes) -> SecretBytes:
    return SecretBytes.adopt(hkdf_sha256(prev.reveal(), info=b"keysafe/v1/epoch-link"))


def link_epoch_key(
    prev_number: int, prev: SecretBytes, vault_id: str, number: int, key: SecretBytes
) -> bytes:
    """Epoch `number`'s key wrapped under a key derived from epoch `prev_number`'s: whoever holds
    the older key (another server on the database) can open the newer one, never the reverse."""
    nonce = aead.new_nonce()
    with _link_key(prev) as wrap:
        sealed = aead.encrypt(wrap.reveal(), nonce, key.reveal(), _epoch_aad(vault_id, number))
    return prev_number.to_bytes(4, "big") + nonce + sealed


def link_source(link: bytes) -> int:
    """The epoch whose key opens `link`."""
    return int.from_bytes(link[:4], "big")


def open_linked_epoch_key(
    prev: SecretBytes, vault_id: str, number: int, link: bytes
) -> SecretBytes:
    """Raises aead.DecryptionError when `prev` is not the key the link was made under."""
    nonce, sealed = link[4 : 4 + aead.NONCE_SIZE], link[4 + aead.NONCE_SIZE :]
    with _link_key(prev) as wrap:
        return SecretBytes.adopt(
            aead.decrypt(wrap.reveal(), nonce, sealed, _epoch_aad(vault_id, number))
        )


def backup_key_from_epoch(epoch_key: SecretBytes) -> SecretBytes:
    """A backup's key (format 2): from the epoch key current when it was made, so destroying that
    epoch closes the backup to everything but the recovery phrase."""
    return SecretBytes.adopt(hkdf_sha256(epoch_key.reveal(), info=b"keysafe/v1/backup-epoch"))
