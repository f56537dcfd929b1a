"""Backup and restore of the whole vault.

Restore into an existing vault (same vault id only) brings back keys, credentials and data that
are missing or damaged, and nothing else: every record that opens and is as new as the backup's
(by generation, then version) stays, epochs are only added, and what records what happened or
what is allowed — the ledger, approvals, idempotency keys, grants, agents and their tokens,
policies, settings, the registry, the audit log — stays as it is now. A restore never rolls back
a spent budget, a used approval or key, a revocation or an evicted threshold share. The audit
log is append-only and never rewound: the restore is appended to it. Restore into an empty home
needs the recovery phrase, rebuilds the vault header under a new passphrase and takes the backup's
audit log, after checking its hash chain.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import Connection, LargeBinary, delete, insert, select, update

from keysafe import files
from keysafe.audit.record import GENESIS_HASH, verify_chain
from keysafe.crypto import aead
from keysafe.crypto.kdf import DEFAULT_ARGON2, Argon2Params
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, KeysafeError, WrongRecoveryPhraseError
from keysafe.service import owner_audit, sealed_state, threshold_records
from keysafe.service.context import open_database
from keysafe.service.vault_admin import blob_setting, check_new_passphrase, parse_phrase
from keysafe.store import tables as t
from keysafe.store.db import Database
from keysafe.vault import backup as fmt
from keysafe.vault import hierarchy
from keysafe.vault.home import Home
from keysafe.vault.seals import Seal
from keysafe.vault.vault import Clock, Vault, iso, utc_now

logger = logging.getLogger(__name__)

# Everything the vault holds besides its header and the audit log, in restore order. Nonces are
# left out on purpose: they only matter for five minutes.
_DATA_TABLES: tuple[Any, ...] = (
    t.epochs,
    t.records,
    t.agents,
    t.policies,
    t.settings,
    t.registry_chains,
    t.registry_assets,
    t.ledger,
    t.idempotency,
    t.approvals,
    t.grants,
)
# Binary columns travel as hex in the backup's JSON: read off the tables themselves, so a column
# a migration adds (epochs.sealed_prev, schema 0014) is never missed.
_BYTES_COLS: Final = frozenset(
    c.name for table in _DATA_TABLES for c in table.columns if isinstance(c.type, LargeBinary)
)


def _dump(
    conn: Connection,
    table: Any,
    *order: Any,
    each: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict,
) -> list[dict[str, Any]]:
    out = []
    for raw in conn.execute(select(table).order_by(*order)).mappings():
        row = each(dict(raw))
        out.append(
            {k: (v.hex() if k in _BYTES_COLS and v is not None else v) for k, v in row.items()}
        )
    return out


def _load(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: (bytes.fromhex(v) if k in _BYTES_COLS and v is not None else v) for k, v in r.items()}
        for r in rows
    ]


def create_backup(vault: Vault, path: Path) -> fmt.BackupHeader:
    """Write a backup of the whole vault to `path` (0600, never over an existing file).

    Raises:
        AlreadyExistsError: `path` exists.
        IntegrityError: a record does not open, or a sealed row was edited: nothing is written.
    """
    written: list[Path] = []

    def write(blob: bytes) -> None:
        files.write_private(path, blob, what="backup")
        written.append(path)

    try:
        return _seal_and_deliver(vault, str(path), write)
    except BaseException:
        # The audit entry could not be written after the file was: the file goes too (and a
        # file that was there before is never touched).
        for p in written:
            p.unlink(missing_ok=True)
        raise


def backup_blob(vault: Vault, file: str) -> tuple[fmt.BackupHeader, bytes]:
    """The whole vault as one sealed backup, for the owner's CLI to write to `file` itself (the
    server never writes outside its home). Audited as a backup made to `file`.

    Raises:
        IntegrityError: a record does not open, or a sealed row was edited.
    """
    out: list[bytes] = []
    header = _seal_and_deliver(vault, file, out.append)
    return header, out[0]


def _seal_and_deliver(
    vault: Vault, file: str, deliver: Callable[[bytes], None]
) -> fmt.BackupHeader:
    with vault.db.write() as conn:
        sealing = vault.backup_sealing(conn)
        key = vault.subkey("backup") if sealing is None else sealing[1]
        head = conn.execute(select(t.vault.c.created_at)).one()
        payload = {
            "vault": {"id": vault.vault_id, "created_at": head.created_at},
            # Records carry their ciphertext itself, not a pointer: one kept in S3 is fetched
            # (its hash checked), so the backup restores without the bucket.
            **{
                tbl.name: _dump(
                    conn,
                    tbl,
                    *tbl.primary_key.columns,
                    each=vault.inline_row if tbl is t.records else dict,
                )
                for tbl in _DATA_TABLES
            },
            "audit": _dump(conn, t.audit, t.audit.c.seq),
        }
        # A tampered record must stop the backup, not travel in it: every record is opened.
        _check_records_open(vault, conn)
        header = fmt.BackupHeader(
            vault.vault_id,
            iso(vault.clock()),
            len(payload["records"]),
            len(payload["audit"]),
            None if sealing is None else sealing[0],
            None if sealing is None else sealing[2],
        )
        with key:
            deliver(fmt.seal_backup(key, header, payload))
        # Audited in the same transaction as the backup was read.
        _audit(vault, conn, "backup.create", header, file=file)
    logger.info("backup made (%d records)", header.records)
    return header


def _check_payload(vault_id: str, payload: dict[str, Any]) -> None:
    rows = [
        (
            a["seq"],
            a["time"],
            a["actor"],
            a["action"],
            a["target"],
            a["outcome"],
            a["details"],
            a["prev_hash"],
            a["hash"],
        )
        for a in payload["audit"]
    ]
    head = rows[-1] if rows else None
    report = verify_chain(
        rows, head_seq=head[0] if head else 0, head_hash=head[8] if head else GENESIS_HASH
    )
    if not report.ok or payload["vault"]["id"] != vault_id:
        raise IntegrityError(
            f"The backup's audit log does not verify ({report.problem}).",
            next_step="use another copy of the backup.",
        )


def _replace_data(
    conn: Connection,
    payload: dict[str, Any],
    stow: Callable[[Mapping[str, Any]], dict[str, Any]] = dict,
) -> None:
    """Replace every data table with the backup's; each record row goes through `stow` (the
    vault's blob store: an S3 object is put before its row is written)."""
    # The running window totals are derived from the ledger being replaced: drop them, and the
    # first budget check of each window sums the restored ledger again.
    conn.execute(delete(t.ledger_totals))
    for tbl in reversed(_DATA_TABLES):
        conn.execute(delete(tbl))
    for tbl in _DATA_TABLES:
        for row in _load(payload.get(tbl.name, [])):
            conn.execute(insert(tbl).values(**(stow(row) if tbl is t.records else row)))


def _generation(meta: str) -> int:
    try:
        value = json.loads(meta).get("generation", 0)
    except (ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) else 0


def _opens(vault: Vault, conn: Connection, row: Any) -> bool:
    try:
        info = vault.get_record(conn, row.kind, row.name)
        with vault.open_record(conn, info):
            return True
    except KeysafeError:
        return False


def _merge_records(vault: Vault, conn: Connection, payload: dict[str, Any]) -> int:
    """Bring back the backup's records that are missing here, or damaged, or older here; add its
    epochs that are missing. Returns how many records came from the backup."""
    have = {r.number for r in conn.execute(select(t.epochs.c.number))}
    for row in _load(payload.get("epochs", [])):
        if row["number"] not in have:
            conn.execute(insert(t.epochs).values(**row))
    live = {(r.kind, r.name): r for r in conn.execute(select(t.records))}
    restored = 0
    for row in _load(payload.get("records", [])):
        current = live.get((row["kind"], row["name"]))
        if current is not None:
            newer_here = (_generation(current.meta), current.version) >= (
                _generation(row["meta"]),
                row["version"],
            )
            if newer_here and _opens(vault, conn, current):
                continue  # intact and as new as the backup's (an evicted share never returns)
            conn.execute(delete(t.records).where(t.records.c.id == current.id))
        conn.execute(delete(t.records).where(t.records.c.id == row["id"]))
        # Where this vault keeps ciphertext: an S3 object is put before the row is written.
        conn.execute(insert(t.records).values(**vault.stow_row(row)))
        restored += 1
    return restored


def _check_records_open(vault: Vault, conn: Connection) -> None:
    for kind in {r.kind for r in _all_records(vault, conn)}:
        for info in vault.list_records(conn, kind):
            with vault.open_record(conn, info):
                pass
    # An edited agent, policy or setting must not travel either. Unsealed rows do (they are
    # honoured only when they restrict, and are reviewed with `keysafe agent seal` after the
    # restore as before it).
    broken = [r.summary for r in sealed_state.review_in(vault, conn) if r.state == "broken"]
    if broken:
        raise IntegrityError(
            f"The vault has rows edited outside keysafe, so no backup was written: "
            f"{'; '.join(broken[:5])}.",
            next_step="`keysafe agent seal` lists them; fix each as it says, then back up again.",
        )


def _all_records(vault: Vault, conn: Connection) -> list[Any]:
    return list(conn.execute(select(t.records.c.kind)).all())


def restore_into(vault: Vault, path: Path) -> fmt.BackupHeader:
    """Restore the backup in `path` into this (unlocked) vault; see `restore_blob`."""
    return restore_blob(vault, path.read_bytes())


def restore_blob(vault: Vault, blob: bytes) -> fmt.BackupHeader:
    """Restore a backup into this (unlocked) vault: the backup's records that are missing here,
    damaged, or older here come back; newer ones here stay.

    Raises:
        IntegrityError: the backup is of another vault, or does not open, or its audit log does
            not verify.
        MalformedRequestError: it is not a keysafe backup.
    """
    header, _, _ = fmt.read_header(blob)
    if header.vault_id != vault.vault_id:
        raise IntegrityError(
            f"This backup is of vault {header.vault_id}, not of this vault ({vault.vault_id}).",
            next_step="restore it into an empty KEYSAFE_HOME with its recovery phrase instead.",
        )
    with vault.db.read() as conn, vault.backup_key(header.epoch, conn) as key:
        header, payload = fmt.open_backup(key, blob)
    _check_payload(vault.vault_id, payload)
    with vault.db.write() as conn:
        restored = _merge_records(vault, conn, payload)
        _check_records_open(vault, conn)
        _audit(vault, conn, "backup.restore", header, restored=restored, from_empty_home=False)
    logger.info("backup restored into existing vault (%d records)", header.records)
    return header


def _audit(
    vault: Vault, conn: Connection, action: str, header: fmt.BackupHeader, **details: Any
) -> None:
    """Audit a backup made or restored (a restore in either form: into this vault, or a new
    vault from the backup), with the backup's counts of records and audit entries."""
    counts = {"records": header.records, "entries": header.entries}
    owner_audit.vault_changed(vault, conn, action, counts | details)


def _restore_key(
    header: fmt.BackupHeader, master: SecretBytes, phrase_key: X25519PrivateKey
) -> SecretBytes:
    """The key of a backup, from the recovery phrase: its epoch key sealed to the phrase's key
    (format 2), or the master key's subkey (format 1)."""
    if header.epoch is None:
        return hierarchy.subkey(master, "backup")
    try:
        epoch_key = hierarchy.open_epoch_key(
            phrase_key, header.vault_id, header.epoch, bytes.fromhex(header.sealed_epoch or "")
        )
    except aead.DecryptionError:
        raise WrongRecoveryPhraseError(
            "That recovery phrase does not open this backup.",
            next_step="use the phrase shown when the vault this backup came from was created.",
        ) from None
    with epoch_key:
        return hierarchy.backup_key_from_epoch(epoch_key)


def _pause_agents(vault: Vault, conn: Connection) -> list[str]:
    """Pause every active agent of a vault rebuilt from a backup: a token rotated or revoked
    after the backup was made is valid again in it, and only the owner knows which. Resuming
    is the owner's `keysafe agent resume NAME`, one by one."""
    paused = []
    for row in conn.execute(select(t.agents).where(t.agents.c.status == "active")).all():
        values: dict[str, Any] = {"status": "paused"}
        if sealed_state.agent_seal_state(vault, row) is Seal.SEALED:
            values["mac"] = sealed_state.agent_seal(vault, row, "paused")
        conn.execute(update(t.agents).where(t.agents.c.name == row.name).values(**values))
        paused.append(str(row.name))
    return paused


def restore_new(
    home: Home,
    path: Path,
    phrase: SecretBytes,
    new_passphrase: SecretBytes,
    *,
    kdf: Argon2Params = DEFAULT_ARGON2,
    clock: Clock = utc_now,
    blobs_url: str | None = None,
    blobs_endpoint: str | None = None,
) -> tuple[Vault, fmt.BackupHeader]:
    """Rebuild a vault in an empty home from a backup and its recovery phrase.

    Record ciphertext goes into the database, or with `blobs_url` (`s3://bucket/prefix`, and
    `blobs_endpoint` for an S3-compatible server) into that bucket, as `keysafe init --blobs`.

    Raises:
        WrongRecoveryPhraseError: the phrase is not this backup's vault's.
        IntegrityError: the backup does not open or its audit log does not verify.
        StoreError: the bucket cannot be reached or used (nothing was written).
    """
    check_new_passphrase(new_passphrase)
    blobs = blob_setting(blobs_url, blobs_endpoint)
    blob = path.read_bytes()
    header, _, _ = fmt.read_header(blob)
    with parse_phrase(phrase) as entropy:
        master = hierarchy.master_from_entropy(entropy.reveal())
        phrase_key = hierarchy.phrase_seal_key(entropy.reveal())
    with master:
        _check_phrase_is_the_vaults(master, header)
        with _restore_key(header, master, phrase_key) as key:
            header, payload = fmt.open_backup(key, blob)
        _check_payload(header.vault_id, payload)
        home.create()
        home.clear_unfinished()
        db = open_database(home, create=True)
        try:
            with db.write() as conn:
                vault = Vault.create(
                    db,
                    master=master,
                    passphrase=new_passphrase,
                    kdf=kdf,
                    clock=clock,
                    conn=conn,
                    with_first_epoch=False,
                    phrase_pub=hierarchy.public_bytes(phrase_key),
                    blobs=blobs,
                )
                _fill(vault, conn, header, payload, phrase_key, new_passphrase, kdf)
        except BaseException:
            _discard(home, db)
            raise
    logger.info("vault %s rebuilt from backup (%d records)", vault.vault_id, header.records)
    return vault, header


def _fill(
    vault: Vault,
    conn: Connection,
    header: fmt.BackupHeader,
    payload: dict[str, Any],
    phrase_key: X25519PrivateKey,
    new_passphrase: SecretBytes,
    kdf: Argon2Params,
) -> None:
    """A vault just made from a backup's master key gets the backup's contents, in the same
    transaction: records, audit log, epoch keys (open with the phrase, rewrapped for the new
    passphrase), and its agents paused."""
    _replace_data(conn, payload, stow=vault.stow_row)
    _restore_audit_log(conn, payload)
    # The backup's epoch keys open with the phrase; the new passphrase gets its
    # own sealed copies.
    vault.adopt_epochs(conn, phrase_key)
    vault.rewrap(conn, new_passphrase, kdf)
    _check_records_open(vault, conn)
    paused = _pause_agents(vault, conn)
    held = threshold_records.hold_restored(vault, conn)
    _audit(
        vault,
        conn,
        "backup.restore",
        header,
        from_empty_home=True,
        agents_paused=",".join(paused),
        threshold_wallets_held=",".join(held),
    )


def _check_phrase_is_the_vaults(master: SecretBytes, header: fmt.BackupHeader) -> None:
    if hierarchy.vault_id_for(master) != header.vault_id:
        raise WrongRecoveryPhraseError(
            "That recovery phrase is not the one of the vault this backup was made from.",
            next_step="use the phrase shown when that vault was created.",
        )


def _restore_audit_log(conn: Connection, payload: dict[str, Any]) -> None:
    """The backup's audit entries as they were, and the vault's audit head and creation time
    to match, so the restored log verifies as one chain."""
    for row in payload["audit"]:
        conn.execute(insert(t.audit).values(**row))
    if payload["audit"]:
        last = payload["audit"][-1]
        conn.execute(
            update(t.vault).values(
                audit_head_seq=last["seq"],
                audit_head_hash=last["hash"],
                created_at=payload["vault"]["created_at"],
            )
        )


def _discard(home: Home, db: Database) -> None:
    """A restore that failed leaves no database behind: the home stays empty."""
    db.close()
    if home.database_url is None:  # PostgreSQL: the failed transaction left nothing
        for suffix in ("", "-wal", "-shm"):
            home.db_path.with_name(home.db_path.name + suffix).unlink(missing_ok=True)
