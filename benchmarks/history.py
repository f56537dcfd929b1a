"""Does anything grow with history? On two copies of the same vault, one as built ("empty") and
one given a long past (100k audit entries and 10k ledger rows by default):

- `audit verify` of the long chain, keyed (the owner's seals too, what `keysafe audit verify`
  does with the passphrase) and unkeyed, beside SHA-256 over the same bytes with hashlib (each
  entry's previous hash and canonical JSON: the least any chain check must hash);
- server startup (spawn to the first healthy answer, unlock included) on each copy;
- policy-gated Solana signing throughput at 8 agents on each copy, in alternating rounds.

The past is written in-process with the real append functions (audit/log.py `append`, under
the vault's audit key; store/ledger.py `reserve` + `settle`) and is not timed. Ledger rows go to
the agents the throughput figure uses, under the rule it exercises, spread over the last 30
days (so a few per agent fall inside the rule's 24h window, the rest are history).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks import common, http_signing

MEASURED_AGENTS = 8
SPAN = timedelta(days=30)


def fill(v: common.BenchVault, *, audit_entries: int, ledger_rows: int) -> dict[str, Any]:
    """Append `audit_entries` audit entries and `ledger_rows` committed ledger rows."""
    from keysafe.audit import log as audit_log
    from keysafe.store import ledger
    from keysafe.vault.vault import iso

    t0 = time.perf_counter()
    now = datetime.now(UTC)
    sol_to = common.sol_recipient()
    with common.unlocked(v.home) as vault:
        key = vault.subkey("audit-hmac")
        try:
            batch = 5000
            for start in range(0, audit_entries, batch):
                with vault.db.write() as conn:
                    for i in range(start, min(start + batch, audit_entries)):
                        agent = common.agent_name(i % MEASURED_AGENTS)
                        when = iso(now - SPAN + SPAN * (i / max(audit_entries, 1)))
                        rid = secrets.token_hex(16)
                        if i % 2 == 0:
                            action, target, outcome = (
                                "decide.solana.transfer",
                                f"agent:{agent}",
                                "allow",
                            )
                            details: dict[str, Any] = {
                                "agent": agent, "rule": common.SOL_RULE, "code": None,
                                "chain": "solana", "amount": "0.000001", "recipient": sol_to,
                                "request_id": rid, "intent": secrets.token_hex(32),
                            }  # fmt: skip
                        else:
                            action, target, outcome = (
                                "solana.sign_transaction",
                                "wallet:sol",
                                "success",
                            )
                            details = {
                                "agent": agent, "request_id": rid, "wallet": "sol",
                                "chain": "solana", "tx_hash": secrets.token_hex(32),
                                "status": "signed", "summary": f"send 0.000001 SOL to {sol_to}",
                            }  # fmt: skip
                        audit_log.append(
                            conn, time=when, actor=f"agent:{agent}", action=action,
                            target=target, outcome=outcome, details=details,
                            audit_key=key.reveal(), vault_id=vault.vault_id,
                        )  # fmt: skip
        finally:
            key.wipe()
        with vault.db.write() as conn:
            for i in range(ledger_rows):
                agent = common.agent_name(i % MEASURED_AGENTS)
                rid = secrets.token_hex(16)
                at = now - SPAN + SPAN * (i / max(ledger_rows, 1))
                ledger.reserve(conn, agent=agent, request_id=rid,
                               charges=[(common.SOL_RULE, "SOL", 1000)], at=at)  # fmt: skip
                ledger.settle(conn, agent, rid, state="committed")
    db_bytes = sum(p.stat().st_size for p in v.home.iterdir() if p.name.startswith("vault.db"))
    return {
        "audit_entries_added": audit_entries,
        "ledger_rows_added": ledger_rows,
        "build_s_not_measured": time.perf_counter() - t0,
        "db_bytes": db_bytes,
    }


def _verify_figures(v: common.BenchVault) -> dict[str, Any]:
    from sqlalchemy import select

    from keysafe.audit import log as audit_log
    from keysafe.audit.record import AuditEntry
    from keysafe.service import audit
    from keysafe.store import tables as t

    with common.unlocked(v.home) as vault:
        t0 = time.perf_counter()
        keyed = audit.verify(vault)
        keyed_s = time.perf_counter() - t0
        with vault.db.read() as conn:
            t0 = time.perf_counter()
            unkeyed = audit_log.verify(conn)
            unkeyed_s = time.perf_counter() - t0
            rows = conn.execute(
                select(t.audit.c.seq, t.audit.c.time, t.audit.c.actor, t.audit.c.action,
                       t.audit.c.target, t.audit.c.outcome, t.audit.c.details,
                       t.audit.c.prev_hash).order_by(t.audit.c.seq)
            ).all()  # fmt: skip
    blobs = [
        bytes.fromhex(r.prev_hash)
        + AuditEntry(
            r.seq, r.time, r.actor, r.action, r.target, r.outcome, json.loads(r.details)
        ).canonical()
        for r in rows
    ]
    t0 = time.perf_counter()
    for b in blobs:
        hashlib.sha256(b).hexdigest()
    hash_s = time.perf_counter() - t0
    assert keyed.ok and unkeyed.ok, (keyed, unkeyed)
    return {
        "entries": keyed.entries,
        "bytes_hashed": sum(len(b) for b in blobs),
        "verify_keyed_s": keyed_s,
        "verify_unkeyed_s": unkeyed_s,
        "hashlib_same_bytes_s": hash_s,
        "ratio_keyed_vs_hashlib": keyed_s / hash_s,
        "ratio_unkeyed_vs_hashlib": unkeyed_s / hash_s,
    }


def measure(
    base: common.BenchVault,
    workdir: Any,
    *,
    audit_entries: int,
    ledger_rows: int,
    startup_repeats: int,
    rounds: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    empty = common.copy_vault(base, workdir / "history-empty")
    big = common.copy_vault(base, workdir / "history-big")
    built = fill(big, audit_entries=audit_entries, ledger_rows=ledger_rows)
    verify = _verify_figures(big)
    sol_pool = common.solana_transfers(base.sol_address, 32)
    startup: dict[str, list[float]] = {"empty": [], "big": []}
    for _ in range(max(0, startup_repeats - 1)):
        for name, v in (("empty", empty), ("big", big)):
            with common.serve(v.home) as s:
                startup[name].append(s.startup_s)
    throughput: dict[str, list[common.LoadResult]] = {"empty": [], "big": []}
    with common.serve(empty.home) as s_empty, common.serve(big.home) as s_big:
        startup["empty"].append(s_empty.startup_s)
        startup["big"].append(s_big.startup_s)
        for _ in range(rounds):
            for name, s, v in (("empty", s_empty, empty), ("big", s_big, big)):
                res = common.run_load(
                    s.port, http_signing.factories("solana", v, s.port, MEASURED_AGENTS, sol_pool),
                    ok_marker=http_signing.SIGNED, warmup=warmup, duration=duration,
                )  # fmt: skip
                throughput[name].append(res)
    after = {"empty": common.verify_audit(empty.home), "big": common.verify_audit(big.home)}
    merged = {k: common.merge(v) for k, v in throughput.items()}
    tput = {k: r.throughput for k, r in merged.items()}
    boot = {k: statistics.median(v) for k, v in startup.items()}
    errors = sum(r.errors for r in merged.values())
    ratio = tput["big"] / tput["empty"]
    return {
        "figure": "history: audit verify, startup and 8-agent throughput with a long past",
        "history": built,
        "audit_verify": verify,
        "startup_s": {"empty": boot["empty"], "big": boot["big"], "samples": startup},
        "startup_ratio_big_vs_empty": boot["big"] / boot["empty"],
        "startup_big_vs_hashlib": boot["big"] / verify["hashlib_same_bytes_s"],
        "throughput_rps": tput,
        "throughput_detail": {k: r.to_dict() for k, r in merged.items()},
        "errors": errors,
        "audit_after": after,
        "ratio": ratio,
        "target": {"min": 0.9, "met": bool(ratio >= 0.9 and errors == 0)},
    }
