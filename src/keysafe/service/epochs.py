"""Epoch rotation: a new epoch key, every record sealed again under it, the old key destroyed.

Each record is sealed with its own data key, wrapped by the epoch key of its epoch. Rotating
makes a new epoch key (`epoch.rotate`), then sweeps: a batch of records at a time, each in its
own transaction, is opened and sealed again under the new key with a fresh data key, so a crash
(kill -9) between two batches leaves every record readable under a key the vault still has, and
the next sweep (at the next start of `keysafe serve`, or `keysafe rotate`) goes on where it
stopped. Once no record uses a retired epoch, its key is deleted (`epoch.destroy`) and the
database's WAL is checkpointed and truncated; with SQLite's secure_delete on, neither the old
ciphertexts nor the old key are left in the files.

With record ciphertext in S3 (`keysafe init --blobs`, vault/blobs.py) each re-sealed record
is a new object under the new epoch's part of the bucket, put before its row commits, and
destroying an epoch deletes every version and delete marker under its part first, so the bucket
keeps no old ciphertext either (docs/s3.md). Batches are smaller there: each record is a GET and
a PUT made while the transaction holds the database's write lock.

What this gives: a copy of an epoch key taken before a rotation (a memory dump of the server, a
leaked key) opens nothing written or re-sealed after it, and the current files hold no record
under it. Epoch keys are sealed to the passphrase's and the recovery phrase's sealing keys, not
wrapped by the master key (vault/hierarchy.py), so an old copy of the database and its WAL
stays closed to the current master key too, and so does a backup made before (it is sealed
under its epoch's key; only the recovery phrase opens it once that epoch is destroyed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection, select, update

from keysafe.audit.outcome import Outcome
from keysafe.store import tables as t
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

__all__ = ["BATCH", "Epochs", "Rotation", "due", "keep_up", "rotate", "state", "sweep"]

BATCH: Final = 100  # records re-sealed per transaction
# With S3, per transaction: two round trips per record, while other writers wait on the lock.
_BLOB_BATCH: Final = 20
DEFAULT_EVERY: Final = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a rotation (or a sweep) did."""

    epoch: int  # the active epoch afterwards
    resealed: int  # records sealed again under it
    destroyed: tuple[int, ...]  # epoch keys deleted


@dataclass(frozen=True, slots=True)
class Epochs:
    """The vault's epochs as `keysafe status` shows them."""

    current: int
    since: str  # when the current epoch began (ISO 8601)
    retired: tuple[int, ...]  # still in use by records not yet re-sealed


def state(vault: Vault) -> Epochs:
    """The current epoch, when it began, and the older epochs whose keys still exist."""
    with vault.db.read() as conn:
        return _state(conn)


def _state(conn: Connection) -> Epochs:
    rows = conn.execute(select(t.epochs).order_by(t.epochs.c.number)).all()
    active = [r for r in rows if r.state == "active"]
    top = active[-1] if active else rows[-1]
    return Epochs(
        int(top.number),
        str(top.created_at),
        tuple(int(r.number) for r in rows if r.number != top.number),
    )


def due(vault: Vault, every: timedelta = DEFAULT_EVERY) -> bool:
    """Whether the current epoch is older than `every`."""
    return _due(state(vault), vault.clock(), every)


def _due(epochs: Epochs, now: datetime, every: timedelta) -> bool:
    since = datetime.fromisoformat(epochs.since.replace("Z", "+00:00"))
    return now - since >= every


def keep_up(vault: Vault, every: timedelta | None) -> Rotation | None:
    """What the running server does every few seconds while unlocked: finish a sweep a crash
    cut short, and rotate when the current epoch is older than `every` (None: never)."""
    if not vault.is_unlocked:
        return None
    if every is not None and due(vault, every):
        return rotate(vault, reason="schedule", unless_newer_than=every)
    if state(vault).retired:
        return sweep(vault)
    return None


def rotate(vault: Vault, *, reason: str, unless_newer_than: timedelta | None = None) -> Rotation:
    """Start a new epoch, re-seal every record into it and destroy the old epoch keys.

    Args:
        vault: the unlocked vault.
        reason: why (`owner`, `schedule`, `agent.revoke`), for the audit log.
        unless_newer_than: a scheduled rotation: only if the current epoch is older than this,
            looked at again under the write lock. Several servers on one database each run the
            schedule; the first to find it due rotates, the others then find a new epoch and
            only sweep (without this, each would rotate once more in turn).

    Raises:
        VaultLockedError: locked.
    """
    with vault.db.write() as conn:
        if unless_newer_than is not None and not _due(
            _state(conn), vault.clock(), unless_newer_than
        ):
            number = None
        else:
            number = vault.rotate_epoch(conn)
            vault.audit(
                conn,
                actor="owner" if reason == "owner" else "keysafe",
                action="epoch.rotate",
                target=f"epoch:{number}",
                outcome=Outcome.SUCCESS,
                details={"reason": reason},
            )
    if number is None:
        return sweep(vault)
    logger.info("epoch %d started (%s)", number, reason)
    return sweep(vault)


def sweep(vault: Vault, *, batch: int | None = None) -> Rotation:
    """Re-seal the records still under retired epochs, a batch per transaction, then destroy the
    retired epoch keys no record uses. Safe to run again at any time (after a crash: it resumes).

    Raises:
        VaultLockedError: locked.
    """
    if batch is None:
        batch = _BLOB_BATCH if vault.blobs.remote else BATCH
    resealed = 0
    while True:
        with vault.db.write() as conn:
            current = vault.current_epoch(conn)
            ids = [
                r.id
                for r in conn.execute(
                    select(t.records.c.id).where(t.records.c.epoch != current).limit(batch)
                )
            ]
            for info in vault.list_records_by_id(conn, ids):
                vault.reseal_record(conn, info)
            resealed += len(ids)
        if len(ids) < batch:
            break
    destroyed: list[int] = []
    with vault.db.write() as conn:
        current = vault.current_epoch(conn)
        # An older epoch a restored backup brought back in is retired like any other.
        conn.execute(update(t.epochs).where(t.epochs.c.number != current).values(state="retired"))
        retired = conn.execute(
            select(t.epochs.c.number).where(t.epochs.c.state == "retired")
        ).scalars()
        for number in list(retired):
            objects = vault.destroy_epoch(conn, int(number))
            destroyed.append(int(number))
            details = {"resealed": resealed, "current": current}
            if vault.blobs.remote:
                details["objects_deleted"] = objects  # versions and delete markers
            vault.audit(
                conn,
                actor="keysafe",
                action="epoch.destroy",
                target=f"epoch:{number}",
                outcome=Outcome.SUCCESS,
                details=details,
            )
    if destroyed:
        vault.db.checkpoint()  # the WAL's (PostgreSQL: the tables') copies of old rows go too
        logger.info("epochs %s destroyed; %d records re-sealed", destroyed, resealed)
    return Rotation(current, resealed, tuple(destroyed))
