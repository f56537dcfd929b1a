"""What both agent clients share: the token, a route's `Call`, and reading an answer.

Each client method builds one `Call` (route, JSON body, how its answer parses, how long to wait
for the owner) with its builder in _routes.py; the two clients (_client.py, _async.py) differ
only in how they send it. An answer is one of three things: the route's model (HTTP 200), a
pending approval (HTTP 202: raised as ApprovalRequiredError, or waited for when the call says
`wait=`), or an error body (raised as the class `ERRORS` maps its code to).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from keysafe.agent_models import ApprovalView, PendingApproval
from keysafe.client._errors import (
    ApprovalRequiredError,
    InternalError,
    NotAuthenticatedError,
    NotFoundError,
    PolicyDeniedError,
    error_from_answer,
)

DEFAULT_URL: Final = "http://127.0.0.1:8420"
# Approvals long-poll for up to 60 s per request, so reads may take that long.
TIMEOUT: Final = httpx.Timeout(90.0, connect=5.0)
MAX_POLL_S: Final = 60  # the server's cap on one long poll

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Json = dict[str, Any]


class Token:
    """The agent's token, kept out of every repr, str and error (only the header carries it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def header(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._value}"}

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


def token_from(token: str | None) -> Token:
    value = token if token is not None else os.environ.get("KEYSAFE_AGENT_TOKEN", "")
    if not value.strip():
        raise NotAuthenticatedError(
            "No agent token was given.",
            next_step="pass token='ks_agent_…' or set KEYSAFE_AGENT_TOKEN "
            "(the owner creates one with `keysafe agent add NAME`).",
            status=0,
        )
    return Token(value.strip())


def url_from(url: str | None) -> str:
    return (url or os.environ.get("KEYSAFE_URL") or DEFAULT_URL).rstrip("/")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One agent route's request, and what its answer becomes."""

    method: str
    path: str
    body: Json | None
    parse: Callable[[Json], T]
    wait: float = 0  # seconds to wait for the owner when the vault asks first (0: raise at once)


def json_body(**fields: Any) -> Json:
    """A request body without the options left unset (the server applies its defaults)."""
    return {k: v for k, v in fields.items() if v is not None}


def build_request(
    http: httpx.Client | httpx.AsyncClient, url: str, token: Token, call: Call[Any]
) -> httpx.Request:
    """The HTTP request of `call` to the server at `url`, with the agent's token."""
    return http.build_request(
        call.method, url + call.path, json=call.body, headers=token.header(), timeout=TIMEOUT
    )


def json_answer(r: httpx.Response) -> Json:
    """The JSON object the vault answered; the typed ApiError for an error answer."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code >= 400 or not isinstance(body, dict):
        raise error_from_answer(body, r.status_code)
    return body


def read(call: Call[T], r: httpx.Response) -> T | PendingApproval:
    """The route's answer, a pending approval, or the raised error."""
    body = json_answer(r)
    try:
        if r.status_code == 202 and body.get("status") == "pending_approval":
            return PendingApproval.model_validate(body)
        return call.parse(body)
    except ValidationError:
        raise _unexpected(call.path) from None


def _unexpected(path: str) -> InternalError:
    # The answer's content is not echoed: it may hold a data value or an API response.
    return InternalError(
        f"The vault's answer to {path} does not have the expected shape.",
        next_step="use a keysafe client of the same version as the server (`keysafe --version`).",
        status=200,
    )


def settle(call: Call[T], view: ApprovalView) -> T:
    """The original call's answer from its approval, or the error that says why there is none."""
    if view.status == "pending":
        pending = PendingApproval(
            status="pending_approval",
            approval_id=view.approval_id,
            expires_at=view.expires_at,
            summary=view.summary,
        )
        raise ApprovalRequiredError(pending)
    if view.status == "denied":
        what = f"The owner denied approval {view.approval_id} ({view.summary}); nothing was done."
        hint = "do not resend the same request: change it, or ask the owner."
        raise PolicyDeniedError(what, next_step=hint, status=200, approval_id=view.approval_id)
    if view.status == "expired":
        what = f"Approval {view.approval_id} expired before the owner decided; nothing was done."
        hint = "send the request again if it is still needed (the owner is asked again)."
        raise PolicyDeniedError(what, next_step=hint, status=200, approval_id=view.approval_id)
    result = view.result
    if result is None:
        raise NotFoundError(
            f"Approval {view.approval_id} was approved, but its value was already collected "
            "(a value is handed out once).",
            next_step="send the request again if you still need the value.",
            status=200,
            approval_id=view.approval_id,
        )
    if "error" in result:  # approved, but the request failed when it ran
        raise error_from_answer(result, 200)
    try:
        return call.parse(result)
    except ValidationError:
        raise _unexpected(call.path) from None


def get(path: str, model: type[M]) -> Call[M]:
    return Call("GET", path, None, model.model_validate)


def post(path: str, body: Json, model: type[M], wait: float = 0) -> Call[M]:
    return Call("POST", path, body, model.model_validate, wait)


def poll_seconds(deadline: float) -> int:
    return int(max(0.0, min(MAX_POLL_S, deadline - time.monotonic())))
