"""The key hierarchy: recovery phrase → master key → epoch keys → data keys.

- master key  = HKDF-SHA256(BIP-39 entropy, info="keysafe/v1/master-key")
- vault id    = HKDF-SHA256(master, info="keysafe/v1/vault-id")[:16], hex: the same phrase always
                rebuilds the same vault id, and the id reveals nothing about the key
- passphrase  → Argon2id(salt) → key-encryption key that wraps the master key (XChaCha20-Poly1305)
- epoch keys  random, wrapped by the master key; data keys wrapped by the current epoch key
- subkeys     HKDF(master, info="keysafe/v1/<purpose>") for the audit HMAC, backups and the
              seals on agents, policies and settings (vault/seals.py)

Every wrap binds what it wraps to the vault and its purpose in the associated data, so a
wrapped key copied into another vault or another slot does not open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final, Literal

from keysafe.crypto import aead, jcs
from keysafe.crypto.kdf import Argon2Params, argon2id, hkdf_sha256
from keysafe.crypto.secret import SecretBytes

SALT_SIZE: Final = 16
Subkey = Literal["audit-hmac", "backup", "state-mac", "relay-sign", "relay-kem"]


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


def wrap_master(
    master: SecretBytes, passphrase: SecretBytes, vault_id: str, params: Argon2Params
) -> WrappedMaster:
    salt = os.urandom(SALT_SIZE)
    with SecretBytes.adopt(argon2id(passphrase.reveal(), salt, params)) as kek:
        nonce = aead.new_nonce()
        ct = aead.encrypt(kek.reveal(), nonce, master.reveal(), _master_aad(vault_id, params))
    return WrappedMaster(salt, nonce, ct, params)


def unwrap_master(wrapped: WrappedMaster, passphrase: SecretBytes, vault_id: str) -> SecretBytes:
    """Raises aead.DecryptionError when the passphrase is wrong (or the header was edited)."""
    with SecretBytes.adopt(argon2id(passphrase.reveal(), wrapped.salt, wrapped.params)) as kek:
        plain = aead.decrypt(
            kek.reveal(), wrapped.nonce, wrapped.ciphertext, _master_aad(vault_id, wrapped.params)
        )
    return SecretBytes.adopt(plain)


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
