"""AgentClient: the synchronous client, one method per agent route, typed answers.

The route methods come from AgentRoutes (_methods.py), which AsyncAgentClient (_async.py) shares;
this class says how a call is sent and how an approval is waited for.
"""

from __future__ import annotations

import time
from typing import TypeVar

import httpx

from keysafe.agent_models import ApprovalView, PendingApproval
from keysafe.client import _calls as calls
from keysafe.client._errors import ApprovalRequiredError, unreachable
from keysafe.client._methods import AgentRoutes

T = TypeVar("T")


class AgentClient(AgentRoutes):
    """A synchronous client for the agent routes of `keysafe serve`.

    Args:
        token: the agent's token `ks_agent_…` (default: KEYSAFE_AGENT_TOKEN).
        url: the vault server (default: KEYSAFE_URL, else http://127.0.0.1:8420).
        http: an httpx.Client to share a connection pool; it is not closed by `close()`.

    Raises:
        NotAuthenticatedError: no token given and none in the environment.

    Every method raises the `ApiError` subclass of the server's stable code (PolicyDeniedError,
    BudgetExceededError, NotFoundError, VaultLockedError, …), VaultUnreachableError when no
    answer came, and ApprovalRequiredError when the owner must approve first; a call given
    `wait=SECONDS` instead waits that long for the owner and returns the approved answer.
    """

    def __init__(
        self, token: str | None = None, *, url: str | None = None, http: httpx.Client | None = None
    ) -> None:
        self.url = calls.url_from(url)
        self._token = calls.token_from(token)
        self._owned = http is None
        self._http = http or httpx.Client(timeout=calls.TIMEOUT)

    def __repr__(self) -> str:
        return f"AgentClient(url={self.url!r}, token=<redacted>)"

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (unless it was passed in)."""
        if self._owned:
            self._http.close()

    def _send(self, call: calls.Call[T]) -> T | PendingApproval:
        request = calls.build_request(self._http, self.url, self._token, call)
        try:
            r = self._http.send(request)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        return calls.read(call, r)

    def _run(self, call: calls.Call[T]) -> T:
        out = self._send(call)
        if not isinstance(out, PendingApproval):
            return out
        if call.wait <= 0:
            raise ApprovalRequiredError(out)
        return calls.settle(call, self.wait_for_approval(out.approval_id, timeout=call.wait))

    def wait_for_approval(self, approval_id: str, *, timeout: float = 300) -> ApprovalView:
        """Poll until the owner decides or `timeout` seconds pass; the last view either way."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.approval(approval_id, wait=calls.poll_seconds(deadline))
            if view.status != "pending" or time.monotonic() >= deadline:
                return view
