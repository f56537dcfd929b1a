"""Dry runs: what an agent's request would get now, with nothing reserved, parked or done.

An agent (or the model behind it) asks before it acts: `check(vault, agent, kind, request)` runs
the request through its own use case (service/dispatch.py), decoded exactly as for real, up to
the gate, which hands back its decision instead of acting (gate.DryRun). Nothing is audited:
a dry run changes nothing, and what it reveals (the agent's own policy and budget) the agent may
already read with `capabilities`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from keysafe.agent_models import CheckResult
from keysafe.errors import MalformedRequestError, PolicyDeniedError
from keysafe.policy.engine import verdict_fields
from keysafe.service import dispatch, gate
from keysafe.vault.vault import Vault


def _verdict(outcome: str, rule: str | None, code: str | None, reason: str) -> CheckResult:
    """A dry run's answer: allow, ask (the owner would be asked) or deny, and why; the keys are
    those of every verdict (`verdict_fields`)."""
    return CheckResult.model_validate(verdict_fields(outcome, rule, code, reason))


def check(vault: Vault, agent: str, kind_name: str, request: Mapping[str, Any]) -> CheckResult:
    """What `agent`'s request of kind `kind_name` (the route's body as `request`) would get.

    Raises:
        MalformedRequestError: an unknown kind, or a request its route would refuse as malformed.
        NotFoundError: it names a wallet, credential or data the vault does not hold.
        VaultLockedError: a locked vault decides nothing.
    """
    kind = dispatch.kind_of(kind_name)
    try:
        wire = dispatch.wire_of(kind, {k: v for k, v in request.items() if k != "idempotency_key"})
    except ValidationError as exc:
        where = ", ".join(
            ".".join(str(p) for p in e["loc"]) or "request"
            for e in exc.errors(include_url=False, include_input=False)[:3]
        )
        raise MalformedRequestError(
            f"The request to check is not a valid {kind.value} request ({where}).",
            next_step=f"send the body the {kind.value} route takes, as 'request'.",
        ) from None
    try:
        dispatch.run(vault, agent, kind, wire, dispatch.How(dry_run=True))
    except gate.DryRun as done:
        d = done.decision
        return _verdict(d.outcome, d.rule, d.code, d.reason)
    except PolicyDeniedError as exc:  # refused before the gate (e.g. a host not of a credential)
        code = exc.facts.get("reason_code")
        return _verdict("deny", None, str(code) if code else str(exc.code), exc.what)
    raise AssertionError("a dry run ends at the gate")  # pragma: no cover
