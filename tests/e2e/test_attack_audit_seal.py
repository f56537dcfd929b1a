"""Keyed `audit verify` against entries forged after the last sealed checkpoint (issue 13, hole 5).

Anyone who can write the database file can extend the hash chain (it is plain SHA-256) but not
the owner's HMAC seals. Before: keyed verify accepted such entries, and the next sealed write
moved the checkpoint over them (laundering). Now unsealed entries fail keyed verification, a
checkpoint never covers them, and `keysafe audit seal` lists them before sealing anything.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from keysafe.audit.record import AuditEntry, entry_hash
from keysafe.crypto import jcs
from keysafe.vault.home import DB_NAME
from tests.conftest import Cli


def _forge(db: Path, action: str) -> int:
    """Append one well-chained, unsealed entry, as an attacker with the file but no key can."""
    with sqlite3.connect(db) as c:
        seq, prev = c.execute("SELECT audit_head_seq, audit_head_hash FROM vault").fetchone()
        entry = AuditEntry(
            seq + 1,
            "2026-12-06T00:00:00.000000Z",
            "owner",
            action,
            "agent:bot",
            "success",
            {"note": "forged"},
        )
        digest = entry_hash(prev, entry)
        c.execute(
            "INSERT INTO audit (seq, time, actor, action, target, outcome, details, prev_hash, "
            "hash, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (
                entry.seq,
                entry.time,
                entry.actor,
                entry.action,
                entry.target,
                entry.outcome,
                jcs.dumps(entry.details).decode(),
                prev,
                digest,
            ),
        )
        c.execute("UPDATE vault SET audit_head_seq = ?, audit_head_hash = ?", (entry.seq, digest))
    return entry.seq


def _verify(cli: Cli) -> dict[str, object]:
    r = cli("audit", "verify", "--json")
    report: dict[str, object] = json.loads(r.stdout)
    assert (r.exit_code == 0) == report["ok"]
    return report


def test_attack_forged_entries_fail_keyed_verify_and_are_not_laundered(vault: Cli) -> None:
    assert _verify(vault)["ok"] is True
    forged = _forge(vault.home / DB_NAME, "policy.set")
    report = _verify(vault)
    assert report["ok"] is False and report["keyed"] is True
    assert report["first_bad_seq"] == forged
    # A sealed write afterwards (the owner creates a wallet) must not cover the forgery.
    vault.ok("wallet", "create", "main", "--chain", "evm", "--json")
    report = _verify(vault)
    assert report["ok"] is False and report["first_bad_seq"] == forged
    # The unkeyed check cannot tell: the chain itself is intact.
    assert json.loads(vault("audit", "verify", "--unkeyed", "--json").stdout)["ok"] is True


def test_seal_lists_what_it_seals_and_then_verify_passes(vault: Cli) -> None:
    forged = _forge(vault.home / DB_NAME, "agent.resume")
    r = vault("audit", "seal", input="n\n")
    assert r.exit_code == 1  # the owner said no: nothing sealed
    assert f"{forged:>6}" in r.stdout and "agent.resume" in r.stdout
    assert _verify(vault)["ok"] is False
    out = json.loads(vault.ok("audit", "seal", "--yes", "--json").stdout)
    assert [e["seq"] for e in out["unsealed"]] == [forged] and out["sealed"] == 1
    assert _verify(vault)["ok"] is True
    vault.ok("wallet", "create", "main", "--chain", "evm", "--json")
    assert _verify(vault)["ok"] is True  # and the checkpoint follows the head again
