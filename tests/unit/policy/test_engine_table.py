"""The policy decision engine, case by case: one named row per behaviour of issue #3.

Most rows run against the issue's example policy (`examples/policy.yaml`), which must behave
exactly as its comments say; a few use small purpose-built policies. Budget windows read a fake
in-memory ledger; `Ledger.apply` books an allowed decision's charges the way the real ledger does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keysafe.policy.engine import AgentState, Decision, decide
from keysafe.policy.intent import Intent
from keysafe.policy.registry import AssetInfo, Registry
from keysafe.policy.rules import Policy, parse_policy
from tests.policy_examples import example_text
from tests.unit.policy.fake_ledger import Ledger

EXAMPLE_PATH = Path(__file__).resolve().parents[3] / "examples" / "policy.yaml"
REGISTRY = Registry.builtin()

R1 = "0x" + "1" * 40
R2 = "0x" + "2" * 40
R3 = "0x" + "3" * 40
USDC_ON_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
PAY = "pay-small-on-base"
GITHUB = "github-read-only"
SIWE = "sign-in-with-ethereum"
CALLS = "contract-calls-need-a-human"
NO_UNLIMITED = "no-unlimited-approvals"
HOURS = "business-hours-only"

ETH_UNIT = 10**18
USDC_UNIT = 10**6
# Ledger keys: budget rows are kept per asset identity (chain + contract, or chain + native).
ETH_BASE = "base:native"
ETH_LOCAL = "local:native"
USDC_BASE = "base:" + USDC_ON_BASE.lower()
# An 18-decimal token the owner registered as "USDC" on the local chain: same symbol, other units.
USDC18_ON_LOCAL = "0x" + "18" * 20
USDC18_LOCAL = "local:" + USDC18_ON_LOCAL


def at(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    """A UTC moment in the week of Monday 2026-03-02 (day 2 = Monday … day 8 = Sunday)."""
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


MON_NOON = at(2)
SAT_NOON = at(7)
ACTIVE = AgentState("bot", "active")

# --- the fake ledger ------------------------------------------------------------------------


# --- policies -------------------------------------------------------------------------------

POLICY_TEXTS: dict[str, str] = {
    "capped": """
version: 1
rules:
  - name: capped
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
    max_per_tx: {ETH: "0.01", USDC: "25"}
""",
    "precedence": f"""
version: 1
rules:
  - name: zz-allow-transfers
    allow: [evm.transfer]
    wallets: [main]
  - name: review-r2
    ask: [evm.transfer]
    wallets: [main]
    recipients: ["{R2}"]
  - name: review-r3
    ask: [evm.transfer]
    wallets: [main]
    recipients: ["{R3}"]
  - name: block-r3
    deny: [evm.transfer]
    recipients: ["{R3}"]
  - name: block-everything-http
    deny: ["*"]
    credentials: [stripe]
""",
    "names": """
version: 1
rules:
  - name: zeta-allow
    allow: [evm.sign_message]
    wallets: [main]
  - name: alpha-allow
    allow: [evm.sign_message]
    wallets: [main]
  - name: zeta-ask
    ask: [evm.call]
    wallets: [main]
  - name: beta-ask
    ask: [evm.call]
    wallets: [main]
  - name: omega-deny
    deny: [evm.deploy]
  - name: delta-deny
    deny: [evm.deploy]
""",
    "unevaluable": """
version: 1
rules:
  - name: a-fine
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
  - name: mars-allow
    allow: [evm.transfer]
    wallets: [main]
    chains: [base, mars]
  - name: mars-ask
    ask: [evm.call]
    wallets: [main]
    chains: [mars]
  - name: api-ask
    ask: [http.request]
    urls: ["https://api.example.com/**"]
  - name: sub-lamport-cap
    allow: [solana.transfer]
    wallets: [main]
    max_per_tx: {SOL: "0.0000000001"}
""",
    "windows": """
version: 1
rules:
  - name: ask-with-budget
    ask: [evm.transfer]
    wallets: [main]
    chains: [base]
    limits: [{window: 1h, max: {USDC: "10"}}]
  - name: never-twice
    allow: [evm.sign_message]
    wallets: [main]
    limits: [{window: 1h, max_count: 0}]
  - name: eth-budget-no-cap
    allow: [evm.transfer]
    wallets: [main]
    chains: [local]
    limits: [{window: 24h, max: {ETH: "1"}}]
""",
    "tighter-cap": """
version: 1
rules:
  - name: wide
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
    max_per_tx: {ETH: "1"}
  - name: narrow
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
    max_per_tx: {ETH: "0.5"}
""",
    "bounded-approvals": """
version: 1
rules:
  - name: bounded-approvals-ok
    allow: [evm.approve]
    wallets: [main]
    when: {unlimited: false}
""",
    "chain-ids": """
version: 1
rules:
  - name: by-id
    allow: [evm.transfer]
    wallets: [main]
    chains: [8453, "31337"]
""",
    "mixed-case": """
version: 1
rules:
  - name: checksummed
    allow: [evm.transfer]
    wallets: [main]
    recipients: ["0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"]
""",
    "berlin": """
version: 1
rules:
  - name: sign
    allow: [evm.sign_message]
    wallets: [main]
  - name: berlin-office-hours
    deny: ["*"]
    outside_hours: {from: "08:00", to: "20:00", days: [mon, tue, wed, thu, fri], tz: Europe/Berlin}
""",
    "night-shift": """
version: 1
rules:
  - name: sign
    allow: [evm.sign_message]
    wallets: [main]
  - name: nights-only
    deny: ["*"]
    outside_hours: {from: "22:00", to: "06:00"}
""",
    "expiring": """
version: 1
rules:
  - name: sign
    allow: [evm.sign_message]
    wallets: [main]
expires: 2026-06-01T00:00:00Z
""",
    "empty": "version: 1\nrules: []\n",
    "wallets": f"""
version: 1
rules:
  - name: from-main-or-hot
    allow: [evm.transfer]
    wallets: [main, hot]
  - name: no-hot-to-r2
    deny: [evm.transfer]
    wallets: [hot]
    recipients: ["{R2}"]
  - name: unscoped-sign
    allow: [evm.sign_message]
  - name: http-with-wallets
    allow: [http.request]
    wallets: [main]
""",
}


def load_policy(key: str) -> Policy | None:
    if key == "none":
        return None
    if key == "example":
        return parse_policy(example_text(), source=str(EXAMPLE_PATH))
    return parse_policy(POLICY_TEXTS[key], source=key)


# --- request builders -----------------------------------------------------------------------


# Signing requests come from wallet `main` (the service sets Intent.wallet) unless told.


def eth(amount: str, *, to: str = R1, chain: str | int = "base", **extra: Any) -> dict[str, Any]:
    return {
        "action": "evm.transfer",
        "chain": chain,
        "wallet": "main",
        "asset": "ETH",
        "amount": amount,
        "to": to,
        **extra,
    }


def usdc(amount: str, *, to: str = R1, chain: str | int = "base", **extra: Any) -> dict[str, Any]:
    return {
        "action": "evm.transfer",
        "chain": chain,
        "wallet": "main",
        "asset": "USDC",
        "amount": amount,
        "to": to,
        **extra,
    }


def gh(
    url: str = "https://api.github.com/repos/acme/widgets/issues",
    *,
    method: str = "GET",
    credential: str = "github",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "action": "http.request",
        "credential": credential,
        "method": method,
        "url": url,
        **extra,
    }


SIWE_TEXT = "example.com wants you to sign in with your Ethereum account:\n" + R1


def sign(message: str = SIWE_TEXT, **extra: Any) -> dict[str, Any]:
    return {"action": "evm.sign_message", "wallet": "main", "message": message, **extra}


def call(chain: str | int = "base", **extra: Any) -> dict[str, Any]:
    return {
        "action": "evm.call",
        "chain": chain,
        "wallet": "main",
        "contract": "0x" + "c" * 40,
        "selector": "0xa9059cbb",
        **extra,
    }


def approve(amount: str = "unlimited", **extra: Any) -> dict[str, Any]:
    return {
        "action": "evm.approve",
        "chain": "base",
        "wallet": "main",
        "asset": "USDC",
        "amount": amount,
        "spender": "0x" + "5" * 40,
        **extra,
    }


def booked(
    age: timedelta, asset: str | None, units: int, rule: str = PAY
) -> tuple[timedelta, str, str | None, int]:
    """A live ledger entry `age` before the decision."""
    return (age, rule, asset, units)


# --- the table ------------------------------------------------------------------------------

Window = tuple[str, str, str | None, str, str, str, str, bool]


@dataclass(frozen=True)
class Case:
    id: str
    request: dict[str, Any]
    outcome: str
    rule: str | None
    code: str | None
    policy: str = "example"
    agent: AgentState = ACTIVE
    now: datetime = MON_NOON
    history: tuple[tuple[timedelta, str, str | None, int], ...] = ()
    prior: tuple[tuple[datetime, Mapping[str, Any]], ...] = ()  # decided and booked; must allow
    windows: tuple[Window, ...] | None = None  # (window, kind, asset, limit, used, req, left, ok)
    bug: str | None = None  # a known product bug: strict xfail with this reason
    registry: Registry = REGISTRY


def ten_usdc_spends_from_nine() -> tuple[tuple[datetime, Mapping[str, Any]], ...]:
    return tuple((at(2, 9, m), usdc("1")) for m in range(10))


def ten_eth_spends_hourly() -> tuple[tuple[datetime, Mapping[str, Any]], ...]:
    return tuple((at(2, 9 + h), eth("0.005")) for h in range(10))


HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)
WITH_USDC18 = REGISTRY.with_additions(
    [], [AssetInfo("USDC", "local", USDC18_ON_LOCAL, 18, builtin=False)]
)
COUNT_OK = ("1h", "count", None, "10", "0", "1", "10", True)


def no_wallet(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "wallet"}


CASES: list[Case] = [
    # --- agent state, policy presence and expiry -------------------------------------------
    Case(
        "revoked agent denied",
        eth("0.001"),
        "deny",
        None,
        "AGENT_REVOKED",
        agent=AgentState("bot", "revoked"),
    ),
    Case(
        "paused agent denied",
        eth("0.001"),
        "deny",
        None,
        "AGENT_PAUSED",
        agent=AgentState("bot", "paused"),
    ),
    Case(
        "pause-all denies an active agent",
        eth("0.001"),
        "deny",
        None,
        "PAUSED_ALL",
        agent=AgentState("bot", "active", paused_all=True),
    ),
    Case(
        "revoked wins over pause-all",
        eth("0.001"),
        "deny",
        None,
        "AGENT_REVOKED",
        agent=AgentState("bot", "revoked", paused_all=True),
    ),
    Case(
        "paused agent denied even with no policy",
        eth("0.001"),
        "deny",
        None,
        "AGENT_PAUSED",
        policy="none",
        agent=AgentState("bot", "paused"),
    ),
    Case("no policy denies everything", sign(), "deny", None, "NO_POLICY", policy="none"),
    Case(
        "empty rule list denies: no match means deny",
        sign(),
        "deny",
        None,
        "NO_MATCHING_RULE",
        policy="empty",
    ),
    Case(
        "policy one second before expiry still allows",
        sign(),
        "allow",
        "sign",
        None,
        policy="expiring",
        now=datetime(2026, 5, 31, 23, 59, 59, tzinfo=UTC),
    ),
    Case(
        "policy at its expiry instant denied",
        sign(),
        "deny",
        None,
        "POLICY_EXPIRED",
        policy="expiring",
        now=datetime(2026, 6, 1, tzinfo=UTC),
    ),
    Case(
        "example policy expired on 2028-01-01",
        sign(),
        "deny",
        None,
        "POLICY_EXPIRED",
        now=datetime(2028, 1, 4, 12, tzinfo=UTC),
    ),
    Case(
        "intent time at expiry denied although now is before",
        sign(time="2026-06-01T00:00:00Z"),
        "deny",
        None,
        "POLICY_EXPIRED",
        policy="expiring",
        now=MON_NOON,
    ),
    Case(
        "now after expiry denied although intent time is before",
        sign(time="2026-05-01T12:00:00Z"),
        "deny",
        None,
        "POLICY_EXPIRED",
        policy="expiring",
        now=datetime(2026, 6, 2, tzinfo=UTC),
    ),
    # --- resolving the request --------------------------------------------------------------
    Case(
        "unknown action denied",
        {"action": "evm.teleport", "chain": "base"},
        "deny",
        None,
        "UNKNOWN_ACTION",
    ),
    Case("unknown chain denied", eth("0.001", chain="polygon"), "deny", None, "UNKNOWN_CHAIN"),
    Case("unknown chain id denied", eth("0.001", chain=137), "deny", None, "UNKNOWN_CHAIN"),
    Case("unknown asset denied", {**eth("1"), "asset": "DOGE"}, "deny", None, "UNKNOWN_ASSET"),
    Case(
        "USDC is unknown on the local chain",
        usdc("1", chain="local"),
        "deny",
        None,
        "UNKNOWN_ASSET",
    ),
    Case(
        "asset without a chain unevaluable",
        {"action": "evm.transfer", "asset": "ETH", "amount": "0.001", "to": R1},
        "deny",
        None,
        "UNEVALUABLE",
    ),
    Case(
        "amount finer than USDC's 6 decimals unevaluable",
        usdc("1.0000001"),
        "deny",
        None,
        "UNEVALUABLE",
    ),
    Case(
        "amount finer than ETH's 18 decimals unevaluable",
        eth("0.0000000000000000001"),
        "deny",
        None,
        "UNEVALUABLE",
    ),
    Case("negative amount unevaluable", eth("-0.001"), "deny", None, "UNEVALUABLE"),
    Case("non-numeric amount unevaluable", eth("lots"), "deny", None, "UNEVALUABLE"),
    Case(
        "amount with 31 decimals refused, not rounded to the cap",
        eth("0.0099999999999999999999999999999"),
        "deny",
        None,
        "UNEVALUABLE",
    ),
    Case(
        "amount a hair above the cap with 31 decimals refused, not allowed",
        eth("0.0100000000000000000000000000001"),
        "deny",
        None,
        "UNEVALUABLE",
        policy="capped",
    ),
    # --- pay-small-on-base: scope -----------------------------------------------------------
    Case("small ETH transfer on base allowed", eth("0.001"), "allow", PAY, None),
    Case("small ETH transfer on local allowed", eth("0.001", chain="local"), "allow", PAY, None),
    Case("chain id 8453 as an int accepted as base", eth("0.001", chain=8453), "allow", PAY, None),
    Case(
        "chain id '8453' as a string accepted as base",
        eth("0.001", chain="8453"),
        "allow",
        PAY,
        None,
    ),
    Case("chain id 31337 accepted as local", eth("0.001", chain=31337), "allow", PAY, None),
    Case("upper-case chain name accepted", eth("0.001", chain="BASE"), "allow", PAY, None),
    Case(
        "ETH transfer on ethereum denied: no rule matches",
        eth("0.001", chain="ethereum"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "ETH transfer on chain id 1 denied: no rule matches",
        eth("0.001", chain=1),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "USDC on ethereum denied: no rule matches",
        usdc("1", chain="ethereum"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "USDC named by its base token address allowed",
        {**usdc("5"), "asset": USDC_ON_BASE.lower()},
        "allow",
        PAY,
        None,
    ),
    Case("second listed recipient allowed", eth("0.001", to=R2), "allow", PAY, None),
    Case(
        "unlisted recipient denied: no rule matches",
        eth("0.001", to=R3),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "transfer without a recipient denied: no rule matches",
        {k: v for k, v in eth("0.001").items() if k != "to"},
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "recipient compared case-insensitively (lower-case request)",
        eth("1", to="0xabcdef0123456789abcdef0123456789abcdef01"),
        "allow",
        "checksummed",
        None,
        policy="mixed-case",
    ),
    Case(
        "recipient compared case-insensitively (upper-case request)",
        eth("1", to="0xABCDEF0123456789ABCDEF0123456789ABCDEF01"),
        "allow",
        "checksummed",
        None,
        policy="mixed-case",
    ),
    Case("zero-amount transfer allowed", eth("0"), "allow", PAY, None),
    # --- per-transaction caps ---------------------------------------------------------------
    Case("exactly at per-tx cap allowed", eth("0.01"), "allow", "capped", None, policy="capped"),
    Case(
        "one base unit above per-tx cap denied",
        eth("0.010000000000000001"),
        "deny",
        "capped",
        "OVER_PER_TX_LIMIT",
        policy="capped",
    ),
    Case(
        "USDC exactly at per-tx cap allowed", usdc("25"), "allow", "capped", None, policy="capped"
    ),
    Case(
        "USDC one base unit above per-tx cap denied",
        usdc("25.000001"),
        "deny",
        "capped",
        "OVER_PER_TX_LIMIT",
        policy="capped",
    ),
    Case(
        "unlimited amount against a per-tx cap denied",
        eth("unlimited"),
        "deny",
        "capped",
        "OVER_PER_TX_LIMIT",
        policy="capped",
    ),
    Case(
        "example: ETH exactly at per-tx cap asks (above approve_above)",
        eth("0.01"),
        "ask",
        PAY,
        "APPROVAL_REQUIRED",
    ),
    Case(
        "example: one wei above per-tx cap denied, not asked",
        eth("0.010000000000000001"),
        "deny",
        PAY,
        "OVER_PER_TX_LIMIT",
    ),
    Case(
        "example: USDC one base unit above 25 denied",
        usdc("25.000001"),
        "deny",
        PAY,
        "OVER_PER_TX_LIMIT",
    ),
    Case(
        "tighter cap of two matching rules denies",
        eth("0.7"),
        "deny",
        "narrow",
        "OVER_PER_TX_LIMIT",
        policy="tighter-cap",
    ),
    # --- approve_above ----------------------------------------------------------------------
    Case("ETH exactly at approve_above allowed", eth("0.005"), "allow", PAY, None),
    Case(
        "one wei above ETH approve_above asks",
        eth("0.005000000000000001"),
        "ask",
        PAY,
        "APPROVAL_REQUIRED",
    ),
    Case("USDC exactly at approve_above allowed", usdc("10"), "allow", PAY, None),
    Case(
        "one base unit above USDC approve_above asks",
        usdc("10.000001"),
        "ask",
        PAY,
        "APPROVAL_REQUIRED",
    ),
    # --- 24h amount windows -----------------------------------------------------------------
    Case(
        "24h ETH budget: used + request exactly at limit allowed",
        eth("0.005"),
        "allow",
        PAY,
        None,
        history=(booked(2 * HOUR, ETH_BASE, 45 * 10**15),),
        windows=(
            ("24h", "amount", "ETH", "0.05", "0.045", "0.005", "0.005", True),
            ("1h", "count", None, "10", "0", "1", "10", True),
        ),
    ),
    Case(
        "24h ETH budget: one wei over denied",
        eth("0.005"),
        "deny",
        PAY,
        "BUDGET_EXCEEDED",
        history=(booked(2 * HOUR, ETH_BASE, 45 * 10**15 + 1),),
        windows=(
            (
                "24h",
                "amount",
                "ETH",
                "0.05",
                "0.045000000000000001",
                "0.005",
                "0.004999999999999999",
                False,
            ),
            ("1h", "count", None, "10", "0", "1", "10", True),
        ),
    ),
    Case(
        "over budget and above approve_above: deny beats ask",
        eth("0.006"),
        "deny",
        PAY,
        "BUDGET_EXCEEDED",
        history=(booked(2 * HOUR, ETH_BASE, 45 * 10**15),),
    ),
    Case(
        "24h USDC budget: 95 used, 5 more allowed",
        usdc("5"),
        "allow",
        PAY,
        None,
        history=(booked(3 * HOUR, USDC_BASE, 95 * USDC_UNIT),),
        windows=(
            ("24h", "amount", "USDC", "100", "95", "5", "5", True),
            ("1h", "count", None, "10", "0", "1", "10", True),
        ),
    ),
    Case(
        "24h USDC budget: 95 used, 5.000001 more denied",
        usdc("5.000001"),
        "deny",
        PAY,
        "BUDGET_EXCEEDED",
        history=(booked(3 * HOUR, USDC_BASE, 95 * USDC_UNIT),),
    ),
    Case(
        "USDC spend does not count against the ETH budget",
        eth("0.005"),
        "allow",
        PAY,
        None,
        history=(booked(2 * HOUR, USDC_BASE, 100 * USDC_UNIT),),
    ),
    Case(
        "another rule's spend does not count",
        eth("0.005"),
        "allow",
        PAY,
        None,
        history=(booked(2 * HOUR, ETH_BASE, ETH_UNIT, rule="some-other-rule"),),
    ),
    Case(
        "spend exactly 24h old still counts",
        eth("0.001"),
        "deny",
        PAY,
        "BUDGET_EXCEEDED",
        history=(booked(DAY, ETH_BASE, 5 * 10**16),),
    ),
    Case(
        "spend 24h and 1s old no longer counts",
        eth("0.001"),
        "allow",
        PAY,
        None,
        history=(booked(DAY + timedelta(seconds=1), ETH_BASE, 5 * 10**16),),
    ),
    Case(
        "unlimited amount against a window max is over",
        eth("unlimited", chain="local"),
        "deny",
        "eth-budget-no-cap",
        "BUDGET_EXCEEDED",
        policy="windows",
    ),
    Case(
        "window on an ask rule: over budget denies instead of asking",
        usdc("10.5"),
        "deny",
        "ask-with-budget",
        "BUDGET_EXCEEDED",
        policy="windows",
    ),
    Case(
        "window on an ask rule: within budget asks",
        usdc("10"),
        "ask",
        "ask-with-budget",
        "APPROVAL_REQUIRED",
        policy="windows",
    ),
    # --- rolling windows with a frozen clock: book spends, move the clock -------------------
    Case(
        "ten 0.005 ETH spends fill the 24h budget: one more wei denied",
        eth("0.000000000000000001"),
        "deny",
        PAY,
        "BUDGET_EXCEEDED",
        now=at(2, 19),
        prior=ten_eth_spends_hourly(),
    ),
    Case(
        "24h after the first spend it still counts",
        eth("0.005"),
        "deny",
        PAY,
        "BUDGET_EXCEEDED",
        now=at(3, 9),
        prior=ten_eth_spends_hourly(),
    ),
    Case(
        "24h and 1s after the first spend it slid out: allowed again",
        eth("0.005"),
        "allow",
        PAY,
        None,
        now=at(3, 9, 0, 1),
        prior=ten_eth_spends_hourly(),
        windows=(
            ("24h", "amount", "ETH", "0.05", "0.045", "0.005", "0.005", True),
            ("1h", "count", None, "10", "0", "1", "10", True),
        ),
    ),
    # --- one symbol, two identities: the window sums token units, each in its own decimals ---
    Case(
        "18-decimal USDC on local is judged by the example rule",
        usdc("1", chain="local"),
        "allow",
        PAY,
        None,
        registry=WITH_USDC18,
        windows=(("24h", "amount", "USDC", "100", "0", "1", "100", True), COUNT_OK),
    ),
    Case(
        "100 USDC spent on base: 18-decimal USDC on local is over the same window",
        usdc("0.000001", chain="local"),
        "deny",
        PAY,
        "BUDGET_EXCEEDED",
        registry=WITH_USDC18,
        history=(booked(3 * HOUR, USDC_BASE, 100 * USDC_UNIT),),
        windows=(("24h", "amount", "USDC", "100", "100", "0.000001", "0", False), COUNT_OK),
    ),
    Case(
        "95 USDC on base and 5 on local fill the window exactly",
        usdc("5", chain="local"),
        "allow",
        PAY,
        None,
        registry=WITH_USDC18,
        history=(booked(3 * HOUR, USDC_BASE, 95 * USDC_UNIT),),
        windows=(("24h", "amount", "USDC", "100", "95", "5", "5", True), COUNT_OK),
    ),
    Case(
        "90 USDC spent on local (18 decimals) leaves 10 on base, not less",
        usdc("10"),
        "allow",
        PAY,
        None,
        registry=WITH_USDC18,
        history=(booked(3 * HOUR, USDC18_LOCAL, 90 * ETH_UNIT),),
        windows=(("24h", "amount", "USDC", "100", "90", "10", "10", True), COUNT_OK),
    ),
    Case(
        "95 USDC spent on local (18 decimals): 5.000001 on base denied",
        usdc("5.000001"),
        "deny",
        PAY,
        "BUDGET_EXCEEDED",
        registry=WITH_USDC18,
        history=(booked(3 * HOUR, USDC18_LOCAL, 95 * ETH_UNIT),),
    ),
    Case(
        "a sub-micro 18-decimal spend counts exactly: 9.99999 on base fits",
        usdc("9.99999"),
        "allow",
        PAY,
        None,
        registry=WITH_USDC18,
        history=(
            booked(3 * HOUR, USDC_BASE, 90 * USDC_UNIT),
            booked(3 * HOUR, USDC18_LOCAL, 10**13),
        ),
        windows=(
            ("24h", "amount", "USDC", "100", "90.00001", "9.99999", "9.99999", True),
            ("1h", "count", None, "10", "0", "1", "10", True),
        ),
    ),
    Case(
        "a sub-micro 18-decimal spend counts exactly: 9.999991 on base is over",
        usdc("9.999991"),
        "deny",
        PAY,
        "BUDGET_EXCEEDED",
        registry=WITH_USDC18,
        history=(
            booked(3 * HOUR, USDC_BASE, 90 * USDC_UNIT),
            booked(3 * HOUR, USDC18_LOCAL, 10**13),
        ),
    ),
    Case(
        "ETH spent on local counts against the same ETH window on base",
        eth("0.005"),
        "allow",
        PAY,
        None,
        history=(booked(2 * HOUR, ETH_LOCAL, 45 * 10**15),),
        windows=(("24h", "amount", "ETH", "0.05", "0.045", "0.005", "0.005", True), COUNT_OK),
    ),
    Case(
        "ETH spent on local: one wei more on base is over",
        eth("0.005000000000000001"),
        "deny",
        PAY,
        "BUDGET_EXCEEDED",
        history=(booked(2 * HOUR, ETH_LOCAL, 45 * 10**15),),
    ),
    Case(
        "a row kept by bare symbol (before identities) still counts",
        usdc("5.000001"),
        "deny",
        PAY,
        "BUDGET_EXCEEDED",
        registry=WITH_USDC18,
        history=(booked(3 * HOUR, "USDC", 95 * USDC_UNIT),),
    ),
    # --- 1h count window --------------------------------------------------------------------
    Case(
        "10 actions in the last hour: the 11th is rate limited",
        usdc("1"),
        "deny",
        PAY,
        "COUNT_LIMIT_EXCEEDED",
        now=at(2, 9, 30),
        prior=ten_usdc_spends_from_nine(),
        windows=(
            ("24h", "amount", "USDC", "100", "10", "1", "90", True),
            ("1h", "count", None, "10", "10", "1", "0", False),
        ),
    ),
    Case(
        "rate window still full exactly 1h after the first action",
        usdc("1"),
        "deny",
        PAY,
        "COUNT_LIMIT_EXCEEDED",
        now=at(2, 10),
        prior=ten_usdc_spends_from_nine(),
    ),
    Case(
        "oldest action slid out of the 1h window: allowed again",
        usdc("1"),
        "allow",
        PAY,
        None,
        now=at(2, 10, 0, 30),
        prior=ten_usdc_spends_from_nine(),
    ),
    Case(
        "9 actions in the last hour: the 10th allowed",
        usdc("1"),
        "allow",
        PAY,
        None,
        history=tuple(booked(timedelta(minutes=m), USDC_BASE, USDC_UNIT) for m in range(1, 10)),
    ),
    Case(
        "rate limit counts actions across assets",
        usdc("1"),
        "deny",
        PAY,
        "COUNT_LIMIT_EXCEEDED",
        history=tuple(
            booked(timedelta(minutes=m), ETH_BASE if m % 2 else USDC_BASE, 1) for m in range(1, 11)
        ),
    ),
    Case(
        "max_count 0 always rate limited",
        sign(),
        "deny",
        "never-twice",
        "COUNT_LIMIT_EXCEEDED",
        policy="windows",
    ),
    # --- github-read-only (http.request) ----------------------------------------------------
    Case(
        "GET on a github repos URL allowed",
        gh(),
        "allow",
        GITHUB,
        None,
        windows=(("1m", "count", None, "30", "0", "1", "30", True),),
    ),
    Case("lower-case get method allowed", gh(method="get"), "allow", GITHUB, None),
    Case(
        "deep path under /repos/** allowed",
        gh("https://api.github.com/repos/a/b/c/d/e"),
        "allow",
        GITHUB,
        None,
    ),
    Case(
        "upper-case scheme and host allowed",
        gh("HTTPS://API.GITHUB.COM/repos/acme/x"),
        "allow",
        GITHUB,
        None,
    ),
    Case(
        "explicit :443 equals the default port",
        gh("https://api.github.com:443/repos/a/b"),
        "allow",
        GITHUB,
        None,
    ),
    Case(
        "query string does not change the path match",
        gh("https://api.github.com/repos/a/b?per_page=100"),
        "allow",
        GITHUB,
        None,
    ),
    Case(
        "POST on github repos denied: no rule matches",
        gh(method="POST"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "other credential denied: no rule matches",
        gh(credential="stripe"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "plain http denied: scheme differs",
        gh("http://api.github.com/repos/a/b"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "other port denied",
        gh("https://api.github.com:8443/repos/a/b"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "look-alike host denied",
        gh("https://api.github.com.evil.test/repos/a/b"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "/repos/../admin does not match /repos/**",
        gh("https://api.github.com/repos/../admin"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "path outside /repos denied",
        gh("https://api.github.com/user/keys"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "encoded slash in the path: allow rule unevaluable",
        gh("https://api.github.com/repos%2F..%2Fadmin"),
        "deny",
        GITHUB,
        "UNEVALUABLE",
    ),
    Case(
        "unparsable port: allow rule unevaluable",
        gh("https://api.github.com:99999/repos/a"),
        "deny",
        GITHUB,
        "UNEVALUABLE",
    ),
    Case(
        "30 GETs in the last minute: the 31st rate limited",
        gh(),
        "deny",
        GITHUB,
        "COUNT_LIMIT_EXCEEDED",
        history=tuple(booked(timedelta(seconds=s), None, 0, GITHUB) for s in range(1, 31)),
    ),
    Case(
        "30 GETs over a minute ago do not count",
        gh(),
        "allow",
        GITHUB,
        None,
        history=tuple(booked(timedelta(seconds=61 + s), None, 0, GITHUB) for s in range(30)),
    ),
    # --- sign-in-with-ethereum --------------------------------------------------------------
    Case("sign-in message allowed", sign(), "allow", SIWE, None),
    Case("sign-in message on a chain allowed", sign(chain="base"), "allow", SIWE, None),
    Case(
        "message with a prefix before the anchor denied",
        sign("evil.test: " + SIWE_TEXT),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "other message denied: no rule matches",
        sign("transfer all my tokens"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "sign_message without a message denied",
        {"action": "evm.sign_message", "wallet": "main"},
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    # --- contract-calls-need-a-human --------------------------------------------------------
    Case("contract call on base asks", call("base"), "ask", CALLS, "APPROVAL_REQUIRED"),
    Case("contract call on chain id 8453 asks", call(8453), "ask", CALLS, "APPROVAL_REQUIRED"),
    Case(
        "contract call on ethereum denied: no rule matches",
        call("ethereum"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "contract call on Saturday: deny beats ask",
        call("base"),
        "deny",
        HOURS,
        "POLICY_DENIED",
        now=SAT_NOON,
    ),
    # --- no-unlimited-approvals -------------------------------------------------------------
    Case("unlimited approval denied", approve(), "deny", NO_UNLIMITED, "POLICY_DENIED"),
    Case(
        "'UNLIMITED' in capitals denied",
        approve("UNLIMITED"),
        "deny",
        NO_UNLIMITED,
        "POLICY_DENIED",
    ),
    Case(
        "unlimited flag with a number denied",
        approve("1000", unlimited=True),
        "deny",
        NO_UNLIMITED,
        "POLICY_DENIED",
    ),
    Case(
        "bounded approval denied by default: no rule allows it",
        approve("5"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "two deny rules match on Saturday: the smallest name is named",
        approve(),
        "deny",
        HOURS,
        "POLICY_DENIED",
        now=SAT_NOON,
    ),
    Case(
        "when unlimited false: bounded approval allowed",
        approve("5"),
        "allow",
        "bounded-approvals-ok",
        None,
        policy="bounded-approvals",
    ),
    Case(
        "when unlimited false: unlimited approval not matched",
        approve(),
        "deny",
        None,
        "NO_MATCHING_RULE",
        policy="bounded-approvals",
    ),
    # --- business-hours-only ----------------------------------------------------------------
    Case(
        "Saturday transfer denied by business hours",
        eth("0.001"),
        "deny",
        HOURS,
        "POLICY_DENIED",
        now=SAT_NOON,
    ),
    Case("Sunday GET denied by business hours", gh(), "deny", HOURS, "POLICY_DENIED", now=at(8)),
    Case("Monday 07:59 denied", eth("0.001"), "deny", HOURS, "POLICY_DENIED", now=at(2, 7, 59)),
    Case(
        "Monday 07:59:59 denied", eth("0.001"), "deny", HOURS, "POLICY_DENIED", now=at(2, 7, 59, 59)
    ),
    Case("Monday 08:00 allowed", eth("0.001"), "allow", PAY, None, now=at(2, 8)),
    Case("Friday 19:59:59 allowed", eth("0.001"), "allow", PAY, None, now=at(6, 19, 59, 59)),
    Case("Monday 20:00 denied", eth("0.001"), "deny", HOURS, "POLICY_DENIED", now=at(2, 20)),
    Case(
        "unknown action outside hours still UNKNOWN_ACTION",
        {"action": "evm.teleport"},
        "deny",
        None,
        "UNKNOWN_ACTION",
        now=SAT_NOON,
    ),
    Case(
        "intent time on Saturday denied although now is Monday",
        eth("0.001", time="2026-03-07T12:00:00Z"),
        "deny",
        HOURS,
        "POLICY_DENIED",
    ),
    Case(
        "intent time on Monday allowed although now is Saturday",
        eth("0.001", time="2026-03-02T12:00:00Z"),
        "allow",
        PAY,
        None,
        now=SAT_NOON,
    ),
    Case(
        "hours in Europe/Berlin: 07:30 UTC is 08:30 local, allowed",
        sign(),
        "allow",
        "sign",
        None,
        policy="berlin",
        now=at(2, 7, 30),
    ),
    Case(
        "hours in Europe/Berlin: 19:30 UTC is 20:30 local, denied",
        sign(),
        "deny",
        "berlin-office-hours",
        "POLICY_DENIED",
        policy="berlin",
        now=at(2, 19, 30),
    ),
    Case(
        "hours over midnight: 23:00 inside",
        sign(),
        "allow",
        "sign",
        None,
        policy="night-shift",
        now=at(4, 23),
    ),
    Case(
        "hours over midnight: 05:59 inside",
        sign(),
        "allow",
        "sign",
        None,
        policy="night-shift",
        now=at(4, 5, 59),
    ),
    Case(
        "hours over midnight: 06:00 outside, denied",
        sign(),
        "deny",
        "nights-only",
        "POLICY_DENIED",
        policy="night-shift",
        now=at(4, 6),
    ),
    # --- wallets: a signing rule matches only the wallets it names ---------------------------
    Case(
        "transfer from a wallet no rule names denied: no rule matches",
        eth("0.001", wallet="other"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "signing request that names no wallet denied: no rule matches",
        no_wallet(eth("0.001")),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "sign-in message from a wallet no rule names denied",
        sign(wallet="other"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "contract call from a wallet no rule names denied, not asked",
        call("base", wallet="other"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "wallet names are matched exactly",
        eth("0.001", wallet="Main"),
        "deny",
        None,
        "NO_MATCHING_RULE",
    ),
    Case(
        "deny without wallets applies to every wallet",
        eth("0.001", wallet="other"),
        "deny",
        HOURS,
        "POLICY_DENIED",
        now=SAT_NOON,
    ),
    Case(
        "rule naming two wallets allows the first",
        eth("1", wallet="main", to=R2),
        "allow",
        "from-main-or-hot",
        None,
        policy="wallets",
    ),
    Case(
        "rule naming two wallets allows the second",
        eth("1", wallet="hot"),
        "allow",
        "from-main-or-hot",
        None,
        policy="wallets",
    ),
    Case(
        "deny with wallets applies to the wallets it names",
        eth("1", wallet="hot", to=R2),
        "deny",
        "no-hot-to-r2",
        "POLICY_DENIED",
        policy="wallets",
    ),
    Case(
        "allow rule without wallets matches no wallet",
        sign(),
        "deny",
        None,
        "NO_MATCHING_RULE",
        policy="wallets",
    ),
    Case(
        "wallets on a rule for http.request never match",
        gh(),
        "deny",
        None,
        "NO_MATCHING_RULE",
        policy="wallets",
    ),
    # --- precedence and naming --------------------------------------------------------------
    Case(
        "allow when only the allow rule matches",
        eth("1", to=R1),
        "allow",
        "zz-allow-transfers",
        None,
        policy="precedence",
    ),
    Case(
        "ask beats allow",
        eth("1", to=R2),
        "ask",
        "review-r2",
        "APPROVAL_REQUIRED",
        policy="precedence",
    ),
    Case(
        "deny beats ask and allow",
        eth("1", to=R3),
        "deny",
        "block-r3",
        "POLICY_DENIED",
        policy="precedence",
    ),
    Case(
        "wildcard deny covers http.request",
        gh(credential="stripe"),
        "deny",
        "block-everything-http",
        "POLICY_DENIED",
        policy="precedence",
    ),
    Case(
        "two allow rules match: the smallest name is named",
        sign(),
        "allow",
        "alpha-allow",
        None,
        policy="names",
    ),
    Case(
        "two ask rules match: the smallest name is named",
        call(),
        "ask",
        "beta-ask",
        "APPROVAL_REQUIRED",
        policy="names",
    ),
    Case(
        "two deny rules match: the smallest name is named",
        {"action": "evm.deploy", "chain": "base", "wallet": "main"},
        "deny",
        "delta-deny",
        "POLICY_DENIED",
        policy="names",
    ),
    Case(
        "chain ids in a rule match by name and id",
        eth("1", chain="local"),
        "allow",
        "by-id",
        None,
        policy="chain-ids",
    ),
    Case(
        "chain ids in a rule: base by name matches 8453",
        eth("1", chain="base"),
        "allow",
        "by-id",
        None,
        policy="chain-ids",
    ),
    Case(
        "chain ids in a rule: ethereum not listed",
        eth("1", chain="ethereum"),
        "deny",
        None,
        "NO_MATCHING_RULE",
        policy="chain-ids",
    ),
    # --- unevaluable rules deny -------------------------------------------------------------
    Case(
        "allow rule naming an unknown chain: unevaluable beats a matching allow",
        eth("0.001"),
        "deny",
        "mars-allow",
        "UNEVALUABLE",
        policy="unevaluable",
    ),
    Case(
        "ask rule naming an unknown chain: unevaluable",
        call(),
        "deny",
        "mars-ask",
        "UNEVALUABLE",
        policy="unevaluable",
    ),
    Case(
        "ask rule with urls and an unparsable URL: unevaluable",
        {"action": "http.request", "url": "ftp://api.example.com/x"},
        "deny",
        "api-ask",
        "UNEVALUABLE",
        policy="unevaluable",
    ),
    Case(
        "ask rule with urls and a parsable URL asks",
        {"action": "http.request", "url": "https://api.example.com/x"},
        "ask",
        "api-ask",
        "APPROVAL_REQUIRED",
        policy="unevaluable",
    ),
    Case(
        "cap finer than the asset's unit: rule unevaluable",
        {
            "action": "solana.transfer",
            "chain": "solana",
            "wallet": "main",
            "asset": "SOL",
            "amount": "1",
            "to": "So11111111111111111111111111111111111111112",
        },
        "deny",
        "sub-lamport-cap",
        "UNEVALUABLE",
        policy="unevaluable",
    ),
    # --- a dry run dated later sees the window slid (real requests cannot carry a time:
    # service/policies.authorize refuses them, tested in test_budget_concurrency.py) ---------
    Case(
        "a dry run dated a day ahead sees the spent budget slid out of the window",
        eth("0.005", time="2026-03-03T12:00:01Z"),
        "allow",
        PAY,
        None,
        history=(booked(2 * HOUR, ETH_BASE, 5 * 10**16),),
    ),
]


def _run(case: Case) -> Decision:
    policy = load_policy(case.policy)
    ledger = Ledger()
    for n, (age, rule, asset, units) in enumerate(case.history):
        ledger.entries.append((case.now - age, rule, asset, units, -n))  # one request each
    for when, request in case.prior:
        d = decide(
            policy,
            case.agent,
            Intent.model_validate(request),
            registry=case.registry,
            usage=ledger.usage,
            now=when,
        )
        assert d.outcome == "allow", f"prior step at {when} was {d.outcome}: {d.reason}"
        ledger.apply(d, when)
    return decide(
        policy,
        case.agent,
        Intent.model_validate(case.request),
        registry=case.registry,
        usage=ledger.usage,
        now=case.now,
    )


def _params() -> list[Any]:
    return [
        pytest.param(
            c,
            id=c.id,
            marks=[pytest.mark.xfail(strict=True, reason=f"BUG: {c.bug}")] if c.bug else [],
        )
        for c in CASES
    ]


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 60


def test_example_policy_loads_with_its_six_rules() -> None:
    policy = load_policy("example")
    assert policy is not None
    assert [r.name for r in policy.rules] == [PAY, GITHUB, SIWE, CALLS, NO_UNLIMITED, HOURS]
    assert policy.expires == datetime(2028, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("case", _params())
def test_decide_case_gives_expected_outcome_rule_and_code(case: Case) -> None:
    d = _run(case)
    assert (d.outcome, d.rule, d.code) == (case.outcome, case.rule, case.code), d.reason
    if case.windows is not None:
        got = tuple(
            (w.window, w.kind, w.asset, w.limit, w.used, w.requested, w.left, w.ok)
            for w in d.windows
        )
        assert got == case.windows
    if d.outcome != "allow":
        assert d.outcome == "ask" or d.charges == ()


def test_decide_allowed_decision_charges_each_windowed_rule_once() -> None:
    d = _run(Case("probe", usdc("2.5"), "allow", PAY, None))
    assert [(c.rule, c.asset, c.units) for c in d.charges] == [(PAY, USDC_BASE, 2_500_000)]


def test_decide_charges_an_asset_by_identity_not_symbol() -> None:
    d = _run(Case("probe", usdc("2.5", chain="local"), "allow", PAY, None, registry=WITH_USDC18))
    assert [(c.rule, c.asset, c.units) for c in d.charges] == [(PAY, USDC18_LOCAL, 25 * 10**17)]


def test_decide_no_matching_rule_names_the_wallet() -> None:
    d = _run(Case("probe", eth("0.001", wallet="other"), "deny", None, "NO_MATCHING_RULE"))
    assert "from wallet 'other'" in d.reason


def test_decide_allow_without_windows_books_nothing() -> None:
    d = _run(Case("probe", sign(), "allow", SIWE, None))
    assert d.outcome == "allow"
    assert d.charges == ()


def test_decide_matched_lists_every_matching_rule_sorted() -> None:
    d = _run(Case("probe", approve(), "deny", HOURS, "POLICY_DENIED", now=SAT_NOON))
    assert d.matched == (HOURS, NO_UNLIMITED)


def test_decide_denial_reason_names_the_deciding_rule() -> None:
    d = _run(
        Case(
            "probe",
            eth("0.005"),
            "deny",
            PAY,
            "BUDGET_EXCEEDED",
            history=(booked(HOUR * 2, ETH_BASE, 5 * 10**16),),
        )
    )
    assert PAY in d.reason
    assert "24h" in d.reason


def test_asset_identity_names_the_chain_and_the_contract_or_native() -> None:
    base = REGISTRY.chain("base")
    assert REGISTRY.asset(base, "USDC").identity == USDC_BASE
    assert REGISTRY.asset(base, "ETH").identity == ETH_BASE
    mint = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
    assert AssetInfo("BONK", "solana", mint, 5).identity == f"solana:{mint}"  # base58 keeps case
    assert WITH_USDC18.same_symbol("usdc") == (
        REGISTRY.asset(REGISTRY.chain("ethereum"), "USDC"),
        REGISTRY.asset(base, "USDC"),
        AssetInfo("USDC", "local", USDC18_ON_LOCAL, 18, builtin=False),
    )
