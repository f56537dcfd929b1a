"""An agent API request a sidecar forwards through the relay, and the vault's answer: the
payloads of `request` and `response` messages (relay/envelope.py)."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["AGENT_PREFIX", "RelayedRequest", "RelayedResponse", "agent_path"]

AGENT_PREFIX: Final = "/v1/agent/"


def agent_path(path: str) -> bool:
    """Whether `path` is an agent API path and nothing else: under /v1/agent/, with no dot
    segment, no empty segment and no percent-escape, so no client or server along the way can
    resolve it to another route (`/v1/agent/../owner/login` is the owner's login)."""
    if not path.startswith(AGENT_PREFIX) or "%" in path or "\\" in path:
        return False
    segments = path[len(AGENT_PREFIX) :].split("/")
    return all(seg not in ("", ".", "..") for seg in segments[:-1]) and segments[-1] not in (
        ".",
        "..",
    )


class RelayedRequest(BaseModel):
    """An agent API request a sidecar forwards (a `request` message's payload)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(pattern=r"^(GET|POST|PUT|PATCH|DELETE)$")
    path: str = Field(pattern=r"^/v1/agent/[A-Za-z0-9/_\-.~]*$", max_length=500)
    query: str = Field(default="", max_length=2000)
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""  # base64

    @field_validator("path")
    @classmethod
    def _only_agent_routes(cls, value: str) -> str:
        if not agent_path(value):
            raise ValueError("not an agent API path")
        return value


class RelayedResponse(BaseModel):
    """The vault's answer (a `response` message's payload)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""  # base64
