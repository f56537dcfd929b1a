"""The output schemas of the tools whose answer is either a result or a pending approval.

The vault answers such a call with one of two agent API models (`agent_models.SignResult` or
`PendingApproval`, and so on); an MCP tool declares one object schema, so each model here holds
the fields of both, each optional but a `status` both answers carry. Tools with one kind of
answer declare the agent API's own model (`agent_models`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Pending(_Out):
    """Fields present when the owner must approve first."""

    approval_id: str | None = None
    expires_at: str | None = None
    summary: str | None = None


class TransactionResult(Pending):
    status: Literal["signed", "sent", "pending_approval"]
    signed_transaction: str | None = None
    tx_hash: str | None = None
    wallet: str | None = None
    address: str | None = None
    chain: str | None = None


class SignatureResult(Pending):
    status: Literal["signed", "pending_approval"]
    signature: str | None = None
    address: str | None = None


class HttpResult(Pending):
    status: Literal["pending_approval"] | None = None
    status_code: int | None = None
    headers: dict[str, str] | None = None
    body: str | None = None
    body_base64: str | None = None


class DataResult(Pending):
    status: Literal["value", "pending_approval"]
    name: str | None = None
    value: Any = None
