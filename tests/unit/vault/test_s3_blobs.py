"""Record ciphertext in S3 (issue 18, vault/blobs.py), against moto's S3 server: objects under
the vault's layout with a pointer and a SHA-256 in the row, tampering refused before decryption,
rotation moving objects and destroying every old version, backups carrying the ciphertext."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from keysafe.crypto import aead
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, MalformedRequestError, StoreError
from keysafe.service import audit, backup, data, doctor, epochs
from keysafe.service.context import open_vault
from keysafe.service.findings import Status
from keysafe.service.models import DataClass
from keysafe.service.vault_admin import init_vault
from keysafe.store import s3 as s3_module
from keysafe.store import tables as t
from keysafe.store.db import SCHEMA_HEAD
from keysafe.testing import CHEAP_KDF, free_port
from keysafe.vault import hierarchy, records
from keysafe.vault.blobs import BlobConfig, S3Blobs
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault
from tests.s3_fixture import S3Server, moto_s3

RECORDS = 12
PHRASES: dict[str, SecretBytes] = {}  # each vault's recovery phrase, by vault id


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3() as server:
        yield server


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.new_bucket()


def _vault(s3: S3Server, bucket: str, home: Path, *, records_: int = RECORDS) -> Vault:
    made, phrase = init_vault(
        Home(home),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
        blobs_url=f"s3://{bucket}/ks/test",
        blobs_endpoint=s3.endpoint,
    )
    PHRASES[made.vault_id] = phrase
    for i in range(records_):
        value = SecretBytes(bytearray(f"canary-value-{i:04d}".encode()))
        data.set_data(made, f"item{i}", value, data_class=DataClass.STANDARD)
    return made


@pytest.fixture
def vault(s3: S3Server, bucket: str, tmp_path: Path) -> Vault:
    return _vault(s3, bucket, tmp_path / "h")


def _open_all(vault: Vault) -> list[str]:
    out = []
    with vault.db.read() as conn:
        for info in vault.list_records(conn, "data"):
            with vault.open_record(conn, info) as plain:
                out.append(bytes(plain.reveal()).decode())
    return sorted(out)


def _row(vault: Vault, name: str) -> Any:
    with vault.db.read() as conn:
        return conn.execute(select(t.records).where(t.records.c.name == name)).one()


def _open(vault: Vault, name: str) -> bytes:
    with vault.db.read() as conn:
        info = vault.get_record(conn, "data", name)
        with vault.open_record(conn, info) as plain:
            return bytes(plain.reveal())


def test_records_live_in_the_bucket_with_a_pointer_and_hash_in_the_row(
    vault: Vault, s3: S3Server, bucket: str
) -> None:
    assert _open_all(vault) == sorted(f"canary-value-{i:04d}" for i in range(RECORDS))
    row = _row(vault, "item3")
    assert row.nonce == b"" and row.ciphertext == b""
    assert row.blob_key == f"ks/test/{vault.vault_id}/data/1/{row.id}.v1.enc"
    assert row.blob_version  # the bucket is versioned: the row pins the version
    body = s3.client().get_object(Bucket=bucket, Key=row.blob_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == row.blob_sha256
    # The hd seed made at init is an object too; the database holds no ciphertext at all.
    with sqlite3.connect(Path(str(vault.db.path))) as conn:
        assert conn.execute("SELECT count(*) FROM records WHERE blob_key IS NULL").fetchone() == (
            0,
        )
    with vault.db.read() as conn:
        assert json.loads(conn.execute(select(t.vault.c.blobs)).scalar() or "")["bucket"] == bucket
    # Replacing a record writes a new object (its version in the name); the old one stays
    # until its epoch is destroyed, and the row moves to the new one.
    data.set_data(vault, "item3", SecretBytes(bytearray(b"new")), data_class=DataClass.STANDARD)
    assert _row(vault, "item3").blob_key.endswith(".v2.enc")
    assert _open(vault, "item3") == b"new"
    # A Vault built from the database alone finds the bucket through the header.
    again = Vault(vault.db, vault.vault_id)
    with SecretBytes(bytearray(b"passphrase-123")) as secret:
        again.unlock(secret)
    assert _open(again, "item3") == b"new"


def test_a_read_through_the_agent_path_fetches_the_object(vault: Vault) -> None:
    from keysafe.service import agents, policies

    agents.add_agent(vault, "bot")
    policies.set_policy(
        vault, "bot", "version: 1\nrules:\n  - name: r\n    allow: [data.read]\n    data: [item7]\n"
    )
    assert data.read_data(vault, "bot", "item7").value == "canary-value-0007"


def test_attack_an_overwritten_object_is_refused_with_integrity_error(
    s3: S3Server, tmp_path: Path
) -> None:
    """In a bucket without versions, an overwrite replaces the bytes the row points at."""
    bucket = s3.new_bucket(versioned=False)
    made = _vault(s3, bucket, tmp_path / "u", records_=2)
    row = _row(made, "item0")
    assert row.blob_version is None
    s3.client().put_object(Bucket=bucket, Key=row.blob_key, Body=b"\x00" * 80)
    with pytest.raises(IntegrityError, match="not the one the vault wrote") as err:
        _open(made, "item0")
    assert "treat the bucket as tampered" in err.value.next_step
    assert _open(made, "item1") == b"canary-value-0001"


def test_attack_an_overwrite_in_a_versioned_bucket_is_ignored_or_refused(
    vault: Vault, s3: S3Server, bucket: str
) -> None:
    """The row pins the version it wrote: a new version on top changes nothing read; a row
    edited to point at the attacker's version is refused by its hash."""
    row = _row(vault, "item0")
    put = s3.client().put_object(Bucket=bucket, Key=row.blob_key, Body=b"\x01" * 80)
    assert _open(vault, "item0") == b"canary-value-0000"
    with vault.db.write() as conn:
        conn.execute(
            update(t.records).where(t.records.c.id == row.id).values(blob_version=put["VersionId"])
        )
    with pytest.raises(IntegrityError, match="not the one the vault wrote"):
        _open(vault, "item0")


def test_attack_an_object_swapped_from_another_record_is_refused(
    vault: Vault, s3: S3Server, bucket: str
) -> None:
    a, b = _row(vault, "item1"), _row(vault, "item2")
    # The pointer swapped: b's object (with its version) named in a's row.
    with vault.db.write() as conn:
        conn.execute(
            update(t.records)
            .where(t.records.c.id == a.id)
            .values(blob_key=b.blob_key, blob_version=b.blob_version)
        )
    with pytest.raises(IntegrityError, match="not the one the vault wrote"):
        _open(vault, "item1")
    # Hash swapped too (an attacker who can edit the database): the AEAD, bound to the record
    # id, still refuses.
    with vault.db.write() as conn:
        conn.execute(
            update(t.records).where(t.records.c.id == a.id).values(blob_sha256=b.blob_sha256)
        )
    with pytest.raises(IntegrityError, match="failed its integrity check"):
        _open(vault, "item1")
    # b's bytes copied onto a's own key (a new version that a's row is edited to pin).
    body = s3.client().get_object(Bucket=bucket, Key=b.blob_key)["Body"].read()
    put = s3.client().put_object(Bucket=bucket, Key=a.blob_key, Body=body)
    with vault.db.write() as conn:
        conn.execute(
            update(t.records)
            .where(t.records.c.id == a.id)
            .values(blob_key=a.blob_key, blob_version=put["VersionId"], blob_sha256=a.blob_sha256)
        )
    with pytest.raises(IntegrityError, match="not the one the vault wrote"):
        _open(vault, "item1")
    assert _open(vault, "item2") == b"canary-value-0002"


def test_attack_a_deleted_object_is_refused_as_missing(
    vault: Vault, s3: S3Server, bucket: str
) -> None:
    row = _row(vault, "item4")
    for v in s3.versions(bucket, row.blob_key):
        s3.client().delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    with pytest.raises(IntegrityError, match="is missing from the bucket") as err:
        _open(vault, "item4")
    assert "backup restore" in err.value.next_step


def test_an_unreachable_store_is_a_store_error_not_a_traceback(vault: Vault) -> None:
    assert isinstance(vault.blobs, S3Blobs)
    dead = BlobConfig(
        vault.blobs.config.bucket, vault.blobs.config.prefix, f"http://127.0.0.1:{free_port()}"
    )
    cut_off = Vault(vault.db, vault.vault_id, blobs=S3Blobs(dead))
    with SecretBytes(bytearray(b"passphrase-123")) as secret:
        cut_off.unlock(secret)
    with pytest.raises(StoreError, match="is unreachable") as err:
        _open(cut_off, "item0")
    assert "endpoint" in err.value.next_step
    with pytest.raises(StoreError, match="is unreachable"):
        data.set_data(cut_off, "new", SecretBytes(bytearray(b"x")), data_class=DataClass.STANDARD)
    with cut_off.db.read() as conn:  # nothing was written
        assert cut_off.find_record(conn, "data", "new") is None


def test_init_refuses_a_missing_bucket_or_bad_url_before_writing(
    s3: S3Server, tmp_path: Path
) -> None:
    home = Home(tmp_path / "nope")
    with pytest.raises(StoreError, match=r"NoSuchBucket|404"):
        init_vault(
            home,
            SecretBytes(bytearray(b"passphrase-123")),
            kdf=CHEAP_KDF,
            blobs_url="s3://no-such-bucket-here/x",
            blobs_endpoint=s3.endpoint,
        )
    assert not home.exists()
    with pytest.raises(MalformedRequestError, match="s3://BUCKET/PREFIX"):
        init_vault(
            home,
            SecretBytes(bytearray(b"passphrase-123")),
            kdf=CHEAP_KDF,
            blobs_url="https://bucket/x",
        )


def test_without_boto3_the_error_says_how_to_install_it(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_module, "boto3", None)
    assert isinstance(vault.blobs, S3Blobs)
    with pytest.raises(StoreError, match="boto3") as err:
        S3Blobs(vault.blobs.config).check()
    assert "pip install 'keysafe[aws]'" in err.value.next_step


def test_rotation_moves_objects_and_destroys_every_old_version(
    vault: Vault, s3: S3Server, bucket: str
) -> None:
    base = f"ks/test/{vault.vault_id}/"
    row = _row(vault, "item5")
    # Garbage under epoch 1: a delete marker over a live version, and an object no row names
    # (as a crash between put and commit leaves).
    s3.client().delete_object(Bucket=bucket, Key=row.blob_key)
    s3.client().put_object(Bucket=bucket, Key=f"{base}data/1/orphan.v1.enc", Body=b"junk")
    assert _open(vault, "item5") == b"canary-value-0005"  # the pinned version is still there
    before = _open_all(vault)

    done = epochs.rotate(vault, reason="owner")
    assert done.destroyed == (1,)
    assert _open_all(vault) == before
    keys = [v["Key"] for v in s3.versions(bucket, base)]
    assert keys and all(k.split("/")[-2] == "2" for k in keys), keys
    assert not [v for v in s3.versions(bucket, base) if "/1/" in v["Key"]]
    assert {_row(vault, f"item{i}").blob_key.split("/")[-2] for i in range(RECORDS)} == {"2"}
    destroy = [e for e in audit.list_entries(vault, limit=100) if e.action == "epoch.destroy"]
    # every record's v1, item5's delete marker, the orphan, the hd seed
    assert int(destroy[-1].details["objects_deleted"]) >= RECORDS + 3


def test_attack_old_copies_and_old_object_versions_stay_closed(
    vault: Vault, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    """Forward secrecy with S3 (as tests/unit/service/test_epochs.py for SQLite): the database
    file and WAL and every object version copied at epoch 1; two rotations later, the current
    master key, its subkeys and every epoch key held since open nothing from the copies, and the
    bucket holds no version from before."""
    db = Path(str(vault.db.path))
    copy = tmp_path / "copy"
    copy.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{db}{suffix}").exists():
            shutil.copy(Path(f"{db}{suffix}"), copy / f"vault.db{suffix}")
    client = s3.client()
    old_objects = {
        (v["Key"], v["VersionId"]): client.get_object(
            Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"]
        )["Body"].read()
        for v in s3.versions(bucket)
        if not v["Marker"]
    }
    assert len(old_objects) >= RECORDS

    epochs.rotate(vault, reason="owner")
    # Every epoch key the process held since the copy: epoch 2's, then epoch 3's.
    held = [SecretBytes(bytearray(k.reveal())) for k in vault._epoch_keys.values()]
    epochs.rotate(vault, reason="owner")
    held += [SecretBytes(bytearray(k.reveal())) for k in vault._epoch_keys.values()]

    master = SecretBytes(vault._require_master().reveal())
    reachable = [master] + [vault.subkey(p) for p in ("audit-hmac", "backup", "state-mac")]
    reachable += held
    with sqlite3.connect(copy / "vault.db") as old:
        old_epochs = list(old.execute("SELECT number, nonce, wrapped_key FROM epochs"))
        rows = list(
            old.execute(
                "SELECT id, kind, name, data_class, epoch, version, meta, dek_nonce, dek_wrapped, "
                "blob_key, blob_version FROM records"
            )
        )
    for number, nonce, wrapped in old_epochs:
        for key in reachable:
            if wrapped:
                with pytest.raises(aead.DecryptionError):
                    hierarchy.unwrap_epoch_key(key, vault.vault_id, number, nonce, wrapped)
    opened = 0
    for rid, kind, name, cls, epoch, version, meta, dek_nonce, dek_wrapped, key, vid in rows:
        body = old_objects[(key, vid)]
        ref = records.RecordRef(rid, kind, name, cls, version, json.loads(meta))
        sealed = records.Sealed(epoch, dek_nonce, dek_wrapped, body[:24], body[24:])
        for k in reachable:
            try:
                records.open_sealed(vault.vault_id, k, ref, sealed)
                opened += 1
            except IntegrityError:
                pass
    assert opened == 0 and len(rows) >= RECORDS
    now = {(v["Key"], v["VersionId"]) for v in s3.versions(bucket)}
    assert not now & set(old_objects), "old object versions are still in the bucket"
    assert all(v["Key"].split("/")[-2] == "3" for v in s3.versions(bucket))


def test_a_backup_carries_the_ciphertext_and_restores_into_the_bucket(
    vault: Vault, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    file = tmp_path / "b.ksbackup"
    assert backup.create_backup(vault, file).records >= RECORDS
    # The bucket loses a record's object: a restore into the vault puts it back.
    row = _row(vault, "item6")
    for v in s3.versions(bucket, row.blob_key):
        s3.client().delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    with pytest.raises(IntegrityError):
        _open(vault, "item6")
    backup.restore_into(vault, file)
    assert _open(vault, "item6") == b"canary-value-0006"
    assert _row(vault, "item6").blob_key is not None
    # On an empty home the backup alone (no bucket) rebuilds every record, in the database.
    words = PHRASES[vault.vault_id]
    rebuilt, _ = backup.restore_new(
        Home(tmp_path / "new"),
        file,
        words,
        SecretBytes(bytearray(b"passphrase-789")),
        kdf=CHEAP_KDF,
    )
    assert _open_all(rebuilt) == _open_all(vault)
    assert _row(rebuilt, "item6").blob_key is None
    # ... or, asked to, into a bucket again (here another one).
    other = s3.new_bucket()
    into_s3, _ = backup.restore_new(
        Home(tmp_path / "new-s3"),
        file,
        words,
        SecretBytes(bytearray(b"passphrase-789")),
        kdf=CHEAP_KDF,
        blobs_url=f"s3://{other}/again",
        blobs_endpoint=s3.endpoint,
    )
    assert _open_all(into_s3) == _open_all(vault)
    assert _row(into_s3, "item6").blob_key.startswith(f"again/{vault.vault_id}/data/")
    assert len(s3.versions(other)) >= RECORDS


def test_a_vault_without_blobs_writes_rows_and_backups_as_before(tmp_path: Path) -> None:
    made, _ = init_vault(
        Home(tmp_path / "plain"), SecretBytes(bytearray(b"passphrase-123")), kdf=CHEAP_KDF
    )
    data.set_data(made, "x", SecretBytes(bytearray(b"v")), data_class=DataClass.STANDARD)
    row = _row(made, "x")
    assert row.ciphertext and row.blob_key is None and row.blob_sha256 is None
    with made.db.read() as conn:
        assert conn.execute(select(t.vault.c.blobs)).scalar() is None
        dumped = made.inline_row(dict(conn.execute(select(t.records)).mappings().first() or {}))
    assert "blob_key" not in dumped and dumped["ciphertext"]


def test_a_vault_at_schema_0009_migrates_and_reads_as_before(tmp_path: Path) -> None:
    home = Home(tmp_path / "old")
    made, _ = init_vault(home, SecretBytes(bytearray(b"passphrase-123")), kdf=CHEAP_KDF)
    data.set_data(made, "x", SecretBytes(bytearray(b"kept")), data_class=DataClass.STANDARD)
    made.lock()
    made.db.close()
    with sqlite3.connect(home.db_path) as conn:  # as keysafe wrote it before schema 0011
        for column in ("blob_key", "blob_version", "blob_sha256"):
            conn.execute(f"ALTER TABLE records DROP COLUMN {column}")
        conn.execute("ALTER TABLE vault DROP COLUMN blobs")
        conn.execute("UPDATE alembic_version SET version_num = '0009'")
    reopened = open_vault(home)
    assert reopened.db.schema_revision() == SCHEMA_HEAD
    with SecretBytes(bytearray(b"passphrase-123")) as secret:
        reopened.unlock(secret)
    assert _open(reopened, "x") == b"kept" and reopened.blobs.description == "database"
    assert _row(reopened, "x").blob_key is None


def test_a_crash_between_put_and_commit_keeps_the_old_record_in_any_bucket(
    s3: S3Server, tmp_path: Path
) -> None:
    """The object is put before the row is committed; the version in its name means even a
    bucket without versions never loses the object the committed row points at."""
    bucket = s3.new_bucket(versioned=False)
    made = _vault(s3, bucket, tmp_path / "c", records_=1)
    with pytest.raises(RuntimeError), made.db.write() as conn:
        made.put_record(
            conn,
            kind="data",
            name="item0",
            data_class="standard",
            meta={},
            plaintext=SecretBytes(bytearray(b"new")),
            replace=True,
        )
        raise RuntimeError("killed before the commit")
    assert _open(made, "item0") == b"canary-value-0000"
    keys = {v["Key"].rsplit("/", 1)[-1].split(".", 1)[-1] for v in s3.versions(bucket, "ks/")}
    assert {"v1.enc", "v2.enc"} <= keys  # v2 is garbage until epoch 1 is destroyed
    epochs.rotate(made, reason="owner")
    assert not [v for v in s3.versions(bucket, "ks/") if "/1/" in v["Key"]]
    assert _open(made, "item0") == b"canary-value-0000"


def test_an_endpoint_without_a_bucket_or_with_credentials_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MalformedRequestError, match="needs --blobs"):
        init_vault(
            Home(tmp_path / "e"),
            SecretBytes(bytearray(b"passphrase-123")),
            kdf=CHEAP_KDF,
            blobs_endpoint="http://127.0.0.1:9",
        )
    with pytest.raises(MalformedRequestError, match="must not carry credentials") as err:
        BlobConfig.parse("s3://bucket/x", endpoint="https://AKIA:canary-s3cret@s3.example.com")
    assert "canary-s3cret" not in str(err.value) + err.value.next_step
    with pytest.raises(MalformedRequestError, match="http"):
        BlobConfig.parse("s3://bucket/x", endpoint="ftp://s3.example.com")


def test_doctor_checks_the_bucket_answers(vault: Vault, tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    nowhere = f"http://127.0.0.1:{free_port()}"
    found = {f.check: f for f in doctor.diagnose(home, server_url=nowhere, timeout=1).findings}
    assert found["blobs"].status is Status.OK and "answers" in found["blobs"].summary
    assert isinstance(vault.blobs, S3Blobs)
    dead = BlobConfig(vault.blobs.config.bucket, vault.blobs.config.prefix, nowhere)
    with vault.db.write() as conn:
        conn.execute(update(t.vault).values(blobs=dead.to_json()))
    found = {f.check: f for f in doctor.diagnose(home, server_url=nowhere, timeout=1).findings}
    assert found["blobs"].status is Status.FAIL
    assert "unreachable" in found["blobs"].summary and found["blobs"].fix
