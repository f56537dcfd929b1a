"""Restoring a backup into the live vault must not roll back what was spent or used (issue 13,
hole 9). Reproduced before: against a 0.002 ETH / 24 h window the same budget was spent twice,
an idempotency key signed two different transactions, and `audit verify` still passed."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import Cli
from tests.e2e.server_fixture import (
    R3,
    agent_headers,
    cli_env,
    error_of,
    evm_tx,
    keysafe_server,
)

MILLI = 10**15


def _sign(url: str, token: str, value: int, key: str, nonce: int) -> httpx.Response:
    body = {
        "wallet": "main",
        "transaction": evm_tx(value, to=R3, nonce=nonce),
        "idempotency_key": key,
    }
    return httpx.post(
        f"{url}/v1/agent/sign-transaction", json=body, headers=agent_headers(token), timeout=30
    )


def test_attack_restore_does_not_bring_back_spent_budget_or_used_keys(
    standard_home: tuple[Path, str], tmp_path: Path
) -> None:
    path, token = standard_home
    env = cli_env(path)
    cli = Cli(path, env)
    backup = tmp_path / "before.ksbackup"
    cli.ok("backup", "create", str(backup), "--json")  # taken before anything was spent
    with keysafe_server(env, "--unlock", log_dir=tmp_path) as server:
        first = _sign(server.url, token, 15 * MILLI // 10, "k1", 0)
        assert first.status_code == 200, first.text
        again = _sign(server.url, token, 15 * MILLI // 10, "k2", 1)
        assert error_of(again)["code"] == "BUDGET_EXCEEDED"
    cli.ok("backup", "restore", str(backup), "--yes", "--json")
    with keysafe_server(env, "--unlock", log_dir=tmp_path) as server:
        after = _sign(server.url, token, 15 * MILLI // 10, "k3", 2)
        assert after.status_code == 403 and error_of(after)["code"] == "BUDGET_EXCEEDED", after.text
        # The key that signed before the restore still answers with that one signature…
        replay = _sign(server.url, token, 15 * MILLI // 10, "k1", 0)
        assert replay.status_code == 200 and replay.json() == first.json()
        # …and never signs other bytes.
        other = _sign(server.url, token, MILLI // 10, "k1", 5)
        assert error_of(other)["code"] == "IDEMPOTENCY_CONFLICT"
    assert json.loads(cli.ok("audit", "verify", "--json").stdout)["ok"] is True
