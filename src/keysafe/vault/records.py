"""The record recipe: envelope encryption with everything about the row bound into the AAD.

    data key  = 32 random bytes, fresh for every write
    ciphertext = XChaCha20-Poly1305(data key, nonce, plaintext, AAD)
    wrapped    = XChaCha20-Poly1305(epoch key, dek_nonce, data key, AAD)
    AAD        = JCS({vault, record, kind, name, class, epoch, version, meta})

Copying one row's ciphertext onto another, moving it to another vault, renaming it, changing its
class, rolling back its version or editing its public `meta` (hosts, address) all change the AAD,
so opening fails with INTEGRITY_ERROR instead of returning wrong plaintext.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from keysafe.crypto import aead, jcs
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError


@dataclass(frozen=True, slots=True)
class RecordRef:
    id: str
    kind: str
    name: str
    data_class: str
    version: int
    meta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordInfo:
    """A record's public face: everything but the secret."""

    id: str
    kind: str
    name: str
    data_class: str
    epoch: int
    version: int
    meta: dict[str, Any]
    created_at: str
    updated_at: str

    @property
    def ref(self) -> RecordRef:
        return RecordRef(self.id, self.kind, self.name, self.data_class, self.version, self.meta)


def info_from_row(row: Any) -> RecordInfo:
    """A `records` row's public face, its `meta` parsed.

    Raises:
        IntegrityError: `meta` is not a JSON object (the row was edited).
    """
    try:
        meta = json.loads(row.meta)
        if not isinstance(meta, dict):
            raise ValueError("meta is not an object")
    except ValueError:
        raise integrity_failure(
            RecordRef(row.id, row.kind, row.name, row.data_class, row.version, {})
        ) from None
    return RecordInfo(
        row.id,
        row.kind,
        row.name,
        row.data_class,
        row.epoch,
        row.version,
        meta,
        row.created_at,
        row.updated_at,
    )


@dataclass(frozen=True, slots=True)
class Sealed:
    epoch: int
    dek_nonce: bytes
    dek_wrapped: bytes
    nonce: bytes
    ciphertext: bytes


def _aad(vault_id: str, ref: RecordRef, epoch: int) -> bytes:
    return jcs.dumps(
        {
            "vault": vault_id,
            "record": ref.id,
            "kind": ref.kind,
            "name": ref.name,
            "class": ref.data_class,
            "epoch": epoch,
            "version": ref.version,
            "meta": ref.meta,
        }
    )


def seal(
    vault_id: str, epoch: int, epoch_key: SecretBytes, ref: RecordRef, plaintext: SecretBytes
) -> Sealed:
    aad = _aad(vault_id, ref, epoch)
    with SecretBytes.adopt(aead.new_key()) as dek:
        nonce = aead.new_nonce()
        ciphertext = aead.encrypt(dek.reveal(), nonce, plaintext.reveal(), aad)
        dek_nonce = aead.new_nonce()
        dek_wrapped = aead.encrypt(epoch_key.reveal(), dek_nonce, dek.reveal(), aad)
    return Sealed(epoch, dek_nonce, dek_wrapped, nonce, ciphertext)


def open_sealed(
    vault_id: str, epoch_key: SecretBytes, ref: RecordRef, sealed: Sealed
) -> SecretBytes:
    aad = _aad(vault_id, ref, sealed.epoch)
    try:
        with SecretBytes.adopt(
            aead.decrypt(epoch_key.reveal(), sealed.dek_nonce, sealed.dek_wrapped, aad)
        ) as dek:
            plain = aead.decrypt(dek.reveal(), sealed.nonce, sealed.ciphertext, aad)
    except aead.DecryptionError:
        raise integrity_failure(ref) from None
    return SecretBytes.adopt(plain)


def integrity_failure(ref: RecordRef) -> IntegrityError:
    return IntegrityError(
        f"The {ref.kind} '{ref.name}' (record {ref.id}) failed its integrity check: its "
        "ciphertext or metadata was altered, or copied from another row or vault. "
        "Nothing was decrypted.",
        next_step=(
            "restore the vault from a backup (`keysafe backup restore FILE`); if you did not "
            "edit the database yourself, treat this machine as tampered with."
        ),
        record=ref.id,
        kind=ref.kind,
        name=ref.name,
    )
