"""Idempotency keys, step 2 of service/gate.py: a key seen before with the same exact bytes
answers with the stored result (never a second signature); with other bytes it is
IDEMPOTENCY_CONFLICT; while the first request still runs it is REQUEST_IN_PROGRESS.

A key's record says where its request stands: in flight (written in the deciding transaction
of an act that reaches out, until it settles), or done, with its result or the approval it
waits on. A request that failed frees its key, so a retry with the same key runs again.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, delete, insert, select, update

from keysafe.errors import IdempotencyConflictError, RequestInProgressError
from keysafe.store import tables as t
from keysafe.vault.vault import iso

logger = logging.getLogger(__name__)

IN_FLIGHT: Final = "in_flight"
DONE: Final = "done"


def earlier(conn: Connection, agent: str, key: str, fingerprint: str) -> dict[str, Any] | None:
    """What `agent`'s earlier request with `key` left (its state, request id, result or
    approval id), or None when the key is new.

    Raises:
        IdempotencyConflictError: the key was used before for other bytes.
        RequestInProgressError: the key's first request has not finished yet.
    """
    row = conn.execute(
        select(t.idempotency).where(t.idempotency.c.agent == agent, t.idempotency.c.key == key)
    ).first()
    if row is None:
        return None
    shown = key[:60]
    if row.fingerprint != fingerprint:
        raise IdempotencyConflictError(
            f"Idempotency key '{shown}' was used before for a different request; nothing was "
            "signed or sent for this one.",
            next_step="use a new idempotency key for a new request (the same key only repeats "
            "exactly the same request).",
        )
    stored: dict[str, Any] = json.loads(row.result)
    if stored.get("state") == IN_FLIGHT:
        raise RequestInProgressError(
            f"The request with idempotency key '{shown}' is still being processed.",
            next_step="retry with the same idempotency key in a moment; it returns the first "
            "request's result once that is done, and never signs twice.",
        )
    return stored


def remember(
    conn: Connection,
    agent: str,
    key: str | None,
    fingerprint: str,
    now: datetime,
    value: dict[str, Any],
) -> None:
    """Record where the request with `key` stands (nothing without a key)."""
    if key is None:
        return
    conn.execute(
        insert(t.idempotency).values(
            agent=agent,
            key=key,
            fingerprint=fingerprint,
            result=json.dumps(value),
            created_at=iso(now),
        )
    )


def finish(
    conn: Connection, agent: str, key: str, request_id: str, result: dict[str, Any] | None
) -> None:
    """The request with `key` is done: its result answers every retry with the same key."""
    value = {"state": DONE, "request_id": request_id, "result": result}
    conn.execute(
        update(t.idempotency)
        .where(t.idempotency.c.agent == agent, t.idempotency.c.key == key)
        .values(result=json.dumps(value))
    )


def forget(conn: Connection, agent: str, key: str) -> None:
    """Free `key`: the request failed or never finished, and a retry runs again."""
    conn.execute(
        delete(t.idempotency).where(t.idempotency.c.agent == agent, t.idempotency.c.key == key)
    )
