"""The audit hash chain: each entry's hash covers the previous hash and the entry's canonical JSON.

    hash_n = SHA-256(prev_hash_n ‖ JCS({seq, time, actor, action, target, outcome, details}))

with prev_hash_1 = 32 zero bytes. Editing, deleting, inserting or reordering any entry breaks the
link at that entry; `verify_chain` names the first entry whose link is broken. The vault header
also remembers the newest (seq, hash), so a truncated tail is caught too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from keysafe.crypto import jcs

GENESIS_HASH: Final = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    time: str
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]

    def canonical(self) -> bytes:
        return jcs.dumps(
            {
                "seq": self.seq,
                "time": self.time,
                "actor": self.actor,
                "action": self.action,
                "target": self.target,
                "outcome": self.outcome,
                "details": self.details,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class StoredEntry:
    entry: AuditEntry
    prev_hash: str
    hash: str


def entry_hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + entry.canonical()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    entries: int
    first_bad_seq: int | None
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "first_bad_seq": self.first_bad_seq}


def verify_chain(
    rows: Iterable[tuple[int, str, str, str, str, str, str, str, str]],
    *,
    head_seq: int,
    head_hash: str,
) -> ChainReport:
    """Walk rows in seq order: (seq, time, actor, action, target, outcome, details, prev, hash)."""
    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    for seq, time, actor, action, target, outcome, details, prev_hash, stored_hash in rows:
        count += 1
        if seq != expected_seq:
            if seq > expected_seq:
                why = f"entry {expected_seq} is missing (the next entry is {seq})"
            else:
                why = f"entry {seq} appears out of order after entry {expected_seq - 1}"
            return ChainReport(False, count, expected_seq, why)
        try:
            parsed = json.loads(details)
        except ValueError:
            return ChainReport(False, count, seq, f"entry {seq} has unreadable details")
        if not isinstance(parsed, dict):
            return ChainReport(False, count, seq, f"entry {seq} has unreadable details")
        entry = AuditEntry(seq, time, actor, action, target, outcome, parsed)
        if not hmac.compare_digest(prev_hash, prev):
            return ChainReport(
                False, count, seq, f"entry {seq} does not link to entry {seq - 1} (moved or edited)"
            )
        if not hmac.compare_digest(entry_hash(prev, entry), stored_hash):
            return ChainReport(False, count, seq, f"entry {seq} was edited after it was written")
        prev = stored_hash
        expected_seq += 1
    last = expected_seq - 1
    if last < head_seq:
        return ChainReport(
            False, count, last + 1, f"entries {last + 1}…{head_seq} were removed from the end"
        )
    if last > head_seq or not hmac.compare_digest(prev, head_hash):
        return ChainReport(
            False, count, head_seq if head_seq else 1, "the newest entry does not match the head"
        )
    return ChainReport(True, count, None, None)
