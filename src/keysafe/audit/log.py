"""Appending to and reading the audit log, inside the caller's transaction.

The caller writes its action and the audit entry in one transaction: if the entry cannot be
written, the transaction rolls back and the action did not happen (fail closed, DESIGN.md step 7).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from keysafe.audit.outcome import Outcome
from keysafe.audit.record import (
    AuditEntry,
    ChainReport,
    ChainRow,
    Keyed,
    checkpoint_mac,
    entry_hash,
    entry_mac,
    verify_chain,
)
from keysafe.audit.redact import redact
from keysafe.crypto import jcs
from keysafe.errors import AuditWriteError
from keysafe.store import hot
from keysafe.store import tables as t

logger = logging.getLogger(__name__)


# Every agent request appends entries: these run on the driver (store/hot.py). The vault
# table has one row, so they need no WHERE.
_HEAD = "SELECT audit_head_seq, audit_head_hash, audit_checkpoint_seq FROM vault"
_INSERT = (
    "INSERT INTO audit (seq, time, actor, action, target, outcome, details, prev_hash, hash, mac) "
    "VALUES (:seq, :time, :actor, :action, :target, :outcome, :details, :prev_hash, :hash, :mac)"
)
_MOVE_HEAD = "UPDATE vault SET audit_head_seq = :seq, audit_head_hash = :hash"
_MOVE_HEAD_AND_CHECKPOINT = (
    "UPDATE vault SET audit_head_seq = :seq, audit_head_hash = :hash, "
    "audit_checkpoint_seq = :seq, audit_checkpoint_mac = :mac"
)


def append(
    conn: Connection,
    *,
    time: str,
    actor: str,
    action: str,
    target: str,
    outcome: Outcome | str,
    details: Mapping[str, Any],
    audit_key: bytes | bytearray | None,
    vault_id: str = "",
) -> AuditEntry:
    """Append one entry; with the audit key, seal it, and move the sealed checkpoint to it when
    every entry before it is sealed. An entry written without the key (while locked, or forged
    by someone editing the file) holds the checkpoint back until the owner has seen and sealed
    it (`seal`): a new checkpoint never covers an unsealed entry silently."""
    clean = redact(details, audit_key)
    outcome = str(outcome)  # a plain str: canonical JSON's fast path (crypto/jcs.py)
    try:
        [(head_seq, head_hash, checkpoint_seq)] = hot.rows(conn, _HEAD, {})
        entry = AuditEntry(head_seq + 1, time, actor, action, target, outcome, clean)
        digest = entry_hash(head_hash, entry)
        hot.run(
            conn,
            _INSERT,
            {
                "seq": entry.seq,
                "time": time,
                "actor": actor,
                "action": action,
                "target": target,
                "outcome": outcome,
                "details": jcs.dumps(clean).decode(),
                "prev_hash": head_hash,
                "hash": digest,
                "mac": entry_mac(audit_key, digest) if audit_key is not None else None,
            },
        )
        if audit_key is not None and checkpoint_seq == head_seq:
            mac = checkpoint_mac(audit_key, vault_id, entry.seq, digest)
            hot.run(conn, _MOVE_HEAD_AND_CHECKPOINT, {"seq": entry.seq, "hash": digest, "mac": mac})
        else:
            hot.run(conn, _MOVE_HEAD, {"seq": entry.seq, "hash": digest})
    except SQLAlchemyError as exc:
        logger.error("audit write failed: %s", type(exc).__name__)
        raise AuditWriteError(
            f"The audit log could not be written, so '{action}' was not carried out.",
            next_step="check the disk is writable and not full, then retry.",
        ) from None
    return entry


@dataclass(frozen=True, slots=True)
class Filter:
    """Which entries to read; every field set must hold.

    `agent`: entries by the agent, about it (target), or naming it in their details; `action`:
    that action, or every action under it when it ends with "." ("approval." for all approval
    entries); `outcome`: exactly that outcome.
    """

    agent: str | None = None
    action: str | None = None
    outcome: str | None = None

    def where(self) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.agent:
            # Details are canonical JSON (RFC 8785): `"agent":"NAME"` is how the field is spelt.
            named = jcs.dumps({"agent": self.agent}).decode()[1:-1]
            conds.append(
                or_(
                    t.audit.c.actor == f"agent:{self.agent}",
                    t.audit.c.target == f"agent:{self.agent}",
                    t.audit.c.details.contains(named, autoescape=True),
                )
            )
        if self.action:
            if self.action.endswith("."):
                conds.append(t.audit.c.action.startswith(self.action, autoescape=True))
            else:
                conds.append(t.audit.c.action == self.action)
        if self.outcome:
            conds.append(t.audit.c.outcome == self.outcome)
        return conds


def entries(
    conn: Connection,
    *,
    since: str | None = None,
    limit: int | None = None,
    where: Filter | None = None,
) -> list[AuditEntry]:
    """Entries oldest first; with `limit`, the newest `limit` of those that match."""
    q = select(t.audit)
    if since is not None:
        q = q.where(t.audit.c.time >= since)
    if where is not None:
        q = q.where(*where.where())
    if limit is not None:
        q = q.order_by(t.audit.c.seq.desc()).limit(limit)
        rows = list(reversed(conn.execute(q).all()))
    else:
        rows = list(conn.execute(q.order_by(t.audit.c.seq)).all())
    return [
        AuditEntry(r.seq, r.time, r.actor, r.action, r.target, r.outcome, json.loads(r.details))
        for r in rows
    ]


def verify(conn: Connection, *, audit_key: bytes | bytearray | None = None) -> ChainReport:
    """Check the chain; with the audit key (vault unlocked) also the seals and the checkpoint."""
    head = conn.execute(select(t.vault)).one()
    # The columns named by ChainRow's fields, in its order: the row shape verify_chain reads.
    columns = [t.audit.c[name] for name in ChainRow._fields]
    rows = conn.execute(select(*columns).order_by(t.audit.c.seq))
    keyed = None
    if audit_key is not None:
        keyed = Keyed(
            bytes(audit_key), head.id, head.audit_checkpoint_seq, head.audit_checkpoint_mac
        )
    return verify_chain(
        (tuple(r) for r in rows),
        head_seq=head.audit_head_seq,
        head_hash=head.audit_head_hash,
        keyed=keyed,
    )


def unsealed(conn: Connection) -> list[AuditEntry]:
    """Entries without the owner's seal: written while the vault was locked, or forged."""
    rows = conn.execute(select(t.audit).where(t.audit.c.mac.is_(None)).order_by(t.audit.c.seq))
    return [
        AuditEntry(r.seq, r.time, r.actor, r.action, r.target, r.outcome, json.loads(r.details))
        for r in rows
    ]


def seal(conn: Connection, seqs: list[int], *, audit_key: bytes | bytearray, vault_id: str) -> int:
    """Seal exactly the entries `seqs` (the ones the owner was shown) and, when no unsealed entry
    is left, move the checkpoint to the head. Returns how many were sealed."""
    done = 0
    for seq in seqs:
        row = conn.execute(
            select(t.audit.c.hash).where(t.audit.c.seq == seq, t.audit.c.mac.is_(None))
        ).first()
        if row is None:
            continue
        conn.execute(
            update(t.audit).where(t.audit.c.seq == seq).values(mac=entry_mac(audit_key, row.hash))
        )
        done += 1
    left = conn.execute(select(t.audit.c.seq).where(t.audit.c.mac.is_(None)).limit(1)).first()
    if left is None:
        head = conn.execute(select(t.vault.c.audit_head_seq, t.vault.c.audit_head_hash)).one()
        conn.execute(
            update(t.vault).values(
                audit_checkpoint_seq=head.audit_head_seq,
                audit_checkpoint_mac=checkpoint_mac(
                    audit_key, vault_id, head.audit_head_seq, head.audit_head_hash
                ),
            )
        )
    return done
