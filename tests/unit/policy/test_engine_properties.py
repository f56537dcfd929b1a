"""Properties of the decision engine, checked with hypothesis.

(a) Budgets hold for any request stream: the booked ledger itself is scanned, the engine is not
    trusted. The stream spends on two chains, and "USDC" on the local chain is a token the owner
    registered with 18 decimals (base's has 6): the window caps token units of the symbol across
    both, whatever each counts in base units. (b) The decision does not depend on the order of rules
    in the file. (c) A policy's digest does not depend on how its YAML is formatted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keysafe.policy.engine import AgentState, Decision, decide
from keysafe.policy.intent import Intent
from keysafe.policy.registry import AssetInfo, Registry
from keysafe.policy.rules import Policy, parse_policy
from tests.policy_examples import example_text
from tests.unit.policy.fake_ledger import Ledger

EXAMPLE_TEXT = example_text()  # with its optional parts (business hours, expiry) on
EXAMPLE = parse_policy(EXAMPLE_TEXT)
USDC18_ON_LOCAL = "0x" + "18" * 20
REGISTRY = Registry.builtin().with_additions(
    [], [AssetInfo("USDC", "local", USDC18_ON_LOCAL, 18, builtin=False)]
)
AGENT = AgentState("bot", "active")
PAY = "pay-small-on-base"
PAY_ONLY = Policy(version=1, rules=[r for r in EXAMPLE.rules if r.name == PAY])
R1 = "0x" + "1" * 40
R2 = "0x" + "2" * 40
R3 = "0x" + "3" * 40
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday, 08:00 UTC
DAY = timedelta(hours=24)
HOUR = timedelta(hours=1)

# The rule's numbers in the base units of ETH (18) and of base's USDC (6): the strategy draws
# amounts in these and scales them for local's 18-decimal USDC.
DECIMALS = {"ETH": 18, "USDC": 6}
CAP = {"ETH": 10**16, "USDC": 25 * 10**6}  # max_per_tx
THRESHOLD = {"ETH": 5 * 10**15, "USDC": 10 * 10**6}  # approve_above
LIMIT_24H = {"ETH": 5 * 10**16, "USDC": 100 * 10**6}
MAX_PER_HOUR = 10
# Ledger key (asset identity) -> (symbol, decimals), for the oracle's own scan.
IDENTITIES = {
    "base:native": ("ETH", 18),
    "local:native": ("ETH", 18),
    "base:0x833589fcd6edb6e08f4c7c32d4f71b54bda02913": ("USDC", 6),
    f"local:{USDC18_ON_LOCAL}": ("USDC", 18),
}


def decimals_of(asset: str, chain: str) -> int:
    return 18 if chain == "local" else DECIMALS[asset]


def tokens(units: int, decimals: int) -> Fraction:
    return Fraction(units, 10**decimals)


def reference(amount: int, asset: str) -> Fraction:
    """One of the rule's numbers above, in token units."""
    return tokens(amount, DECIMALS[asset])


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)


def as_amount(units: int, asset: str, chain: str = "base") -> str:
    d = decimals_of(asset, chain)
    whole, frac = divmod(units, 10**d)
    return f"{whole}.{frac:0{d}d}".rstrip("0").rstrip(".")


# --- (a) budgets hold for any request stream ------------------------------------------------


@st.composite
def spend(draw: st.DrawFn) -> tuple[int, str, str, int]:
    """(seconds since the previous request, chain, asset, amount in that asset's base units)."""
    gap = draw(
        st.one_of(
            st.integers(0, 60),
            st.integers(0, 600),
            st.integers(361, 900),
            st.integers(0, 3 * 3600),
            st.sampled_from([0, 1, 3599, 3600, 3601, 86399, 86400, 86401]),
        )
    )
    asset = draw(st.sampled_from(["ETH", "USDC"]))
    t, c = THRESHOLD[asset], CAP[asset]
    units = draw(
        st.one_of(
            st.integers(0, t),
            st.integers(t // 2, t),
            st.integers(t * 9 // 10, t),
            st.integers(0, c + 2),
            st.sampled_from([0, 1, t - 1, t, t, t + 1, c, c + 1]),
        )
    )
    chain = draw(st.sampled_from(["base", "local"]))
    if asset == "USDC" and chain == "local":
        # 18 decimals: the same token amount, give or take a sub-micro dust
        units = units * 10**12 + draw(st.sampled_from([0, 0, 1, 10**12 - 1]))
    return gap, chain, asset, units


def in_business_hours(when: datetime) -> bool:
    return when.weekday() < 5 and 8 <= when.hour < 20


def spent_tokens(entries: list[tuple[datetime, str, str | None, int, int]], asset: str) -> Fraction:
    """Token units of `asset` in ledger rows, each converted with its own identity's decimals."""
    total = Fraction(0)
    for _, _, key, units, _ in entries:
        symbol, decimals = IDENTITIES[key] if key is not None else (None, 0)
        if symbol == asset:
            total += tokens(units, decimals)
    return total


def expected_outcome(
    ledger: Ledger, when: datetime, chain: str, asset: str, units: int, hours: bool
) -> str:
    """An independent oracle for the pay-small-on-base rule, from a scan of the ledger."""
    if hours and not in_business_hours(when):
        return "deny"
    amount = tokens(units, decimals_of(asset, chain))
    if amount > reference(CAP[asset], asset):
        return "deny"
    used = spent_tokens([e for e in ledger.entries if e[0] >= when - DAY], asset)
    count = sum(1 for t, *_ in ledger.entries if t >= when - HOUR)
    if used + amount > reference(LIMIT_24H[asset], asset) or count + 1 > MAX_PER_HOUR:
        return "deny"
    return "ask" if amount > reference(THRESHOLD[asset], asset) else "allow"


def assert_budgets_hold(ledger: Ledger) -> None:
    """Every closed window [T - 24h, T] / [T - 1h, T] ending at a booking stays within limits."""
    for end, *_ in ledger.entries:
        day = [e for e in ledger.entries if end - DAY <= e[0] <= end]
        for asset, limit in LIMIT_24H.items():
            spent = spent_tokens(day, asset)
            assert spent <= reference(limit, asset), f"{spent} {asset} booked in the 24h to {end}"
        hour = [e for e in ledger.entries if end - HOUR <= e[0] <= end]
        assert len(hour) <= MAX_PER_HOUR, f"{len(hour)} actions booked in the hour up to {end}"


@pytest.mark.parametrize(
    ("policy", "hours"),
    [(PAY_ONLY, False), (EXAMPLE, True)],
    ids=["pay-small-on-base alone", "whole example policy"],
)
@SMALL_SETTINGS
@given(stream=st.lists(spend(), min_size=20, max_size=50))
def test_decide_request_stream_never_books_over_budget_or_rate(
    policy: Policy, hours: bool, stream: list[tuple[int, str, str, int]]
) -> None:
    ledger = Ledger()
    now = START
    for gap, chain, asset, units in stream:
        now += timedelta(seconds=gap)
        to = R1 if units % 2 else R2
        intent = Intent(
            action="evm.transfer",
            chain=chain,
            wallet="main",
            asset=asset,
            amount=as_amount(units, asset, chain),
            to=to,
        )
        expected = expected_outcome(ledger, now, chain, asset, units, hours)
        d = decide(policy, AGENT, intent, registry=REGISTRY, usage=ledger.usage, now=now)
        assert d.outcome == expected, (now, chain, asset, units, d.reason)
        event(f"{d.outcome} {d.code}")
        ledger.apply(d, now)
    assert all(rule == PAY for _, rule, *_ in ledger.entries)
    assert_budgets_hold(ledger)


def test_decide_stream_fills_budget_then_frees_it_after_window() -> None:
    """A hand-made stream: 10 spends of 0.005 ETH, the 11th denied, the same allowed 24h later."""
    ledger = Ledger()
    now = START + timedelta(hours=1)
    intent = Intent(
        action="evm.transfer", chain="base", wallet="main", asset="ETH", amount="0.005", to=R1
    )
    for _ in range(10):
        d = decide(EXAMPLE, AGENT, intent, registry=REGISTRY, usage=ledger.usage, now=now)
        assert d.outcome == "allow"
        ledger.apply(d, now)
        now += timedelta(minutes=7)
    d = decide(EXAMPLE, AGENT, intent, registry=REGISTRY, usage=ledger.usage, now=now)
    assert (d.outcome, d.code) == ("deny", "BUDGET_EXCEEDED")
    later = START + timedelta(hours=25, seconds=1)
    d = decide(EXAMPLE, AGENT, intent, registry=REGISTRY, usage=ledger.usage, now=later)
    assert (d.outcome, d.rule) == ("allow", PAY)
    assert_budgets_hold(ledger)


# --- (b) rule order does not matter ---------------------------------------------------------

EXTRA_NAMES = ["a", "b-rule", "contract", "github", "m", "pay", "q", "sign", "z", "zz"]
ACTION_POOL = ["evm.transfer", "evm.call", "evm.approve", "evm.sign_message", "http.request", "*"]
CHAIN_POOL: list[str | int] = ["base", "ethereum", "local", 8453, "1", "mars"]
AMOUNT_POOL = ["0", "0.001", "0.005", "0.01", "1", "10", "25"]


def _subset(pool: list[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique_by=str)


@st.composite
def extra_rule(draw: st.DrawFn, name: str) -> dict[str, Any]:
    verb = draw(st.sampled_from(["allow", "ask", "deny"]))
    rule: dict[str, Any] = {"name": name, verb: draw(_subset(ACTION_POOL))}
    if draw(st.integers(0, 9)) < 3:
        rule["chains"] = draw(_subset(CHAIN_POOL))
    if draw(st.booleans()):
        rule["assets"] = draw(_subset(["ETH", "USDC"]))
    if draw(st.booleans()):
        rule["recipients"] = draw(_subset([R1, R2, R3]))
    if draw(st.integers(0, 3)) == 0:
        rule["when"] = {"unlimited": draw(st.booleans())}
    if draw(st.integers(0, 3)) == 0:
        rule["methods"] = draw(_subset(["GET", "POST"]))
    # mostly named on allow/ask rules (lint requires it), sometimes on deny rules
    named = draw(st.booleans()) if verb == "deny" else draw(st.integers(0, 5)) > 0
    if named:
        rule["wallets"] = draw(_subset(["main", "hot"]))
    if verb != "deny":
        if draw(st.booleans()):
            rule["max_per_tx"] = {a: draw(st.sampled_from(AMOUNT_POOL)) for a in ("ETH", "USDC")}
        if draw(st.booleans()):
            rule["approve_above"] = {"ETH": draw(st.sampled_from(AMOUNT_POOL))}
        if draw(st.booleans()):
            window = draw(st.sampled_from(["1m", "1h", "24h"]))
            limit: dict[str, Any] = {"window": window}
            if draw(st.booleans()):
                limit["max_count"] = draw(st.integers(0, 3))
            else:
                limit["max"] = {"USDC": draw(st.sampled_from(AMOUNT_POOL))}
            rule["limits"] = [limit]
    return rule


@st.composite
def extra_rules(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(EXTRA_NAMES), max_size=5, unique=True))
    return [draw(extra_rule(n)) for n in names]


REQUESTS: list[dict[str, Any]] = [
    *(
        {
            "action": "evm.transfer",
            "chain": c,
            "wallet": "main",
            "asset": a,
            "amount": amt,
            "to": to,
        }
        for c in ("base", "local", "ethereum")
        for a in ("ETH", "USDC")
        for amt in ("0.001", "0.005", "0.0051", "0.01", "5", "12", "unlimited")
        for to in (R1, R3)
    ),
    {
        "action": "evm.transfer",
        "chain": "base",
        "wallet": "hot",
        "asset": "ETH",
        "amount": "0.001",
        "to": R1,
    },
    {"action": "evm.transfer", "chain": "base", "asset": "ETH", "amount": "0.001", "to": R1},
    {
        "action": "http.request",
        "credential": "github",
        "method": "GET",
        "url": "https://api.github.com/repos/a/b",
    },
    {
        "action": "http.request",
        "credential": "github",
        "method": "POST",
        "url": "https://api.github.com/repos/a/b",
    },
    {
        "action": "http.request",
        "credential": "github",
        "method": "GET",
        "url": "https://api.github.com/repos%2F..%2Fadmin",
    },
    {"action": "evm.sign_message", "wallet": "main", "message": "example.com wants you to sign in"},
    {"action": "evm.sign_message", "wallet": "hot", "message": "hello"},
    {"action": "evm.call", "chain": "base", "wallet": "main", "contract": R3},
    {"action": "evm.call", "chain": "ethereum", "wallet": "hot", "contract": R3},
    {
        "action": "evm.approve",
        "chain": "base",
        "wallet": "main",
        "asset": "USDC",
        "amount": "unlimited",
        "spender": R2,
    },
    {
        "action": "evm.approve",
        "chain": "base",
        "wallet": "main",
        "asset": "USDC",
        "amount": "5",
        "spender": R2,
    },
]
TIMES = [
    datetime(2026, 3, 2, 12, tzinfo=UTC),
    datetime(2026, 3, 3, 9, 30, tzinfo=UTC),
    datetime(2026, 3, 4, 15, tzinfo=UTC),
    datetime(2026, 3, 2, 7, 59, tzinfo=UTC),
    datetime(2026, 3, 2, 20, tzinfo=UTC),
    datetime(2026, 3, 7, 12, tzinfo=UTC),
]


@st.composite
def ledgers(draw: st.DrawFn, names: list[str]) -> Ledger:
    rows = draw(
        st.lists(
            st.tuples(
                st.one_of(st.integers(0, 3600), st.integers(0, 30 * 3600)),
                st.sampled_from(names),
                st.sampled_from([*IDENTITIES, "USDC", None]),  # "USDC": a pre-identity row
                st.sampled_from([0, 1, 10**6, 10**16, 5 * 10**16, 100 * 10**6]),
            ),
            max_size=25,
        )
    )
    return Ledger(
        [(TIMES[0] - timedelta(seconds=s), r, a, u, -n) for n, (s, r, a, u) in enumerate(rows)]
    )


def _key(d: Decision) -> tuple[str, str | None, str | None]:
    return d.outcome, d.rule, d.code


@SETTINGS
@given(data=st.data())
def test_decide_same_decision_for_any_rule_order(data: st.DataObject) -> None:
    extras = data.draw(extra_rules(), label="extra rules")
    rules = [*EXAMPLE.rules, *Policy.model_validate({"version": 1, "rules": extras}).rules]
    order = data.draw(st.permutations(range(len(rules))), label="order")
    original = Policy(version=1, rules=rules, expires=EXAMPLE.expires)
    shuffled = Policy(version=1, rules=[rules[i] for i in order], expires=EXAMPLE.expires)
    ledger = data.draw(ledgers([r.name for r in rules]), label="ledger")
    requests = data.draw(st.lists(st.sampled_from(REQUESTS), min_size=1, max_size=8))
    for raw in requests:
        now = data.draw(st.sampled_from(TIMES))
        intent = Intent.model_validate(raw)
        a = decide(original, AGENT, intent, registry=REGISTRY, usage=ledger.usage, now=now)
        b = decide(shuffled, AGENT, intent, registry=REGISTRY, usage=ledger.usage, now=now)
        assert _key(a) == _key(b), (raw, now, a.reason, b.reason)
        event(f"{a.outcome} {a.code}")
        assert a.matched == b.matched


# --- (c) the digest ignores formatting ------------------------------------------------------


def test_parse_policy_same_text_gives_same_digest() -> None:
    assert parse_policy(EXAMPLE_TEXT).digest() == parse_policy(EXAMPLE_TEXT).digest()


@pytest.mark.parametrize("sort_keys", [True, False])
@pytest.mark.parametrize("flow", [True, False, None])
def test_parse_policy_reformatted_example_keeps_digest(sort_keys: bool, flow: bool | None) -> None:
    text = yaml.safe_dump(
        yaml.safe_load(EXAMPLE_TEXT), sort_keys=sort_keys, default_flow_style=flow
    )
    assert text != EXAMPLE_TEXT
    assert parse_policy(text).digest() == EXAMPLE.digest()


def test_parse_policy_model_dump_round_trip_keeps_digest() -> None:
    dumped = yaml.safe_dump(EXAMPLE.model_dump(mode="json", by_alias=True))
    assert parse_policy(dumped).digest() == EXAMPLE.digest()


def test_parse_policy_changed_cap_changes_digest() -> None:
    changed = EXAMPLE_TEXT.replace('ETH: "0.01"', 'ETH: "0.02"')
    assert changed != EXAMPLE_TEXT
    assert parse_policy(changed).digest() != EXAMPLE.digest()


@SMALL_SETTINGS
@given(
    extras=extra_rules(),
    sort_keys=st.booleans(),
    flow=st.sampled_from([True, False, None]),
    indent=st.integers(2, 6),
)
def test_parse_policy_digest_ignores_yaml_formatting(
    extras: list[dict[str, Any]], sort_keys: bool, flow: bool | None, indent: int
) -> None:
    raw = {"version": 1, "rules": extras, "expires": "2027-01-01T00:00:00Z"}
    plain = yaml.safe_dump(raw)
    styled = yaml.safe_dump(raw, sort_keys=sort_keys, default_flow_style=flow, indent=indent)
    first = parse_policy(plain)
    assert parse_policy(styled).digest() == first.digest()
    assert parse_policy(plain).digest() == first.digest()
    again = yaml.safe_dump(first.model_dump(mode="json", by_alias=True))
    assert parse_policy(again).digest() == first.digest()
