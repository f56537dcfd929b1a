"""MCP overhead: `sign_transaction` through `keysafe mcp` (stdio, the SDK's own client) beside the
same call straight over HTTP to `keysafe serve`, in one run, on one throwaway vault.

    .venv/bin/python benchmarks/mcp_overhead.py            # 300 calls each way
    .venv/bin/python benchmarks/mcp_overhead.py --calls 5  # smoke

Prints p50/p95 per call and the ratio MCP / HTTP (target ≤ 2×), and writes
benchmarks/mcp_overhead.json. The two paths alternate in rounds so machine noise hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from keysafe.testing import free_port

KEYSAFE = shutil.which("keysafe", path=str(Path(sys.executable).parent)) or "keysafe"
PASSPHRASE = "benchmark passphrase, throwaway vault"  # noqa: S105 - a throwaway vault
RECIPIENT = "0x1111111111111111111111111111111111111111"
POLICY = f"""\
version: 1
rules:
  - name: bench
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{RECIPIENT}"]
    max_per_tx: {{ETH: "1"}}
"""


def _tx(nonce: int) -> dict[str, Any]:
    return {
        "to": RECIPIENT,
        "value": hex(10**12),
        "chainId": 1,
        "nonce": nonce,
        "gas": 21000,
        "gasPrice": hex(10**9),
    }


def _ks(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([KEYSAFE, *args], env=env, capture_output=True, text=True, check=True)
    return proc.stdout


@contextmanager
def throwaway_server() -> Iterator[tuple[str, str]]:
    """A new vault with wallet `main` and agent `bench`, served on a free port: (url, token)."""
    tmp = Path(tempfile.mkdtemp(prefix="keysafe-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    env |= {"KEYSAFE_HOME": str(tmp / "home"), "KEYSAFE_PASSPHRASE": PASSPHRASE}
    proc: subprocess.Popen[bytes] | None = None
    try:
        _ks(env, "init", "--json")
        _ks(env, "wallet", "create", "main", "--chain", "evm", "--json")
        (tmp / "policy.yaml").write_text(POLICY)
        token = json.loads(
            _ks(env, "agent", "add", "bench", "--policy", str(tmp / "policy.yaml"), "--json")
        )["token"]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [KEYSAFE, "serve", "--unlock", "--port", str(port), "--rate-limit", "100000"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("keysafe serve did not start")
            time.sleep(0.1)
        yield url, token
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "calls": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


async def measure(url: str, token: str, calls: int, rounds: int = 5) -> dict[str, Any]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    env |= {"KEYSAFE_URL": url, "KEYSAFE_AGENT_TOKEN": token}
    params = StdioServerParameters(command=KEYSAFE, args=["mcp"], env=env)
    headers = {"authorization": f"Bearer {token}"}
    http_samples: list[float] = []
    mcp_samples: list[float] = []
    nonce = 0
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http,
        Client(params) as mcp,
    ):

        async def via_http(n: int) -> None:
            r = await http.post(
                "/v1/agent/sign-transaction", json={"wallet": "main", "transaction": _tx(n)}
            )
            assert r.status_code == 200 and r.json()["status"] == "signed", r.text

        async def via_mcp(n: int) -> None:
            r = await mcp.call_tool("sign_transaction", {"wallet": "main", "transaction": _tx(n)})
            assert not r.is_error and (r.structured_content or {}).get("status") == "signed", r

        async def timed(fn: Callable[[int], Awaitable[None]], out: list[float], k: int) -> None:
            nonlocal nonce
            for _ in range(k):
                nonce += 1
                t0 = time.perf_counter()
                await fn(nonce)
                out.append(time.perf_counter() - t0)

        await timed(via_http, [], 5)  # warm both paths (connections, imports, caches)
        await timed(via_mcp, [], 5)
        per_round = max(1, calls // rounds)
        for _ in range(rounds):
            await timed(via_http, http_samples, per_round)
            await timed(via_mcp, mcp_samples, per_round)
    http_s, mcp_s = _summary(http_samples), _summary(mcp_samples)
    return {
        "figure": "MCP sign_transaction over stdio vs the same call over HTTP",
        "http": http_s,
        "mcp_stdio": mcp_s,
        "ratio_p50": mcp_s["p50_ms"] / http_s["p50_ms"],
        "target_ratio": 2.0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per path (default 300)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).with_name("mcp_overhead.json"),
        help="where to write the JSON",
    )
    args = parser.parse_args(argv)
    with throwaway_server() as (url, token):
        result = asyncio.run(measure(url, token, args.calls))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    h, m = result["http"], result["mcp_stdio"]
    print(f"{'path':<28}{'p50 ms':>10}{'p95 ms':>10}{'calls':>8}")
    print(f"{'HTTP sign_transaction':<28}{h['p50_ms']:>10.2f}{h['p95_ms']:>10.2f}{h['calls']:>8}")
    print(
        f"{'MCP stdio sign_transaction':<28}{m['p50_ms']:>10.2f}{m['p95_ms']:>10.2f}{m['calls']:>8}"
    )
    print(f"MCP / HTTP (p50): {result['ratio_p50']:.2f}× (target ≤ {result['target_ratio']:.0f}×)")


if __name__ == "__main__":
    main()
