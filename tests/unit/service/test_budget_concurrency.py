"""Budgets, in process: authorize reserves in the deciding transaction, settle commits or releases,
idempotency keys replay, and 50 concurrent requests (threads, then processes) never overspend.

Every test runs on both stores (the `database_url` fixture): SQLite, where BEGIN IMMEDIATE
serialises the writers, and PostgreSQL, where the vault row lock does (store/db.py)."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IdempotencyConflictError, MalformedRequestError, RequestInProgressError
from keysafe.policy.intent import Intent
from keysafe.service import agents, audit, policies
from keysafe.service import registry as asset_registry
from keysafe.service.context import open_database, open_vault
from keysafe.service.vault_admin import init_vault, parse_phrase
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF, ManualClock
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault
from tests.unit.service.gate_support import authorize, settle

PASSPHRASE = b"correct horse battery staple"
MONDAY_9AM = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
RECIPIENT = "0x1111111111111111111111111111111111111111"
WEI = 10**18
LIMIT_UNITS = 5 * WEI // 100  # 0.05 ETH
STEP_UNITS = 4 * WEI // 1000  # 0.004 ETH
AGENT = "bot"

# The 24h amount window is the only limit that can bind: no count limit, per-tx cap and
# approval threshold above the request size.
BUDGET_POLICY = f"""\
version: 1
rules:
  - name: eth-budget
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
    assets: [ETH]
    recipients: ["{RECIPIENT}"]
    max_per_tx: {{ETH: "0.01"}}
    limits:
      - {{window: 24h, max: {{ETH: "0.05"}}}}
    approve_above: {{ETH: "0.005"}}
"""

# Here the 1h count window binds first (10 actions × 0.001 ETH is far below the amount limit).
COUNT_POLICY = f"""\
version: 1
rules:
  - name: eth-count
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
    assets: [ETH]
    recipients: ["{RECIPIENT}"]
    limits:
      - {{window: 24h, max: {{ETH: "1"}}}}
      - {{window: 1h, max_count: 10}}
"""


def transfer(amount: str, to: str = RECIPIENT) -> Intent:
    return Intent(
        action="evm.transfer", chain="base", wallet="main", asset="ETH", amount=amount, to=to
    )


@dataclass
class Made:
    home: Home
    vault: Vault
    phrase: str  # so racing workers open their own unlocked handles, as other processes would


def _make(tmp_path: Path, policy: str, database_url: str | None) -> Made:
    home = Home(tmp_path / "h", database_url)
    vault, phrase = init_vault(
        home, SecretBytes(PASSPHRASE), kdf=CHEAP_KDF, clock=ManualClock(MONDAY_9AM)
    )
    words = bytes(phrase.reveal()).decode()
    phrase.wipe()
    _, token = agents.add_agent(vault, AGENT)
    if token is not None:
        token.wipe()
    policies.set_policy(vault, AGENT, policy)
    return Made(home, vault, words)


def _unlocked(home: Home, words: str) -> Vault:
    """Another handle on the vault, unlocked: the gate checks the owner's seals with the key.
    The recovery phrase is used rather than the passphrase, whose attempts are throttled."""
    v = open_vault(home, clock=ManualClock(MONDAY_9AM))
    with parse_phrase(SecretBytes(bytearray(words.encode()))) as entropy:
        v.unlock_with_phrase(entropy)
    return v


@pytest.fixture
def made(tmp_path: Path, database_url: str | None) -> Iterator[Made]:
    m = _make(tmp_path, BUDGET_POLICY, database_url)
    yield m
    m.vault.lock()
    m.vault.db.close()


def ledger_rows(home: Home) -> list[tuple[str, str, str, int, str]]:
    """(request_id, rule, asset, units, state) for every ledger row, read from the store."""
    db = open_database(home, create=False)
    try:
        with db.read() as conn:
            rows = conn.execute(
                select(
                    t.ledger.c.request_id,
                    t.ledger.c.rule,
                    t.ledger.c.asset,
                    t.ledger.c.units,
                    t.ledger.c.state,
                ).order_by(t.ledger.c.id)
            ).all()
    finally:
        db.close()
    return [(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows]


def live_units(home: Home) -> int:
    return sum(r[3] for r in ledger_rows(home) if r[4] in ("reserved", "committed"))


def fill_budget(vault: Vault) -> list[str]:
    """Spend the whole 24h budget in 0.004 ETH steps; returns the request ids allowed."""
    ids = []
    for _ in range(12):
        auth = authorize(vault, AGENT, transfer("0.004"))
        assert auth.decision.outcome == "allow", auth.decision.reason
        ids.append(auth.request_id)
    return ids


# -- one symbol, two assets ---------------------------------------------------------------------

USDC18 = "0x" + "18" * 20
USDC_POLICY = """\
version: 1
rules:
  - name: usdc-both-chains
    allow: [evm.transfer]
    wallets: [main]
    chains: [base, local]
    assets: [USDC]
    limits:
      - {window: 24h, max: {USDC: "10"}}
"""


def usdc(amount: str, chain: str) -> Intent:
    return Intent(
        action="evm.transfer",
        chain=chain,
        wallet="main",
        asset="USDC",
        amount=amount,
        to=RECIPIENT,
    )


def test_authorize_same_symbol_other_decimals_shares_the_window_in_token_units(
    tmp_path: Path, database_url: str | None
) -> None:
    m = _make(tmp_path, USDC_POLICY, database_url)
    try:
        asset_registry.add_asset(m.vault, "USDC", chain="local", address=USDC18, decimals=18)
        assert authorize(m.vault, AGENT, usdc("6", "base")).decision.outcome == "allow"
        over = authorize(m.vault, AGENT, usdc("4.000000000000000001", "local")).decision
        assert (over.outcome, over.code) == ("deny", "BUDGET_EXCEEDED"), over.reason
        assert "4 USDC left" in over.reason
        fits = authorize(m.vault, AGENT, usdc("4", "local")).decision
        assert fits.outcome == "allow", fits.reason
        # rows keep each asset's own base units under its identity, never added up raw
        assert [(r[2], r[3]) for r in ledger_rows(m.home)] == [
            ("base:0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", 6 * 10**6),
            (f"local:{USDC18}", 4 * 10**18),
        ]
        last = policies.check(m.vault, AGENT, usdc("0.000001", "base"))
        assert (last.outcome, last.code) == ("deny", "BUDGET_EXCEEDED")
    finally:
        m.vault.lock()
        m.vault.db.close()


# -- authorize / settle ------------------------------------------------------------------------


def test_authorize_allowed_reserves_the_amount_in_the_ledger(made: Made) -> None:
    auth = authorize(made.vault, AGENT, transfer("0.004"))
    assert auth.decision.outcome == "allow"
    assert auth.replayed is False
    assert len(auth.request_id) == 32
    assert ledger_rows(made.home) == [
        (auth.request_id, "eth-budget", "base:native", STEP_UNITS, "reserved")
    ]


def test_authorize_reservation_counts_against_the_window_before_settle(made: Made) -> None:
    authorize(made.vault, AGENT, transfer("0.004"))
    d = policies.check(made.vault, AGENT, transfer("0.004"))
    (window,) = d.windows
    assert Decimal(window.used) == Decimal("0.004")
    assert Decimal(window.left) == Decimal("0.046")


def test_settle_success_commits_the_reservation(made: Made) -> None:
    auth = authorize(made.vault, AGENT, transfer("0.004"))
    assert settle(made.vault, AGENT, auth.request_id, success=True) == 1
    assert [r[4] for r in ledger_rows(made.home)] == ["committed"]
    assert live_units(made.home) == STEP_UNITS


def test_settle_twice_changes_nothing_the_second_time(made: Made) -> None:
    auth = authorize(made.vault, AGENT, transfer("0.004"))
    assert settle(made.vault, AGENT, auth.request_id, success=True) == 1
    assert settle(made.vault, AGENT, auth.request_id, success=False) == 0
    assert [r[4] for r in ledger_rows(made.home)] == ["committed"]


def test_settle_unknown_request_id_changes_nothing(made: Made) -> None:
    assert settle(made.vault, AGENT, "0" * 32, success=True) == 0


def test_settle_failure_releases_and_frees_the_budget(made: Made) -> None:
    ids = fill_budget(made.vault)
    over = authorize(made.vault, AGENT, transfer("0.004"))
    assert (over.decision.outcome, over.decision.code) == ("deny", "BUDGET_EXCEEDED")
    assert live_units(made.home) == 12 * STEP_UNITS

    assert settle(made.vault, AGENT, ids[0], success=False) == 1
    assert live_units(made.home) == 11 * STEP_UNITS
    again = authorize(made.vault, AGENT, transfer("0.004"))
    assert again.decision.outcome == "allow"


def test_settle_commit_keeps_the_budget_spent(made: Made) -> None:
    ids = fill_budget(made.vault)
    for rid in ids:
        settle(made.vault, AGENT, rid, success=True)
    d = authorize(made.vault, AGENT, transfer("0.003")).decision
    assert (d.outcome, d.code) == ("deny", "BUDGET_EXCEEDED")
    # 0.002 fits exactly under the limit: 0.048 + 0.002 == 0.05 is allowed.
    assert authorize(made.vault, AGENT, transfer("0.002")).decision.outcome == "allow"


def test_settle_is_audited(made: Made) -> None:
    a = authorize(made.vault, AGENT, transfer("0.004"))
    b = authorize(made.vault, AGENT, transfer("0.004"))
    settle(made.vault, AGENT, a.request_id, success=True)
    settle(made.vault, AGENT, b.request_id, success=False)
    tail = audit.list_entries(made.vault)[-2:]
    # One outcome entry per request: success commits the spend, failure releases it.
    assert [(e.action, e.outcome) for e in tail] == [
        ("test.act", "success"),
        ("test.act", "failure"),
    ]
    assert [e.details["request_id"] for e in tail] == [a.request_id, b.request_id]


def test_settle_by_another_agent_changes_nothing(made: Made) -> None:
    agents.add_agent(made.vault, "other")
    auth = authorize(made.vault, AGENT, transfer("0.004"))
    assert settle(made.vault, "other", auth.request_id, success=False) == 0
    assert [r[4] for r in ledger_rows(made.home)] == ["reserved"]


@pytest.mark.parametrize(
    "intent,outcome,code",
    [
        pytest.param(transfer("0.006"), "ask", "APPROVAL_REQUIRED", id="ask-above-threshold"),
        pytest.param(transfer("0.02"), "deny", "OVER_PER_TX_LIMIT", id="deny-over-per-tx"),
        pytest.param(
            transfer("0.001", to="0x" + "3" * 40), "deny", "NO_MATCHING_RULE", id="deny-recipient"
        ),
        pytest.param(
            Intent(action="evm.transfer", chain="base", asset="NOPE", amount="1", to=RECIPIENT),
            "deny",
            "UNKNOWN_ASSET",
            id="deny-unknown-asset",
        ),
    ],
)
def test_authorize_ask_or_deny_reserves_nothing(
    made: Made, intent: Intent, outcome: str, code: str
) -> None:
    authorize(made.vault, AGENT, transfer("0.001"))
    before = ledger_rows(made.home)
    auth = authorize(made.vault, AGENT, intent)
    assert (auth.decision.outcome, auth.decision.code) == (outcome, code)
    assert ledger_rows(made.home) == before


def test_authorize_budget_exceeded_reserves_nothing(made: Made) -> None:
    fill_budget(made.vault)
    before = ledger_rows(made.home)
    auth = authorize(made.vault, AGENT, transfer("0.004"))
    assert auth.decision.code == "BUDGET_EXCEEDED"
    assert ledger_rows(made.home) == before


def test_authorize_at_exactly_the_limit_allowed_one_unit_over_denied(made: Made) -> None:
    for _ in range(5):
        assert authorize(made.vault, AGENT, transfer("0.01")).decision.outcome == "ask"
    # approve_above turns 0.01 into an ask; use allowed steps to reach exactly 0.05.
    for _ in range(10):
        assert authorize(made.vault, AGENT, transfer("0.005")).decision.outcome == "allow"
    assert live_units(made.home) == LIMIT_UNITS
    d = authorize(made.vault, AGENT, transfer("0.000000000000000001")).decision
    assert d.code == "BUDGET_EXCEEDED"


def test_check_is_a_dry_run_and_reserves_nothing(made: Made) -> None:
    for _ in range(20):
        assert policies.check(made.vault, AGENT, transfer("0.004")).outcome == "allow"
    assert ledger_rows(made.home) == []


def test_authorize_intent_time_in_the_future_cannot_escape_the_budget(made: Made) -> None:
    fill_budget(made.vault)
    before = ledger_rows(made.home)
    later = Intent(
        action="evm.transfer",
        chain="base",
        asset="ETH",
        amount="0.004",
        to=RECIPIENT,
        time=MONDAY_9AM + timedelta(days=2),
    )
    with pytest.raises(MalformedRequestError, match="cannot carry its own 'time'"):
        authorize(made.vault, AGENT, later)
    assert live_units(made.home) <= LIMIT_UNITS
    assert ledger_rows(made.home) == before


# -- idempotency -------------------------------------------------------------------------------


def test_idempotency_same_key_same_intent_replays_first_result(made: Made) -> None:
    first = authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="k-1")
    settle(made.vault, AGENT, first.request_id, success=True)
    second = authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="k-1")
    assert first.replayed is False
    assert second.replayed is True
    assert second.request_id == first.request_id
    assert len(ledger_rows(made.home)) == 1


def test_idempotency_same_key_while_first_in_flight_says_in_progress(made: Made) -> None:
    first = authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="k-1")
    with pytest.raises(RequestInProgressError, match="same idempotency key"):
        authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="k-1")
    settle(made.vault, AGENT, first.request_id, success=True)
    assert authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="k-1").replayed


def test_idempotency_failed_request_frees_its_key(made: Made) -> None:
    first = authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="k-1")
    settle(made.vault, AGENT, first.request_id, success=False)
    again = authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="k-1")
    assert (again.replayed, again.decision.outcome) == (False, "allow")
    assert again.request_id != first.request_id


def test_idempotency_replay_after_budget_filled_returns_original_allow(made: Made) -> None:
    first = authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="early")
    settle(made.vault, AGENT, first.request_id, success=True)
    for _ in range(11):
        authorize(made.vault, AGENT, transfer("0.004"))
    again = authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="early")
    assert again.replayed
    assert again.request_id == first.request_id
    assert live_units(made.home) == 12 * STEP_UNITS


def test_idempotency_denied_request_keeps_its_key_free_and_reserves_nothing(made: Made) -> None:
    first = authorize(made.vault, AGENT, transfer("0.02"), idempotency_key="d")
    again = authorize(made.vault, AGENT, transfer("0.02"), idempotency_key="d")
    assert first.decision.code == again.decision.code == "OVER_PER_TX_LIMIT"
    assert not again.replayed  # decided again: the owner may have raised the cap meanwhile
    assert ledger_rows(made.home) == []


def test_idempotency_same_key_different_intent_conflict(made: Made) -> None:
    authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="k-1")
    with pytest.raises(IdempotencyConflictError):
        authorize(made.vault, AGENT, transfer("0.003"), idempotency_key="k-1")
    assert len(ledger_rows(made.home)) == 1


def test_idempotency_different_keys_reserve_twice(made: Made) -> None:
    a = authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="a")
    b = authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="b")
    assert a.request_id != b.request_id
    assert live_units(made.home) == 2 * STEP_UNITS


def test_idempotency_keys_are_per_agent(made: Made) -> None:
    agents.add_agent(made.vault, "other")
    policies.set_policy(made.vault, "other", BUDGET_POLICY)
    a = authorize(made.vault, AGENT, transfer("0.004"), idempotency_key="same")
    b = authorize(made.vault, "other", transfer("0.003"), idempotency_key="same")
    assert (a.replayed, b.replayed) == (False, False)
    assert a.request_id != b.request_id


def test_idempotency_concurrent_same_key_reserves_once(made: Made) -> None:
    results: list[Any] = []
    refused: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        with _unlocked(made.home, made.phrase) as v:
            barrier.wait()
            try:
                results.append(authorize(v, AGENT, transfer("0.004"), idempotency_key="k"))
            except RequestInProgressError as exc:
                refused.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 1 and len(refused) == 7
    assert live_units(made.home) == STEP_UNITS


# -- concurrency: 50 requests that together exceed the limit -----------------------------------


def _chain_intact(home: Home, words: str) -> bool:
    """The hash chain and the owner's seals: the racing workers decide unlocked."""
    with _unlocked(home, words) as v:
        report = audit.verify(v)
        return report.ok and report.keyed


def _concurrent_threads(
    home: Home, words: str, n: int, amount: str
) -> list[tuple[str, str | None]]:
    barrier = threading.Barrier(n)
    results: list[tuple[str, str | None]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            with _unlocked(home, words) as v:
                barrier.wait(timeout=60)
                d = authorize(v, AGENT, transfer(amount)).decision
            with lock:
                results.append((d.outcome, d.code))
        except BaseException as exc:  # reported below, so a thread failure fails the test
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    assert len(results) == n
    return results


def test_concurrent_50_threads_over_the_24h_limit_never_overspend(made: Made) -> None:
    results = _concurrent_threads(made.home, made.phrase, 50, "0.004")
    counts = Counter(results)
    assert counts[("allow", None)] == 12, counts
    assert counts[("deny", "BUDGET_EXCEEDED")] == 38, counts
    assert live_units(made.home) == 12 * STEP_UNITS <= LIMIT_UNITS
    assert len(ledger_rows(made.home)) == 12
    assert _chain_intact(made.home, made.phrase)


def test_concurrent_50_threads_over_the_1h_count_limit_exactly_10_allowed(
    tmp_path: Path, database_url: str | None
) -> None:
    m = _make(tmp_path, COUNT_POLICY, database_url)
    try:
        results = _concurrent_threads(m.home, m.phrase, 50, "0.001")
        counts = Counter(results)
        assert counts[("allow", None)] == 10, counts
        assert counts[("deny", "COUNT_LIMIT_EXCEEDED")] == 40, counts
        assert len(ledger_rows(m.home)) == 10
        assert _chain_intact(m.home, m.phrase)
    finally:
        m.vault.lock()
        m.vault.db.close()


def _process_worker(
    home: Home, words: str, n: int, barrier: Any, out: Any
) -> None:  # pragma: no cover - runs in a spawned child
    try:
        with _unlocked(home, words) as v:
            barrier.wait(timeout=120)
            for _ in range(n):
                d = authorize(v, AGENT, transfer("0.004")).decision
                out.put((d.outcome, d.code))
    except BaseException as exc:
        out.put(("error", repr(exc)))


@pytest.mark.slow
# SQLite only: on PostgreSQL, processes sharing one database are the two real servers of
# tests/e2e/test_two_servers_postgresql.py (this one costs 25 s there for nothing more).
@pytest.mark.parametrize("database_url", [None], ids=["sqlite"])
def test_concurrent_10_processes_x5_over_the_24h_limit_never_overspend(made: Made) -> None:
    ctx = multiprocessing.get_context("spawn")
    n_proc, per_proc = 10, 5
    barrier = ctx.Barrier(n_proc)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(made.home, made.phrase, per_proc, barrier, out))
        for _ in range(n_proc)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=180) for _ in range(n_proc * per_proc)]
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    counts = Counter(results)
    assert not [r for r in results if r[0] == "error"], results
    assert counts[("allow", None)] == 12, counts
    assert counts[("deny", "BUDGET_EXCEEDED")] == 38, counts
    assert live_units(made.home) == 12 * STEP_UNITS <= LIMIT_UNITS
    assert _chain_intact(made.home, made.phrase)
    decisions = [e for e in audit.list_entries(made.vault) if e.action == "decide.evm.transfer"]
    assert len(decisions) == n_proc * per_proc
