"""The one formatter that decides what leaves the vault in a notification.

Every channel (Telegram, webhooks) sends a `Notice` and nothing else, and a `Notice` is built
only here, from fields keysafe itself decoded. Rules this module enforces:

- What may leave: the agent's name, a category ("payment", "API call", "data read", …), a short
  summary keysafe writes (amount and asset, a shortened recipient `0x1111…1111`, a host, a record's
  name), the rule's name, the approval's id and when it expires.
- What never leaves: keys, tokens, credential values, data values, raw transactions or messages,
  full addresses, URL paths and queries, policy contents, the pairing words, and the agent's
  free-text description (it is not included at all: an agent could write anything there).
- Every string that came from outside keysafe's own vocabulary (names, symbols, amounts, hosts)
  is cut to a short length and stripped of control characters, so a notice can never carry a
  payload or break the layout of a chat message.

Example::

    notice = for_approval(approval)
    print(notice.text(now=time.time()))
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from keysafe.approvals import Approval, Kind
from keysafe.policy.intent import Intent

__all__ = [
    "Category",
    "Event",
    "Notice",
    "alert",
    "for_approval",
    "for_deny",
    "short_address",
]


class Event(StrEnum):
    """What happened; channels subscribe to these by name."""

    APPROVAL = "approval"  # a request waits for the owner
    DENY = "deny"  # the policy denied an agent's request
    ANOMALY = "anomaly"  # a burst of denials from one agent
    UNLOCK_FAILURE = "unlock_failure"  # a wrong passphrase, or a throttled attempt
    PAUSE_ALL = "pause_all"  # every agent was paused (or resumed)
    AUDIT_VERIFY_FAILURE = "audit_verify_failure"  # the audit chain did not verify
    ROTATION_DUE = "rotation_due"  # something an agent holds is due for replacement
    TEST = "test"  # `keysafe notify test`: sent to every channel whatever it subscribes to


SUBSCRIBABLE: Final = tuple(e for e in Event if e is not Event.TEST)


class Category(StrEnum):
    """What kind of thing a notice is about, in the owner's words."""

    PAYMENT = "payment"
    TRANSACTION_SIGNATURE = "transaction signature"
    MESSAGE_SIGNATURE = "message signature"
    API_CALL = "API call"
    DATA_READ = "data read"
    CREDENTIAL_RELEASE = "credential release"
    PAIRING = "pairing"
    ALERT = "alert"
    TEST = "test"


_TITLES: Final = {
    Event.APPROVAL: "Approval needed",
    Event.DENY: "Request denied",
    Event.ANOMALY: "Unusual activity",
    Event.UNLOCK_FAILURE: "Failed unlock",
    Event.PAUSE_ALL: "Pause-all switched",
    Event.AUDIT_VERIFY_FAILURE: "Audit log did not verify",
    Event.ROTATION_DUE: "Rotation due",
    Event.TEST: "Test notification",
}


class Notice(BaseModel):
    """One notification, as every channel renders it; holds nothing secret by construction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: Event
    category: Category
    title: str
    summary: str
    agent: str | None = None
    rule: str | None = None
    approval_id: str | None = None
    expires_at: float | None = None  # unix seconds; channels show the countdown
    # Pairings need the words typed; Telegram shows only Deny for them (and over its cap).
    approve_elsewhere: bool = False

    def countdown(self, now: float) -> str | None:
        """ "expires in 4 min 10 s" (or "expired"), for a notice with an expiry."""
        if self.expires_at is None:
            return None
        left = int(self.expires_at - now)
        if left <= 0:
            return "expired"
        minutes, seconds = divmod(left, 60)
        return f"expires in {minutes} min {seconds} s" if minutes else f"expires in {seconds} s"

    def text(self, now: float) -> str:
        """The notice as plain text (a chat message)."""
        lines = [f"keysafe · {self.title}"]
        if self.agent:
            lines.append(f"Agent: {self.agent}")
        lines.append(f"{self.category.value[:1].upper()}{self.category.value[1:]}: {self.summary}")
        if self.rule:
            lines.append(f"Rule: {self.rule}")
        when = self.countdown(now)
        if self.approval_id:
            lines.append(f"Request {self.approval_id}" + (f" · {when}" if when else ""))
        if self.approve_elsewhere:
            lines.append("Approve on the web page or CLI; here you can only deny.")
        return "\n".join(lines)


# -- cleaning what came from outside ------------------------------------------------------------

_NAME_LIMIT: Final = 40


def _clean(text: object, limit: int = _NAME_LIMIT) -> str:
    """Display text: control and format characters out, whitespace runs to one space, cut to
    `limit` characters (an ellipsis marks the cut)."""
    flat = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in str(text))
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_AMOUNT: Final = re.compile(r"^[0-9]{1,30}(\.[0-9]{1,30})?$")


def _amount(intent: Intent) -> str | None:
    if intent.is_unlimited:
        return "unlimited"
    if intent.amount is None:
        return None
    text = intent.amount.strip()
    return _clean(text, 24) if _AMOUNT.match(text) else "an amount"


def short_address(address: str) -> str:
    """`0x1111…1111`: enough to recognise a recipient, too little to be the address."""
    a = _clean(address, 200)
    return a if len(a) <= 10 else f"{a[:6]}…{a[-4:]}"


def _asset(asset: str | None) -> str:
    """A symbol as it is; an unknown token's address (or a Solana mint) shortened like one."""
    if not asset:
        return ""
    return short_address(asset) if len(asset) > 16 else _clean(asset, 16)


def _host(url: str | None) -> str:
    if not url:
        return "an API"
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    return _clean(host or "an API", 60)


# -- the formatter --------------------------------------------------------------------------------


def _category(kind: Kind, intent: Intent | None) -> Category:
    if kind is Kind.PAIRING:
        return Category.PAIRING
    if kind in (Kind.SIGN_MESSAGE, Kind.SIGN_TYPED_DATA):
        return Category.MESSAGE_SIGNATURE
    if kind is Kind.HTTP_REQUEST:
        return Category.API_CALL
    if kind is Kind.READ_DATA:
        return Category.DATA_READ
    if kind is Kind.RELEASE_CREDENTIAL:
        return Category.CREDENTIAL_RELEASE
    if intent is None or intent.amount is None or not intent.action.endswith(".transfer"):
        # A contract call with value attached is not a payment of that value.
        return Category.TRANSACTION_SIGNATURE
    return Category.PAYMENT


def _summary(kind: Kind, intent: Intent | None, agent: str) -> str:
    """A short sentence keysafe writes from the decoded request: never the agent's words."""
    if kind is Kind.PAIRING:
        return f"a remote sidecar asks to become agent '{_clean(agent)}'"
    if intent is None:
        return "a request (open the web page or CLI for details)"
    chain = f" on {_clean(intent.chain, 24)}" if intent.chain is not None else ""
    wallet = f" with wallet '{_clean(intent.wallet)}'" if intent.wallet else ""
    if kind is Kind.SIGN_MESSAGE:
        return f"sign a message{wallet}{chain}"
    if kind is Kind.SIGN_TYPED_DATA:
        return f"sign typed data (EIP-712){wallet}{chain}"
    if kind is Kind.HTTP_REQUEST:
        method = _clean(intent.method or "HTTP", 8).upper()
        cred = f" with credential '{_clean(intent.credential)}'" if intent.credential else ""
        return f"{method} request to {_host(intent.url)}{cred}"
    if kind is Kind.READ_DATA:
        return f"read data '{_clean(intent.data or '?')}'"
    if kind is Kind.RELEASE_CREDENTIAL:
        return f"hand credential '{_clean(intent.credential or '?')}' to the agent"
    amount = _amount(intent)
    asset = _asset(intent.asset)
    what = f"{amount} {asset}".strip() if amount else (asset or "a transaction")
    fee = _fee(intent)
    if intent.spender:
        return f"let {short_address(intent.spender)} spend {what}{wallet}{chain}{fee}"
    to = short_address(intent.to) if intent.to else "a contract"
    if intent.action.endswith(".call"):
        # What a call does is in its data, not its value: never shown as a payment.
        attached = f" with {what} attached" if amount else ""
        return f"call {to} (contract code decides what moves){attached}{wallet}{chain}{fee}"
    if intent.action.endswith(".deploy"):
        return f"deploy a contract{wallet}{chain}{fee}"
    return f"send {what} to {to}{wallet}{chain}{fee}"


def _fee(intent: Intent) -> str:
    if intent.fee is None or not _AMOUNT.match(intent.fee.strip()):
        return ""
    return f", network fee up to {_clean(intent.fee.strip(), 24)}"


def intent_of(approval: Approval) -> Intent | None:
    """The decoded intent parked with an approval (display data), if it can be read."""
    raw = approval.request.get("intent")
    if not isinstance(raw, dict):
        return None
    try:
        return Intent.model_validate(raw)
    except ValidationError:
        return None


def for_approval(approval: Approval, *, approve_elsewhere: bool = False) -> Notice:
    """The notice for a pending approval (`approve_elsewhere`: this channel may only deny)."""
    intent = intent_of(approval)
    return Notice(
        event=Event.APPROVAL,
        category=_category(approval.kind, intent),
        title=_TITLES[Event.APPROVAL],
        summary=_summary(approval.kind, intent, approval.agent),
        agent=_clean(approval.agent, 64),
        rule=_clean(approval.rule) if approval.rule else None,
        approval_id=approval.id,
        expires_at=approval.expires_at,
        approve_elsewhere=approve_elsewhere or approval.kind is Kind.PAIRING,
    )


def for_deny(agent: str, kind: Kind, intent: Intent | None, rule: str | None) -> Notice:
    """The notice for a request the policy denied (the reason's text stays in the audit log)."""
    return Notice(
        event=Event.DENY,
        category=_category(kind, intent),
        title=_TITLES[Event.DENY],
        summary=_summary(kind, intent, agent),
        agent=_clean(agent, 64),
        rule=_clean(rule) if rule else None,
    )


def alert(event: Event, summary: str, *, agent: str | None = None) -> Notice:
    """An alert; `summary` is keysafe's own sentence (counts, names), cleaned all the same."""
    category = Category.TEST if event is Event.TEST else Category.ALERT
    return Notice(
        event=event,
        category=category,
        title=_TITLES[event],
        summary=_clean(summary, 300),
        agent=_clean(agent, 64) if agent else None,
    )
