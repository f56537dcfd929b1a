"""The agent side of the wire: a client for `keysafe serve`'s agent routes.

The MCP server, the credential proxy and `keysafe run` are thin: they hold no vault files and no
secrets of their own, only an agent credential (token or placeholder) that they pass through.
Every answer the vault gives is either a JSON result or an error body `{code, message, next,
…facts}`, re-raised here as keysafe.client's typed error (RemoteError is their base, ApiError)
with the same stable code and words. Code outside keysafe uses keysafe.client; this module keeps
the dict-in, dict-out calls the MCP server and the proxy pass through.
"""

from __future__ import annotations

import os
from typing import Any, Final
from urllib.parse import quote

import httpx

from keysafe.agent_models import PendingApproval
from keysafe.client import DEFAULT_URL, ApiError
from keysafe.client._calls import json_answer
from keysafe.client._pool import AsyncPool
from keysafe.errors import Translate, VaultUnreachableError, map_exceptions

MCP_HTTP_PORT: Final = 8422  # `keysafe mcp --http`'s default port
TIMEOUT: Final = httpx.Timeout(90.0, connect=5.0)  # approvals long-poll for up to 60 s
# A proxied answer may be silent as long as the vault lets its upstream be (service/proxy.py).
STREAM_TIMEOUT: Final = httpx.Timeout(150.0, connect=5.0)


def vault_url() -> str:
    return os.environ.get("KEYSAFE_URL", DEFAULT_URL).rstrip("/")


def pooled(pool: dict[str, httpx.AsyncClient]) -> httpx.AsyncClient:
    """The process's one connection pool, made on first use (inside the running event loop)."""
    if "http" not in pool:
        pool["http"] = httpx.AsyncClient(timeout=TIMEOUT)
    return pool["http"]


# The vault's error answers are mapped once, by keysafe.client: a RemoteError is the ApiError
# subclass of the answer's stable code (PolicyDeniedError, NotFoundError, …), with `status`.
RemoteError = ApiError


def unreachable(url: str, exc: BaseException) -> VaultUnreachableError:
    # Not an ApiError: the surfaces here answer their own caller 502 for it, where an ApiError
    # is relayed with the vault's own status.
    return VaultUnreachableError(
        f"The keysafe vault server at {url} is not reachable ({type(exc).__name__}).",
        next_step="start it with `keysafe serve --unlock` (or set KEYSAFE_URL to where it runs).",
    )


def answer(r: httpx.Response) -> dict[str, Any]:
    """The JSON body of a vault answer; the typed ApiError for an error answer."""
    return json_answer(r)


class AgentClient(AsyncPool):
    """Async calls to the agent routes, authenticated by one agent credential.

    `credential` is `ks_agent_…` (an agent token) or `ksp_…` (a placeholder, accepted by the vault
    for its own credential's HTTP call only).
    """

    def __init__(
        self, credential: str, *, url: str | None = None, http: httpx.AsyncClient | None = None
    ) -> None:
        # A shared connection pool (several credentials, one process) is passed in and not closed.
        super().__init__(http, timeout=TIMEOUT)
        self.url = (url or vault_url()).rstrip("/")
        self._auth = {"authorization": f"Bearer {credential}"}

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        with map_exceptions(self._unreachable):
            r = await self._http.request(
                method, self.url + path, json=body, headers=self._auth, timeout=TIMEOUT
            )
        return answer(r)

    @property
    def _unreachable(self) -> Translate:
        """httpx's failures to reach the vault, as VAULT_UNREACHABLE naming its URL."""
        return {httpx.HTTPError: lambda exc: unreachable(self.url, exc)}

    async def whoami(self) -> str:
        return str((await self._call("GET", "/v1/agent/whoami"))["agent"])

    async def capabilities(self) -> dict[str, Any]:
        return await self._call("GET", "/v1/agent/capabilities")

    async def address(self, wallet: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/agent/address/{quote(wallet, safe='')}")

    async def sign_transaction(self, body: dict[str, Any], *, send: bool) -> dict[str, Any]:
        path = "/v1/agent/send-transaction" if send else "/v1/agent/sign-transaction"
        return await self._call("POST", path, body)

    async def transfer(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/v1/agent/transfer", body)

    async def sign_message(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/v1/agent/sign-message", body)

    async def sign_typed_data(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/v1/agent/sign-typed-data", body)

    async def http_request(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/v1/agent/http-request", body)

    async def http_request_stream(self, body: dict[str, Any]) -> httpx.Response:
        """The call answered as a stream (`?stream=true`): the open response, which the caller
        must close. The upstream's own answer carries `x-keysafe-upstream: 1`; anything else is
        the vault's JSON (pending approval, or an error: see `answer`)."""
        request = self._http.build_request(
            "POST",
            self.url + "/v1/agent/http-request",
            params={"stream": "true"},
            json=body,
            headers=self._auth,
            timeout=STREAM_TIMEOUT,
        )
        with map_exceptions(self._unreachable):
            return await self._http.send(request, stream=True)

    async def read_data(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/v1/agent/read-data", body)

    async def threshold_commit(self, wallet: str) -> dict[str, Any]:
        return await self._call("POST", "/v1/agent/threshold/commit", {"wallet": wallet})

    async def threshold_exchange(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/v1/agent/threshold/exchange", body)

    async def request_release(self, credential: str, purpose: str) -> PendingApproval:
        """Ask for `credential`'s value (`keysafe run`): a release always waits for the owner,
        so the answer is the approval to wait on."""
        body = {"credential": credential, "purpose": purpose}
        asked = await self._call("POST", "/v1/agent/credential-release", body)
        return PendingApproval.model_validate(asked)

    async def check(self, action: str, request: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/v1/agent/check", {"action": action, "request": request})

    async def pending_approvals(self) -> dict[str, Any]:
        return await self._call("GET", "/v1/agent/approvals")

    async def approval(self, approval_id: str, *, wait: int = 0) -> dict[str, Any]:
        path = f"/v1/agent/approvals/{quote(approval_id, safe='')}?wait={max(0, min(wait, 60))}"
        return await self._call("GET", path)
