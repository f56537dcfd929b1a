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
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

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
        """The bytes the entry's hash covers: RFC 8785 JSON of every field."""
        return jcs.dumps(self.to_dict())

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


def entry_mac(audit_key: bytes | bytearray, digest: str) -> str:
    """The keyed seal of one entry: only the vault's owner can make it (HMAC under the audit
    key)."""
    return hmac.new(
        bytes(audit_key), b"keysafe/v1/audit-entry" + bytes.fromhex(digest), hashlib.sha256
    ).hexdigest()


def checkpoint_mac(audit_key: bytes | bytearray, vault_id: str, seq: int, digest: str) -> str:
    """The keyed seal of the chain's head: it commits, through the hash chain, to every entry."""
    msg = jcs.dumps({"purpose": "audit-checkpoint", "vault": vault_id, "seq": seq, "hash": digest})
    return hmac.new(bytes(audit_key), msg, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Keyed:
    """What keyed verification needs: the audit key and the sealed checkpoint."""

    audit_key: bytes
    vault_id: str
    checkpoint_seq: int
    checkpoint_mac: str | None


_HEX64 = re.compile(r"[0-9a-f]{64}")


class ChainRow(NamedTuple):
    seq: Any
    time: Any
    actor: Any
    action: Any
    target: Any
    outcome: Any
    details: Any
    prev_hash: Any
    hash: Any
    mac: Any = None


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    entries: int
    first_bad_seq: int | None
    problem: str | None
    keyed: bool = False  # True when the owner's key also checked the entry seals and checkpoint
    unsealed: bool = False  # the chain is intact, but entries from first_bad_seq lack the seal

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad_seq": self.first_bad_seq,
            "keyed": self.keyed,
            "problem": self.problem,
            "unsealed": self.unsealed,
        }


def verify_chain(
    rows: Iterable[tuple[Any, ...]],
    *,
    head_seq: int,
    head_hash: str,
    keyed: Keyed | None = None,
) -> ChainReport:
    """Walk rows in seq order:
    (seq, time, actor, action, target, outcome, details, prev, hash[, mac]).

    Unkeyed, this catches any edit, deletion, insertion or reordering that was not followed by
    recomputing every later hash and the head. Keyed (the owner unlocked), it also checks each
    entry's seal and the sealed checkpoint, which an attacker without the key cannot recompute.
    The checks run in this order, and the first that fails is the report: each entry in turn
    (`_check_entry`), the head (`_check_head`), the unsealed entries (`_check_sealed`), the
    sealed checkpoint (`_check_checkpoint`).
    """
    walk = _Walk(keyed.audit_key if keyed is not None else None)
    for raw in rows:
        broken = _check_entry(walk, raw)
        if broken is not None:
            return broken
    return (
        _check_head(walk, head_seq, head_hash)
        or _check_sealed(walk)
        or _check_checkpoint(walk, keyed)
        or ChainReport(True, walk.count, None, None, keyed is not None)
    )


@dataclass(slots=True)
class _Walk:
    """Where the walk through the chain stands."""

    audit_key: bytes | None  # with it, each entry's seal is checked too
    expected_seq: int = 1
    prev: str = GENESIS_HASH  # the hash the next entry must link to
    count: int = 0  # rows read so far
    hashes: dict[int, str] = field(default_factory=dict)  # seq -> hash, for the checkpoint
    first_unsealed: int | None = None


def _check_entry(walk: _Walk, raw: tuple[Any, ...]) -> ChainReport | None:
    """One row: well formed, the next seq, linked to the previous hash, its own hash right
    and, keyed, its seal right (a missing seal is remembered, not refused here)."""
    walk.count += 1
    row = _row_at(walk, raw)
    if isinstance(row, ChainReport):
        return row
    seq, count = row.seq, walk.count
    entry = _entry_of(row)
    if entry is None or not all(
        isinstance(h, str) and _HEX64.fullmatch(h) for h in (row.prev_hash, row.hash)
    ):
        return ChainReport(False, count, seq, f"entry {seq} is malformed")
    if not hmac.compare_digest(row.prev_hash, walk.prev):
        return ChainReport(
            False, count, seq, f"entry {seq} does not link to entry {seq - 1} (moved or edited)"
        )
    if not hmac.compare_digest(entry_hash(walk.prev, entry), row.hash):
        return ChainReport(False, count, seq, f"entry {seq} was edited after it was written")
    if walk.audit_key is not None:
        if row.mac is None:
            walk.first_unsealed = walk.first_unsealed or seq
        elif not (
            isinstance(row.mac, str)
            and hmac.compare_digest(entry_mac(walk.audit_key, row.hash), row.mac)
        ):
            return ChainReport(
                False,
                count,
                seq,
                f"entry {seq} was rewritten (its seal does not match)",
                keyed=True,
            )
    walk.hashes[seq] = walk.prev = row.hash
    walk.expected_seq += 1
    return None


def _row_at(walk: _Walk, raw: tuple[Any, ...]) -> ChainRow | ChainReport:
    """The row as a ChainRow, if it has the right fields and the seq the walk expects."""
    expected, count = walk.expected_seq, walk.count
    try:
        row = ChainRow(*raw)
    except TypeError:
        return ChainReport(False, count, expected, f"entry {expected} is malformed")
    seq = row.seq
    if not isinstance(seq, int) or isinstance(seq, bool):
        return ChainReport(False, count, expected, f"entry {expected} is malformed")
    if seq > expected:
        return ChainReport(
            False, count, expected, f"entry {expected} is missing (the next entry is {seq})"
        )
    if seq < expected:
        return ChainReport(
            False, count, expected, f"entry {seq} appears out of order after entry {expected - 1}"
        )
    return row


def _check_head(walk: _Walk, head_seq: int, head_hash: str) -> ChainReport | None:
    """The newest entry is the head the vault remembers: nothing cut off or added behind it."""
    last, count = walk.expected_seq - 1, walk.count
    if not (isinstance(head_hash, str) and _HEX64.fullmatch(head_hash)):
        return ChainReport(False, count, max(head_seq, 1), "the head of the chain is malformed")
    if last < head_seq:
        return ChainReport(
            False, count, last + 1, f"entries {last + 1}…{head_seq} were removed from the end"
        )
    if last > head_seq:
        return ChainReport(
            False, count, head_seq + 1, f"entries after {head_seq} were added behind the head"
        )
    if not hmac.compare_digest(walk.prev, head_hash):
        return ChainReport(
            False, count, max(head_seq, 1), "the newest entry does not match the head"
        )
    return None


def _check_sealed(walk: _Walk) -> ChainReport | None:
    """Keyed: every entry carries the owner's seal."""
    first = walk.first_unsealed
    if first is None:
        return None
    # Written without the owner's key: while the vault was locked, or by someone editing the
    # file. Either way the owner has not vouched for it (`keysafe audit seal` shows them).
    return ChainReport(
        False,
        walk.count,
        first,
        f"entry {first} and later ones are not sealed: written while the vault was "
        "locked, or forged; review them with `keysafe audit seal`",
        keyed=True,
        unsealed=True,
    )


def _check_checkpoint(walk: _Walk, keyed: Keyed | None) -> ChainReport | None:
    """Keyed: the sealed checkpoint still matches the entry it was made at."""
    if keyed is None or not keyed.checkpoint_seq:
        return None
    at = walk.hashes.get(keyed.checkpoint_seq)
    good = (
        at is not None
        and keyed.checkpoint_mac is not None
        and hmac.compare_digest(
            checkpoint_mac(keyed.audit_key, keyed.vault_id, keyed.checkpoint_seq, at),
            keyed.checkpoint_mac,
        )
    )
    if good:
        return None
    return ChainReport(
        False,
        walk.count,
        keyed.checkpoint_seq,
        f"the chain was rewritten up to entry {keyed.checkpoint_seq} "
        "(the sealed checkpoint no longer matches)",
        keyed=True,
    )


def _entry_of(row: ChainRow) -> AuditEntry | None:
    fields = (row.time, row.actor, row.action, row.target, row.outcome, row.details)
    if not all(isinstance(f, str) for f in fields):
        return None
    try:
        parsed = json.loads(row.details)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    entry = AuditEntry(row.seq, row.time, row.actor, row.action, row.target, row.outcome, parsed)
    try:
        entry.canonical()
    except Exception:  # rfc8785 refuses what JSON cannot canonicalise: treat as malformed
        return None
    return entry
