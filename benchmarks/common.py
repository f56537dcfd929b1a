"""Shared pieces of the benchmark harness (benchmarks/run.py).

- `build_vault`: a throwaway vault built in-process with keysafe's own service functions (a
  Solana and an EVM wallet, N token agents under one policy, optionally a credential), at the
  default Argon2id cost, so the server unlocks it as a real one.
- `serve`: the real `keysafe serve --unlock --rate-limit …` on it, in a subprocess, with its
  startup time and its memory (read from /proc/<pid>/status: VmRSS, VmHWM).
- `run_load`: a closed-loop load generator, one keep-alive HTTP/1.1 connection per agent, written
  on bare asyncio streams so the client costs little CPU next to the server on a 2-core machine.
- `summary`: p50/p99 of a list of seconds, in milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keysafe.testing import Started, start_server, stop_process

ROOT = Path(__file__).resolve().parents[1]
KEYSAFE = shutil.which("keysafe", path=str(Path(sys.executable).parent)) or "keysafe"
PASSPHRASE = "benchmark passphrase, throwaway vault"  # noqa: S105 - a throwaway vault

# Recipients the benchmark policy allows (fixed, so runs are comparable).
EVM_TO = "0x1111111111111111111111111111111111111111"


def sol_recipient() -> str:
    from solders.keypair import Keypair

    return str(Keypair.from_seed(bytes([2] * 32)).pubkey())


SOL_RULE = "sol-pay"
EVM_RULE = "evm-pay"
HTTP_RULE = "upstream-read"
CREDENTIAL = "upstream"
CREDENTIAL_SECRET = "sk-bench-" + "x" * 32  # a throwaway credential


def bench_policy(upstream: str | None) -> str:
    """The agents' policy: Solana and EVM transfers to one recipient each, under a per-tx cap and
    a 24h amount window (so every signature reserves and commits budget), and, when an upstream
    is given, GET requests to it with the credential."""
    text = f"""\
version: 1
rules:
  - name: {SOL_RULE}
    allow: [solana.transfer]
    wallets: [sol]
    chains: [solana]
    assets: [SOL]
    recipients: ["{sol_recipient()}"]
    max_per_tx: {{SOL: "1"}}
    limits:
      - {{window: 24h, max: {{SOL: "1000000"}}}}
  - name: {EVM_RULE}
    allow: [evm.transfer]
    wallets: [evm]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{EVM_TO}"]
    max_per_tx: {{ETH: "1"}}
    limits:
      - {{window: 24h, max: {{ETH: "1000000"}}}}
"""
    if upstream:
        text += f"""\
  - name: {HTTP_RULE}
    allow: [http.request]
    credentials: [{CREDENTIAL}]
    methods: [GET]
    urls: ["http://{upstream}/**"]
"""
    return text


def agent_name(i: int) -> str:
    return f"agent-{i:02d}"


@dataclass(frozen=True)
class BenchVault:
    home: Path
    tokens: dict[str, str]  # agent name -> bearer token
    sol_address: str
    evm_address: str
    database_url: str | None = None  # PostgreSQL (KEYSAFE_DATABASE_URL); None: SQLite in home

    def token(self, i: int) -> str:
        return self.tokens[agent_name(i)]


def build_vault(
    home: Path, *, agents: int, upstream: str | None = None, database_url: str | None = None
) -> BenchVault:
    """init (default Argon2id cost), wallets `sol` and `evm`, `agents` token agents, the policy,
    and the credential `upstream` when an upstream host:port is given. All in-process. With
    `database_url` the vault is in that PostgreSQL database (KEYSAFE_DATABASE_URL)."""
    from keysafe.chains import Chain
    from keysafe.crypto.secret import SecretBytes
    from keysafe.service import agents as agent_svc
    from keysafe.service import credentials, policies, wallets
    from keysafe.service.models import Attachment
    from keysafe.service.vault_admin import init_vault
    from keysafe.vault.home import Home

    vault, phrase = init_vault(
        Home(home, database_url), SecretBytes(bytearray(PASSPHRASE.encode()))
    )
    phrase.wipe()
    try:
        sol = wallets.create_wallet(vault, "sol", Chain.SOLANA)
        evm = wallets.create_wallet(vault, "evm", Chain.EVM)
        if upstream:
            credentials.add_credential(
                vault,
                CREDENTIAL,
                SecretBytes(bytearray(CREDENTIAL_SECRET.encode())),
                hosts=[upstream],
                attach=Attachment.bearer(),
            )
        policy = bench_policy(upstream)
        tokens: dict[str, str] = {}
        for i in range(agents):
            name = agent_name(i)
            _, token = agent_svc.add_agent(vault, name)
            assert token is not None
            tokens[name] = bytes(token.reveal()).decode()
            token.wipe()
            policies.set_policy(vault, name, policy)
    finally:
        vault.lock()
        vault.db.close()
    return BenchVault(home, tokens, sol.address, evm.address, database_url)


def copy_vault(v: BenchVault, dest: Path) -> BenchVault:
    """A private copy of a vault home (0700), e.g. one per server so each has its own ledger.

    The copy is flushed to disk before it is used: a freshly written 80 MB file leaves the
    kernel writing it back for seconds, and the first fsyncs after it (every commit's) wait for
    that writeback, which would be charged to the vault's size rather than to keysafe."""
    shutil.copytree(v.home, dest)
    os.chmod(dest, 0o700)
    os.sync()
    return BenchVault(dest, v.tokens, v.sol_address, v.evm_address)


@contextmanager
def unlocked(home: Path, *, database_url: str | None = None) -> Iterator[Any]:
    """The vault at `home` (or in the PostgreSQL database `database_url`), opened in-process and
    unlocked; locked and closed afterwards."""
    from keysafe.crypto.secret import SecretBytes
    from keysafe.service.context import open_vault
    from keysafe.vault.home import Home

    vault = open_vault(Home(home, database_url))
    try:
        with SecretBytes(bytearray(PASSPHRASE.encode())) as secret:
            vault.unlock(secret)
        yield vault
    finally:
        vault.lock()
        vault.db.close()


def verify_audit(home: Path, *, database_url: str | None = None) -> dict[str, Any]:
    """`keysafe audit verify` in-process, keyed (the owner's seals too)."""
    from keysafe.service import audit

    with unlocked(home, database_url=database_url) as vault:
        report: dict[str, Any] = audit.verify(vault).to_dict()
    return report


# -- transactions ------------------------------------------------------------------------------


def solana_transfers(wallet: str, count: int) -> list[str]:
    """`count` distinct unsigned SOL transfers from the wallet (base64), as an agent sends them."""
    from solders.hash import Hash
    from solders.message import MessageV0
    from solders.pubkey import Pubkey
    from solders.signature import Signature
    from solders.system_program import TransferParams, transfer
    from solders.transaction import VersionedTransaction

    payer, to = Pubkey.from_string(wallet), Pubkey.from_string(sol_recipient())
    out = []
    for i in range(count):
        ix = transfer(TransferParams(from_pubkey=payer, to_pubkey=to, lamports=1000 + i))
        msg = MessageV0.try_compile(payer, [ix], [], Hash.default())
        tx = VersionedTransaction.populate(msg, [Signature.default()])
        out.append(base64.b64encode(bytes(tx)).decode())
    return out


def evm_transfer(nonce: int) -> dict[str, Any]:
    """A complete EIP-1559 ETH transfer on chain 1 (nothing for an RPC to fill in)."""
    return {
        "type": 2,
        "to": EVM_TO,
        "value": hex(10**12 + nonce),
        "chainId": 1,
        "nonce": nonce,
        "gas": 21000,
        "maxFeePerGas": hex(30 * 10**9),
        "maxPriorityFeePerGas": hex(10**9),
    }


# -- the server --------------------------------------------------------------------------------


def server_env(home: Path, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    env |= {"KEYSAFE_HOME": str(home), "KEYSAFE_PASSPHRASE": PASSPHRASE}
    return env | ({"KEYSAFE_DATABASE_URL": database_url} if database_url else {})


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def reset_peak(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux: `echo 5 > /proc/<pid>/clear_refs`), so
    a later reading is the peak of what happened since; False where the kernel refuses."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


@dataclass
class Served:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    startup_s: float  # from spawning the process to the first healthy answer
    log: Path

    @classmethod
    def of(cls, started: Started) -> Served:
        return cls(started.url, started.port, started.proc, started.startup_s, started.log_path)

    def memory(self) -> dict[str, int]:
        return proc_memory(self.proc.pid)

    def reset_peak(self) -> bool:
        return reset_peak(self.proc.pid)


@contextmanager
def serve(
    home: Path,
    *,
    rate_limit: float = 1_000_000.0,
    timeout: float = 60,
    database_url: str | None = None,
) -> Iterator[Served]:
    """`keysafe serve --unlock --idle-lock 0 --rate-limit N` on a free port, until healthy (on
    the PostgreSQL database `database_url`, with `home` for its lock and log, when given)."""
    started = start_server(
        lambda port: [
            KEYSAFE,
            "serve",
            "--unlock",
            "--port",
            str(port),
            "--idle-lock",
            "0",
            "--rate-limit",
            str(rate_limit),
        ],
        server_env(home, database_url),
        home.parent,
        name=f"serve-{home.name}",
        timeout=timeout,
    )
    try:
        yield Served.of(started)
    finally:
        stop_process(started.proc, grace=15)


# -- load --------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    agents: int
    seconds: float
    requests: int
    errors: int
    throughput: float  # completed requests per second, all agents together
    p50_ms: float
    p99_ms: float
    first_error: str | None = None
    samples: list[float] = field(default_factory=list, repr=False)  # seconds, not in the JSON
    rounds: list[float] = field(default_factory=list)  # throughput of each round, when merged

    def to_dict(self) -> dict[str, Any]:
        return {
            "agents": self.agents,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "errors": self.errors,
            "throughput_rps": round(self.throughput, 2),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "first_error": self.first_error,
            "throughput_per_round": [round(x, 2) for x in self.rounds or [self.throughput]],
        }


def merge(results: Sequence[LoadResult]) -> LoadResult:
    """Rounds of the same load as one result: requests over the summed time, pooled latencies."""
    samples = [x for r in results for x in r.samples]
    seconds = sum(r.seconds for r in results)
    stats = summary(samples)
    first = next((r.first_error for r in results if r.first_error), None)
    return LoadResult(
        results[0].agents,
        seconds,
        len(samples),
        sum(r.errors for r in results),
        len(samples) / seconds,
        stats["p50_ms"],
        stats["p99_ms"],
        first,
        samples,
        [r.throughput for r in results],
    )


def http_request(method: str, path: str, port: int, token: str, body: Any | None = None) -> bytes:
    """The raw bytes of one HTTP/1.1 request with an agent's bearer token."""
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
    )
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    return (head + "\r\n").encode() + payload


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        return status, await reader.readexactly(length)
    if not chunked:
        raise RuntimeError("response without Content-Length or chunked encoding")
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, body
        body += await reader.readexactly(size)
        await reader.readexactly(2)


RequestFactory = Callable[[int], bytes]  # request number -> raw request bytes


async def _load(
    port: int,
    factories: Sequence[RequestFactory],
    ok_marker: bytes | None,
    warmup: float,
    duration: float,
) -> LoadResult:
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + duration
    samples: list[float] = []
    errors = 0
    first_error: list[str] = []

    async def one_agent(make: RequestFactory) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    return
                writer.write(make(n))
                n += 1
                status, body = await _read_response(reader)
                t1 = time.perf_counter()
                if t0 < measure_from or t1 > end:
                    continue  # warm-up, or finished after the window closed
                samples.append(t1 - t0)
                if status != 200 or (ok_marker is not None and ok_marker not in body):
                    errors += 1
                    if not first_error:
                        first_error.append(f"{status} {body[:300]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(one_agent(f) for f in factories))
    stats = summary(samples)
    return LoadResult(
        len(factories),
        duration,
        len(samples),
        errors,
        len(samples) / duration,
        stats["p50_ms"],
        stats["p99_ms"],
        first_error[0] if first_error else None,
        samples,
    )


def run_load(
    port: int,
    factories: Sequence[RequestFactory],
    *,
    ok_marker: bytes | None = None,
    warmup: float = 1.0,
    duration: float = 5.0,
) -> LoadResult:
    """Closed loop: each factory is one agent sending its next request as soon as the previous
    answer arrives, on its own keep-alive connection. Only requests that start after `warmup`
    and finish within `duration` count."""
    return asyncio.run(_load(port, factories, ok_marker, warmup, duration))


# -- statistics --------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Samples in seconds -> count, p50/p99/mean in milliseconds."""
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    return {
        "count": len(ordered),
        "p50_ms": percentile(ordered, 0.5) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def time_calls(fn: Callable[[], object], *, seconds: float, min_calls: int = 5) -> list[float]:
    """Call `fn` repeatedly for about `seconds` (at least `min_calls` times); per-call seconds."""
    out: list[float] = []
    stop = time.perf_counter() + seconds
    while len(out) < min_calls or time.perf_counter() < stop:
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def new_request_id() -> str:
    return secrets.token_hex(16)


@dataclass
class Figure:
    """One row of the results table: a figure, its baseline, their ratio and the target."""

    key: str
    name: str
    value: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None  # None: no target for this row
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "figure": self.name,
            "value": self.value,
            "baseline": self.baseline,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "target": self.target,
            "met": self.met,
            "note": self.note,
        }
