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

from pydantic import Field

from keysafe.approvals import Kind
from keysafe.crypto import jcs
from keysafe.policy.intent import Intent
from keysafe.service import gate
from keysafe.service.gated_value import MaybePending, open_through_gate
from keysafe.service.models import RecordKind, ReleaseRequest
from keysafe.vault.vault import Vault


class ReleaseResult(MaybePending):
    """A credential release: waiting for the owner ("pending_approval"), or its value
    ("released"), only to the agent that collects it."""

    credential: str
    # Kept out of repr: a result that reaches a log line or a traceback shows no secret.
    value: str | None = Field(default=None, repr=False)


# The value is never stored: releases carry no idempotency key and are produced on collection.
_CODEC: gate.Codec[ReleaseResult] = gate.Codec(
    dump=lambda r: {"status": r.status, "credential": r.credential},
    load=lambda d: ReleaseResult(status=str(d["status"]), credential=str(d["credential"])),
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

    return open_through_gate(
        vault,
        req,
        info,
        _CODEC,
        done=lambda value: ReleaseResult(status="released", credential=credential, value=value),
        parked=lambda pending: ReleaseResult(
            status="pending_approval", credential=credential, **pending
        ),
    )
