"""Fuzz the policy loader, the linter and the engine (issue 13, hole 12), bounded for CI.

An impossible unquoted date (`expires: 2026-02-30`) and an over-long `tz` crashed the loader
with a bare ValueError / OSError. Whatever the text, the loader answers a Policy or a
MalformedRequestError; a loaded policy lints without raising; and the engine decides any intent
under it with allow, ask or deny, never an exception.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysafe.errors import MalformedRequestError
from keysafe.policy.engine import AgentState, decide
from keysafe.policy.intent import Intent
from keysafe.policy.lint import lint
from keysafe.policy.registry import Registry
from keysafe.policy.rules import Policy, parse_policy
from tests.conftest import Cli

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
REGISTRY = Registry.builtin()
FUZZ = settings(
    max_examples=int(os.environ.get("KEYSAFE_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
)

ACTIONS = (
    "evm.transfer",
    "evm.sign_message",
    "solana.transfer",
    "http.request",
    "data.read",
    "evm.approve",
    "evm.sign_typed_data",
    "nonsense",
    "*",
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "2026-02-30",
            "2026-13-01",
            "9999-12-31",
            "0000-01-01",
            "24:00",
            "25:61",
            "a" * 300,
            "Europe/Berlin",
            "../../etc/passwd",
            "1e999",
            "-1",
            "0.0000001",
            "unlimited",
            "24h",
            "0s",
            "999999999999d",
            "*",
            "**",
            "[",
            "{",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
RULE_KEYS = (
    "name",
    "allow",
    "ask",
    "deny",
    "wallets",
    "chains",
    "assets",
    "recipients",
    "max_per_tx",
    "approve_above",
    "limits",
    "credentials",
    "urls",
    "methods",
    "data",
    "message_matches",
    "outside_hours",
    "when",
    "hours",
    "contracts",
    "spenders",
    "max_fee",
    "primary_types",
)


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": draw(st.text(min_size=1, max_size=12))}
    rule[draw(st.sampled_from(("allow", "ask", "deny")))] = draw(
        st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=3)
    )
    for key in draw(st.lists(st.sampled_from(RULE_KEYS), max_size=5, unique=True)):
        rule[key] = draw(VALUES)
    if draw(st.booleans()):
        rule["outside_hours"] = {
            "from": draw(SCALARS),
            "to": draw(SCALARS),
            "tz": draw(SCALARS),
            "days": draw(st.lists(SCALARS, max_size=3)),
        }
    if draw(st.booleans()):
        rule["limits"] = [
            {"window": draw(SCALARS), "max": draw(VALUES), "max_count": draw(SCALARS)}
        ]
    return rule


@st.composite
def documents(draw: st.DrawFn) -> str:
    doc: dict[str, Any] = {"version": draw(st.sampled_from([1, 1, 2, "1", None]))}
    doc["rules"] = draw(st.lists(rules(), max_size=4))
    if draw(st.booleans()):
        doc["expires"] = draw(SCALARS)
    text = yaml.safe_dump(doc, allow_unicode=True)
    if draw(st.booleans()):
        # Unquote every quoted scalar, so YAML resolves dates, numbers and booleans itself.
        text = text.replace("'", "")
    return text


def _load(text: str) -> Policy | None:
    try:
        return parse_policy(text)
    except MalformedRequestError:
        return None


INTENTS = st.builds(
    Intent,
    action=st.sampled_from(ACTIONS[:-1]),
    chain=st.sampled_from([None, "ethereum", "base", "solana", 1, 8453, "nowhere"]),
    wallet=st.sampled_from([None, "main", "other"]),
    asset=st.sampled_from([None, "ETH", "USDC", "SOL", "XYZ"]),
    amount=st.sampled_from([None, "0", "0.001", "1", "1e30", "unlimited", "-1", "abc"]),
    to=st.sampled_from([None, "0x" + "1" * 40, "0x" + "2" * 40]),
    credential=st.sampled_from([None, "github", "api"]),
    method=st.sampled_from([None, "GET", "POST"]),
    url=st.sampled_from([None, "https://api.github.com/user", "https://x//admin"]),
    message=st.sampled_from([None, "hello", ""]),
    data=st.sampled_from([None, "prefs", "profile"]),
)


@FUZZ
@given(text=st.text(max_size=400))
def test_any_text_loads_or_is_refused_with_a_clear_error(text: str) -> None:
    _load(text)


@FUZZ
@given(text=documents(), intent=INTENTS)
def test_any_policy_shaped_document_loads_lints_and_decides_without_raising(
    text: str, intent: Intent
) -> None:
    policy = _load(text)
    if policy is None:
        return
    lint(policy, REGISTRY, now=NOW)
    lint(policy, REGISTRY, now=NOW, wallets=frozenset({"main"}))
    decision = decide(
        policy,
        AgentState("bot", "active"),
        intent,
        registry=REGISTRY,
        usage=lambda rule, since: ({}, 0),
        now=NOW,
    )
    assert decision.outcome in ("allow", "ask", "deny")


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nrules: []\nexpires: 2026-02-30\n",
        "version: 1\nrules:\n  - name: r\n    deny: [evm.transfer]\n    outside_hours:\n"
        f"      from: '09:00'\n      to: '17:00'\n      tz: {'A' * 400}\n",
    ],
)
def test_attack_inputs_that_crashed_the_loader_are_refused_by_policy_lint(
    keysafe: Cli, tmp_path: Path, text: str
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(text, encoding="utf-8")
    r = keysafe("policy", "lint", str(policy))
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    assert "MALFORMED_REQUEST" in r.stdout + r.stderr
