"""The budget ledger: reservations, commits and releases, and the window sums the engine reads.

Every function runs inside the caller's write transaction. Reserving happens in the same
transaction as the decision that checked the windows (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
vault row, then the agent row, locked with SELECT … FOR UPDATE first, store/db.py), so two
concurrent requests, on one server or on two, can never both fit under one limit. Reserved rows
count against windows until they are released.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, select, update

from keysafe.store import hot
from keysafe.store import tables as t

_LIVE = ("reserved", "committed")


Usage = tuple[Mapping[str, int], int]


def usage_reader(
    conn: Connection,
    agent: str,
    *,
    now: datetime | None = None,
    until: datetime | None = None,
    writable: bool = False,
) -> Callable[[str, datetime], Usage]:
    """Usage per rule since a moment: base units per asset key (an asset identity, or a bare
    symbol in rows written before identities) and the count of actions. Units of different
    keys are never added here: they may count different decimals (the engine converts them).

    With `now` (the moment the engine decides at), a window `[since, now]` is read from its
    running totals, so the cost does not grow with the ledger: each ledger row is added to a
    total once, when booked, and taken out once, when it leaves the window. `writable` (the
    caller holds the write transaction) lets the read keep the totals it builds and moves;
    without it the same exact answer is computed and nothing is written. Without `now`, or with
    `until` (dry runs evaluated in the past), the ledger rows are summed as they are.
    """

    def usage(rule: str, since: datetime) -> Usage:
        if now is None or until is not None:
            return _scan(conn, agent, rule, since.timestamp(), until)
        return _windowed(conn, agent, rule, _window_ms(now, since), since.timestamp(), writable)

    return usage


def _window_ms(now: datetime, since: datetime) -> int:
    return round((now - since).total_seconds() * 1000)


def _scan(
    conn: Connection, agent: str, rule: str, since: float, until: datetime | None = None
) -> Usage:
    """The window summed from the ledger rows themselves (the reference the totals must equal)."""
    conds = [
        t.ledger.c.agent == agent,
        t.ledger.c.rule == rule,
        t.ledger.c.at >= since,
        t.ledger.c.state.in_(_LIVE),
    ]
    if until is not None:
        conds.append(t.ledger.c.at <= until.timestamp())
    rows = conn.execute(
        select(t.ledger.c.request_id, t.ledger.c.asset, t.ledger.c.units).where(*conds)
    ).all()
    return _summed(rows)


def _summed(rows: Sequence[Any]) -> Usage:
    units: dict[str, int] = {}
    for r in rows:
        if r.asset is not None:
            units[r.asset] = units.get(r.asset, 0) + int(r.units)
    # One request may book several rows under a rule (its value and, in the native asset,
    # its network fee), all at one moment; a count window counts requests.
    return units, len({r.request_id for r in rows})


_MARKER = ""  # the asset column of a window's marker row

# These run on every request, on the driver (store/hot.py). A window is (agent, rule, window_ms);
# its marker row has the asset ''.
_TOTALS_OF_WINDOW = (
    "SELECT asset, units, requests, horizon FROM ledger_totals "
    "WHERE agent = :agent AND rule = :rule AND window_ms = :window"
)
_TOTALS_OF_RULE = (
    "SELECT window_ms, asset, units, horizon FROM ledger_totals "
    "WHERE agent = :agent AND rule = :rule"
)
_DROP_WINDOW = (
    "DELETE FROM ledger_totals WHERE agent = :agent AND rule = :rule AND window_ms = :window"
)
_INSERT_TOTALS = (
    "INSERT INTO ledger_totals (agent, rule, window_ms, asset, units, requests, horizon) "
    "VALUES (:agent, :rule, :window, :asset, :units, :requests, :horizon)"
)
_COUNT = (
    "UPDATE ledger_totals SET requests = requests + :delta "
    "WHERE agent = :agent AND rule = :rule AND window_ms = :window AND asset = ''"
)
_SET_UNITS = (
    "UPDATE ledger_totals SET units = :units "
    "WHERE agent = :agent AND rule = :rule AND window_ms = :window AND asset = :asset"
)
_LEAVING = (
    "SELECT request_id, asset, units FROM ledger WHERE agent = :agent AND rule = :rule "
    "AND at >= :horizon AND at < :since AND state IN ('reserved', 'committed')"
)
_INSERT_LEDGER = (
    "INSERT INTO ledger (request_id, agent, rule, asset, units, state, at) "
    "VALUES (:request_id, :agent, :rule, :asset, :units, :state, :at)"
)


class _Row(NamedTuple):
    request_id: str
    asset: str | None
    units: str


def _windowed(
    conn: Connection, agent: str, rule: str, window_ms: int, since: float, writable: bool
) -> Usage:
    key = {"agent": agent, "rule": rule, "window": window_ms}
    rows = hot.rows(conn, _TOTALS_OF_WINDOW, key)
    marker = next((r for r in rows if r[0] == _MARKER), None)
    if marker is None or since < marker[3]:
        # Never read before (or the clock went back past the horizon, which would leave rows
        # that are inside the window out of it): sum the ledger once and keep that.
        units, count = _scan(conn, agent, rule, since)
        if writable:
            _put_totals(conn, key, units, count, since)
        return units, count
    units = {asset: int(n) for asset, n, _, _ in rows if asset != _MARKER}
    count = int(marker[2])
    leaving = hot.rows(
        conn, _LEAVING, {"agent": agent, "rule": rule, "horizon": marker[3], "since": since}
    )
    if not leaving:
        return units, count
    gone_units, gone_count = _summed([_Row._make(r) for r in leaving])
    for asset, n in gone_units.items():
        units[asset] = units.get(asset, 0) - n
    count -= gone_count
    if writable:
        _put_totals(conn, key, units, count, since)
    return units, count


def _put_totals(
    conn: Connection, key: dict[str, Any], units: Mapping[str, int], count: int, horizon: float
) -> None:
    """Replace one window's totals: the marker with the count and horizon, and its assets."""
    hot.run(conn, _DROP_WINDOW, key)
    rows = [key | {"asset": _MARKER, "units": "0", "requests": count, "horizon": horizon}]
    rows += [
        key | {"asset": a, "units": str(n), "requests": 0, "horizon": horizon}
        for a, n in units.items()
        if n
    ]
    hot.run(conn, _INSERT_TOTALS, rows)


def _move_totals(
    conn: Connection, agent: str, booked: Iterable[tuple[str, str | None, int, float]], sign: int
) -> None:
    """Add (sign 1) or take out (sign -1) ledger rows (rule, asset, units, at) of one request
    in every kept window of their rules that they are inside of."""
    by_rule: dict[str, list[tuple[str | None, int, float]]] = {}
    for rule, asset, units, at in booked:
        by_rule.setdefault(rule, []).append((asset, units, at))
    for rule, charges in by_rule.items():
        kept = hot.rows(conn, _TOTALS_OF_RULE, {"agent": agent, "rule": rule})
        if not kept:
            continue  # no window of this rule read yet: its first read sums the ledger
        horizons = {window: horizon for window, asset, _, horizon in kept if asset == _MARKER}
        current = {(window, asset): int(n) for window, asset, n, _ in kept if asset != _MARKER}
        at = charges[0][2]  # a request books all its rows at one moment
        spent = _per_asset(charges)
        for window, horizon in horizons.items():
            if at < horizon:
                continue  # already out of this window (and out of its totals)
            key = {"agent": agent, "rule": rule, "window": window}
            hot.run(conn, _COUNT, key | {"delta": sign})
            changed, added = [], []
            for asset, units in spent.items():
                old = current.get((window, asset))
                new = str((old or 0) + sign * units)
                if old is None:
                    added.append(
                        key | {"asset": asset, "units": new, "requests": 0, "horizon": horizon}
                    )
                else:
                    changed.append(key | {"asset": asset, "units": new})
            if changed:
                hot.run(conn, _SET_UNITS, changed)
            if added:
                hot.run(conn, _INSERT_TOTALS, added)


def _per_asset(charges: Iterable[tuple[str | None, int, float]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for asset, units, _ in charges:
        if asset is not None:
            out[asset] = out.get(asset, 0) + units
    return out


def lock_agent(conn: Connection, agent: str) -> None:
    """Serialise budget checks per agent on databases with row locks (SQLite locks the file).
    On PostgreSQL `Database.write` already holds the vault row, which every writer takes first;
    this lock stays as the statement of what the budget check needs, should that ever change."""
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
    booked = [(rule, asset, units, at.timestamp()) for rule, asset, units in charges]
    if not booked:
        return
    hot.run(
        conn,
        _INSERT_LEDGER,
        [
            {
                "request_id": request_id,
                "agent": agent,
                "rule": rule,
                "asset": asset,
                "units": str(units),
                "state": state,
                "at": when,
            }
            for rule, asset, units, when in booked
        ],
    )
    _move_totals(conn, agent, booked, 1)


def settle(conn: Connection, agent: str, request_id: str, *, state: str) -> int:
    """Commit or release every reservation of one agent's request; returns the rows changed.
    A release takes the rows out of the running totals in the same transaction."""
    if state != "committed":
        released = conn.execute(
            select(t.ledger.c.rule, t.ledger.c.asset, t.ledger.c.units, t.ledger.c.at).where(
                t.ledger.c.request_id == request_id,
                t.ledger.c.agent == agent,
                t.ledger.c.state == "reserved",
            )
        ).all()
        _move_totals(conn, agent, [(r.rule, r.asset, int(r.units), r.at) for r in released], -1)
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
        select(
            t.ledger.c.request_id,
            t.ledger.c.agent,
            t.ledger.c.asset,
            t.ledger.c.units,
            t.ledger.c.at,
        )
        .where(
            t.ledger.c.at >= since.timestamp(),
            t.ledger.c.state.in_(_LIVE),
            t.ledger.c.asset.is_not(None),
        )
        .order_by(t.ledger.c.at)
    ).all()
    seen: dict[tuple[str, str, str], Booked] = {}
    for r in rows:
        key = (r.agent, r.request_id, r.asset)
        units = int(r.units)
        if key not in seen or units > seen[key].units:
            seen[key] = Booked(r.agent, r.asset, units, float(r.at))
    return list(seen.values())
