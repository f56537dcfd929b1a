"""The benchmark harness runs (quick mode) and writes valid JSON with every figure.

Speed itself is measured by benchmarks/run.py and never asserted here: this only proves that
the harness works, end to end, against the real `keysafe serve`.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a quick run still starts several servers (about 40 s)

FIGURES = (
    "decision",
    "budget",
    "unlock",
    "frost",
    "http_signing",
    "proxy",
    "proxy_stream",
    "mcp",
    "relay",
    "wrk",
    "history",
    "hot_path",
)
TABLE_KEYS = {
    "gated_vs_noop_8",
    "solana_vs_noop_1",
    "evm_vs_noop_1",
    "evm_vs_noop_8",
    "solana_vs_noop_32",
    "evm_vs_noop_32",
    "solana_vs_raw",
    "evm_vs_raw",
    "decision_example",
    "decision_200",
    "policy_parse",
    "budget",
    "proxy",
    "proxy_stream",
    "mcp",
    "relay",
    "unlock",
    "audit_verify",
    "startup_vs_hashlib",
    "startup_history",
    "throughput_history",
    "rss",
    "frost",
    "noop_vs_bare_8",
    "wrk_sign_vs_noop",
}
QuickRun = tuple[dict[str, Any], str, Path]  # the JSON, what was printed, where a report would go


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    md = out.with_name("RESULTS.md")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--out",
            str(out),
            "--results-md",
            str(md),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout, md


def test_quick_run_writes_json_with_every_figure_and_its_ratio(quick_run: QuickRun) -> None:
    result, _, _ = quick_run
    assert result["mode"] == "quick"
    assert result["figures_failed"] == []
    assert set(FIGURES) <= set(result["figures"])
    for key in FIGURES:
        assert isinstance(result["figures"][key], dict), key
    rows = {row["key"]: row for row in result["table"]}
    assert set(rows) >= TABLE_KEYS, TABLE_KEYS - set(rows)
    for key, row in rows.items():
        assert isinstance(row["ratio"], float | int) and math.isfinite(row["ratio"]), key
        assert row["ratio"] > 0, key
        assert row["met"] in (True, False, None), key
    # Every figure with a target says whether it was met.
    for key in (
        "gated_vs_noop_8",
        "decision_example",
        "decision_200",
        "proxy",
        "proxy_stream",
        "mcp",
        "throughput_history",
        "noop_vs_bare_8",
    ):
        assert rows[key]["met"] in (True, False), key
    assert set(result["targets_missed"]) == {k for k, r in rows.items() if r["met"] is False}


def test_quick_run_measures_each_side_for_real(quick_run: QuickRun) -> None:
    result, _, _ = quick_run
    f = result["figures"]
    levels = f["http_signing"]["levels"]
    assert set(levels) == {"1", "8", "32"}
    for n, row in levels.items():
        for kind in ("whoami", "solana", "evm"):
            assert row[kind]["agents"] == int(n)
            assert row[kind]["requests"] > 0, (n, kind)
            assert row[kind]["errors"] == 0, (n, kind, row[kind]["first_error"])
    assert f["http_signing"]["audit_after"]["ok"] is True
    mem = f["http_signing"]["memory_kib"]
    assert mem["idle_rss"] > 0 and mem["peak_under_32_agents"] > 0
    assert f["history"]["audit_verify"]["entries"] >= 2000
    assert all(a["ok"] for a in f["history"]["audit_after"].values())
    # The past lies inside the measured agents' window, and the load was allowed, not denied.
    built = f["history"]["history"]
    assert sum(built["signatures_in_24h_window_per_agent"].values()) >= built["signatures_added"]
    assert f["history"]["errors"] == 0 and f["history"]["decisions_not_allowed"] == 0
    assert all(d.get("allow", 0) > 0 for d in f["history"]["decisions_during_load"].values())
    assert levels["8"]["bare"]["requests"] > 0 and levels["8"]["bare"]["errors"] == 0
    for side in ("sign", "noop"):
        assert f["wrk"]["targets"] and f["wrk"][side]["requests"] > 0, side
        assert f["wrk"][side]["errors"] == 0, side
    assert f["hot_path"]["stages"] and f["hot_path"]["top_own_time"]
    assert f["hot_path"]["with_history"]["stages"]
    for side in ("direct", "relayed"):  # 8 paired sidecars through a relay, and 8 token agents
        assert f["relay"][side]["calls"] > 0 and f["relay"][side]["errors"] == 0, side
    for path in ("direct", "vault_route", "local_proxy"):
        assert f["proxy_stream"]["timings"][path]["first_event"]["p50_ms"] > 0, path
    machine = result["machine"]
    assert machine["cores"] >= 1 and machine["python"].count(".") == 2


def test_quick_run_prints_the_table_and_leaves_the_report_alone(quick_run: QuickRun) -> None:
    _, stdout, md = quick_run
    assert "gated Solana sign / no-op (whoami), 8 agents" in stdout
    assert "credential proxy http_request / direct httpx GET" in stdout
    assert not md.exists()  # only a full run writes RESULTS.md
