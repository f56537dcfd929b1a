"""Notifications: the owner's channels, the events they subscribe to, and queueing them.

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

import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from sqlalchemy import Connection, insert, select, update

from keysafe.approvals import Approval, Kind
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    IntegrityError,
    KeysafeError,
    MalformedRequestError,
    NotFoundError,
    UnlockThrottledError,
    WrongPassphraseError,
)
from keysafe.notify import webhook
from keysafe.notify.notice import SUBSCRIBABLE, Event, Notice, alert, for_approval, for_deny
from keysafe.policy.intent import Intent
from keysafe.store import tables as t
from keysafe.vault.records import RecordInfo
from keysafe.vault.vault import Vault, iso

logger = logging.getLogger(__name__)

__all__ = [
    "ANOMALY_DENIALS",
    "SUBSCRIBABLE",
    "Cap",
    "ChannelType",
    "ChannelView",
    "OpenChannel",
    "WebhookAdded",
    "add_webhook",
    "check_url",
    "emit",
    "emit_alone",
    "emit_safely",
    "list_channels",
    "on_approval",
    "on_deny",
    "open_channels",
    "parse_cap",
    "parse_events",
    "remove_channel",
    "send_test",
    "set_telegram",
    "unlock_watched",
]

KIND: Final = "notify"  # the records' kind
TELEGRAM: Final = "telegram"  # the one Telegram channel's record name
check_url = webhook.check_url  # for the CLI, to refuse a URL before asking for the passphrase
ANOMALY_DENIALS: Final = 5
ANOMALY_WINDOW_S: Final = 60
ANOMALY_SCAN: Final = 500  # newest audit entries the anomaly count reads
ROTATION_EVERY: Final = timedelta(hours=24)  # at most one rotation_due alert a day


class ChannelType(StrEnum):
    TELEGRAM = "telegram"  # one paired chat of one bot
    WEBHOOK = "webhook"  # signed JSON POSTs to one URL


class Cap(BaseModel):
    """The most a request may move for Telegram to approve it (above: deny only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    amount: str  # decimal text, in the asset's units
    asset: str  # symbol, as in the decoded request (ETH, USDC, SOL)

    def describe(self) -> str:
        return f"{self.amount} {self.asset}"

    def allows(self, amount: str | None, asset: str | None) -> bool:
        """Whether `amount` of `asset` is within the cap (same asset, at most the amount)."""
        if amount is None or asset is None or asset.upper() != self.asset.upper():
            return False
        try:
            return Decimal(amount) <= Decimal(self.amount)
        except InvalidOperation:
            return False


_CAP: Final = re.compile(r"^\s*([0-9]{1,30}(?:\.[0-9]{1,30})?)\s*([A-Za-z][A-Za-z0-9]{0,15})\s*$")


def parse_cap(text: str) -> Cap:
    """`0.1ETH` or `0.1 ETH` as a Cap.

    Raises:
        MalformedRequestError: not an amount followed by an asset symbol.
    """
    m = _CAP.match(text)
    if not m:
        raise MalformedRequestError(
            f"'{text[:40]}' is not an approval cap.",
            next_step="give an amount and an asset symbol, e.g. --approve-up-to 0.1ETH.",
        )
    return Cap(amount=m.group(1), asset=m.group(2).upper())


def parse_events(text: str | None) -> list[Event]:
    """A comma-separated event list (None or "all": every event).

    Raises:
        MalformedRequestError: an unknown event name (the message lists the known ones).
    """
    if text is None or text.strip() in ("", "all"):
        return list(SUBSCRIBABLE)
    known = {e.value: e for e in SUBSCRIBABLE}
    out: list[Event] = []
    for word in (w.strip().lower() for w in text.split(",")):
        if word not in known:
            raise MalformedRequestError(
                f"'{word[:30]}' is not an event keysafe notifies about.",
                next_step=f"use some of: {', '.join(known)} (comma-separated), or all.",
            )
        if known[word] not in out:
            out.append(known[word])
    return out


class ChannelView(BaseModel):
    """A channel as the owner sees it in `keysafe notify list`: nothing secret."""

    name: str
    type: ChannelType
    target: str  # the webhook's URL, or the Telegram bot's @name
    events: list[Event]
    approve_up_to: Cap | None = None  # Telegram only
    created_at: str


class WebhookAdded(BaseModel):
    channel: ChannelView
    secret: str  # `whsec_…`: shown to the owner once, for the receiver's verification


class _ChannelMeta(BaseModel):
    """A channel record's public facts (bound into its AEAD)."""

    model_config = ConfigDict(extra="forbid")
    type: ChannelType
    target: str
    events: list[Event]
    approve_up_to: Cap | None = None


class _ChannelSecret(BaseModel):
    """A channel record's sealed part."""

    model_config = ConfigDict(extra="forbid")
    secret: SecretStr  # the webhook's whsec_… or the bot token
    chat_id: int | None = None  # Telegram: the paired chat


@dataclass(frozen=True, slots=True)
class OpenChannel:
    """A channel opened for sending (its secrets in SecretStr: never in a repr)."""

    view: ChannelView
    secret: SecretStr
    chat_id: int | None


def _meta(info: RecordInfo) -> _ChannelMeta:
    try:
        return _ChannelMeta.model_validate(info.meta)
    except ValidationError:
        raise IntegrityError(
            f"The notification channel '{info.name}' was changed outside keysafe.",
            next_step=f"remove it (`keysafe notify remove {info.name}`) and add it again.",
        ) from None


def _view(info: RecordInfo) -> ChannelView:
    m = _meta(info)
    return ChannelView(
        name=info.name,
        type=m.type,
        target=m.target,
        events=m.events,
        approve_up_to=m.approve_up_to,
        created_at=info.created_at,
    )


def list_channels(vault: Vault) -> list[ChannelView]:
    """Every channel, by name (works while locked: nothing secret is read)."""
    with vault.db.read() as conn:
        return [_view(i) for i in vault.list_records(conn, KIND)]


def _put(
    vault: Vault, conn: Connection, name: str, meta: _ChannelMeta, sealed: _ChannelSecret
) -> RecordInfo:
    plain = json.dumps(
        {"secret": sealed.secret.get_secret_value(), "chat_id": sealed.chat_id}
    ).encode()
    with SecretBytes(bytearray(plain)) as secret:
        return vault.put_record(
            conn,
            kind=KIND,
            name=name,
            data_class="sensitive",
            meta=meta.model_dump(mode="json"),
            plaintext=secret,
            replace=True,
        )


def add_webhook(vault: Vault, url: str, events: list[Event]) -> WebhookAdded:
    """A new webhook endpoint with a fresh signing secret (returned once).

    Raises:
        VaultLockedError: the vault is locked.
        MalformedRequestError: the URL is not https (or loopback http), or no events.
    """
    vault.require_unlocked()
    target = webhook.check_url(url)
    if not events:
        raise MalformedRequestError(
            "A webhook needs at least one event.", next_step="pass --events approval,deny."
        )
    secret = webhook.new_secret()
    name = f"webhook-{secrets.token_hex(3)}"
    meta = _ChannelMeta(type=ChannelType.WEBHOOK, target=target, events=events)
    with vault.db.write() as conn:
        info = _put(vault, conn, name, meta, _ChannelSecret(secret=SecretStr(secret)))
        vault.audit(
            conn,
            actor="owner",
            action="notify.add",
            target=f"notify:{name}",
            outcome="success",
            details={"type": "webhook", "url": target[:200], "events": [str(e) for e in events]},
        )
    return WebhookAdded(channel=_view(info), secret=secret)


def set_telegram(
    vault: Vault,
    token: SecretBytes,
    chat_id: int,
    bot: str,
    events: list[Event],
    cap: Cap | None,
) -> ChannelView:
    """Store the paired Telegram chat (replacing an earlier pairing), token and chat sealed.

    Raises:
        VaultLockedError: the vault is locked.
    """
    vault.require_unlocked()
    meta = _ChannelMeta(
        type=ChannelType.TELEGRAM, target=bot[:64], events=events, approve_up_to=cap
    )
    sealed = _ChannelSecret(secret=SecretStr(bytes(token.reveal()).decode()), chat_id=chat_id)
    with vault.db.write() as conn:
        info = _put(vault, conn, TELEGRAM, meta, sealed)
        vault.audit(
            conn,
            actor="owner",
            action="notify.add",
            target=f"notify:{TELEGRAM}",
            outcome="success",
            details={
                "type": "telegram",
                "bot": bot[:64],
                "events": [str(e) for e in events],
                "approve_up_to": cap.describe() if cap else None,
            },
        )
    return _view(info)


def remove_channel(vault: Vault, name: str) -> None:
    """Remove one channel; its queued notifications are dropped (audited as dead letters).

    Raises:
        NotFoundError: no channel of that name.
        VaultLockedError: the vault is locked.
    """
    vault.require_unlocked()
    with vault.db.write() as conn:
        info = vault.find_record(conn, KIND, name)
        if info is None:
            raise NotFoundError(
                f"No notification channel named '{name[:64]}'.",
                next_step="see `keysafe notify list` for the names.",
            )
        vault.delete_record(conn, info)
        conn.execute(
            update(t.notify_queue)
            .where(t.notify_queue.c.channel == name, t.notify_queue.c.state == "queued")
            .values(state="dead", claimed_until=None)
        )
        vault.audit(
            conn,
            actor="owner",
            action="notify.remove",
            target=f"notify:{name}",
            outcome="success",
            details={"name": name},
        )


def open_channels(vault: Vault) -> list[OpenChannel]:
    """Every channel with its secrets, for the sender.

    Raises:
        VaultLockedError: the vault is locked.
        IntegrityError: a channel record was changed outside keysafe.
    """
    vault.require_unlocked()
    out: list[OpenChannel] = []
    with vault.db.read() as conn:
        for info in vault.list_records(conn, KIND):
            view = _view(info)
            with vault.open_record(conn, info) as plain:
                sealed = _ChannelSecret.model_validate_json(bytes(plain.reveal()))
            out.append(OpenChannel(view, sealed.secret, sealed.chat_id))
    return out


# -- emitting ----------------------------------------------------------------------------------


def emit(vault: Vault, conn: Connection, notice: Notice) -> int:
    """Queue `notice` for every channel subscribed to its event, in the caller's transaction.
    Returns how many rows were queued (0 without channels)."""
    now = vault.clock().timestamp()
    body = notice.model_dump_json()
    queued = 0
    for info in vault.list_records(conn, KIND):
        try:
            events = _meta(info).events
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
            if event in _meta(info).events:
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
