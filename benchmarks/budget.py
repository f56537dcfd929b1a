"""Budget reserve + commit on SQLite (WAL, synchronous=FULL), with keysafe's own store and ledger
functions on a throwaway copy of the benchmark vault, beside a bare SQLite insert + commit.

keysafe's flow writes the reservation in the decision's transaction and commits it in a second
one after signing (store/ledger.py `reserve`, then `settle`), so one reserve+commit here is two
`Database.write()` transactions. The baseline is one `INSERT` + `COMMIT` through the stdlib's
sqlite3 on a file with the same pragmas; a second baseline, two such transactions, separates the
cost of keysafe's two-step shape from the cost of its layers.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import common


def _bare(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, request_id TEXT, agent TEXT,"
        " rule TEXT, asset TEXT, units TEXT, state TEXT, at REAL)"
    )
    return conn


def measure(vault_copy: common.BenchVault, *, iterations: int) -> dict[str, Any]:
    from keysafe.store import ledger
    from keysafe.store.db import Database

    db = Database.open_sqlite(vault_copy.home / "vault.db", create=False)
    bare = _bare(vault_copy.home.parent / "bare-baseline.db")
    agent = common.agent_name(0)
    now = datetime.now(UTC)

    def keysafe_reserve_commit() -> None:
        rid = common.new_request_id()
        with db.write() as conn:
            ledger.reserve(
                conn, agent=agent, request_id=rid, charges=[(common.SOL_RULE, "SOL", 1000)], at=now
            )
        with db.write() as conn:
            assert ledger.settle(conn, agent, rid, state="committed") == 1

    def bare_insert(commits: int) -> None:
        rid = common.new_request_id()
        for _ in range(commits):
            bare.execute("BEGIN IMMEDIATE")
            bare.execute(
                "INSERT INTO ledger (request_id, agent, rule, asset, units, state, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rid, agent, common.SOL_RULE, "SOL", "1000", "reserved", now.timestamp()),
            )
            bare.execute("COMMIT")

    samples: dict[str, list[float]] = {"keysafe": [], "bare_1_commit": [], "bare_2_commits": []}
    try:
        for fn in (keysafe_reserve_commit, lambda: bare_insert(1), lambda: bare_insert(2)):
            for _ in range(5):
                fn()  # warm
        rounds = 5
        per_round = max(1, iterations // rounds)
        for _ in range(rounds):
            samples["keysafe"] += common.time_calls(
                keysafe_reserve_commit, seconds=0, min_calls=per_round
            )
            samples["bare_1_commit"] += common.time_calls(
                lambda: bare_insert(1), seconds=0, min_calls=per_round
            )
            samples["bare_2_commits"] += common.time_calls(
                lambda: bare_insert(2), seconds=0, min_calls=per_round
            )
    finally:
        db.close()
        bare.close()
    out = {k: common.summary(v) for k, v in samples.items()}
    ratio = out["keysafe"]["p50_ms"] / out["bare_1_commit"]["p50_ms"]
    return {
        "figure": "budget reserve+commit (store/ledger.py, 2 transactions) vs bare insert+commit",
        "timings": out,
        "ratio": ratio,
        "ratio_vs_two_bare_commits": out["keysafe"]["p50_ms"] / out["bare_2_commits"]["p50_ms"],
        "target": None,
    }
