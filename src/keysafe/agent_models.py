"""The agent API's answers as pydantic models: one definition for both ends of the wire.

The server (keysafe/api/app.py) declares them on the agent routes, so /openapi.json carries real
response schemas (and clients generated from it, in any language, get real types); the Python
client (keysafe.client) parses every answer into them. This module imports nothing of keysafe, so
agent-side code can use it without any vault code.

Rules the models follow:
- Every model allows fields it does not name (`extra="allow"`): a newer server may add a field,
  and an older client must still read the answer. The server never loses a field either.
- A field the server leaves out when it has no value (a signature on a transaction answer, a
  result on a pending approval) has a default and is not `required` in the schema.
- Amounts are strings (decimal text), never floats.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Health(_Answer):
    """GET /v1/health: is the server up, and is the vault unlocked."""

    ok: bool
    unlocked: bool
    version: str


class WhoAmI(_Answer):
    """GET /v1/agent/whoami: the agent these credentials authenticate."""

    agent: str


class WalletInfo(_Answer):
    name: str
    chain: str = Field(description="Chain family: evm or solana.")
    address: str
    threshold: str | None = Field(default=None, description='"2-of-3" for a threshold wallet.')


class CredentialInfo(_Answer):
    name: str
    hosts: list[str] = Field(description="The hosts the credential is attached for.")


class DataInfo(_Answer):
    name: str
    data_class: str = Field(alias="class", description="standard or sensitive.")
    fields: list[str] = Field(default_factory=list)


class PolicyInfo(_Answer):
    rules: list[str] = Field(description="One sentence per rule.")
    expires: str | None
    summary: str


class BudgetWindow(_Answer):
    rule: str
    window: str
    asset: str | None = Field(description="None for a count limit.")
    limit: str
    left: str


class Capabilities(_Answer):
    """GET /v1/agent/capabilities: what this agent may do now."""

    agent: str
    status: str
    wallets: list[WalletInfo]
    credentials: list[CredentialInfo]
    data: list[DataInfo]
    policy: PolicyInfo
    budget: list[BudgetWindow]


class Address(_Answer):
    """GET /v1/agent/address/{wallet}."""

    wallet: str
    address: str
    chain: str


class PendingApproval(_Answer):
    """HTTP 202: the owner must approve first. Poll GET /v1/agent/approvals/{approval_id}."""

    status: Literal["pending_approval"]
    approval_id: str
    expires_at: str | None = None
    summary: str = ""


class SignResult(_Answer):
    """A signed (or signed and sent) transaction, message or typed data."""

    status: Literal["signed", "sent"]
    wallet: str
    address: str
    chain: str | None
    summary: str
    request_id: str
    signed_transaction: str | None = Field(default=None, description="Transactions only.")
    tx_hash: str | None = Field(default=None, description="Transactions only.")
    signature: str | None = Field(default=None, description="Messages and typed data.")
    rule: str | None = Field(default=None, description="The policy rule that allowed it.")


class HttpResult(_Answer):
    """The upstream's answer to a credentialed HTTP call, secrets scrubbed."""

    status_code: int | None
    headers: dict[str, str]
    body: str | None = Field(default=None, description="The body when it is UTF-8 text.")
    body_base64: str | None = Field(
        default=None, description="The body's bytes, base64, when it is not text (an image, a zip)."
    )


class DataValue(_Answer):
    """A personal-data value (whole, or only the asked fields)."""

    status: Literal["value"]
    name: str
    value: Any = Field(description="Text, or the JSON value (object) of a JSON record.")


class ReleasedCredential(_Answer):
    """A credential's value, released once to the agent that asked (`keysafe run`)."""

    status: Literal["released"]
    credential: str
    value: str | None


class ThresholdCommitment(_Answer):
    """The vault's round-one FROST commitment for one 2-of-3 signature (single use); for an
    EVM (DKLs23) wallet a fresh session only (`protocol` "dkls23", no hiding or binding)."""

    session_id: str
    wallet: str
    identifier: int
    protocol: Literal["frost", "dkls23"] = "frost"
    hiding: str | None = None
    binding: str | None = None
    expires_in: int = Field(description="Seconds the commitment stays usable.")


class ThresholdExchange(_Answer):
    """The vault's rounds 1 and 2 of one 2-of-3 EVM (DKLs23) signature, base64."""

    session_id: str
    round1: str
    round2: str


class CheckResult(_Answer):
    """POST /v1/agent/check: what the request would get now (nothing happens)."""

    decision: Literal["allow", "ask", "deny"]
    rule: str | None
    code: str | None = Field(description="A deny's reason code, e.g. NO_MATCHING_RULE.")
    reason: str


class ApprovalView(_Answer):
    """One of this agent's approvals, as the agent may see it."""

    approval_id: str
    status: Literal["pending", "approved", "denied", "expired", "failed"]
    summary: str
    expires_at: str
    result: dict[str, Any] | None = Field(
        default=None,
        description="Once approved: exactly the answer the original route gives (collected "
        "once for data and credential values); once failed: {error: {code, message, next}}.",
    )


class PendingApprovals(_Answer):
    """GET /v1/agent/approvals: this agent's requests still waiting for the owner."""

    approvals: list[ApprovalView]


class ErrorDetail(_Answer):
    """The error object: a stable code, what happened and what to do next, plus facts (ids,
    names, amounts; never a secret)."""

    code: str
    message: str
    next: str


class ErrorAnswer(_Answer):
    """Every 4xx and 5xx answer: `{"error": {code, message, next, …}}`."""

    error: ErrorDetail


# -- 2-of-3 keygen (service/keygen.py): the agent joins as party 1 --------------------------

KeygenStatus = Literal["waiting", "running", "done", "failed"]


class Sealed(_Answer):
    """One end-to-end sealed message of round `round` from `sender` to `receiver` (base64)."""

    round: int = Field(ge=1, le=16)
    sender: int = Field(ge=1, le=3)
    receiver: int = Field(ge=1, le=3)
    body: str = Field(max_length=128 * 1024)


class KeygenPost(_Answer):
    """What a party sends: its key (once, first), for the agent the tag over it, messages from
    it, or an abort with the reason (which ends the keygen for everyone)."""

    model_config = ConfigDict(extra="forbid")

    key: str | None = Field(default=None, max_length=64)
    tag: str | None = Field(default=None, max_length=64)
    messages: list[Sealed] = Field(default_factory=list, max_length=4)
    abort: str | None = Field(default=None, max_length=300)


class KeygenView(_Answer):
    """A keygen as one party sees it: the announced keys and the messages sealed to it."""

    id: str
    wallet: str
    chain: str = Field(description="Chain family: evm or solana.")
    agent: str
    vault_id: str
    kind: Literal["create", "reshare"] = "create"
    quorum: list[int] | None = Field(
        default=None, description="A reshare's two dealers (1 agent, 2 vault, 3 recovery)."
    )
    public: dict[str, Any] | None = Field(
        default=None, description="A reshare's current public package (the key it keeps)."
    )
    rounds: int
    keys: dict[int, str]
    agent_tag: str | None
    recovery_tag: str | None = Field(
        default=None,
        description="Join-key mode: the owner's tag on the recovery key (the agent's host checks "
        "it with the join key it shares with the owner).",
    )
    messages: list[Sealed]
    status: KeygenStatus
    failure: str | None
    address: str | None
    expires_in: int


class Keygens(_Answer):
    """GET /v1/agent/threshold/keygens: the keygens waiting for this agent to join."""

    keygens: list[KeygenView]
