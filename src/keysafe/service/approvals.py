"""The owner's side of approvals, and the one executor that runs an approved request.

Rules this module enforces (the storage rules are in keysafe/approvals):
- Only the owner decides: the surfaces (HTTP owner routes, CLI) authenticate the owner before
  calling approve/deny/revoke_grant; agent credentials never reach these functions.
- Approving runs the parked request again exactly as it was sent, through the gate, with
  `approved=True`: the asks are satisfied, every deny and limit still holds at that moment. The
  parked JSON is validated again as its kind's wire model before it runs; a kind dispatches
  through one table (service/dispatch.py), so every kind runs the same way.
- A value (a data read, a credential release) is produced when the asking agent collects it,
  once, and never stored in the approvals table.
- "Approve for a while" writes a grant bound to the shape of the request the owner saw; it is
  refused where no grant could ever apply (`Approval.grantable`), rather than silently
  approving once.
- The owner names an approval by its whole id or a unique prefix (keysafe/approvals `resolve`).
- The budget an approval would use is computed by the gate's own decision
  (`gate_decision.preview_approved`): the card shows the same windows the approved request will
  be judged against.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import update

from keysafe import approvals as store
from keysafe.approvals import (
    DELIVERED_ON_COLLECT,
    EVERY_TIME,
    MAX_GRANT_S,
    Approval,
    Grant,
    Kind,
    Status,
    shape_of,
)
from keysafe.errors import ErrorCode, KeysafeError, MalformedRequestError
from keysafe.policy.engine import WindowState
from keysafe.policy.intent import Intent
from keysafe.service import dispatch, gate_decision, pairing
from keysafe.store import tables as t
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

__all__ = [
    "DELIVERED_ON_COLLECT",
    "MAX_GRANT_S",
    "Approval",
    "Grant",
    "Kind",
    "Status",
    "agent_view",
    "approve",
    "budget_effect",
    "deny",
    "get",
    "list_approvals",
    "list_grants",
    "resolve",
    "revoke_grant",
]


# -- the executor ---------------------------------------------------------------------------------


def _parked_wire(a: Approval) -> BaseModel:
    """The parked request, validated again as its kind's wire model (display-only fields — the
    decoded intent the owner saw — are dropped: the request is decoded again when it runs)."""
    fields = {k: v for k, v in a.request.items() if k not in ("action", "intent", EVERY_TIME)}
    fields.pop("idempotency_key", None)  # the approval itself is the request's one use
    try:
        return dispatch.wire_of(a.kind, fields)
    except ValidationError:
        raise MalformedRequestError(
            f"Approval {a.id} holds a request keysafe cannot read any more.",
            next_step="deny it; the agent can ask again.",
        ) from None


def _execute(vault: Vault, a: Approval) -> dict[str, Any]:
    return dispatch.run(vault, a.agent, a.kind, _parked_wire(a), dispatch.How(approval_id=a.id))


# -- the owner's decisions ------------------------------------------------------------------------


def get(vault: Vault, approval_id: str, *, agent: str | None = None) -> Approval:
    """One approval by its whole id (only the asking agent's, when `agent` is given).

    Raises:
        NotFoundError: no such approval (or not this agent's).
    """
    with vault.db.read() as conn:
        return store.get(conn, approval_id, vault.clock().timestamp(), agent=agent)


def resolve(vault: Vault, ref: str) -> str:
    """The whole id an owner's prefix names (see keysafe/approvals `resolve`).

    Raises:
        MalformedRequestError: too short, or ambiguous (the message lists the whole ids).
        NotFoundError: no approval starts with it.
    """
    with vault.db.read() as conn:
        return store.resolve(conn, ref)


def budget_effect(vault: Vault, approval: Approval) -> list[WindowState] | None:
    """The agent's budget windows this approval would draw on, before and after, as the gate
    would judge the request if approved now (None when it spends nothing the windows count, or
    its stored intent cannot be read)."""
    raw = approval.request.get("intent")
    if not isinstance(raw, dict):
        return None
    try:
        intent = Intent.model_validate(raw)
    except ValidationError:
        return None
    try:
        decision = gate_decision.preview_approved(vault, approval.agent, intent)
    except KeysafeError:
        return None  # a paused, revoked or edited agent: the card says nothing about budgets
    return list(decision.windows) or None


def list_approvals(vault: Vault, *, pending_only: bool = True) -> list[Approval]:
    """The approvals, oldest first (only those still waiting, by default); any that expired
    since the last look are marked and audited as expired first."""
    now = vault.clock().timestamp()
    with vault.db.write() as conn:
        store.notice_expired(vault, conn, now)
        return store.list_approvals(conn, now, pending_only=pending_only)


def agent_pending(vault: Vault, agent: str) -> list[dict[str, Any]]:
    """The asking agent's own approvals still waiting for the owner, oldest first."""
    now = vault.clock().timestamp()
    with vault.db.write() as conn:
        store.notice_expired(vault, conn, now)
        pending = store.list_approvals(conn, now, pending_only=True, agent=agent)
    return [a.for_agent() for a in pending]


def deny(vault: Vault, approval_id: str, *, reason: str | None = None) -> Approval:
    """Deny a pending approval (whole id or unique prefix); `reason` goes to the agent.

    Raises:
        MalformedRequestError: not pending any more, or an ambiguous prefix.
        NotFoundError: no such approval.
    """
    now = vault.clock().timestamp()
    said = store.clean_reason(reason)
    with vault.db.write() as conn:
        approval_id = store.resolve(conn, approval_id)
        store.notice_expired(vault, conn, now)
        store.decide(vault, conn, approval_id, Status.DENIED, now, reason=said)
    return get(vault, approval_id)


def approve(
    vault: Vault, approval_id: str, *, grant_seconds: int | None = None, words: str | None = None
) -> Approval:
    """Approve once (or for a while), then run the parked request exactly and store its result.

    A pairing is approved only with `words`, the four words the sidecar shows; other words deny
    it (someone between the sidecar and the vault, or the wrong sidecar), and it cannot be tried
    again.

    Raises:
        MalformedRequestError: not pending any more, an ambiguous prefix, a grant length out of
            range, a grant asked for a request no grant could cover, or a pairing's words
            missing or wrong.
        NotFoundError: no such approval.
    """
    if grant_seconds is not None and not 0 < grant_seconds <= MAX_GRANT_S:
        raise MalformedRequestError(
            "A session approval lasts between 1 second and 7 days.",
            next_step="pass --for 15m, 1h or 1d.",
        )
    approval_id, approval = _mark_executing(vault, approval_id, grant_seconds, words)
    if approval is None:
        raise MalformedRequestError(
            "Those are not the words this pairing shows, so it is denied: the sidecar may be "
            "talking to someone else, or the words were mistyped.",
            next_step="check the sidecar's host, then invite it again (`keysafe agent invite`).",
        )
    if approval.kind in DELIVERED_ON_COLLECT:
        # The value is handed to the agent when it asks (agent_view), never stored here.
        _finish(vault, approval_id, Status.APPROVED, {"status": "approved", "delivered": False})
        return get(vault, approval_id)
    try:
        result = _execute(vault, approval)
        status = Status.APPROVED
    except KeysafeError as exc:
        result, status = {"error": exc.to_dict()}, Status.FAILED
    except BaseException:
        # A bug must not leave the approval "executing" for ever: record it failed, re-raise.
        _finish(vault, approval_id, Status.FAILED, {"error": {"code": ErrorCode.INTERNAL}})
        raise
    _finish(vault, approval_id, status, result)
    logger.info("approval %s executed: %s", approval_id, status)
    return get(vault, approval_id)


def _mark_executing(
    vault: Vault, approval_id: str, grant_seconds: int | None, words: str | None
) -> tuple[str, Approval | None]:
    """In one write transaction: the approval's whole id, and the approval marked executing
    (with its grant, if one was asked for); None when a pairing's words were wrong (it is then
    denied, and stays denied)."""
    now = vault.clock().timestamp()
    with vault.db.write() as conn:
        approval_id = store.resolve(conn, approval_id)
        store.notice_expired(vault, conn, now)
        pending = store.get(conn, approval_id, now)
        if _wrong_words(pending, approval_id, words):
            store.decide(
                vault,
                conn,
                approval_id,
                Status.DENIED,
                now,
                reason="the words the owner typed do not match this pairing's",
            )
            return approval_id, None
        if grant_seconds is not None and not pending.grantable:
            raise MalformedRequestError(
                f"Approval {approval_id} cannot be approved for a while: the owner decides "
                "this kind of request every time (or no rule asked about it), so a grant "
                "would never apply. Nothing was approved.",
                next_step="approve it once (without --for), or deny it.",
            )
        approval = store.decide(vault, conn, approval_id, Status.EXECUTING, now)
        if grant_seconds is not None:
            intent = Intent.model_validate(approval.request.get("intent") or {"action": "?"})
            store.add_grant(vault, conn, approval, shape_of(intent), grant_seconds, now)
    return approval_id, approval


def _wrong_words(pending: Approval, approval_id: str, words: str | None) -> bool:
    """Whether the owner typed other words than a pending pairing shows (other approvals take
    no words).

    Raises:
        MalformedRequestError: a pending pairing, and no words.
    """
    if pending.kind is not Kind.PAIRING or pending.status is not Status.PENDING:
        return False
    if words is None or not words.strip():
        raise MalformedRequestError(
            f"Approval {approval_id} pairs a sidecar: type the four words it shows.",
            next_step=f"keysafe approve {approval_id} --words 'w1 w2 w3 w4' (or deny it).",
        )
    return not pairing.check_words(pending, words)


def _finish(vault: Vault, approval_id: str, status: Status, result: dict[str, Any]) -> None:
    with vault.db.write() as conn:
        store.set_result(conn, approval_id, status, result)


def agent_view(vault: Vault, approval_id: str, agent: str) -> dict[str, Any]:
    """The asking agent's view; an approved value is released here, once, and not stored."""
    a = get(vault, approval_id, agent=agent)
    view = a.for_agent()
    if a.kind not in DELIVERED_ON_COLLECT:
        return view
    view.pop("result", None)
    if a.status is not Status.APPROVED or not a.result or a.result.get("delivered"):
        return view
    with vault.db.write() as conn:
        claimed = conn.execute(
            update(t.approvals)
            .where(t.approvals.c.id == approval_id, t.approvals.c.result == json.dumps(a.result))
            .values(result=json.dumps({"status": "approved", "delivered": True}))
        ).rowcount
    if not claimed:  # another poll took it first: a value is released once
        return view
    return view | {"result": _execute(vault, a)}


# -- grants ---------------------------------------------------------------------------------------


def list_grants(vault: Vault) -> list[Grant]:
    """The session grants still in force (an owner's "approve for a while")."""
    with vault.db.read() as conn:
        return store.list_grants(conn, vault.clock().timestamp())


def revoke_grant(vault: Vault, grant_id: int) -> Grant:
    """End a session grant now; audited.

    Raises:
        NotFoundError: no grant has that id.
    """
    with vault.db.write() as conn:
        return store.revoke_grant(vault, conn, grant_id, vault.clock().timestamp())
