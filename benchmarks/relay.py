"""Remote agents: gated signing through sidecar + relay beside the same signing straight over HTTP
to `keysafe serve`, 8 agents in a closed loop, in one run, on one throwaway vault.

    .venv/bin/python benchmarks/relay.py                 # 3 rounds of 4 s per side
    .venv/bin/python benchmarks/relay.py --seconds 1 --rounds 1   # smoke

The vault runs `keysafe serve --relay ws://…` (it connects out to a `keysafe relay` on this
machine); 8 agents are paired with 8 sidecars (`keysafe sidecar pair`, words typed by the
"owner"), each served on its own port. The direct side is 8 token agents of the same policy on
the same server. The two sides alternate in rounds so machine noise hits both. Prints p50/p99
and signatures per second for each, and the ratio relayed / direct; writes benchmarks/relay.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.mcp_overhead import KEYSAFE, PASSPHRASE, POLICY, _ks, _tx
from keysafe.testing import free_port

AGENTS = 8
SIDECAR_PASSPHRASE = "benchmark sidecar passphrase"  # noqa: S105 - a throwaway sidecar


@dataclass(frozen=True)
class Agent:
    url: str
    token: str


def _wait(url: str, proc: subprocess.Popen[bytes], what: str, *, key: str | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        try:
            r = httpx.get(url, timeout=1)
            if r.status_code == 200 and (key is None or r.json().get(key)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


@contextmanager
def _process(
    args: list[str], env: dict[str, str], health: str, what: str, key: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(health, proc, what, key=key)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _pair(owner_env: dict[str, str], name: str, policy: Path, side_env: dict[str, str]) -> str:
    out = _ks(owner_env, "agent", "invite", name, "--policy", str(policy))
    invite = re.search(r"ksi_[A-Za-z0-9_.\-]+", out)
    assert invite is not None, out
    proc = subprocess.Popen(
        [KEYSAFE, "sidecar", "pair", invite.group(0), "--json"],
        env=side_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    words = re.search(r"Pairing words: ((?:[a-z]+ ){3}[a-z]+)", proc.stderr.readline().decode())
    assert words is not None
    for _ in range(100):
        pending = [
            a
            for a in json.loads(_ks(owner_env, "approvals", "--json"))
            if a["kind"] == "pairing" and a["agent"] == name
        ]
        if pending:
            break
        time.sleep(0.1)
    _ks(owner_env, "approve", pending[0]["approval_id"], "--words", words.group(1))
    out_b, err_b = proc.communicate(timeout=60)
    assert proc.returncode == 0, err_b.decode()
    return str(json.loads(out_b)["local_token"])


@contextmanager
def world(agents: int = AGENTS) -> Iterator[tuple[list[Agent], list[Agent]]]:
    """(direct agents, relayed agents): the same policy, the same server."""
    tmp = Path(tempfile.mkdtemp(prefix="keysafe-bench-relay-"))
    base = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    env = base | {"KEYSAFE_HOME": str(tmp / "home"), "KEYSAFE_PASSPHRASE": PASSPHRASE}
    try:
        with ExitStack() as stack:
            _ks(env, "init", "--json")
            _ks(env, "wallet", "create", "main", "--chain", "evm", "--json")
            policy = tmp / "policy.yaml"
            policy.write_text(POLICY)
            add = ("agent", "add", "--policy", str(policy), "--json")
            direct_tokens = [
                json.loads(_ks(env, *add[:2], f"direct{i}", *add[2:]))["token"]
                for i in range(agents)
            ]
            relay_port, port = free_port(), free_port()
            stack.enter_context(
                _process(
                    [KEYSAFE, "relay", "--port", str(relay_port), "--rate", "100000"],
                    base,
                    f"http://127.0.0.1:{relay_port}/v1/relay/health",
                    "keysafe relay",
                )
            )
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(
                _process(
                    [
                        KEYSAFE,
                        "serve",
                        "--unlock",
                        "--port",
                        str(port),
                        "--rate-limit",
                        "100000",
                        "--idle-lock",
                        "0",
                        "--relay",
                        f"ws://127.0.0.1:{relay_port}",
                    ],
                    env,
                    f"{url}/v1/health",
                    "keysafe serve",
                )
            )
            owner = env | {"KEYSAFE_URL": url}
            relayed = []
            for i in range(agents):
                side_env = base | {
                    "KEYSAFE_HOME": str(tmp / f"side{i}"),
                    "KEYSAFE_SIDECAR_PASSPHRASE": SIDECAR_PASSPHRASE,
                }
                token = _pair(owner, f"remote{i}", policy, side_env)
                side_port = free_port()
                side_url = f"http://127.0.0.1:{side_port}"
                stack.enter_context(
                    _process(
                        [KEYSAFE, "sidecar", "--port", str(side_port)],
                        side_env,
                        f"{side_url}/v1/health",
                        f"keysafe sidecar {i}",
                        key="relay",
                    )
                )
                relayed.append(Agent(side_url, token))
            yield [Agent(url, t) for t in direct_tokens], relayed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _load(agents: list[Agent], seconds: float, nonce0: int) -> dict[str, Any]:
    """Each agent signs in a closed loop on its own keep-alive connection for `seconds`."""
    samples: list[float] = []
    errors = 0

    async def one(agent: Agent, k: int) -> None:
        nonlocal errors
        headers = {"authorization": f"Bearer {agent.token}"}
        async with httpx.AsyncClient(base_url=agent.url, headers=headers, timeout=60) as http:
            stop = time.perf_counter() + seconds
            n = nonce0 + k * 1_000_000
            while time.perf_counter() < stop:
                n += 1
                t0 = time.perf_counter()
                r = await http.post(
                    "/v1/agent/sign-transaction", json={"wallet": "main", "transaction": _tx(n)}
                )
                samples.append(time.perf_counter() - t0)
                if r.status_code != 200 or r.json().get("status") != "signed":
                    errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(a, k) for k, a in enumerate(agents)))
    elapsed = time.perf_counter() - t0
    ordered = sorted(samples)
    return {
        "calls": len(ordered),
        "errors": errors,
        "per_s": len(ordered) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000 if ordered else None,
        "p99_ms": ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000 if ordered else None,
    }


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "calls": sum(r["calls"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "per_s": statistics.median(r["per_s"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
    }


def measure(seconds: float = 4.0, rounds: int = 3, agents: int = AGENTS) -> dict[str, Any]:
    with world(agents) as (direct, relayed):
        asyncio.run(_load(direct, 0.5, 1))  # warm both paths
        asyncio.run(_load(relayed, 0.5, 2))
        d_runs, r_runs = [], []
        for i in range(rounds):
            d_runs.append(asyncio.run(_load(direct, seconds, 10 + i)))
            r_runs.append(asyncio.run(_load(relayed, seconds, 20 + i)))
    d, r = _merge(d_runs), _merge(r_runs)
    return {
        "figure": f"gated EVM sign through sidecar + relay vs direct HTTP, {agents} agents",
        "agents": agents,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "direct": d,
        "relayed": r,
        "ratio_throughput": r["per_s"] / d["per_s"] if d["per_s"] else None,
        "ratio_p50": r["p50_ms"] / d["p50_ms"] if d["p50_ms"] else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).with_name("relay.json"),
        help="where to write the JSON",
    )
    args = parser.parse_args(argv)
    result = measure(args.seconds, args.rounds)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    d, r = result["direct"], result["relayed"]
    print(f"{'path':<26}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, x in (("direct HTTP", d), ("sidecar + relay", r)):
        print(f"{name:<26}{x['per_s']:>9.0f}{x['p50_ms']:>9.1f}{x['p99_ms']:>9.1f}{x['errors']:>8}")
    print(
        f"relayed / direct: throughput {result['ratio_throughput']:.2f}×, "
        f"p50 {result['ratio_p50']:.2f}×"
    )


if __name__ == "__main__":
    main()
