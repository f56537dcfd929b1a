"""An agent API request a sidecar forwards through the relay, and the vault's answer: the
payloads of `request` and `response` messages (relay/envelope.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RelayedRequest", "RelayedResponse"]


class RelayedRequest(BaseModel):
    """An agent API request a sidecar forwards (a `request` message's payload)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(pattern=r"^(GET|POST|PUT|PATCH|DELETE)$")
    path: str = Field(pattern=r"^/v1/agent/[A-Za-z0-9/_\-.~%]*$", max_length=500)
    query: str = Field(default="", max_length=2000)
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""  # base64


class RelayedResponse(BaseModel):
    """The vault's answer (a `response` message's payload)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""  # base64
