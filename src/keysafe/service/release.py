"""Releasing a credential's value to a process (`keysafe run`): possession, so always a human's
call.

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

from keysafe.approvals import Kind
from keysafe.crypto import jcs
from keysafe.policy.intent import Intent
from keysafe.service import gate
from keysafe.service.models import RecordKind, ReleaseRequest, pending_answer
from keysafe.vault.vault import Vault


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    status: str  # pending_approval | released
    credential: str
    approval_id: str | None = None
    expires_at: str | None = None
    summary: str = ""
    value: str | None = None  # only when released, to the agent that collects it

    def to_dict(self) -> dict[str, Any]:
        if self.status == "pending_approval":
            return pending_answer(self.approval_id, self.expires_at, self.summary)
        return {"status": self.status, "credential": self.credential, "value": self.value}


# The value is never stored: releases carry no idempotency key and are produced on collection.
_CODEC: gate.Codec[ReleaseResult] = gate.Codec(
    dump=lambda r: {"status": r.status, "credential": r.credential},
    load=lambda d: ReleaseResult(str(d["status"]), str(d["credential"])),
    facts=lambda r: {"name": r.credential},
    view=lambda r: {"status": r.status, "credential": r.credential},
)


def release(
    vault: Vault,
    agent: str,
    credential: str,
    *,
    purpose: str,
    approval_id: str | None = None,
    dry_run: bool = False,
) -> ReleaseResult:
    """Ask the owner to release `credential` to the agent's process (parks it, always); with
    `approval_id` (the agent collects its approved release, once) produce the value.

    Re-judged at collection: an agent paused or a policy tightened since the approval stops it.
    """
    vault.require_unlocked()
    with vault.db.read() as conn:
        info = vault.get_record(conn, RecordKind.CREDENTIAL, credential)
    purpose = " ".join(purpose.split())[:200]
    what = f"release credential {credential} into a process" + (f": {purpose}" if purpose else "")
    intent = Intent.credential_release(
        credential=credential,
        summary=(what + " — grants possession of the secret")[:500],
    )
    req = gate.Request(
        agent=agent,
        kind=Kind.RELEASE_CREDENTIAL,
        wire=ReleaseRequest(credential=credential, purpose=purpose or None),
        intent=intent,
        payload=jcs.dumps({"credential": credential, "purpose": purpose}),
        target=f"credential:{credential}",
        audit_action="credential.release",
        approval_id=approval_id,
        always_ask=True,
        facts={"name": credential, "purpose": purpose},
        dry_run=dry_run,
    )

    def act(_request_id: str) -> ReleaseResult:
        with vault.db.read() as conn, vault.open_record(conn, info) as plain:
            value = bytes(plain.reveal()).decode("utf-8", "replace")
        return ReleaseResult("released", credential, value=value)

    out = gate.run(vault, req, act, _CODEC)
    if isinstance(out, gate.Parked):
        return ReleaseResult("pending_approval", credential, **out.pending())
    return out
