"""The SQLAlchemy engines keysafe opens: SQLite (WAL, synchronous=FULL, secure_delete) and
PostgreSQL (psycopg 3, READ COMMITTED), each with the session settings its writers rely on.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Final

from sqlalchemy import URL, Connection, Engine, create_engine, event

from keysafe.store import hot

# How long a writer waits for another's lock (SQLite's busy handler; PostgreSQL's lock_timeout).
BUSY_TIMEOUT_S: Final = 30.0


def pg_engine(url: URL) -> Engine:
    # READ COMMITTED (PostgreSQL's default), on purpose: every statement of a write transaction
    # sees what the writer before it committed, because the writers are serialised on the vault
    # row (Database.write); REPEATABLE READ would instead fail the second of two writers.
    # No pool_pre_ping: it costs a round trip per transaction (a gated signature runs several:
    # 17 ms instead of 10 ms per signature here). After a database restart or failover the
    # first statement on a dead connection fails (`translate`: "could not be reached", nothing
    # was committed) and SQLAlchemy then drops every pooled connection, so the retry reconnects.
    engine = create_engine(
        url,
        isolation_level="READ COMMITTED",
        connect_args={"connect_timeout": 10, "application_name": "keysafe"},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # A writer waits for the vault row at most as long as SQLite's busy handler waits for
        # the file (then fails, as there): a stuck writer, or a bug that nests two writes in
        # one thread, must not hang every server on the database for ever. Set per connection,
        # not in connect_args, so `options` in the user's URL (a search_path) stay theirs.
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET lock_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        dbapi_conn.commit()

    return engine


def sqlite_engine(path: Path) -> Engine:
    """The engine of the SQLite vault at `path` (the file exists): pysqlite's own transaction
    handling off, every transaction begun here (`BEGIN IMMEDIATE` for a writer)."""
    engine = create_engine(
        # URL.create keeps the path a path: in a URL string '?' or '#' would start a query.
        URL.create("sqlite+pysqlite", database=str(path)),
        connect_args={"timeout": BUSY_TIMEOUT_S, "isolation_level": None},
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

    return engine


def sqlite_readonly_engine(path: Path) -> Engine:
    """An engine that opens the SQLite file at `path` read-only (diagnostics)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )

    return create_engine("sqlite+pysqlite://", creator=connect)
