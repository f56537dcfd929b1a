"""The owner's Telegram: pairing one chat, approval messages with buttons, and button presses.

Rules this module enforces:
- Pairing proves the chat is the owner's: the owner messages the bot, the bot answers *in that
  chat* with a one-time code, and the owner types the code into the CLI that is waiting for it.
  Only that chat is paired; a wrong code pairs nothing (start again).
- Each button carries a single-use nonce (only its SHA-256 is stored) bound to one approval and
  a digest of the exact request the owner was shown (id, fingerprint, parked request). A press
  is refused, with the reason as the answer, when it comes from another chat (audited), when
  the nonce is unknown or used (a replayed button), when the approval is no longer pending
  (decided, expired) or when its request changed since the message.
- Approving from Telegram calls `service.approvals.approve`, the same function the web page and
  the CLI call, so every rule of approving holds here too; the vault must be unlocked. Telegram
  may only deny a pairing (its words must be typed) and, when the owner set a cap, a request
  above it: a payment in another asset or over the amount, or a message signature (whose value
  cannot be bounded); such messages say to approve on the web page or CLI.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from pydantic import BaseModel
from sqlalchemy import insert, select, update

from keysafe import approvals as parked
from keysafe.approvals import Approval, Kind, Status
from keysafe.audit.outcome import Outcome
from keysafe.crypto import jcs
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import KeysafeError, MalformedRequestError, NotFoundError
from keysafe.notify import telegram
from keysafe.notify.notice import Event, Notice, for_approval, intent_of
from keysafe.service import approvals
from keysafe.service.notify_channels import Cap
from keysafe.store import tables as t
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

__all__ = [
    "Candidate",
    "Outgoing",
    "Pressed",
    "api_url",
    "compose",
    "pairing_bot",
    "pairing_confirm",
    "pairing_wait",
    "press",
]

api_url = telegram.api_url  # the Bot API's address (KEYSAFE_TELEGRAM_API_URL for tests)
PREFIX: Final = "ks1:"  # callback data: PREFIX + nonce (Telegram allows 64 bytes)
CODE_DIGITS: Final = 6


def _digest(a: Approval) -> str:
    body = {"id": a.id, "fingerprint": a.fingerprint, "request": a.request}
    return hashlib.sha256(jcs.dumps(body)).hexdigest()


def _hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


# What a cap can bound: the value of a plain transfer. A contract call, a deployment or a token
# approval can move far more than the value attached to it (a router pulling tokens, a spender
# allowance), so above-cap rules apply to them however small that value looks.
_CAPPED_ACTIONS: Final = frozenset({"evm.transfer", "solana.transfer"})


def may_approve(a: Approval, cap: Cap | None) -> bool:
    """Whether Telegram may approve `a` (otherwise it may only deny it)."""
    if a.kind is Kind.PAIRING:
        return False
    if cap is None:
        return True
    intent = intent_of(a)
    if intent is None:
        return False
    if a.kind in (Kind.HTTP_REQUEST, Kind.READ_DATA):
        return True  # moves nothing keysafe can count; a raw credential's release is not this
    if intent.action not in _CAPPED_ACTIONS or intent.amount is None or intent.is_unlimited:
        # A signature over a message or typed data may authorise anything (a permit); a call
        # or approval moves more than it shows; a released credential is worth any amount.
        return False
    try:
        # The most the network fee can cost counts too (in the chain's native units: for a
        # token transfer that makes the sum stricter than the cap, never looser).
        total = Decimal(intent.amount) + Decimal(intent.fee or "0")
    except InvalidOperation:
        return False
    return cap.allows(str(total), intent.asset)


class Outgoing(BaseModel):
    """A Telegram message to send: its text and its buttons (label, callback data)."""

    text: str
    buttons: list[tuple[str, str]]


def compose(vault: Vault, notice: Notice, cap: Cap | None) -> Outgoing:
    """The message for `notice`. An approval still pending gets fresh single-use buttons
    (Deny, and Approve where Telegram may approve it); one decided meanwhile gets none."""
    now = vault.clock().timestamp()
    if notice.event is not Event.APPROVAL or notice.approval_id is None:
        return Outgoing(text=notice.text(now), buttons=[])
    with vault.db.write() as conn:
        try:
            a = parked.get(conn, notice.approval_id, now)
        except NotFoundError:
            return Outgoing(text=notice.text(now), buttons=[])
        if a.status is not Status.PENDING:
            return Outgoing(text=f"{notice.text(now)}\n(already {a.status})", buttons=[])
        approve = may_approve(a, cap)
        shown = for_approval(a, approve_elsewhere=not approve)
        buttons: list[tuple[str, str]] = []
        for label, action in (("Approve", "approve"), ("Deny", "deny")):
            if action == "approve" and not approve:
                continue
            nonce = secrets.token_urlsafe(16)
            conn.execute(
                insert(t.notify_buttons).values(
                    nonce_hash=_hash(nonce),
                    approval_id=a.id,
                    digest=_digest(a),
                    action=action,
                    created_at=now,
                    used_at=None,
                )
            )
            buttons.append((label, PREFIX + nonce))
    return Outgoing(text=shown.text(now), buttons=buttons)


class Pressed(BaseModel):
    """What to answer a button press with, and the message's new text once decided."""

    answer: str
    edit: str | None = None


def _refuse(vault: Vault, chat_id: int, reason: str, approval_id: str | None) -> None:
    with vault.db.write() as conn:
        vault.audit(
            conn,
            actor=f"telegram:{chat_id}",
            action="notify.telegram.button",
            target=f"approval:{approval_id}" if approval_id else "telegram",
            outcome=Outcome.DENIED,
            details={"reason": reason, "request_id": approval_id},
        )


def press(
    vault: Vault, chat_id: int, paired_chat: int | None, data: str, cap: Cap | None
) -> Pressed:
    """Act on a button press from `chat_id` (see the module's rules); never raises for a
    refused press: the answer says why."""
    if paired_chat is None or chat_id != paired_chat:
        _refuse(vault, chat_id, "foreign chat", None)
        return Pressed(answer="This chat is not paired with the vault; nothing was done.")
    if not data.startswith(PREFIX):
        return Pressed(answer="keysafe does not know this button.")
    nonce_hash = _hash(data[len(PREFIX) :])
    with vault.db.read() as conn:
        button = conn.execute(
            select(t.notify_buttons).where(t.notify_buttons.c.nonce_hash == nonce_hash)
        ).first()
    if button is None:
        _refuse(vault, chat_id, "unknown button", None)
        return Pressed(answer="keysafe does not know this button; nothing was done.")
    approval_id = str(button.approval_id)
    if button.action == "approve" and not vault.is_unlocked:
        # Checked before the nonce is spent: after unlocking, the same button works.
        return Pressed(
            answer="The vault is locked, so nothing can be approved. Unlock it (keysafe unlock "
            "or the web page), then press Approve again."
        )
    current = _spend(vault, nonce_hash, approval_id)
    if current is None:
        _refuse(vault, chat_id, "button used before", approval_id)
        return Pressed(answer="This button was already used; nothing was done.")
    refused = _stale(vault, chat_id, current, str(button.digest))
    if refused is not None:
        return refused
    if button.action == "deny":
        approvals.deny(vault, approval_id, reason="denied by the owner from Telegram")
        return Pressed(answer="Denied.", edit="Denied from Telegram.")
    if not may_approve(current, cap):
        _refuse(vault, chat_id, "over the Telegram cap", approval_id)
        return Pressed(answer="Approve this on the web page or with the CLI; nothing was done.")
    return _approve(vault, approval_id)


def _spend(vault: Vault, nonce_hash: str, approval_id: str) -> Approval | None:
    """Use up the button (and its message's other button); returns its approval as it is now,
    or None when the button was used before."""
    now = vault.clock().timestamp()
    with vault.db.write() as conn:
        spent = conn.execute(
            update(t.notify_buttons)
            .where(
                t.notify_buttons.c.nonce_hash == nonce_hash, t.notify_buttons.c.used_at.is_(None)
            )
            .values(used_at=now)
        ).rowcount
        current = parked.get(conn, approval_id, now) if spent else None
        if current is not None:
            # Both buttons of one message go with the first press.
            conn.execute(
                update(t.notify_buttons)
                .where(
                    t.notify_buttons.c.approval_id == approval_id,
                    t.notify_buttons.c.used_at.is_(None),
                )
                .values(used_at=now)
            )
    return current


def _stale(vault: Vault, chat_id: int, current: Approval, digest: str) -> Pressed | None:
    """The answer to a press that comes too late: the approval was decided, or its request
    changed since the message (each audited); None when the press stands."""
    approval_id = current.id
    if current.status is not Status.PENDING:
        _refuse(vault, chat_id, f"approval {current.status}", approval_id)
        return Pressed(
            answer=f"This request is already {current.status}; nothing was done.",
            edit=f"Already {current.status}.",
        )
    if not hmac.compare_digest(_digest(current), digest):
        _refuse(vault, chat_id, "request changed", approval_id)
        return Pressed(
            answer="This request changed since the message was sent; nothing was done. "
            "Decide on the web page or with the CLI."
        )
    return None


def _approve(vault: Vault, approval_id: str) -> Pressed:
    try:
        done = approvals.approve(vault, approval_id)
    except KeysafeError as exc:
        return Pressed(answer=f"Not approved: {exc.what}"[:200])
    if done.status is Status.FAILED:
        return Pressed(
            answer="Approved, but the request failed when it ran; see the web page.",
            edit="Approved from Telegram, but it failed when it ran.",
        )
    return Pressed(answer="Approved.", edit="Approved from Telegram.")


# -- pairing ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """The chat that messaged the bot during pairing, and the code sent into it."""

    chat_id: int
    sender: str  # the Telegram display name, for the owner to recognise
    offset: int | None  # where the bot's updates stand: acknowledged after pairing
    code_hash: str  # SHA-256 of the code: the code itself is only in that chat

    def __repr__(self) -> str:
        return f"Candidate(chat_id={self.chat_id}, sender={self.sender!r})"


def _token(token: SecretBytes) -> str:
    # python-telegram-bot takes the token as a str (it is part of every URL): this copy cannot
    # be wiped, so it lives only for the pairing's few calls.
    return bytes(token.reveal()).decode().strip()


def _failed(exc: Exception, token: str) -> MalformedRequestError:
    return MalformedRequestError(
        f"Telegram refused or did not answer ({type(exc).__name__}: "
        f"{telegram.scrub(str(exc), token)[:120]}).",
        next_step="check the bot token (from @BotFather) and the network, then try again.",
    )


def pairing_bot(token: SecretBytes, api: str) -> str:
    """The bot's @name (proves the token works).

    Raises:
        MalformedRequestError: Telegram refused the token or could not be reached.
    """
    text = _token(token)

    async def run() -> str:
        async with telegram.make_bot(text, api) as bot:
            return await telegram.bot_name(bot)

    try:
        return asyncio.run(run())
    except (telegram.TelegramError, OSError) as exc:
        raise _failed(exc, text) from None


def pairing_wait(token: SecretBytes, api: str, timeout_s: int) -> Candidate:
    """Wait for the first message to the bot sent from now on, and answer it in its chat
    with a one-time code.

    Raises:
        MalformedRequestError: no message within `timeout_s`, or Telegram failed.
    """
    text = _token(token)
    code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))

    async def run() -> Candidate | None:
        async with telegram.make_bot(text, api) as bot:
            # Only what is sent from now on: an older message proves nothing about who waits.
            _, offset = await telegram.fetch(bot, -1, 0)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while loop.time() < deadline:
                items, offset = await telegram.fetch(bot, offset, 2)
                for item in items:
                    if item.kind == "message":
                        await telegram.send(
                            bot,
                            item.chat_id,
                            f"keysafe pairing code: {code}\nType it into the terminal that is "
                            "waiting. If you did not start a pairing, ignore this message.",
                        )
                        return Candidate(
                            item.chat_id,
                            item.sender[:80],
                            offset,
                            hashlib.sha256(code.encode()).hexdigest(),
                        )
            return None

    try:
        found = asyncio.run(run())
    except (telegram.TelegramError, OSError) as exc:
        raise _failed(exc, text) from None
    if found is None:
        raise MalformedRequestError(
            f"No message reached the bot within {timeout_s} seconds; nothing was paired.",
            next_step="run the command again and send the bot any message from your phone.",
        )
    return found


def pairing_confirm(token: SecretBytes, api: str, candidate: Candidate, typed: str) -> None:
    """Check the code the owner typed; on a match tell the chat it is paired.

    Raises:
        MalformedRequestError: a wrong code (nothing is paired), or Telegram failed.
    """
    text = _token(token)
    given = hashlib.sha256(typed.strip().replace(" ", "").encode()).hexdigest()
    if not hmac.compare_digest(given, candidate.code_hash):
        raise MalformedRequestError(
            "That is not the code the bot sent; nothing was paired.",
            next_step="run `keysafe notify telegram` again, and type the code from the chat.",
        )

    async def run() -> None:
        async with telegram.make_bot(text, api) as bot:
            await telegram.send(
                bot,
                candidate.chat_id,
                "Paired: keysafe sends approvals and alerts to this chat.",
            )
            await telegram.fetch(bot, candidate.offset, 0)  # acknowledges the pairing's updates

    try:
        asyncio.run(run())
    except (telegram.TelegramError, OSError) as exc:
        raise _failed(exc, text) from None
