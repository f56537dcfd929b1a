"""Gated Solana signing on PostgreSQL, with one `keysafe serve` and with two on one database,
beside the same load on SQLite with one server (the default store) in the same run.

A throwaway PostgreSQL cluster is started for the figure (tests/pg.py, Debian's binaries) with
PostgreSQL's durable defaults (fsync on, synchronous_commit on), so each commit waits for its WAL
flush as SQLite's synchronous=FULL waits for its fsync. The vault is built once in each store
(default Argon2id cost, the benchmark policy: every signature is decided, reserved, committed and
audited). Load: `agents` agents, closed loop, one keep-alive connection each; with two servers
half the agents talk to each, both loads running at once, and the throughputs add. The three
sides alternate in `rounds` rounds so a passing disturbance does not land on one side only. After
the load the PostgreSQL vault's audit chain is verified (both servers appended to it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.pg import pg_bin, postgres_cluster

from benchmarks import common, http_signing

SIGNED = http_signing.SIGNED


class PostgresMissing(RuntimeError):
    """PostgreSQL's server binaries are not installed: the figure is skipped, saying so."""


def _load_split(
    servers: list[common.Served],
    vault: common.BenchVault,
    agents: int,
    pool: list[str],
    *,
    warmup: float,
    duration: float,
) -> common.LoadResult:
    """`agents` agents split over `servers`, loaded at the same time; one result for all."""
    results: list[common.LoadResult] = []
    lock = threading.Lock()

    def run(server: common.Served, first: int, count: int) -> None:
        every = http_signing.factories("solana", vault, server.port, agents, pool)
        out = common.run_load(
            server.port,
            every[first : first + count],
            ok_marker=SIGNED,
            warmup=warmup,
            duration=duration,
        )
        with lock:
            results.append(out)

    share = agents // len(servers)
    threads = [
        threading.Thread(target=run, args=(server, i * share, share))
        for i, server in enumerate(servers)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    merged = common.merge(results)
    # Side by side, not one after another: the throughputs add, over the shared window.
    merged.throughput = sum(r.throughput for r in results)
    merged.agents = agents
    return merged


def measure(
    work: Path, *, agents: int, warmup: float, duration: float, rounds: int
) -> dict[str, Any]:
    """The three sides (SQLite one server, PostgreSQL one server, PostgreSQL two servers)."""
    if pg_bin() is None:
        raise PostgresMissing("PostgreSQL's server binaries are not installed (apt postgresql)")
    sqlite_vault = common.build_vault(work / "pg-bench-sqlite", agents=agents)
    with postgres_cluster(durable=True) as cluster, ExitStack() as stack:
        url = cluster.new_database("keysafe_bench")
        pg_vault = common.build_vault(work / "pg-bench-owner", agents=agents, database_url=url)
        lite = stack.enter_context(common.serve(sqlite_vault.home))
        a = stack.enter_context(common.serve(work / "pg-bench-a", database_url=url))
        b = stack.enter_context(common.serve(work / "pg-bench-b", database_url=url))
        pool_lite = common.solana_transfers(sqlite_vault.sol_address, 32)
        pool_pg = common.solana_transfers(pg_vault.sol_address, 32)
        sides: dict[str, Callable[[], common.LoadResult]] = {
            "sqlite_one": lambda: _load_split(
                [lite], sqlite_vault, agents, pool_lite, warmup=warmup, duration=duration / rounds
            ),
            "postgresql_one": lambda: _load_split(
                [a], pg_vault, agents, pool_pg, warmup=warmup, duration=duration / rounds
            ),
            "postgresql_two": lambda: _load_split(
                [a, b], pg_vault, agents, pool_pg, warmup=warmup, duration=duration / rounds
            ),
        }
        runs: dict[str, list[common.LoadResult]] = {k: [] for k in sides}
        for _ in range(rounds):
            for key, side in sides.items():
                runs[key].append(side())
        report = common.verify_audit(work / "pg-bench-owner", database_url=url)
    merged = {k: common.merge(v) for k, v in runs.items()}
    for key, out in runs.items():
        merged[key].throughput = sum(r.throughput for r in out) / len(out)
    base = merged["sqlite_one"].throughput
    errors = sum(r.errors for r in merged.values())
    return {
        "figure": "gated Solana sign on PostgreSQL (one and two servers) vs SQLite (one server)",
        "agents": agents,
        "sides": {k: r.to_dict() for k, r in merged.items()},
        "ratio_one": merged["postgresql_one"].throughput / base,
        "ratio_two": merged["postgresql_two"].throughput / base,
        "two_vs_one": merged["postgresql_two"].throughput / merged["postgresql_one"].throughput,
        "errors": errors,
        "audit_after": report,
    }
