"""Reading and writing `records` rows: list, find, write, open, re-seal; and backup rows.

    ref = record_rows.next_ref(None, kind="data", name="n", data_class="standard", meta={})
    info = record_rows.write(conn, keys, blobs, ref, secret, now=now, created_at=None)
    with record_rows.open_record(conn, keys, blobs, info) as plain:
        ...                                          # wiped when the block ends

Rules this module keeps:
- Every write seals with a fresh data key under the current epoch (vault/records.py binds the
  row into the AEAD); a record's version grows by one with each replacement.
- Ciphertext goes to the vault's blob store before the caller's row is written: a crash leaves
  garbage, never a row pointing at nothing (vault/blobs.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from sqlalchemy import Connection, insert, select, update

from keysafe.crypto import jcs
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import AlreadyExistsError, IntegrityError, NotFoundError
from keysafe.store import hot
from keysafe.store import tables as t
from keysafe.vault import records
from keysafe.vault.blobs import RecordBlobs, Stored
from keysafe.vault.epochs import EpochKeys, current_epoch
from keysafe.vault.records import RecordInfo, info_from_row

# What `find` reads (not the ciphertext): on the driver (store/hot.py), as every request asks.
_RECORD_INFO: Final = (
    "SELECT id, kind, name, data_class, epoch, version, meta, created_at, updated_at "
    "FROM records WHERE kind = :kind AND name = :name"
)

_RECORD: Final = (
    "SELECT id, kind, name, data_class, epoch, version, meta, created_at, updated_at, "
    "dek_nonce, dek_wrapped, nonce, ciphertext, blob_key, blob_version, blob_sha256 "
    "FROM records WHERE id = :id"
)


def list_by_kind(conn: Connection, kind: str) -> list[RecordInfo]:
    """Every record of one kind, by name."""
    rows = conn.execute(
        select(t.records).where(t.records.c.kind == kind).order_by(t.records.c.name)
    )
    return [info_from_row(r) for r in rows]


def list_by_id(conn: Connection, ids: list[str]) -> list[RecordInfo]:
    """The records with these ids (those that still exist)."""
    if not ids:
        return []
    rows = conn.execute(select(t.records).where(t.records.c.id.in_(ids)))
    return [info_from_row(r) for r in rows]


def find(conn: Connection, kind: str, name: str) -> RecordInfo | None:
    """The record of that kind and name, or None."""
    found = hot.named(conn, _RECORD_INFO, {"kind": kind, "name": name})
    return info_from_row(found[0]) if found else None


def get(conn: Connection, kind: str, name: str) -> RecordInfo:
    """The record of that kind and name.

    Raises:
        NotFoundError: there is none.
    """
    info = find(conn, kind, name)
    if info is None:
        raise NotFoundError(
            f"No {kind} named '{name}' in this vault.",
            next_step=f"list them with `keysafe {kind} list`.",
            kind=kind,
            name=name,
        )
    return info


def next_ref(
    existing: RecordInfo | None, *, kind: str, name: str, data_class: str, meta: Mapping[str, Any]
) -> records.RecordRef:
    """The reference of a new record, or of the next version of `existing`."""
    return records.RecordRef(
        id=existing.id if existing else secrets.token_hex(16),
        kind=kind,
        name=name,
        data_class=data_class,
        version=existing.version + 1 if existing else 1,
        meta=dict(meta),
    )


def write(
    conn: Connection,
    keys: EpochKeys,
    blobs: RecordBlobs,
    ref: records.RecordRef,
    plaintext: SecretBytes,
    *,
    now: str,
    created_at: str | None,
) -> RecordInfo:
    """Seal `plaintext` under the current epoch and write its row: a new one when `created_at`
    is None, else the row `ref.id` replaced."""
    epoch = current_epoch(conn)
    sealed = records.seal(keys.vault_id, epoch, keys.key(epoch, conn), ref, plaintext)
    stored = stow(blobs, keys.vault_id, ref.kind, ref.id, ref.version, sealed)
    values = {
        "kind": ref.kind,
        "name": ref.name,
        "data_class": ref.data_class,
        "epoch": epoch,
        "version": ref.version,
        "meta": jcs.dumps(ref.meta).decode(),
        "dek_nonce": sealed.dek_nonce,
        "dek_wrapped": sealed.dek_wrapped,
        "updated_at": now,
        **stored.columns(),
    }
    if created_at is None:
        conn.execute(insert(t.records).values(id=ref.id, created_at=now, **values))
    else:
        conn.execute(update(t.records).where(t.records.c.id == ref.id).values(**values))
    return RecordInfo(
        ref.id,
        ref.kind,
        ref.name,
        ref.data_class,
        epoch,
        ref.version,
        ref.meta,
        created_at or now,
        now,
    )


def already_exists(kind: str, name: str) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"A {kind} named '{name}' already exists.",
        next_step=(
            f"choose another name, or remove it first (`keysafe {kind} remove {name}`)."
            if kind in ("credential", "data")
            else "choose another name."
        ),
        kind=kind,
        name=name,
    )


@contextmanager
def open_record(
    conn: Connection, keys: EpochKeys, blobs: RecordBlobs, info: RecordInfo
) -> Iterator[SecretBytes]:
    """Decrypt a record for the duration of the block; the plaintext is wiped afterwards.

    Raises:
        NotFoundError: the record was removed since `info` was read.
        IntegrityError: its epoch key or its ciphertext does not open.
    """
    found = hot.named(conn, _RECORD, {"id": info.id})
    if not found:  # removed by the owner since `info` was read
        raise NotFoundError(
            f"The {info.kind} '{info.name}' was removed while this request ran.",
            next_step=f"list them with `keysafe {info.kind} list`.",
            kind=info.kind,
            name=info.name,
        )
    row = found[0]
    fresh = info_from_row(row)
    try:
        key = keys.key(row.epoch, conn)
    except IntegrityError:
        raise records.integrity_failure(fresh.ref) from None
    nonce, ciphertext = blobs.fetch(Stored.from_row(row), fresh.ref)
    sealed = records.Sealed(row.epoch, row.dek_nonce, row.dek_wrapped, nonce, ciphertext)
    with records.open_sealed(keys.vault_id, key, fresh.ref, sealed) as plain:
        yield plain


def reseal(conn: Connection, keys: EpochKeys, blobs: RecordBlobs, info: RecordInfo) -> None:
    """Seal a record again under the current epoch with a fresh data key (same name, version
    and metadata): its old data key and ciphertext are gone from the row."""
    epoch = current_epoch(conn)
    if info.epoch == epoch:
        return
    with open_record(conn, keys, blobs, info) as plain:
        sealed = records.seal(keys.vault_id, epoch, keys.key(epoch, conn), info.ref, plain)
    stored = stow(blobs, keys.vault_id, info.kind, info.id, info.version, sealed)
    conn.execute(
        update(t.records)
        .where(t.records.c.id == info.id, t.records.c.epoch == info.epoch)
        .values(
            epoch=epoch,
            dek_nonce=sealed.dek_nonce,
            dek_wrapped=sealed.dek_wrapped,
            **stored.columns(),
        )
    )


def stow(
    blobs: RecordBlobs,
    vault_id: str,
    kind: str,
    record_id: str,
    version: int,
    sealed: records.Sealed,
) -> Stored:
    """Store a sealed record's ciphertext where this vault keeps it (an S3 object is put
    before the caller's row is written: a crash leaves garbage, never a dangling row)."""
    return blobs.stow(
        vault_id,
        kind=kind,
        record_id=record_id,
        epoch=sealed.epoch,
        version=version,
        nonce=sealed.nonce,
        ciphertext=sealed.ciphertext,
    )


def inline_row(blobs: RecordBlobs, row: Mapping[str, Any]) -> dict[str, Any]:
    """A `records` row with its ciphertext in the row itself (fetched and hash-checked
    from the blob store if it lives there), for a backup that must carry it.

    Raises:
        IntegrityError: the object is missing or altered.
        StoreError: the blob store is unreachable.
    """
    out = dict(row)
    ref = records.RecordRef(
        out["id"], out["kind"], out["name"], out["data_class"], out["version"], {}
    )
    stored = Stored(
        out["nonce"],
        out["ciphertext"],
        out.get("blob_key"),
        out.get("blob_version"),
        out.get("blob_sha256"),
    )
    nonce, ciphertext = blobs.fetch(stored, ref)
    # Without the pointer columns: the row is then exactly what a vault without a blob
    # store writes (and what a keysafe from before schema 0011 can restore).
    for column in ("blob_key", "blob_version", "blob_sha256"):
        out.pop(column, None)
    return out | {"nonce": nonce, "ciphertext": ciphertext}


def stow_row(blobs: RecordBlobs, vault_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A `records` row (from a backup, ciphertext inline) as this vault keeps it: its
    ciphertext put into the blob store first where the vault has one."""
    out = dict(row)
    if out.get("blob_key") is not None:
        return out  # already a pointer (a backup never carries one; left as it is)
    sealed = records.Sealed(
        out["epoch"], out["dek_nonce"], out["dek_wrapped"], out["nonce"], out["ciphertext"]
    )
    stored = stow(blobs, vault_id, out["kind"], out["id"], out["version"], sealed)
    return out | stored.columns()
