"""Policies: set, show, lint, and the dry-run check (`keysafe policy check`).

Real requests are decided by the gate (service/gate.py), the one place that also reserves,
parks, acts, settles and audits; this module only reads and writes policies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, delete, insert, select

from keysafe.audit.outcome import Outcome
from keysafe.errors import MalformedRequestError
from keysafe.policy import engine, examples
from keysafe.policy.intent import Intent
from keysafe.policy.lint import LintReport, lint, rule_lines
from keysafe.policy.registry import Registry
from keysafe.policy.rules import Policy, parse_policy, stored_policy
from keysafe.service import sealed_state
from keysafe.service.agents import get_agent
from keysafe.service.models import RecordKind
from keysafe.service.registry import load_registry
from keysafe.store import hot, ledger
from keysafe.store import tables as t
from keysafe.vault.vault import Vault, iso

logger = logging.getLogger(__name__)


def example(*, optional: bool = False) -> str:
    """The example policy's YAML (`keysafe policy example`); with `optional`, its commented-out
    parts switched on (policy/examples.py)."""
    return examples.example_text(optional=optional)


def lint_text(
    vault: Vault | None, text: str, *, now: datetime, source: str = "policy"
) -> tuple[Policy, LintReport]:
    """Parse and lint a policy without setting it: against the vault's chains and wallets, or
    the built-in registry when `vault` is None.

    Raises:
        MalformedRequestError: the text is not a valid policy (the message names the line).
    """
    policy = parse_policy(text, source=source)
    wallets: frozenset[str] | None = None
    if vault is None:
        reg = Registry.builtin()
    else:
        with vault.db.read() as conn:
            reg = load_registry(conn)
            wallets = frozenset(w.name for w in vault.list_records(conn, RecordKind.WALLET))
    return policy, lint(policy, reg, now=now, wallets=wallets).with_lines(rule_lines(text))


def _diff_summary(old: Policy | None, new: Policy) -> dict[str, Any]:
    before = {r.name: r for r in (old.rules if old else [])}
    after = {r.name: r for r in new.rules}
    return {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": sorted(n for n in after.keys() & before.keys() if after[n] != before[n]),
    }


def validated(vault: Vault, text: str, *, source: str = "policy") -> tuple[Policy, LintReport]:
    """Parse and lint; a policy with lint errors is refused with every error named."""
    policy, report = lint_text(vault, text, now=vault.clock(), source=source)
    if report.errors:
        each = [
            (f"rule '{f.rule}' " if f.rule else "")
            + f.message
            + (f" (line {f.line})" if f.line is not None else "")
            for f in report.errors
        ]
        raise MalformedRequestError(
            f"The policy was not set: {'; '.join(each)}.",
            next_step="fix them (`keysafe policy lint FILE` shows warnings too), "
            "then set it again.",
        )
    return policy, report


def set_policy(
    vault: Vault, agent: str, text: str, *, source: str = "policy"
) -> tuple[Policy, LintReport]:
    """Set `agent`'s policy (replacing any), sealed and audited with the old and new digests.

    Raises:
        VaultLockedError: the vault is locked (a policy is honoured only with the owner's seal).
        MalformedRequestError: the text is not a valid policy, or it lints with errors.
        NotFoundError: no agent has that name.
    """
    now = vault.clock()
    vault.require_unlocked()  # a policy is honoured only with the owner's seal
    policy, report = validated(vault, text, source=source)
    with vault.db.write() as conn:
        get_agent(conn, agent)
        old_row = conn.execute(select(t.policies).where(t.policies.c.agent == agent)).first()
        old = parse_policy(old_row.source) if old_row else None
        conn.execute(delete(t.policies).where(t.policies.c.agent == agent))
        digest, set_at = policy.digest(), iso(now)
        conn.execute(
            insert(t.policies).values(
                agent=agent,
                source=text,
                digest=digest,
                set_at=set_at,
                mac=sealed_state.policy_seal(vault, agent, text, digest, set_at),
            )
        )
        diff = _diff_summary(old, policy)
        vault.audit(
            conn,
            actor="owner",
            action="policy.set",
            target=f"agent:{agent}",
            outcome=Outcome.SUCCESS,
            details={
                "agent": agent,
                "policy_hash": policy.digest(),
                "previous_hash": old.digest() if old else None,
                "diff": diff,
            },
        )
    logger.info("policy %s set for agent %s", policy.digest()[:12], agent)
    return policy, report


@dataclass(frozen=True, slots=True)
class PolicyView:
    agent: str
    source: str
    digest: str
    set_at: str


def show_policy(vault: Vault, agent: str) -> PolicyView | None:
    """`agent`'s policy as it was set (None when it has none).

    Raises:
        NotFoundError: no agent has that name.
    """
    with vault.db.read() as conn:
        get_agent(conn, agent)
        row = conn.execute(select(t.policies).where(t.policies.c.agent == agent)).first()
    return None if row is None else PolicyView(agent, row.source, row.digest, row.set_at)


# Read on every agent request (store/hot.py): the columns of `t.policies`.
_POLICY_ROW: Final = "SELECT agent, source, digest, set_at, mac FROM policies WHERE agent = :agent"


def agent_state(
    vault: Vault, conn: Connection, agent: str, *, verify: bool
) -> tuple[engine.AgentState, Policy | None]:
    """The agent's status (with pause-all) and its parsed policy, as the engine takes them.

    With `verify` every row is checked against the owner's seal first (sealed_state.py); the
    gate always verifies. Without, the rows are read as they are: for dry runs on a locked vault.

    Raises:
        IntegrityError: a row was edited outside keysafe, or grants without a seal.
        VaultLockedError: `verify` on a locked vault.
    """
    row = get_agent(conn, agent)
    found = hot.named(conn, _POLICY_ROW, {"agent": agent})
    pol = found[0] if found else None
    if verify:
        sealed_state.check_agent(vault, row)
        if pol is not None:
            sealed_state.check_policy(vault, pol)
    state = engine.AgentState(
        agent, row.status, sealed_state.paused_all(vault, conn, verify=verify)
    )
    return state, stored_policy(pol.source) if pol is not None else None


def check(vault: Vault, agent: str, intent: Intent) -> engine.Decision:
    """Dry run: the decision with its trace; nothing is reserved or recorded."""
    now = vault.clock()
    with vault.db.read() as conn:
        state, policy = agent_state(vault, conn, agent, verify=vault.is_unlocked)
        return engine.decide(
            policy,
            state,
            intent,
            registry=load_registry(conn),
            usage=ledger.usage_reader(conn, agent, now=now, until=intent.time),
            now=now,
        )
