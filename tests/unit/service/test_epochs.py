"""Epoch rotation (service/epochs.py): every record sealed again under a new epoch key, the old
key destroyed, and nothing of the old ciphertexts left in the database or its WAL."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select, update

from keysafe.crypto import aead
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError
from keysafe.service import agents, audit, backup, data, epochs, owner_ops
from keysafe.service.models import DataClass
from keysafe.service.vault_admin import init_vault, parse_phrase, recover_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF
from keysafe.vault import backup as backup_format
from keysafe.vault import hierarchy, records
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

RECORDS = 240


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    made, _ = init_vault(
        Home(tmp_path / "h"),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
    )
    for i in range(RECORDS):
        value = SecretBytes(bytearray(f"canary-value-{i:04d}".encode()))
        data.set_data(made, f"item{i}", value, data_class=DataClass.STANDARD)
    return made


def _rows(db: Path) -> list[tuple[str, bytes, bytes]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT id, dek_wrapped, ciphertext FROM records"))


def _open_all(vault: Vault) -> list[str]:
    out = []
    with vault.db.read() as conn:
        for info in vault.list_records(conn, "data"):
            with vault.open_record(conn, info) as plain:
                out.append(bytes(plain.reveal()).decode())
    return sorted(out)


def test_rotation_seals_every_record_again_and_destroys_the_old_key(vault: Vault) -> None:
    before = _open_all(vault)
    done = epochs.rotate(vault, reason="owner")
    assert done.epoch == 2 and done.destroyed == (1,) and done.resealed >= RECORDS
    assert _open_all(vault) == before
    with vault.db.read() as conn:
        assert [r.number for r in conn.execute(select(t.epochs))] == [2]
        assert {r.epoch for r in conn.execute(select(t.records))} == {2}
    actions = [e.action for e in audit.list_entries(vault, limit=50)]
    assert "epoch.rotate" in actions and "epoch.destroy" in actions


def test_attack_a_key_copied_before_rotation_opens_nothing_in_the_current_files(
    vault: Vault, tmp_path: Path
) -> None:
    """A copy of epoch 1's key (a memory dump, a leak) and of the database and its WAL taken at
    epoch 1; two rotations later, the key opens no data key in the current files, and the current
    files hold none of the old data keys or ciphertexts (secure_delete, and the WAL truncated)."""
    db = Path(str(vault.db.path))
    with vault.db.read() as conn:
        old_key = bytes(vault._epoch_keys.key(1, conn).reveal())
    copy = tmp_path / "copy"
    copy.mkdir()
    for suffix in ("", "-wal"):
        src = Path(f"{db}{suffix}")
        if src.exists():
            shutil.copy(src, copy / f"vault.db{suffix}")
    old = _rows(copy / "vault.db")
    assert len(old) >= RECORDS

    epochs.rotate(vault, reason="owner")
    epochs.rotate(vault, reason="owner")

    with vault.db.read() as conn:
        for info in vault.list_records(conn, "data"):
            row = conn.execute(select(t.records).where(t.records.c.id == info.id)).one()
            sealed = records.Sealed(
                row.epoch, row.dek_nonce, row.dek_wrapped, row.nonce, row.ciphertext
            )
            with pytest.raises(IntegrityError):
                records.open_sealed(
                    vault.vault_id, SecretBytes(bytearray(old_key)), info.ref, sealed
                )
    on_disk = b"".join(
        Path(f"{db}{s}").read_bytes() for s in ("", "-wal", "-shm") if Path(f"{db}{s}").exists()
    )
    leftovers = [rid for rid, dek, ct in old if dek in on_disk or ct[:32] in on_disk]
    assert leftovers == [], f"{len(leftovers)} old records still in the files"
    assert old_key not in on_disk


def test_a_sweep_cut_short_is_finished_by_the_next_one(vault: Vault) -> None:
    """A crash after the new epoch began and part of the records moved: both keys are still
    there, every record opens, and the next sweep finishes and destroys the old key."""
    with vault.db.write() as conn:
        vault.rotate_epoch(conn)
    with vault.db.write() as conn:
        infos = vault.list_records(conn, "data")[: RECORDS // 2]
        for info in infos:
            vault.reseal_record(conn, info)
    assert epochs.state(vault).retired == (1,)
    assert len(_open_all(vault)) == RECORDS
    done = epochs.sweep(vault)
    assert done.destroyed == (1,) and epochs.state(vault).retired == ()
    assert len(_open_all(vault)) == RECORDS


def test_revoking_an_agent_rotates(vault: Vault) -> None:
    agents.add_agent(vault, "bot")
    owner_ops.SetAgentStatus(name="bot", status="revoked").run(vault)
    assert epochs.state(vault).current == 2
    rotated = [e for e in audit.list_entries(vault, limit=50) if e.action == "epoch.rotate"]
    assert rotated and rotated[-1].details.get("reason") == "agent.revoke"


def test_a_rotation_is_due_after_its_interval(vault: Vault) -> None:
    from datetime import timedelta

    assert not epochs.due(vault, timedelta(days=7))
    assert epochs.due(vault, timedelta(seconds=0))
    assert epochs.keep_up(vault, timedelta(seconds=0)) is not None
    assert epochs.state(vault).current == 2


def test_attack_old_copies_stay_closed_to_the_current_master_key(
    vault: Vault, tmp_path: Path
) -> None:
    """Forward secrecy (issue 18): a copy of the database and its WAL at epoch 1, then two
    rotations. With the current master key, every key derived from it, the epoch keys the
    running process holds, and every current file, no record of the old copy opens: its epoch
    key is sealed to the passphrase's and the phrase's keys, not wrapped by the master key."""
    db = Path(str(vault.db.path))
    copy = tmp_path / "copy"
    copy.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{db}{suffix}").exists():
            shutil.copy(Path(f"{db}{suffix}"), copy / f"vault.db{suffix}")
    epochs.rotate(vault, reason="owner")
    epochs.rotate(vault, reason="owner")

    master = SecretBytes(vault._require_master().reveal())
    reachable = [master] + [vault.subkey(p) for p in ("audit-hmac", "backup", "state-mac")]
    reachable += [SecretBytes(k.reveal()) for k in vault._epoch_keys.values()]
    with sqlite3.connect(copy / "vault.db") as old:
        old_epochs = list(old.execute("SELECT number, nonce, wrapped_key FROM epochs"))
        rows = list(
            old.execute(
                "SELECT id, kind, name, data_class, epoch, version, meta, dek_nonce, dek_wrapped, "
                "nonce, ciphertext FROM records"
            )
        )
    # The old epoch key is not wrapped by any key the attacker holds ...
    for number, nonce, wrapped in old_epochs:
        for key in reachable:
            if wrapped:
                with pytest.raises(aead.DecryptionError):
                    hierarchy.unwrap_epoch_key(key, vault.vault_id, number, nonce, wrapped)
    # ... and no record of the copy opens under any of them, as if it were the epoch key.
    opened = 0
    for (
        rid,
        kind,
        name,
        data_class,
        epoch,
        version,
        meta,
        dek_nonce,
        dek_wrapped,
        nonce,
        ct,
    ) in rows:
        ref = records.RecordRef(rid, kind, name, data_class, version, json.loads(meta))
        sealed = records.Sealed(epoch, dek_nonce, dek_wrapped, nonce, ct)
        for key in reachable:
            try:
                records.open_sealed(vault.vault_id, key, ref, sealed)
                opened += 1
            except IntegrityError:
                pass
    assert opened == 0
    assert len(rows) >= RECORDS


def test_the_passphrase_and_the_phrase_each_still_open_every_epoch(tmp_path: Path) -> None:
    made, words = init_vault(
        Home(tmp_path / "p"),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
    )
    for i in range(5):
        data.set_data(made, f"x{i}", SecretBytes(bytearray(b"v")), data_class=DataClass.STANDARD)
    epochs.rotate(made, reason="owner")
    data.set_data(made, "after", SecretBytes(bytearray(b"w")), data_class=DataClass.STANDARD)
    by_passphrase = Vault(made.db, made.vault_id)
    with SecretBytes(bytearray(b"passphrase-123")) as secret:
        by_passphrase.unlock(secret)
    by_phrase = Vault(made.db, made.vault_id)
    with parse_phrase(words) as entropy:
        by_phrase.unlock_with_phrase(entropy)
    assert len(_open_all(by_passphrase)) == len(_open_all(by_phrase)) == 6


def test_a_vault_from_before_sealed_epochs_opens_and_gains_forward_secrecy(
    tmp_path: Path,
) -> None:
    """A vault written before schema 0009 (epoch keys wrapped by the master key, no sealing
    keys): the passphrase still opens it and gives it a sealing key; the master key's copy stays
    until the recovery phrase is used once, which then drops it."""
    home = Home(tmp_path / "legacy")
    made, words = init_vault(
        home,
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
    )
    data.set_data(made, "old", SecretBytes(bytearray(b"legacy")), data_class=DataClass.STANDARD)
    master = made._require_master()
    with made.db.write() as conn:  # write it as keysafe did before schema 0009
        key = made._epoch_keys.key(1, conn)
        nonce, wrapped = hierarchy.wrap_epoch_key(master, made.vault_id, 1, key)
        conn.execute(
            update(t.epochs).values(
                nonce=nonce, wrapped_key=wrapped, sealed_pass=None, sealed_phrase=None
            )
        )
        conn.execute(
            update(t.vault).values(
                seal_pass_pub=None,
                seal_pass_nonce=None,
                seal_pass_wrapped=None,
                seal_phrase_pub=None,
            )
        )
    reopened = Vault(made.db, made.vault_id)
    with SecretBytes(bytearray(b"passphrase-123")) as secret:
        reopened.unlock(secret)
    assert _open_all(reopened) == ["legacy"]
    with made.db.read() as conn:
        row = conn.execute(select(t.epochs)).one()
        assert row.sealed_pass and row.wrapped_key  # the phrase still needs the master's copy
    recovered, _ = recover_vault(
        home, words, SecretBytes(bytearray(b"passphrase-456")), kdf=CHEAP_KDF
    )
    with recovered.db.read() as conn:
        row = conn.execute(select(t.epochs)).one()
        assert row.sealed_pass and row.sealed_phrase and not row.wrapped_key
    assert _open_all(recovered) == ["legacy"]


def test_attack_a_backup_from_before_a_rotation_stays_closed_but_to_the_phrase(
    tmp_path: Path,
) -> None:
    """A backup made at epoch 1 (issue 18): after two rotations, neither the vault, nor its
    master key and subkeys, nor any epoch key it holds opens it; the recovery phrase still
    rebuilds the vault from it on an empty home."""
    made, words = init_vault(
        Home(tmp_path / "v"),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
    )
    data.set_data(made, "kept", SecretBytes(bytearray(b"value")), data_class=DataClass.STANDARD)
    file = tmp_path / "epoch1.ksbackup"
    assert backup.create_backup(made, file).epoch == 1
    blob = file.read_bytes()
    assert backup.restore_into(made, file).records >= 1  # its own epoch still lives: it opens
    epochs.rotate(made, reason="owner")
    epochs.rotate(made, reason="owner")

    with pytest.raises(IntegrityError, match="rotation destroyed"):
        backup.restore_into(made, file)
    reachable = [made.subkey(p) for p in ("backup", "audit-hmac", "state-mac")]
    reachable += [SecretBytes(k.reveal()) for k in made._epoch_keys.values()]
    reachable += [hierarchy.backup_key_from_epoch(k) for k in list(reachable)]
    for key in reachable:
        with pytest.raises(IntegrityError):
            backup_format.open_backup(key, blob)

    rebuilt, header = backup.restore_new(
        Home(tmp_path / "new"),
        file,
        words,
        SecretBytes(bytearray(b"passphrase-789")),
        kdf=CHEAP_KDF,
    )
    assert header.epoch == 1 and "value" in _open_all(rebuilt)


def test_a_backup_after_rotations_is_made_and_restores(vault: Vault, tmp_path: Path) -> None:
    """After a rotation the epochs rows carry the epoch link (schema 0014, bytes): the backup's
    JSON once met it as raw bytes and `backup create` failed with an internal error."""
    epochs.rotate(vault, reason="owner")
    epochs.rotate(vault, reason="owner")
    file = tmp_path / "after.ksbackup"
    assert backup.create_backup(vault, file).epoch == 3
    data.remove_data(vault, "item0")
    assert backup.restore_into(vault, file).records >= 1
    assert "canary-value-0000" in _open_all(vault)
