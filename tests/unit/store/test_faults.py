"""Database faults become the errors the surfaces document (store/db.translate), from real
SQLite failures: a full database and a row of invalid UTF-8."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from keysafe.errors import AuditWriteError, IntegrityError
from keysafe.store import hot
from keysafe.store.faults import translate


def test_a_full_database_is_audit_failed_not_internal(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+pysqlite:///{tmp_path / 'full.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x BLOB)"))
    with engine.connect() as conn, pytest.raises(Exception) as caught:
        pages = conn.execute(text("PRAGMA page_count")).scalar()
        conn.execute(text(f"PRAGMA max_page_count = {pages}"))  # SQLite's own SQLITE_FULL
        conn.execute(text("INSERT INTO t VALUES (zeroblob(1000000))"))
    assert "full" in str(caught.value)
    assert isinstance(translate(caught.value), AuditWriteError)


def test_invalid_utf8_in_a_text_column_is_an_integrity_error(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "bad.db") as c:
        c.execute("CREATE TABLE t (x TEXT)")
        c.execute("INSERT INTO t VALUES (CAST(x'ff00fe' AS TEXT))")
    engine = create_engine(f"sqlite+pysqlite:///{tmp_path / 'bad.db'}")
    with engine.connect() as conn, pytest.raises(Exception) as caught:
        conn.execute(text("SELECT x FROM t")).all()
    err = translate(caught.value)
    assert isinstance(err, IntegrityError)
    assert "\\xff" not in str(err) and "ÿ" not in str(err)  # the bytes are never quoted


def test_a_bug_is_not_translated() -> None:
    assert translate(RuntimeError("Could not decode to UTF-8")) is None


def test_a_driver_statement_fails_as_sqlalchemy_would_and_hides_its_values(tmp_path: Path) -> None:
    """store/hot.py runs the hot statements on the driver; their failures must reach the callers
    as the SQLAlchemy errors Core raises (so an audit entry that cannot be written still stops
    the action), and never quote the values (a detail could be sensitive)."""
    engine = create_engine(f"sqlite+pysqlite:///{tmp_path / 'full.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x BLOB)"))
    canary = "canary-" + "9" * 20
    with engine.connect() as conn, pytest.raises(SQLAlchemyError) as caught:
        pages = conn.execute(text("PRAGMA page_count")).scalar()
        conn.execute(text(f"PRAGMA max_page_count = {pages}"))
        hot.run(conn, "INSERT INTO t VALUES (:x)", {"x": canary + "x" * 1_000_000})
    assert isinstance(translate(caught.value), AuditWriteError)
    assert canary not in str(caught.value)
    with engine.connect() as conn, pytest.raises(SQLAlchemyError) as bad:
        hot.rows(conn, "SELECT nope FROM t WHERE x = :x", {"x": canary})
    assert canary not in str(bad.value)
