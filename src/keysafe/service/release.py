"""Releasing a credential's value to a process (`keysafe run`): possession, so always a human's call.

Rules this module enforces:
- Some rule of the agent's policy must cover `credential.release` for that credential (deny wins
  as everywhere); even then the owner approves every release: an `allow`, a session grant or an
  earlier approval never skips the question, because a released secret cannot be taken back.
- The value is produced when the approved agent collects it, once, and is never stored; the
  release is audited (agent, credential, purpose), never the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keysafe.policy.intent import Intent
from keysafe.service.models import RecordKind
from keysafe.vault.vault import Vault


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    approval_id: str
    expires_at: str
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"status": "pending_approval", "approval_id": self.approval_id,
                "expires_at": self.expires_at, "summary": self.summary}  # fmt: skip


def request_release(vault: Vault, agent: str, credential: str, *, purpose: str) -> ReleaseRequest:
    """Ask the owner to release `credential` to the agent's process; returns the parked approval."""
    from keysafe.service import approvals, policies

    vault.require_unlocked()
    with vault.db.read() as conn:
        vault.get_record(conn, RecordKind.CREDENTIAL, credential)
    purpose = " ".join(purpose.split())[:200]
    what = f"release credential {credential} into a process" + (f": {purpose}" if purpose else "")
    intent = Intent(action="credential.release", credential=credential, summary=what[:500])
    decision = policies.check(vault, agent, intent)
    policies.raise_if_denied(decision, agent)
    parked = approvals.park(
        vault, agent, "release_credential",
        {"credential": credential, "purpose": purpose, "action": "credential.release"},
        summary=what + " — grants possession of the secret", rule=decision.rule,
    )  # fmt: skip
    return ReleaseRequest(parked.id, parked.for_agent()["expires_at"], parked.summary)


def release(vault: Vault, agent: str, credential: str, *, purpose: str) -> dict[str, Any]:
    """The approved release itself (called once, when the agent collects it)."""
    from keysafe.service import policies

    vault.require_unlocked()
    # Re-judged at collection: an agent paused or a policy tightened since the approval stops it.
    intent = Intent(action="credential.release", credential=credential)
    policies.raise_if_denied(policies.check(vault, agent, intent), agent)
    with vault.db.read() as conn:
        info = vault.get_record(conn, RecordKind.CREDENTIAL, credential)
        with vault.open_record(conn, info) as plain:
            value = bytes(plain.reveal()).decode("utf-8", "replace")
    with vault.db.write() as conn:
        vault.audit(
            conn, actor=f"agent:{agent}", action="credential.release",
            target=f"credential:{credential}", outcome="success",
            details={"agent": agent, "name": credential, "purpose": purpose},
        )  # fmt: skip
    return {"status": "released", "credential": credential, "value": value}
