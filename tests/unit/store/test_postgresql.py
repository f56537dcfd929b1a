"""The PostgreSQL store (store/db.py) and what several servers on one database rely on: the URL
rules, 64-bit columns where SQLite had them, the servers' presence mark, one header per database,
scheduled rotations that do not repeat, and epoch keys another server made or destroyed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import AlreadyExistsError, StoreError
from keysafe.service import audit, data, epochs
from keysafe.service.context import open_database, open_vault
from keysafe.service.models import DataClass
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.store.db import Database
from keysafe.store.probe import database_url, redacted
from keysafe.testing import CHEAP_KDF, ManualClock
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

PASSPHRASE = b"correct horse battery staple"
THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000  # past 2**31: PostgreSQL's INTEGER would overflow


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_database_url_runs_postgresql_urls_with_psycopg(given: str, expected: str) -> None:
    assert database_url(given).render_as_string() == expected


@pytest.mark.parametrize(
    "given", ["sqlite:///x.db", "mysql://u@h/db", "postgresql://u@h", "not a url"]
)
def test_database_url_refuses_what_is_not_a_postgresql_database(given: str) -> None:
    with pytest.raises(StoreError, match="must be a PostgreSQL URL"):
        database_url(given)


def test_redacted_url_never_shows_the_password() -> None:
    shown = redacted(database_url("postgresql://keysafe:s3cret-canary@db:5432/vault"))
    assert "s3cret-canary" not in shown and shown.startswith("postgresql://keysafe:")


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    made = Database.open_postgresql(database_url(pg_url), create=True)
    yield made
    made.close()


def test_migrations_make_64_bit_columns_where_sqlite_had_them(db: Database) -> None:
    with db.write() as conn:
        conn.execute(
            insert(t.ledger_totals).values(
                agent="a",
                rule="r",
                window_ms=THIRTY_DAYS_MS,
                asset="",
                units="0",
                requests=0,
                horizon=0.0,
            )
        )
        conn.execute(
            insert(t.registry_chains).values(name="palm", family="evm", chain_id=11297108109)
        )
    with db.read() as conn:
        assert conn.execute(select(t.ledger_totals.c.window_ms)).scalar() == THIRTY_DAYS_MS
        assert conn.execute(select(t.registry_chains.c.chain_id)).scalar() == 11297108109


def test_migrations_leave_string_lengths_unenforced_as_sqlite_does(db: Database) -> None:
    long_target = "http:" + "x" * 2000  # an audit target longer than its String(300)
    with db.write() as conn:
        conn.execute(
            insert(t.audit).values(
                seq=1,
                time="t",
                actor="a",
                action="b",
                target=long_target,
                outcome="success",
                details="{}",
                prev_hash="0" * 64,
                hash="1" * 64,
            )
        )
    with db.read() as conn:
        assert conn.execute(select(t.audit.c.target)).scalar() == long_target


def test_announce_server_says_alone_only_while_no_other_server_lives(pg_url: str) -> None:
    url = database_url(pg_url)
    first = Database.open_postgresql(url, create=True)
    second = Database.open_postgresql(url, create=True)
    try:
        assert first.announce_server() is True
        assert second.announce_server() is False  # the first still serves
        first.close()  # a server that stops (or dies) lets go of its mark with its session
        assert second.announce_server() is True
    finally:
        first.close()
        second.close()


def test_writer_free_is_false_while_another_writer_holds_the_vault_row(pg_url: str) -> None:
    home = Home(Path("/nonexistent-home"), pg_url)
    vault, phrase = init_vault(home, SecretBytes(bytearray(PASSPHRASE)), kdf=CHEAP_KDF)
    phrase.wipe()
    other = open_database(home, create=False)
    try:
        with vault.db.write():
            assert other.writer_free(wait_s=0.2) is False
        assert other.writer_free(wait_s=0.2) is True
    finally:
        other.close()
        vault.lock()
        vault.db.close()


def test_attack_two_inits_at_once_on_one_database_make_one_vault(
    pg_url: str, tmp_path: Path
) -> None:
    barrier = threading.Barrier(2)
    made: list[Vault] = []
    refused: list[BaseException] = []

    def init(name: str) -> None:
        barrier.wait(timeout=30)
        try:
            vault, phrase = init_vault(
                Home(tmp_path / name, pg_url), SecretBytes(bytearray(PASSPHRASE)), kdf=CHEAP_KDF
            )
            phrase.wipe()
            made.append(vault)
        except AlreadyExistsError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=init, args=(n,)) for n in ("a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert (len(made), len(refused)) == (1, 1)
    with made[0].db.read() as conn:
        assert conn.execute(select(func.count()).select_from(t.vault)).scalar() == 1
    made[0].lock()
    made[0].db.close()


def _two_servers(pg_url: str, tmp_path: Path, clock: ManualClock) -> tuple[Vault, Vault]:
    """A vault with a few records, and two unlocked handles on it, as two servers have."""
    home = Home(tmp_path / "owner", pg_url)
    vault, phrase = init_vault(home, SecretBytes(bytearray(PASSPHRASE)), kdf=CHEAP_KDF, clock=clock)
    phrase.wipe()
    with vault:
        for i in range(5):
            value = SecretBytes(bytearray(f"value-{i}".encode()))
            data.set_data(vault, f"item{i}", value, data_class=DataClass.STANDARD)
    servers = []
    for name in ("a", "b"):
        server = open_vault(Home(tmp_path / name, pg_url), clock=clock)
        server.unlock(SecretBytes(bytearray(PASSPHRASE)))
        servers.append(server)
    return servers[0], servers[1]


def _read_all(vault: Vault) -> list[str]:
    out = []
    with vault.db.read() as conn:
        for info in vault.list_records(conn, "data"):
            with vault.open_record(conn, info) as plain:
                out.append(bytes(plain.reveal()).decode())
    return sorted(out)


def test_attack_servers_that_both_found_a_rotation_due_rotate_once(
    pg_url: str, tmp_path: Path
) -> None:
    clock = ManualClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    a, b = _two_servers(pg_url, tmp_path, clock)
    try:
        every = timedelta(days=7)
        clock.now += every  # both servers' schedules find the epoch due at once
        assert epochs.due(a, every) and epochs.due(b, every)
        barrier = threading.Barrier(2)
        done: list[epochs.Rotation] = []

        def rotate(server: Vault) -> None:
            barrier.wait(timeout=30)
            done.append(epochs.rotate(server, reason="schedule", unless_newer_than=every))

        threads = [threading.Thread(target=rotate, args=(s,)) for s in (a, b)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
        assert sorted(r.epoch for r in done) == [2, 2]  # one new epoch, not two
        with a.db.read() as conn:
            rotations = conn.execute(
                select(func.count()).select_from(t.audit).where(t.audit.c.action == "epoch.rotate")
            ).scalar()
        assert rotations == 1
    finally:
        for server in (a, b):
            server.lock()
            server.db.close()


def test_a_server_opens_the_epoch_another_server_made_and_forgets_the_one_it_destroyed(
    pg_url: str, tmp_path: Path
) -> None:
    clock = ManualClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    a, b = _two_servers(pg_url, tmp_path, clock)
    try:
        before = _read_all(a)
        assert epochs.rotate(b, reason="owner").destroyed == (1,)
        assert _read_all(a) == before  # every record is under epoch 2 now, which b made
        assert set(a._epoch_keys) == {2}  # epoch 1's key is gone from a's memory too
        data.set_data(a, "new", SecretBytes(bytearray(b"written by a")), data_class="standard")
        assert "written by a" in _read_all(b)
    finally:
        for server in (a, b):
            server.lock()
            server.db.close()


def test_the_vault_row_is_locked_by_every_write(db: Database) -> None:
    with db.write() as conn:
        locks = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'vault' AND l.pid = pg_backend_pid() "
                "AND l.mode IN ('RowShareLock', 'ExclusiveLock')"
            )
        ).scalar()
    assert locks and locks >= 1


def test_attack_audit_verify_while_another_server_appends_sees_one_consistent_chain(
    pg_url: str, tmp_path: Path
) -> None:
    """`read()` is one snapshot on PostgreSQL as on SQLite: the chain head and the entries are
    read as of one moment. Statement by statement (READ COMMITTED) an entry appended between
    the two reads showed as a tampered tail: a false alarm whenever another server was busy."""
    clock = ManualClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    a, b = _two_servers(pg_url, tmp_path, clock)
    stop = threading.Event()

    def append() -> None:
        while not stop.is_set():
            with b.db.write() as conn:
                b.audit(conn, actor="owner", action="test.tick", target="t", outcome="success")

    writer = threading.Thread(target=append)
    writer.start()
    try:
        reports = [audit.verify(a) for _ in range(40)]
    finally:
        stop.set()
        writer.join(timeout=30)
        for server in (a, b):
            server.lock()
            server.db.close()
    assert [r.problem for r in reports if not r.ok] == []
