"""Request ids, the requests between decision and settlement (service/gate.py's in-flight
rows), and finishing what a crash left of them: `keysafe serve` runs `recover` before it
answers anyone.

An act that reaches the network (a broadcast, a proxied HTTP call) is decided and reserved in
one transaction and settled in another; its in-flight row lives in between. A crash between
them leaves the row, and `recover` settles it: a send keeps its reservation (its transaction may
be on the chain: counting it errs on the owner's side), anything else is released (its
signature never left the vault), and its idempotency key is freed.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Final

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, delete, insert, select

from keysafe import approvals
from keysafe.approvals import Kind, Status
from keysafe.audit.outcome import Outcome
from keysafe.errors import ErrorCode
from keysafe.service import idempotency
from keysafe.store import ledger
from keysafe.store import tables as t
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

# Kinds whose act may have reached a chain before a crash: their reservations are kept (counted)
# by `recover`, because the transaction may be on its way; the others are released.
_MAY_HAVE_LEFT: Final = frozenset({Kind.SEND_TRANSACTION, Kind.TRANSFER})


def start(
    conn: Connection, request_id: str, agent: str, kind: Kind, key: str | None, now: datetime
) -> None:
    """`agent`'s request `request_id` is decided and reserved; its act is about to run."""
    conn.execute(
        insert(t.inflight).values(
            request_id=request_id,
            agent=agent,
            kind=str(kind),
            idempotency_key=key,
            started_at=now.timestamp(),
        )
    )


def end(conn: Connection, agent: str, request_id: str) -> str | None:
    """The request has settled: its row goes. Returns its idempotency key, if it had one."""
    # The key comes from the in-flight row, so settling needs only the request id.
    key = conn.execute(
        select(t.inflight.c.idempotency_key).where(
            t.inflight.c.request_id == request_id, t.inflight.c.agent == agent
        )
    ).scalar()
    conn.execute(delete(t.inflight).where(t.inflight.c.request_id == request_id))
    return None if key is None else str(key)


def new_request_id(now: datetime) -> str:
    """32 hex characters: `now` in milliseconds (12), then 80 random bits (20).

    Each signature inserts its id into the ledger's request-id index. Random ids land on a
    random page of an index that grows with history, so every commit wrote (and every WAL
    checkpoint copied) one more distinct page the longer the past; ids made one after another
    sort together and share the page the previous one dirtied. The random part keeps an id
    unguessable; nothing orders requests by it.
    """
    return f"{max(0, int(now.timestamp() * 1000)):012x}{secrets.token_hex(10)}"


class Recovered(BaseModel):
    """What `recover` finished: how many requests it released or kept, and approvals it failed."""

    model_config = ConfigDict(frozen=True)

    released: int  # requests whose reservation was released (nothing left the vault)
    kept: int  # requests whose reservation was kept (a transaction may have been broadcast)
    approvals_failed: int  # approvals that were executing when the process died


def recover(vault: Vault) -> Recovered:
    """Finish what a crash left open; `keysafe serve` runs this before it answers anyone.

    Every request between decision and settlement is settled: a send keeps its reservation (its
    transaction may be on the chain: counting it errs on the owner's side), anything else is
    released (its signature never left the vault). Its idempotency key is freed, so the agent's
    retry with the same key runs again: for a transaction that is the same bytes, which a chain
    accepts once. Approvals still `executing` fail with a message saying so. Works locked; each
    step is audited.
    """
    with vault.db.write() as conn:
        released, kept = _settle_in_flight(vault, conn)
        released += _release_orphans(vault, conn)
        failed = _fail_executing(vault, conn)
    result = Recovered(released=released, kept=kept, approvals_failed=failed)
    if released or kept or failed:
        logger.warning("recovered after a crash: %s", result.model_dump())
    return result


def _settle_in_flight(vault: Vault, conn: Connection) -> tuple[int, int]:
    """Settle every in-flight request; returns how many were released and how many kept."""
    released = kept = 0
    for row in conn.execute(select(t.inflight)).all():
        keep = row.kind in _MAY_HAVE_LEFT
        ledger.settle(conn, row.agent, row.request_id, state="committed" if keep else "released")
        if row.idempotency_key is not None:
            idempotency.forget(conn, row.agent, row.idempotency_key)
        conn.execute(delete(t.inflight).where(t.inflight.c.request_id == row.request_id))
        state = "kept" if keep else "released"
        _audit_recovered(vault, conn, row.agent, row.request_id, state, kind=row.kind)
        kept, released = kept + keep, released + (not keep)
    return released, kept


def _audit_recovered(
    vault: Vault, conn: Connection, agent: str, request_id: str, state: str, **more: str
) -> None:
    """Audit one request settled after a crash: its reservation `state` (kept or released)."""
    vault.audit(
        conn,
        actor="system",
        action="request.recover",
        target=f"agent:{agent}",
        outcome=Outcome.SUCCESS,
        details={"agent": agent, "request_id": request_id, "state": state, **more},
    )


def _release_orphans(vault: Vault, conn: Connection) -> int:
    """Reservations no in-flight row explains (written before schema 0006): nothing can finish
    them, so they are released rather than eating the window for ever. Returns how many."""
    orphans = conn.execute(
        select(t.ledger.c.agent, t.ledger.c.request_id)
        .where(t.ledger.c.state == "reserved")
        .distinct()
    ).all()
    for o in orphans:
        ledger.settle(conn, o.agent, o.request_id, state="released")
        _audit_recovered(vault, conn, o.agent, o.request_id, "released")
    return len(orphans)


def _fail_executing(vault: Vault, conn: Connection) -> int:
    """Approvals still `executing` fail, with a message saying so. Returns how many."""
    executing = conn.execute(
        select(t.approvals.c.id, t.approvals.c.agent).where(
            t.approvals.c.status == Status.EXECUTING
        )
    ).all()
    for a in executing:
        approvals.set_result(
            conn,
            a.id,
            Status.FAILED,
            {
                "error": {
                    "code": ErrorCode.INTERNAL,
                    "message": "keysafe restarted while this approved request ran; "
                    "nothing was returned.",
                    "next": "ask again (a transaction with the same bytes is accepted "
                    "by its chain once).",
                }
            },
        )
        vault.audit(
            conn,
            actor="system",
            action="approval.fail",
            target=f"approval:{a.id}",
            outcome=Outcome.FAILURE,
            details={"agent": a.agent, "request_id": a.id},
        )
    return len(executing)
