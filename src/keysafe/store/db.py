"""Opening the SQL store: SQLite (WAL, synchronous=FULL) by default, PostgreSQL when
`KEYSAFE_DATABASE_URL` names one (several servers on one database); migrated by Alembic.

Rules this module enforces:
- Writes run in `BEGIN IMMEDIATE` transactions on SQLite, so a read-check-write sequence (the
  audit chain head, unlock throttling) is serialised across processes. On PostgreSQL every
  write transaction first locks the vault header row (`SELECT … FOR UPDATE`), which gives the
  same guarantee across processes and machines (`Database.write`).
- The database file is created 0600 before SQLite opens it; SQLite's unix VFS gives the `-wal`
  and `-shm` files the same mode as the database.
- A file that is not a keysafe database, or one written by a newer keysafe, is refused with a
  message saying what to do, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any, Final

from sqlalchemy import URL, Connection, Engine, inspect, text
from sqlalchemy.exc import DatabaseError, OperationalError

from keysafe.errors import StoreError
from keysafe.store.engines import pg_engine, sqlite_engine, sqlite_readonly_engine
from keysafe.store.faults import short
from keysafe.store.probe import check_schema, not_a_vault, probe, probe_url, redacted

logger = logging.getLogger(__name__)

SCHEMA_HEAD: Final = "0014"
# PostgreSQL advisory lock keys (one 64-bit space per database). MIGRATE: one process at a time
# runs Alembic (two servers starting together must not both create the tables). SERVING: every
# `keysafe serve` holds it shared for its life, so a starting server can tell whether another
# one is running (in_flight.recover must not settle another live server's requests).
_PG_LOCK_MIGRATE: Final = 0x6B657973_61666501
_PG_LOCK_SERVING: Final = 0x6B657973_61666502


class Database:
    """One SQL store. `write()` gives a serialised transaction; `read()` a plain connection."""

    def __init__(self, engine: Engine, *, path: Path | None = None) -> None:
        self.engine = engine
        self.path = path
        # The connection that holds this process's share of _PG_LOCK_SERVING (announce_server).
        self._presence: Connection | None = None
        # SQLite has one writer at a time. Threads of this process queue here, in order, instead
        # of sleeping in SQLite's busy handler and retrying by luck (which made the tail latency
        # under load); other processes still meet the busy handler. Reentrant so a bug that
        # nests writes fails in SQLite's own way rather than deadlocking here.
        self._writers = threading.RLock()
        # `quick_read`'s connections: one per thread that asks, closed with the store.
        self._quick = threading.local()
        self._quick_all: list[sqlite3.Connection] = []
        self._quick_guard = threading.Lock()

    @classmethod
    def open_sqlite(cls, path: Path, *, create: bool) -> Database:
        state = probe(path)  # refuses foreign, corrupt or newer files before touching them
        if create and state == "missing":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        elif state == "missing":
            raise StoreError(
                f"No vault database at {path}.",
                next_step="run `keysafe init`, or `keysafe recover` to rebuild from a phrase.",
            )
        db = cls(sqlite_engine(path), path=path)
        db._migrate()
        return db

    @classmethod
    def open_postgresql(cls, url: URL, *, create: bool) -> Database:
        """Open (and migrate) the PostgreSQL database at `url` (see `database_url`).

        Raises:
            StoreError: unreachable, foreign or newer (as `probe_url`), or, without `create`,
                no vault in it yet.
        """
        state = probe_url(url)
        if not create and state != "vault":
            raise StoreError(
                f"No vault in the database {redacted(url)}.",
                next_step="run `keysafe init` (or `keysafe recover`) with this "
                "KEYSAFE_DATABASE_URL first.",
            )
        db = cls(pg_engine(url))
        try:
            db._migrate()
        except BaseException:
            db.close()
            raise
        return db

    @classmethod
    def open_postgresql_readonly(cls, url: URL) -> Database:
        """`open_sqlite_readonly` for PostgreSQL: no migration, nothing written (diagnostics).

        Raises:
            StoreError: unreachable, foreign, from a newer keysafe, or holding no vault.
        """
        if probe_url(url) == "empty":
            raise StoreError(
                f"No vault in the database {redacted(url)}.",
                next_step="run `keysafe init` with this KEYSAFE_DATABASE_URL first.",
            )
        return cls(pg_engine(url))

    @property
    def shared(self) -> bool:
        """Whether other servers may write to this store between this process's transactions
        (PostgreSQL): what a process keeps in memory must then be checked against the rows."""
        return self.engine.dialect.name != "sqlite"

    def announce_server(self) -> bool:
        """Mark this process as a running server for as long as it lives (PostgreSQL), and say
        whether it is the only one. SQLite: one server per home (its serve lock), so True.

        The mark is a shared session-level advisory lock on a connection kept open for the
        process's life: PostgreSQL drops it when the process (or its connection) dies, so a
        crashed server never looks alive. Being alone is trying the same lock exclusively on that
        connection (a session never conflicts with itself), then letting go of the exclusive hold.
        """
        if not self.shared:
            return True
        if self._presence is None:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text("SELECT pg_advisory_lock_shared(:k)"), {"k": _PG_LOCK_SERVING})
            self._presence = conn
        alone = bool(
            self._presence.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": _PG_LOCK_SERVING}
            ).scalar()
        )
        if alone:
            self._presence.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_SERVING})
        return alone

    @classmethod
    def open_sqlite_readonly(cls, path: Path) -> Database:
        """Open an existing vault database for reading only: no migration, no journal change, no
        write (for diagnostics, which must leave the vault as they found it). A schema an older
        keysafe wrote stays as it is; `schema_revision` tells the caller.

        Raises:
            StoreError: the file is missing, not a keysafe database, or from a newer keysafe.
        """
        if probe(path) in ("missing", "empty"):
            raise StoreError(
                f"No vault in {path}"
                + (" (an empty file an interrupted init left behind)." if path.exists() else "."),
                next_step="run `keysafe init`, or `keysafe recover` to rebuild from a phrase.",
            )
        return cls(sqlite_readonly_engine(path), path=path)

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None: not migrated at all)."""
        with self.engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return None
            value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return None if value is None else str(value)

    def _migrate(self) -> None:
        if self.shared:
            # Two servers starting at once: the second waits here, then finds the schema done.
            with self.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_MIGRATE})
                try:
                    conn.commit()
                    self._migrate_now()
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_MIGRATE})
                    conn.commit()
            return
        self._migrate_now()

    def _migrate_now(self) -> None:
        try:
            with self.engine.connect() as conn:
                names = set(inspect(conn).get_table_names())
                current = None
                if "alembic_version" in names:
                    current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (DatabaseError, OperationalError) as exc:
            raise not_a_vault(self.path or Path("?"), short(exc)) from None
        if current == SCHEMA_HEAD:
            return
        foreign = not_a_vault(self.path or Path("?"), "it holds tables keysafe did not create")
        check_schema(names, current, foreign=foreign)
        self._run_alembic()

    def _run_alembic(self) -> None:
        # Imported here: Alembic is only needed when the schema changes, not on every command.
        from alembic import command
        from alembic.config import Config

        script_dir = resources.files("keysafe.store") / "migrations"
        cfg = Config()
        cfg.set_main_option("script_location", str(script_dir))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        logger.info("store migrated to schema %s", SCHEMA_HEAD)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A serialised read-write transaction; committed on success, rolled back on error."""
        if self.shared:
            with self._writers, self.engine.connect() as conn, conn.begin():
                _lock_vault_row(conn)
                yield conn
            return
        with self._writers, self.engine.connect() as conn:
            conn.info["begin"] = "BEGIN IMMEDIATE"
            with conn.begin():
                yield conn

    def checkpoint(self) -> None:
        """After epochs were destroyed: leave no copy of the rows since overwritten in the
        database's files. SQLite: copy the WAL into the file and truncate it (secure_delete has
        zeroed the old pages). PostgreSQL: an UPDATE leaves the old row version in the table file
        until it is vacuumed, so the two tables that held old ciphertext and old epoch keys are
        rewritten (VACUUM FULL writes new files and unlinks the old ones; it locks the two
        tables for as long, a moment for a vault's few records). PostgreSQL's WAL, archives,
        replicas and dumps are beyond keysafe's reach (docs/postgresql.md)."""
        if self.shared:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM needs it
                conn.execute(text("VACUUM FULL epochs, records"))
            return
        with self._writers, self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction: one snapshot of the database for all its statements."""
        if self.shared:
            # SQLite's read transaction sees one snapshot; PostgreSQL's READ COMMITTED takes a
            # new one per statement, so a read of the audit head and then of the entries, with
            # another server appending in between, saw a tail "added behind the head" (a false
            # tamper alarm). REPEATABLE READ is one snapshot; a transaction that only reads
            # never fails for it. Reads take no lock, as on SQLite.
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
            return
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def quick_read(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]] | None:
        """One read-only SELECT without SQLAlchemy's overhead (about 15 µs instead of 450 µs),
        for the per-request token check, on a plain SQLite connection of this thread's own.

        It reads the committed state of the file at that moment, like `read()`: every write by
        this process or another one that committed before is seen. The statement is run to its
        end (`fetchall`), so no read transaction stays open to hold the WAL back. It never
        waits for a lock (a busy database answers None): the caller then takes its ordinary
        path, which may wait. PostgreSQL always answers None: a statement there is a network
        round trip, which may wait, and the caller runs this on its event loop.

        Args:
            sql: one SELECT statement with `?` placeholders; it must not write.
            params: the placeholders' values.
        """
        if self.path is None or self.engine.dialect.name != "sqlite":
            return None
        conn: sqlite3.Connection | None = getattr(self._quick, "conn", None)
        try:
            if conn is None:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                conn = sqlite3.connect(
                    uri, uri=True, timeout=0, isolation_level=None, check_same_thread=False
                )
                with self._quick_guard:
                    self._quick_all.append(conn)
                self._quick.conn = conn
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error:
            return None

    def writer_free(self, *, wait_s: float) -> bool:
        """Can a writer start within `wait_s`? `write_lock_free` for this store: on PostgreSQL,
        can the vault row be locked that soon (takes it for an instant, writes nothing)."""
        if not self.shared:
            assert self.path is not None
            return write_lock_free(self.path, wait_s=wait_s)
        with self.engine.connect() as conn, conn.begin():
            conn.execute(text(f"SET LOCAL lock_timeout = {int(wait_s * 1000)}"))
            try:
                _lock_vault_row(conn)
            except OperationalError as exc:
                if "lock timeout" in str(exc):
                    return False
                raise
        return True

    def close(self) -> None:
        if self._presence is not None:
            # Let go of the server mark at once (a killed process loses it with its session, a
            # moment later), and close the session rather than pool it with the mark on it.
            with suppress(DatabaseError):  # gone: the session, and the mark, went with it
                self._presence.execute(
                    text("SELECT pg_advisory_unlock_shared(:k)"), {"k": _PG_LOCK_SERVING}
                )
            self._presence.invalidate()
            self._presence.close()
            self._presence = None
        with self._quick_guard:
            for conn in self._quick_all:
                conn.close()
            self._quick_all.clear()
        self._quick = threading.local()
        self.engine.dispose()


def _lock_vault_row(conn: Connection) -> None:
    """PostgreSQL: the first statement of every write transaction, so writers run one at a time
    across every server on the database, as SQLite's BEGIN IMMEDIATE makes them run.

    Why one lock on the vault header row, not a lock per thing written: the header carries the
    audit chain head, and every agent action (and every owner change) appends to the audit
    chain, so every write transaction would meet on that row anyway, only later, after it had
    read its budgets, idempotency key or approval state (two servers could then both pass a
    check and the second would deadlock or fork the chain). Taken first, it makes each write's
    read-check-write sequence (budget windows, the chain head, unlock throttling, idempotency
    keys, an approval claimed for execution) see every earlier write and finish before the next
    begins; under READ COMMITTED each later statement reads what the previous holder committed.
    Reads (`read()`) take no lock and never wait for it. Before the header exists (init,
    restore into an empty database) the table itself is locked against other writers.
    """
    if conn.execute(text("SELECT id FROM vault FOR UPDATE")).first() is None:
        conn.execute(text("LOCK TABLE vault IN EXCLUSIVE MODE"))


def write_lock_free(path: Path, *, wait_s: float) -> bool:
    """Can a writer start on the database at `path` within `wait_s`? False when another process
    holds SQLite's write lock that long: every keysafe command that writes would queue behind it
    (for engines.BUSY_TIMEOUT_S, then fail). Takes the lock for an instant and writes nothing."""
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=wait_s, isolation_level=None
    )
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return False
        raise
    finally:
        conn.close()
