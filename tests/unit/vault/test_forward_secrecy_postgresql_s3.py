"""Forward secrecy on PostgreSQL with S3 blobs and two servers (issue 18, acceptance 1): a dump
of the database and every object version at epoch 1; two rotations later, every key a running
server holds (the master key, its subkeys, every epoch key held since, on both servers) opens
nothing from the copies, and the bucket keeps no version from before.

A second server follows the rotations from the epoch keys it holds (`epochs.sealed_prev`): it
keeps no key that opens old copies (before schema 0014 it kept the passphrase's sealing key,
which opened the dump's `sealed_pass` rows; the last assertion here failed then)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keysafe.crypto import aead
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError
from keysafe.service import data, epochs
from keysafe.service.context import open_vault
from keysafe.service.models import DataClass
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault import hierarchy, records
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault
from tests.s3_fixture import S3Server, moto_s3

PASSPHRASE = b"correct horse battery staple"
RECORDS = 12


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3() as server:
        yield server


def _dump(url: str, table: str) -> list[dict[str, Any]]:
    """What `pg_dump` would keep of a table: every row as it is now."""
    with psycopg.connect(url.split("?")[0], options=_search_path(url)) as conn:
        cur = conn.execute(f"SELECT * FROM {table}")
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _search_path(url: str) -> str:
    return "-c search_path=" + url.split("search_path%3D")[1] if "search_path" in url else ""


def _held_keys(*servers: Vault) -> list[SecretBytes]:
    return [SecretBytes(bytearray(k.reveal())) for s in servers for k in s._epoch_keys.values()]


def test_attack_a_dump_and_old_object_versions_stay_closed_to_every_key_two_servers_hold(
    pg_url: str, s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    vault, phrase = init_vault(
        Home(tmp_path / "owner", pg_url),
        SecretBytes(bytearray(PASSPHRASE)),
        kdf=CHEAP_KDF,
        blobs_url=f"s3://{bucket}/ks",
        blobs_endpoint=s3.endpoint,
    )
    phrase.wipe()
    with vault:
        for i in range(RECORDS):
            value = SecretBytes(bytearray(f"canary-value-{i:04d}".encode()))
            data.set_data(vault, f"item{i}", value, data_class=DataClass.STANDARD)
    a, b = (open_vault(Home(tmp_path / n, pg_url)) for n in ("a", "b"))
    for server in (a, b):
        server.unlock(SecretBytes(bytearray(PASSPHRASE)))
    try:
        old_epochs, old_records = _dump(pg_url, "epochs"), _dump(pg_url, "records")
        client = s3.client()
        old_objects = {
            (v["Key"], v["VersionId"]): client.get_object(
                Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"]
            )["Body"].read()
            for v in s3.versions(bucket)
            if not v["Marker"]
        }
        assert len(old_records) == len(old_objects) >= RECORDS

        held = []
        for rotating in (b, a):  # each server rotates once; the other follows
            epochs.rotate(rotating, reason="owner")
            for server in (a, b):  # both still read everything, under the new epoch
                with server.db.read() as conn:
                    for info in server.list_records(conn, "data"):
                        with server.open_record(conn, info) as plain:
                            assert plain.reveal().startswith(b"canary-value-")
            held += _held_keys(a, b)

        master = SecretBytes(a._require_master().reveal())
        reachable = [master, *(a.subkey(p) for p in ("audit-hmac", "backup", "state-mac"))]
        reachable += held
        seal_keys = [v for s in (a, b) for v in vars(s).values() if isinstance(v, X25519PrivateKey)]
        for row in old_epochs:
            for key in reachable:
                if row["wrapped_key"]:
                    with pytest.raises(aead.DecryptionError):
                        hierarchy.unwrap_epoch_key(
                            key, a.vault_id, row["number"], row["nonce"], row["wrapped_key"]
                        )
            for seal_key in seal_keys:
                with pytest.raises(aead.DecryptionError):
                    hierarchy.open_epoch_key(
                        seal_key, a.vault_id, row["number"], row["sealed_pass"]
                    )
        opened = 0
        for r in old_records:
            body = old_objects[(r["blob_key"], r["blob_version"])]
            ref = records.RecordRef(
                r["id"], r["kind"], r["name"], r["data_class"], r["version"], json.loads(r["meta"])
            )
            sealed = records.Sealed(
                r["epoch"], r["dek_nonce"], r["dek_wrapped"], body[:24], body[24:]
            )
            for key in reachable:
                try:
                    records.open_sealed(a.vault_id, key, ref, sealed)
                    opened += 1
                except IntegrityError:
                    pass
        assert opened == 0
        assert not {(v["Key"], v["VersionId"]) for v in s3.versions(bucket)} & set(old_objects)
        assert seal_keys == [], "a running server keeps a key that opens old copies' epochs"
    finally:
        for server in (a, b):
            server.lock()
            server.db.close()
