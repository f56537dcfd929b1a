"""Epoch rotation (service/epochs.py): every record sealed again under a new epoch key, the old
key destroyed, and nothing of the old ciphertexts left in the database or its WAL."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from keysafe.crypto.kdf import Argon2Params
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError
from keysafe.service import agents, audit, data, epochs, owner_ops
from keysafe.service.models import DataClass
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.vault import records
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

RECORDS = 240


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    made, _ = init_vault(
        Home(tmp_path / "h"), SecretBytes(bytearray(b"passphrase-123")),
        kdf=Argon2Params(memory_kib=1024, time_cost=1, parallelism=1),
    )  # fmt: skip
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
        old_key = bytes(vault._epoch_key(1, conn).reveal())
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
            sealed = records.Sealed(row.epoch, row.dek_nonce, row.dek_wrapped, row.nonce,
                                    row.ciphertext)  # fmt: skip
            with pytest.raises(IntegrityError):
                records.open_sealed(vault.vault_id, SecretBytes(bytearray(old_key)), info.ref,
                                    sealed)  # fmt: skip
    on_disk = b"".join(Path(f"{db}{s}").read_bytes() for s in ("", "-wal", "-shm")
                       if Path(f"{db}{s}").exists())  # fmt: skip
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
