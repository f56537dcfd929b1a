"""The engine's steps (engine.py, _resolve.py, _match.py, limits.py), each judged on its own.

`decide` is a sequence of named steps; the table tests (test_engine_table.py) check what they
add up to, these check each step alone, so a step that is broken or no longer called fails a
test named for it. The last test walks `decide` to every reason code the steps can answer with.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from keysafe.policy import engine, limits
from keysafe.policy._match import Unevaluable, rare_conditions_hold, scope_matches
from keysafe.policy._resolve import Refused, Resolved, resolve
from keysafe.policy.compiled import CompiledPolicy, CompiledRule, compile_policy
from keysafe.policy.engine import AgentState, Decision
from keysafe.policy.intent import Intent
from keysafe.policy.limits import Tally, Violation
from keysafe.policy.reasons import Reason
from keysafe.policy.registry import Registry
from keysafe.policy.rules import Policy, parse_policy

REGISTRY = Registry.builtin()
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
BOT = AgentState("bot", "active")
R1 = "0x" + "1" * 40
R2 = "0x" + "2" * 40
USDC_ON_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"

POLICY = f"""
version: 1
rules:
  - name: pay
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
    recipients: ["{R1}"]
    max_per_tx: {{ETH: "0.01"}}
    approve_above: {{ETH: "0.005"}}
    limits:
      - window: 1h
        max_count: 2
      - window: 24h
        max: {{ETH: "0.02"}}
  - name: block-r2
    deny: [evm.transfer]
    recipients: ["{R2}"]
  - name: review-calls
    ask: [evm.call]
    wallets: [main]
  - name: web
    allow: [http.request]
    urls: ["https://api.example.com/**"]
  - name: permits
    allow: [evm.sign_typed_data]
    wallets: [main]
    contracts: ["{USDC_ON_BASE}"]
"""


def compiled(text: str = POLICY) -> CompiledPolicy:
    return compile_policy(parse_policy(text), REGISTRY)


def rule(name: str, text: str = POLICY) -> CompiledRule:
    return next(r for rules in compiled(text).by_action.values() for r in rules if r.name == name)


def transfer(amount: str = "0.001", to: str = R1, **kw: object) -> Intent:
    return Intent.model_validate(
        {
            "action": "evm.transfer",
            "chain": "base",
            "wallet": "main",
            "asset": "ETH",
            "amount": amount,
            "to": to,
        }
        | kw
    )


def resolved(intent: Intent) -> Resolved:
    return resolve(intent, compiled().registry, NOW)


def no_usage(rule: str, since: datetime) -> tuple[Mapping[str, int], int]:
    return {}, 0


def decide(intent: Intent, usage: limits.Usage = no_usage) -> Decision:
    return engine.decide(parse_policy(POLICY), BOT, intent, registry=REGISTRY, usage=usage, now=NOW)


# --- the steps before any rule ------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "code"),
    [
        (AgentState("bot", "revoked"), Reason.AGENT_REVOKED),
        (AgentState("bot", "paused"), Reason.AGENT_PAUSED),
        (AgentState("bot", "active", paused_all=True), Reason.PAUSED_ALL),
        (AgentState("bot", "active"), None),
    ],
)
def test_status_refusal_each_brake_denies_active_agent_passes(
    agent: AgentState, code: Reason | None
) -> None:
    got = engine.status_refusal(agent)
    assert (got.code if got is not None else None) == code


def test_no_policy_denies_naming_the_agent() -> None:
    d = engine._no_policy(BOT)
    assert (d.outcome, d.code) == ("deny", Reason.NO_POLICY) and "'bot'" in d.reason


def test_policy_expired_denies_at_expiry_and_for_a_dry_run_after_it() -> None:
    c = compiled(POLICY + "expires: 2026-03-02T12:00:00Z\n")
    before, after = NOW - timedelta(seconds=1), NOW + timedelta(days=1)
    assert engine._policy_expired(c, BOT, before, before) is None
    expired = engine._policy_expired(c, BOT, NOW, NOW)
    assert expired is not None and expired.code == Reason.POLICY_EXPIRED
    dry_run = engine._policy_expired(c, BOT, before, after)
    assert dry_run is not None and dry_run.code == Reason.POLICY_EXPIRED


def test_unknown_action_denies_with_the_action_named() -> None:
    d = engine._unknown_action(Intent(action="evm.teleport"))
    assert d.code == Reason.UNKNOWN_ACTION and "'evm.teleport'" in d.reason


@pytest.mark.parametrize(
    ("intent", "code", "words"),
    [
        (transfer(chain="atlantis"), Reason.UNKNOWN_CHAIN, "not in the chain registry"),
        (transfer(asset="DOGE"), Reason.UNKNOWN_ASSET, "not known on base"),
        (Intent(action="evm.transfer", asset="ETH"), Reason.UNEVALUABLE, "asset but no chain"),
        (transfer(amount="0.1234567890123456789"), Reason.UNEVALUABLE, "decimal places"),
        (Intent(action="evm.call", fee="0.1"), Reason.UNEVALUABLE, "fee but no chain"),
        (transfer(fee="lots"), Reason.UNEVALUABLE, "network fee"),
    ],
)
def test_resolve_refuses_what_no_rule_can_judge(intent: Intent, code: Reason, words: str) -> None:
    with pytest.raises(Refused) as info:
        resolved(intent)
    assert info.value.code == code and words in info.value.reason


def test_resolve_adds_the_fee_to_a_native_spend_and_spends_it_apart_otherwise() -> None:
    native = resolved(transfer("0.001", fee="0.0005"))
    assert [(s.asset.symbol, s.units, s.fee_units) for s in native.spends] == [
        ("ETH", 15 * 10**14, 5 * 10**14)
    ]
    token = resolved(transfer("1", asset="USDC", fee="0.0005"))
    assert [(s.asset.symbol, s.units) for s in token.spends] == [
        ("USDC", 10**6),
        ("ETH", 5 * 10**14),
    ]


def test_fee_too_high_denies_over_the_chain_ceiling_only() -> None:
    ceiling = REGISTRY.chain("base").fee_ceiling
    assert engine._fee_too_high(resolved(transfer(fee=str(ceiling))), REGISTRY) is None
    d = engine._fee_too_high(resolved(transfer(fee=str(ceiling * 2))), REGISTRY)
    assert d is not None and d.code == Reason.FEE_TOO_HIGH and d.next_step


# --- matching -----------------------------------------------------------------------------


def test_scope_matches_recipient_in_and_out_of_scope() -> None:
    pay = rule("pay")
    assert scope_matches(pay, resolved(transfer(to=R1)))
    assert not scope_matches(pay, resolved(transfer(to=R2)))
    assert not scope_matches(pay, resolved(transfer(wallet="other")))


def test_rare_conditions_hold_url_pattern_and_unjudgeable_url() -> None:
    web = rule("web")
    get = Intent(action="http.request", method="GET", url="https://api.example.com/v1/x")
    assert rare_conditions_hold(web, resolved(get))
    other = get.model_copy(update={"url": "https://evil.example.net/"})
    assert not rare_conditions_hold(web, resolved(other))
    with pytest.raises(Unevaluable):
        rare_conditions_hold(web, resolved(get.model_copy(update={"url": "ftp://x"})))


def test_matching_rules_smallest_name_first_and_unevaluable_denies() -> None:
    both = """
version: 1
rules:
  - name: b-allow
    allow: [evm.transfer]
    wallets: [main]
  - name: a-allow
    allow: [evm.transfer]
    wallets: [main]
"""
    got = engine._matching_rules(compiled(both), resolved(transfer()))
    assert not isinstance(got, Decision) and [r.name for r in got] == ["a-allow", "b-allow"]
    unknown = both.replace(
        "wallets: [main]\n  - name: a", "wallets: [main]\n    chains: [atlantis]\n  - name: a"
    )
    d = engine._matching_rules(compiled(unknown), resolved(transfer()))
    assert isinstance(d, Decision) and (d.code, d.rule) == (Reason.UNEVALUABLE, "b-allow")


def test_denied_by_rule_a_matched_deny_decides_with_its_name() -> None:
    c = compiled()
    r = resolved(transfer(to=R2))
    matched = engine._matching_rules(c, r)
    assert not isinstance(matched, Decision)
    names = tuple(m.name for m in matched)
    d = engine._denied_by_rule(matched, r.intent, names)
    assert d is not None and (d.code, d.rule, d.matched) == (
        Reason.POLICY_DENIED,
        "block-r2",
        names,
    )
    assert engine._denied_by_rule([rule("pay")], r.intent, ("pay",)) is None


def test_typed_data_on_asset_needs_a_rule_naming_type_and_contract() -> None:
    c = compiled()
    permit = Intent(
        action="evm.sign_typed_data",
        chain="base",
        wallet="main",
        contract=USDC_ON_BASE,
        primary_type="Permit",
    )
    d = engine._typed_data_on_asset(c, permit, [rule("permits")], ("permits",))
    assert isinstance(d, Decision) and d.code == Reason.TYPED_DATA_ON_ASSET
    plain = permit.model_copy(update={"contract": R1})
    permits = [rule("permits")]
    kept = engine._typed_data_on_asset(c, plain, permits, ("permits",))
    assert kept == (permits, ("permits",))


# --- limits -------------------------------------------------------------------------------


def test_judge_per_tx_over_the_cap_violates_over_the_threshold_asks() -> None:
    tally = Tally()
    limits.judge_per_tx("bot", rule("pay"), resolved(transfer("0.006")), tally)
    assert (tally.violation, tally.asks) == (None, ["pay"])
    limits.judge_per_tx("bot", rule("pay"), resolved(transfer("0.02")), tally)
    assert tally.violation is not None and tally.violation.code == Reason.OVER_PER_TX_LIMIT


def test_judge_count_window_the_request_is_one_more_action() -> None:
    pay = rule("pay")
    hour = pay.limits[0]
    tally = Tally()
    limits.judge_count_window("pay", hour, 2, 1, tally)
    assert tally.violation is None and tally.windows[-1][-1] is True
    limits.judge_count_window("pay", hour, 2, 2, tally)
    assert tally.violation == Violation(
        Reason.COUNT_LIMIT_EXCEEDED,
        "Rule 'pay' allows at most 2 actions per 1h; 2 already used. Nothing was signed.",
        "pay",
    )


def test_judge_amount_window_usage_plus_request_must_fit() -> None:
    pay = rule("pay")
    day = pay.limits[1]
    assert day.caps is not None
    r = resolved(transfer("0.01"))
    fits, over = Tally(), Tally()
    limits.judge_amount_window("pay", day, day.caps, {"base:native": 10**16}, r.spends, fits)
    assert fits.violation is None
    limits.judge_amount_window("pay", day, day.caps, {"base:native": 10**16 + 1}, r.spends, over)
    assert over.violation is not None and over.violation.code == Reason.BUDGET_EXCEEDED


def test_judge_rule_books_a_charge_per_spend_only_for_a_rule_with_windows() -> None:
    tally = Tally()
    limits.judge_rule("bot", rule("pay"), resolved(transfer("0.001")), no_usage, tally)
    assert [(c.rule, c.asset, c.units) for c in tally.charges] == [("pay", "base:native", 10**15)]
    assert len(tally.windows) == 2
    calls = Tally()
    limits.judge_rule(
        "bot",
        rule("review-calls"),
        resolved(Intent(action="evm.call", chain="base", wallet="main")),
        no_usage,
        calls,
    )
    assert calls.charges == [] and calls.windows == []


def test_window_spend_sums_rows_of_one_symbol_in_the_finest_decimals() -> None:
    assert limits.window_spend({"base:native": 10**15, "USDC": 1}, "ETH", REGISTRY) == (10**15, 18)
    assert limits.window_spend({}, "NOPE", REGISTRY) is None


def test_judge_limits_unevaluable_cap_denies_with_the_rule() -> None:
    fine = """
version: 1
rules:
  - name: fine
    allow: [evm.transfer]
    wallets: [main]
    max_per_tx: {USDC: "0.0000001"}
"""
    usdc = transfer("1", asset="USDC")
    d = engine._judge_limits(BOT, [rule("fine", fine)], resolved(usdc), no_usage)
    assert isinstance(d, Decision) and (d.code, d.rule) == (Reason.UNEVALUABLE, "fine")


# --- the answer ---------------------------------------------------------------------------


def test_verdict_violation_then_ask_then_allow_then_no_match() -> None:
    r = resolved(transfer())
    kw = {"approved": False, "granted": frozenset[str]()}
    broken = Tally()
    broken.allows.append("pay")
    broken.violation = Violation(Reason.BUDGET_EXCEEDED, "over", "pay")
    assert engine._verdict(broken, BOT, r, ("pay",), **kw).code == Reason.BUDGET_EXCEEDED
    asking = Tally()
    asking.asks.append("pay")
    assert engine._verdict(asking, BOT, r, ("pay",), **kw).code == Reason.APPROVAL_REQUIRED
    granted = engine._verdict(asking, BOT, r, ("pay",), approved=False, granted=frozenset({"pay"}))
    assert (granted.outcome, granted.rule) == ("allow", "pay")
    allowing = Tally()
    allowing.allows.append("pay")
    assert engine._verdict(allowing, BOT, r, ("pay",), **kw).outcome == "allow"
    assert engine._verdict(Tally(), BOT, r, (), **kw).code == Reason.NO_MATCHING_RULE


def test_no_matching_rule_names_the_wallet_of_a_signing_action() -> None:
    d = engine._no_matching_rule(BOT, transfer(), ())
    assert d.code == Reason.NO_MATCHING_RULE and "from wallet 'main'" in d.reason
    assert (
        "from wallet" not in engine._no_matching_rule(BOT, Intent(action="http.request"), ()).reason
    )


# --- decide reaches every reason ------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "code"),
    [
        (Intent(action="evm.teleport"), Reason.UNKNOWN_ACTION),
        (transfer(chain="atlantis"), Reason.UNKNOWN_CHAIN),
        (transfer(asset="DOGE"), Reason.UNKNOWN_ASSET),
        (transfer(fee="1000"), Reason.FEE_TOO_HIGH),
        (transfer(to=R2), Reason.POLICY_DENIED),
        (
            Intent(
                action="evm.sign_typed_data",
                chain="base",
                wallet="main",
                contract=USDC_ON_BASE,
                primary_type="Permit",
            ),
            Reason.TYPED_DATA_ON_ASSET,
        ),
        (transfer("0.02"), Reason.OVER_PER_TX_LIMIT),
        (transfer("0.006"), Reason.APPROVAL_REQUIRED),
        (Intent(action="http.request", method="GET", url="ftp://x"), Reason.UNEVALUABLE),
        (transfer(wallet="other"), Reason.NO_MATCHING_RULE),
        (transfer(), None),
    ],
    ids=lambda v: str(v) if isinstance(v, Reason) else None,
)
def test_decide_reaches_each_steps_reason(intent: Intent, code: Reason | None) -> None:
    assert decide(intent).code == code


def test_decide_reaches_the_window_reasons() -> None:
    def two_used(rule: str, since: datetime) -> tuple[Mapping[str, int], int]:
        return {}, 2

    def day_spent(rule: str, since: datetime) -> tuple[Mapping[str, int], int]:
        return {"base:native": 2 * 10**16}, 0

    assert decide(transfer(), two_used).code == Reason.COUNT_LIMIT_EXCEEDED
    assert decide(transfer(), day_spent).code == Reason.BUDGET_EXCEEDED


def test_decide_reaches_the_policy_and_agent_reasons() -> None:
    expired = parse_policy(POLICY + "expires: 2026-03-01T00:00:00Z\n")
    paused = AgentState("bot", "paused")

    def code(policy: Policy | None, agent: AgentState) -> Reason | None:
        d = engine.decide(policy, agent, transfer(), registry=REGISTRY, usage=no_usage, now=NOW)
        return d.code

    assert code(expired, BOT) == Reason.POLICY_EXPIRED
    assert code(None, BOT) == Reason.NO_POLICY
    assert code(expired, paused) == Reason.AGENT_PAUSED
