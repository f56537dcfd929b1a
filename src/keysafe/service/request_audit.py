"""The two audit entries of every agent request (step 8 of service/gate.py): one for the
decision, written in the transaction that decides, and one for the outcome, in the transaction
that books or releases the spend. They hold plain facts (agent, rule, chain, wallet, amount,
recipient, request id, fingerprint): never a secret, a body or a signature.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from keysafe.audit.outcome import Outcome
from keysafe.errors import KeysafeError
from keysafe.policy import engine
from keysafe.policy.intent import Intent
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)


def audit_decision(
    vault: Vault,
    conn: Connection,
    agent: str,
    intent: Intent,
    decision: engine.Decision,
    request_id: str,
    fp: str,
) -> None:
    """The decision's entry: `decide.<action>`, its outcome, rule and reason code."""
    vault.audit(
        conn,
        actor=f"agent:{agent}",
        action=f"decide.{intent.action}",
        target=f"agent:{agent}",
        outcome=decision.outcome,
        details={
            "agent": agent,
            "rule": decision.rule,
            "code": decision.code,
            "chain": str(intent.chain) if intent.chain is not None else None,
            "wallet": intent.wallet,
            "amount": intent.amount,
            "fee": intent.fee,
            "recipient": intent.to,
            "request_id": request_id,
            "intent": fp,
        },
    )


def audit_outcome(
    vault: Vault,
    conn: Connection,
    agent: str,
    *,
    action: str,
    target: str,
    facts: Mapping[str, Any],
    failure: BaseException | None,
) -> None:
    """The outcome's entry: success, or failure with the error's code (INTERNAL for a bug)."""
    ok = failure is None
    code = failure.code if isinstance(failure, KeysafeError) else "INTERNAL"
    vault.audit(
        conn,
        actor=f"agent:{agent}",
        action=action,
        target=target,
        outcome=Outcome.SUCCESS if ok else "failure",
        details={"agent": agent, **facts, **({} if ok else {"code": code})},
    )
