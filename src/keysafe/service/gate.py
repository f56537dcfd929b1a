"""The one gate every agent action passes: sign or send a transaction, sign a message or typed
data, make an HTTP call with a credential, read data, release a credential, co-sign with a
threshold wallet.

Order (DESIGN.md "One request, end to end"), the same for every action:

1. agent status: revoked, paused or pause-all refuse before anything else is looked at;
2. idempotency (service/idempotency.py): a key seen before with the same exact bytes returns
   the stored result (never a second signature); with other bytes it is IDEMPOTENCY_CONFLICT;
   while the first request still runs it is REQUEST_IN_PROGRESS (retry with the same key);
3. decide (the policy engine, with the owner's grants for this request's shape:
   service/gate_decision.py);
4. reserve the spend, in the transaction that decided, so two requests never share a limit;
5. park on ask: an identical request already pending gets that approval back;
6. act (the use case's own step: open the key and sign, or send the HTTP call);
7. settle: commit the reservation, or release it on any failure;
8. audit: one entry for the decision, one for the outcome (success or failure), per request.

Use cases (service/signing.py, data.py, proxy.py, release.py) supply only the request — its
intent, the exact bytes it would sign or send, the wire request to park — and the act.

Two ways through, chosen by `Request.reaches_out`:
- an act that stays in this process (open a key and sign, read a record) runs inside the one
  write transaction that decides: the spend is booked as committed, the result stored for the
  idempotency key and both audit entries written before the answer, in one commit (one fsync).
  A crash before that commit leaves nothing: no signature left the vault. A failing act is
  audited in the same transaction, with nothing booked;
- an act that reaches the network (broadcast, a proxied HTTP call) must not hold the write lock
  while it waits, so the spend is reserved and the idempotency record written (state in flight)
  in the deciding transaction, and settled in a second one; a crash between them never leaves a
  committed spend whose key advises a second payment, and `in_flight.recover` finishes whatever
  it left.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypedDict, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection

from keysafe import approvals
from keysafe.approvals import DELIVERED_ON_COLLECT, Approval, Kind, Status
from keysafe.crypto import jcs
from keysafe.errors import (
    BudgetExceededError,
    MalformedRequestError,
    PolicyDeniedError,
)
from keysafe.policy import engine
from keysafe.policy.intent import Intent
from keysafe.policy.reasons import Reason
from keysafe.policy.rules import Policy
from keysafe.service import idempotency, in_flight, notify, policies
from keysafe.service.gate_decision import decide_intent
from keysafe.service.request_audit import audit_decision, audit_outcome
from keysafe.store import ledger
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Request:
    """One agent action as the gate sees it; built by a use case after decoding."""

    agent: str
    kind: Kind
    wire: BaseModel  # the request as the agent sent it: what an approval parks and runs again
    intent: Intent
    payload: bytes  # the exact bytes that will be signed or sent (or their digest)
    target: str  # what the audit names, e.g. "wallet:main", "credential:github"
    audit_action: str  # the outcome entry's action, e.g. "evm.sign_transaction"
    idempotency_key: str | None = None
    approval_id: str | None = None  # the owner approved this parked request; it runs now
    always_ask: bool = False  # the owner decides every time (possession of a secret)
    reaches_out: bool = False  # the act waits on the network: reserve, act, settle (see above)
    dry_run: bool = False  # decide only: `run` raises DryRun with the decision (service/checks.py)
    facts: Mapping[str, Any] = field(default_factory=dict)  # plain audit facts of the request

    @property
    def approved(self) -> bool:
        return self.approval_id is not None

    @property
    def fingerprint(self) -> str:
        """SHA-256 over what the action would do, never over the decoded intent: the kind (sign
        and send differ), the target and the exact bytes."""
        body = {"kind": str(self.kind), "target": self.target, "payload": self.payload.hex()}
        return hashlib.sha256(jcs.dumps(body)).hexdigest()


class Pending(TypedDict):
    approval_id: str
    expires_at: str
    summary: str


@dataclass(frozen=True, slots=True)
class Parked:
    """The request waits for the owner (a new approval, or the identical one already pending)."""

    approval: Approval
    intent: Intent

    def pending(self) -> Pending:
        """What every pending answer carries: the approval to wait on, until when, and what."""
        a = self.approval
        return {
            "approval_id": a.id,
            "expires_at": a.for_agent()["expires_at"],
            "summary": a.summary,
        }


@dataclass(frozen=True, slots=True)
class Codec(Generic[R]):
    """How the gate stores a use case's result for idempotent replays, and what it audits."""

    dump: Callable[[R], dict[str, Any]]  # everything, for idempotent replays
    load: Callable[[dict[str, Any]], R]
    facts: Callable[[R], dict[str, Any]]  # plain facts for the audit entry
    view: Callable[[R], dict[str, Any]]  # what the agent sees (an approval's stored result)


def fingerprint_of(*parts: bytes | str) -> bytes:
    """Helper for use cases whose bytes come in pieces (HTTP: method, URL, body)."""
    return jcs.dumps([p.hex() if isinstance(p, bytes) else p for p in parts])


@dataclass(frozen=True, slots=True)
class Admission:
    """Steps 1–5 done: what the gate decided, and what was written for it.

    Exactly one of these holds: `replay` (an earlier result for this idempotency key),
    `parked` (waits for the owner), `decision.outcome == "deny"` (nothing reserved), or an allow
    with the spend reserved under `request_id` (then `settle` must follow).
    """

    decision: engine.Decision
    request_id: str
    replay: dict[str, Any] | None = None
    parked: Parked | None = None

    @property
    def replayed(self) -> bool:
        return self.replay is not None

    @property
    def allowed(self) -> bool:
        return self.replay is None and self.parked is None and self.decision.outcome == "allow"


def admit(vault: Vault, req: Request) -> Admission:
    """Steps 1–5 in one write transaction: status, idempotency, decide, reserve, park on ask.
    An allow leaves the spend reserved and the request in flight until `settle`.

    Raises:
        IdempotencyConflictError: the key was used before for other bytes.
        RequestInProgressError: the key's first request has not finished yet.
    """
    _refuse_own_time(req)
    now = vault.clock()
    with vault.db.write() as conn:
        admission = _admit(vault, conn, req, now)
        if admission.allowed:
            _book(conn, req, admission, now, state="reserved")
            rid = admission.request_id
            in_flight.start(conn, rid, req.agent, req.kind, req.idempotency_key, now)
            _remember(conn, req, now, {"state": idempotency.IN_FLIGHT, "request_id": rid})
    return admission


def _refuse_own_time(req: Request) -> None:
    if req.intent.time is not None:
        # `time` is for dry runs: an agent must not date its request to escape a window,
        # an expiry or business hours.
        raise MalformedRequestError(
            "A request cannot carry its own 'time'; keysafe decides at the vault's clock.",
            next_step="drop the 'time' field (it is only for `keysafe policy check`).",
        )


def _admit(vault: Vault, conn: Connection, req: Request, now: datetime) -> Admission:
    """Steps 1–5 inside the caller's write transaction, short of booking an allowed spend."""
    fp = req.fingerprint
    ledger.lock_agent(conn, req.agent)
    state, policy = policies.agent_state(vault, conn, req.agent, verify=True)
    stopped = engine.status_refusal(state)
    if stopped is None and req.idempotency_key is not None:
        earlier = _earlier(conn, vault, req, req.idempotency_key, fp)
        if earlier is not None:
            return earlier
    decision = stopped or _decide(conn, req, policy, state, now, writable=True)
    request_id = in_flight.new_request_id(now)
    audit_decision(vault, conn, req.agent, req.intent, decision, request_id, fp)
    if decision.outcome == "deny":
        notify.on_deny(vault, conn, req.agent, req.kind, req.intent, decision.rule)
        return Admission(decision, request_id)
    if decision.outcome == "ask" or (req.always_ask and not req.approved):
        parked = _park(vault, conn, req, decision, fp, now.timestamp())
        _remember(conn, req, now, {"state": idempotency.DONE, "approval_id": parked.approval.id})
        return Admission(decision, request_id, parked=parked)
    return Admission(decision, request_id)


def _book(
    conn: Connection, req: Request, admission: Admission, now: datetime, *, state: str
) -> None:
    ledger.reserve(
        conn,
        agent=req.agent,
        request_id=admission.request_id,
        at=now,
        state=state,
        charges=[(c.rule, c.asset, c.units) for c in admission.decision.charges],
    )


def settle(
    vault: Vault,
    req: Request,
    request_id: str,
    *,
    result: dict[str, Any] | None = None,
    facts: Mapping[str, Any] | None = None,
    view: dict[str, Any] | None = None,
    failure: BaseException | None = None,
    spent: bool | None = None,
) -> int:
    """Steps 7–8 in one write transaction: commit the spend and store the result for the
    idempotency key (success), or release it and free the key (failure); audit either way.
    `spent=True` commits the spend of a failure too: the act reached out and was answered (a
    proxied answer over the cap, cut off), so it counts. Returns how many reservation rows
    changed."""
    ok = failure is None
    commit = ok if spent is None else spent
    with vault.db.write() as conn:
        changed = ledger.settle(
            conn, req.agent, request_id, state="committed" if commit else "released"
        )
        key = in_flight.end(conn, req.agent, request_id)
        if key is not None and ok:
            idempotency.finish(conn, req.agent, key, request_id, result)
        elif key is not None:
            idempotency.forget(conn, req.agent, key)
        _outcome(vault, conn, req, request_id, facts=facts, view=view, failure=failure)
    return changed


def _outcome(
    vault: Vault,
    conn: Connection,
    req: Request,
    request_id: str,
    *,
    facts: Mapping[str, Any] | None,
    view: dict[str, Any] | None,
    failure: BaseException | None,
) -> None:
    """Step 8, in the transaction that books or releases the spend."""
    ok = failure is None
    if ok and req.approval_id is not None and req.kind not in DELIVERED_ON_COLLECT:
        # The approval's answer commits with the spend: a crash can never leave a committed
        # signature whose approval says it failed (a value is never stored: it is handed over).
        approvals.set_result(conn, req.approval_id, Status.APPROVED, view)
    audit_outcome(
        vault,
        conn,
        req.agent,
        action=req.audit_action,
        target=req.target,
        facts={"request_id": request_id, **req.facts, **dict(facts or {})},
        failure=failure,
    )


class DryRun(Exception):
    """What `run` raises for a dry-run request: the decision, with nothing reserved, parked,
    audited or done. It is raised rather than returned so that every use case runs a dry run
    through exactly the code of a real request, up to the gate, without a second return type."""

    def __init__(self, decision: engine.Decision) -> None:
        super().__init__(decision.outcome)
        self.decision = decision


def _dry_run(vault: Vault, req: Request) -> engine.Decision:
    """Steps 1 and 3 only (status, decide), read-only: what the request would get now."""
    _refuse_own_time(req)
    now = vault.clock()
    with vault.db.read() as conn:
        state, policy = policies.agent_state(vault, conn, req.agent, verify=True)
        decision = engine.status_refusal(state) or _decide(
            conn, req, policy, state, now, writable=False
        )
    if decision.outcome == "allow" and req.always_ask:
        return dataclasses.replace(
            decision, outcome="ask", reason="The owner approves this every time."
        )
    return decision


def run(vault: Vault, req: Request, act: Callable[[str], R], codec: Codec[R]) -> R | Parked:
    """Run one agent action through the gate; returns its result, or `Parked` on ask.

    Args:
        vault: the unlocked vault.
        req: the decoded request.
        act: the use case's action, given the request id; runs only on allow.
        codec: stores and restores results for idempotency, and names their audit facts.

    Raises:
        PolicyDeniedError / BudgetExceededError: the decision was deny (audited).
        IdempotencyConflictError: the key was used before for other bytes.
        RequestInProgressError: the key's first request has not finished yet.
        KeysafeError: whatever `act` raised (the reservation is released first).
        DryRun: `req.dry_run`; carries the decision, and nothing was done.
    """
    vault.require_unlocked()  # a locked vault decides nothing: it could not act anyway
    if req.dry_run:
        raise DryRun(_dry_run(vault, req))
    if not req.reaches_out:
        return _run_in_one_transaction(vault, req, act, codec)
    admission = admit(vault, req)
    if admission.replay is not None:
        return codec.load(admission.replay)
    if admission.parked is not None:
        return admission.parked
    raise_denied(admission.decision, req.agent)
    try:
        result = act(admission.request_id)
    except BaseException as exc:
        settle(vault, req, admission.request_id, failure=exc)
        raise
    settle(vault, req, admission.request_id, result=codec.dump(result), facts=codec.facts(result))
    return result


def _run_in_one_transaction(
    vault: Vault, req: Request, act: Callable[[str], R], codec: Codec[R]
) -> R | Parked:
    """Decide, act, book and audit in one write transaction (an act that stays in-process)."""
    _refuse_own_time(req)
    now = vault.clock()
    failure: BaseException | None = None
    with vault.db.write() as conn:
        admission = _admit(vault, conn, req, now)
        if admission.allowed:
            rid = admission.request_id
            try:
                # The act never touches `conn` (it reads through its own connection), so a failing
                # act leaves this transaction healthy: the failure is audited in it, nothing booked.
                result = act(rid)
            except BaseException as exc:
                failure = exc
                _outcome(vault, conn, req, rid, facts=None, view=None, failure=exc)
            else:
                _book(conn, req, admission, now, state="committed")
                _remember(
                    conn,
                    req,
                    now,
                    {"state": idempotency.DONE, "request_id": rid, "result": codec.dump(result)},
                )
                _outcome(
                    vault,
                    conn,
                    req,
                    rid,
                    facts=codec.facts(result),
                    view=codec.view(result),
                    failure=None,
                )
                return result  # the block commits first: nothing is answered before it is durable
        # A replay, a park or a deny: what `_admit` wrote commits as it is.
    if failure is not None:
        raise failure
    if admission.replay is not None:
        return codec.load(admission.replay)
    if admission.parked is not None:
        return admission.parked
    raise_denied(admission.decision, req.agent)
    raise AssertionError("an allowed request returns above")  # pragma: no cover


def _decide(
    conn: Connection,
    req: Request,
    policy: Policy | None,
    state: engine.AgentState,
    now: datetime,
    *,
    writable: bool,
) -> engine.Decision:
    """The engine's decision. The owner's grants can only turn an ask into an allow, so they are
    looked up only when the decision without them is an ask (most requests never pay for it).
    `writable`: `conn` is the write transaction, which may keep the budget windows' totals."""
    return decide_intent(
        conn, req.agent, req.intent, req.approved, policy, state, now, writable=writable
    )


def _earlier(conn: Connection, vault: Vault, req: Request, key: str, fp: str) -> Admission | None:
    """The stored answer for a repeated idempotency key, or None when the key is new."""
    stored = idempotency.earlier(conn, req.agent, key, fp)
    if stored is None:
        return None
    replayed = engine.Decision("allow", None, None, "The first request with this key.")
    if stored.get("approval_id"):
        now = vault.clock().timestamp()
        parked = Parked(approvals.get(conn, stored["approval_id"], now), req.intent)
        return Admission(replayed, "", parked=parked)
    return Admission(replayed, str(stored.get("request_id", "")), replay=stored["result"])


def _remember(conn: Connection, req: Request, now: datetime, value: dict[str, Any]) -> None:
    idempotency.remember(conn, req.agent, req.idempotency_key, req.fingerprint, now, value)


def _park(
    vault: Vault,
    conn: Connection,
    req: Request,
    decision: engine.Decision,
    fp: str,
    now: float,
) -> Parked:
    if not req.approved:
        pending = approvals.find_pending(conn, req.agent, fp, now)
        if pending is not None:
            return Parked(pending, req.intent)
    # The decoded intent travels with the parked request (as display data, never re-trusted), so
    # the owner sees full addresses and amounts, not only the one-line summary.
    body = req.wire.model_dump(mode="json", exclude_none=True) | {
        "action": req.intent.action,
        "intent": req.intent.model_dump(mode="json", exclude_none=True),
    }
    if req.always_ask:
        # Display data too: a grant can never let this request pass, so the owner is not
        # offered one (Approval.grantable).
        body[approvals.EVERY_TIME] = True
    approval = approvals.park(
        vault,
        conn,
        agent=req.agent,
        kind=req.kind,
        request=body,
        fingerprint=fp,
        summary=req.intent.summary or req.intent.action,
        rule=decision.rule,
    )
    notify.on_approval(vault, conn, approval)  # queued in this transaction: sent iff parked
    return Parked(approval, req.intent)


def raise_denied(decision: engine.Decision, agent: str) -> None:
    """Turn a deny into the error every surface shows: BUDGET_EXCEEDED for a window or count
    limit, POLICY_DENIED otherwise; the decision's own code and rule ride along as facts."""
    if decision.outcome != "deny":
        return
    facts: dict[str, str | int] = {"reason_code": decision.code or "POLICY_DENIED"}
    if decision.rule:
        facts["rule"] = decision.rule
    err = (
        BudgetExceededError
        if decision.code in (Reason.BUDGET_EXCEEDED, Reason.COUNT_LIMIT_EXCEEDED)
        else PolicyDeniedError
    )
    raise err(
        decision.reason,
        next_step=decision.next_step
        or "stay within the policy, or ask the owner to change it "
        f"(`keysafe policy show {agent}`).",
        **facts,
    )
