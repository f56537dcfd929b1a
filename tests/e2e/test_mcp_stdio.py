"""Black-box tests of `keysafe mcp` over stdio, driven by the MCP SDK's own client.

The SDK launches `keysafe mcp` as a subprocess with only KEYSAFE_URL and KEYSAFE_AGENT_TOKEN
(KEYSAFE_HOME points nowhere: the MCP server is a thin client of `keysafe serve` and never opens
the vault's files). Every tool is called allowed and refused (`ToolScenarios`, shared with the
HTTP transport), then what is particular to stdio: a missing token stops the process with one
line naming KEYSAFE_AGENT_TOKEN, a wrong token and an unreachable vault turn every tool into a
tool error with the stable code.

Acceptance: issue 6, point 1 (stdio half).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from keysafe.testing import free_port
from tests.e2e.mcp_fixture import (
    TOOL_NAMES,
    McpSession,
    McpWorld,
    ToolScenarios,
    refused,
    sample_calls,
    world_fixture,  # noqa: F401 - the session fixture `world`, shared with the other transport
)
from tests.e2e.server_fixture import KEYSAFE


def stdio_session(url: str, token: str, root: Path, errlog: TextIO) -> McpSession:
    """An SDK client session with `keysafe mcp` launched over stdio as the agent of `token`."""
    env = {
        "KEYSAFE_URL": url,
        "KEYSAFE_AGENT_TOKEN": token,
        "KEYSAFE_HOME": str(root / "no-vault-here"),  # must never be needed
    }
    params = StdioServerParameters(command=KEYSAFE, args=["mcp"], env=env)
    return McpSession(lambda: Client(stdio_client(params, errlog=errlog)))


@pytest.fixture(scope="module")
def session(world: McpWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpSession]:
    root = tmp_path_factory.mktemp("mcp-stdio-client")
    with (
        open(root / "mcp-stderr.log", "w") as errlog,
        stdio_session(world.server.url, world.vault.bot_token, root, errlog) as s,
    ):
        yield s
    assert not (root / "no-vault-here").exists()


class TestToolsOverStdio(ToolScenarios):
    """Every tool, allowed and refused, over stdio (see mcp_fixture.ToolScenarios)."""


# -- what is particular to stdio -------------------------------------------------------------------


def test_mcp_without_agent_token_exits_non_zero_with_one_line_naming_the_variable(
    tmp_path: Path,
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "KEYSAFE_URL": f"http://127.0.0.1:{free_port()}",
        "KEYSAFE_HOME": str(tmp_path / "home"),
    }
    proc = subprocess.run(
        [KEYSAFE, "mcp"], stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=30
    )
    assert proc.returncode != 0
    assert proc.stdout == b"", "stdout is the MCP channel: nothing but protocol may go there"
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "KEYSAFE_AGENT_TOKEN" in lines[0]
    assert "Traceback" not in lines[0]


def test_mcp_with_a_blank_agent_token_is_refused_like_a_missing_one(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "KEYSAFE_AGENT_TOKEN": "   ",
        "KEYSAFE_HOME": str(tmp_path / "home"),
    }
    proc = subprocess.run(
        [KEYSAFE, "mcp"], stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=30
    )
    assert proc.returncode != 0 and proc.stdout == b""
    assert "KEYSAFE_AGENT_TOKEN" in proc.stderr.decode()


def test_every_tool_with_a_wrong_agent_token_is_a_not_authenticated_tool_error(
    world: McpWorld, tmp_path: Path
) -> None:
    wrong = "ks_agent_" + "A" * 43
    with (
        open(tmp_path / "stderr.log", "w") as errlog,
        stdio_session(world.server.url, wrong, tmp_path, errlog) as s,
    ):
        calls = sample_calls(world.upstream.port)
        assert set(calls) == TOOL_NAMES
        before = len(world.upstream.requests)
        for tool, args in calls.items():
            err = refused(s.call(tool, args), "NOT_AUTHENTICATED")
            assert wrong not in err["message"], tool
        assert len(world.upstream.requests) == before
        assert not any(wrong in text for text in s.received)


def test_every_tool_with_the_vault_down_is_a_vault_unreachable_tool_error(
    world: McpWorld, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with (
        open(tmp_path / "stderr.log", "w") as errlog,
        stdio_session(closed, world.vault.bot_token, tmp_path, errlog) as s,
    ):
        for tool, args in sample_calls(world.upstream.port).items():
            err = refused(s.call(tool, args), "VAULT_UNREACHABLE")
            assert closed in err["message"], (tool, err)
            assert "tell the user" in err["next"], (tool, err)  # a model cannot start it
        # The process survives its vault being gone: the session still answers.
        assert len(s.list_tools().tools) == 12


def test_a_placeholder_as_agent_token_is_refused_at_start(world: McpWorld, tmp_path: Path) -> None:
    """A `ksp_…` placeholder stands for one credential's HTTP call through `keysafe proxy`; as
    KEYSAFE_AGENT_TOKEN it starts no MCP session at all, and the refusal says why without
    repeating the placeholder."""
    env = {
        "PATH": "/usr/bin:/bin",
        "KEYSAFE_URL": world.server.url,
        "KEYSAFE_AGENT_TOKEN": world.vault.placeholder,
        "KEYSAFE_HOME": str(tmp_path / "home"),
    }
    proc = subprocess.run(
        [KEYSAFE, "mcp"], stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=30
    )
    assert proc.returncode != 0 and proc.stdout == b""
    err = proc.stderr.decode()
    assert "placeholder" in err and "keysafe proxy" in err
    assert world.vault.placeholder not in err
