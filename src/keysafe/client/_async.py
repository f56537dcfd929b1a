"""AsyncAgentClient: the asynchronous twin of AgentClient (_client.py), the same methods awaited.

Its route methods come from AgentRoutes (_methods.py), as AgentClient's do, so both clients take
the same arguments and carry the same docs.
"""

from __future__ import annotations

import time
from typing import TypeVar

import httpx

from keysafe.agent_models import ApprovalView, PendingApproval
from keysafe.client import _calls as calls
from keysafe.client._errors import ApprovalRequiredError, unreachable
from keysafe.client._methods import AgentRoutes
from keysafe.client._pool import AsyncPool

T = TypeVar("T")


class AsyncAgentClient(AsyncPool, AgentRoutes):
    """The asynchronous twin of AgentClient: the same methods, awaited (docs: AgentClient).

    Args:
        token: the agent's token `ks_agent_…` (default: KEYSAFE_AGENT_TOKEN).
        url: the vault server (default: KEYSAFE_URL, else http://127.0.0.1:8420).
        http: an httpx.AsyncClient to share a connection pool; not closed by `aclose()`.

    Raises:
        NotAuthenticatedError: no token given and none in the environment.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        url: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = calls.url_from(url)
        self._token = calls.token_from(token)  # before the pool: no client is left unclosed
        super().__init__(http, timeout=calls.TIMEOUT)

    def __repr__(self) -> str:
        return f"AsyncAgentClient(url={self.url!r}, token=<redacted>)"

    async def _send(self, call: calls.Call[T]) -> T | PendingApproval:
        request = calls.build_request(self._http, self.url, self._token, call)
        try:
            r = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        return calls.read(call, r)

    async def _run(self, call: calls.Call[T]) -> T:
        out = await self._send(call)
        if not isinstance(out, PendingApproval):
            return out
        if call.wait <= 0:
            raise ApprovalRequiredError(out)
        view = await self.wait_for_approval(out.approval_id, timeout=call.wait)
        return calls.settle(call, view)

    async def wait_for_approval(self, approval_id: str, *, timeout: float = 300) -> ApprovalView:
        """Poll until the owner decides or `timeout` seconds pass; the last view either way."""
        deadline = time.monotonic() + timeout
        while True:
            view = await self.approval(approval_id, wait=calls.poll_seconds(deadline))
            if view.status != "pending" or time.monotonic() >= deadline:
                return view
