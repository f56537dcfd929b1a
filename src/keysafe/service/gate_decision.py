"""The policy decision the gate asks for (service/gate.py, step 3), and the same decision
previewed read-only for the owner's approval card.

Apart from the gate so that gate.py shows the order of the steps; the preview lives here, beside
the decision it repeats, so that the card and a real request can never be judged differently.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from keysafe import approvals
from keysafe.policy import engine
from keysafe.policy.intent import Intent
from keysafe.policy.rules import Policy
from keysafe.service import policies
from keysafe.service.registry import load_registry
from keysafe.store import ledger
from keysafe.vault.vault import Vault


def decide_intent(
    conn: Connection,
    agent: str,
    intent: Intent,
    approved: bool,
    policy: Policy | None,
    state: engine.AgentState,
    now: datetime,
    *,
    writable: bool = False,
) -> engine.Decision:
    """The engine's decision for `intent`, with the owner's grants looked up only when the
    decision without them is an ask (grants can only turn an ask into an allow, and most
    requests never pay for the lookup). `writable`: `conn` is the write transaction."""
    registry = load_registry(conn)
    usage = ledger.usage_reader(conn, agent, now=now, writable=writable)
    decision = engine.decide(
        policy, state, intent, registry=registry, usage=usage, now=now, approved=approved
    )
    if decision.outcome != "ask":
        return decision
    granted = approvals.granted_rules(conn, agent, intent, now.timestamp())
    if not granted:
        return decision
    return engine.decide(
        policy,
        state,
        intent,
        registry=registry,
        usage=usage,
        now=now,
        approved=approved,
        granted=granted,
    )


def preview_approved(vault: Vault, agent: str, intent: Intent) -> engine.Decision:
    """The decision `intent` would get now if the owner approved it: its budget windows before
    and after (`WindowState.left`, `.after`), from the same ledger and engine call as a real
    request, read-only. For the owner's approval card; nothing is reserved or audited.

    Raises:
        NotFoundError: the agent is gone.
        IntegrityError: its stored state or policy was edited outside keysafe.
    """
    now = vault.clock()
    with vault.db.read() as conn:
        state, policy = policies.agent_state(vault, conn, agent, verify=True)
        return engine.status_refusal(state) or decide_intent(
            conn, agent, intent, True, policy, state, now
        )
