"""The running window totals (store/ledger.py) always equal the sum of the ledger rows they stand
for, under any sequence of bookings, commits, releases, reads and passing time; and a request
cannot get more budget than the ledger says it has, however the totals were reached.

The reference is the plain scan (`usage_reader` without `now`), which sums the rows themselves.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, create_engine, delete, select, update

from keysafe.store import ledger
from keysafe.store import tables as t
from keysafe.store.probe import database_url

T0 = datetime(2026, 12, 1, tzinfo=UTC)
RULES = ("small", "daily")
ASSETS = ("solana:native", "base:0x8335", None)
WINDOWS = (timedelta(seconds=90), timedelta(hours=1), timedelta(days=1))
HUGE = 2**200  # EVM amounts far past 64 bits stay exact


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The ledger's tables on SQLite, then on PostgreSQL (its statements run on the driver on
    one, through SQLAlchemy on the other: both must keep the totals exact)."""
    if request.param == "sqlite":
        eng = create_engine(f"sqlite+pysqlite:///{tmp_path / 'ledger.db'}")
    else:
        eng = create_engine(database_url(request.getfixturevalue("pg_module_url")))
    t.metadata.drop_all(eng)
    t.metadata.create_all(eng)
    yield eng
    t.metadata.drop_all(eng)
    eng.dispose()


def _both(
    conn: Connection, agent: str, rule: str, now: datetime, window: timedelta, writable: bool
) -> tuple[ledger.Usage, ledger.Usage]:
    since = now - window
    kept = ledger.usage_reader(conn, agent, now=now, writable=writable)(rule, since)
    scanned = ledger.usage_reader(conn, agent)(rule, since)
    return (dict(kept[0]), kept[1]), (dict(scanned[0]), scanned[1])


def _nonzero(u: ledger.Usage) -> ledger.Usage:
    return {k: v for k, v in u[0].items() if v}, u[1]


step = st.one_of(
    st.tuples(
        st.just("book"),
        st.sampled_from(RULES),
        st.sampled_from(ASSETS),
        st.one_of(st.integers(1, 10**6), st.just(HUGE)),
        st.sampled_from(["reserved", "committed"]),
    ),
    st.tuples(st.just("settle"), st.integers(0, 30), st.sampled_from(["committed", "released"])),
    st.tuples(st.just("wait"), st.integers(1, 4000)),
    st.tuples(st.just("read"), st.sampled_from(RULES), st.sampled_from(WINDOWS), st.booleans()),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=60))
def test_totals_equal_the_ledger_under_any_sequence(engine: Engine, steps: list[tuple]) -> None:  # type: ignore[type-arg]
    with engine.begin() as conn:
        conn.execute(delete(t.ledger))
        conn.execute(delete(t.ledger_totals))
    now = T0
    requests: list[str] = []
    for s in steps:
        with engine.begin() as conn:
            if s[0] == "book":
                _, rule, asset, units, state = s
                rid = secrets.token_hex(8)
                requests.append(rid)
                charges = [(rule, asset, units)]
                if asset is not None and rule == "daily":
                    charges.append((rule, "solana:native", 5000))  # a fee row of the same request
                ledger.reserve(
                    conn, agent="a", request_id=rid, charges=charges, at=now, state=state
                )
            elif s[0] == "settle" and requests:
                ledger.settle(conn, "a", requests[s[1] % len(requests)], state=s[2])
            elif s[0] == "wait":
                now += timedelta(seconds=s[1])
            elif s[0] == "read":
                _, rule, window, writable = s
                kept, scanned = _both(conn, "a", rule, now, window, writable)
                assert _nonzero(kept) == _nonzero(scanned)
    with engine.begin() as conn:  # every window, at the end, kept and read back
        for rule in RULES:
            for window in WINDOWS:
                for writable in (True, False, True):
                    kept, scanned = _both(conn, "a", rule, now, window, writable)
                    assert _nonzero(kept) == _nonzero(scanned)


def test_a_window_read_after_a_long_history_reads_only_what_moved(engine: Engine) -> None:
    """100 rows inside the window, then 10 more minutes: the totals take out only the rows that
    left, and the read gives the exact sum with amounts past 64 bits."""
    with engine.begin() as conn:
        for i in range(100):
            ledger.reserve(
                conn,
                agent="a",
                request_id=f"r{i}",
                charges=[("daily", "eth", HUGE + i)],
                at=T0 + timedelta(seconds=30 * i),
                state="committed",
            )
    now = T0 + timedelta(hours=1)
    with engine.begin() as conn:
        kept, scanned = _both(conn, "a", "daily", now, timedelta(hours=1), True)
        assert kept == scanned == ({"eth": sum(HUGE + i for i in range(100))}, 100)
    now += timedelta(minutes=10)  # rows 0..19 leave the window
    with engine.begin() as conn:
        kept, scanned = _both(conn, "a", "daily", now, timedelta(hours=1), True)
        assert kept == scanned == ({"eth": sum(HUGE + i for i in range(20, 100))}, 80)
        marker = conn.execute(
            select(t.ledger_totals.c.horizon).where(t.ledger_totals.c.asset == "")
        ).scalar_one()
        assert marker == (now - timedelta(hours=1)).timestamp()


def test_attack_the_clock_going_back_does_not_hide_spent_budget(engine: Engine) -> None:
    """The vault's clock steps back (NTP): rows already taken out of the totals are inside the
    window again and must count, or the agent would get their budget a second time."""
    with engine.begin() as conn:
        ledger.reserve(
            conn,
            agent="a",
            request_id="r1",
            charges=[("daily", "eth", 7)],
            at=T0,
            state="committed",
        )
    later = T0 + timedelta(hours=2)
    with engine.begin() as conn:  # r1 has left the 1 h window: the horizon moves past it
        kept, _ = _both(conn, "a", "daily", later, timedelta(hours=1), True)
        assert _nonzero(kept) == ({}, 0)
    back = T0 + timedelta(minutes=30)
    with engine.begin() as conn:
        kept, scanned = _both(conn, "a", "daily", back, timedelta(hours=1), True)
        assert kept == scanned == ({"eth": 7}, 1)


def test_attack_totals_never_read_below_the_ledger_after_a_release_race(engine: Engine) -> None:
    """A reservation released after its row left a kept window is not taken out twice (which
    would hand the agent budget it has not got)."""
    with engine.begin() as conn:
        ledger.reserve(
            conn,
            agent="a",
            request_id="old",
            charges=[("daily", "eth", 50)],
            at=T0,
            state="reserved",
        )
        ledger.reserve(
            conn,
            agent="a",
            request_id="new",
            charges=[("daily", "eth", 30)],
            at=T0 + timedelta(minutes=50),
            state="committed",
        )
    now = T0 + timedelta(minutes=70)  # "old" is out of the 1 h window, "new" is in
    with engine.begin() as conn:
        assert _both(conn, "a", "daily", now, timedelta(hours=1), True)[0] == ({"eth": 30}, 1)
        ledger.settle(conn, "a", "old", state="released")
        kept, scanned = _both(conn, "a", "daily", now, timedelta(hours=1), True)
        assert kept == scanned == ({"eth": 30}, 1)


def test_dropped_totals_are_rebuilt_from_the_ledger(engine: Engine) -> None:
    """The totals are derived: deleting them (a restore does) loses nothing."""
    with engine.begin() as conn:
        ledger.reserve(
            conn, agent="a", request_id="r", charges=[("daily", "eth", 9)], at=T0, state="committed"
        )
        _both(conn, "a", "daily", T0, timedelta(hours=1), True)
        conn.execute(delete(t.ledger_totals))
        assert _both(conn, "a", "daily", T0, timedelta(hours=1), True)[0] == ({"eth": 9}, 1)
        # And a total edited by hand is not what a later scan-based rebuild would trust:
        conn.execute(update(t.ledger_totals).values(horizon=T0.timestamp() + 10))
        assert _both(conn, "a", "daily", T0, timedelta(hours=1), True)[0] == ({"eth": 9}, 1)
