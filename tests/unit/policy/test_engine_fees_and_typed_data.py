"""Network fees and typed data in the decision engine, one named row per behaviour (issue 12).

Fees: a request's `fee` (native units) is charged with its value when it moves the native asset,
and as a second native amount otherwise; each chain's fee ceiling denies first (FEE_TOO_HIGH).
The same holds for Solana intents, whose decoder fills `fee` in SOL.
Typed data: plain typed data for a registered token's contract needs a rule naming its primary
type and the contract (TYPED_DATA_ON_ASSET otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from keysafe.policy.engine import AgentState, Decision, decide
from keysafe.policy.intent import Intent
from keysafe.policy.registry import ChainInfo, Registry
from keysafe.policy.rules import parse_policy
from tests.unit.policy.fake_ledger import Ledger

REGISTRY = Registry.builtin()
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
AGENT = AgentState("bot", "active")
R1 = "0x" + "1" * 40
NFT = "0x03a520b32C04BF3bEEf7BEb72E919cf822Ed34f1"
USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
USDC_ETH = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
SOL_TO = "So11111111111111111111111111111111111111112"
ETH = 10**18
SOL = 10**9
USDC = 10**6

FEES = parse_policy("""
version: 1
rules:
  - name: eth-pay
    allow: [evm.transfer, evm.call]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    max_per_tx: {ETH: "0.01"}
    limits: [{window: 24h, max: {ETH: "0.05"}}]
  - name: ask-above
    allow: [evm.transfer]
    wallets: [main]
    chains: [sepolia]
    approve_above: {ETH: "0.005"}
  - name: usdc-pay
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
    assets: [USDC]
    max_per_tx: {USDC: "100", ETH: "0.001"}
    limits: [{window: 24h, max: {USDC: "100", ETH: "0.001"}, max_count: 2}]
  - name: calls
    allow: [evm.call]
    wallets: [main]
    chains: [base]
    limits: [{window: 24h, max: {ETH: "0.002"}}]
  - name: local-anything
    allow: [evm.call]
    wallets: [main]
    chains: [local]
  - name: sol-pay
    allow: [solana.transfer]
    wallets: [main]
    assets: [SOL]
    max_per_tx: {SOL: "1"}
    limits: [{window: 24h, max: {SOL: "1.5"}}]
""")

TYPED = parse_policy(f"""
version: 1
rules:
  - name: typed-on-base
    allow: [evm.sign_typed_data]
    wallets: [main]
    chains: [base]
  - name: typed-asks
    ask: [evm.sign_typed_data]
    wallets: [main]
    chains: [ethereum]
  - name: usdc-cancel
    allow: [evm.sign_typed_data]
    wallets: [main]
    primary_types: [CancelAuthorization]
    contracts: ["{USDC_BASE}"]
  - name: type-without-contract
    allow: [evm.sign_typed_data]
    wallets: [main]
    primary_types: [Vote]
  - name: permits-only
    allow: [evm.approve]
    wallets: [main]
    primary_types: [Permit]
""")


def eth(value: str, fee: str | None, *, action: str = "evm.transfer", **kw: Any) -> dict[str, Any]:
    return {
        "action": action,
        "chain": "ethereum",
        "asset": "ETH",
        "amount": value,
        "to": R1,
        "fee": fee,
    } | kw


def usdc(amount: str, fee: str | None) -> dict[str, Any]:
    return {
        "action": "evm.transfer",
        "chain": "base",
        "asset": "USDC",
        "amount": amount,
        "to": R1,
        "contract": USDC_BASE,
        "fee": fee,
    }


def call(fee: str | None, *, chain: str = "base", **kw: Any) -> dict[str, Any]:
    return {
        "action": "evm.call",
        "chain": chain,
        "contract": R1,
        "to": R1,
        "selector": "0xd0e30db0",
        "fee": fee,
    } | kw


def sol(amount: str, fee: str | None, chain: str = "solana") -> dict[str, Any]:
    return {
        "action": "solana.transfer",
        "chain": chain,
        "asset": "SOL",
        "amount": amount,
        "to": SOL_TO,
        "fee": fee,
    }


def typed(primary: str | None, contract: str, chain: str = "base") -> dict[str, Any]:
    return {
        "action": "evm.sign_typed_data",
        "chain": chain,
        "contract": contract,
        "primary_type": primary,
        "domain": {"name": "x", "verifyingContract": contract},
    }


@dataclass(frozen=True)
class Case:
    request: dict[str, Any]
    outcome: str
    rule: str | None
    code: str | None
    policy: str = "fees"
    prior: tuple[Mapping[str, Any], ...] = ()  # decided and booked first; each must allow
    reason: str | None = None  # must appear in the decision's reason


CASES: dict[str, Case] = {
    # ---- value + fee on the native asset --------------------------------------------------
    "native transfer under its cap with its fee": Case(
        eth("0.009", "0.000021"), "allow", "eth-pay", None
    ),
    "native transfer at the cap is over it once the fee is added": Case(
        eth("0.01", "0.000021"),
        "deny",
        "eth-pay",
        "OVER_PER_TX_LIMIT",
        reason="0.010021 ETH (0.01 ETH + up to 0.000021 ETH network fee)",
    ),
    "native transfer without a fee (not yet filled) is judged on its value": Case(
        eth("0.01", None), "allow", "eth-pay", None
    ),
    "approve_above without a fee": Case(
        eth("0.005", None, chain="sepolia"), "allow", "ask-above", None
    ),
    "approve_above sees value + fee": Case(
        eth("0.005", "0.000001", chain="sepolia"), "ask", "ask-above", "APPROVAL_REQUIRED"
    ),
    "24h window: values fit, values + fees do not": Case(
        eth("0.001", "0.0001"),
        "deny",
        "eth-pay",
        "BUDGET_EXCEEDED",
        prior=(eth("0.009", "0.001"),) * 5,
        reason="0 ETH left, this request is 0.0011 ETH (0.001 ETH + up to 0.0001 ETH network fee)",
    ),
    "24h window: the same values without fees fit": Case(
        eth("0.001", None), "allow", "eth-pay", None, prior=(eth("0.009", None),) * 5
    ),
    "call with value is charged value + fee": Case(
        eth("0.0095", "0.0006", action="evm.call", contract=R1, selector="0xd0e30db0"),
        "deny",
        "eth-pay",
        "OVER_PER_TX_LIMIT",
    ),
    # ---- the fee of a token or call request, in the native asset ----------------------------
    "token transfer: its fee is held to the rule's ETH cap": Case(
        usdc("5", "0.0011"),
        "deny",
        "usdc-pay",
        "OVER_PER_TX_LIMIT",
        reason="up to 0.0011 ETH in network fees",
    ),
    "token transfer: its fee is charged to the rule's ETH window": Case(
        usdc("5", "0.0006"),
        "deny",
        "usdc-pay",
        "BUDGET_EXCEEDED",
        prior=(usdc("5", "0.0006"),),
        reason="Over the 24h ETH limit",
    ),
    "token transfer: value and fee rows count as one request": Case(
        usdc("5", "0.0001"),
        "deny",
        "usdc-pay",
        "COUNT_LIMIT_EXCEEDED",
        prior=(usdc("5", "0.0001"), usdc("5", "0.0001")),
    ),
    "token transfer: second of two allowed requests is allowed": Case(
        usdc("5", "0.0001"), "allow", "usdc-pay", None, prior=(usdc("5", "0.0001"),)
    ),
    "call without value: its fee is charged to the ETH window": Case(
        call("0.0015"), "deny", "calls", "BUDGET_EXCEEDED", prior=(call("0.001"),)
    ),
    "call without value within the ETH window": Case(
        call("0.001"), "allow", "calls", None, prior=(call("0.001"),)
    ),
    # ---- the chain's fee ceiling -------------------------------------------------------------
    "fee over the Ethereum ceiling is denied before any rule": Case(
        eth("0.001", "42000000"),
        "deny",
        None,
        "FEE_TOO_HIGH",
        reason="can reach 42000000 ETH, over the 0.05 ETH ceiling per transaction on Ethereum",
    ),
    "fee at the local ceiling is allowed": Case(
        call("10", chain="local"), "allow", "local-anything", None
    ),
    "fee one wei over the local ceiling is denied": Case(
        call("10.000000000000000001", chain="local"), "deny", None, "FEE_TOO_HIGH"
    ),
    "fee over the Base ceiling with no rule at all is FEE_TOO_HIGH": Case(
        call("0.02", chain="base", contract=NFT), "deny", None, "FEE_TOO_HIGH", policy="typed"
    ),
    "fee that is not a number cannot be judged": Case(
        eth("0.001", "lots"), "deny", None, "UNEVALUABLE"
    ),
    "fee finer than a wei cannot be judged": Case(
        eth("0.001", "0.0000000000000000001"), "deny", None, "UNEVALUABLE"
    ),
    "fee without a chain cannot be judged": Case(
        {"action": "evm.call", "contract": R1, "fee": "0.001"}, "deny", None, "UNEVALUABLE"
    ),
    # ---- Solana: the same rules, in SOL -------------------------------------------------------
    "SOL transfer at the cap with its fee included": Case(
        sol("0.999995", "0.000005"), "allow", "sol-pay", None
    ),
    "SOL transfer over the cap once the fee is added": Case(
        sol("0.999995", "0.000006"),
        "deny",
        "sol-pay",
        "OVER_PER_TX_LIMIT",
        reason="1.000001 SOL (0.999995 SOL + up to 0.000006 SOL network fee)",
    ),
    "SOL window charged value + fee": Case(
        sol("0.5", "0.000005"), "deny", "sol-pay", "BUDGET_EXCEEDED", prior=(sol("1", "0"),)
    ),
    "SOL fee over the Solana ceiling": Case(sol("0.1", "0.02"), "deny", None, "FEE_TOO_HIGH"),
    "SOL fee over mainnet's ceiling is fine on devnet": Case(
        sol("0.1", "0.02", chain="solana-devnet"), "allow", "sol-pay", None
    ),
    # ---- typed data for a registered token -----------------------------------------------------
    "typed data for an unregistered contract is judged as typed data": Case(
        typed("Mail", NFT), "allow", "typed-on-base", None, policy="typed"
    ),
    "unknown typed data for USDC's contract is refused": Case(
        typed("Transfer", USDC_BASE),
        "deny",
        "typed-on-base",
        "TYPED_DATA_ON_ASSET",
        policy="typed",
        reason='"Transfer" typed data for the USDC token contract',
    ),
    "unknown typed data for a token registered on another chain is refused": Case(
        typed("Transfer", USDC_ETH), "deny", "typed-on-base", "TYPED_DATA_ON_ASSET", policy="typed"
    ),
    "an asking rule that does not name the type does not ask either": Case(
        typed("Transfer", USDC_ETH, chain="ethereum"),
        "deny",
        "typed-asks",
        "TYPED_DATA_ON_ASSET",
        policy="typed",
    ),
    "a rule naming the type and the contract allows it": Case(
        typed("CancelAuthorization", USDC_BASE), "allow", "usdc-cancel", None, policy="typed"
    ),
    "a rule naming the type only does not": Case(
        typed("Vote", USDC_BASE),
        "deny",
        "type-without-contract",
        "TYPED_DATA_ON_ASSET",
        policy="typed",
    ),
    "primary_types must match exactly": Case(
        typed("cancelAuthorization", USDC_BASE),
        "deny",
        "typed-on-base",
        "TYPED_DATA_ON_ASSET",
        policy="typed",
    ),
    "primary_types scopes a decoded permit": Case(
        {
            "action": "evm.approve",
            "chain": "base",
            "asset": "USDC",
            "amount": "1",
            "spender": R1,
            "contract": USDC_BASE,
            "primary_type": "Permit",
        },
        "allow",
        "permits-only",
        None,
        policy="typed",
    ),
    "primary_types does not match an on-chain approve": Case(
        {
            "action": "evm.approve",
            "chain": "base",
            "asset": "USDC",
            "amount": "1",
            "spender": R1,
            "contract": USDC_BASE,
        },
        "deny",
        None,
        "NO_MATCHING_RULE",
        policy="typed",
    ),
}

POLICIES = {"fees": FEES, "typed": TYPED}


def run(case: Case) -> tuple[Decision, Ledger]:
    policy, ledger = POLICIES[case.policy], Ledger()
    for n, request in enumerate(case.prior):
        when = NOW - timedelta(minutes=len(case.prior) - n)
        d = decide(
            policy,
            AGENT,
            Intent.model_validate({"wallet": "main"} | request),
            registry=REGISTRY,
            usage=ledger.usage,
            now=when,
        )
        assert d.outcome == "allow", f"prior step {n}: {d.reason}"
        ledger.apply(d, when)
    d = decide(
        policy,
        AGENT,
        Intent.model_validate({"wallet": "main"} | case.request),
        registry=REGISTRY,
        usage=ledger.usage,
        now=NOW,
    )
    return d, ledger


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_decide_fee_and_typed_data_case(case: Case) -> None:
    d, _ = run(case)
    assert (d.outcome, d.rule, d.code) == (case.outcome, case.rule, case.code), d.reason
    if case.reason is not None:
        assert case.reason in d.reason


def test_native_transfer_books_value_plus_fee_in_one_row() -> None:
    d, _ = run(Case(eth("0.009", "0.000021"), "allow", "eth-pay", None))
    assert [(c.rule, c.asset, c.units) for c in d.charges] == [
        ("eth-pay", "ethereum:native", 9 * ETH // 1000 + 21 * ETH // 10**6)
    ]


def test_token_transfer_books_its_value_and_its_fee_separately() -> None:
    d, _ = run(Case(usdc("5", "0.0001"), "allow", "usdc-pay", None))
    assert [(c.rule, c.asset, c.units) for c in d.charges] == [
        ("usdc-pay", f"base:{USDC_BASE.lower()}", 5 * USDC),
        ("usdc-pay", "base:native", ETH // 10**4),
    ]
    assert {(w.asset, w.requested) for w in d.windows if w.kind == "amount"} == {
        ("USDC", "5"),
        ("ETH", "0.0001"),
    }


def test_solana_transfer_books_lamports_of_value_plus_fee() -> None:
    d, _ = run(Case(sol("0.5", "0.000005"), "allow", "sol-pay", None))
    assert [(c.rule, c.asset, c.units) for c in d.charges] == [
        ("sol-pay", "solana:native", SOL // 2 + 5000)
    ]


def test_fee_too_high_says_what_to_do_next() -> None:
    d, _ = run(Case(eth("0.001", "42000000"), "deny", None, "FEE_TOO_HIGH"))
    assert d.next_step is not None
    assert "at most 0.05 ETH" in d.next_step
    assert "keysafe chain add ethereum" in d.next_step and "--max-fee" in d.next_step


def test_typed_data_on_asset_names_the_rule_to_write() -> None:
    d, _ = run(
        Case(
            typed("Transfer", USDC_BASE),
            "deny",
            "typed-on-base",
            "TYPED_DATA_ON_ASSET",
            policy="typed",
        )
    )
    assert d.next_step is not None
    assert f"primary_types: [Transfer] and contracts: [{USDC_BASE}]" in d.next_step


def test_builtin_chain_re_added_without_a_ceiling_keeps_its_default() -> None:
    readded = REGISTRY.with_additions([ChainInfo("ethereum", "evm", 1, "https://rpc.example")], [])
    assert readded.chain("ethereum").fee_ceiling == Decimal("0.05")
    d = decide(
        FEES,
        AGENT,
        Intent.model_validate(eth("0.001", "0.06", wallet="main")),
        registry=readded,
        usage=Ledger().usage,
        now=NOW,
    )
    assert d.code == "FEE_TOO_HIGH"


def test_owner_raised_ceiling_lets_the_fee_through_to_the_rules() -> None:
    raised = REGISTRY.with_additions([ChainInfo("ethereum", "evm", 1, max_fee=Decimal("0.1"))], [])
    d = decide(
        FEES,
        AGENT,
        Intent.model_validate(eth("0.001", "0.06", wallet="main")),
        registry=raised,
        usage=Ledger().usage,
        now=NOW,
    )
    assert (d.code, d.rule) == ("OVER_PER_TX_LIMIT", "eth-pay")  # 0.061 ETH over the 0.01 cap


def test_added_chain_without_a_ceiling_gets_its_family_default() -> None:
    reg = REGISTRY.with_additions(
        [ChainInfo("arbitrum", "evm", 42161), ChainInfo("eclipse", "solana", None)], []
    )
    assert reg.chain("arbitrum").fee_ceiling == Decimal("0.05")
    assert reg.chain("eclipse").fee_ceiling == Decimal("0.01")
