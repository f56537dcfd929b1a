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

from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, DatabaseError, DataError, OperationalError

from keysafe.errors import (
    AuditWriteError,
    IntegrityError,
    KeysafeError,
    MalformedRequestError,
    StoreError,
)
from keysafe.store import hot

logger = logging.getLogger(__name__)

SCHEMA_HEAD: Final = "0014"
_KNOWN_REVISIONS: Final = frozenset(
    {
        "0001",
        "0002",
        "0003",
        "0004",
        "0005",
        "0006",
        "0007",
        "0008",
        "0009",
        "0010",
        "0011",
        "0013",
        "0014",
    }
)
_BUSY_TIMEOUT_S: Final = 30.0
# PostgreSQL advisory lock keys (one 64-bit space per database). MIGRATE: one process at a time
# runs Alembic (two servers starting together must not both create the tables). SERVING: every
# `keysafe serve` holds it shared for its life, so a starting server can tell whether another
# one is running (gate.recover must not settle another live server's requests).
_PG_LOCK_MIGRATE: Final = 0x6B657973_61666501
_PG_LOCK_SERVING: Final = 0x6B657973_61666502
_PG_SCHEMES: Final = ("postgresql", "postgres", "postgresql+psycopg")


def database_url(raw: str) -> URL:
    """The SQLAlchemy URL of a `KEYSAFE_DATABASE_URL`: `postgresql://…` (or `postgres://…`) is
    run with psycopg 3, whatever driver the user's URL names or leaves out.

    Raises:
        StoreError: not a PostgreSQL URL (a SQLite vault is chosen with KEYSAFE_HOME instead).
    """
    try:
        url = make_url(raw)
    except ArgumentError:
        url = None
    if url is None or url.drivername not in _PG_SCHEMES or not url.database:
        raise StoreError(
            "KEYSAFE_DATABASE_URL must be a PostgreSQL URL naming a database "
            "(postgresql://USER@HOST:PORT/DATABASE); this one is not.",
            next_step="fix KEYSAFE_DATABASE_URL, or unset it to keep the vault in KEYSAFE_HOME "
            "(SQLite).",
        )
    return url.set(drivername="postgresql+psycopg")


def redacted(url: URL) -> str:
    """The URL for messages and logs, as the user wrote it (postgresql://), never the password."""
    return url.set(drivername="postgresql").render_as_string(hide_password=True)


def _not_a_vault(path: Path, why: str) -> StoreError:
    return StoreError(
        f"The file {path} is not a readable keysafe vault database ({why}).",
        next_step=(
            "check KEYSAFE_HOME points at your vault; if the file is damaged, move it aside and "
            "rebuild with `keysafe recover` then `keysafe backup restore FILE`."
        ),
        path=str(path),
    )


def probe(path: Path) -> str:
    """What is at `path`, looked at read-only (a refused file is never modified).

    Returns "missing", "empty" (zero bytes or no tables), "unfinished" (keysafe's schema but no
    vault header: an interrupted init) or "vault". Raises StoreError for a file that is not a
    keysafe database, is corrupted, or was written by a newer keysafe.
    """
    if not path.exists():
        return "missing"
    if path.stat().st_size == 0:
        return "empty"
    if not (os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)):
        # Checked before SQLite says "unable to open database file", which reads like damage:
        # the advice for damage (rebuild) is the wrong one for a healthy read-only vault.
        raise StoreError(
            f"The vault database {path} is read-only (its file or folder cannot be written, or "
            "the disk is mounted read-only). keysafe writes even to read (the database journal, "
            "the audit log), so nothing was opened or changed; nothing suggests it is damaged.",
            next_step="make KEYSAFE_HOME writable for this user (remount the disk read-write, "
            "or `chmod u+w` the folder and vault.db), or copy the home somewhere writable.",
            path=str(path),
        )
    try:
        # as_uri() percent-escapes the path: a '?', '#' or '%' in KEYSAFE_HOME stays in the path.
        uri = f"{path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S)
        try:
            names = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            current = None
            if "alembic_version" in names:
                current = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                current = current[0] if current else None
            has_header = (
                "vault" in names and conn.execute("SELECT count(*) FROM vault").fetchone()[0] > 0
            )
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise _not_a_vault(path, str(exc).splitlines()[0][:200]) from None
    if not names:
        return "empty"
    if current is None and names - {"alembic_version"}:
        raise _not_a_vault(path, "it holds tables keysafe did not create")
    if current is not None and current not in _KNOWN_REVISIONS:
        raise StoreError(
            f"The vault database was written by a newer keysafe (schema {current}).",
            next_step="upgrade keysafe (`pip install -U keysafe`) and try again.",
        )
    return "vault" if has_header else "unfinished"


def _unreachable(url: URL, exc: Exception) -> StoreError:
    return StoreError(
        f"The PostgreSQL database {redacted(url)} could not be reached ({_short(exc)}).",
        next_step="check KEYSAFE_DATABASE_URL (host, port, user, database, password via "
        "PGPASSWORD or ~/.pgpass) and that the server is running, then retry.",
        database=redacted(url),
    )


def _pg_engine(url: URL) -> Engine:
    # READ COMMITTED (PostgreSQL's default), on purpose: every statement of a write transaction
    # sees what the writer before it committed, because the writers are serialised on the vault
    # row (Database.write); REPEATABLE READ would instead fail the second of two writers.
    # No pool_pre_ping: it costs a round trip per transaction (a gated signature runs several:
    # 17 ms instead of 10 ms per signature here). After a database restart or failover the
    # first statement on a dead connection fails (`translate`: "could not be reached", nothing
    # was committed) and SQLAlchemy then drops every pooled connection, so the retry reconnects.
    engine = create_engine(
        url, isolation_level="READ COMMITTED",
        connect_args={"connect_timeout": 10, "application_name": "keysafe"},
    )  # fmt: skip

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # A writer waits for the vault row at most as long as SQLite's busy handler waits for
        # the file (then fails, as there): a stuck writer, or a bug that nests two writes in
        # one thread, must not hang every server on the database for ever. Set per connection,
        # not in connect_args, so `options` in the user's URL (a search_path) stay theirs.
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET lock_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        dbapi_conn.commit()

    return engine


def probe_url(url: URL) -> str:
    """`probe` for a PostgreSQL database: "empty" (no keysafe table), "unfinished" (schema but
    no vault header) or "vault". A database must exist before keysafe uses it (the DBA creates
    it), so there is no "missing". Nothing is written.

    Raises:
        StoreError: unreachable, foreign tables, or a schema from a newer keysafe.
    """
    engine = _pg_engine(url)
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            current = None
            if "alembic_version" in names:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            has_header = "vault" in names and bool(
                conn.execute(text("SELECT count(*) FROM vault")).scalar()
            )
    except (DatabaseError, OperationalError) as exc:
        raise _unreachable(url, exc) from None
    finally:
        engine.dispose()
    if not names:
        return "empty"
    if current is None and names - {"alembic_version"}:
        raise StoreError(
            f"The database {redacted(url)} holds tables keysafe did not create.",
            next_step="give keysafe a database of its own (`createdb keysafe`) and point "
            "KEYSAFE_DATABASE_URL at it.",
        )
    if current is not None and current not in _KNOWN_REVISIONS:
        raise StoreError(
            f"The vault database was written by a newer keysafe (schema {current}).",
            next_step="upgrade keysafe (`pip install -U keysafe`) and try again.",
        )
    return "vault" if has_header else "unfinished"


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
        engine = create_engine(
            # URL.create keeps the path a path: in a URL string '?' or '#' would start a query.
            URL.create("sqlite+pysqlite", database=str(path)),
            connect_args={"timeout": _BUSY_TIMEOUT_S, "isolation_level": None},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            # Deleted and overwritten content is zeroed in the file, not left in free pages: a
            # record re-sealed into a new epoch leaves no old ciphertext behind (forward
            # secrecy; the WAL's copies go at the checkpoint after an epoch is destroyed).
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # pysqlite's own transaction handling is off (isolation_level=None); we decide here.
            # On the driver (store/hot.py): every transaction runs it, and through
            # exec_driver_sql it cost a tenth of a gated signature.
            hot.run(conn, conn.info.pop("begin", "BEGIN"), {})

        db = cls(engine, path=path)
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
        db = cls(_pg_engine(url))
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
        return cls(_pg_engine(url))

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
        uri = f"{path.resolve().as_uri()}?mode=ro"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(
                uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip

        return cls(create_engine("sqlite+pysqlite://", creator=connect), path=path)

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
            raise _not_a_vault(self.path or Path("?"), _short(exc)) from None
        if current == SCHEMA_HEAD:
            return
        if current is not None and current not in _KNOWN_REVISIONS:
            raise StoreError(
                f"The vault database was written by a newer keysafe (schema {current}).",
                next_step="upgrade keysafe (`pip install -U keysafe`) and try again.",
            )
        foreign = names - {"alembic_version"}
        if current is None and foreign:
            raise _not_a_vault(self.path or Path("?"), "it holds tables keysafe did not create")
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
    (for _BUSY_TIMEOUT_S, then fail). Takes the lock for an instant and writes nothing."""
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


def _short(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0][:200]


def translate(exc: BaseException) -> KeysafeError | None:
    """The KeysafeError a database fault means, for the surfaces' last-resort handlers (None: a
    bug). Without this, damaged rows and full disks surfaced as INTERNAL."""
    orig = getattr(exc, "orig", exc)
    text = str(orig)
    if (
        isinstance(exc, DatabaseError | sqlite3.DatabaseError)
        and "Could not decode to UTF-8" in text
    ):
        # Never quote the text: it is whatever bytes were written into the row.
        return IntegrityError(
            "The vault database holds bytes that are not text where text belongs: it was "
            "damaged, or edited outside keysafe. Nothing was changed.",
            next_step="restore it from a backup (`keysafe backup restore FILE`); if you did not "
            "edit the file, treat this machine as tampered with.",
        )
    if isinstance(exc, DataError) and "cannot contain NUL" in text:
        # PostgreSQL's text holds no NUL character; SQLite's does. A request carrying one (in
        # an idempotency key, a name) must be refused as malformed there, not end as INTERNAL.
        # Its transaction was rolled back: nothing was done, and nothing audited as done.
        return MalformedRequestError(
            "The request holds a NUL character (\\u0000) in a text field, which this vault's "
            "database (PostgreSQL) cannot store, so nothing was done.",
            next_step="remove the NUL character and send the request again.",
        )
    if isinstance(exc, OperationalError) and (
        "database or disk is full" in text
        or "disk I/O error" in text
        or "could not extend file" in text  # PostgreSQL: its disk is full
    ):
        return AuditWriteError(
            "The vault database could not be written (the disk is full or failing), so nothing "
            "was carried out.",
            next_step="free disk space (or check the disk), then retry.",
        )
    if isinstance(exc, OperationalError) and (
        exc.connection_invalidated
        or "server closed the connection" in text
        or "connection failed" in text
        or "terminating connection" in text
    ):
        # PostgreSQL went away (restart, failover, network): nothing was committed.
        return StoreError(
            "The PostgreSQL database could not be reached, so nothing was carried out.",
            next_step="check the database server and the network to it, then retry.",
        )
    return None
