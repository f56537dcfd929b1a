"""Parked requests: park one, find it again, list them, expire them, and record the owner's
decision and the result. Each function writes in the caller's transaction (keysafe.approvals has
the rules).
"""

from __future__ import annotations

import json
import secrets
import unicodedata
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, insert, select, update

from keysafe.approvals._approval import (
    DEFAULT_TTL_S,
    ID_PREFIX,
    MAX_REASON,
    MIN_PREFIX,
    TTL_SETTING,
    Approval,
    Kind,
    Status,
)
from keysafe.audit.outcome import Outcome
from keysafe.crypto import jcs
from keysafe.errors import IntegrityError, MalformedRequestError, NotFoundError
from keysafe.store import tables as t
from keysafe.vault import seals
from keysafe.vault.vault import Vault


def _audit(
    vault: Vault,
    conn: Connection,
    actor: str,
    action: str,
    approval_id: str,
    agent: str,
    rule: str | None,
    *,
    outcome: Outcome = Outcome.SUCCESS,
    more: Mapping[str, str] | None = None,
) -> None:
    """Audit one step of approval `approval_id` (asked, expired, approved, denied). Every entry
    names the agent, the rule and the request id, so one request's trail can be followed."""
    vault.audit(
        conn,
        actor=actor,
        action=action,
        target=f"approval:{approval_id}",
        outcome=outcome,
        details={"agent": agent, "rule": rule, "request_id": approval_id, **(more or {})},
    )


def _row(r: Any, now: float) -> Approval:
    status = Status(r.status)
    if status is Status.PENDING and now >= r.expires_at:
        status = Status.EXPIRED
    return Approval(
        r.id,
        r.agent,
        Kind(r.kind),
        r.summary,
        r.rule,
        r.created_at,
        r.expires_at,
        status,
        json.loads(r.request),
        json.loads(r.result) if r.result else None,
        r.fingerprint,
    )


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
            id=approval_id,
            agent=agent,
            kind=str(kind),
            request=jcs.dumps(body).decode(),
            fingerprint=fingerprint,
            summary=summary[:500],
            rule=rule,
            created_at=now,
            expires_at=expires,
            status=str(Status.PENDING),
        )
    )
    _audit(
        vault,
        conn,
        f"agent:{agent}",
        "approval.request",
        approval_id,
        agent,
        rule,
        outcome=Outcome.PENDING,
        more={"kind": str(kind), "summary": summary[:500], "intent": fingerprint},
    )
    return Approval(
        approval_id,
        agent,
        kind,
        summary[:500],
        rule,
        now,
        expires,
        Status.PENDING,
        body,
        None,
        fingerprint,
    )


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
        _audit(vault, conn, "system", "approval.expire", r.id, r.agent, r.rule)
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
    action = "approval.approve" if to is Status.EXECUTING else "approval.deny"
    given = {"reason": said} if said else None
    _audit(vault, conn, "owner", action, approval_id, current.agent, current.rule, more=given)
    return current


def set_result(
    conn: Connection, approval_id: str, status: Status, result: Mapping[str, Any] | None
) -> None:
    conn.execute(
        update(t.approvals)
        .where(t.approvals.c.id == approval_id)
        .values(status=str(status), result=json.dumps(dict(result)) if result else None)
    )
