"""Opening the SQL store: SQLite (WAL, synchronous=FULL) by default, migrated by Alembic.

Rules this module enforces:
- Writes run in `BEGIN IMMEDIATE` transactions on SQLite, so a read-check-write sequence (the
  audit chain head, unlock throttling) is serialised across processes.
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
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Final

from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DatabaseError, OperationalError

from keysafe.errors import AuditWriteError, IntegrityError, KeysafeError, StoreError
from keysafe.store import hot

logger = logging.getLogger(__name__)

SCHEMA_HEAD: Final = "0013"
_KNOWN_REVISIONS: Final = frozenset(
    {"0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0013"}
)
_BUSY_TIMEOUT_S: Final = 30.0


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


class Database:
    """One SQL store. `write()` gives a serialised transaction; `read()` a plain connection."""

    def __init__(self, engine: Engine, *, path: Path | None = None) -> None:
        self.engine = engine
        self.path = path
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
        if self.engine.dialect.name != "sqlite":
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        with self._writers, self.engine.connect() as conn:
            conn.info["begin"] = "BEGIN IMMEDIATE"
            with conn.begin():
                yield conn

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate it (SQLite): what the WAL held of
        rows since overwritten is gone from disk. No-op on other databases."""
        if self.engine.dialect.name != "sqlite":
            return
        with self._writers, self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def quick_read(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]] | None:
        """One read-only SELECT without SQLAlchemy's overhead (about 15 µs instead of 450 µs),
        for the per-request token check, on a plain SQLite connection of this thread's own.

        It reads the committed state of the file at that moment, like `read()`: every write by
        this process or another one that committed before is seen. The statement is run to its
        end (`fetchall`), so no read transaction stays open to hold the WAL back. It never
        waits for a lock (a busy database, or one that is not SQLite, answers None): the caller
        then takes its ordinary path, which may wait.

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

    def close(self) -> None:
        with self._quick_guard:
            for conn in self._quick_all:
                conn.close()
            self._quick_all.clear()
        self._quick = threading.local()
        self.engine.dispose()


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
    if isinstance(exc, OperationalError) and (
        "database or disk is full" in text or "disk I/O error" in text
    ):
        return AuditWriteError(
            "The vault database could not be written (the disk is full or failing), so nothing "
            "was carried out.",
            next_step="free disk space (or check the disk), then retry.",
        )
    return None
