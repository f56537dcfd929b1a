"""What is at a vault's address, looked at without changing it: a SQLite path or a PostgreSQL
URL is missing, empty, unfinished (schema, no header) or a vault; a foreign or newer database is
refused with what to do, never a traceback.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Set
from pathlib import Path
from typing import Final

from sqlalchemy import URL, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from keysafe.errors import StoreError
from keysafe.store.engines import BUSY_TIMEOUT_S, pg_engine
from keysafe.store.faults import short

# Every schema revision this keysafe knows (store/migrations/versions).
KNOWN_REVISIONS: Final = frozenset(
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


def not_a_vault(path: Path, why: str) -> StoreError:
    return StoreError(
        f"The file {path} is not a readable keysafe vault database ({why}).",
        next_step=(
            "check KEYSAFE_HOME points at your vault; if the file is damaged, move it aside and "
            "rebuild with `keysafe recover` then `keysafe backup restore FILE`."
        ),
        path=str(path),
    )


def check_schema(names: Set[str], current: str | None, *, foreign: StoreError) -> None:
    """Refuse a database whose tables keysafe did not create (`foreign`) or that a newer keysafe
    migrated.

    Args:
        names: the tables in the database.
        current: its Alembic revision (None: never migrated).
        foreign: the error for tables keysafe did not create.
    """
    if current is None and names - {"alembic_version"}:
        raise foreign
    if current is not None and current not in KNOWN_REVISIONS:
        raise StoreError(
            f"The vault database was written by a newer keysafe (schema {current}).",
            next_step="upgrade keysafe (`pip install -U keysafe`) and try again.",
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
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
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
        raise not_a_vault(path, str(exc).splitlines()[0][:200]) from None
    if not names:
        return "empty"
    check_schema(
        names, current, foreign=not_a_vault(path, "it holds tables keysafe did not create")
    )
    return "vault" if has_header else "unfinished"


def unreachable(url: URL, exc: Exception) -> StoreError:
    return StoreError(
        f"The PostgreSQL database {redacted(url)} could not be reached ({short(exc)}).",
        next_step="check KEYSAFE_DATABASE_URL (host, port, user, database, password via "
        "PGPASSWORD or ~/.pgpass) and that the server is running, then retry.",
        database=redacted(url),
    )


def probe_url(url: URL) -> str:
    """`probe` for a PostgreSQL database: "empty" (no keysafe table), "unfinished" (schema but
    no vault header) or "vault". A database must exist before keysafe uses it (the DBA creates
    it), so there is no "missing". Nothing is written.

    Raises:
        StoreError: unreachable, foreign tables, or a schema from a newer keysafe.
    """
    engine = pg_engine(url)
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
        raise unreachable(url, exc) from None
    finally:
        engine.dispose()
    if not names:
        return "empty"
    foreign = StoreError(
        f"The database {redacted(url)} holds tables keysafe did not create.",
        next_step="give keysafe a database of its own (`createdb keysafe`) and point "
        "KEYSAFE_DATABASE_URL at it.",
    )
    check_schema(names, current, foreign=foreign)
    return "vault" if has_header else "unfinished"
