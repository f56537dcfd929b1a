"""The budget ledger: reservations, commits and releases, and the window sums the engine reads.

Every function runs inside the caller's write transaction. Reserving happens in the same
transaction as the decision that checked the windows (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
agent row is locked with SELECT … FOR UPDATE first), so two concurrent requests can never both
fit under one limit. Reserved rows count against windows until they are released.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from keysafe.store import tables as t

_LIVE = ("reserved", "committed")


def usage_reader(
    conn: Connection, agent: str, *, until: datetime | None = None
) -> Callable[[str, datetime], tuple[Mapping[str, int], int]]:
    """Usage per rule since a moment: base units per asset key (an asset identity, or a bare
    symbol in rows written before identities) and the count of actions. Units of different
    keys are never added here: they may count different decimals (the engine converts them).
    `until` bounds the window for dry runs evaluated in the past."""

    def usage(rule: str, since: datetime) -> tuple[Mapping[str, int], int]:
        conds = [
            t.ledger.c.agent == agent,
            t.ledger.c.rule == rule,
            t.ledger.c.at >= since.timestamp(),
            t.ledger.c.state.in_(_LIVE),
        ]
        if until is not None:
            conds.append(t.ledger.c.at <= until.timestamp())
        rows = conn.execute(
            select(t.ledger.c.request_id, t.ledger.c.asset, t.ledger.c.units).where(*conds)
        ).all()
        units: dict[str, int] = {}
        for r in rows:
            if r.asset is not None:
                units[r.asset] = units.get(r.asset, 0) + int(r.units)
        # One request may book several rows under a rule (its value and, in the native asset,
        # its network fee); a count window counts requests.
        return units, len({r.request_id for r in rows})

    return usage


def lock_agent(conn: Connection, agent: str) -> None:
    """Serialise budget checks per agent on databases with row locks (SQLite locks the file)."""
    if conn.dialect.name != "sqlite":
        conn.execute(select(t.agents.c.name).where(t.agents.c.name == agent).with_for_update())


def reserve(
    conn: Connection,
    *,
    agent: str,
    request_id: str,
    charges: Iterable[tuple[str, str | None, int]],
    at: datetime,
    state: str = "reserved",
) -> None:
    """Book a request's charges: `reserved` until settled, or `committed` straight away when the
    act ran in the transaction that decided."""
    for rule, asset, units in charges:
        conn.execute(
            insert(t.ledger).values(
                request_id=request_id, agent=agent, rule=rule, asset=asset, units=str(units),
                state=state, at=at.timestamp(),
            )
        )  # fmt: skip


def settle(conn: Connection, agent: str, request_id: str, *, state: str) -> int:
    """Commit or release every reservation of one agent's request; returns the rows changed."""
    result = conn.execute(
        update(t.ledger)
        .where(
            t.ledger.c.request_id == request_id,
            t.ledger.c.agent == agent,
            t.ledger.c.state == "reserved",
        )
        .values(state=state)
    )
    return int(result.rowcount or 0)


@dataclass(frozen=True, slots=True)
class Booked:
    """One request's live spend of one asset (committed, or reserved while it runs)."""

    agent: str
    asset: str  # asset identity (or a bare symbol in rows written before identities)
    units: int
    at: float  # unix seconds


def booked_since(conn: Connection, since: datetime) -> list[Booked]:
    """Every live spend booked since `since`, once per (request, asset).

    A request books the same spend under each windowed rule it matched, so the rows are
    de-duplicated by request and asset; count-only rows (no asset) spend nothing.
    """
    rows = conn.execute(
        select(t.ledger.c.request_id, t.ledger.c.agent, t.ledger.c.asset, t.ledger.c.units,
               t.ledger.c.at)
        .where(t.ledger.c.at >= since.timestamp(), t.ledger.c.state.in_(_LIVE),
               t.ledger.c.asset.is_not(None))
        .order_by(t.ledger.c.at)
    ).all()  # fmt: skip
    seen: dict[tuple[str, str, str], Booked] = {}
    for r in rows:
        key = (r.agent, r.request_id, r.asset)
        units = int(r.units)
        if key not in seen or units > seen[key].units:
            seen[key] = Booked(r.agent, r.asset, units, float(r.at))
    return list(seen.values())
