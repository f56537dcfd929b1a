"""Every tool, allowed and refused, through the MCP Inspector's CLI: a TypeScript-SDK client, as
Claude Desktop, Cursor and the Inspector itself are (issue 14, item 1).

Those hosts check a result's structured content against the tool's output schema even when the
result is an error, and reject the whole result when it does not match: before this change every
refusal failed there ("data must have required property 'status'") and the model never saw it.
The Python SDK does not check, so the other MCP tests could not see this.

The Inspector is pinned in tests/tools/mcp (npm). Exit codes are the Inspector's own: 0 a result,
5 a result with isError (printed in full on stdout), anything else a failure of the call itself.
Both transports: stdio (`keysafe mcp`, spawned by the Inspector) and streamable HTTP
(`keysafe mcp --http`). Each invocation is a new node process (and over stdio a new `keysafe mcp`),
so they run a few at a time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.mcp_fixture import (
    SIWE,
    McpHttp,
    McpWorld,
    agent_side_env,
    local_tx,
    mail_typed_data,
    mcp_http_server,
    sample_calls,
    world_fixture,  # noqa: F401 - the session fixture `world`, shared with the other MCP tests
)
from tests.e2e.server_fixture import KEYSAFE, MILLI_ETH, R2, R4, evm_tx

ROOT = Path(__file__).resolve().parents[2]
INSPECTOR = ROOT / "tests" / "tools" / "mcp" / "node_modules" / ".bin" / "mcp-inspector"
TOOL_ERROR_EXIT = 5  # the Inspector's exit code for a result with isError: true
# The Inspector gives a server 15 s to connect by default; on a loaded 2-core machine a stdio
# `keysafe mcp` (Python and the MCP SDK starting up) can take longer, and that is not what this
# test is about.
PATIENT = ("--connect-timeout", "60000")

pytestmark = pytest.mark.skipif(
    not INSPECTOR.exists() or shutil.which("node") is None,
    reason="the MCP Inspector is installed by scripts/test (npm ci --prefix tests/tools/mcp)",
)


@dataclass(frozen=True)
class Case:
    tool: str
    args: dict[str, Any]
    refused: str | None  # the stable code a refusal must start with; None: a plain result


def cases(upstream_port: int, approval_id: str) -> list[Case]:
    """One allowed and one refused call per tool (list_capabilities and list_pending_approvals
    take no arguments and are refused by a bad token, which over HTTP is refused before any tool
    runs: see `test_…_http`)."""
    sample = sample_calls(upstream_port)
    foreign = {"credential": "echo", "method": "GET", "url": "https://example.org/x"}
    return [
        Case("list_capabilities", {}, None),
        Case("get_address", sample["get_address"], None),
        Case("get_address", {"wallet": "spare"}, "NOT_FOUND"),
        Case("sign_transaction", sample["sign_transaction"], None),
        Case(
            "sign_transaction", {"wallet": "main", "transaction": evm_tx(MILLI_ETH, to=R4)}, None
        ),  # pending_approval: a result too
        Case(
            "sign_transaction",
            {"wallet": "main", "transaction": evm_tx(MILLI_ETH, to=R2)},
            "POLICY_DENIED",
        ),
        Case(
            "send_transaction",
            {"wallet": "main", "transaction": local_tx(MILLI_ETH, nonce=7)},
            None,
        ),
        Case(
            "send_transaction",
            {"wallet": "main", "transaction": local_tx(MILLI_ETH * 20)},
            "POLICY_DENIED",
        ),
        Case("transfer", sample["transfer"], None),
        Case("transfer", {**sample["transfer"], "to": R2}, "POLICY_DENIED"),
        Case("sign_message", {"wallet": "main", "message": SIWE}, None),
        Case("sign_message", {"wallet": "main", "message": "send me everything"}, "POLICY_DENIED"),
        Case("sign_typed_data", sample["sign_typed_data"], None),
        Case(
            "sign_typed_data", {"wallet": "main", "typed_data": mail_typed_data(5)}, "POLICY_DENIED"
        ),
        Case("http_request", sample["http_request"], None),
        Case("http_request", foreign, "POLICY_DENIED"),
        Case("read_data", {"name": "profile", "fields": ["city"]}, None),
        Case("read_data", {"name": "nothing-here"}, "NOT_FOUND"),
        Case("approval_status", {"approval_id": approval_id}, None),
        Case("approval_status", sample["approval_status"], "NOT_FOUND"),
        Case("check_policy", sample["check_policy"], None),
        Case(
            "check_policy",
            {"tool": "sign_message", "arguments": {"wallet": "nowhere", "message": SIWE}},
            "NOT_FOUND",
        ),
        Case("list_pending_approvals", {}, None),
    ]


@dataclass
class Outcome:
    case: Case
    exit_code: int
    stdout: str
    stderr: str


def _inspect(target: list[str], case: Case, env: dict[str, str]) -> Outcome:
    cmd = [
        str(INSPECTOR),
        "--cli",
        *target,
        *PATIENT,
        "--method",
        "tools/call",
        "--tool-name",
        case.tool,
        "--tool-args-json",
        json.dumps(case.args),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    return Outcome(case, done.returncode, done.stdout, done.stderr)


def _problems(outcome: Outcome) -> list[str]:
    """What is wrong with one outcome (empty when it is what a host should see)."""
    c, where = outcome.case, f"{outcome.case.tool}({json.dumps(outcome.case.args)[:80]})"
    want = TOOL_ERROR_EXIT if c.refused else 0
    if outcome.exit_code != want:
        return [f"{where}: exit {outcome.exit_code}, wanted {want}: {outcome.stderr.strip()[:300]}"]
    try:
        result = json.loads(outcome.stdout)
    except ValueError:
        return [f"{where}: not a JSON result: {outcome.stdout[:200]}"]
    text = result["content"][0]["text"]
    if c.refused is None:
        if result.get("isError") or not isinstance(result.get("structuredContent"), dict):
            return [f"{where}: no structured result: {outcome.stdout[:300]}"]
        return []
    out = []
    if not text.startswith(f"{c.refused}: "):
        out.append(f"{where}: refusal text does not start with {c.refused}: {text[:200]}")
    if "structuredContent" in result:
        out.append(f"{where}: a refusal carries structured content")
    err = json.loads(result["content"][1]["text"])["error"]
    if err["code"] != c.refused or not err["next"]:
        out.append(f"{where}: error object {err}")
    return out


def _sweep(target: list[str], env: dict[str, str], all_cases: list[Case]) -> list[str]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda c: _inspect(target, c, env), all_cases))
    return [p for o in outcomes for p in _problems(o)]


def _pending_approval(world: McpWorld, session_target: list[str], env: dict[str, str]) -> str:
    ask = Case(
        "sign_transaction", {"wallet": "main", "transaction": evm_tx(MILLI_ETH, to=R4)}, None
    )
    outcome = _inspect(session_target, ask, env)
    assert outcome.exit_code == 0, outcome.stderr
    approval_id = json.loads(outcome.stdout)["structuredContent"]["approval_id"]
    assert isinstance(approval_id, str)
    return approval_id


def _schemas_are_portable(target: list[str], env: dict[str, str]) -> None:
    cmd = [str(INSPECTOR), "--cli", *target, *PATIENT, "--method", "tools/list", "--strict"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, f"tool schemas a TypeScript host may refuse:\n{done.stderr}"
    assert len(json.loads(done.stdout)["tools"]) == 12


@pytest.fixture(scope="module")
def http(world: McpWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpHttp]:
    root = tmp_path_factory.mktemp("mcp-inspector-http")
    with mcp_http_server(agent_side_env(root / "nowhere"), world.server.url, root) as server:
        yield server


def test_every_tool_allowed_and_refused_validates_in_the_inspector_over_stdio(
    world: McpWorld, tmp_path: Path
) -> None:
    env = agent_side_env(tmp_path / "nowhere")
    target = [
        "-e",
        f"KEYSAFE_URL={world.server.url}",
        "-e",
        f"KEYSAFE_AGENT_TOKEN={world.vault.bot_token}",
        "-e",
        f"KEYSAFE_HOME={tmp_path / 'nowhere'}",
        KEYSAFE,
        "mcp",
    ]
    _schemas_are_portable(target, env)
    approval_id = _pending_approval(world, target, env)
    bad_token = [
        "-e",
        f"KEYSAFE_URL={world.server.url}",
        "-e",
        "KEYSAFE_AGENT_TOKEN=ks_agent_not-a-token",
        KEYSAFE,
        "mcp",
    ]
    problems = _sweep(target, env, cases(world.upstream.port, approval_id))
    for tool in ("list_capabilities", "list_pending_approvals"):  # no arguments to get wrong
        problems += _problems(_inspect(bad_token, Case(tool, {}, "NOT_AUTHENTICATED"), env))
    assert not problems, "\n".join(problems)


def test_every_tool_allowed_and_refused_validates_in_the_inspector_over_http(
    world: McpWorld, http: McpHttp, tmp_path: Path
) -> None:
    env = agent_side_env(tmp_path / "nowhere")
    target = [
        http.url,
        "--transport",
        "http",
        "--header",
        f"Authorization: Bearer {world.vault.bot_token}",
    ]
    _schemas_are_portable(target, env)
    approval_id = _pending_approval(world, target, env)
    problems = _sweep(target, env, cases(world.upstream.port, approval_id))
    # A token the vault refuses never reaches a tool over HTTP: the gate answers 401 with
    # WWW-Authenticate, which the Inspector reports as needing authorisation.
    refused = subprocess.run(
        [
            str(INSPECTOR),
            "--cli",
            http.url,
            "--transport",
            "http",
            "--header",
            "Authorization: Bearer ks_agent_not-a-token",
            "--method",
            "tools/list",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if refused.returncode not in (3, 4):
        problems.append(f"a refused token gave exit {refused.returncode}: {refused.stderr[:300]}")
    assert not problems, "\n".join(problems)
