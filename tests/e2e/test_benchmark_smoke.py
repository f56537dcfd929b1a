"""The benchmarks run (quick mode); speed itself is measured in benchmarks/, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mcp_overhead_benchmark_runs_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "mcp.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "mcp_overhead.py"),
            "--calls",
            "5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["http"]["calls"] == result["mcp_stdio"]["calls"] == 5
    assert result["ratio_p50"] > 0
    assert "MCP / HTTP (p50)" in proc.stdout


def test_frost_signing_benchmark_runs_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "frost.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "frost_signing.py"),
            "--rounds",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["rounds"] == 3
    for figure in ("agent_cpu", "user_cpu", "coordinator_cpu", "end_to_end"):
        assert result[figure]["p50_ms"] > 0, figure
    assert "2-of-3 end to end" in proc.stdout
