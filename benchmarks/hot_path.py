"""Where the time of one policy-gated Solana `sign_transaction` goes.

The service call every surface makes (`keysafe.service.signing.sign_transaction`) is run
in-process on an unlocked copy of the benchmark vault: first timed plainly (its latency, to set
beside the HTTP figures), then under a profiler. pyinstrument or py-spy are not dependencies of
keysafe, so the stdlib's cProfile is used: it shows inclusive time per function (with cProfile's
own overhead, which inflates many small calls evenly). The HTTP layer (FastAPI, uvicorn, the
bearer-token check) is not in this profile; the whoami figure measures it.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
from collections.abc import Callable
from typing import Any

from benchmarks import common

# (label, path suffix of the file, function name or names joined by "|"): inclusive time, nested
# items indented. A stage whose function is renamed shows 0 calls per sign in the report: update
# its name here.
STAGES: tuple[tuple[str, str, str], ...] = (
    (
        "decode the transaction into an intent",
        "keysafe/chains/solana/intents/_transactions.py",
        "intent_from_tx",
    ),
    (
        "read the wallet record and the chain registry (one read)",
        "keysafe/service/signing.py",
        "wallet_and_registry",
    ),
    (
        "gate: decide, sign, book, audit (one write transaction)",
        "keysafe/service/gate.py",
        "_run_in_one_transaction",
    ),
    ("  gate._admit: idempotency, decision, its audit entry", "keysafe/service/gate.py", "_admit"),
    ("  parse the policy YAML (cached per text)", "keysafe/policy/rules.py", "parse_policy"),
    ("  engine.decide (pure)", "keysafe/policy/engine.py", "decide"),
    ("  ledger window sums", "keysafe/store/ledger.py", "usage"),
    ("  ledger.reserve (book the spend)", "keysafe/store/ledger.py", "reserve"),
    ("open the wallet key (AEAD)", "keysafe/vault/vault.py", "open_record"),
    ("sign + verify (solders, PyNaCl)", "keysafe/chains/solana/signing.py", "sign_transaction"),
    ("audit.append (all entries of the call)", "keysafe/audit/log.py", "append"),
    (
        "SQLite COMMIT (fsync, synchronous=FULL)",
        "~",
        "<method 'commit' of 'sqlite3.Connection' objects>",
    ),
    ("SQLAlchemy Connection.execute (all statements)", "sqlalchemy/engine/base.py", "execute"),
    ("statements on the sqlite3 driver (store/hot.py)", "keysafe/store/hot.py", "rows|named|run"),
    ("transactions opened and closed (Database.read/write)", "keysafe/store/db.py", "read|write"),
)


def _inclusive(stats: pstats.Stats, suffix: str, name: str) -> tuple[float, int]:
    total, calls = 0.0, 0
    names = name.split("|")
    for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func in names and (filename.endswith(suffix) or suffix == filename):
            total += ct
            calls += nc
    return total, calls


def _short(filename: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


ROUNDS = 4  # each side's calls are split into rounds that alternate, so drift hits both


def measure(
    vault_copy: common.BenchVault, *, calls: int, past: common.BenchVault | None = None
) -> dict[str, Any]:
    """The profile of `calls` signatures on `vault_copy`; with `past` (a copy of the vault with
    the long past), the same on it under "with_history", the two run in alternating rounds in
    one process (a WAL checkpoint, the disk or another process then weighs on both alike)."""
    from keysafe.service import signing
    from keysafe.service.models import SignTransactionRequest

    sides = {"fresh": vault_copy} | ({"past": past} if past is not None else {})
    txs = {name: common.solana_transfers(v.sol_address, 64) for name, v in sides.items()}
    agent = common.agent_name(0)
    samples: dict[str, list[float]] = {name: [] for name in sides}
    profilers = {name: cProfile.Profile() for name in sides}
    per_round = max(1, calls // ROUNDS)
    with contextlib.ExitStack() as stack:
        vaults = {name: stack.enter_context(common.unlocked(v.home)) for name, v in sides.items()}
        count = dict.fromkeys(sides, 0)

        def signer(name: str) -> Callable[[], None]:
            def one() -> None:
                # The request model is built inside the timed call, as a route's body is.
                ask = SignTransactionRequest(wallet="sol", transaction=txs[name][count[name] % 64])
                res = signing.sign_transaction(vaults[name], agent, ask)
                assert res.status == "signed", res
                count[name] += 1

            return one

        ones = {name: signer(name) for name in sides}
        for one in ones.values():
            for _ in range(5):
                one()  # warm: imports, statement caches
        for _ in range(ROUNDS):
            for name, one in ones.items():
                samples[name] += common.time_calls(one, seconds=0, min_calls=per_round)
                profilers[name].enable()
                for _ in range(per_round):
                    one()
                profilers[name].disable()
    out = _report(profilers["fresh"], samples["fresh"], per_round * ROUNDS)
    if past is not None:
        out["with_history"] = _report(profilers["past"], samples["past"], per_round * ROUNDS)
    return out


def _report(profiler: cProfile.Profile, samples: list[float], calls: int) -> dict[str, Any]:
    plain = common.summary(samples)
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    stages = []
    for label, suffix, name in STAGES:
        t, c = _inclusive(stats, suffix, name)
        stages.append(
            {
                "stage": label,
                "ms_per_call": t / calls * 1000,
                "share": t / total if total else 0.0,
                "calls_per_sign": c / calls,
            }
        )
    own = sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda kv: kv[1][2],
        reverse=True,
    )[:12]
    top = [
        {
            "function": f"{_short(f)}:{line}({func})" if f != "~" else func,
            "own_ms_per_call": tt / calls * 1000,
            "share": tt / total if total else 0.0,
        }
        for (f, line, func), (_cc, _nc, tt, _ct, _callers) in own
    ]
    return {
        "figure": "profile of one policy-gated Solana sign_transaction (in-process, cProfile)",
        "profiler": "cProfile (stdlib)",
        "calls": calls,
        "latency_unprofiled": plain,
        "profiled_ms_per_call": total / calls * 1000,
        "stages": stages,
        "top_own_time": top,
    }
