"""The owner's "approve for a while" grants: bound to one request shape, for a bounded time,
listed and revoked by the owner (keysafe.approvals has the rules).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, PlainSerializer
from sqlalchemy import Connection, delete, insert, select

from keysafe.approvals._approval import Approval, iso
from keysafe.audit.outcome import Outcome
from keysafe.crypto import jcs
from keysafe.errors import NotFoundError
from keysafe.policy.intent import Intent
from keysafe.store import tables as t
from keysafe.vault.vault import Vault


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
    return {
        k: v.lower() if k in ("to", "spender", "contract") and v and v.startswith("0x") else v
        for k, v in fields.items()
        if v is not None
    }


def _shape_hash(shape: Mapping[str, str]) -> str:
    return hashlib.sha256(jcs.dumps(dict(shape))).hexdigest()


class Grant(BaseModel):
    """An active "approve for a while" grant: `agent` may pass `rule` for requests of one shape
    until `until` (a POSIX time, shown as ISO 8601 UTC)."""

    model_config = ConfigDict(frozen=True)

    id: int
    agent: str
    rule: str
    action: str
    until: Annotated[float, PlainSerializer(iso, return_type=str, when_used="json")]
    approval_id: str
    summary: str


def _audit(
    vault: Vault,
    conn: Connection,
    action: str,
    agent: str,
    rule: str,
    request_id: str,
    **more: str | int,
) -> None:
    """Audit the owner's grant to `agent` (made or revoked), naming the rule and the approved
    request it came from."""
    vault.audit(
        conn,
        actor="owner",
        action=action,
        target=f"agent:{agent}",
        outcome=Outcome.SUCCESS,
        details={"agent": agent, "rule": rule, "request_id": request_id, **more},
    )


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
            agent=approval.agent,
            rule=approval.rule,
            action=intent_shape.get("action", ""),
            until=now + seconds,
            approval_id=approval.id,
            shape=_shape_hash(intent_shape),
            summary=summary,
        )
    )
    _audit(
        vault,
        conn,
        "approval.grant",
        approval.agent,
        approval.rule,
        approval.id,
        seconds=seconds,
        summary=summary,
    )


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
    # The row's other columns (the request shape's hash) are not part of a grant's view.
    return [Grant.model_validate({**r._mapping, "summary": r.summary or ""}) for r in rows]


def revoke_grant(vault: Vault, conn: Connection, grant_id: int, now: float) -> Grant:
    for g in list_grants(conn, now):
        if g.id == grant_id:
            conn.execute(delete(t.grants).where(t.grants.c.id == grant_id))
            _audit(vault, conn, "grant.revoke", g.agent, g.rule, g.approval_id)
            return g
    raise NotFoundError(
        f"No active grant {grant_id}.", next_step="see `keysafe grants` for the active ones."
    )
