"""keysafe's benchmark harness: every figure beside its baseline, in one run, on throwaway vaults.

    .venv/bin/python benchmarks/run.py                  # full run (10-20 min on 2 cores):
                                                          results.json + RESULTS.md
    .venv/bin/python benchmarks/run.py --quick          # smoke (~1-2 min): results.json only
    .venv/bin/python benchmarks/run.py --only history   # one figure (or a comma list),
                                                          full settings

Prints a table (figure, value, baseline, ratio, target, met) and writes the JSON to
benchmarks/results.json (--out to change). A full run also rewrites benchmarks/RESULTS.md with
the machine, the date, the table, the reason and plan for each missed target, and the profile
of the hot path. Ratios are what the targets are about: both sides run on the same machine in
the same run, so they compare across machines where absolute numbers do not.

Figures (modules in benchmarks/): http_signing (sign_transaction over HTTP at 1/8/32 agents vs
whoami and raw signing, whoami vs a bare ASGI endpoint on the same uvicorn, server RSS), decision,
budget, dkls_signing, proxy (and proxy_stream: first SSE event through the proxy vs direct),
mcp_overhead, unlock, history (audit verify of 100k entries, startup, and 8-agent signing throughput
with 100k prior signatures inside the agents' 24h window), postgresql (gated signing on PostgreSQL
with one and with two servers on one database / SQLite with one), frost_signing, wrk
(side_by_side.py: keysafe's gated sign and no-op under wrk, as it is compared with another signer),
hot_path (the profile of one gated sign, on a fresh vault and on the one with the 100k-signature
past). A run with --only writes results.json (to --out) but never RESULTS.md: the report is always
one full run's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402 - after the path is set, when run as a script
    budget,
    common,
    decision,
    dkls_signing,
    frost_signing,
    history,
    hot_path,
    http_signing,
    mcp_overhead,
    postgresql,
    proxy,
    relay,
    side_by_side,
    unlock,
)

HERE = Path(__file__).resolve().parent
FIGURES = (
    "decision",
    "budget",
    "unlock",
    "frost",
    "dkls",
    "http_signing",
    "proxy",
    "proxy_stream",
    "mcp",
    "relay",
    "wrk",
    "history",
    "hot_path",
    "postgresql",
)


@dataclass(frozen=True)
class Settings:
    agents: int = 32
    warmup: float = 0.5
    duration: float = 5.0
    rounds: int = 2
    raw_seconds: float = 1.0
    decision_seconds: float = 3.0
    budget_iterations: int = 300
    unlock_repeats: int = 5
    proxy_calls: int = 150
    proxy_stream_calls: int = 30
    mcp_calls: int = 200
    relay_seconds: float = 4.0  # per side per round
    relay_rounds: int = 3
    frost_rounds: int = 200
    dkls_rounds: int = 50
    audit_entries: int = 100_000
    history_signatures: int = 100_000  # prior signatures inside the measured agents' 24h window
    startup_repeats: int = 3
    history_rounds: int = 2
    history_duration: float = 4.0
    profile_calls: int = 300
    wrk_connections: int = 8
    wrk_seconds: float = 4.0  # per side per round
    wrk_rounds: int = 2


QUICK = Settings(
    warmup=0.2,
    duration=0.6,
    rounds=1,
    raw_seconds=0.2,
    decision_seconds=0.6,
    budget_iterations=25,
    unlock_repeats=1,
    proxy_calls=10,
    proxy_stream_calls=3,
    mcp_calls=10,
    relay_seconds=0.6,
    relay_rounds=1,
    frost_rounds=3,
    dkls_rounds=3,
    audit_entries=2_000,
    history_signatures=2_000,
    startup_repeats=1,
    history_rounds=1,
    history_duration=0.6,
    profile_calls=20,
    wrk_seconds=1.0,
    wrk_rounds=1,
)


# -- the machine -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "memory_gib": round(mem_kib / 1024 / 1024, 1) if mem_kib else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_jiffies() -> tuple[int, int, int]:
    """Machine-wide CPU time from /proc/stat: (busy, steal, total), in clock ticks."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0, 0, 0
    idle, iowait, steal = (
        fields[3],
        fields[4],
        fields[7],
    )  # user nice system idle iowait irq softirq steal
    total = sum(fields)
    return total - idle - iowait, steal, total


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuWatch:
    """How busy the machine was during the run, and how much of that was not this harness or
    the processes it started (and waited for): other work on a shared machine skews figures."""

    def __init__(self) -> None:
        self.start = _cpu_jiffies()
        self.own = _own_cpu_s()
        self.wall = time.monotonic()

    def report(self) -> dict[str, Any]:
        busy, steal, total = (b - a for a, b in zip(self.start, _cpu_jiffies(), strict=True))
        if total <= 0:
            return {}
        tick = os.sysconf("SC_CLK_TCK")
        cores = os.cpu_count() or 1
        wall = time.monotonic() - self.wall
        others = max(0.0, busy / tick - (_own_cpu_s() - self.own))
        return {
            "machine_busy_share": round(busy / total, 3),
            "steal_share": round(steal / total, 4),
            "cpu_s_this_harness_and_children": round(_own_cpu_s() - self.own, 1),
            "cpu_s_other_processes": round(others, 1),
            "other_processes_share_of_machine": round(others / (wall * cores), 3),
        }


# -- running the figures -----------------------------------------------------------------------


def run_all(
    s: Settings, work: Path, *, log: Callable[[str], None], only: frozenset[str] | None = None
) -> dict[str, Any]:
    """Every figure (or those in `only`), each beside its baseline; a figure that fails leaves
    its error and traceback under its key and the others still run."""
    figures: dict[str, Any] = {}
    timings: dict[str, float] = {}

    def timed(key: str, fn: Callable[[], dict[str, Any]]) -> None:
        if only is not None and key not in only:
            return
        log(f"· {key} …")
        t0 = time.perf_counter()
        try:
            figures[key] = fn()
        except (side_by_side.WrkMissing, postgresql.PostgresMissing) as exc:  # a missing tool
            figures[key] = {"skipped": str(exc)}
            log(f"  {key} SKIPPED: {exc}")
        except Exception as exc:  # one broken figure must not lose the others' numbers
            figures[key] = {
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
            log(f"  {key} FAILED: {type(exc).__name__}: {exc}")
        timings[key] = round(time.perf_counter() - t0, 2)
        log(f"  {key}: {timings[key]:.1f} s")

    with proxy.upstream() as upstream_host:
        t0 = time.perf_counter()
        base = common.build_vault(work / "base", agents=s.agents, upstream=upstream_host)
        timings["build_base_vault"] = round(time.perf_counter() - t0, 2)

        # In-process figures first, on a quiet machine.
        timed("decision", lambda: decision.measure(seconds=s.decision_seconds))
        timed(
            "budget",
            lambda: budget.measure(
                common.copy_vault(base, work / "budget"), iterations=s.budget_iterations
            ),
        )
        timed(
            "unlock",
            lambda: unlock.measure(
                common.copy_vault(base, work / "unlock"), repeats=s.unlock_repeats
            ),
        )
        timed("frost", lambda: frost_signing.measure(s.frost_rounds))
        timed("dkls", lambda: dkls_signing.measure(s.dkls_rounds))
        # Over HTTP, each on its own server and its own copy of the vault.
        timed(
            "http_signing",
            lambda: http_signing.measure(
                common.copy_vault(base, work / "sweep"),
                warmup=s.warmup,
                duration=s.duration,
                raw_seconds=s.raw_seconds,
                rounds=s.rounds,
            ),
        )

        def run_proxy() -> dict[str, Any]:
            v = common.copy_vault(base, work / "proxy")
            with common.serve(v.home) as server:
                return proxy.measure(server.url, v.token(0), upstream_host, calls=s.proxy_calls)

        timed("proxy", run_proxy)

        def run_proxy_stream() -> dict[str, Any]:
            v = common.copy_vault(base, work / "proxy_stream")
            placeholder = proxy.issue_placeholder(v.home, common.agent_name(0))
            with common.serve(v.home) as server, proxy.local_proxy(server.url) as local:
                return proxy.measure_stream(
                    server.url,
                    v.token(0),
                    local,
                    placeholder,
                    upstream_host,
                    calls=s.proxy_stream_calls,
                )

        timed("proxy_stream", run_proxy_stream)

        def run_mcp() -> dict[str, Any]:
            with mcp_overhead.throwaway_server() as (url, token):
                return asyncio.run(mcp_overhead.measure(url, token, s.mcp_calls))

        timed("mcp", run_mcp)
        timed("relay", lambda: relay.measure(s.relay_seconds, s.relay_rounds))
        timed(
            "wrk",
            lambda: side_by_side.measure_keysafe(
                common.copy_vault(base, work / "wrk"),
                threads=2,
                connections=s.wrk_connections,
                seconds=s.wrk_seconds,
                rounds=s.wrk_rounds,
                log=log,
            ),
        )
        timed(
            "history",
            lambda: history.measure(
                base,
                work,
                audit_entries=s.audit_entries,
                signatures=s.history_signatures,
                startup_repeats=s.startup_repeats,
                rounds=s.history_rounds,
                warmup=s.warmup,
                duration=s.history_duration,
            ),
        )

        def run_hot_path() -> dict[str, Any]:
            # The same profile on the vault with the long past, in alternating rounds: what
            # grows with history shows.
            past = history.big_copy(base, work)
            if (
                not isinstance(figures.get("history"), dict)
                or "error" in figures["history"]
                or not past.home.exists()
            ):
                past = common.copy_vault(base, work / "profile-past")
                history.fill(past, audit_entries=s.audit_entries, signatures=s.history_signatures)
            out = hot_path.measure(
                common.copy_vault(base, work / "profile"),
                calls=s.profile_calls,
                past=common.copy_vault(past, work / "profile-history"),
            )
            out["with_history"]["signatures_in_window_per_agent"] = s.history_signatures // (
                history.MEASURED_AGENTS
            )
            return out

        timed("hot_path", run_hot_path)
        timed(
            "postgresql",
            lambda: postgresql.measure(
                work,
                agents=8,
                warmup=s.warmup,
                duration=s.duration,
                rounds=s.rounds,
            ),
        )
    return {"figures": figures, "seconds_per_figure": timings}


# -- the table ---------------------------------------------------------------------------------


def _ms(x: float) -> str:
    return f"{x:.3f} ms" if x < 1 else f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms"


def _us(x: float) -> str:
    return f"{x:.2f} µs" if x < 10 else f"{x:.1f} µs"


def _per_s(x: float) -> str:
    return f"{x:.1f}/s" if x < 10 else f"{x:.0f}/s"


def _rps(r: dict[str, Any]) -> str:
    return f"{_per_s(r['throughput_rps'])} (p50 {_ms(r['p50_ms'])}, p99 {_ms(r['p99_ms'])})"


def _rows_http_signing(f: dict[str, Any]) -> list[common.Figure]:
    rows: list[common.Figure] = []
    hs = f["http_signing"]
    lv = hs["levels"]
    eight = lv["8"]
    audit_ok = hs["audit_after"]["ok"]
    rows.append(
        common.Figure(
            "gated_vs_noop_8",
            "gated Solana sign / no-op (whoami), 8 agents",
            _rps(eight["solana"]),
            _rps(eight["whoami"]),
            eight["solana_vs_whoami"],
            "≥ 0.50, no errors, audit verifies",
            hs["target"]["met"],
            f"errors {hs['target']['errors_at_8']}; audit chain after: "
            f"{'verifies' if audit_ok else 'BROKEN'} ({hs['audit_after']['entries']} entries)",
        )
    )
    nb = hs["noop_vs_bare"]
    rows.append(
        common.Figure(
            "noop_vs_bare_8",
            "no-op (whoami) / bare ASGI endpoint on the same server stack (uvicorn, same flags), "
            "8 agents",
            _rps(eight["whoami"]),
            _rps(eight["bare"]),
            nb["ratio"],
            "≥ 0.25, no errors",
            nb["met"],
            f"errors {eight['whoami']['errors']}/{eight['bare']['errors']}",
        )
    )
    for n in ("1", "8", "32"):
        for chain, label in (("solana", "Solana transfer"), ("evm", "EVM EIP-1559")):
            if n == "8" and chain == "solana":
                continue
            r = lv[n]
            rows.append(
                common.Figure(
                    f"{chain}_vs_noop_{n}",
                    f"gated {label} sign / no-op, {n} agent{'s' * (n != '1')}",
                    _rps(r[chain]),
                    _rps(r["whoami"]),
                    r[f"{chain}_vs_whoami"],
                    "—",
                    None,
                    f"errors {r[chain]['errors']}",
                )
            )
    raw = hs["raw_in_process"]
    for chain, label in (("solana", "Solana"), ("evm", "EVM")):
        r1 = lv["1"][chain]
        rows.append(
            common.Figure(
                f"{chain}_vs_raw",
                f"gated {label} sign over HTTP / raw in-process signing, 1 agent",
                _rps(r1),
                f"{raw[chain]['ops_per_s']:.0f}/s ({raw[chain]['library']}, "
                f"p50 {_ms(raw[chain]['p50_ms'])})",
                r1["throughput_rps"] / raw[chain]["ops_per_s"],
                "—",
                None,
            )
        )
    mem = hs["memory_kib"]
    rows.append(
        common.Figure(
            "rss",
            "server peak RSS under the 32-agent load / idle RSS",
            f"{mem['peak_under_32_agents'] / 1024:.0f} MiB",
            f"{mem['idle_rss'] / 1024:.0f} MiB",
            mem["peak_under_32_agents"] / mem["idle_rss"],
            "—",
            None,
            "peaks at 1/8/32 agents: "
            + "/".join(f"{(v or 0) / 1024:.0f}" for v in mem["peak_per_level"].values())
            + f" MiB; peak through startup (Argon2id unlock): "
            f"{mem['peak_through_unlock'] / 1024:.0f} MiB",
        )
    )
    return rows


def _rows_decision(f: dict[str, Any]) -> list[common.Figure]:
    rows: list[common.Figure] = []
    d = f["decision"]
    dd = d["decisions"]
    rows.append(
        common.Figure(
            "decision_example",
            "decision, example policy / dict-lookup loop",
            _us(dd["example"]["us_per_decision_p50"]),
            _us(dd["baseline"]["us_per_decision_p50"]),
            d["ratio_example_vs_baseline"],
            "≤ 20×",
            d["target"]["met_example"],
        )
    )
    rows.append(
        common.Figure(
            "decision_200",
            "decision, 200-rule policy / example policy",
            _us(dd["rules_200"]["us_per_decision_p50"]),
            _us(dd["example"]["us_per_decision_p50"]),
            d["ratio_200_vs_example"],
            "≤ 10×",
            d["target"]["met_200"],
        )
    )
    pp = d["parse_policy"]
    rows.append(
        common.Figure(
            "policy_parse",
            "policy parse (once per policy text, cached), example policy / its decision",
            _ms(pp["example"]["ms_per_parse_p50"]),
            _us(dd["example"]["us_per_decision_p50"]),
            pp["example"]["ms_per_parse_p50"] * 1000 / dd["example"]["us_per_decision_p50"],
            "—",
            None,
            f"200 rules: {_ms(pp['rules_200']['ms_per_parse_p50'])} per parse",
        )
    )
    return rows


def _rows_postgresql(f: dict[str, Any]) -> list[common.Figure]:
    p = f["postgresql"]
    sides = p["sides"]
    base = _rps(sides["sqlite_one"])
    audit = "verifies" if p["audit_after"]["ok"] else "BROKEN"
    return [
        common.Figure(
            "postgresql_one",
            f"gated Solana sign, PostgreSQL, one server / SQLite, one server, {p['agents']} agents",
            _rps(sides["postgresql_one"]),
            base,
            p["ratio_one"],
            "—",
            None,
            f"errors {sides['postgresql_one']['errors']}; PostgreSQL fsync on",
        ),
        common.Figure(
            "postgresql_two",
            f"gated Solana sign, PostgreSQL, two servers on one database / "
            f"SQLite, one server, {p['agents']} agents",
            _rps(sides["postgresql_two"]),
            base,
            p["ratio_two"],
            "—",
            None,
            f"two servers / one: {p['two_vs_one']:.2f}×; errors "
            f"{sides['postgresql_two']['errors']}; audit chain after: {audit}",
        ),
    ]


def _rows_budget(f: dict[str, Any]) -> list[common.Figure]:
    rows: list[common.Figure] = []
    b = f["budget"]
    bt = b["timings"]
    rows.append(
        common.Figure(
            "budget",
            "budget reserve+commit (2 transactions) / bare SQLite insert+commit",
            _ms(bt["keysafe"]["p50_ms"]),
            _ms(bt["bare_1_commit"]["p50_ms"]),
            b["ratio"],
            "—",
            None,
            f"vs two bare commits: {b['ratio_vs_two_bare_commits']:.2f}×",
        )
    )
    return rows


def _rows_proxy(f: dict[str, Any]) -> list[common.Figure]:
    rows: list[common.Figure] = []
    p = f["proxy"]
    pt = p["timings"]
    rows.append(
        common.Figure(
            "proxy",
            "credential proxy http_request / direct httpx GET",
            _ms(pt["proxy"]["p50_ms"]),
            _ms(pt["direct"]["p50_ms"]),
            p["ratio"],
            "≤ 2×",
            p["target"]["met"],
            f"direct with a new connection each time: {_ms(pt['direct_new_connection']['p50_ms'])} "
            f"({p['ratio_vs_direct_new_connection']:.2f}×)",
        )
    )
    return rows


def _rows_proxy_stream(f: dict[str, Any]) -> list[common.Figure]:
    p = f["proxy_stream"]
    pt = p["timings"]
    slower = max(("vault_route", "local_proxy"), key=lambda k: pt[k]["first_event"]["p50_ms"])
    return [
        common.Figure(
            "proxy_stream",
            f"first SSE event through the credential proxy / direct "
            f"({p['ttft_ms']} ms TTFT upstream)",
            _ms(pt[slower]["first_event"]["p50_ms"]),
            _ms(pt["direct"]["first_event"]["p50_ms"]),
            p["ratio"],
            f"≤ {proxy.STREAM_TARGET}×",
            p["target"]["met"],
            f"vault route {p['ratio_vault_route']:.2f}× (+{p['added_ms']['vault_route']:.1f} ms), "
            f"local proxy {p['ratio_local_proxy']:.2f}× (+{p['added_ms']['local_proxy']:.1f} ms)",
        )
    ]


def _rows_mcp(f: dict[str, Any]) -> list[common.Figure]:
    rows: list[common.Figure] = []
    m = f["mcp"]
    rows.append(
        common.Figure(
            "mcp",
            "MCP sign_transaction over stdio / same call over HTTP",
            _ms(m["mcp_stdio"]["p50_ms"]),
            _ms(m["http"]["p50_ms"]),
            m["ratio_p50"],
            "≤ 2×",
            m["ratio_p50"] <= m["target_ratio"],
        )
    )
    return rows


def _rows_relay(f: dict[str, Any]) -> list[common.Figure]:
    r = f["relay"]
    d, x = r["direct"], r["relayed"]

    def side(v: dict[str, Any]) -> str:
        return (
            f"{_per_s(v['per_s'])} (p50 {_ms(v['p50_ms'])}, p99 {_ms(v['p99_ms'])}) "
            f"(errors {v['errors']})"
        )

    return [
        common.Figure(
            "relay",
            f"gated EVM sign through sidecar + relay / direct HTTP, {r['agents']} agents",
            side(x),
            side(d),
            r["ratio_throughput"],
            "—",
            None,
            note=f"p50 ratio {r['ratio_p50']:.2f}×",
        )
    ]


def _rows_unlock(f: dict[str, Any]) -> list[common.Figure]:
    rows: list[common.Figure] = []
    u = f["unlock"]
    rows.append(
        common.Figure(
            "unlock",
            "unlock / Argon2id alone (same cost)",
            _ms(u["unlock"]["p50_ms"]),
            _ms(u["argon2id_alone"]["p50_ms"]),
            u["ratio"],
            "—",
            None,
            "Argon2id " + ", ".join(f"{k}={v}" for k, v in u["argon2_params"].items()),
        )
    )
    return rows


def _rows_history(f: dict[str, Any]) -> list[common.Figure]:
    rows: list[common.Figure] = []
    h = f["history"]
    av = h["audit_verify"]
    n_entries = av["entries"]
    rows.append(
        common.Figure(
            "audit_verify",
            f"audit verify of {n_entries:,} entries (keyed) / hashlib of the same bytes",
            f"{av['verify_keyed_s']:.2f} s",
            f"{av['hashlib_same_bytes_s'] * 1000:.0f} ms",
            av["ratio_keyed_vs_hashlib"],
            "—",
            None,
            f"unkeyed {av['verify_unkeyed_s']:.2f} s ({av['ratio_unkeyed_vs_hashlib']:.0f}×); "
            f"{av['bytes_hashed'] / 1e6:.1f} MB hashed",
        )
    )
    hist = h["history"]
    rows.append(
        common.Figure(
            "startup_vs_hashlib",
            f"startup with {hist['audit_entries_added']:,} audit entries + "
            f"{hist['signatures_added']:,} prior signatures / hashlib of the chain's bytes",
            f"{h['startup_s']['big']:.2f} s",
            f"{av['hashlib_same_bytes_s'] * 1000:.0f} ms",
            h["startup_big_vs_hashlib"],
            "—",
            None,
            "startup = spawn to first healthy answer, Argon2id unlock included",
        )
    )
    rows.append(
        common.Figure(
            "startup_history",
            "startup with that history / empty vault",
            f"{h['startup_s']['big']:.2f} s",
            f"{h['startup_s']['empty']:.2f} s",
            h["startup_ratio_big_vs_empty"],
            "—",
            None,
        )
    )
    in_window = hist["signatures_in_24h_window_per_agent"]
    decided = h["decisions_during_load"]["big"]
    td = h["throughput_detail"]
    rows.append(
        common.Figure(
            "throughput_history",
            f"gated Solana sign, 8 agents, with {hist['signatures_added']:,} prior signatures "
            f"by the same agents inside their 24h window / empty vault",
            _rps(td["big"]),
            _rps(td["empty"]),
            h["ratio"],
            "≥ 0.90, no errors, all allowed",
            h["target"]["met"],
            f"{min(in_window.values(), default=0):,}–{max(in_window.values(), default=0):,} "
            f"in window per agent; errors {h['errors']}; decisions during the load "
            + ", ".join(f"{k} {v}" for k, v in sorted(decided.items()))
            + f"; audit after: "
            f"{'verifies' if all(a['ok'] for a in h['audit_after'].values()) else 'BROKEN'}",
        )
    )
    return rows


def _rows_wrk(f: dict[str, Any]) -> list[common.Figure]:
    w = f["wrk"]
    st = w["settings"]

    def fmt(r: dict[str, Any]) -> str:
        return f"{r['throughput_rps']:.0f}/s (p50 {_ms(r['p50_ms'])}, p99 {_ms(r['p99_ms'])})"

    return [
        common.Figure(
            "wrk_sign_vs_noop",
            f"wrk: gated Solana sign / no-op (whoami), {st['connections']} connections, one agent",
            fmt(w["sign"]),
            fmt(w["noop"]),
            w["ratio"],
            "—",
            None,
            f"errors {w['sign']['errors']}/{w['noop']['errors']}; {w['tool']}, "
            f"{st['rounds']}×{st['seconds_per_round']:g} s per side; "
            "benchmarks/side_by_side.py runs the same against another signer",
        )
    ]


def _rows_frost(f: dict[str, Any]) -> list[common.Figure]:
    rows: list[common.Figure] = []
    fr = f["frost"]
    rows.append(
        common.Figure(
            "frost",
            "FROST 2-of-3 signature, one process / PyNaCl Ed25519 sign",
            _ms(fr["end_to_end"]["p50_ms"]),
            _ms(fr["baseline_pynacl_sign"]["p50_ms"]),
            fr["ratio_end_to_end_vs_plain"],
            "—",
            None,
            f"DKG once: {_ms(fr['dkg_ms'])}",
        )
    )
    return rows


def _rows_dkls(f: dict[str, Any]) -> list[common.Figure]:
    d = f["dkls"]
    return [
        common.Figure(
            "dkls",
            "DKLs23 2-of-3 ECDSA: CPU per party per signature / coincurve ECDSA sign",
            _ms(d["per_party_cpu_p50_ms"]),
            _ms(d["baseline_coincurve_sign"]["p50_ms"]),
            d["per_party_cpu_p50_ms"] / d["baseline_coincurve_sign"]["p50_ms"],
            f"≤ {d['target_ms']:g} ms",
            d["met"],
            f"end to end (both parties, one process) {_ms(d['end_to_end']['p50_ms'])}; keygen "
            f"{_ms(d['keygen_cpu_ms_per_party'])} CPU per party (DKG + its two pair setups)",
        )
    ]


ROW_BUILDERS: dict[str, Callable[[dict[str, Any]], list[common.Figure]]] = {
    "http_signing": _rows_http_signing,
    "decision": _rows_decision,
    "budget": _rows_budget,
    "proxy": _rows_proxy,
    "proxy_stream": _rows_proxy_stream,
    "mcp": _rows_mcp,
    "relay": _rows_relay,
    "unlock": _rows_unlock,
    "history": _rows_history,
    "frost": _rows_frost,
    "dkls": _rows_dkls,
    "wrk": _rows_wrk,
    "postgresql": _rows_postgresql,
}
# Figures whose rows carry a target: a failure there counts as a missed target.
TARGETED = {"http_signing", "decision", "proxy", "mcp", "history", "dkls"}


def table(f: dict[str, Any], only: frozenset[str] | None = None) -> list[common.Figure]:
    """The rows of every figure (of those in `only`); a figure that failed (or whose numbers are
    missing) gets one FAILED row instead, and the others are still reported. A figure skipped
    for a missing tool (wrk) has no row: the report lists it under the skipped ones."""
    rows: list[common.Figure] = []
    for key, build in ROW_BUILDERS.items():
        if only is not None and key not in only:
            continue
        fig = f.get(key)
        if isinstance(fig, dict) and "skipped" in fig:
            continue
        error = fig.get("error") if isinstance(fig, dict) else "not run"
        if not error:
            try:
                rows += build(f)
                continue
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
                error = f"incomplete results: {type(exc).__name__}: {exc}"
        rows.append(
            common.Figure(
                f"{key}_failed",
                f"{key}: FAILED",
                str(error).splitlines()[0][:120],
                "—",
                None,
                "its targets (figure failed)" if key in TARGETED else "—",
                False if key in TARGETED else None,
            )
        )
    return rows


def _ratio(r: float | None) -> str:
    if r is None:
        return "—"
    return f"{r:.3f}" if r < 1 else f"{r:.2f}" if r < 100 else f"{r:.0f}"


def _met(m: bool | None) -> str:
    return "—" if m is None else "yes" if m else "NO"


def print_table(rows: list[common.Figure]) -> None:
    if not rows:  # e.g. `--only hot_path`: a profile, no ratio rows
        print("\n(no table rows for these figures; see results.json)")
        return
    w = max(len(r.name) for r in rows)
    print(f"\n{'figure':<{w}}  {'ratio':>8}  {'target':<34}  met  value | baseline")
    for r in rows:
        print(
            f"{r.name:<{w}}  {_ratio(r.ratio):>8}  {r.target:<34}  {_met(r.met):<3}  "
            f"{r.value} | {r.baseline}"
        )


# -- RESULTS.md --------------------------------------------------------------------------------


def _share(profile: dict[str, Any], label_start: str) -> tuple[float, float]:
    for s in profile["stages"]:
        if s["stage"].strip().startswith(label_start):
            return s["ms_per_call"], s["share"]
    return 0.0, 0.0


def _why_gated(f: dict[str, Any]) -> str:
    hs, prof = f["http_signing"], f["hot_path"]
    eight, one = hs["levels"]["8"], hs["levels"]["1"]
    inproc = prof["latency_unprofiled"]["p50_ms"]
    app_sh = _share(prof, "audit.append")[1]
    dec_sh = _share(prof, "engine.decide")[1]
    open_sh = _share(prof, "open the wallet key")[1]
    sql_sh = _share(prof, "SQLAlchemy")[1]
    raw_sh = _share(prof, "statements on the sqlite3")[1]
    txn_sh = _share(prof, "transactions opened")[1]
    com_sh = _share(prof, "SQLite COMMIT")[1]
    sign_sh = _share(prof, "sign + verify")[1]
    http_ms = one["solana"]["p50_ms"] - inproc
    noop_ms = one["whoami"]["p50_ms"]
    return (
        f"**Why.** A gated Solana signature is {_ms(one['solana']['p50_ms'])} p50 over HTTP at "
        f"one agent, of which {_ms(inproc)} is the service call itself (in-process, unprofiled) "
        f"and {_ms(http_ms)} the HTTP side, where the authenticated no-op takes "
        f"{_ms(noop_ms)} in all: the signing route also validates a JSON body with pydantic, "
        f"resolves its dependencies and runs the blocking call on a worker thread. In the "
        f"service call (profile below): opening and closing its transactions {txn_sh:.0%} "
        f"(the commit's fsync {com_sh:.0%}), the statements on the `sqlite3` driver "
        f"{raw_sh:.0%}, what is left on SQLAlchemy {sql_sh:.0%}, the two hash-chained, "
        f"HMAC-sealed audit entries {app_sh:.0%}, opening the wallet key {open_sh:.0%}, "
        f"signing and verifying it three ways {sign_sh:.0%}, the engine {dec_sh:.0%}. No one "
        f"step dominates any more; it is the sum of Python bookkeeping around a 0.1 ms "
        f"signature, under one GIL, so 8 agents go barely faster than one. ≥ 0.5 asks a "
        f"signature, which decides, writes a ledger row, its running totals and two audit "
        f"entries and waits for an fsync, to cost at most twice a no-op that only reads: about "
        f"{_ms(2 * 1000 / max(eight['whoami']['throughput_rps'], 1))} of server time at 8 "
        f"agents, a few times less than this Python path takes.\n\n"
        f"**Plan.** Done: one write transaction per signature, running window totals, the "
        f"compiled policy, per-unlock caches (audit and seal subkeys, verified seals, the "
        f"registry per content), every per-request statement on the `sqlite3` driver "
        f"(`store/hot.py`: the audit append, the ledger and its totals, the agent, policy, "
        f"pause-all, record and registry reads, BEGIN), the wallet record and registry in one "
        f"read, canonical JSON through the C encoder where its bytes are RFC 8785's, each "
        f"Solana signature verified once per check. Together these took the in-process call "
        f"from 6.5 to about 3 ms. Next: (1) the transactions themselves on the driver (a "
        f"read through SQLAlchemy's pool and Connection costs more than its statements); (2) "
        f"the signing route's body parsed once by a plain decoder instead of FastAPI's "
        f"dependency and validation machinery; (3) group commit (requests queued behind the "
        f"write lock commit together, each deciding after the previous ones' rows), which "
        f"spreads the fsync; (4) several front processes (HTTP, token check, decode) feeding "
        f"one writer, beyond two cores."
    )


def _why_decision(f: dict[str, Any]) -> str:
    d = f["decision"]
    ex = d["decisions"]["example"]["us_per_decision_p50"]
    return (
        f"**Why.** One decision is {_us(ex)} against "
        f"{_us(d['decisions']['baseline']['us_per_decision_p50'])} for the same answer from a "
        f"dict. Policies are compiled now (`policy/compiled.py`: rules indexed by action, names "
        f"resolved, caps in base units, the explanation built only when read), which took the "
        f"example from about 160 µs. What is left is spread evenly over about 900 Python "
        f"operations: reading the request's chain, asset and amount (~8 µs), caps, thresholds "
        f"and the two windows (~7 µs), matching rules including `outside_hours` (~4 µs), "
        f"building the Decision and its charges (~4 µs), the cache lookup (~1.5 µs).\n\n"
        f"**Plan.** Memoise the matching by request shape (action, chain, asset, recipient) "
        f"per compiled policy, and parse the amount once where the intent is built; the "
        f"target, ≤ 20× the dict loop, is about "
        f"{_us(20 * d['decisions']['baseline']['us_per_decision_p50'])}. The decision is "
        f"{_share(f['hot_path'], 'engine.decide')[1]:.0%} of a signature, so this target "
        f"matters less than the signing plan."
    )


def _why_decision_200(f: dict[str, Any]) -> str:
    return (
        "**Why.** The engine scans every rule with `covers` and sorts the covering ones, so "
        "cost grows with the policy's length, not with the rules that apply.\n\n"
        "**Plan.** Index rules by action once per policy digest (see the decision plan)."
    )


def _why_proxy(f: dict[str, Any]) -> str:
    one = f["http_signing"]["levels"]["1"]
    p = f["proxy"]["timings"]
    return (
        f"**Why.** The proxied call takes {_ms(p['proxy']['p50_ms'])} p50 where the agent's "
        f"own keep-alive client takes {_ms(p['direct']['p50_ms'])}. The proxy keeps its "
        f"upstream connections alive now (one client per unlock, no cookie jar), so the gap is "
        f"the gated path: the token check, the decision and its audit entry, the credential's "
        f"record opened, and the outcome's audit entry, two write transactions because the "
        f"call reaches out between them. Against a loopback upstream that answers in "
        f"{_ms(p['direct']['p50_ms'])}, ≤ 2× leaves that whole path that much time, while a "
        f"gated signature alone is {_ms(one['solana']['p50_ms'])} here.\n\n"
        f"**Plan.** The signing plan (raw sqlite3 statements, group commit) shortens this path "
        f"too. Against a real upstream tens of milliseconds away the proxy already adds less "
        f"than the upstream's own time."
    )


def _why_mcp(f: dict[str, Any]) -> str:
    return (
        "**Why.** Each MCP call crosses two processes more (agent ↔ `keysafe mcp` over stdio "
        "JSON-RPC, then HTTP to the server).\n\n**Plan.** Profile `keysafe mcp`'s request "
        "path and keep one HTTP connection open to the server (it is already one client)."
    )


def _why_history(f: dict[str, Any]) -> str:
    h = f["history"]
    hist = h["history"]
    per_agent = max(hist["signatures_in_24h_window_per_agent"].values(), default=0)
    td = h["throughput_detail"]
    grown = ""
    past = f.get("hot_path", {}).get("with_history")
    if past:
        fresh = {x["stage"]: x["ms_per_call"] for x in f["hot_path"]["stages"]}
        # These hold the others (engine.decide calls the window sums): name what grew inside.
        containers = ("gate", "SQLAlchemy", "engine.decide")
        growth = sorted(
            (
                (x["ms_per_call"] - fresh.get(x["stage"], 0.0), x["stage"].strip())
                for x in past["stages"]
                if not x["stage"].strip().startswith(containers)
            ),
            reverse=True,
        )[:3]
        grown = (
            " The profile below (fresh vs with history) shows where the time went: "
            + "; ".join(f"{name} +{_ms(d)} per call" for d, name in growth)
            + "."
        )
    denied = h.get("decisions_not_allowed", 0)
    return (
        f"**Why.** With {hist['signatures_added']:,} prior signatures by the same 8 agents "
        f"inside their 24h window ({per_agent:,} per agent), gated signing ran at "
        f"{_per_s(td['big']['throughput_rps'])} against {_per_s(td['empty']['throughput_rps'])} on "
        f"the empty vault ({h['ratio']:.0%}), errors {h['errors']}, decisions not allowed "
        f"{denied}. Window checks read running totals (`ledger_totals`), so they do not follow "
        f"the rows in the window; what is left of the difference is elsewhere.{grown}\n\n"
        f"**Plan.** An earlier run put the growth in the SQLite COMMIT step (2.9× with "
        f"history). That was the benchmark: it copied the 80 MB vault and profiled at once, so "
        f"the first fsyncs waited for the kernel writing the copy back; copies are flushed "
        f"now. What can still grow: each signature inserts its request id into "
        f"`ix_ledger_request_id` at a random place, so a large ledger dirties one more page per "
        f"commit and WAL checkpoints write more distinct pages. If a run shows it, key the "
        f"index by (agent, time) or drop it for signatures booked as committed (settling needs "
        f"it only for requests that reach out), or group commit; re-run `benchmarks/run.py` "
        f"after each change."
    )


def _why_noop_vs_bare(f: dict[str, Any]) -> str:
    eight = f["http_signing"]["levels"]["8"]
    return (
        f"**Why.** The bare ASGI endpoint answers {eight['bare']['throughput_rps']:.0f}/s on the "
        f"same uvicorn call; whoami answers {eight['whoami']['throughput_rps']:.0f}/s. The "
        f"difference is keysafe's own request path before any action: the guard (host check, "
        f"body-size limit, hardened headers), FastAPI routing, the bearer check (one plain "
        f"SQLite read on the event loop) and the per-agent rate limit.\n\n"
        f"**Plan.** uvicorn runs on pure-Python h11 here; httptools and uvloop (about +30% in "
        f"a trial) would be new pinned runtime dependencies for both sides."
    )


def _why_dkls(f: dict[str, Any]) -> str:
    by_round = f["dkls"]["agent_cpu_by_round"]
    parts = ", ".join(f"{name} {v['p50_ms']:.1f} ms" for name, v in by_round.items())
    return (
        f"**Why.** One party's signature is {parts} of pure-Python CPU: 752 OT-extension rows "
        "expanded, transposed, hashed to 4 scalars each (twice on the sender's side), the "
        "GF(2^256) consistency check and the multiplication check over 416 rows.\n\n"
        "**Plan.** The polynomial-hash check (two Horner passes) and the row hashing are what is "
        "left; batching the row hashes into one SHAKE stream per round, or one native helper "
        "for the GF(2^256) check, are the next steps."
    )


WHY: dict[str, Callable[[dict[str, Any]], str]] = {
    "gated_vs_noop_8": _why_gated,
    "decision_example": _why_decision,
    "decision_200": _why_decision_200,
    "proxy": _why_proxy,
    "mcp": _why_mcp,
    "throughput_history": _why_history,
    "noop_vs_bare_8": _why_noop_vs_bare,
    "dkls": _why_dkls,
}


def reasons(f: dict[str, Any], rows: list[common.Figure]) -> dict[str, str]:
    """A reason and a plan for every missed target, from this run's own numbers."""
    out: dict[str, str] = {}
    for r in rows:
        if r.met is not False:
            continue
        if r.key.endswith("_failed"):
            out[r.key] = (
                f"**Why.** The figure did not complete: {r.value}. The traceback is in "
                f"results.json under its key.\n\n**Plan.** Fix the cause and re-run."
            )
            continue
        try:
            out[r.key] = WHY[r.key](f)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            out[r.key] = f"(No reason written: a figure it draws on is missing: {exc!r}.)"
    return out


def markdown(result: dict[str, Any], rows: list[common.Figure]) -> str:
    f = result["figures"]
    m = result["machine"]
    why = reasons(f, rows)
    lines = [
        "# keysafe benchmark results",
        "",
        "Written by `.venv/bin/python benchmarks/run.py` (full run); the raw numbers are in "
        "`benchmarks/results.json`. Every ratio compares two things measured in the same run on "
        "the same machine, so ratios compare across machines where absolute numbers do not.",
        "",
        f"- Date: {result['finished_at']} (run took {result['duration_s']:.0f} s)",
        f"- CPU: {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable), "
        f"{m['memory_gib']} GiB RAM",
        f"- Python {m['python']} ({m['implementation']}), {m['system']}",
        f"- Load average at start {m['load_average_at_start']}, at end "
        f"{m['load_average_at_end']}; {_cpu_note(m.get('cpu_during_run') or {})} Other "
        "processes may run on this machine (a shared workspace): each figure alternates its "
        "two sides in rounds so noise hits both, but the run is one sample, and throughput "
        "under contention varies from run to run (see the notes under the results).",
        "- Server: the real `keysafe serve --unlock --rate-limit 1000000 --idle-lock 0` on a "
        "throwaway vault (default Argon2id cost), SQLite in WAL mode with synchronous=FULL. "
        "Load: closed loop, one keep-alive HTTP/1.1 connection per agent, from an asyncio "
        "client in the harness process (same 2 cores).",
        "- Agents' policy: Solana and EVM transfers to one allowed recipient each, a per-tx "
        "cap and a 24h amount window, so every signature is decided, reserved, committed and "
        "audited.",
        "",
        "## Results",
        "",
        "| figure | value | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = f" ({r.note})" if r.note else ""
        lines.append(
            f"| {r.name} | {r.value}{note} | {r.baseline} | {_ratio(r.ratio)} | "
            f"{r.target} | {_met(r.met)} |"
        )
    targets = [r for r in rows if r.met is not None]
    lines += ["", "## Targets", ""]
    for r in targets:
        status = "met" if r.met else "**missed**"
        lines.append(f"- {r.name}: {_ratio(r.ratio)} against {r.target}: {status}.")
    if why:
        lines += ["", "### Missed targets: reasons and plans", ""]
        for r in targets:
            if r.key in why:
                lines += [f"#### {r.name}", "", why[r.key], ""]
    failed = {k: v["error"] for k, v in f.items() if isinstance(v, dict) and "error" in v}
    if failed:
        lines += ["## Figures that failed", ""]
        lines += [f"- {k}: `{v}`" for k, v in failed.items()]
        lines += [""]
    skipped = {k: v["skipped"] for k, v in f.items() if isinstance(v, dict) and "skipped" in v}
    if skipped:
        lines += ["## Figures skipped", ""]
        lines += [f"- {k}: {v}" for k, v in skipped.items()]
        lines += [""]
    lines += [
        "## keysafe beside another signer",
        "",
        "The wrk row above is `benchmarks/side_by_side.py` run against keysafe's gated Solana "
        "sign and its no-op. To compare keysafe with another signer on your machine, give the "
        "script that signer's URL, method, headers and a request body; it runs wrk with the "
        "same settings against both in alternating rounds and prints req/s, p50 and p99 for "
        "each (see the README's Speed section).",
        "",
    ]
    try:
        lines += _profile_section(f)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        lines += ["## Profile of the hot path", "", f"Not available in this run ({exc!r}).", ""]
    lines += [
        "## Seconds per figure",
        "",
        "| figure | seconds |",
        "|---|---|",
    ]
    for k, v in result["seconds_per_figure"].items():
        lines.append(f"| {k} | {v} |")
    return "\n".join(lines) + "\n"


def _profile_section(f: dict[str, Any]) -> list[str]:
    prof = f["hot_path"]
    hs = f["http_signing"]["levels"]["1"]
    lines: list[str] = [
        "## Profile of the hot path",
        "",
        f"One policy-gated Solana `sign_transaction`, the service call every surface makes, "
        f"run {prof['calls']} times in-process on an unlocked copy of the benchmark vault under "
        f"{prof['profiler']} (pyinstrument and py-spy are not dependencies of keysafe; cProfile "
        f"adds its own overhead to every call, so shares matter more than milliseconds). "
        f"Unprofiled it takes "
        f"{_ms(prof['latency_unprofiled']['p50_ms'])} p50; over HTTP at one agent the same "
        f"call is {_ms(hs['solana']['p50_ms'])} p50 and the authenticated no-op "
        f"{_ms(hs['whoami']['p50_ms'])}, so HTTP, FastAPI and the token check account for the "
        f"difference. Inclusive time per stage (nested stages indented; shares of the profiled "
        f"total, {_ms(prof['profiled_ms_per_call'])} per call with profiler overhead)",
    ]
    past = prof.get("with_history")
    if past:
        per_agent = past.get("signatures_in_window_per_agent", 0)
        lines[-1] += (
            f", fresh and on the vault with the long past, the two in {hot_path.ROUNDS} "
            f"alternating rounds in one process (the history figure's vault, {past['calls']} "
            f"calls: agent-00 then has {per_agent:,} prior signatures inside its 24h window; "
            f"unprofiled {_ms(past['latency_unprofiled']['p50_ms'])} p50, profiled "
            f"{_ms(past['profiled_ms_per_call'])} per call). The last column is with-history "
            f"over fresh: a stage that grows with history stands out there:"
        )
        lines += [
            "",
            "| stage | ms per call | share | calls per sign | ms per call, with history "
            "| × fresh |",
            "|---|---|---|---|---|---|",
        ]
    else:
        lines[-1] += ":"
        lines += ["", "| stage | ms per call | share | calls per sign |", "|---|---|---|---|"]
    hist_stages = {x["stage"]: x for x in past["stages"]} if past else {}
    for s in prof["stages"]:
        label = s["stage"].replace("  ", "↳ ", 1) if s["stage"].startswith("  ") else s["stage"]
        row = f"| {label} | {s['ms_per_call']:.3f} | {s['share']:.0%} | {s['calls_per_sign']:.0f} |"
        if past:
            h = hist_stages.get(s["stage"], {"ms_per_call": 0.0})
            grow = f"{h['ms_per_call'] / s['ms_per_call']:.2f}" if s["ms_per_call"] else "—"
            row += f" {h['ms_per_call']:.3f} | {grow} |"
        lines.append(row)
    lines += [
        "",
        "Functions with the most own time (fresh vault):",
        "",
        "| function | ms per call | share |",
        "|---|---|---|",
    ]
    for t in prof["top_own_time"][:10]:
        lines.append(f"| `{t['function']}` | {t['own_ms_per_call']:.3f} | {t['share']:.1%} |")
    if past:
        lines += [
            "",
            "The same with the long past:",
            "",
            "| function | ms per call | share |",
            "|---|---|---|",
        ]
        for t in past["top_own_time"][:10]:
            lines.append(f"| `{t['function']}` | {t['own_ms_per_call']:.3f} | {t['share']:.1%} |")
    sql_sh = _share(prof, "SQLAlchemy")[1]
    crypto_sh = _share(prof, "open the wallet key")[1] + _share(prof, "sign + verify")[1]
    commit_sh = _share(prof, "SQLite COMMIT")[1]
    raw_sh = _share(prof, "statements on the sqlite3")[1]
    txn_sh = _share(prof, "transactions opened")[1]
    # Aggregates that overlap the stages: not ranked beside them.
    containers = ("gate", "SQLAlchemy", "statements on", "transactions opened")
    leaves = sorted(
        (s for s in prof["stages"] if not s["stage"].strip().startswith(containers)),
        key=lambda s: s["share"],
        reverse=True,
    )[:4]
    ranked = "; ".join(f"{s['stage'].strip()} {s['share']:.0%}" for s in leaves)
    lines += [
        "",
        f"**What dominates:** {ranked}. Across the call (overlapping the stages above), the "
        f"statements on the `sqlite3` driver take {raw_sh:.0%}, the "
        f"~{_stage_calls(prof, 'SQLAlchemy'):.0f} left on SQLAlchemy {sql_sh:.0%}, and opening "
        f"and closing the transactions {txn_sh:.0%}. The cryptography (decrypting the key, "
        f"signing, verifying) is {crypto_sh:.0%} and the SQLite commits with their fsyncs "
        f"{commit_sh:.0%}: the cost is Python bookkeeping around the signature, not the "
        f"signature or the disk.",
        "",
    ]
    return lines


def _cpu_note(c: dict[str, Any]) -> str:
    if not c:
        return "CPU use during the run was not readable."
    return (
        f"during the run the machine was {c['machine_busy_share']:.0%} busy, "
        f"{c['cpu_s_this_harness_and_children']:.0f} CPU-s by this harness and the servers and "
        f"clients it started, {c['cpu_s_other_processes']:.0f} CPU-s by everything else (other "
        f"processes, kernel threads; {c['other_processes_share_of_machine']:.0%} of the "
        f"machine), steal {c['steal_share']:.1%}."
    )


def _stage_calls(prof: dict[str, Any], label_start: str) -> float:
    for s in prof["stages"]:
        if s["stage"].strip().startswith(label_start):
            return float(s["calls_per_sign"])
    return 0.0


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (< 60 s): small counts, short runs; no RESULTS.md",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results.json",
        help="where to write the JSON (default benchmarks/results.json)",
    )
    parser.add_argument(
        "--results-md",
        type=Path,
        default=HERE / "RESULTS.md",
        help="where a full run writes its report (default benchmarks/RESULTS.md)",
    )
    parser.add_argument(
        "--only",
        metavar="FIGURE[,FIGURE…]",
        help="run only these figures (with --quick or full settings); writes the "
        "JSON, never RESULTS.md. Figures: " + ", ".join(FIGURES),
    )
    parser.add_argument("--keep", action="store_true", help="keep the throwaway vaults")
    args = parser.parse_args(argv)
    only: frozenset[str] | None = None
    if args.only:
        only = frozenset(x.strip() for x in args.only.split(",") if x.strip())
        unknown = sorted(only - set(FIGURES))
        if unknown or not only:
            parser.error(
                f"--only: unknown figure(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(FIGURES)}"
            )
    settings = QUICK if args.quick else Settings()
    started = time.perf_counter()
    info = machine()
    watch = CpuWatch()
    work = Path(tempfile.mkdtemp(prefix="keysafe-bench-"))
    os.chmod(work, 0o700)
    mode = "quick" if args.quick else "full"
    if only is not None:
        mode += " (only " + ", ".join(sorted(only)) + ")"
    print(f"keysafe benchmarks ({mode}) in {work}", flush=True)
    try:
        run = run_all(settings, work, log=lambda s: print(s, flush=True), only=only)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    info["cpu_during_run"] = watch.report()
    rows = table(run["figures"], only)
    result: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "only": sorted(only) if only is not None else None,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": info,
        "settings": asdict(settings),
        "table": [r.to_dict() for r in rows],
        "targets_missed": [r.key for r in rows if r.met is False],
        "figures_failed": [k for k, v in run["figures"].items() if "error" in v],
        "figures_skipped": [k for k, v in run["figures"].items() if "skipped" in v],
        **run,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(rows)
    print(f"\nJSON: {args.out}   ({result['duration_s']:.0f} s)")
    if not args.quick and only is None:
        args.results_md.write_text(markdown(result, rows))
        print(f"report: {args.results_md}")
    elif only is not None:
        print("(--only: RESULTS.md is left as it is; only a full run writes it)")
    failed = [k for k, v in run["figures"].items() if isinstance(v, dict) and "error" in v]
    if failed:
        print(f"FAILED figures: {', '.join(failed)} (tracebacks in the JSON)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
