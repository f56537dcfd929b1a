"""Black-box: `keysafe serve` under 8 concurrent agents signing against their budgets.

Eight agents (`c0`…`c7`), each with a 24h budget of 30 × (0.001 ETH + its 0.000021 ETH max
fee), sign 0.001 ETH transfers from two threads each for 8 seconds (longer, up to 25 s, until
every agent has met its budget), paced under the per-agent rate limit. Every answer must be 200
signed, 403 BUDGET_EXCEEDED or 429 (rate limit): no 5xx, no other error. Afterwards no agent has
spent more than its budget (exactly 30 signatures each, the ledger's live units within the limit,
no reservation left open), and the audit chain verifies (`keysafe audit verify --json`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from tests.conftest import Cli
from tests.e2e.server_fixture import (
    EVM_TX_FEE,
    MILLI_ETH,
    R1,
    add_agent,
    agent_headers,
    cli_env,
    copy_home,
    evm_tx,
    keysafe_server,
    standard_vault,
)

AGENTS = [f"c{i}" for i in range(8)]
THREADS_PER_AGENT = 2
DURATION_S = 8.0
HARD_STOP_S = 25.0
SIGNATURES = 30
PACE_S = 0.12  # per thread; two threads stay under the 20/s per-agent bucket
LIMIT_WEI = SIGNATURES * (MILLI_ETH + EVM_TX_FEE)  # each signature books value + max fee
BUDGET_POLICY = f"""\
version: 1
rules:
  - name: budget
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R1}"]
    max_per_tx: {{ETH: "0.01"}}
    limits:
      - {{window: 24h, max: {{ETH: "{Decimal(LIMIT_WEI) / 10**18}"}}}}
"""


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    signed: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _hammer(url: str, token: str, seed: int, start: float, tally: Tally) -> None:
    """Sign for DURATION_S, then on until the agent met its budget (at most HARD_STOP_S)."""
    nonce = seed
    with httpx.Client(base_url=url, timeout=30, headers=agent_headers(token)) as c:
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= HARD_STOP_S or (elapsed >= DURATION_S and tally.statuses["budget"]):
                break
            started = time.monotonic()
            body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH, nonce=nonce)}
            nonce += 1000
            try:
                r = c.post("/v1/agent/sign-transaction", json=body)
            except httpx.HTTPError as exc:
                with tally.lock:
                    tally.unexpected.append(f"transport error {exc!r}")
                continue
            code = r.json().get("error", {}).get("code") if r.status_code >= 400 else None
            with tally.lock:
                if r.status_code == 200 and r.json().get("status") == "signed":
                    tally.statuses["signed"] += 1
                    tally.signed.append(r.json()["signed_transaction"])
                elif r.status_code == 403 and code == "BUDGET_EXCEEDED":
                    tally.statuses["budget"] += 1
                elif r.status_code == 429:
                    tally.statuses["rate"] += 1
                else:
                    tally.unexpected.append(f"{r.status_code} {r.text[:300]}")
            time.sleep(max(0.0, PACE_S - (time.monotonic() - started)))


def _ledger(home: Path) -> list[tuple[str, str, int]]:
    with closing(sqlite3.connect(f"file:{home / 'vault.db'}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT agent, state, units FROM ledger").fetchall()
    return [(str(a), str(s), int(u)) for a, s, u in rows]


@pytest.mark.slow
def test_eight_concurrent_agents_signing_no_error_no_overspend_and_audit_verifies(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    vault = standard_vault(tmp_path_factory)
    home = copy_home(vault, tmp_path)
    cli = Cli(home, cli_env(home))
    policy = tmp_path / "budget.yaml"
    policy.write_text(BUDGET_POLICY, encoding="utf-8")
    tokens = {name: add_agent(cli, name, policy) for name in AGENTS}

    tallies = {name: Tally() for name in AGENTS}
    with keysafe_server(cli_env(home), "--unlock", log_dir=tmp_path) as server:
        start = time.monotonic()
        threads = [
            threading.Thread(
                target=_hammer,
                args=(server.url, tokens[name], i * 10 + k, start, tallies[name]),
                name=f"agent-{name}-{k}",
            )
            for i, name in enumerate(AGENTS)
            for k in range(THREADS_PER_AGENT)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=HARD_STOP_S + 60)
        assert not any(t.is_alive() for t in threads), "a client thread hung"

        with server.client() as c:
            for name in AGENTS:
                caps = c.get("/v1/agent/capabilities", headers=agent_headers(tokens[name]))
                assert caps.status_code == 200, caps.text
                (budget,) = caps.json()["budget"]
                assert budget["left"] == "0", (name, budget)
        log = server.log()

    problems = {n: t.unexpected[:5] for n, t in tallies.items() if t.unexpected}
    assert not problems, f"unexpected answers: {problems}\n--- server log ---\n{log[-4000:]}"
    assert "Traceback" not in log, log[-4000:]
    for name, tally in tallies.items():
        assert tally.statuses["signed"] == SIGNATURES, (name, tally.statuses)
        assert tally.statuses["budget"] > 0, (name, tally.statuses)
        signers = {Account.recover_transaction(raw) for raw in tally.signed}
        assert signers == {vault.address}

    rows = _ledger(home)
    for name in AGENTS:
        mine = [(state, units) for agent, state, units in rows if agent == name]
        live = sum(units for state, units in mine if state in ("reserved", "committed"))
        assert live <= LIMIT_WEI, (name, live)
        assert live == LIMIT_WEI
        assert not [s for s, _ in mine if s == "reserved"], f"{name} has an open reservation"
        assert sum(1 for s, _ in mine if s == "committed") == SIGNATURES

    verified = json.loads(cli.ok("audit", "verify", "--json").stdout)
    assert verified["ok"] is True, verified
    assert verified["first_bad_seq"] is None
