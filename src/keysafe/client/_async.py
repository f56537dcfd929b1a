"""AsyncAgentClient: the asynchronous twin of AgentClient (_client.py), the same methods awaited."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import httpx

from keysafe import agent_models as models
from keysafe.client import _calls as calls
from keysafe.client._errors import ApprovalRequiredError, unreachable
from keysafe.client._pool import AsyncPool

T = TypeVar("T")


class AsyncAgentClient(AsyncPool):
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

    async def _send(self, call: calls.Call[T]) -> T | models.PendingApproval:
        request = calls.build_request(self._http, self.url, self._token, call)
        try:
            r = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        return calls.read(call, r)

    async def _run(self, call: calls.Call[T], wait: float = 0) -> T:
        out = await self._send(call)
        if not isinstance(out, models.PendingApproval):
            return out
        if wait <= 0:
            raise ApprovalRequiredError(out)
        return calls.settle(call, await self.wait_for_approval(out.approval_id, timeout=wait))

    async def health(self) -> models.Health:
        return await self._run(calls.HEALTH)

    async def whoami(self) -> str:
        return (await self._run(calls.WHOAMI)).agent

    async def capabilities(self) -> models.Capabilities:
        return await self._run(calls.CAPABILITIES)

    async def address(self, wallet: str) -> models.Address:
        return await self._run(calls.address(wallet))

    async def sign_transaction(
        self,
        wallet: str,
        transaction: calls.Json | str,
        *,
        chain: str | None = None,
        description: str | None = None,
        declared: calls.Json | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> models.SignResult:
        """Sign a transaction: as AgentClient.sign_transaction (its docstring has the details)."""
        call = calls.sign_transaction(
            "sign-transaction", wallet, transaction, chain, description, declared, idempotency_key
        )
        return await self._run(call, wait)

    async def send_transaction(
        self,
        wallet: str,
        transaction: calls.Json | str,
        *,
        chain: str | None = None,
        description: str | None = None,
        declared: calls.Json | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> models.SignResult:
        """Sign and broadcast a transaction: as AgentClient.send_transaction, whose docstring
        says what each argument means and what it raises; the answer has tx_hash."""
        call = calls.sign_transaction(
            "send-transaction", wallet, transaction, chain, description, declared, idempotency_key
        )
        return await self._run(call, wait)

    async def transfer(
        self,
        wallet: str,
        asset: str,
        to: str,
        amount: str,
        *,
        chain: str | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> models.SignResult:
        call = calls.transfer(wallet, asset, to, amount, chain, description, idempotency_key)
        return await self._run(call, wait)

    async def sign_message(
        self,
        wallet: str,
        message: str,
        *,
        encoding: Literal["utf8", "base64"] = "utf8",
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> models.SignResult:
        call = calls.sign_message(wallet, message, encoding, idempotency_key)
        return await self._run(call, wait)

    async def sign_typed_data(
        self,
        wallet: str,
        typed_data: calls.Json,
        *,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> models.SignResult:
        call = calls.sign_typed_data(wallet, typed_data, idempotency_key)
        return await self._run(call, wait)

    async def http_request(
        self,
        credential: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: str | bytes | None = None,
        wait: float = 0,
    ) -> models.HttpResult:
        return await self._run(calls.http_request(credential, method, url, headers, body), wait)

    async def read_data(
        self, name: str, *, fields: list[str] | None = None, wait: float = 0
    ) -> models.DataValue:
        return await self._run(calls.read_data(name, fields), wait)

    async def threshold_commit(self, wallet: str) -> models.ThresholdCommitment:
        return await self._run(calls.threshold_commit(wallet))

    async def keygens(self) -> list[models.KeygenView]:
        return (await self._run(calls.KEYGENS)).keygens

    async def keygen_exchange(self, keygen_id: str, post: models.KeygenPost) -> models.KeygenView:
        return await self._run(calls.keygen_exchange(keygen_id, post))

    async def release_credential(
        self, credential: str, *, purpose: str | None = None, wait: float = 0
    ) -> models.ReleasedCredential:
        return await self._run(calls.release_credential(credential, purpose), wait)

    async def check(self, action: str, request: Mapping[str, Any]) -> models.CheckResult:
        return await self._run(calls.check(action, request))

    async def pending_approvals(self) -> list[models.ApprovalView]:
        return (await self._run(calls.PENDING_APPROVALS)).approvals

    async def approval(self, approval_id: str, *, wait: int = 0) -> models.ApprovalView:
        return await self._run(calls.approval(approval_id, wait))

    async def wait_for_approval(
        self, approval_id: str, *, timeout: float = 300
    ) -> models.ApprovalView:
        deadline = time.monotonic() + timeout
        while True:
            view = await self.approval(approval_id, wait=calls.poll_seconds(deadline))
            if view.status != "pending" or time.monotonic() >= deadline:
                return view
