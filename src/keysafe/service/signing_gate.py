"""What every signing use case shares (service/signing.py, service/transfer.py): the result an
agent gets, how the gate stores and audits it, the 2-of-3 wallet checks, and the pass through the
gate itself.

Apart from the use cases so that each one reads as decode, request, act, without this plumbing in
between.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keysafe.errors import MalformedRequestError
from keysafe.policy.intent import Intent
from keysafe.service import gate
from keysafe.service.record_meta import ThresholdWallet, Wallet
from keysafe.service.threshold_dkls import persist_bans
from keysafe.service.threshold_state import discard
from keysafe.vault.vault import Vault

Status = Literal["signed", "sent", "pending_approval"]


def _absent(value: object) -> bool:
    return value is None


class SignResult(BaseModel):
    """A signature, a signed (and sent) transaction, or a request parked for the owner. Its
    JSON is the agent's answer: the fields a result has no value for are left out (all but
    `chain`, which is null for a message), and `intent` is never shown (the gate audits it)."""

    model_config = ConfigDict(frozen=True)

    status: Status
    wallet: str
    address: str
    chain: str | None
    summary: str
    request_id: str
    signed_transaction: str | None = Field(default=None, exclude_if=_absent)
    tx_hash: str | None = Field(default=None, exclude_if=_absent)
    signature: str | None = Field(default=None, exclude_if=_absent)
    rule: str | None = Field(default=None, exclude_if=_absent)
    approval_id: str | None = Field(default=None, exclude_if=_absent)
    expires_at: str | None = Field(default=None, exclude_if=_absent)
    intent: dict[str, Any] = Field(default_factory=dict, exclude=True)

    def stored(self) -> dict[str, Any]:
        """Every field, `intent` and the empty ones included: what an idempotent replay loads."""
        return {name: getattr(self, name) for name in type(self).model_fields}


def _facts(r: SignResult) -> dict[str, Any]:
    return {
        "wallet": r.wallet,
        "chain": r.chain,
        "tx_hash": r.tx_hash,
        "status": r.status,
        "summary": r.summary,
    }


def _view(r: SignResult) -> dict[str, Any]:
    return r.model_dump(mode="json")


CODEC: gate.Codec[SignResult] = gate.Codec(
    dump=SignResult.stored, load=SignResult.model_validate, facts=_facts, view=_view
)


def shared_wallet(found: Wallet) -> ThresholdWallet:
    """The 2-of-3 wallet whose share signs beside the agent's part (`threshold_fields` let
    the part in only for such a wallet)."""
    shared = found.as_threshold()
    assert shared is not None, "an agent's part was accepted for a single-key wallet"
    return shared


def signed_result(
    status: Status,
    found: Wallet,
    chain: str | None,
    intent: Intent,
    request_id: str,
    *,
    signed_transaction: str | None = None,
    tx_hash: str | None = None,
    signature: str | None = None,
) -> SignResult:
    """What an act returns: the signature or signed transaction, and what it does."""
    return SignResult(
        status=status,
        wallet=found.name,
        address=found.address,
        chain=chain,
        summary=intent.summary or intent.action,
        request_id=request_id,
        signed_transaction=signed_transaction,
        tx_hash=tx_hash,
        signature=signature,
        intent=intent.model_dump(mode="json", exclude_none=True),
    )


def _pending(found: Wallet, chain: str | None, parked: gate.Parked) -> SignResult:
    a = parked.approval
    return SignResult(
        status="pending_approval",
        wallet=found.name,
        address=found.address,
        chain=chain,
        summary=a.summary,
        request_id="",
        rule=a.rule,
        approval_id=a.id,
        expires_at=a.for_agent()["expires_at"],
        intent=parked.intent.model_dump(mode="json", exclude_none=True),
    )


def threshold_fields(
    vault: Vault,
    agent: str,
    found: Wallet,
    threshold: Mapping[str, Any] | None,
    *,
    dry_run: bool = False,
) -> dict[str, Any] | None:
    """A 2-of-3 wallet signs only with the agent's part; a plain wallet never takes one. A dry
    run signs nothing, so it asks the policy about a 2-of-3 wallet without the agent's part."""
    if dry_run and threshold is None:
        return None
    if (found.threshold is not None) == (threshold is not None):
        return dict(threshold) if threshold is not None else None
    discard(vault, agent, dict(threshold) if threshold else None)
    if threshold is None:
        raise MalformedRequestError(
            f"Wallet '{found.name}' is a 2-of-3 threshold wallet: the agent's share must take part "
            "(keysafe mcp adds it when KEYSAFE_AGENT_SHARE_FILE names the agent's share file).",
            next_step="use `keysafe mcp` with KEYSAFE_AGENT_SHARE_FILE set to the agent's share "
            "file; it adds the agent's part for you.",
        )
    raise MalformedRequestError(
        f"Wallet '{found.name}' is not a threshold wallet; drop the 'threshold' field.",
        next_step="send the request without 'threshold'.",
    )


def through_gate(
    vault: Vault,
    req: gate.Request,
    found: Wallet,
    chain: str | None,
    act: Callable[[str], SignResult],
    threshold: dict[str, Any] | None,
) -> SignResult:
    """Run the request through the gate. A 2-of-3 wallet's vault commitment is dropped unless
    the request is parked with it (approving then uses it while it is alive)."""
    try:
        out = gate.run(vault, req, act, CODEC)
    except BaseException:
        discard(vault, req.agent, threshold)
        if threshold is not None:
            persist_bans(vault)  # a failed DKLs23 check, now out of the gate
        raise
    if isinstance(out, gate.Parked):
        return _pending(found, chain, out)
    discard(vault, req.agent, threshold)  # e.g. a replay never used it
    return out
