"""`keysafe policy lint`, one named check at a time (lint.RULE_CHECKS and lint.POLICY_CHECKS).

Each row names a check, a policy that trips it and words of the finding it must give. The row
runs the check on its own (the check is right) and through `lint` (the check is still in the
table); a quiet policy trips none. test_rules_and_lint.py covers the finer behaviours.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from keysafe.policy import lint as lint_module
from keysafe.policy.lint import POLICY_CHECKS, RULE_CHECKS, Finding, LintContext, lint
from keysafe.policy.registry import Registry
from keysafe.policy.rules import Policy, parse_policy

REGISTRY = Registry.builtin()
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
USDC_ON_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
CAPPED = 'max_per_tx: {ETH: "0.01"}'


@dataclass(frozen=True)
class Case:
    check: str
    rules: tuple[str, ...]
    level: str
    words: str
    expires: str | None = None
    wallets: frozenset[str] | None = None


CASES = [
    Case(
        "unknown_actions",
        ("{name: r, allow: [evm.teleport], wallets: [main]}",),
        "error",
        "unknown action 'evm.teleport'",
    ),
    Case(
        "unknown_chains",
        (f"{{name: r, allow: [evm.transfer], wallets: [main], chains: [atlantis], {CAPPED}}}",),
        "error",
        "unknown chain 'atlantis'",
    ),
    Case(
        "signs_without_wallets",
        (f"{{name: r, allow: [evm.transfer], {CAPPED}}}",),
        "error",
        "signs with no `wallets:`",
    ),
    Case(
        "wallets_without_signing",
        ("{name: r, allow: [http.request], wallets: [main], credentials: [gh]}",),
        "warning",
        "covers no signing action",
    ),
    Case(
        "wallets_not_in_vault",
        (f"{{name: r, allow: [evm.transfer], wallets: [ghost], {CAPPED}}}",),
        "warning",
        "wallet 'ghost' is not in this vault",
        wallets=frozenset({"main"}),
    ),
    Case(
        "release_of_any_credential",
        ("{name: r, ask: [credential.release]}",),
        "warning",
        "lets the agent ask for the value of ANY credential",
    ),
    Case(
        "unknown_assets",
        ('{name: r, allow: [evm.transfer], wallets: [main], max_per_tx: {DOGE: "1"}}',),
        "error",
        "unknown asset 'DOGE'",
    ),
    Case(
        "bad_url_patterns",
        ("{name: r, allow: [http.request], urls: ['ftp://x/**']}",),
        "error",
        "is not a valid http(s) URL pattern",
    ),
    Case(
        "primary_types_never_typed",
        ("{name: r, ask: [http.request], primary_types: [Permit]}",),
        "warning",
        "primary_types only matches typed-data requests",
    ),
    Case(
        "token_typed_data_unnamed",
        (
            f"{{name: r, allow: [evm.sign_typed_data], wallets: [main], "
            f"contracts: ['{USDC_ON_BASE}']}}",
        ),
        "warning",
        "is refused unless the rule also names the message types",
    ),
    Case(
        "allows_without_condition",
        ("{name: r, allow: ['*'], wallets: [main]}",),
        "error",
        "allows every action with no condition or limit",
    ),
    Case(
        "caps_outside_assets",
        (
            "{name: r, allow: [evm.transfer], wallets: [main], assets: [USDC], "
            'max_per_tx: {ETH: "1", USDC: "1"}}',
        ),
        "warning",
        "has a cap for ETH, which its assets do not include",
    ),
    Case(
        "approve_above_never_asks",
        (
            '{name: r, allow: [evm.transfer], wallets: [main], max_per_tx: {ETH: "1"}, '
            'approve_above: {ETH: "1"}}',
        ),
        "warning",
        "is not below max_per_tx",
    ),
    Case(
        "glob_in_data_names",
        ("{name: r, ask: [data.read], data: ['pass*']}",),
        "error",
        "data names are exact",
    ),
    Case(
        "uncapped_value",
        ("{name: r, allow: [evm.transfer], wallets: [main], chains: [base]}",),
        "warning",
        "moves value with neither max_per_tx nor a window",
    ),
    Case(
        "repeated_rules",
        (
            f"{{name: a, allow: [evm.transfer], wallets: [main], {CAPPED}}}",
            f"{{name: b, allow: [evm.transfer], wallets: [main], {CAPPED}}}",
        ),
        "warning",
        "repeats rule 'a' word for word",
    ),
    Case(
        "shadowed_rules",
        (
            f"{{name: a, allow: [evm.transfer], wallets: [main], {CAPPED}}}",
            "{name: z, deny: [evm.transfer]}",
        ),
        "warning",
        "is shadowed by rule 'z'",
    ),
    Case(
        "expiry",
        (f"{{name: a, allow: [evm.transfer], wallets: [main], {CAPPED}}}",),
        "warning",
        "the policy expired at",
        expires="2026-03-01T00:00:00Z",
    ),
]


def policy_of(case: Case) -> Policy:
    text = "version: 1\nrules:\n" + "".join(f"  - {r}\n" for r in case.rules)
    return parse_policy(text + (f"expires: {case.expires}\n" if case.expires else ""))


def run_check(case: Case, policy: Policy) -> list[Finding]:
    at = LintContext(policy, REGISTRY, REGISTRY.symbols(), case.wallets, NOW)
    check = getattr(lint_module, case.check)
    if check in POLICY_CHECKS:
        return list(check(at))
    found: list[Finding] = []
    for rule in policy.rules:
        checked: Iterator[Finding] = check(rule, at)
        found.extend(checked)
    return found


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.check)
def test_lint_check_alone_and_in_lint_gives_its_finding(case: Case) -> None:
    policy = policy_of(case)
    alone = [f for f in run_check(case, policy) if case.words in f.message]
    assert [f.level for f in alone] == [case.level], run_check(case, policy)
    assert alone[0] in lint(policy, REGISTRY, now=NOW, wallets=case.wallets).findings


def test_lint_every_check_in_the_tables_has_a_case() -> None:
    named = {c.__name__ for c in (*RULE_CHECKS, *POLICY_CHECKS)}
    assert named == {c.check for c in CASES}


def test_lint_quiet_policy_trips_no_check() -> None:
    quiet = parse_policy(
        "version: 1\nrules:\n"
        f"  - {{name: pay, allow: [evm.transfer], wallets: [main], chains: [base], {CAPPED}}}\n"
    )
    assert lint(quiet, REGISTRY, now=NOW, wallets=frozenset({"main"})).findings == []
