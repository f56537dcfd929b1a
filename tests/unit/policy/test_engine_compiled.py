"""The compiled engine decides exactly as the engine did before it compiled policies.

`reference_engine.py` beside this file is the engine as it was (it judged the policy as written on
every call). Hypothesis draws policies that use every condition and constraint, including the
ones that make a rule unevaluable (an unknown chain, a cap finer than the asset's unit, a URL
pattern that cannot be parsed), and requests that hit them; every field of both decisions must be
equal, windows and charges included. Then the cache: a changed registry or policy never reuses a
compiled form, and a cached form decides as a fresh one.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keysafe.policy import compiled
from keysafe.policy._resolve import base_units
from keysafe.policy.engine import AgentState, Decision, decide
from keysafe.policy.intent import Intent
from keysafe.policy.registry import AssetInfo, ChainInfo, Registry, parse_decimal, to_base_units
from keysafe.policy.rules import Policy, parse_policy
from tests.policy_examples import example_text
from tests.unit.policy import reference_engine
from tests.unit.policy.fake_ledger import Ledger

R1 = "0x" + "1" * 40
R2 = "0x" + "2" * 40
R3 = "0x" + "3" * 40
USDC_ON_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
USDC18_ON_LOCAL = "0x" + "18" * 20
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
SOL_TO = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
# Built in, plus what owners add: an 18-decimal "USDC" on the local chain (same symbol, other
# units), a Solana token, and a chain of their own with a ceiling written "0.050".
REGISTRY = Registry.builtin().with_additions(
    [ChainInfo("mine", "evm", 777, builtin=False, max_fee=Decimal("0.050"))],
    [
        AssetInfo("USDC", "local", USDC18_ON_LOCAL, 18, builtin=False),
        AssetInfo("BONK", "solana", BONK, 5, builtin=False),
    ],
)
IDENTITIES = [*sorted({a.identity for a in REGISTRY.assets}), "USDC", "ETH", "gone:0xdead"]
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)  # a Monday
TIMES = [NOW, NOW.replace(hour=7, minute=59), NOW.replace(hour=21), NOW + timedelta(days=5)]

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _subset(pool: list[Any], max_size: int = 3) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(pool), min_size=1, max_size=max_size, unique_by=repr)


AMOUNTS = ["0", "0.001", "0.005", "0.01", "1", "25", "100", "0.0000001", "0.00000000000000000001"]
ACTIONS = [
    "evm.transfer",
    "evm.approve",
    "evm.call",
    "evm.sign_message",
    "evm.sign_typed_data",
    "solana.transfer",
    "http.request",
    "data.read",
    "credential.release",
    "*",
]


@st.composite
def rule(draw: st.DrawFn, name: str) -> dict[str, Any]:
    verb = draw(st.sampled_from(["allow", "allow", "ask", "deny"]))
    out: dict[str, Any] = {"name": name, verb: draw(_subset(ACTIONS, 2))}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "wallets": _subset(["main", "hot"]),
        "chains": _subset(["base", "local", "ethereum", 8453, "1", "mars", "solana", "mine"]),
        "assets": _subset(["ETH", "usdc", "SOL", "BONK", "DAI"]),
        "recipients": _subset([R1, R1.upper().replace("X", "x"), R2, SOL_TO]),
        "contracts": _subset([USDC_ON_BASE.lower(), USDC_ON_BASE.upper().replace("X", "x"), R3]),
        "spenders": _subset([R2, R3]),
        "selectors": _subset(["0xa9059cbb", "0XA9059CBB", "0x095ea7b3"]),
        "credentials": _subset(["github", "svc"]),
        "methods": _subset(["GET", "post"]),
        "urls": _subset(
            ["https://api.github.com/repos/**", "https://*.example.com/v1/*", "ftp://nope"]
        ),
        "data": _subset(["balances", "history"]),
        "primary_types": _subset(["Permit", "Order"]),
        "message_matches": st.sampled_from(["^hello", "sign in", "(?i)HELLO"]),
        "when": st.builds(lambda u: {"unlimited": u}, st.booleans()),
        "outside_hours": st.builds(
            lambda f, t, d, z: {"from": f, "to": t, "days": d, "tz": z},
            st.sampled_from(["08:00", "22:00"]),
            st.sampled_from(["20:00", "06:00"]),
            _subset(["mon", "tue", "sat", "sun"], 4),
            st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
        ),
    }
    for key, strategy in optional.items():
        if draw(st.integers(0, 9)) < (6 if key == "wallets" else 2):
            out[key] = draw(strategy)
    if verb != "deny":
        caps = st.dictionaries(
            st.sampled_from(["ETH", "USDC", "usdc", "SOL", "BONK"]),
            st.sampled_from(AMOUNTS),
            min_size=1,
            max_size=3,
        )
        if draw(st.booleans()):
            out["max_per_tx"] = draw(caps)
        if draw(st.booleans()):
            out["approve_above"] = draw(caps)
        if draw(st.booleans()):
            limits = []
            for window in draw(_subset(["1m", "1h", "24h"], 2)):
                limit: dict[str, Any] = {"window": window}
                if draw(st.booleans()):
                    limit["max_count"] = draw(st.integers(0, 3))
                if draw(st.booleans()) or "max_count" not in limit:
                    limit["max"] = draw(caps)
                limits.append(limit)
            out["limits"] = limits
    return out


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    names = draw(
        st.lists(
            st.sampled_from(["a", "b", "m", "pay", "z", "zz"]), min_size=1, max_size=5, unique=True
        )
    )
    raw: dict[str, Any] = {"version": 1, "rules": [draw(rule(n)) for n in names]}
    if draw(st.integers(0, 5)) == 0:
        raw["expires"] = draw(
            st.sampled_from(["2026-03-04T00:00:00Z", "2026-03-02T13:00:00+02:00"])
        )
    return Policy.model_validate(raw)


def _maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.sampled_from(values))


INTENT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "chain": _maybe(
        ["base", "local", "ethereum", 8453, "8453", "BASE", " base", "mars", "solana", "mine", 777]
    ),
    "wallet": _maybe(["main", "hot"]),
    "asset": _maybe(
        [
            "ETH",
            "eth",
            "USDC",
            "usdc",
            USDC_ON_BASE,
            USDC_ON_BASE.lower(),
            "SOL",
            BONK,
            USDC18_ON_LOCAL,
            "DOGE",
        ]
    ),
    "amount": _maybe(
        [
            "0",
            "0.001",
            "0.005",
            "0.0051",
            "0.01",
            "1",
            "25",
            "100",
            "unlimited",
            "0.0000001",
            "1e3",
            " 1",
            "abc",
            "1.",
            ".5",
            "١",
            "0.010",
        ]
    ),
    "fee": _maybe(["0.0001", "0.02", "0.5", "bad", "0.0000000000000000001", "0"]),
    "to": _maybe([R1, R1.upper().replace("X", "x"), R2, R3, SOL_TO]),
    "contract": _maybe([USDC_ON_BASE, USDC_ON_BASE.lower(), R3]),
    "spender": _maybe([R2, R3]),
    "selector": _maybe(["0xa9059cbb", "0XA9059CBB"]),
    "credential": _maybe(["github", "svc"]),
    "method": _maybe(["GET", "post", "DELETE"]),
    "url": _maybe(
        [
            "https://api.github.com/repos/a/b",
            "https://x.example.com/v1/y",
            "https://api.github.com/repos%2F..%2Fadmin",
            "nonsense",
        ]
    ),
    "message": _maybe(["hello there", "please sign in", "HELLO"]),
    "primary_type": _maybe(["Permit", "Order"]),
    "data": _maybe(["balances"]),
    "unlimited": _maybe([True, False]),
    "time": _maybe([NOW - timedelta(hours=5), NOW + timedelta(days=3)]),
}


@st.composite
def intents(draw: st.DrawFn) -> Intent:
    raw: dict[str, Any] = {"action": draw(st.sampled_from([*ACTIONS[:-1], "nonsense"]))}
    for key, strategy in INTENT_FIELDS.items():
        if draw(st.integers(0, 2)) > 0:
            value = draw(strategy)
            if value is not None:
                raw[key] = value
    return Intent.model_validate(raw)


@st.composite
def ledgers(draw: st.DrawFn, names: list[str]) -> Ledger:
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(0, 30 * 3600),
                st.sampled_from(names),
                st.sampled_from([*IDENTITIES, None]),
                st.sampled_from([0, 1, 10**6, 10**16, 5 * 10**16, 100 * 10**6, 10**19]),
            ),
            max_size=12,
        )
    )
    return Ledger(
        [(NOW - timedelta(seconds=s), r, a, u, -n) for n, (s, r, a, u) in enumerate(rows)]
    )


def _everything(d: Any) -> tuple[Any, ...]:
    """Every field of a decision (the reference's is its own class), as plain data."""
    return (
        d.to_dict(),
        [(c.rule, c.asset, c.units) for c in d.charges],
        d.next_step,
        tuple(d.matched),
    )


AGENTS = [AgentState("bot", "active")] * 6 + [
    AgentState("bot", "paused"),
    AgentState("bot", "active", paused_all=True),
]


@SETTINGS
@given(data=st.data())
def test_decide_compiled_equals_reference_engine_field_by_field(data: st.DataObject) -> None:
    policy = data.draw(policies(), label="policy")
    names = [r.name for r in policy.rules]
    ledger = data.draw(ledgers(names), label="ledger")
    for intent in data.draw(st.lists(intents(), min_size=1, max_size=8), label="requests"):
        agent = data.draw(st.sampled_from(AGENTS))
        now = data.draw(st.sampled_from(TIMES))
        approved = data.draw(st.booleans())
        granted = frozenset(data.draw(st.lists(st.sampled_from(names), max_size=2)))
        ref_agent = reference_engine.AgentState(agent.name, agent.status, agent.paused_all)
        want = reference_engine.decide(
            policy,
            ref_agent,
            intent,
            registry=REGISTRY,
            usage=ledger.usage,
            now=now,
            approved=approved,
            granted=granted,
        )
        got = decide(
            policy,
            agent,
            intent,
            registry=REGISTRY,
            usage=ledger.usage,
            now=now,
            approved=approved,
            granted=granted,
        )
        assert _everything(got) == _everything(want), (intent, now)
        event(f"{got.outcome} {got.code}")


EXAMPLE = parse_policy(example_text())
PAY = "pay-small-on-base"


@settings(SETTINGS, max_examples=30)
@given(intent=intents(), now=st.sampled_from(TIMES))
def test_decide_cached_compiled_form_decides_as_a_fresh_compile(
    intent: Intent, now: datetime
) -> None:
    ledger = Ledger()
    first = decide(
        EXAMPLE, AgentState("bot", "active"), intent, registry=REGISTRY, usage=ledger.usage, now=now
    )
    cached = compiled.compile_policy(EXAMPLE, REGISTRY)
    compiled.clear_caches()
    fresh = decide(
        EXAMPLE, AgentState("bot", "active"), intent, registry=REGISTRY, usage=ledger.usage, now=now
    )
    assert compiled.compile_policy(EXAMPLE, REGISTRY) is not cached
    assert _everything(first) == _everything(fresh)


def _transfer(chain: str, asset: str, amount: str) -> Intent:
    return Intent(
        action="evm.transfer", chain=chain, wallet="main", asset=asset, amount=amount, to=R1
    )


def _decide(policy: Policy, registry: Registry, intent: Intent) -> Decision:
    return decide(
        policy,
        AgentState("bot", "active"),
        intent,
        registry=registry,
        usage=Ledger().usage,
        now=NOW,
    )


MINE_POLICY = parse_policy(
    """
version: 1
rules:
  - name: pay-on-mine
    allow: [evm.transfer]
    wallets: [main]
    chains: [mine, base]
    recipients: ["0x1111111111111111111111111111111111111111"]
    max_per_tx: {ETH: "0.01", TOK: "5"}
    limits: [{window: 24h, max: {TOK: "10"}}]
"""
)
TOKEN = "0x" + "ab" * 20


def test_attack_stale_compiled_policy_survives_chain_add() -> None:
    """A rule naming a chain the registry lacks cannot be evaluated; once the owner adds the
    chain, the same policy object is judged against the new registry, not the compiled form
    that remembered the chain as unknown."""
    request = _transfer("base", "ETH", "0.001")
    before = _decide(MINE_POLICY, Registry.builtin(), request)
    assert (before.outcome, before.code) == ("deny", "UNEVALUABLE")
    added = Registry.builtin().with_additions([ChainInfo("mine", "evm", 777, builtin=False)], [])
    after = _decide(MINE_POLICY, added, request)
    assert (after.outcome, after.rule) == ("allow", "pay-on-mine")
    # and back: a registry equal to the first reuses nothing the second one compiled
    again = _decide(MINE_POLICY, Registry.builtin(), request)
    assert (again.outcome, again.code) == ("deny", "UNEVALUABLE")


@pytest.mark.parametrize("decimals", [0, 2, 6, 18])
def test_attack_stale_compiled_policy_survives_asset_decimals_change(decimals: int) -> None:
    """The same token re-added with other decimals: caps in base units are worked out again
    (5 TOK is 5·10^decimals base units), never taken from the compiled form of the old one."""
    base_reg = Registry.builtin().with_additions([ChainInfo("mine", "evm", 777, builtin=False)], [])
    six = base_reg.with_additions([], [AssetInfo("TOK", "mine", TOKEN, 6, builtin=False)])
    assert _decide(MINE_POLICY, six, _transfer("mine", "TOK", "5")).outcome == "allow"
    other = base_reg.with_additions([], [AssetInfo("TOK", "mine", TOKEN, decimals, builtin=False)])
    for amount in ("5", "5.5", "0.001"):
        request = _transfer("mine", "TOK", amount)
        ref = reference_engine.decide(
            MINE_POLICY,
            reference_engine.AgentState("bot", "active"),
            request,
            registry=other,
            usage=Ledger().usage,
            now=NOW,
        )
        assert _everything(_decide(MINE_POLICY, other, request)) == _everything(ref)


def test_attack_stale_compiled_policy_survives_asset_address_change() -> None:
    """The token moves to another address: a request naming the old address is unknown, the
    new one resolves; the compiled asset index is not reused."""
    base_reg = Registry.builtin().with_additions([ChainInfo("mine", "evm", 777, builtin=False)], [])
    old = base_reg.with_additions([], [AssetInfo("TOK", "mine", TOKEN, 6, builtin=False)])
    new_address = "0x" + "cd" * 20
    new = base_reg.with_additions([], [AssetInfo("TOK", "mine", new_address, 6, builtin=False)])
    assert _decide(MINE_POLICY, old, _transfer("mine", TOKEN, "1")).outcome == "allow"
    assert _decide(MINE_POLICY, new, _transfer("mine", TOKEN, "1")).code == "UNKNOWN_ASSET"
    assert _decide(MINE_POLICY, new, _transfer("mine", new_address, "1")).outcome == "allow"


def test_attack_stale_compiled_policy_changed_policy_is_compiled_again() -> None:
    """A policy with the same rule names and a lower cap is a new object: its own cap holds."""
    registry = Registry.builtin().with_additions([ChainInfo("mine", "evm", 777, builtin=False)], [])
    request = _transfer("base", "ETH", "0.005")
    assert _decide(MINE_POLICY, registry, request).outcome == "allow"
    lower = parse_policy(MINE_POLICY.model_dump_json(by_alias=True).replace('"0.01"', '"0.001"'))
    assert lower.rules[0].max_per_tx == {"ETH": Decimal("0.001"), "TOK": Decimal("5")}
    assert _decide(lower, registry, request).code == "OVER_PER_TX_LIMIT"
    assert _decide(MINE_POLICY, registry, request).outcome == "allow"


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, Decimal):
        return value + 1
    if value is None:
        return "0xfeed"
    return value + "x"


@pytest.mark.parametrize("kind", ["chain", "asset"])
def test_attack_stale_compiled_policy_registry_key_covers_every_field(kind: str) -> None:
    """Any change to any field of a chain or an asset (decimals, address, chain id, family,
    ceiling, and fields added later) gives another compiled registry: the cache key is the whole
    registry, not its names. (A ceiling written differently but equal, "0.05" and "0.050",
    shares one: see the next test.)"""
    base = Registry.builtin()
    first = compiled.compile_registry(base)
    items = base.chains if kind == "chain" else base.assets
    cls = ChainInfo if kind == "chain" else AssetInfo
    for f in dataclasses.fields(cls):
        if f.name == "family":
            changed = dataclasses.replace(items[0], family="solana")  # type: ignore[arg-type]
        else:
            changed = dataclasses.replace(items[0], **{f.name: _changed(getattr(items[0], f.name))})
        new = (
            Registry((changed, *base.chains[1:]), base.assets)
            if kind == "chain"
            else Registry(base.chains, (changed, *base.assets[1:]))
        )
        assert compiled.compile_registry(new) is not first, f.name
    assert compiled.compile_registry(Registry.builtin()) is first  # equal content: reused


def test_fee_ceiling_is_quoted_as_the_callers_registry_writes_it() -> None:
    """Two registries equal but for how a ceiling is written ("0.05" / "0.050") share a compiled
    form; the message still quotes the caller's own."""
    chains = [
        ChainInfo("mine", "evm", 777, builtin=False, max_fee=Decimal(v)) for v in ("0.05", "0.050")
    ]
    request = Intent(
        action="evm.transfer",
        chain="mine",
        wallet="main",
        asset="ETH",
        amount="0.001",
        fee="0.2",
        to=R1,
    )
    for chain in chains:
        registry = Registry.builtin().with_additions([chain], [])
        d = _decide(MINE_POLICY, registry, request)
        assert d.code == "FEE_TOO_HIGH"
        assert f"over the {chain.max_fee} ETH ceiling" in d.reason


def test_decision_windows_built_when_read_equal_the_eager_ones() -> None:
    """An allow keeps its windows as numbers; reading them gives the WindowState the engine
    always gave, and the Decision still behaves as the dataclass it is (equality, replace)."""
    ledger = Ledger()
    request = _transfer("base", "USDC", "2.5")
    d = decide(
        EXAMPLE,
        AgentState("bot", "active"),
        request,
        registry=REGISTRY,
        usage=ledger.usage,
        now=NOW,
    )
    ref = reference_engine.decide(
        EXAMPLE,
        reference_engine.AgentState("bot", "active"),
        request,
        registry=REGISTRY,
        usage=ledger.usage,
        now=NOW,
    )
    assert [w.to_dict() for w in d.windows] == [w.to_dict() for w in ref.windows]
    assert d.windows is d.windows  # built once
    eager = Decision(d.outcome, d.rule, d.code, d.reason, d.matched, d.windows, d.charges)
    assert eager == d and hash(eager) == hash(d)
    asked = dataclasses.replace(d, outcome="ask", reason="The owner approves this every time.")
    assert (asked.outcome, asked.windows, asked.charges) == ("ask", d.windows, d.charges)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.outcome = "deny"  # type: ignore[misc]
    assert Decision("deny", None, "X", "why").windows == ()
    given_as_list = Decision("deny", None, "X", "why", (), list(d.windows))  # type: ignore[arg-type]
    assert given_as_list.windows == list(d.windows)  # kept as the caller gave it


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet="0123456789. ١e-_+x", max_size=12) | st.sampled_from(AMOUNTS),
    decimals=st.sampled_from([None, 0, 1, 6, 18]),
)
def test_amount_in_base_units_reads_as_parse_decimal_and_to_base_units(
    text: str, decimals: int | None
) -> None:
    def reference() -> int | str:
        try:
            amount = parse_decimal(text)
            if decimals is None:
                raise ValueError("needs an asset to be judged")
            return to_base_units(amount, decimals)
        except ValueError as exc:
            return str(exc)

    try:
        got: int | str = base_units(text, decimals)
    except ValueError as exc:
        got = str(exc)
    assert got == reference()
