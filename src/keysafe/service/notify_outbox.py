"""The notification outbox (service/notify.py queues into it): the server's sender takes the
lease on due rows, sends them, and marks each sent or failed.

Rules this module enforces:
- `claim` takes rows under a write transaction with a lease, so two senders never hold one row
  at the same time. A send a crash cuts (kill -9) is sent again after a restart with the same
  delivery id (receivers dedupe on it); nothing queued is ever lost.
- A failed send is tried MAX_TRIES times in all, with exponential backoff and jitter, then
  recorded as a dead letter in the audit log.
- Sent and dead rows, and used Telegram buttons, are forgotten after KEEP.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from sqlalchemy import ColumnElement, Connection, delete, select, update

from keysafe.audit.outcome import Outcome
from keysafe.notify.notice import Notice
from keysafe.store import tables as t
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

MAX_TRIES: Final = 3
BACKOFF_S: Final = 2.0  # before the 2nd try; doubled before each next one, plus up to 50% jitter
LEASE_S: Final = 60.0  # a claimed row is not claimed again before this (unless released)
KEEP: Final = timedelta(days=7)  # sent and dead notifications, and used buttons, are kept this long


@dataclass(frozen=True, slots=True)
class Claimed:
    """One queued notification the sender holds the lease on."""

    delivery_id: str
    channel: str
    notice: Notice
    attempt: int  # 1 for the first try
    created_at: float


def claim(vault: Vault, *, channels: set[str], limit: int = 20) -> list[Claimed]:
    """Take the lease on up to `limit` due rows for `channels` (the ones the sender can open),
    under a write transaction, so two senders never hold one row at the same time."""
    now = vault.clock().timestamp()
    q = t.notify_queue
    with vault.db.write() as conn:
        rows = conn.execute(
            select(q)
            .where(
                q.c.state == "queued",
                q.c.next_at <= now,
                q.c.channel.in_(sorted(channels)),
                (q.c.claimed_until.is_(None)) | (q.c.claimed_until < now),
            )
            .order_by(q.c.id)
            .limit(limit)
        ).all()
        out: list[Claimed] = []
        for r in rows:
            conn.execute(
                update(q)
                .where(q.c.id == r.id)
                .values(claimed_until=now + LEASE_S, attempts=r.attempts + 1)
            )
            out.append(
                Claimed(
                    r.delivery_id,
                    r.channel,
                    Notice.model_validate_json(r.notice),
                    r.attempts + 1,
                    r.created_at,
                )
            )
    return out


def mark_sent(vault: Vault, delivery_id: str) -> None:
    """The notification went out: it is not sent again."""
    now = vault.clock().timestamp()
    with vault.db.write() as conn:
        conn.execute(
            update(t.notify_queue)
            .where(t.notify_queue.c.delivery_id == delivery_id)
            .values(state="sent", sent_at=now, claimed_until=None)
        )


def make_dead(conn: Connection, *where: ColumnElement[bool]) -> None:
    """The notifications that match `where` become dead letters: never claimed or sent again.
    The caller audits why."""
    conn.execute(update(t.notify_queue).where(*where).values(state="dead", claimed_until=None))


def mark_failed(vault: Vault, item: Claimed, error: str) -> bool:
    """Record a failed try: retried later (backoff with jitter), or after MAX_TRIES a dead
    letter in the audit log. `error` must hold no secret (the sender scrubs it). Returns True
    when the notification is dead."""
    now = vault.clock().timestamp()
    dead = item.attempt >= MAX_TRIES
    q = t.notify_queue
    with vault.db.write() as conn:
        if dead:
            make_dead(conn, q.c.delivery_id == item.delivery_id)
            vault.audit(
                conn,
                actor="system",
                action="notify.dead_letter",
                target=f"notify:{item.channel}",
                outcome=Outcome.FAILURE,
                details={
                    "delivery_id": item.delivery_id,
                    "event": str(item.notice.event),
                    "attempts": item.attempt,
                    "error": error[:200],
                },
            )
        else:
            delay = BACKOFF_S * 2 ** (item.attempt - 1) * (1 + random.random() / 2)  # noqa: S311 - jitter, not a secret
            conn.execute(
                update(q)
                .where(q.c.delivery_id == item.delivery_id)
                .values(next_at=now + delay, claimed_until=None)
            )
    logger.warning(
        "notification %s to %s failed (try %d): %s",
        item.delivery_id,
        item.channel,
        item.attempt,
        error[:200],
    )
    return dead


def release_claims(vault: Vault) -> int:
    """At the server's start: leases a killed sender held end now, so what it was sending goes
    out again at once, under the same delivery id. Returns how many."""
    with vault.db.write() as conn:
        return int(
            conn.execute(
                update(t.notify_queue)
                .where(
                    t.notify_queue.c.state == "queued", t.notify_queue.c.claimed_until.isnot(None)
                )
                .values(claimed_until=None)
            ).rowcount
        )


def prune(vault: Vault) -> int:
    """Forget what no longer matters: notifications sent or dead, and buttons, older than
    KEEP (the audit log keeps the dead letters). Returns how many rows went."""
    before = (vault.clock() - KEEP).timestamp()
    q, b = t.notify_queue, t.notify_buttons
    with vault.db.write() as conn:
        gone = conn.execute(
            delete(q).where(q.c.state.in_(("sent", "dead")), q.c.created_at < before)
        ).rowcount
        gone += conn.execute(delete(b).where(b.c.created_at < before)).rowcount
    return int(gone)
