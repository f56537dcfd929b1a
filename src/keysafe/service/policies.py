"""Policies and decisions: set, show, lint, dry-run check, and the authorize/settle pair that
every signing or credential use goes through.

`authorize` is the engine's one entry point for real requests: in one write transaction it checks
idempotency, reads the agent's state and policy, decides, reserves the spend when allowed, records
the idempotency key and audits the decision. `settle` commits or releases the reservation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from keysafe.errors import IdempotencyConflictError, MalformedRequestError
from keysafe.policy import engine
from keysafe.policy.intent import Intent
from keysafe.policy.lint import LintReport, lint
from keysafe.policy.rules import Policy, parse_policy, stored_policy
from keysafe.service.agents import get_agent, paused_all
from keysafe.service.models import RecordKind
from keysafe.service.registry import load_registry
from keysafe.store import ledger
from keysafe.store import tables as t
from keysafe.vault.vault import Vault, iso

logger = logging.getLogger(__name__)


def lint_text(
    vault: Vault | None, text: str, *, now: datetime, source: str = "policy"
) -> tuple[Policy, LintReport]:
    from keysafe.policy.registry import Registry

    policy = parse_policy(text, source=source)
    wallets: frozenset[str] | None = None
    if vault is None:
        reg = Registry.builtin()
    else:
        with vault.db.read() as conn:
            reg = load_registry(conn)
            wallets = frozenset(w.name for w in vault.list_records(conn, RecordKind.WALLET))
    return policy, lint(policy, reg, now=now, wallets=wallets)


def _diff_summary(old: Policy | None, new: Policy) -> dict[str, Any]:
    before = {r.name: r for r in (old.rules if old else [])}
    after = {r.name: r for r in new.rules}
    return {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": sorted(n for n in after.keys() & before.keys() if after[n] != before[n]),
    }


def validated(vault: Vault, text: str, *, source: str = "policy") -> tuple[Policy, LintReport]:
    """Parse and lint; a policy with lint errors is refused with the first error named."""
    policy, report = lint_text(vault, text, now=vault.clock(), source=source)
    if report.errors:
        first = report.errors[0]
        where = f"rule '{first.rule}' " if first.rule else ""
        more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        raise MalformedRequestError(
            f"The policy was not set: {where}{first.message}{more}.",
            next_step="run `keysafe policy lint FILE` to see every problem, fix them, then set it again.",
        )
    return policy, report


def set_policy(
    vault: Vault, agent: str, text: str, *, source: str = "policy"
) -> tuple[Policy, LintReport]:
    now = vault.clock()
    policy, report = validated(vault, text, source=source)
    with vault.db.write() as conn:
        get_agent(conn, agent)
        old_row = conn.execute(select(t.policies).where(t.policies.c.agent == agent)).first()
        old = parse_policy(old_row.source) if old_row else None
        conn.execute(delete(t.policies).where(t.policies.c.agent == agent))
        conn.execute(
            insert(t.policies).values(
                agent=agent, source=text, digest=policy.digest(), set_at=iso(now)
            )
        )
        diff = _diff_summary(old, policy)
        vault.audit(
            conn, actor="owner", action="policy.set", target=f"agent:{agent}", outcome="success",
            details={"agent": agent, "policy_hash": policy.digest(),
                     "previous_hash": old.digest() if old else None, "diff": diff},
        )  # fmt: skip
    logger.info("policy %s set for agent %s", policy.digest()[:12], agent)
    return policy, report


@dataclass(frozen=True, slots=True)
class PolicyView:
    agent: str
    source: str
    digest: str
    set_at: str


def show_policy(vault: Vault, agent: str) -> PolicyView | None:
    with vault.db.read() as conn:
        get_agent(conn, agent)
        row = conn.execute(select(t.policies).where(t.policies.c.agent == agent)).first()
    return None if row is None else PolicyView(agent, row.source, row.digest, row.set_at)


def _state(conn: Connection, agent: str) -> tuple[engine.AgentState, Policy | None]:
    row = get_agent(conn, agent)
    pol = conn.execute(select(t.policies.c.source).where(t.policies.c.agent == agent)).scalar()
    state = engine.AgentState(agent, row.status, paused_all(conn))
    return state, stored_policy(pol) if pol is not None else None


def check(vault: Vault, agent: str, intent: Intent) -> engine.Decision:
    """Dry run: the decision with its trace; nothing is reserved or recorded."""
    now = vault.clock()
    with vault.db.read() as conn:
        state, policy = _state(conn, agent)
        return engine.decide(
            policy, state, intent, registry=load_registry(conn),
            usage=ledger.usage_reader(conn, agent, until=intent.time), now=now,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Authorization:
    decision: engine.Decision
    request_id: str
    replayed: bool  # True when an idempotency key returned an earlier result

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, **self.decision.to_dict()}


def fingerprint(intent: Intent) -> str:
    from keysafe.crypto import jcs

    body = intent.model_dump(mode="json", exclude_none=True, exclude={"time"})
    return hashlib.sha256(jcs.dumps(body)).hexdigest()


def _grants(conn: Connection, agent: str, action: str, now: datetime) -> frozenset[str]:
    rows = conn.execute(
        select(t.grants.c.rule).where(
            t.grants.c.agent == agent,
            t.grants.c.action == action,
            t.grants.c.until > now.timestamp(),
        )
    )
    return frozenset(r.rule for r in rows)


def authorize(
    vault: Vault,
    agent: str,
    intent: Intent,
    *,
    idempotency_key: str | None = None,
    approved: bool = False,
) -> Authorization:
    if intent.time is not None:
        # `time` is for dry runs: an agent must not date its request to escape a window,
        # an expiry or business hours.
        raise MalformedRequestError(
            "A request cannot carry its own 'time'; keysafe decides at the vault's clock.",
            next_step="drop the 'time' field (it is only for `keysafe policy check`).",
        )
    now = vault.clock()
    fp = fingerprint(intent)
    with vault.db.write() as conn:
        ledger.lock_agent(conn, agent)
        if idempotency_key is not None:
            seen = conn.execute(
                select(t.idempotency).where(
                    t.idempotency.c.agent == agent, t.idempotency.c.key == idempotency_key
                )
            ).first()
            if seen is not None:
                if seen.fingerprint != fp:
                    raise IdempotencyConflictError(
                        f"Idempotency key '{idempotency_key[:60]}' was used before for a different request.",
                        next_step="use a new idempotency key for a new request.",
                    )
                stored = json.loads(seen.result)
                return Authorization(_decision_from(stored), stored["request_id"], True)
        state, policy = _state(conn, agent)
        decision = engine.decide(
            policy, state, intent, registry=load_registry(conn),
            usage=ledger.usage_reader(conn, agent), now=now, approved=approved,
            granted=_grants(conn, agent, intent.action, now),
        )  # fmt: skip
        request_id = secrets.token_hex(16)
        if decision.outcome == "allow":
            ledger.reserve(
                conn, agent=agent, request_id=request_id,
                charges=[(c.rule, c.asset, c.units) for c in decision.charges], at=now,
            )  # fmt: skip
        auth = Authorization(decision, request_id, False)
        if idempotency_key is not None:
            conn.execute(
                insert(t.idempotency).values(
                    agent=agent, key=idempotency_key, fingerprint=fp,
                    result=json.dumps(auth.to_dict()), created_at=iso(now),
                )
            )  # fmt: skip
        vault.audit(
            conn, actor=f"agent:{agent}", action=f"decide.{intent.action}",
            target=f"agent:{agent}", outcome=decision.outcome,
            details={"agent": agent, "rule": decision.rule, "code": decision.code,
                     "chain": str(intent.chain) if intent.chain is not None else None,
                     "amount": intent.amount, "recipient": intent.to,
                     "request_id": request_id, "intent": fp},
        )  # fmt: skip
    return auth


def _decision_from(d: dict[str, Any]) -> engine.Decision:
    windows = tuple(
        engine.WindowState(
            w["rule"], w["window"], w["kind"], w["asset"], w["limit"], w["used"],
            w["requested"], w["left"], w["ok"],
        )
        for w in d.get("windows", [])
    )  # fmt: skip
    return engine.Decision(
        d["decision"], d["rule"], d["code"], d["reason"], tuple(d.get("matched", [])), windows
    )


def settle(vault: Vault, agent: str, request_id: str, *, success: bool) -> int:
    """Commit the reservation after the action succeeded, or release it after it failed."""
    with vault.db.write() as conn:
        changed = ledger.settle(
            conn, agent, request_id, state="committed" if success else "released"
        )
        if changed:
            vault.audit(
                conn, actor=f"agent:{agent}",
                action="budget.commit" if success else "budget.release",
                target=f"agent:{agent}", outcome="success",
                details={"agent": agent, "request_id": request_id, "count": changed},
            )  # fmt: skip
    return changed


def raise_if_denied(decision: engine.Decision, agent: str) -> None:
    """Turn a deny into the error every surface shows: BUDGET_EXCEEDED for a window or count
    limit, POLICY_DENIED otherwise; the decision's own code and rule ride along as facts."""
    if decision.outcome != "deny":
        return
    from keysafe.errors import BudgetExceededError, PolicyDeniedError

    facts: dict[str, str | int] = {"reason_code": decision.code or "POLICY_DENIED"}
    if decision.rule:
        facts["rule"] = decision.rule
    err = (
        BudgetExceededError
        if decision.code in ("BUDGET_EXCEEDED", "RATE_LIMITED")
        else PolicyDeniedError
    )
    raise err(
        decision.reason,
        next_step=f"stay within the policy, or ask the owner to change it (`keysafe policy show {agent}`).",
        **facts,
    )
