"""Black-box fuzzing of `keysafe serve` with schemathesis 4.x against its own /openapi.json.

Two bounded runs of the schemathesis CLI (a subprocess, like a user would run it), each against
its own unlocked server: one with an agent's bearer token over every operation, one with the
owner's session over the owner routes (minus logout, lock and agent actions, which would end the
session or the agent under test). Checks: no 5xx (`not_a_server_error`) and every documented
response matches its schema (`response_schema_conformance`). The wallet name is pinned to the
vault's wallet so generated requests reach decoding and the policy, not only "no such wallet".
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server_fixture import (
    Server,
    agent_headers,
    cli_env,
    copy_home,
    keysafe_server,
    standard_vault,
)

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = "not_a_server_error,response_schema_conformance"
CONFIG = """\
[parameters]
"path.wallet" = "main"
"body.wallet" = "main"
"""


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Server]:
    home = copy_home(standard_vault(tmp_path_factory), tmp_path)
    with keysafe_server(cli_env(home), "--unlock", log_dir=tmp_path) as running:
        yield running


def _run(
    server: Server, tmp_path: Path, header: str, *extra: str, max_time: int
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    args = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        CHECKS,
        "--header",
        header,
        "--max-examples",
        "30",
        "--max-time",
        str(max_time),
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--seed",
        "20261123",
        "--no-shrink",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-junit-path",
        str(tmp_path / "junit.xml"),
        *extra,
    ]
    return subprocess.run(
        args, capture_output=True, text=True, timeout=150, cwd=tmp_path, check=False
    )


def _failures(proc: subprocess.CompletedProcess[str], server: Server) -> str:
    return (
        f"schemathesis exit {proc.returncode}\n{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}\n"
        f"--- server log ---\n{server.log()[-4000:]}"
    )


@pytest.mark.slow
def test_schemathesis_agent_token_all_operations_no_5xx_and_responses_match_schema(
    server: Server, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    token = standard_vault(tmp_path_factory).tokens["bot"]
    header = "Authorization: " + agent_headers(token)["authorization"]
    # Under the per-agent bucket (20/s), so the fuzzing reaches the handlers, not the 429.
    proc = _run(server, tmp_path, header, "--rate-limit", "15/s", max_time=35)
    assert proc.returncode == 0, _failures(proc, server)
    assert re.search(r"\d+ generated, \d+ passed", proc.stdout), proc.stdout[-2000:]
    assert token not in server.log()


@pytest.mark.slow
def test_schemathesis_owner_session_owner_routes_no_5xx_and_responses_match_schema(
    server: Server, tmp_path: Path
) -> None:
    session = server.login()
    proc = _run(
        server,
        tmp_path,
        f"Authorization: Bearer {session}",
        "--include-path-regex",
        "^/v1/owner/",
        "--exclude-path-regex",
        "^/v1/owner/(login|logout|lock|agents/\\{name\\}/\\{action\\})$",
        max_time=25,
    )
    assert proc.returncode == 0, _failures(proc, server)
    assert re.search(r"\d+ generated, \d+ passed", proc.stdout), proc.stdout[-2000:]


def test_openapi_documents_400_malformed_request_instead_of_422(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    home = copy_home(standard_vault(tmp_path_factory), tmp_path)
    with keysafe_server(cli_env(home), log_dir=tmp_path) as running, running.client() as c:
        spec = c.get("/openapi.json").json()
    responses = spec["paths"]["/v1/agent/sign-transaction"]["post"]["responses"]
    assert "422" not in responses
    assert "400" in responses
