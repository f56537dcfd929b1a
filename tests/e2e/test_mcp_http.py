"""Black-box tests of `keysafe mcp --http`: streamable HTTP on 127.0.0.1:PORT/mcp, driven by the
MCP SDK's own client.

`keysafe mcp --http --port P` runs as a subprocess in front of a real `keysafe serve`. Every tool
is called allowed and refused (`ToolScenarios`, shared with stdio); then the HTTP gate: every
request needs `Authorization: Bearer ks_agent_…` that the vault accepts at that moment (no token,
a wrong one or a placeholder is a 401 with WWW-Authenticate; a revoked agent is cut off on its
next request), two agents on one endpoint each act as themselves only, a foreign Host or Origin
is refused (DNS-rebinding protection), and an unreachable vault is a 502 VAULT_UNREACHABLE.

Acceptance: issue 6, point 1 (HTTP half).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from keysafe.testing import free_port
from tests.e2e.mcp_fixture import (
    McpHttp,
    McpSession,
    McpWorld,
    ToolScenarios,
    agent_side_env,
    mcp_http_server,
    ok,
    refused,
    world_fixture,  # noqa: F401 - the session fixture `world`, shared with the other transport
)
from tests.e2e.server_fixture import MILLI_ETH, R4, error_of, evm_tx

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "keysafe-tests", "version": "1"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def http_session(url: str, token: str) -> McpSession:
    """An SDK client session on the streamable-HTTP endpoint, every request carrying `token`."""

    @asynccontextmanager
    async def transport() -> AsyncIterator[Any]:
        async with (
            httpx2.AsyncClient(
                headers={"authorization": f"Bearer {token}"},
                timeout=httpx2.Timeout(30.0, read=120.0),
            ) as http,
            streamable_http_client(url, http_client=http) as streams,
        ):
            yield streams

    return McpSession(lambda: Client(transport()))


def raw_post(mcp: McpHttp, headers: dict[str, str]) -> httpx.Response:
    """One plain HTTP request to /mcp (an `initialize`), outside the SDK."""
    return httpx.post(mcp.url, json=INITIALIZE, headers=MCP_HEADERS | headers, timeout=30)


def assert_401(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].lower().startswith("bearer"), r.headers
    err = error_of(r)
    assert err["code"] == "NOT_AUTHENTICATED", err
    return err


@pytest.fixture(scope="module")
def mcp(world: McpWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpHttp]:
    root = tmp_path_factory.mktemp("mcp-http-server")
    with mcp_http_server(agent_side_env(root / "no-vault-here"), world.server.url, root) as m:
        yield m
    assert not (root / "no-vault-here").exists()


@pytest.fixture(scope="module")
def session(world: McpWorld, mcp: McpHttp) -> Iterator[McpSession]:
    with http_session(mcp.url, world.vault.bot_token) as s:
        yield s


class TestToolsOverHttp(ToolScenarios):
    """Every tool, allowed and refused, over streamable HTTP (see mcp_fixture.ToolScenarios)."""


# -- the gate --------------------------------------------------------------------------------------


def test_a_request_with_a_valid_agent_token_reaches_mcp(world: McpWorld, mcp: McpHttp) -> None:
    r = raw_post(mcp, {"authorization": f"Bearer {world.vault.bot_token}"})
    assert r.status_code == 200, r.text
    assert '"serverInfo"' in r.text and "keysafe" in r.text


@pytest.mark.parametrize("with_token", [False, True])
def test_attack_deeply_nested_json_is_refused_before_anything_parses_it(
    world: McpWorld, mcp: McpHttp, with_token: bool
) -> None:
    auth = {"authorization": f"Bearer {world.vault.bot_token}"} if with_token else {}
    r = httpx.post(mcp.url, content=b"[" * 400_000, headers=MCP_HEADERS | auth, timeout=30)
    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == "MALFORMED_REQUEST"
    assert raw_post(mcp, {"authorization": f"Bearer {world.vault.bot_token}"}).status_code == 200


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
def test_a_request_without_a_token_is_401_whatever_the_method(mcp: McpHttp, method: str) -> None:
    r = httpx.request(
        method,
        mcp.url,
        headers=MCP_HEADERS,
        json=INITIALIZE if method == "POST" else None,
        timeout=30,
    )
    err = assert_401(r)
    assert "ks_agent_" in err["next"]


def test_a_request_with_a_wrong_agent_token_is_401_and_does_not_echo_it(mcp: McpHttp) -> None:
    wrong = "ks_agent_" + secrets.token_urlsafe(32)
    r = raw_post(mcp, {"authorization": f"Bearer {wrong}"})
    assert_401(r)
    assert wrong not in r.text


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer {placeholder}",  # a real placeholder of `echo` for `bot`: not an agent login
        "Basic {token}",  # the right token in the wrong scheme
        "{token}",  # no scheme at all
        "Bearer {token}x",  # one character off
    ],
)
def test_anything_but_a_current_agent_token_as_bearer_is_401(
    world: McpWorld, mcp: McpHttp, authorization: str
) -> None:
    value = authorization.format(placeholder=world.vault.placeholder, token=world.vault.bot_token)
    r = raw_post(mcp, {"authorization": value})
    assert_401(r)
    assert world.vault.placeholder not in r.text


def test_the_sdk_client_with_a_wrong_token_cannot_connect(mcp: McpHttp) -> None:
    with (
        pytest.raises(RuntimeError, match="could not connect"),
        http_session(mcp.url, "ks_agent_" + secrets.token_urlsafe(32)),
    ):
        pass  # pragma: no cover


def test_a_foreign_host_header_is_refused_even_with_a_valid_token(
    world: McpWorld, mcp: McpHttp
) -> None:
    token = {"authorization": f"Bearer {world.vault.bot_token}"}
    r = raw_post(mcp, token | {"host": "evil.example"})
    assert 400 <= r.status_code < 500 and r.status_code != 401, (r.status_code, r.text)
    assert '"serverInfo"' not in r.text
    r = raw_post(mcp, token | {"host": f"evil.example:{mcp.port}"})
    assert 400 <= r.status_code < 500 and '"serverInfo"' not in r.text, r.text


def test_a_foreign_origin_is_refused_even_with_a_valid_token(world: McpWorld, mcp: McpHttp) -> None:
    headers = {"authorization": f"Bearer {world.vault.bot_token}", "origin": "http://evil.example"}
    r = raw_post(mcp, headers)
    assert 400 <= r.status_code < 500 and r.status_code != 401, (r.status_code, r.text)
    assert '"serverInfo"' not in r.text


# -- several agents, one endpoint ------------------------------------------------------------------


def test_two_agents_on_one_endpoint_each_act_as_themselves_only(
    world: McpWorld, mcp: McpHttp
) -> None:
    with (
        http_session(mcp.url, world.vault.bot_token) as bot,
        http_session(mcp.url, world.vault.helper_token) as helper,
    ):
        bot_caps = ok(bot.call("list_capabilities"))
        helper_caps = ok(helper.call("list_capabilities"))
        assert bot_caps["agent"] == "bot" and helper_caps["agent"] == "helper"
        assert helper_caps["policy"]["rules"] == ["helper-reads-profile: allow data.read."]
        assert helper_caps["credentials"] == [] and helper_caps["budget"] == []
        # Wallets are listed only to agents whose policy could use them.
        assert helper_caps["wallets"] == []
        assert [w["name"] for w in bot_caps["wallets"]] == ["main"]
        assert [c["name"] for c in bot_caps["credentials"]] == ["echo"]

        # The bot's approval is the bot's: the helper cannot even see it.
        tx = {"wallet": "main", "transaction": evm_tx(2 * MILLI_ETH, to=R4)}
        pending = ok(bot.call("sign_transaction", tx))
        approval_id = pending["approval_id"]
        refused(helper.call("approval_status", {"approval_id": approval_id}), "NOT_FOUND")
        assert ok(bot.call("approval_status", {"approval_id": approval_id}))["status"] == "pending"

        # The helper's policy, not the bot's, judges the helper's requests.
        err = refused(helper.call("sign_transaction", tx), "POLICY_DENIED")
        assert "helper" in err["message"]
        http = {"credential": "echo", "method": "GET", "url": f"{world.upstream.base}/h"}
        refused(helper.call("http_request", http), "POLICY_DENIED")
        got = ok(helper.call("read_data", {"name": "profile", "fields": ["zip"]}))
        assert got["value"] == {"zip": "69001"}

        # Interleaved calls keep their identities.
        for _ in range(3):
            assert ok(helper.call("list_capabilities"))["agent"] == "helper"
            assert ok(bot.call("list_capabilities"))["agent"] == "bot"


def test_a_revoked_agent_is_cut_off_on_its_next_request_mid_session(
    world: McpWorld, mcp: McpHttp, session: McpSession
) -> None:
    token = world.vault.doomed_token
    with http_session(mcp.url, token) as doomed:
        assert ok(doomed.call("list_capabilities"))["agent"] == "doomed"
        r = world.owner("/v1/owner/agents/doomed/revoke")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "revoked"

        # The gate refuses the very next HTTP request (before MCP sees it): the SDK raises.
        with pytest.raises(MCPError):
            doomed.call("read_data", {"name": "profile"})
        assert_401(raw_post(mcp, {"authorization": f"Bearer {token}"}))
    # Revoking one agent leaves the others on the same endpoint working.
    assert ok(session.call("list_capabilities"))["agent"] == "bot"


def test_with_the_vault_down_the_gate_answers_502_vault_unreachable(
    world: McpWorld, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with mcp_http_server(agent_side_env(tmp_path / "no-home"), closed, tmp_path) as m:
        r = raw_post(m, {"authorization": f"Bearer {world.vault.bot_token}"})
        assert r.status_code == 502, r.text
        err = error_of(r)
        assert err["code"] == "VAULT_UNREACHABLE"
        assert closed in err["message"]
        assert world.vault.bot_token not in r.text
