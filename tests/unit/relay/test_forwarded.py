"""What a sidecar may forward: agent API paths only, in a form nothing along the way can
resolve to another route (the owner's login, the page)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from keysafe import wire
from keysafe.api.relay_end import as_agent
from keysafe.relay.forwarded import RelayedRequest, agent_path

ESCAPES = [
    "/v1/agent/../owner/login",
    "/v1/agent/%2e%2e/owner/login",
    "/v1/agent/%2E%2E/owner/login",
    "/v1/agent/./../owner/login",
    "/v1/agent//../owner",
    "/v1/agent/..",
    "/v1/agent/..%2fowner",
    "/v1/owner/login",
    "/",
    "/v1/health",
    "/v1/agentx/whoami",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_attack_a_path_that_leaves_the_agent_api_is_refused(path: str) -> None:
    assert not agent_path(path)
    with pytest.raises(ValidationError):
        RelayedRequest(method="POST", path=path)


@pytest.mark.parametrize(
    "path", ["/v1/agent/whoami", "/v1/agent/address/main", "/v1/agent/approvals/apr_12ab"]
)
def test_agent_paths_pass(path: str) -> None:
    assert agent_path(path)
    assert RelayedRequest(method="GET", path=path).path == path


def _call(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, Any]]:
    seen: dict[str, Any] = {}
    sent: list[dict[str, Any]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": headers, "method": "GET"}
    asyncio.run(app(inner)(scope, receive, send))
    return sent[0]["status"], seen


@pytest.mark.parametrize("path", ["/v1/owner/login", "/v1/agent/../owner/login", "/"])
def test_attack_the_in_process_boundary_refuses_any_other_route(path: str) -> None:
    """Whatever a client library made of a relayed path, the wrapped app sees agent routes
    only: the owner's routes never get a request that came through the relay."""
    status, seen = _call(as_agent, path, [(b"x-keysafe-relayed-agent", b"remote")])
    assert status == 404 and seen == {}


def test_the_relayed_agent_moves_from_its_header_into_the_scope() -> None:
    status, seen = _call(
        as_agent, "/v1/agent/whoami", [(b"x-keysafe-relayed-agent", b"remote"), (b"a", b"b")]
    )
    assert status == 200 and seen[wire.RELAYED_AGENT] == "remote"
    assert (b"x-keysafe-relayed-agent", b"remote") not in seen["headers"]
