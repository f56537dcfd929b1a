"""What a database fault means for the caller: `translate` maps a driver's exception to the
KeysafeError the surfaces report (a damaged row, a full disk, a lost PostgreSQL), once.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DatabaseError, DataError, OperationalError

from keysafe.errors import (
    AuditWriteError,
    IntegrityError,
    KeysafeError,
    MalformedRequestError,
    StoreError,
)


def short(exc: Exception) -> str:
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
