"""keysafe beside another signer over HTTP, with the same load generator and the same settings.

`wrk` (a C load generator: the client costs little next to either server) sends one fixed
request to each side over keep-alive connections, closed loop, in alternating rounds (keysafe,
the other, keysafe, ...) so a disturbance on a shared machine does not land on one side only.
The keysafe side is a throwaway vault served by the real `keysafe serve` (default Argon2id cost,
the benchmark policy of benchmarks/common.py), signing an unsigned Solana transfer through the
policy gate (decision, budget reservation, audit entries) as an agent does. All connections use
one agent's token. The other side is any URL with a method, headers and a request body you give:

    # keysafe's gated sign against another signer listening on 127.0.0.1:8420:
    .venv/bin/python benchmarks/side_by_side.py --other-name dcp \\
        --other-url http://127.0.0.1:8420/v1/vault/sign --other-method POST \\
        --other-header 'Content-Type: application/json' --other-body dcp-sign.json

    # without --other-url: keysafe's gated sign against keysafe's own no-op (whoami)
    .venv/bin/python benchmarks/side_by_side.py

    # an unsigned Solana transfer from the other signer's wallet, for its request body:
    .venv/bin/python benchmarks/side_by_side.py --print-solana-tx WALLET_ADDRESS

Headers that carry a secret go in a file (`--other-header-file`, one `Name: value` a line): wrk
reads them through benchmarks/wrk/post_body.lua, so they never show in the process list. Each
side is probed with one request first and must answer 2xx; every non-2xx answer during the run
counts as an error. Prints req/s, p50 and p99 per side (p50/p99: the median over the rounds of
wrk's own percentiles) and writes the JSON to --out.

wrk comes from the system's packages: `apt-get install wrk` (scripts/setup installs it when it
runs as root; so does this script when it can).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402 - after the path is set, when run as a script

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk" / "post_body.lua"
MARKER = "WRK_JSON "
SIGN_PATH = "/v1/agent/sign-transaction"
WHOAMI_PATH = "/v1/agent/whoami"


@dataclass(frozen=True)
class Target:
    """One side: what wrk sends, the same request every time."""

    name: str
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


class WrkMissing(RuntimeError):
    """wrk is not installed and could not be installed here."""


def ensure_wrk(log: Callable[[str], None] = print) -> str:
    """The path of wrk, installed with apt-get first when it is missing and this is root.

    Raises:
        WrkMissing: wrk is absent and cannot be installed here (not root, no apt-get, or the
            install failed); the message says what to run.
    """
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise WrkMissing(
            "wrk is not installed (and this is not root with apt-get): install it with your "
            "system's packages (Debian/Ubuntu: sudo apt-get install wrk), then re-run"
        )
    log("wrk is not installed: apt-get install -y wrk …")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", "-qq", "wrk"],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "wrk"],
    ):
        subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=600)
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkMissing("wrk is not installed and `apt-get install wrk` failed (no package index?)")


def _write_request(target: Target, workdir: Path) -> tuple[str, str]:
    """The body and headers files wrk's script reads ("-" for none), private to this user."""
    slug = "".join(c if c.isalnum() else "-" for c in target.name)
    body = "-"
    if target.body is not None:
        path = workdir / f"{slug}.body"
        path.write_bytes(target.body)
        body = str(path)
    headers = "-"
    if target.headers:
        path = workdir / f"{slug}.headers"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(f"{k}: {v}\n" for k, v in target.headers.items())
        headers = str(path)
    return body, headers


def probe(target: Target) -> None:
    """One request by hand before the load: a side that does not answer 2xx is reported now.

    Raises:
        RuntimeError: the side refused the request or could not be reached.
    """
    try:
        r = httpx.request(
            target.method, target.url, headers=target.headers, content=target.body, timeout=30
        )
    except httpx.HTTPError as exc:
        raise RuntimeError(f"{target.name}: {target.url} could not be reached: {exc}") from exc
    if not 200 <= r.status_code < 300:
        raise RuntimeError(
            f"{target.name}: the probe request got {r.status_code}: "
            f"{r.text[:300]!r} (fix the URL, method, headers or body)"
        )


def run_wrk(
    wrk: str, target: Target, workdir: Path, *, threads: int, connections: int, seconds: float
) -> dict[str, Any]:
    """One wrk run against one target; its figures (latencies in ms)."""
    body, headers = _write_request(target, workdir)
    cmd = [
        wrk,
        "-t",
        str(min(threads, connections)),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        target.url,
        "--",
        target.method,
        body,
        headers,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith(MARKER)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed on {target.name} ({proc.returncode}): "
            f"{(proc.stderr or proc.stdout)[-1000:]}"
        )
    raw = json.loads(line[len(MARKER) :])
    seconds_run = raw["duration_us"] / 1e6
    errors = sum(
        raw[k] for k in ("non_2xx_3xx", "connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return {
        "requests": raw["requests"],
        "seconds": round(seconds_run, 3),
        "throughput_rps": raw["requests"] / seconds_run if seconds_run else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": errors,
        "raw": raw,
    }


def compare(
    targets: Sequence[Target],
    workdir: Path,
    *,
    threads: int = 2,
    connections: int = 8,
    seconds: float = 10.0,
    rounds: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every target for `seconds` per round, in alternating rounds, with the same wrk settings.
    Per target: req/s over all rounds, the median of the rounds' p50 and p99, errors.

    Raises:
        WrkMissing: wrk is not there and cannot be installed.
        RuntimeError: a target did not answer its probe with 2xx, or wrk failed.
    """
    wrk = ensure_wrk(log)
    for t in targets:
        probe(t)
    per_round: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for r in range(rounds):
        for t in targets:
            res = run_wrk(
                wrk, t, workdir, threads=threads, connections=connections, seconds=seconds
            )
            per_round[t.name].append(res)
            log(
                f"  round {r + 1}/{rounds} {t.name}: {res['throughput_rps']:.0f} req/s, "
                f"p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, errors {res['errors']}"
            )
    out: dict[str, Any] = {}
    for t in targets:
        runs = per_round[t.name]
        total_s = sum(x["seconds"] for x in runs)
        out[t.name] = {
            "url": t.url,
            "method": t.method,
            "throughput_rps": sum(x["requests"] for x in runs) / total_s if total_s else 0.0,
            "p50_ms": statistics.median(x["p50_ms"] for x in runs),
            "p99_ms": statistics.median(x["p99_ms"] for x in runs),
            "errors": sum(x["errors"] for x in runs),
            "requests": sum(x["requests"] for x in runs),
            "rounds": [{k: v for k, v in x.items() if k != "raw"} for x in runs],
        }
    return {
        "tool": _wrk_version(wrk),
        "settings": {
            "threads": min(threads, connections),
            "connections": connections,
            "seconds_per_round": seconds,
            "rounds": rounds,
        },
        "targets": out,
    }


def _wrk_version(wrk: str) -> str:
    proc = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    first = (proc.stdout or proc.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "wrk"


def keysafe_targets(v: common.BenchVault, url: str, agent: int = 0) -> tuple[Target, Target]:
    """keysafe's gated Solana sign and its authenticated no-op (whoami), as agent `agent`."""
    auth = {"Authorization": f"Bearer {v.token(agent)}"}
    tx = common.solana_transfers(v.sol_address, 1)[0]
    body = json.dumps({"wallet": "sol", "transaction": tx}, separators=(",", ":")).encode()
    sign = Target(
        "keysafe gated Solana sign",
        url + SIGN_PATH,
        "POST",
        auth | {"Content-Type": "application/json"},
        body,
    )
    noop = Target("keysafe no-op (whoami)", url + WHOAMI_PATH, "GET", auth)
    return sign, noop


@contextmanager
def keysafe_server(
    vault: common.BenchVault | None, workdir: Path
) -> Iterator[tuple[common.BenchVault, common.Served]]:
    """A served keysafe vault: `vault`, or a throwaway one built in `workdir`."""
    if vault is None:
        vault = common.build_vault(workdir / "keysafe", agents=1)
    with common.serve(vault.home) as server:
        yield vault, server


def measure_keysafe(
    vault: common.BenchVault,
    *,
    threads: int,
    connections: int,
    seconds: float,
    rounds: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """For benchmarks/run.py: keysafe's gated Solana sign beside its no-op, both with wrk."""
    with keysafe_server(vault, vault.home.parent) as (_, server):
        sign, noop = keysafe_targets(vault, server.url)
        result = compare(
            [sign, noop],
            vault.home.parent,
            threads=threads,
            connections=connections,
            seconds=seconds,
            rounds=rounds,
            log=log,
        )
    t = result["targets"]
    result["sign"], result["noop"] = t[sign.name], t[noop.name]
    result["ratio"] = t[sign.name]["throughput_rps"] / t[noop.name]["throughput_rps"]
    return result


# -- the command -------------------------------------------------------------------------------


def _headers(values: Sequence[str], files: Sequence[Path]) -> dict[str, str]:
    lines = list(values)
    for f in files:
        lines += f.read_text(encoding="utf-8").splitlines()
    out: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"side_by_side: a header must read 'Name: value', not {line!r}")
        out[name.strip()] = value.strip()
    return out


def print_table(result: dict[str, Any]) -> None:
    targets = result["targets"]
    w = max(len(k) for k in targets)
    s = result["settings"]
    print(
        f"\n{result['tool']}: {s['threads']} threads, {s['connections']} connections, "
        f"{s['rounds']} rounds of {s['seconds_per_round']:g} s per side"
    )
    print(f"{'side':<{w}}  {'req/s':>9}  {'p50':>10}  {'p99':>10}  errors")
    for name, r in targets.items():
        print(
            f"{name:<{w}}  {r['throughput_rps']:>9.1f}  {r['p50_ms']:>7.1f} ms  "
            f"{r['p99_ms']:>7.1f} ms  {r['errors']}"
        )
    names = list(targets)
    if len(names) == 2 and targets[names[1]]["throughput_rps"]:
        ratio = targets[names[0]]["throughput_rps"] / targets[names[1]]["throughput_rps"]
        print(f"{names[0]} / {names[1]} (req/s): {ratio:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="keysafe's gated sign beside another signer over HTTP, with wrk",
        epilog="Without --other-url the other side is keysafe's own no-op (whoami).",
    )
    parser.add_argument("--other-name", default="other", help="what to call the other side")
    parser.add_argument("--other-url", help="the other signer's full URL (http://host:port/path)")
    parser.add_argument("--other-method", default="POST", help="its HTTP method (default POST)")
    parser.add_argument(
        "--other-header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a header to send it (repeatable); secrets: use --other-header-file",
    )
    parser.add_argument(
        "--other-header-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="headers to send it, one 'Name: value' a line",
    )
    parser.add_argument(
        "--other-body",
        type=Path,
        metavar="FILE",
        help="the request body to send it (sent as is, every time)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--connections",
        type=int,
        default=8,
        help="keep-alive connections, the same for both sides (default 8)",
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per side per round (default 10)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "side_by_side.json",
        help="where to write the JSON (default benchmarks/side_by_side.json)",
    )
    parser.add_argument(
        "--print-solana-tx",
        metavar="ADDRESS",
        help="print an unsigned SOL transfer (base64) from ADDRESS and exit",
    )
    args = parser.parse_args(argv)
    if args.print_solana_tx:
        print(common.solana_transfers(args.print_solana_tx, 1)[0])
        return 0
    if args.connections < 1 or args.threads < 1 or args.rounds < 1 or args.duration < 1:
        parser.error("--connections, --threads, --rounds and --duration must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="keysafe-side-by-side-"))
    os.chmod(work, 0o700)
    started = time.perf_counter()
    try:
        try:
            ensure_wrk()
        except WrkMissing as exc:
            print(f"side_by_side: {exc}", file=sys.stderr)
            return 1
        print(f"building a throwaway keysafe vault in {work} …", flush=True)
        with keysafe_server(None, work) as (vault, server):
            sign, noop = keysafe_targets(vault, server.url)
            other = noop
            if args.other_url:
                other = Target(
                    args.other_name,
                    args.other_url,
                    args.other_method.upper(),
                    _headers(args.other_header, args.other_header_file),
                    args.other_body.read_bytes() if args.other_body else None,
                )
            try:
                result = compare(
                    [sign, other],
                    work,
                    threads=args.threads,
                    connections=args.connections,
                    seconds=args.duration,
                    rounds=args.rounds,
                )
            except (RuntimeError, WrkMissing) as exc:
                print(f"side_by_side: {exc}", file=sys.stderr)
                return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["duration_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
