"""The decision engine alone: one `engine.decide` with the example policy
(src/keysafe/policy/example_policy.yaml) and with a 200-rule policy, beside a dict-lookup loop.

The request is the example policy's own case: 0.001 ETH on base to an allowed recipient, on a
Monday at noon UTC (inside its business hours, before it expires); usage comes from a constant
function, so no database is timed. Both policies allow it through the same rule.

The baseline is the same decision written as plainly as Python allows: rules indexed in a dict
by action, then for each candidate rule set lookups for chain, asset and recipient and an integer
compare against the cap, amounts already in base units. It does what an indexed engine must do
at the least, and, being pure interpreter work, it moves with the machine as the engine does, so
the ratio compares across machines.

Also timed, for the record: `parse_policy` of each policy, which the server runs on every
request (services/policies.py `_state`), not only when the policy changes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from benchmarks import common
from keysafe.policy import examples

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday, 12:00 UTC
R1 = "0x1111111111111111111111111111111111111111"
R2 = "0x2222222222222222222222222222222222222222"


def example_policy_text() -> str:
    """The example policy with its optional parts on (the business-hours deny covers every
    request, so each decision evaluates it, as the earlier figures did)."""
    return examples.example_text(optional=True)


def policy_200_text() -> str:
    """The example policy's rules plus generated ones up to 200, spread over the actions an agent
    fleet uses (transfers to other recipients and chains, credentials, contract calls, message
    signing, approval limits). Only rules for evm.transfer, and the deny-all-hours rule, cover
    the benchmark request."""
    lines = [example_policy_text().split("expires:")[0].rstrip()]
    kinds = (
        "evm.transfer",
        "http.request",
        "solana.transfer",
        "evm.call",
        "evm.sign_message",
        "evm.approve",
    )
    n_example = len(re.findall(r"^  - name:", lines[0], re.M))
    for i in range(200 - n_example):
        kind = kinds[i % len(kinds)]
        name = f"gen-{i:03d}-{kind.replace('.', '-')}"
        if kind == "evm.transfer":
            rule = (
                f"  - name: {name}\n    allow: [evm.transfer]\n    wallets: [main]\n"
                f"    chains: [ethereum]\n"
                f'    assets: [ETH, USDC]\n    recipients: ["0x{i + 0x1000:040x}"]\n'
                f'    max_per_tx: {{ETH: "0.5", USDC: "500"}}\n'
                f'    limits:\n      - {{window: 24h, max: {{ETH: "2"}}}}\n'
            )
        elif kind == "http.request":
            rule = (
                f"  - name: {name}\n    allow: [http.request]\n    credentials: [svc-{i}]\n"
                f'    methods: [GET, POST]\n    urls: ["https://api{i}.example.com/v1/**"]\n'
            )
        elif kind == "solana.transfer":
            rule = (
                f"  - name: {name}\n    allow: [solana.transfer]\n    wallets: [sol]\n"
                f"    chains: [solana]\n"
                f'    assets: [SOL]\n    max_per_tx: {{SOL: "{i % 7 + 1}"}}\n'
            )
        elif kind == "evm.call":
            rule = (
                f"  - name: {name}\n    ask: [evm.call]\n    wallets: [main]\n"
                f"    chains: [base]\n"
                f'    contracts: ["0x{i + 0x2000:040x}"]\n'
            )
        elif kind == "evm.sign_message":
            rule = (
                f"  - name: {name}\n    allow: [evm.sign_message]\n    wallets: [main]\n"
                f'    message_matches: "^app{i}.example wants you to sign in"\n'
            )
        else:
            rule = (
                f"  - name: {name}\n    deny: [evm.approve]\n"
                f'    spenders: ["0x{i + 0x3000:040x}"]\n'
            )
        lines.append(rule.rstrip())
    return "\n".join(lines) + "\nexpires: 2027-01-01T00:00:00Z\n"


_IndexedRule = tuple[str, frozenset[str], frozenset[str], frozenset[str], int, int]


def _baseline_index() -> dict[str, list[_IndexedRule]]:
    # pay-small-on-base, as plain data: chains, assets, recipients, cap and ask threshold (wei).
    return {
        "evm.transfer": [
            (
                "pay-small-on-base",
                frozenset({"base", "local"}),
                frozenset({"ETH", "USDC"}),
                frozenset({R1.lower(), R2.lower()}),
                10**16,
                5 * 10**15,
            )
        ],
    }


def measure(*, seconds: float) -> dict[str, Any]:
    from keysafe.policy import engine
    from keysafe.policy.intent import Intent
    from keysafe.policy.registry import Registry
    from keysafe.policy.rules import parse_policy

    registry = Registry.builtin()
    intent = Intent(
        action="evm.transfer",
        chain="base",
        wallet="main",
        asset="ETH",
        amount="0.001",
        to=R1,
        summary="send 0.001 ETH on base",
    )
    agent = engine.AgentState("bench", "active")

    def no_usage(rule: str, since: datetime) -> tuple[Mapping[str, int], int]:
        return {}, 0

    texts = {"example": example_policy_text(), "rules_200": policy_200_text()}
    policies = {k: parse_policy(v) for k, v in texts.items()}
    assert len(policies["rules_200"].rules) == 200, len(policies["rules_200"].rules)
    out: dict[str, Any] = {}
    for policy in policies.values():
        d = engine.decide(policy, agent, intent, registry=registry, usage=no_usage, now=NOW)
        assert (d.outcome, d.rule) == ("allow", "pay-small-on-base"), d

    index = _baseline_index()

    def baseline() -> str:
        units = 10**15  # 0.001 ETH, already in base units
        for _name, chains, assets, recipients, cap, ask_above in index.get("evm.transfer", ()):
            if "base" in chains and "ETH" in assets and R1.lower() in recipients and units <= cap:
                return "ask" if units > ask_above else "allow"
        return "deny"

    assert baseline() == "allow"
    # Interleave so machine noise hits all three alike; per-call times from batches of 50.
    batch = 50
    timings: dict[str, list[float]] = {"baseline": [], "example": [], "rules_200": []}
    fns: dict[str, Any] = {
        "baseline": baseline,
        "example": lambda: engine.decide(
            policies["example"], agent, intent, registry=registry, usage=no_usage, now=NOW
        ),
        "rules_200": lambda: engine.decide(
            policies["rules_200"], agent, intent, registry=registry, usage=no_usage, now=NOW
        ),
    }

    def run_batch(fn: Any) -> None:
        for _ in range(batch):
            fn()

    for _round in range(5):
        for key, fn in fns.items():
            timings[key] += [
                t / batch
                for t in common.time_calls(functools.partial(run_batch, fn), seconds=seconds / 15)
            ]
    for key, samples in timings.items():
        s = common.summary(samples)
        out[key] = {"us_per_decision_p50": s["p50_ms"] * 1000, "samples": s["count"]}
    parse: dict[str, Any] = {}
    for key, text in texts.items():
        s = common.summary(
            common.time_calls(
                functools.partial(parse_policy, text), seconds=seconds / 6, min_calls=3
            )
        )
        parse[key] = {"ms_per_parse_p50": s["p50_ms"]}
    example_ratio = out["example"]["us_per_decision_p50"] / out["baseline"]["us_per_decision_p50"]
    scale_ratio = out["rules_200"]["us_per_decision_p50"] / out["example"]["us_per_decision_p50"]
    return {
        "figure": "one engine.decide: example policy and 200 rules vs a dict-lookup loop",
        "request": intent.model_dump(mode="json", exclude_none=True),
        "decisions": out,
        "parse_policy": parse,
        "ratio_example_vs_baseline": example_ratio,
        "ratio_200_vs_example": scale_ratio,
        "ratio": example_ratio,
        "target": {
            "example_vs_baseline_max": 20.0,
            "rules_200_vs_example_max": 10.0,
            "met_example": example_ratio <= 20.0,
            "met_200": scale_ratio <= 10.0,
        },
    }
