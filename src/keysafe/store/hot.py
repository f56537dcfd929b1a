"""The statements every agent request runs, on the database driver itself where that is SQLite.

SQLAlchemy Core costs about ten times the statement itself per execution (building the cache
key, the execution context, result processing): about 48 µs for a one-row select that the
stdlib `sqlite3` driver runs in 4 µs, and a gated signature runs a dozen such statements. The
few that run on every request (the audit append, the ledger row, the running window totals) go
straight to the driver connection of the caller's SQLAlchemy transaction: the same connection,
the same transaction, `sqlite3`'s own prepared-statement cache. Other databases run the same
text through SQLAlchemy (`text()`), so there is one spelling of each statement.

Errors are raised as SQLAlchemy's (`DBAPIError.instance`), exactly as Core would raise them,
so the callers' fail-closed handling (an audit entry that cannot be written stops the action)
and `store.faults.translate` see no difference.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, StatementError

Params = Mapping[str, Any]


def rows(conn: Connection, sql: str, params: Params) -> list[tuple[Any, ...]]:
    """Every row of one statement with `:name` placeholders, run in `conn`'s transaction."""
    raw = _sqlite(conn)
    if raw is None:
        return [tuple(r) for r in conn.execute(text(sql), dict(params))]
    try:
        return raw.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise _wrapped(sql, params, exc) from exc


def named(conn: Connection, sql: str, params: Params) -> list[Any]:
    """Like `rows`, each row also readable by column name (`row.status`), as Core's rows are."""
    raw = _sqlite(conn)
    if raw is None:
        return list(conn.execute(text(sql), dict(params)))
    try:
        cursor = raw.execute(sql, params)
        found = cursor.fetchall()
    except sqlite3.Error as exc:
        raise _wrapped(sql, params, exc) from exc
    if not found:
        return []
    shape = _shape(tuple(column[0] for column in cursor.description))
    return [shape._make(r) for r in found]


@functools.lru_cache(maxsize=64)
def _shape(columns: tuple[str, ...]) -> Any:
    return namedtuple("Row", columns)  # one class per statement's columns


def run(conn: Connection, sql: str, params: Params | Sequence[Params]) -> None:
    """Run one statement that returns nothing, once or (a sequence of parameter sets) for each."""
    values: dict[str, Any] | list[dict[str, Any]] = (
        dict(params) if isinstance(params, Mapping) else [dict(p) for p in params]
    )
    raw = _sqlite(conn)
    if raw is None:
        conn.execute(text(sql), values)
        return
    try:
        if isinstance(values, list):
            raw.executemany(sql, values)
        else:
            raw.execute(sql, values)
    except sqlite3.Error as exc:
        raise _wrapped(sql, params, exc) from exc


def _sqlite(conn: Connection) -> sqlite3.Connection | None:
    if conn.dialect.name != "sqlite":
        return None
    raw = conn.connection.driver_connection
    return raw if isinstance(raw, sqlite3.Connection) else None


def _wrapped(sql: str, params: Params | Sequence[Params], exc: sqlite3.Error) -> StatementError:
    # hide_parameters: an error's text names the statement, never the values it carried
    return DBAPIError.instance(sql, params, exc, sqlite3.Error, hide_parameters=True)
