"""Approvals: requests the policy says a human must approve, parked until the owner decides.

Rules this module enforces (DESIGN.md step 5):
- A pending approval binds the exact request (its canonical JSON and fingerprint); approving runs
  *that* request, with budgets re-checked and reserved at that moment, and stores its result.
- Approvals are single-use: only a pending, unexpired approval can be approved or denied, once.
- They expire (default 5 minutes); an expired approval can no longer be approved.
- "Approve for a while" also records a grant: the same agent's requests that the same rule asks
  about pass without asking until the grant ends (still within every limit).
- Only the owner decides: the surfaces (HTTP owner routes, CLI) authenticate the owner before
  calling approve/deny; agent credentials never reach these functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, insert, select, update

from keysafe.crypto import jcs
from keysafe.errors import KeysafeError, MalformedRequestError, NotFoundError
from keysafe.store import tables as t
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

DEFAULT_TTL_S: Final = 300
MAX_GRANT_S: Final = 7 * 86400
KINDS: Final = (
    "sign_transaction", "send_transaction", "sign_message", "sign_typed_data", "read_data",
    "http_request", "release_credential",
)  # fmt: skip
# Kinds whose result is a value for the asking agent alone: produced when that agent collects it,
# once, and never stored in the approvals table.
DELIVERED_ON_COLLECT: Final = frozenset({"read_data", "release_credential"})


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    agent: str
    kind: str
    summary: str
    rule: str | None
    created_at: float
    expires_at: float
    status: str  # pending | approved | denied | expired | failed
    request: dict[str, Any]
    result: dict[str, Any] | None

    def for_agent(self) -> dict[str, Any]:
        """What the asking agent may see: status and, once done, exactly its call's result.

        While the approved request runs ("executing") the agent still sees "pending", so it never
        reads "approved" without the result.
        """
        status = "pending" if self.status == "executing" else self.status
        out: dict[str, Any] = {
            "approval_id": self.id, "status": status, "summary": self.summary,
            "expires_at": _iso(self.expires_at),
        }  # fmt: skip
        if status in ("approved", "failed") and self.result is not None:
            out["result"] = self.result
        return out

    def for_owner(self) -> dict[str, Any]:
        view = self.for_agent() | {
            "status": self.status, "agent": self.agent, "kind": self.kind, "rule": self.rule,
            "created_at": _iso(self.created_at), "request": self.request,
        }  # fmt: skip
        if self.kind in DELIVERED_ON_COLLECT:
            view.pop("result", None)  # a data value is for the agent that asked, not the page
        return view


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(r: Any, now: float) -> Approval:
    status = "expired" if r.status == "pending" and now >= r.expires_at else r.status
    return Approval(
        r.id, r.agent, r.kind, r.summary, r.rule, r.created_at, r.expires_at, status,
        json.loads(r.request), json.loads(r.result) if r.result else None,
    )  # fmt: skip


def _ttl(conn: Connection) -> int:
    value = conn.execute(
        select(t.settings.c.value).where(t.settings.c.key == "approval_ttl")
    ).scalar()
    return int(value) if value else DEFAULT_TTL_S


def park(
    vault: Vault,
    agent: str,
    kind: str,
    request: dict[str, Any],
    *,
    summary: str,
    rule: str | None,
) -> Approval:
    """Park a request the policy asked about; returns the pending approval."""
    if kind not in KINDS:
        raise ValueError(f"unknown approval kind {kind}")
    now = vault.clock().timestamp()
    approval_id = "apr_" + secrets.token_hex(12)
    request = _jsonable(request)
    body = jcs.dumps(request)
    with vault.db.write() as conn:
        expires = now + _ttl(conn)
        conn.execute(
            insert(t.approvals).values(
                id=approval_id, agent=agent, kind=kind, request=body.decode(),
                fingerprint=hashlib.sha256(body).hexdigest(), summary=summary[:500], rule=rule,
                created_at=now, expires_at=expires, status="pending",
            )
        )  # fmt: skip
        vault.audit(
            conn, actor=f"agent:{agent}", action="approval.request", target=f"approval:{approval_id}",
            outcome="pending",
            details={"agent": agent, "rule": rule, "summary": summary[:500],
                     "request_id": approval_id, "intent": hashlib.sha256(body).hexdigest()},
        )  # fmt: skip
    logger.info("approval %s parked for agent %s", approval_id, agent)
    return Approval(approval_id, agent, kind, summary, rule, now, expires, "pending", request, None)


def get(vault: Vault, approval_id: str, *, agent: str | None = None) -> Approval:
    """One approval; with `agent`, only that agent's own (others look like they do not exist)."""
    with vault.db.read() as conn:
        r = conn.execute(select(t.approvals).where(t.approvals.c.id == approval_id)).first()
    if r is None or (agent is not None and r.agent != agent):
        raise NotFoundError(
            f"No approval '{approval_id[:40]}'.",
            next_step="use the approval_id the pending request returned.",
        )
    return _row(r, vault.clock().timestamp())


def list_approvals(vault: Vault, *, pending_only: bool = True) -> list[Approval]:
    now = vault.clock().timestamp()
    with vault.db.read() as conn:
        rows = conn.execute(select(t.approvals).order_by(t.approvals.c.created_at)).all()
    items = [_row(r, now) for r in rows]
    return [a for a in items if a.status == "pending"] if pending_only else items


def _jsonable(value: Any) -> Any:
    """Integers beyond what canonical JSON carries exactly (2^53) become decimal strings; every
    parser keysafe uses reads decimal strings for amounts, so the request keeps its meaning."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > 2**53 - 1:
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _decide(vault: Vault, approval_id: str, status: str) -> Approval:
    now = vault.clock().timestamp()
    with vault.db.write() as conn:
        r = conn.execute(select(t.approvals).where(t.approvals.c.id == approval_id)).first()
        if r is None:
            raise NotFoundError(
                f"No approval '{approval_id[:40]}'.", next_step="see `keysafe approvals`."
            )
        current = _row(r, now)
        if current.status != "pending":
            raise MalformedRequestError(
                f"Approval {approval_id} is already {current.status}; an approval is used once.",
                next_step="the agent can ask again if it still needs this.",
                status=current.status,
            )
        conn.execute(
            update(t.approvals)
            .where(t.approvals.c.id == approval_id, t.approvals.c.status == "pending")
            .values(status=status, decided_at=now)
        )
        vault.audit(
            conn, actor="owner", action=f"approval.{'approve' if status == 'approved' else 'deny'}",
            target=f"approval:{approval_id}", outcome="success",
            details={"agent": r.agent, "rule": r.rule, "request_id": approval_id},
        )  # fmt: skip
    return _row(r, now)


def deny(vault: Vault, approval_id: str) -> Approval:
    _decide(vault, approval_id, "denied")
    return get(vault, approval_id)


def approve(vault: Vault, approval_id: str, *, grant_seconds: int | None = None) -> Approval:
    """Approve once (or for a while), then execute the parked request exactly and store its result."""
    if grant_seconds is not None and not 0 < grant_seconds <= MAX_GRANT_S:
        raise MalformedRequestError(
            "A session approval lasts between 1 second and 7 days.",
            next_step="pass --for 15m, 1h or 1d.",
        )
    approval = _decide(vault, approval_id, "executing")
    now = vault.clock().timestamp()
    if grant_seconds is not None and approval.rule is not None:
        action = approval.request.get("action", "")
        with vault.db.write() as conn:
            conn.execute(
                insert(t.grants).values(
                    agent=approval.agent, rule=approval.rule, action=action,
                    until=now + grant_seconds, approval_id=approval_id,
                )
            )  # fmt: skip
            vault.audit(
                conn, actor="owner", action="approval.grant", target=f"agent:{approval.agent}",
                outcome="success",
                details={"agent": approval.agent, "rule": approval.rule, "count": grant_seconds},
            )  # fmt: skip
    try:
        if approval.kind in DELIVERED_ON_COLLECT:
            # The value is handed to the agent when it asks (deliver_data), never stored here.
            result: dict[str, Any] = {"status": "approved", "delivered": False}
        else:
            result = _execute(vault, approval)
        status = "approved"
    except KeysafeError as exc:
        result = {"error": exc.to_dict()}
        status = "failed"
    except BaseException:
        # A bug must not leave the approval "executing" for ever: record it failed, re-raise.
        with vault.db.write() as conn:
            conn.execute(
                update(t.approvals)
                .where(t.approvals.c.id == approval_id)
                .values(result=json.dumps({"error": {"code": "INTERNAL"}}), status="failed")
            )
        raise
    with vault.db.write() as conn:
        conn.execute(
            update(t.approvals)
            .where(t.approvals.c.id == approval_id)
            .values(result=json.dumps(result), status=status)
        )
    logger.info("approval %s executed: %s", approval_id, status)
    return get(vault, approval_id)


def agent_view(vault: Vault, approval_id: str, agent: str) -> dict[str, Any]:
    """The asking agent's view; an approved data read is released here, once, and not stored."""
    a = get(vault, approval_id, agent=agent)
    view = a.for_agent()
    if a.kind not in DELIVERED_ON_COLLECT:
        return view
    view.pop("result", None)
    if a.status != "approved" or not a.result or a.result.get("delivered"):
        return view
    with vault.db.write() as conn:
        claimed = conn.execute(
            update(t.approvals)
            .where(t.approvals.c.id == approval_id, t.approvals.c.result == json.dumps(a.result))
            .values(result=json.dumps({"status": "approved", "delivered": True}))
        ).rowcount
    if not claimed:  # another poll took it first: a read is released once
        return view
    return view | {"result": _execute(vault, a)}


def _execute(vault: Vault, a: Approval) -> dict[str, Any]:
    from keysafe.service import signing

    req = a.request
    if a.kind in ("sign_transaction", "send_transaction"):
        res = signing.sign_transaction(
            vault, a.agent, req["wallet"], req["transaction"], chain=req.get("chain"),
            declared=req.get("declared"), broadcast=a.kind == "send_transaction", approved=True,
            threshold=req.get("threshold"),
        )  # fmt: skip
    elif a.kind == "read_data":
        from keysafe.service import data

        return data.read_data(
            vault, a.agent, req["name"], fields=req.get("fields"), approved=True
        ).to_dict()
    elif a.kind == "release_credential":
        from keysafe.service import release

        return release.release(vault, a.agent, req["credential"], purpose=req.get("purpose", ""))
    elif a.kind == "http_request":
        from keysafe.service import proxy

        return proxy.http_request(
            vault,
            a.agent,
            req["credential"],
            req["method"],
            req["url"],
            headers=req.get("headers"),
            body=req.get("body"),
            approved=True,
        ).to_dict()
    elif a.kind == "sign_message":
        res = signing.sign_message(
            vault, a.agent, req["wallet"], req["message"], encoding=req.get("encoding", "utf8"),
            approved=True,
        )  # fmt: skip
    else:
        res = signing.sign_typed_data(
            vault, a.agent, req["wallet"], req["typed_data"], approved=True
        )
    return res.to_dict()
