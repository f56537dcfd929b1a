"""An approval as the owner and the agent see it: its kind, its status and the constants that
bound it (lifetime, grant length, id prefix, reason length). See keysafe.approvals for the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

DEFAULT_TTL_S: Final = 300
TTL_SETTING: Final = "approval_ttl"  # the settings row that overrides DEFAULT_TTL_S
MAX_GRANT_S: Final = 7 * 86400
ID_PREFIX: Final = "apr_"
MIN_PREFIX: Final = 6  # hex digits after "apr_": 16 million values, unlikely to collide by chance
MAX_REASON: Final = 300


class Kind(StrEnum):
    """What a parked request does when approved; each kind has one executor entry."""

    SIGN_TRANSACTION = "sign_transaction"
    SEND_TRANSACTION = "send_transaction"
    TRANSFER = "transfer"  # keysafe builds the transaction from asset, recipient and amount
    SIGN_MESSAGE = "sign_message"
    SIGN_TYPED_DATA = "sign_typed_data"
    READ_DATA = "read_data"
    HTTP_REQUEST = "http_request"
    RELEASE_CREDENTIAL = "release_credential"
    PAIRING = "pairing"  # a remote sidecar asks to become an agent (service/pairing.py)


class Status(StrEnum):
    PENDING = "pending"  # waits for the owner
    EXECUTING = "executing"  # approved; the parked request is running now
    APPROVED = "approved"  # ran; its result is stored (or, for values, waits to be collected)
    DENIED = "denied"  # the owner said no
    EXPIRED = "expired"  # nobody decided in time
    FAILED = "failed"  # approved, but the request failed when it ran (or a restart cut it)


# Kinds whose result is a value for the asking agent alone: produced when that agent collects it,
# once, and never stored in the approvals table.
DELIVERED_ON_COLLECT: Final = frozenset({Kind.READ_DATA, Kind.RELEASE_CREDENTIAL})
# Kinds whose approval produces a signature over bytes the owner can be shown.
SIGNING_KINDS: Final = frozenset(
    {Kind.SIGN_TRANSACTION, Kind.SEND_TRANSACTION, Kind.SIGN_MESSAGE, Kind.SIGN_TYPED_DATA}
)
# Kinds the owner decides every time (service/release.py parks them with `always_ask`): a grant
# could never let one pass, so "approve for a while" is not offered for them.
ALWAYS_ASK: Final = frozenset({Kind.RELEASE_CREDENTIAL, Kind.PAIRING})
# The parked request's marker for any other request the owner decides every time (a sensitive
# data read); display data beside "action" and "intent", dropped before the request runs again.
EVERY_TIME: Final = "owner_decides_every_time"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    agent: str
    kind: Kind
    summary: str
    rule: str | None
    created_at: float
    expires_at: float
    status: Status
    request: dict[str, Any]  # the wire request as sent; validated again before it runs
    result: dict[str, Any] | None  # the call's answer; for a denial, the owner's reason
    fingerprint: str

    @property
    def reason(self) -> str | None:
        """The owner's reason for a denial (untrusted display text), if one was given."""
        if self.status is not Status.DENIED or not self.result:
            return None
        reason = self.result.get("reason")
        return reason if isinstance(reason, str) and reason else None

    @property
    def grantable(self) -> bool:
        """Can "approve for a while" apply? A grant lets a rule's asks pass for one request
        shape; with no rule, or for a kind the owner decides every time, it never could."""
        every_time = self.kind in ALWAYS_ASK or self.request.get(EVERY_TIME) is True
        return self.rule is not None and not every_time

    def for_agent(self) -> dict[str, Any]:
        """What the asking agent may see: status and, once done, exactly its call's result.

        While the approved request runs ("executing") the agent still sees "pending", so it never
        reads "approved" without the result.
        """
        status = Status.PENDING if self.status is Status.EXECUTING else self.status
        out: dict[str, Any] = {
            "approval_id": self.id,
            "status": str(status),
            "summary": self.summary,
            "expires_at": iso(self.expires_at),
        }
        if status in (Status.APPROVED, Status.FAILED) and self.result is not None:
            out["result"] = self.result
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    def for_owner(self) -> dict[str, Any]:
        # The agent's own words travel as display text: the page and the CLI never interpret them.
        said = self.request.get("description") or self.request.get("purpose")
        view = self.for_agent() | {
            "status": str(self.status),
            "agent": self.agent,
            "kind": str(self.kind),
            "rule": self.rule,
            "created_at": iso(self.created_at),
            "request": self.request,
            "description": said if isinstance(said, str) else None,
            "signs": self.kind in SIGNING_KINDS,
            "grantable": self.grantable,
        }
        if self.kind is Kind.PAIRING:
            # The owner compares these with the words the sidecar shows, and types them to approve.
            view["words"] = self.request.get("words")
        if self.kind in DELIVERED_ON_COLLECT:
            view.pop("result", None)  # a data value is for the agent that asked, not the page
        return view
