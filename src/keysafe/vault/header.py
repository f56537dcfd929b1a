"""The vault header: the one `vault` row that names the vault and holds its wrapped master key.

    vault_id = header.read_vault_id(db)                  # refuses a newer or unknown format
    config = header.kms_config(row)                      # `local`: a passphrase vault
    wrapped = header.wrapped_master(row)                 # a passphrase vault's master key

Rules this module keeps:
- A database holds at most one header; a second `create` on a shared database is refused.
- A header written by a newer keysafe (a higher `format`) is left untouched, never rewritten.
- The master key and the passphrase's sealing key are wrapped either by Argon2id(passphrase)
  or by a random key-encryption key that a KMS wraps (vault/kms/); never both at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import Connection, delete, insert, select, update

from keysafe.audit.record import GENESIS_HASH
from keysafe.crypto import jcs
from keysafe.crypto.kdf import Argon2Params
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import AlreadyExistsError, IntegrityError
from keysafe.store import tables as t
from keysafe.store.db import Database
from keysafe.vault import hierarchy, kms, seals
from keysafe.vault.blobs import BlobConfig
from keysafe.vault.epochs import EpochKeys

FORMAT: Final = 1
_REBUILD: Final = "restore the database from a backup, or rebuild with `keysafe recover`."


def read_vault_id(db: Database) -> str:
    """The id in the database's vault header.

    Raises:
        IntegrityError: there is no header, or its format is newer or unknown.
    """
    with db.read() as conn:
        row = conn.execute(select(t.vault.c.id, t.vault.c.format)).first()
    if row is None:
        raise IntegrityError(
            "The vault database has no vault header (it was never finished or was emptied).",
            next_step="rebuild it with `keysafe recover`, then `keysafe backup restore FILE`.",
        )
    if type(row.format) is int and row.format > FORMAT:
        raise IntegrityError(
            f"This vault was written by a newer keysafe (vault format {row.format}; this "
            f"keysafe reads format {FORMAT}), so it was left untouched.",
            next_step="upgrade keysafe (`pip install -U keysafe`) and run it again.",
        )
    if row.format != FORMAT:
        raise IntegrityError(
            f"The vault header names an unknown vault format ({str(row.format)[:20]!r}).",
            next_step=_REBUILD,
        )
    return str(row.id)


def read_row(db: Database) -> Any:
    """The header row, every column."""
    with db.read() as conn:
        return conn.execute(select(t.vault)).one()


def blob_config(db: Database) -> BlobConfig | None:
    """The blob store the header names for record ciphertext (None: in the database)."""
    with db.read() as conn:
        setting = conn.execute(select(t.vault.c.blobs)).scalar()
    return None if setting is None else BlobConfig.from_json(setting)


def kms_config(row: Any) -> kms.KmsConfig:
    """The provider a header row names; NULL (every vault before schema 0010) is `local`.

    Raises:
        IntegrityError: the header names a provider this keysafe does not know.
    """
    kind = getattr(row, "kms_kind", None)
    if kind is None or kind == kms.KmsKind.LOCAL:
        return kms.KmsConfig.local()
    try:
        return kms.KmsConfig(kms.KmsKind(kind), row.kms_url, row.kms_key)
    except ValueError:
        raise IntegrityError(
            f"The vault header names an unknown key provider ({str(kind)[:20]!r}).",
            next_step="upgrade keysafe, or rebuild the vault with `keysafe recover`.",
        ) from None


def wrapped_master(row: Any) -> hierarchy.WrappedMaster:
    """A passphrase vault's wrapped master key, with the Argon2id settings that open it.

    Raises:
        IntegrityError: the header's key derivation settings are unusable.
    """
    try:
        params = Argon2Params.from_dict(json.loads(row.kdf_params))
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(
            f"The vault header's key derivation settings are not usable ({exc}).",
            next_step=_REBUILD,
        ) from None
    return hierarchy.WrappedMaster(row.kdf_salt, row.master_nonce, row.master_wrapped, params)


def passphrase_columns(
    passphrase: SecretBytes,
    kdf: Argon2Params,
    *,
    master: SecretBytes,
    vault_id: str,
    seal_key: X25519PrivateKey,
) -> tuple[dict[str, Any], bytes, bytes]:
    """The header columns of a master key wrapped under Argon2id(passphrase), and the
    passphrase's sealing key wrapped under the same key (its nonce, its ciphertext)."""
    salt = os.urandom(hierarchy.SALT_SIZE)
    with hierarchy.derive_kek(passphrase, salt, kdf) as kek:
        wrapped = hierarchy.wrap_master_with(kek, salt, master, vault_id, kdf)
        seal_nonce, seal_wrapped = hierarchy.wrap_seal_key(kek, vault_id, seal_key)
    columns = {
        "kdf_params": jcs.dumps(kdf.to_dict()).decode(),
        "kdf_salt": wrapped.salt,
        "master_nonce": wrapped.nonce,
        "master_wrapped": wrapped.ciphertext,
    }
    return columns, seal_nonce, seal_wrapped


def kms_columns(
    provider: kms.KmsProvider, *, master: SecretBytes, vault_id: str, seal_key: X25519PrivateKey
) -> tuple[dict[str, Any], bytes, bytes]:
    """The header columns of a master key wrapped under a random key-encryption key that the
    KMS wraps, and the passphrase's sealing key wrapped under it (its nonce, its ciphertext).

    Raises:
        KmsUnavailableError: the KMS is unreachable or refuses this caller.
    """
    binding = kms.context_for(vault_id, provider.config)
    with hierarchy.new_kek() as kek:
        blob = provider.wrap(kek, context=binding)
        master_nonce, master_wrapped = hierarchy.wrap_master_for_kms(kek, master, vault_id, binding)
        seal_nonce, seal_wrapped = hierarchy.wrap_seal_key(kek, vault_id, seal_key)
    columns = {
        "kdf_params": "{}",
        "kdf_salt": b"",
        "master_nonce": master_nonce,
        "master_wrapped": master_wrapped,
        "kms_kind": str(provider.config.kind),
        "kms_url": provider.config.url,
        "kms_key": provider.config.key,
        "kms_blob": blob,
    }
    return columns, seal_nonce, seal_wrapped


def insert_header(
    conn: Connection,
    *,
    master: SecretBytes,
    passphrase: SecretBytes | None,
    provider: kms.KmsProvider | None,
    kdf: Argon2Params,
    created_at: str,
    phrase_pub: bytes,
    blobs: BlobConfig | None,
) -> str:
    """Write a new vault's header (the caller's transaction) and return its id.

    Raises:
        AlreadyExistsError: the database already holds a vault.
        KmsUnavailableError: the KMS is unreachable or refuses this caller.
    """
    if conn.execute(select(t.vault.c.id)).first() is not None:
        # Two inits on one shared database: the second waited for the first's lock
        # (Database.write) and must not add a second header beside it.
        raise AlreadyExistsError(
            "A vault already exists in this database.",
            next_step="use it, or point KEYSAFE_DATABASE_URL at another database.",
        )
    vault_id = hierarchy.vault_id_for(master)
    seal_key = hierarchy.new_seal_key()
    if provider is not None:
        key_values, seal_nonce, seal_wrapped = kms_columns(
            provider, master=master, vault_id=vault_id, seal_key=seal_key
        )
    elif passphrase is not None:
        key_values, seal_nonce, seal_wrapped = passphrase_columns(
            passphrase, kdf, master=master, vault_id=vault_id, seal_key=seal_key
        )
    else:
        raise ValueError("Vault.create needs a passphrase or a provider")
    conn.execute(
        insert(t.vault).values(
            id=vault_id,
            format=FORMAT,
            created_at=created_at,
            **key_values,
            unlock_failures=0,
            unlock_blocked_until=0.0,
            audit_head_seq=0,
            audit_head_hash=GENESIS_HASH,
            seal_pass_pub=hierarchy.public_bytes(seal_key),
            seal_pass_nonce=seal_nonce,
            seal_pass_wrapped=seal_wrapped,
            seal_phrase_pub=phrase_pub,
            blobs=None if blobs is None else blobs.to_json(),
        )
    )
    return vault_id


def insert_pause_switch(
    conn: Connection, seal_row: Callable[[str, seals.Fields], str | None]
) -> None:
    """The pause-all switch, off and sealed: it exists from the start, so deleting its row is
    detectable, never a way to switch it off (service/sealed_state.py)."""
    off = seals.setting_fields(seals.PAUSED_ALL, "0")
    conn.execute(delete(t.settings).where(t.settings.c.key == seals.PAUSED_ALL))
    conn.execute(
        insert(t.settings).values(key=seals.PAUSED_ALL, value="0", mac=seal_row("settings", off))
    )


def rewrap(
    conn: Connection,
    keys: EpochKeys,
    passphrase: SecretBytes,
    kdf: Argon2Params,
    *,
    master: SecretBytes,
) -> None:
    """Wrap the master key under a new passphrase, with a new sealing key for it that every
    epoch key is sealed to (the old passphrase opens no epoch key made from now on)."""
    seal_key = hierarchy.new_seal_key()
    columns, seal_nonce, seal_wrapped = passphrase_columns(
        passphrase, kdf, master=master, vault_id=keys.vault_id, seal_key=seal_key
    )
    keys.seal_to_passphrase(conn, seal_key, seal_nonce, seal_wrapped)
    # A vault a KMS wrapped comes back to the passphrase here (recovery with the KMS down):
    # the provider's columns go, so nothing keeps pointing at a key that no longer wraps it.
    conn.execute(
        update(t.vault).values(
            **columns,
            unlock_failures=0,
            unlock_blocked_until=0.0,
            kms_kind=None,
            kms_url=None,
            kms_key=None,
            kms_blob=None,
        )
    )
