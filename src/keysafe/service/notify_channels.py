"""The owner's notification channels (service/notify.py): a webhook or the paired Telegram chat,
each a sealed record of kind `notify`, and the events each subscribes to.

Apart from queueing (service/notify.py, which re-exports these names for its callers) because
adding, listing and removing a channel is owner administration, while queueing runs inside every
agent request that alerts.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from sqlalchemy import Connection

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, MalformedRequestError, NotFoundError
from keysafe.notify import webhook
from keysafe.notify.notice import SUBSCRIBABLE, Event
from keysafe.service import notify_outbox, owner_audit
from keysafe.store import tables as t
from keysafe.vault.records import RecordInfo
from keysafe.vault.vault import Vault

KIND: Final = "notify"  # the records' kind
TELEGRAM: Final = "telegram"  # the one Telegram channel's record name


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


def channel_meta(info: RecordInfo) -> _ChannelMeta:
    """The channel record's public facts, checked.

    Raises:
        IntegrityError: the record's meta was changed outside keysafe.
    """
    try:
        return _ChannelMeta.model_validate(info.meta)
    except ValidationError:
        raise IntegrityError(
            f"The notification channel '{info.name}' was changed outside keysafe.",
            next_step=f"remove it (`keysafe notify remove {info.name}`) and add it again.",
        ) from None


def _view(info: RecordInfo) -> ChannelView:
    m = channel_meta(info)
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
    vault: Vault,
    conn: Connection,
    name: str,
    meta: _ChannelMeta,
    sealed: _ChannelSecret,
    **shown: str | None,
) -> RecordInfo:
    """Store channel `name` (replacing one of that name) and audit it as added: its type, its
    events and what else of it may be `shown` (never its secret)."""
    plain = json.dumps(
        {"secret": sealed.secret.get_secret_value(), "chat_id": sealed.chat_id}
    ).encode()
    with SecretBytes(bytearray(plain)) as secret:
        info = vault.put_record(
            conn,
            kind=KIND,
            name=name,
            data_class="sensitive",
            meta=meta.model_dump(mode="json"),
            plaintext=secret,
            replace=True,
        )
    events = [str(e) for e in meta.events]
    details = {"type": str(meta.type), **shown, "events": events}
    owner_audit.changed(vault, conn, "notify.add", f"notify:{name}", details)
    return info


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
        sealed = _ChannelSecret(secret=SecretStr(secret))
        info = _put(vault, conn, name, meta, sealed, url=target[:200])
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
        shown_cap = cap.describe() if cap else None
        info = _put(vault, conn, TELEGRAM, meta, sealed, bot=bot[:64], approve_up_to=shown_cap)
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
        q = t.notify_queue
        notify_outbox.make_dead(conn, q.c.channel == name, q.c.state == "queued")
        owner_audit.changed(vault, conn, "notify.remove", f"notify:{name}", {"name": name})


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
