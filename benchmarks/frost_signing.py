"""2-of-3 FROST(Ed25519) signing cost, beside plain Ed25519 signing with PyNaCl in the same run.

    .venv/bin/python benchmarks/frost_signing.py             # 200 signatures
    .venv/bin/python benchmarks/frost_signing.py --rounds 5  # smoke

Reports, per signature: CPU time of each signer (round one + round two), of the coordinator
(collecting, verifying both shares, aggregating, verifying the result twice), and end to end in
one process (all parties, messages through their wire form, in-memory single-use nonces); plus
the DKG once. Writes benchmarks/frost_signing.json.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from keysafe.mpc.frost import session
from keysafe.mpc.frost.groups import ED25519
from keysafe.mpc.frost.keys import AGENT, USER, KeyPackage

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from benchmarks import ceremony  # noqa: E402 - after the path is set


class _Timed:
    """A signer endpoint that adds the CPU time its own rounds take to `spent`."""

    def __init__(self, signer: session.Signer, spent: list[float]) -> None:
        self.signer, self.spent = signer, spent

    def _time(self, fn: Callable[[bytes], bytes], data: bytes) -> bytes:
        t0 = time.process_time()
        out = fn(data)
        self.spent[-1] += time.process_time() - t0
        return out

    def handle_round1(self, data: bytes) -> bytes:
        return self._time(self.signer.handle_round1, data)

    def handle_round2(self, data: bytes) -> bytes:
        return self._time(self.signer.handle_round2, data)


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def measure(rounds: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    keys: dict[int, KeyPackage] = ceremony.keys(ED25519)
    dkg_s = time.perf_counter() - t0
    per_party: dict[int, list[float]] = {AGENT: [], USER: []}
    total: list[float] = []
    coordinator_cpu: list[float] = []
    for _ in range(rounds):
        message = secrets.token_bytes(200)  # about a Solana transfer message
        for spent in per_party.values():
            spent.append(0.0)
        endpoints = {
            i: _Timed(
                session.Signer(keys[i], session.MemoryNonceStore(), check_message=lambda r: True),
                per_party[i],
            )
            for i in (AGENT, USER)
        }
        c0, w0 = time.process_time(), time.perf_counter()
        signature = session.Coordinator(keys[USER].public, [AGENT, USER], message).run(endpoints)
        total.append(time.perf_counter() - w0)
        coordinator_cpu.append(
            time.process_time() - c0 - per_party[AGENT][-1] - per_party[USER][-1]
        )
        assert len(signature) == 64
    baseline: list[float] = []
    key = SigningKey.generate()
    for _ in range(rounds):
        message = secrets.token_bytes(200)
        t = time.perf_counter()
        key.sign(message)
        baseline.append(time.perf_counter() - t)
    end_to_end, plain = _ms(total), _ms(baseline)
    return {
        "figure": "FROST(Ed25519) 2-of-3 signing, agent + user, one process",
        "rounds": rounds,
        "dkg_ms": dkg_s * 1000,
        "agent_cpu": _ms(per_party[AGENT]),
        "user_cpu": _ms(per_party[USER]),
        "coordinator_cpu": _ms(coordinator_cpu),
        "end_to_end": end_to_end,
        "baseline_pynacl_sign": plain,
        "ratio_end_to_end_vs_plain": end_to_end["p50_ms"] / plain["p50_ms"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="signatures (default 200)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).with_name("frost_signing.json"),
        help="where to write the JSON",
    )
    args = parser.parse_args(argv)
    result = measure(args.rounds)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'figure':<34}{'p50 ms':>10}")
    for label, key in (
        ("agent CPU (round 1 + 2)", "agent_cpu"),
        ("vault/user CPU (round 1 + 2)", "user_cpu"),
        ("coordinator CPU", "coordinator_cpu"),
        ("2-of-3 end to end (one process)", "end_to_end"),
        ("baseline: PyNaCl Ed25519 sign", "baseline_pynacl_sign"),
    ):
        print(f"{label:<34}{result[key]['p50_ms']:>10.3f}")
    print(f"DKG (three parties, one process): {result['dkg_ms']:.1f} ms")
    print(f"2-of-3 / plain signing (p50): {result['ratio_end_to_end_vs_plain']:.0f}×")


if __name__ == "__main__":
    main()
