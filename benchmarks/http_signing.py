"""End-to-end `sign_transaction` over HTTP at 1, 8 and 32 concurrent agents, beside the
authenticated no-op `GET /v1/agent/whoami` on the same server and raw in-process signing with the
same libraries (solders `Keypair.sign_message`, eth-account `Account.sign_transaction`); plus
the server's peak RSS idle and under the 32-agent load. At 8 agents a bare ASGI endpoint served by
the same uvicorn call (benchmarks/bare_asgi.py) runs in the same rounds: the floor whoami is
measured against.

Each level runs whoami, then Solana, then EVM, each for the same time, closed loop (every agent
sends its next request when the previous answer arrives, on its own keep-alive connection).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from benchmarks import bare_asgi, common

LEVELS = (1, 8, 32)
BARE_LEVEL = 8  # the level at which the bare ASGI endpoint runs beside whoami
SIGNED = b'"status":"signed"'


def raw_signing(seconds: float) -> dict[str, Any]:
    """The same signatures in-process with the same libraries, no vault, no policy, no HTTP."""
    from eth_account import Account
    from solders.keypair import Keypair
    from solders.transaction import VersionedTransaction

    kp = Keypair()
    txs = common.solana_transfers(str(kp.pubkey()), 64)
    messages = [bytes(VersionedTransaction.from_bytes(_b64(t)).message) for t in txs]
    i = 0

    def sol() -> None:
        nonlocal i
        kp.sign_message(messages[i % len(messages)])
        i += 1

    acct = Account.create()
    evm_txs = [_eth_account_dict(common.evm_transfer(n)) for n in range(64)]
    j = 0

    def evm() -> None:
        nonlocal j
        Account.sign_transaction(evm_txs[j % len(evm_txs)], acct.key)
        j += 1

    out = {}
    for name, fn in (("solana", sol), ("evm", evm)):
        samples = common.time_calls(fn, seconds=seconds, min_calls=20)
        s = common.summary(samples)
        out[name] = {
            "ops_per_s": len(samples) / sum(samples),
            "p50_ms": s["p50_ms"],
            "p99_ms": s["p99_ms"],
            "library": "solders Keypair.sign_message"
            if name == "solana"
            else "eth_account Account.sign_transaction",
        }
    return out


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def _eth_account_dict(tx: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": 2,
        "to": tx["to"],
        "value": int(tx["value"], 16),
        "chainId": tx["chainId"],
        "nonce": tx["nonce"],
        "gas": tx["gas"],
        "maxFeePerGas": int(tx["maxFeePerGas"], 16),
        "maxPriorityFeePerGas": int(tx["maxPriorityFeePerGas"], 16),
    }


def _same(req: bytes, n: int) -> bytes:
    return req


def _cycle(reqs: list[bytes], n: int) -> bytes:
    return reqs[n % len(reqs)]


def factories(
    kind: str, vault: common.BenchVault, port: int, agents: int, sol_pool: list[str]
) -> list[Callable[[int], bytes]]:
    """One request factory per agent: whoami, a Solana transfer or an EIP-1559 transfer; "bare"
    is the whoami request sent to the bare ASGI endpoint (listening on `port`)."""
    out: list[Callable[[int], bytes]] = []
    for a in range(agents):
        token = vault.token(a)
        if kind in ("whoami", "bare"):
            req = common.http_request("GET", "/v1/agent/whoami", port, token)
            out.append(functools.partial(_same, req))
        elif kind == "solana":
            path = "/v1/agent/sign-transaction"
            bodies = [
                common.http_request("POST", path, port, token, {"wallet": "sol", "transaction": tx})
                for tx in sol_pool
            ]
            out.append(functools.partial(_cycle, bodies))
        else:

            def evm(n: int, token: str = token) -> bytes:
                return common.http_request(
                    "POST",
                    "/v1/agent/sign-transaction",
                    port,
                    token,
                    {"wallet": "evm", "transaction": common.evm_transfer(n)},
                )

            out.append(evm)
    return out


# A window shorter than one request's latency at that level counts nothing (a request counts only
# when it starts and ends inside the window): at 32 agents one signature waits behind ~31 others.
MIN_WINDOW_PER_AGENT = 0.1


def measure(
    vault: common.BenchVault,
    *,
    warmup: float,
    duration: float,
    raw_seconds: float,
    rounds: int = 2,
) -> dict[str, Any]:
    """Run the sweep on a fresh server over `vault` (which must hold ≥ 32 agents). Each level
    runs `rounds` rounds of whoami, Solana, EVM (each `duration / rounds` seconds after its own
    `warmup`), so a passing disturbance on the machine does not land on one side only."""
    sol_pool = common.solana_transfers(vault.sol_address, 32)
    levels: dict[str, dict[str, Any]] = {}
    with common.serve(vault.home) as server, bare_asgi.serve(vault.home.parent) as bare:
        # One request of each kind first: imports and caches, not counted as idle memory.
        common.run_load(
            server.port,
            factories("whoami", vault, server.port, 1, sol_pool),
            warmup=0,
            duration=0.2,
        )
        time.sleep(0.5)
        idle = server.memory()  # VmHWM here includes the unlock (Argon2id's 64 MiB)
        startup_s = server.startup_s
        peaks: dict[str, int | None] = {}
        for n in LEVELS:
            # The peak is reset before each level (Linux clear_refs), so each reading is that
            # level's own peak; where the kernel refuses, it is the peak since startup.
            peak_reset = server.reset_peak()
            runs: dict[str, list[common.LoadResult]] = {"whoami": [], "solana": [], "evm": []}
            if n == BARE_LEVEL:
                runs["bare"] = []
            for _ in range(rounds):
                for kind, out in runs.items():
                    port = bare.port if kind == "bare" else server.port
                    out.append(
                        common.run_load(
                            port,
                            factories(kind, vault, port, n, sol_pool),
                            ok_marker=None if kind in ("whoami", "bare") else SIGNED,
                            warmup=warmup,
                            duration=max(duration / rounds, MIN_WINDOW_PER_AGENT * n),
                        )
                    )
            levels[str(n)] = {kind: common.merge(out).to_dict() for kind, out in runs.items()}
            peaks[str(n)] = server.memory().get("VmHWM")
        loaded = server.memory()
    audit = common.verify_audit(vault.home)
    raw = raw_signing(raw_seconds)
    for row in levels.values():
        for kind in ("solana", "evm"):
            row[f"{kind}_vs_whoami"] = row[kind]["throughput_rps"] / row["whoami"]["throughput_rps"]
            row[f"{kind}_vs_raw"] = row[kind]["throughput_rps"] / raw[kind]["ops_per_s"]
    eight = levels["8"]
    eight["whoami_vs_bare"] = eight["whoami"]["throughput_rps"] / eight["bare"]["throughput_rps"]
    errors_8 = eight["solana"]["errors"] + eight["whoami"]["errors"]
    ratio = eight["solana_vs_whoami"]
    return {
        "figure": "sign_transaction over HTTP vs whoami (no-op) and raw in-process signing",
        "levels": levels,
        "raw_in_process": raw,
        "audit_after": audit,
        "server_startup_s": startup_s,
        "memory_kib": {
            "idle_rss": idle.get("VmRSS"),
            "peak_through_unlock": idle.get("VmHWM"),
            "after_load_rss": loaded.get("VmRSS"),
            "peak_per_level": peaks,
            "peak_under_32_agents": peaks["32"],
            "peak_reset_works": peak_reset,
        },
        "ratio": ratio,
        "noop_vs_bare": {
            "ratio": eight["whoami_vs_bare"],
            "target": 0.25,
            "met": bool(
                eight["whoami_vs_bare"] >= 0.25
                and eight["bare"]["errors"] == 0
                and eight["whoami"]["errors"] == 0
            ),
        },
        "target": {
            "solana_vs_whoami_at_8": 0.5,
            "met": bool(ratio >= 0.5 and errors_8 == 0 and audit["ok"]),
            "errors_at_8": errors_8,
        },
    }
