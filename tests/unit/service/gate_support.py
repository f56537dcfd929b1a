"""Drive the gate's admit/settle steps with a bare intent, for the budget and agent-state tests.

The payload is the intent's canonical JSON: in these tests the intent *is* the request.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from keysafe.approvals import Kind
from keysafe.crypto import jcs
from keysafe.policy.intent import Intent
from keysafe.service import gate
from keysafe.vault.vault import Vault


class Probe(BaseModel):
    intent: dict[str, Any]


def request(
    agent: str, intent: Intent, *, idempotency_key: str | None = None, approved: bool = False
) -> gate.Request:
    body = intent.model_dump(mode="json", exclude_none=True)
    return gate.Request(
        agent=agent,
        kind=Kind.SIGN_TRANSACTION,
        wire=Probe(intent=body),
        intent=intent,
        payload=jcs.dumps(body),
        target=f"agent:{agent}",
        audit_action="test.act",
        idempotency_key=idempotency_key,
        approval_id="apr_test" if approved else None,
    )


def authorize(
    vault: Vault,
    agent: str,
    intent: Intent,
    *,
    idempotency_key: str | None = None,
    approved: bool = False,
) -> gate.Admission:
    return gate.admit(
        vault, request(agent, intent, idempotency_key=idempotency_key, approved=approved)
    )


def settle(vault: Vault, agent: str, request_id: str, *, success: bool) -> int:
    req = request(agent, Intent(action="evm.transfer"))
    if success:
        return gate.settle(vault, req, request_id, result={"ok": True})
    return gate.settle(vault, req, request_id, failure=RuntimeError("test failure"))
