"""Approvals: requests the policy says a human must approve, parked until the owner decides, and
the owner's "approve for a while" grants.

Rules this package enforces (DESIGN.md step 5):
- A parked request is stored as the typed wire request the agent sent (its JSON), with the
  fingerprint of the exact bytes it would sign or send; approving runs *that* request again
  through the gate (service/approvals.py), with every limit re-checked at that moment.
- One pending approval per (agent, fingerprint): an identical request while one is pending gets
  the same approval back, not a second one.
- Approvals are single-use: only a pending, unexpired approval can be decided, once. They expire
  (default 5 minutes); an expiry is audited when it is first noticed.
- A grant covers only requests of the same *shape* the owner saw (action, chain, wallet, asset,
  contract, selector, recipient, spender, credential, host), for a bounded time, and can be
  listed and revoked. A request the owner decides every time (a credential's value) or one no
  rule asked about cannot be granted (`Approval.grantable`).
- Ids print whole; the owner may type a unique prefix (`resolve`): at least MIN_PREFIX hex
  digits, and an ambiguous one is refused with every candidate's whole id.
- A deny may carry the owner's reason for the agent: untrusted display text, control
  characters dropped and capped at MAX_REASON, stored with the decision and shown to the agent.

Every function takes the caller's connection where it writes, so the gate can park a request in
the same transaction that decided it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete, insert, select, update

from keysafe.crypto import jcs
from keysafe.errors import IntegrityError, MalformedRequestError, NotFoundError
from keysafe.policy.intent import Intent
from keysafe.store import tables as t
from keysafe.vault import seals
from keysafe.vault.vault import Vault

__all__ = [
    "ALWAYS_ASK",
    "DEFAULT_TTL_S",
    "DELIVERED_ON_COLLECT",
    "EVERY_TIME",
    "MAX_GRANT_S",
    "MAX_REASON",
    "MIN_PREFIX",
    "SIGNING_KINDS",
    "TTL_SETTING",
    "Approval",
    "Grant",
    "Kind",
    "Status",
    "add_grant",
    "clean_reason",
    "decide",
    "find_pending",
    "get",
    "granted_rules",
    "jsonable",
    "list_approvals",
    "list_grants",
    "notice_expired",
    "park",
    "resolve",
    "revoke_grant",
    "set_result",
    "shape_of",
]

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
            "approval_id": self.id, "status": str(status), "summary": self.summary,
            "expires_at": iso(self.expires_at),
        }  # fmt: skip
        if status in (Status.APPROVED, Status.FAILED) and self.result is not None:
            out["result"] = self.result
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    def for_owner(self) -> dict[str, Any]:
        # The agent's own words travel as display text: the page and the CLI never interpret them.
        said = self.request.get("description") or self.request.get("purpose")
        view = self.for_agent() | {
            "status": str(self.status), "agent": self.agent, "kind": str(self.kind),
            "rule": self.rule, "created_at": iso(self.created_at), "request": self.request,
            "description": said if isinstance(said, str) else None,
            "signs": self.kind in SIGNING_KINDS, "grantable": self.grantable,
        }  # fmt: skip
        if self.kind is Kind.PAIRING:
            # The owner compares these with the words the sidecar shows, and types them to approve.
            view["words"] = self.request.get("words")
        if self.kind in DELIVERED_ON_COLLECT:
            view.pop("result", None)  # a data value is for the agent that asked, not the page
        return view


def _row(r: Any, now: float) -> Approval:
    status = Status(r.status)
    if status is Status.PENDING and now >= r.expires_at:
        status = Status.EXPIRED
    return Approval(
        r.id, r.agent, Kind(r.kind), r.summary, r.rule, r.created_at, r.expires_at, status,
        json.loads(r.request), json.loads(r.result) if r.result else None, r.fingerprint,
    )  # fmt: skip


def _ttl(vault: Vault, conn: Connection) -> int:
    """The owner's approval lifetime. Sealed, it is honoured; unsealed (set while locked, or
    written into the file), only as far as it is shorter than the default; edited, refused."""
    row = conn.execute(select(t.settings).where(t.settings.c.key == TTL_SETTING)).first()
    if row is None:
        return DEFAULT_TTL_S
    try:
        value = int(row.value)
    except ValueError:
        value = -1
    state = vault.check_row("settings", seals.setting_fields(row.key, row.value), row.mac)
    if value <= 0 or state is seals.Seal.BROKEN:
        raise IntegrityError(
            "The vault's approval lifetime setting was changed outside keysafe.",
            next_step="set it again (`keysafe serve --approval-ttl SECONDS` with the vault "
            "unlocked), and keep a copy of the home as evidence.",
        )
    return value if state is seals.Seal.SEALED else min(value, DEFAULT_TTL_S)


def jsonable(value: Any) -> Any:
    """Integers beyond what canonical JSON carries exactly (2^53) become decimal strings; every
    parser keysafe uses reads decimal strings for amounts, so the request keeps its meaning."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > 2**53 - 1:
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def find_pending(conn: Connection, agent: str, fingerprint: str, now: float) -> Approval | None:
    """The agent's live pending approval for exactly these bytes, if there is one."""
    r = conn.execute(
        select(t.approvals).where(
            t.approvals.c.agent == agent,
            t.approvals.c.fingerprint == fingerprint,
            t.approvals.c.status == Status.PENDING,
            t.approvals.c.expires_at > now,
        )
    ).first()
    return None if r is None else _row(r, now)


def park(
    vault: Vault,
    conn: Connection,
    *,
    agent: str,
    kind: Kind,
    request: Mapping[str, Any],
    fingerprint: str,
    summary: str,
    rule: str | None,
) -> Approval:
    """Park a request the policy asked about, in the caller's transaction."""
    now = vault.clock().timestamp()
    approval_id = "apr_" + secrets.token_hex(12)
    body = jsonable(dict(request))
    expires = now + _ttl(vault, conn)
    conn.execute(
        insert(t.approvals).values(
            id=approval_id, agent=agent, kind=str(kind), request=jcs.dumps(body).decode(),
            fingerprint=fingerprint, summary=summary[:500], rule=rule, created_at=now,
            expires_at=expires, status=str(Status.PENDING),
        )
    )  # fmt: skip
    vault.audit(
        conn, actor=f"agent:{agent}", action="approval.request", target=f"approval:{approval_id}",
        outcome="pending",
        details={"agent": agent, "rule": rule, "kind": str(kind), "summary": summary[:500],
                 "request_id": approval_id, "intent": fingerprint},
    )  # fmt: skip
    return Approval(
        approval_id, agent, kind, summary[:500], rule, now, expires, Status.PENDING, body, None,
        fingerprint,
    )  # fmt: skip


def get(conn: Connection, approval_id: str, now: float, *, agent: str | None = None) -> Approval:
    """One approval; with `agent`, only that agent's own (others look like they do not exist)."""
    r = conn.execute(select(t.approvals).where(t.approvals.c.id == approval_id)).first()
    if r is None or (agent is not None and r.agent != agent):
        raise NotFoundError(
            f"No approval '{approval_id[:40]}'.",
            next_step="use the approval_id the pending request returned.",
        )
    return _row(r, now)


def resolve(conn: Connection, ref: str) -> str:
    """The whole id of the one approval whose id starts with `ref` ("apr_" may be left off).

    Raises:
        MalformedRequestError: `ref` is not hex, is shorter than MIN_PREFIX digits, or more than
            one approval starts with it (the message lists every candidate's whole id).
        NotFoundError: no approval starts with it.
    """
    text = ref.strip().lower()
    digits = text[len(ID_PREFIX) :] if text.startswith(ID_PREFIX) else text
    if not digits or any(c not in "0123456789abcdef" for c in digits) or len(digits) > 64:
        raise NotFoundError(
            f"No approval '{ref[:40]}'.",
            next_step="use an id from `keysafe approvals` (apr_ followed by hex digits).",
        )
    if len(digits) < MIN_PREFIX:
        raise MalformedRequestError(
            f"'{ref[:40]}' is too short to name one approval.",
            next_step=f"give at least {MIN_PREFIX} characters after apr_ "
            "(`keysafe approvals` lists the whole ids).",
        )
    rows = conn.execute(
        select(t.approvals.c.id, t.approvals.c.status)
        .where(t.approvals.c.id.startswith(ID_PREFIX + digits, autoescape=True))
        .order_by(t.approvals.c.created_at)
        .limit(11)
    ).all()
    if not rows:
        raise NotFoundError(
            f"No approval '{ref[:40]}'.",
            next_step="use the approval_id the pending request returned (`keysafe approvals`).",
        )
    if len(rows) > 1:
        shown = ", ".join(f"{r.id} ({r.status})" for r in rows[:10])
        more = " and more" if len(rows) > 10 else ""
        raise MalformedRequestError(
            f"'{ref[:40]}' starts {len(rows) if len(rows) <= 10 else 'more than 10'} approval "
            f"ids: {shown}{more}.",
            next_step="give more characters of the id you mean.",
        )
    found: str = rows[0].id
    return found


def clean_reason(text: str | None) -> str | None:
    """The owner's deny reason as display text: control and format characters (line breaks,
    bidi overrides) become spaces, runs of whitespace one space (None when nothing is left).

    Raises:
        MalformedRequestError: longer than MAX_REASON characters.
    """
    if text is None:
        return None
    if len(text) > MAX_REASON:
        raise MalformedRequestError(
            f"The reason is {len(text)} characters long; at most {MAX_REASON} are kept.",
            next_step="shorten the reason.",
        )
    flat = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    return " ".join(flat.split()) or None


def list_approvals(
    conn: Connection, now: float, *, pending_only: bool, agent: str | None = None
) -> list[Approval]:
    query = select(t.approvals).order_by(t.approvals.c.created_at)
    if agent is not None:
        query = query.where(t.approvals.c.agent == agent)
    if pending_only:
        query = query.where(t.approvals.c.status == Status.PENDING)
    rows = conn.execute(query).all()
    items = [_row(r, now) for r in rows]
    return [a for a in items if a.status is Status.PENDING] if pending_only else items


def notice_expired(vault: Vault, conn: Connection, now: float) -> list[str]:
    """Mark pending approvals past their expiry as expired, auditing each once."""
    rows = conn.execute(
        select(t.approvals.c.id, t.approvals.c.agent, t.approvals.c.rule).where(
            t.approvals.c.status == Status.PENDING, t.approvals.c.expires_at <= now
        )
    ).all()
    for r in rows:
        conn.execute(
            update(t.approvals)
            .where(t.approvals.c.id == r.id, t.approvals.c.status == Status.PENDING)
            .values(status=str(Status.EXPIRED), decided_at=now)
        )
        vault.audit(
            conn, actor="system", action="approval.expire", target=f"approval:{r.id}",
            outcome="success", details={"agent": r.agent, "rule": r.rule, "request_id": r.id},
        )  # fmt: skip
    return [r.id for r in rows]


def decide(
    vault: Vault,
    conn: Connection,
    approval_id: str,
    to: Status,
    now: float,
    *,
    reason: str | None = None,
) -> Approval:
    """The owner's decision on a pending approval: EXECUTING (approve) or DENIED; used once.
    A denial's `reason` (already cleaned by `clean_reason`) is stored for the agent to read."""
    current = get(conn, approval_id, now)
    if current.status is not Status.PENDING:
        raise MalformedRequestError(
            f"Approval {approval_id} is already {current.status}; an approval is used once.",
            next_step="the agent can ask again if it still needs this.",
            status=str(current.status),
        )
    said = reason if to is Status.DENIED else None
    changed = conn.execute(
        update(t.approvals)
        .where(t.approvals.c.id == approval_id, t.approvals.c.status == Status.PENDING)
        .values(
            status=str(to), decided_at=now, result=json.dumps({"reason": said}) if said else None
        )
    ).rowcount
    if not changed:  # decided by someone else between the read and the write
        raise MalformedRequestError(
            f"Approval {approval_id} was just decided elsewhere.",
            next_step="see `keysafe approvals --all`.",
        )
    vault.audit(
        conn, actor="owner",
        action="approval.approve" if to is Status.EXECUTING else "approval.deny",
        target=f"approval:{approval_id}", outcome="success",
        details={"agent": current.agent, "rule": current.rule, "request_id": approval_id}
        | ({"reason": said} if said else {}),
    )  # fmt: skip
    return current


def set_result(
    conn: Connection, approval_id: str, status: Status, result: Mapping[str, Any] | None
) -> None:
    conn.execute(
        update(t.approvals)
        .where(t.approvals.c.id == approval_id)
        .values(status=str(status), result=json.dumps(dict(result)) if result else None)
    )


# -- grants ---------------------------------------------------------------------------------------


def shape_of(intent: Intent) -> dict[str, str]:
    """What a grant is bound to: the request's kind and parties, never its amount or payload.

    Two requests of one shape differ only in how much (still capped by every limit) and in their
    exact bytes; a different recipient, token, contract, function, wallet or host is a new
    question for the owner.
    """
    host = None
    if intent.url is not None:
        host = (urlsplit(intent.url).hostname or "").lower()
    fields = {
        "action": intent.action,
        "chain": str(intent.chain) if intent.chain is not None else None,
        "wallet": intent.wallet,
        "asset": intent.asset,
        "contract": intent.contract,
        "selector": intent.selector,
        "to": intent.to,
        "spender": intent.spender,
        "credential": intent.credential,
        "method": intent.method,
        "host": host,
        "data": intent.data,
    }
    return {k: v.lower() if k in ("to", "spender", "contract") and v and v.startswith("0x")
            else v for k, v in fields.items() if v is not None}  # fmt: skip


def _shape_hash(shape: Mapping[str, str]) -> str:
    return hashlib.sha256(jcs.dumps(dict(shape))).hexdigest()


@dataclass(frozen=True, slots=True)
class Grant:
    id: int
    agent: str
    rule: str
    action: str
    until: float
    approval_id: str
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "agent": self.agent, "rule": self.rule, "action": self.action,
            "until": iso(self.until), "approval_id": self.approval_id, "summary": self.summary,
        }  # fmt: skip


def add_grant(
    vault: Vault,
    conn: Connection,
    approval: Approval,
    intent_shape: Mapping[str, str],
    seconds: int,
    now: float,
) -> None:
    """Approve-for-a-while: the same agent's requests of this shape that this rule asks about pass
    without asking until the grant ends (within every limit)."""
    if approval.rule is None:
        return
    summary = ", ".join(f"{k}={v}" for k, v in sorted(intent_shape.items()))[:500]
    conn.execute(
        insert(t.grants).values(
            agent=approval.agent, rule=approval.rule, action=intent_shape.get("action", ""),
            until=now + seconds, approval_id=approval.id, shape=_shape_hash(intent_shape),
            summary=summary,
        )
    )  # fmt: skip
    vault.audit(
        conn, actor="owner", action="approval.grant", target=f"agent:{approval.agent}",
        outcome="success",
        details={"agent": approval.agent, "rule": approval.rule, "seconds": seconds,
                 "request_id": approval.id, "summary": summary},
    )  # fmt: skip


def granted_rules(conn: Connection, agent: str, intent: Intent, now: float) -> frozenset[str]:
    """Rules the owner granted this agent, for now, for requests of exactly this shape."""
    rows = conn.execute(
        select(t.grants.c.rule).where(
            t.grants.c.agent == agent,
            t.grants.c.action == intent.action,
            t.grants.c.shape == _shape_hash(shape_of(intent)),
            t.grants.c.until > now,
        )
    )
    return frozenset(r.rule for r in rows)


def list_grants(conn: Connection, now: float) -> list[Grant]:
    rows = conn.execute(
        select(t.grants).where(t.grants.c.until > now).order_by(t.grants.c.id)
    ).all()
    return [
        Grant(r.id, r.agent, r.rule, r.action, r.until, r.approval_id, r.summary or "")
        for r in rows
    ]


def revoke_grant(vault: Vault, conn: Connection, grant_id: int, now: float) -> Grant:
    for g in list_grants(conn, now):
        if g.id == grant_id:
            conn.execute(delete(t.grants).where(t.grants.c.id == grant_id))
            vault.audit(
                conn, actor="owner", action="grant.revoke", target=f"agent:{g.agent}",
                outcome="success",
                details={"agent": g.agent, "rule": g.rule, "request_id": g.approval_id},
            )  # fmt: skip
            return g
    raise NotFoundError(
        f"No active grant {grant_id}.", next_step="see `keysafe grants` for the active ones."
    )
