"""`keysafe mcp`: the MCP server agent hosts launch (stdio) or reach (streamable HTTP on /mcp).

It is a thin client of the running vault (`KEYSAFE_URL`): it never opens the vault's files and
holds no secret but the agent credential it passes through. Over stdio that credential is the
host's `KEYSAFE_AGENT_TOKEN`; over HTTP every request carries its own
`Authorization: Bearer ks_agent_…`, checked with the vault before the MCP layer sees the request,
and the tools act as that agent only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any, Final

import httpx
from mcp.server.mcpserver import Context
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from keysafe import wire
from keysafe.errors import KeysafeError, NotAuthenticatedError
from keysafe.mcp_server import auto_join
from keysafe.mcp_server.own_policy import OwnPolicy
from keysafe.mcp_server.threshold import SHARE_ENV, ShareBook, load_shares
from keysafe.mcp_server.tools import build_server
from keysafe.remote import AgentClient, RemoteError, pooled, vault_url

AGENT_TOKEN_PREFIX: Final = "ks_agent_"  # noqa: S105 - a prefix, not a token
# A sidecar's local token (relay/sidecar.py), when KEYSAFE_URL is the sidecar on this host.
LOCAL_TOKEN_PREFIX: Final = "ks_local_"  # noqa: S105 - a prefix, not a token


def run_stdio(token: str, *, url: str | None = None) -> None:
    """Serve MCP on stdin/stdout as the agent whose token is `token`."""
    base = url or vault_url()
    pool: dict[str, httpx.AsyncClient] = {}

    def client_for(ctx: Context) -> AgentClient:
        # One connection pool for the process, created inside the server's event loop.
        http = pooled(pool)
        return AgentClient(token, url=base, http=http)

    shares = ShareBook(load_shares(token))  # a bad share file stops the server now
    own = OwnPolicy.from_env()  # so does a bad policy copy
    auto_join.start(token, base, shares)  # and a bad join key
    build_server(client_for, lambda ctx: shares, own).run("stdio")


def _bearer(headers: Any) -> str | None:
    auth = str(headers.get("authorization", "") if headers is not None else "")
    if not auth.lower().startswith("bearer "):
        return None
    token = auth[7:].strip()
    known = token.startswith((AGENT_TOKEN_PREFIX, LOCAL_TOKEN_PREFIX))
    return token if known and len(token) <= 200 else None


def http_app(*, url: str | None = None) -> ASGIApp:
    """The streamable-HTTP MCP app on /mcp, behind a per-request agent check."""
    base = url or vault_url()
    pool: dict[str, httpx.AsyncClient] = {}

    def http() -> httpx.AsyncClient:
        return pooled(pool)

    def client_for(ctx: Context) -> AgentClient:
        token = _bearer(ctx.headers)
        if token is None:  # the gate already refused such a request; never fall back
            raise NotAuthenticatedError(
                "This request carries no agent token.",
                next_step="send `Authorization: Bearer ks_agent_…`.",
            )
        return AgentClient(token, url=base, http=http())

    loaded: dict[str, ShareBook] = {}

    def shares_for(ctx: Context) -> ShareBook:
        # Each agent's shares open with its own token only; a file for another agent is skipped.
        token = _bearer(ctx.headers)
        if token is None or not os.environ.get(SHARE_ENV):
            return ShareBook()
        digest = hashlib.sha256(token.encode()).hexdigest()
        if digest not in loaded:
            try:
                loaded[digest] = ShareBook(load_shares(token))
            except KeysafeError:
                loaded[digest] = ShareBook()
        return loaded[digest]

    server = build_server(client_for, shares_for, OwnPolicy.from_env())
    inner = server.streamable_http_app(stateless_http=True, host="127.0.0.1")
    wire.pin_recursion_limit()  # after every import (py_ecc raises it to 100,000)
    return wire.BodyGuard(AgentGate(inner, base, http))


class AgentGate:
    """ASGI wrapper: every HTTP request must carry an agent token the vault accepts right now
    (a revoked or paused-then-revoked agent is cut off on its next request, not its next session).
    """

    def __init__(self, app: ASGIApp, url: str, http: Callable[[], httpx.AsyncClient]) -> None:
        self.app = app
        self.url = url
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan: starts the session manager
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = _bearer(headers)
        error: KeysafeError | None = None
        if token is None:
            error = NotAuthenticatedError(
                "The keysafe MCP endpoint needs an agent token.",
                next_step="send `Authorization: Bearer ks_agent_…` (from `keysafe agent add`).",
            )
        else:
            try:
                await AgentClient(token, url=self.url, http=self.http()).whoami()
            except KeysafeError as exc:  # the vault's refusal, or VAULT_UNREACHABLE
                error = exc
        if error is None:
            await self.app(scope, receive, send)
            return
        # The vault's own status for its refusal; STATUS for one raised here.
        status = error.status if isinstance(error, RemoteError) else error.http_status
        response = JSONResponse(
            {"error": error.to_dict()},
            status_code=status,
            headers={"www-authenticate": 'Bearer realm="keysafe"'} if status == 401 else None,
        )
        await response(scope, receive, send)


def run_http(port: int, *, url: str | None = None) -> None:
    """Serve streamable HTTP on 127.0.0.1:`port` (loopback only)."""
    import uvicorn

    uvicorn.run(http_app(url=url), host="127.0.0.1", port=port, log_level="warning")
