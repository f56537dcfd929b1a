"""`keysafe policy lint` says what it promised (issue 13, hole 8): a rule repeated word for word,
a value-moving rule with no cap and no window, a policy about to expire, a `data:` glob that
would never match; every error at once, each with its line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import Cli

R1 = "0x" + "1" * 40
PAY = f"""\
  - name: {{name}}
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R1}"]
    max_per_tx: {{{{ETH: "0.01"}}}}
"""


def _lint(
    keysafe: Cli, tmp_path: Path, text: str
) -> tuple[int, dict[str, list[dict[str, object]]]]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text, encoding="utf-8")
    r = keysafe("policy", "lint", str(policy), "--json")
    assert "Traceback" not in r.stdout + r.stderr
    return r.exit_code, json.loads(r.stdout)


def _messages(report: dict[str, list[dict[str, object]]], level: str) -> list[str]:
    return [f"{f['rule']}: {f['message']}" for f in report[level]]


def test_attack_a_rule_repeated_word_for_word_is_reported(keysafe: Cli, tmp_path: Path) -> None:
    text = "version: 1\nrules:\n" + PAY.format(name="pay") + PAY.format(name="pay-again")
    code, report = _lint(keysafe, tmp_path, text)
    assert code == 0
    assert any("pay-again: repeats rule 'pay'" in m for m in _messages(report, "warnings"))


def test_attack_a_value_moving_rule_without_cap_or_window_is_reported(
    keysafe: Cli, tmp_path: Path
) -> None:
    uncapped = PAY.format(name="open").replace('    max_per_tx: {ETH: "0.01"}\n', "")
    windowed = PAY.format(name="windowed").replace(
        '    max_per_tx: {ETH: "0.01"}\n', '    limits: [{window: 24h, max: {ETH: "0.1"}}]\n'
    )
    counted = PAY.format(name="counted").replace(
        '    max_per_tx: {ETH: "0.01"}\n', "    limits: [{window: 1h, max_count: 3}]\n"
    )
    code, report = _lint(keysafe, tmp_path, "version: 1\nrules:\n" + uncapped + windowed + counted)
    assert code == 0
    flagged = sorted(
        m.split(":")[0] for m in _messages(report, "warnings") if "spend everything" in m
    )
    assert flagged == ["counted", "open"]  # a count limit caps requests, not value


def test_attack_a_policy_about_to_expire_is_reported(keysafe: Cli, tmp_path: Path) -> None:
    soon = (datetime.now(UTC) + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (datetime.now(UTC) + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = "rules:\n" + PAY.format(name="pay")
    _, report = _lint(keysafe, tmp_path, f"version: 1\nexpires: {soon}\n{body}")
    assert any("expires in" in m for m in _messages(report, "warnings")), report
    _, report = _lint(keysafe, tmp_path, f"version: 1\nexpires: {later}\n{body}")
    assert not any("expires in" in m for m in _messages(report, "warnings")), report


def test_attack_a_data_glob_that_never_matches_is_an_error(keysafe: Cli, tmp_path: Path) -> None:
    text = 'version: 1\nrules:\n  - name: prefs\n    allow: [data.read]\n    data: ["prefs.*"]\n'
    code, report = _lint(keysafe, tmp_path, text)
    assert code == 1
    assert any("never match" in m for m in _messages(report, "errors"))


def test_every_error_is_reported_at_once_with_its_line(keysafe: Cli, tmp_path: Path) -> None:
    text = (
        "version: 1\nrules:\n"
        + PAY.format(name="fine")
        + "  - name: bad-action\n    allow: [evm.teleport]\n    wallets: [main]\n"
        + "  - name: bad-data\n    allow: [data.read]\n    data: ['x*']\n"
    )
    code, report = _lint(keysafe, tmp_path, text)
    assert code == 1
    lines = {str(f["rule"]): f.get("line") for f in report["errors"]}
    assert lines == {"bad-action": 10, "bad-data": 13}, report
    r = keysafe("policy", "lint", str(tmp_path / "policy.yaml"))
    assert "line 10: rule 'bad-action'" in r.stdout and "line 13: rule 'bad-data'" in r.stdout
