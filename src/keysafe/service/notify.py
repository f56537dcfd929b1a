"""Notifications: queueing the events the owner's channels (service/notify_channels.py)
subscribe to.

Rules this module enforces:
- A channel is a sealed record of kind `notify`: the webhook's signing secret, the Telegram bot
  token and the paired chat are its ciphertext; the URL, the bot's name, the events and the
  Telegram approval cap are its public `meta`, bound into the record's AEAD, so an edit is
  detected when the channel is opened to send. Listing needs no passphrase; sending does.
- `emit` enqueues one outbox row per subscribed channel *in the caller's transaction*: a
  notification exists exactly when the event it reports was committed. A row holds only the
  `Notice` (notify/notice.py), never a secret.
- The server's sender takes queued rows from the outbox (service/notify_outbox.py), sends them
  and marks them sent or failed.
- Alerts are emitted where their event happens, one call each: `emit` for approvals (gate,
  pairing), `on_deny` for denials (and the anomaly: ANOMALY_DENIALS denials of one agent within
  ANOMALY_WINDOW_S), `emit_alone` for events written in their own transaction (a failed unlock,
  a failed audit verification), `note_rotation_due` from the server's loop.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Final

from sqlalchemy import Connection, insert, select

from keysafe.approvals import Approval, Kind
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    IntegrityError,
    KeysafeError,
    NotFoundError,
    UnlockThrottledError,
    WrongPassphraseError,
)
from keysafe.notify import webhook
from keysafe.notify.notice import SUBSCRIBABLE, Event, Notice, alert, for_approval, for_deny
from keysafe.policy.intent import Intent
from keysafe.service.notify_channels import (
    KIND,
    channel_meta,
)
from keysafe.store import tables as t
from keysafe.vault.vault import Vault, iso

logger = logging.getLogger(__name__)

__all__ = [
    "ANOMALY_DENIALS",
    "SUBSCRIBABLE",
    "check_url",
    "emit",
    "emit_alone",
    "emit_safely",
    "on_approval",
    "on_deny",
    "send_test",
    "unlock_watched",
]

check_url = webhook.check_url  # for the CLI, to refuse a URL before asking for the passphrase
ANOMALY_DENIALS: Final = 5
ANOMALY_WINDOW_S: Final = 60
ANOMALY_SCAN: Final = 500  # newest audit entries the anomaly count reads
ROTATION_EVERY: Final = timedelta(hours=24)  # at most one rotation_due alert a day


# -- emitting ----------------------------------------------------------------------------------


def emit(vault: Vault, conn: Connection, notice: Notice) -> int:
    """Queue `notice` for every channel subscribed to its event, in the caller's transaction.
    Returns how many rows were queued (0 without channels)."""
    now = vault.clock().timestamp()
    body = notice.model_dump_json()
    queued = 0
    for info in vault.list_records(conn, KIND):
        try:
            events = channel_meta(info).events
        except IntegrityError:
            events = list(SUBSCRIBABLE)  # still queued: opening it to send reports the edit
        if notice.event is not Event.TEST and notice.event not in events:
            continue
        conn.execute(
            insert(t.notify_queue).values(
                delivery_id="dlv_" + secrets.token_hex(12),
                channel=info.name,
                event=str(notice.event),
                notice=body,
                state="queued",
                attempts=0,
                next_at=now,
                claimed_until=None,
                created_at=now,
            )
        )
        queued += 1
    return queued


def emit_alone(vault: Vault, notice: Notice) -> int:
    """`emit` in a transaction of its own, for an event already committed by its own code."""
    with vault.db.write() as conn:
        return emit(vault, conn, notice)


def emit_safely(vault: Vault, notice: Notice) -> int:
    """`emit_alone` for an alert about a failure whose own report must not be masked: a store
    that cannot take the row (read-only, damaged) is logged, and the caller goes on."""
    try:
        return emit_alone(vault, notice)
    except KeysafeError as exc:
        logger.warning("could not queue the %s alert: %s", notice.event, exc.code)
        return 0


def on_approval(vault: Vault, conn: Connection, approval: Approval) -> int:
    """Queue the notice for a new pending approval (in the transaction that parked it)."""
    return emit(vault, conn, for_approval(approval))


def _subscribed(vault: Vault, conn: Connection, event: Event) -> bool:
    for info in vault.list_records(conn, KIND):
        try:
            if event in channel_meta(info).events:
                return True
        except IntegrityError:
            return True  # `emit` queues for it; opening it to send reports the edit
    return False


def on_deny(
    vault: Vault, conn: Connection, agent: str, kind: Kind, intent: Intent, rule: str | None
) -> None:
    """Queue the notice for a denied request, and the anomaly alert when this denial is the
    ANOMALY_DENIALS-th of the agent's within ANOMALY_WINDOW_S (once per burst: the count
    passes that number once). Runs in the deciding transaction, after its audit entry.

    The count reads only the newest ANOMALY_SCAN audit entries (the primary key, newest first):
    the audit table has no index on agent or time, and a flood of denials must not make each
    denial scan the whole history. A burst drowned in more entries than that is not counted.
    """
    emit(vault, conn, for_deny(agent, kind, intent, rule))
    if not _subscribed(vault, conn, Event.ANOMALY):
        return
    since = iso(vault.clock() - timedelta(seconds=ANOMALY_WINDOW_S))
    recent = conn.execute(
        select(t.audit.c.actor, t.audit.c.action, t.audit.c.outcome, t.audit.c.time)
        .order_by(t.audit.c.seq.desc())
        .limit(ANOMALY_SCAN)
    ).all()
    denials = sum(
        1
        for r in recent
        if r.actor == f"agent:{agent}"
        and r.action.startswith("decide.")
        and r.outcome == "deny"
        and r.time >= since
    )
    if denials == ANOMALY_DENIALS:
        emit(
            vault,
            conn,
            alert(
                Event.ANOMALY,
                f"agent '{agent}' was denied {denials} times within {ANOMALY_WINDOW_S} seconds; "
                f"consider pausing it (keysafe agent pause {agent})",
                agent=agent,
            ),
        )


def send_test(vault: Vault) -> int:
    """Queue one harmless message for every channel; returns how many.

    Raises:
        NotFoundError: there is no channel.
    """
    notice = alert(Event.TEST, "this channel reaches you; nothing else happened")
    count = emit_alone(vault, notice)
    if not count:
        raise NotFoundError(
            "There is no notification channel to test.",
            next_step="add one: `keysafe notify telegram …` or `keysafe notify webhook add URL`.",
        )
    return count


def note_rotation_due(vault: Vault, due: int, what: str) -> int:
    """Queue a rotation_due alert for `due` items (`what` names them), at most once per
    ROTATION_EVERY; returns how many rows were queued."""
    if due <= 0:
        return 0
    since = (vault.clock() - ROTATION_EVERY).timestamp()
    with vault.db.write() as conn:
        recent = conn.execute(
            select(t.notify_queue.c.id).where(
                t.notify_queue.c.event == str(Event.ROTATION_DUE),
                t.notify_queue.c.created_at >= since,
            )
        ).first()
        if recent is not None:
            return 0
        return emit(
            vault,
            conn,
            alert(
                Event.ROTATION_DUE,
                f"{due} thing(s) agents hold are due for replacement ({what}); "
                "see keysafe rotation-policy",
            ),
        )


def note_unlock_failure(vault: Vault, *, throttled: bool) -> int:
    """Queue the unlock_failure alert for an attempt the vault refused (already audited)."""
    return emit_safely(
        vault,
        alert(
            Event.UNLOCK_FAILURE,
            "an unlock attempt was refused: too many wrong passphrases in a row"
            if throttled
            else "someone typed a wrong passphrase for the vault",
        ),
    )


def unlock_watched(vault: Vault, passphrase: SecretBytes) -> None:
    """`vault.unlock`, queueing the unlock_failure alert when the attempt is refused.

    Raises:
        WrongPassphraseError / UnlockThrottledError: as `Vault.unlock` (after queueing).
        IntegrityError: as `Vault.unlock`.
    """
    try:
        vault.unlock(passphrase)
    except (WrongPassphraseError, UnlockThrottledError) as exc:
        note_unlock_failure(vault, throttled=isinstance(exc, UnlockThrottledError))
        raise
