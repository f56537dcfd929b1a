"""Policy parsing (rules.py), lint (lint.py) and URL normalisation (urls.py).

Parse errors are MalformedRequestError naming the rule and the field, and never echo a value: a
canary placed inside the bad value must not appear anywhere in the error.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest

from keysafe.errors import MalformedRequestError
from keysafe.policy.lint import LintReport, lint
from keysafe.policy.registry import Registry
from keysafe.policy.rules import Policy, parse_policy, window_seconds
from keysafe.policy.urls import BadUrl, normalise, url_matches
from tests.policy_examples import example_text

EXAMPLE_TEXT = example_text()  # with its optional parts (business hours, expiry) on
REGISTRY = Registry.builtin()
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
CANARY = "CANARY7f3a"
HEAD = "version: 1\nrules:\n"


def policy_of(*rules: str, expires: str | None = None) -> str:
    """YAML text for a policy whose rules are given as flow mappings."""
    text = HEAD + "".join(f"  - {r}\n" for r in rules)
    return text + (f"expires: {expires}\n" if expires else "")


def parse_error(text: str) -> MalformedRequestError:
    with pytest.raises(MalformedRequestError) as info:
        parse_policy(text)
    return info.value


def assert_no_echo(err: MalformedRequestError) -> None:
    for part in (str(err), err.what, err.next_step, repr(err.facts)):
        assert CANARY not in part


def run_lint(text: str, now: datetime = NOW) -> LintReport:
    return lint(parse_policy(text), REGISTRY, now=now)


# --- parse: accepted forms ------------------------------------------------------------------


def test_parse_policy_example_gives_six_rules() -> None:
    policy = parse_policy(EXAMPLE_TEXT)
    assert isinstance(policy, Policy)
    assert len(policy.rules) == 6
    pay = policy.rules[0]
    assert pay.max_per_tx == {"ETH": Decimal("0.01"), "USDC": Decimal("25")}
    assert pay.limits is not None
    assert [lim.seconds for lim in pay.limits] == [86400, 3600]
    hours = policy.rules[-1].outside_hours
    assert hours is not None
    assert (hours.from_, hours.to, hours.tz) == (time(8), time(20), "UTC")


def test_parse_policy_unquoted_sexagesimal_time_reads_as_clock_time() -> None:
    p = parse_policy(policy_of('{name: h, deny: ["*"], outside_hours: {from: 08:30, to: 17:00}}'))
    hours = p.rules[0].outside_hours
    assert hours is not None
    assert (hours.from_, hours.to) == (time(8, 30), time(17))


def test_parse_policy_integer_amount_accepted_as_decimal() -> None:
    p = parse_policy(
        policy_of("{name: r, allow: [evm.transfer], wallets: [main], max_per_tx: {USDC: 25}}")
    )
    assert p.rules[0].max_per_tx == {"USDC": Decimal(25)}


def test_parse_policy_methods_upper_cased_and_days_lower_cased() -> None:
    p = parse_policy(
        policy_of(
            "{name: r, allow: [http.request], methods: [get, Post]}",
            '{name: h, deny: ["*"], outside_hours: {from: "08:00", to: "09:00", days: [MON]}}',
        )
    )
    assert p.rules[0].methods == ["GET", "POST"]
    assert p.rules[1].outside_hours is not None
    assert p.rules[1].outside_hours.days == ["mon"]


def test_parse_policy_naive_expiry_taken_as_utc() -> None:
    p = parse_policy(policy_of("{name: r, allow: [data.read]}", expires='"2027-01-01T00:00:00"'))
    assert p.expires == datetime(2027, 1, 1, tzinfo=UTC)


def test_rule_wildcard_covers_every_action() -> None:
    p = parse_policy(
        policy_of('{name: r, deny: ["*"]}', "{name: s, allow: [evm.call], wallets: [main]}")
    )
    assert p.rules[0].covers("http.request")
    assert p.rules[1].covers("evm.call")
    assert not p.rules[1].covers("evm.transfer")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("24h", 86400), ("7d", 604800)]
)
def test_window_seconds_valid_window_gives_seconds(text: str, seconds: int) -> None:
    assert window_seconds(text) == seconds


@pytest.mark.parametrize("text", ["5x", "0h", "h", "1.5h", "1000000s", " 1h", "-1h", "1H"])
def test_window_seconds_invalid_window_raises(text: str) -> None:
    with pytest.raises(ValueError):
        window_seconds(text)


# --- parse: refused forms, naming rule and field, never echoing values ----------------------

REFUSED: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "float amount in max_per_tx",
        policy_of("{name: pay, allow: [evm.transfer], wallets: [main], max_per_tx: {ETH: 0.01}}"),
        ("rule 'pay'", "max_per_tx.ETH", "float"),
    ),
    (
        "float amount in a limit max",
        policy_of(
            "{name: pay, allow: [evm.transfer], wallets: [main], "
            "limits: [{window: 1h, max: {ETH: 0.5}}]}"
        ),
        ("rule 'pay'", "limits.0.max.ETH", "float"),
    ),
    (
        "float amount in approve_above",
        policy_of(
            "{name: pay, allow: [evm.transfer], wallets: [main], approve_above: {USDC: 10.5}}"
        ),
        ("rule 'pay'", "approve_above.USDC", "float"),
    ),
    (
        "boolean amount",
        policy_of("{name: pay, allow: [evm.transfer], wallets: [main], max_per_tx: {ETH: true}}"),
        ("rule 'pay'", "max_per_tx.ETH"),
    ),
    (
        "amount that is not a number",
        policy_of(
            f"{{name: pay, allow: [evm.transfer], wallets: [main], "
            f'max_per_tx: {{ETH: "{CANARY}"}}}}'
        ),
        ("rule 'pay'", "max_per_tx.ETH", "decimal"),
    ),
    (
        "negative amount",
        policy_of('{name: pay, allow: [evm.transfer], wallets: [main], max_per_tx: {ETH: "-1"}}'),
        ("rule 'pay'", "max_per_tx.ETH"),
    ),
    (
        "two verbs in one rule",
        policy_of("{name: both, allow: [evm.transfer], wallets: [main], deny: [evm.call]}"),
        ("rule 'both'", "exactly one of allow, ask or deny"),
    ),
    (
        "no verb",
        policy_of(f"{{name: none, chains: [base], recipients: ['{CANARY}']}}"),
        ("rule 'none'", "exactly one of allow, ask or deny"),
    ),
    (
        "empty action list",
        policy_of("{name: empty, allow: []}"),
        ("rule 'empty'", "lists no actions"),
    ),
    (
        "unknown key",
        policy_of(f"{{name: extra, allow: [evm.transfer], wallets: [main], colour: '{CANARY}'}}"),
        ("rule 'extra'", "colour"),
    ),
    (
        "bad window 5x",
        policy_of(
            "{name: w, allow: [evm.transfer], wallets: [main], "
            "limits: [{window: 5x, max_count: 1}]}"
        ),
        ("rule 'w'", "limits.0.window"),
    ),
    (
        "window holding a canary",
        policy_of(
            f"{{name: w, allow: [evm.transfer], wallets: [main], "
            f"limits: [{{window: '5{CANARY}', max_count: 1}}]}}"
        ),
        ("rule 'w'", "limits.0.window"),
    ),
    (
        "limit with neither max nor max_count",
        policy_of("{name: lim, allow: [evm.transfer], wallets: [main], limits: [{window: 1h}]}"),
        ("rule 'lim'", "limits.0", "max_count"),
    ),
    (
        "negative max_count",
        policy_of(
            "{name: lim, allow: [evm.transfer], wallets: [main], "
            "limits: [{window: 1h, max_count: -1}]}"
        ),
        ("rule 'lim'", "limits.0.max_count"),
    ),
    (
        "bad regex",
        policy_of(
            f"{{name: rx, allow: [evm.sign_message], wallets: [main], "
            f"message_matches: '({CANARY}'}}"
        ),
        ("rule 'rx'", "message_matches"),
    ),
    (
        "bad tz",
        policy_of(
            f'{{name: tz, deny: ["*"], '
            f'outside_hours: {{from: "08:00", to: "20:00", tz: "Mars/{CANARY}"}}}}'
        ),
        ("rule 'tz'", "outside_hours.tz"),
    ),
    (
        "bad day",
        policy_of(
            f'{{name: day, deny: ["*"], '
            f'outside_hours: {{from: "08:00", to: "20:00", days: [{CANARY}]}}}}'
        ),
        ("rule 'day'", "outside_hours.days"),
    ),
    (
        "bad time of day",
        policy_of(f'{{name: tod, deny: ["*"], outside_hours: {{from: "{CANARY}", to: "20:00"}}}}'),
        ("rule 'tod'", "outside_hours.from"),
    ),
    (
        "caps on a deny rule",
        policy_of('{name: d, deny: [evm.transfer], max_per_tx: {ETH: "1"}}'),
        ("rule 'd'", "allow or ask"),
    ),
    ("actions not a list", policy_of(f"{{name: s, allow: '{CANARY}'}}"), ("rule 's'", "allow")),
    (
        "duplicate rule names",
        policy_of(
            "{name: dup, allow: [evm.transfer], wallets: [main]}", "{name: dup, deny: [evm.call]}"
        ),
        ("'dup'", "unique"),
    ),
    ("version 2", "version: 2\nrules: []\n", ("version",)),
    (
        "expires not a date",
        policy_of("{name: r, allow: [data.read]}", expires=f'"{CANARY}"'),
        ("expires",),
    ),
    ("not YAML", f"version: 1\nrules: [{{{{ {CANARY}\n", ("not valid YAML", "line")),
    ("a YAML list, not a mapping", f"- {CANARY}\n- b\n", ("must be a mapping",)),
    ("a YAML scalar, not a mapping", f"{CANARY}\n", ("must be a mapping",)),
    ("an empty document", "", ("must be a mapping",)),
]


@pytest.mark.parametrize(("label", "text", "named"), [pytest.param(*r, id=r[0]) for r in REFUSED])
def test_parse_policy_refused_input_names_rule_and_field(
    label: str, text: str, named: tuple[str, ...]
) -> None:
    err = parse_error(text)
    for fragment in named:
        assert fragment in err.what, f"{fragment!r} missing from: {err.what}"
    assert err.next_step


@pytest.mark.parametrize(
    ("label", "text"),
    [pytest.param(label, text, id=label) for label, text, _ in REFUSED],
)
def test_parse_policy_refused_input_never_echoes_value(label: str, text: str) -> None:
    assert_no_echo(parse_error(text))


def test_parse_policy_bad_regex_group_name_never_echoes_value() -> None:
    err = parse_error(
        policy_of(
            f"{{name: rx, allow: [evm.sign_message], wallets: [main], "
            f"message_matches: '(?P={CANARY})'}}"
        )
    )
    assert "message_matches" in err.what
    assert_no_echo(err)


def test_parse_policy_errors_are_malformed_request_code() -> None:
    err = parse_error("version: 1\nrules: 5\n")
    assert err.code == "MALFORMED_REQUEST"
    assert "rules" in err.what


def test_parse_policy_source_named_in_error() -> None:
    with pytest.raises(MalformedRequestError) as info:
        parse_policy("- a\n", source="agent-policy.yaml")
    assert "agent-policy.yaml" in info.value.what


# --- lint -----------------------------------------------------------------------------------


def test_lint_example_policy_has_no_errors_or_warnings() -> None:
    report = run_lint(EXAMPLE_TEXT)
    assert report.errors == []
    assert report.warnings == []
    assert report.to_dict()["ok"] is True


def test_lint_unknown_action_is_error_naming_rule() -> None:
    report = run_lint(
        policy_of("{name: odd, allow: [evm.teleport], wallets: [main], chains: [base]}")
    )
    assert [(f.rule, "unknown action 'evm.teleport'" in f.message) for f in report.errors] == [
        ("odd", True)
    ]
    assert report.to_dict()["ok"] is False


@pytest.mark.parametrize("chain", ["mars", "137", 137])
def test_lint_unknown_chain_is_error(chain: str | int) -> None:
    report = run_lint(
        policy_of(f"{{name: c, allow: [evm.transfer], wallets: [main], chains: [{chain!r}]}}")
    )
    assert len(report.errors) == 1
    assert report.errors[0].rule == "c"
    assert "unknown chain" in report.errors[0].message


@pytest.mark.parametrize("chain", ["base", "8453", 8453, "BASE"])
def test_lint_known_chain_name_or_id_is_not_error(chain: str | int) -> None:
    report = run_lint(
        policy_of(f"{{name: c, allow: [evm.transfer], wallets: [main], chains: [{chain!r}]}}")
    )
    assert report.errors == []


@pytest.mark.parametrize(
    "rule",
    [
        "{name: a, allow: [evm.transfer], wallets: [main], assets: [DOGE]}",
        '{name: a, allow: [evm.transfer], wallets: [main], max_per_tx: {DOGE: "1"}}',
        '{name: a, allow: [evm.transfer], wallets: [main], approve_above: {DOGE: "1"}}',
        "{name: a, allow: [evm.transfer], wallets: [main], "
        'limits: [{window: 1h, max: {DOGE: "1"}}]}',
    ],
    ids=["assets", "max_per_tx", "approve_above", "limits.max"],
)
def test_lint_unknown_asset_is_error(rule: str) -> None:
    report = run_lint(policy_of(rule))
    assert [f.message for f in report.errors] == [
        "unknown asset 'DOGE' (add it with `keysafe asset add`)"
    ]


def test_lint_allow_everything_unconditionally_is_error() -> None:
    report = run_lint(policy_of('{name: yolo, allow: ["*"], wallets: [main]}'))
    assert [f.rule for f in report.errors] == ["yolo"]
    assert "every action" in report.errors[0].message


def test_lint_allow_everything_with_a_condition_is_not_error() -> None:
    report = run_lint(policy_of('{name: base-only, allow: ["*"], wallets: [main], chains: [base]}'))
    assert report.errors == []


def test_lint_allow_shadowed_by_unconditional_deny_is_warning() -> None:
    report = run_lint(
        policy_of(
            "{name: pay, allow: [evm.transfer], wallets: [main], chains: [base], "
            'max_per_tx: {ETH: "1"}}',
            '{name: stop, deny: ["*"]}',
        )
    )
    assert report.errors == []
    shadowed = [f for f in report.warnings if "shadowed" in f.message]
    assert [(f.rule, "'stop'" in f.message, "denied" in f.message) for f in shadowed] == [
        ("pay", True, True)
    ]


def test_lint_shadow_warning_does_not_depend_on_rule_order() -> None:
    report = run_lint(
        policy_of(
            "{name: stop, deny: [evm.transfer]}",
            "{name: pay, allow: [evm.transfer], wallets: [main], chains: [base], "
            'max_per_tx: {ETH: "1"}}',
        )
    )
    assert [f.rule for f in report.warnings if "shadowed" in f.message] == ["pay"]


ASK_SHADOW = policy_of(
    '{name: pay, allow: [evm.call], wallets: [main], chains: [base], max_per_tx: {ETH: "1"}}',
    "{name: review, ask: [evm.call], wallets: [main]}",
)


def test_lint_allow_shadowed_by_unconditional_ask_is_warning() -> None:
    report = run_lint(ASK_SHADOW)
    assert report.errors == []
    assert [(f.rule, "shadowed by rule 'review'" in f.message) for f in report.warnings] == [
        ("pay", True)
    ]


def test_lint_ask_shadow_warning_reads_as_a_sentence() -> None:
    report = run_lint(ASK_SHADOW)
    assert [f.message for f in report.warnings] == [
        "is shadowed by rule 'review': everything it allows asks for approval"
    ]


def test_lint_deny_outside_hours_does_not_shadow() -> None:
    report = run_lint(
        policy_of(
            "{name: pay, allow: [evm.call], wallets: [main], chains: [base], "
            'max_per_tx: {ETH: "1"}}',
            '{name: hours, deny: ["*"], outside_hours: {from: "08:00", to: "20:00"}}',
        )
    )
    assert report.warnings == []


def test_lint_narrower_deny_does_not_shadow() -> None:
    report = run_lint(
        policy_of(
            "{name: pay, allow: [evm.call], wallets: [main], chains: [base, local], "
            'max_per_tx: {ETH: "1"}}',
            "{name: no-local, deny: [evm.call], chains: [local]}",
        )
    )
    assert report.warnings == []


def test_lint_shadow_found_when_chain_named_by_id_and_by_name() -> None:
    report = run_lint(
        policy_of(
            "{name: pay, allow: [evm.call], wallets: [main], chains: [8453]}",
            "{name: stop, deny: [evm.call], chains: [base]}",
        )
    )
    assert [f.rule for f in report.warnings if "shadowed" in f.message] == ["pay"]


@pytest.mark.parametrize("threshold", ["1", "2"], ids=["equal", "above"])
def test_lint_approve_above_not_below_max_per_tx_is_warning(threshold: str) -> None:
    report = run_lint(
        policy_of(
            "{name: pay, allow: [evm.transfer], wallets: [main], chains: [base], "
            f'max_per_tx: {{ETH: "1"}}, approve_above: {{ETH: "{threshold}"}}}}'
        )
    )
    assert [f.message for f in report.warnings] == [
        f"approve_above ETH {threshold} is not below max_per_tx 1: it never asks"
    ]


def test_lint_approve_above_below_max_per_tx_is_fine() -> None:
    report = run_lint(
        policy_of(
            "{name: pay, allow: [evm.transfer], wallets: [main], chains: [base], "
            'max_per_tx: {ETH: "1"}, approve_above: {ETH: "0.5"}}'
        )
    )
    assert report.warnings == []


def test_lint_cap_on_asset_outside_rule_assets_is_warning() -> None:
    report = run_lint(
        policy_of(
            "{name: pay, allow: [evm.transfer], wallets: [main], assets: [ETH], "
            'max_per_tx: {USDC: "1"}}'
        )
    )
    assert [f.message for f in report.warnings] == [
        "has a cap for USDC, which its assets do not include"
    ]


@pytest.mark.parametrize(
    "now",
    [datetime(2028, 1, 1, tzinfo=UTC), datetime(2028, 6, 1, tzinfo=UTC)],
    ids=["at-expiry", "after-expiry"],
)
def test_lint_expired_policy_is_warning(now: datetime) -> None:
    report = run_lint(EXAMPLE_TEXT, now=now)
    assert report.errors == []
    assert [(f.rule, "expired" in f.message) for f in report.warnings] == [(None, True)]


@pytest.mark.parametrize(
    ("now", "days"),
    [
        (datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC), "1 day"),
        (datetime(2027, 12, 2, 0, 0, 1, tzinfo=UTC), "29 days"),
    ],
)
def test_lint_policy_expiring_within_30_days_is_warning(now: datetime, days: str) -> None:
    report = run_lint(EXAMPLE_TEXT, now=now)
    assert [(f.rule, f"expires in {days}" in f.message) for f in report.warnings] == [(None, True)]


def test_lint_policy_well_before_expiry_has_no_expiry_warning() -> None:
    report = run_lint(EXAMPLE_TEXT, now=datetime(2027, 12, 1, tzinfo=UTC))
    assert report.warnings == []


# --- urls: normalisation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.github.com/repos/a", ("https", "api.github.com", 443, "/repos/a")),
        ("HTTPS://API.GitHub.COM/repos/A", ("https", "api.github.com", 443, "/repos/A")),
        ("http://example.com", ("http", "example.com", 80, "/")),
        ("https://example.com:443/x", ("https", "example.com", 443, "/x")),
        ("https://example.com:8443/x", ("https", "example.com", 8443, "/x")),
        ("https://h.test/a/./b", ("https", "h.test", 443, "/a/b")),
        ("https://h.test/repos/../admin", ("https", "h.test", 443, "/admin")),
        ("https://h.test/a/../../../b", ("https", "h.test", 443, "/b")),
        ("https://h.test/a/b/", ("https", "h.test", 443, "/a/b/")),
        ("https://h.test/a?x=1#frag", ("https", "h.test", 443, "/a")),
        # Escapes of unreserved characters decode (so %2E%2E is `..`), repeated slashes collapse.
        ("https://h.test/repos/%2E%2E/admin", ("https", "h.test", 443, "/admin")),
        ("https://h.test/repos/%2e%2e/admin", ("https", "h.test", 443, "/admin")),
        ("https://h.test//%61dmin//x", ("https", "h.test", 443, "/admin/x")),
        ("https://h.test/a%20b%7e", ("https", "h.test", 443, "/a%20b~")),
        ("  https://h.test/a  ", ("https", "h.test", 443, "/a")),
    ],
    ids=[
        "plain",
        "scheme-and-host-lower-cased-path-kept",
        "http-default-port-and-root",
        "explicit-default-port",
        "other-port",
        "dot-segment",
        "dot-dot",
        "dot-dot-above-root",
        "trailing-slash-kept",
        "query-and-fragment-dropped",
        "encoded-dots-decoded",
        "encoded-dots-lower-decoded",
        "double-slash-and-unreserved-escape",
        "escapes-kept-or-decoded",
        "surrounding-space",
    ],
)
def test_normalise_valid_url_gives_parts(url: str, expected: tuple[str, str, int, str]) -> None:
    assert normalise(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://h.test/repos%2F..%2Fadmin",
        "https://h.test/repos%2f..%2fadmin",
        "https://h.test/repos%5Cadmin",
        "https://h.test/admin;/x",
        "https://h.test/admin%3B/x",
        "https://h.test/repos\\..\\admin",
        "ftp://h.test/x",
        "file:///etc/passwd",
        "https:///no-host",
        "not a url",
        "https://h.test:99999/x",
        "https://h.test:port/x",
        "https://user:pw@h.test/x",
        "https://user@h.test/x",
    ],
    ids=[
        "encoded-slash",
        "encoded-slash-lower",
        "encoded-backslash",
        "semicolon",
        "encoded-semicolon",
        "backslash",
        "ftp",
        "file",
        "no-host",
        "no-scheme",
        "port-too-big",
        "port-not-number",
        "user-and-password",
        "user-only",
    ],
)
def test_normalise_unjudgeable_url_raises_bad_url(url: str) -> None:
    with pytest.raises(BadUrl):
        normalise(url)


# --- urls: matching --------------------------------------------------------------------------

GH = "https://api.github.com/repos/**"


@pytest.mark.parametrize(
    ("pattern", "url", "matches"),
    [
        (GH, "https://api.github.com/repos/a/b", True),
        (GH, "https://api.github.com/repos/a/b/c/d", True),
        (GH, "https://api.github.com/repos/", True),
        (GH, "https://api.github.com/repos/../admin", False),
        (GH, "https://api.github.com/repos/a/../../admin", False),
        (GH, "https://api.github.com/reposx/a", False),
        (GH, "https://api.github.com/user", False),
        (GH, "http://api.github.com/repos/a", False),
        (GH, "https://api.github.com:443/repos/a", True),
        (GH, "https://api.github.com:8443/repos/a", False),
        (GH, "https://API.GITHUB.COM/repos/a", True),
        (GH, "https://api.github.com/REPOS/a", False),
        (GH, "https://github.com/repos/a", False),
        (GH, "https://api.github.com.evil.test/repos/a", False),
        ("https://h.test/repos/*", "https://h.test/repos/a", True),
        ("https://h.test/repos/*", "https://h.test/repos/a/b", False),
        ("https://h.test/repos/*/issues", "https://h.test/repos/a/issues", True),
        ("https://h.test/repos/*/issues", "https://h.test/repos/a/b/issues", False),
        ("https://h.test/repos/**/issues", "https://h.test/repos/a/b/issues", True),
        ("https://h.test/v1/items", "https://h.test/v1/items", True),
        ("https://h.test/v1/items", "https://h.test/v1/items/1", False),
        ("https://h.test/v1.items", "https://h.test/v1xitems", False),
        ("http://h.test/**", "http://h.test:80/a", True),
        ("http://h.test/**", "https://h.test/a", False),
        ("https://h.test:8443/**", "https://h.test:8443/a", True),
        ("https://h.test:8443/**", "https://h.test/a", False),
        ("https://*.h.test/**", "https://api.h.test/a", True),
        ("https://*.h.test/**", "https://h.test/a", False),
        ("https://*.h.test/**", "https://evilh.test/a", False),
    ],
    ids=[
        "double-star-one-level",
        "double-star-deep",
        "double-star-empty-rest",
        "dot-dot-escape",
        "dot-dot-escape-deep",
        "prefix-is-not-a-segment",
        "other-path",
        "http-vs-https",
        "explicit-443-is-default",
        "other-port",
        "host-case-insensitive",
        "path-case-sensitive",
        "other-host",
        "look-alike-host",
        "star-one-segment",
        "star-not-two-segments",
        "star-in-the-middle",
        "star-middle-not-two-segments",
        "double-star-in-the-middle",
        "literal-path",
        "literal-path-no-prefix-match",
        "dot-in-pattern-is-literal",
        "http-explicit-80-is-default",
        "http-pattern-vs-https",
        "explicit-port-pattern",
        "explicit-port-pattern-vs-default",
        "wildcard-subdomain",
        "wildcard-subdomain-not-apex",
        "wildcard-subdomain-not-suffix",
    ],
)
def test_url_matches_pattern_and_url_gives_expected(pattern: str, url: str, matches: bool) -> None:
    assert url_matches(pattern, url) is matches


@pytest.mark.parametrize(
    "url",
    [
        "https://api.github.com/repos%2F..%2Fadmin",
        "https://api.github.com:99999/repos/a",
        "ftp://api.github.com/repos/a",
    ],
    ids=["encoded-slash", "bad-port", "ftp"],
)
def test_url_matches_unjudgeable_url_raises_bad_url(url: str) -> None:
    with pytest.raises(BadUrl):
        url_matches(GH, url)


def test_lint_credential_release_without_credentials_warns_any_credential() -> None:
    report = run_lint(policy_of("{name: run-anything, allow: [credential.release]}"))
    assert report.errors == []
    release = [f for f in report.warnings if "credentials:" in f.message]
    assert [(f.rule, "ANY credential" in f.message) for f in release] == [("run-anything", True)]


def test_lint_credential_release_naming_its_credentials_is_quiet() -> None:
    report = run_lint(
        policy_of("{name: run-gh, allow: [credential.release], credentials: [github]}")
    )
    assert report.findings == []


# --- wallets: signing rules name the wallets they may use ------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        "{name: r, allow: [evm.transfer], chains: [base]}",
        "{name: r, ask: [evm.call], chains: [base]}",
        "{name: r, allow: [solana.transfer]}",
        "{name: r, allow: [evm.sign_typed_data, http.request]}",
        '{name: r, allow: ["*"], chains: [base]}',
        "{name: r, allow: [evm.sign_message], wallets: []}",
    ],
    ids=["allow-transfer", "ask-call", "solana", "mixed-with-http", "wildcard", "empty-list"],
)
def test_lint_signing_rule_without_wallets_is_error(rule: str) -> None:
    report = run_lint(policy_of(rule))
    assert [(f.rule, "wallets:" in f.message) for f in report.errors] == [("r", True)]


@pytest.mark.parametrize(
    "rule",
    [
        "{name: r, deny: [evm.transfer], recipients: ['0x" + "2" * 40 + "']}",
        "{name: r, allow: [http.request], credentials: [github]}",
        "{name: r, allow: [data.read], data: [profile]}",
    ],
    ids=["deny-every-wallet", "http", "data"],
)
def test_lint_rule_that_signs_nothing_or_denies_needs_no_wallets(rule: str) -> None:
    assert run_lint(policy_of(rule)).errors == []


def test_parse_policy_wallets_wildcard_is_refused() -> None:
    err = parse_error(policy_of('{name: r, allow: [evm.transfer], wallets: ["*"]}'))
    assert "no wildcard" in err.what
    assert "rule 'r'" in err.what


def test_lint_named_wallet_missing_from_the_vault_is_warning() -> None:
    text = policy_of("{name: r, allow: [evm.sign_message], wallets: [main, typo], chains: [base]}")
    report = lint(parse_policy(text), REGISTRY, now=NOW, wallets=frozenset({"main", "other"}))
    assert report.errors == []
    assert [
        (f.rule, "wallet 'typo' is not in this vault" in f.message) for f in report.warnings
    ] == [("r", True)]


def test_lint_without_the_vaults_wallets_does_not_guess() -> None:
    report = run_lint(
        policy_of("{name: r, allow: [evm.sign_message], wallets: [typo], chains: [base]}")
    )
    assert report.findings == []


def test_lint_wallets_on_a_rule_that_signs_nothing_is_warning() -> None:
    report = run_lint(
        policy_of("{name: r, allow: [http.request], wallets: [main], credentials: [github]}")
    )
    assert [(f.rule, "never matches" in f.message) for f in report.warnings] == [("r", True)]


def test_lint_deny_for_another_wallet_does_not_shadow() -> None:
    report = run_lint(
        policy_of(
            '{name: pay, allow: [evm.transfer], wallets: [main], max_per_tx: {ETH: "1"}}',
            "{name: stop-hot, deny: [evm.transfer], wallets: [hot]}",
        )
    )
    assert report.findings == []


def test_lint_deny_for_the_same_wallets_shadows() -> None:
    report = run_lint(
        policy_of(
            '{name: pay, allow: [evm.transfer], wallets: [main], max_per_tx: {ETH: "1"}}',
            "{name: stop, deny: [evm.transfer], wallets: [hot, main]}",
        )
    )
    assert [(f.rule, "'stop'" in f.message) for f in report.warnings] == [("pay", True)]


def test_lint_ask_rule_naming_no_wallet_shadows_no_signing_rule() -> None:
    report = run_lint(
        policy_of(
            '{name: pay, allow: [evm.transfer], wallets: [main], max_per_tx: {ETH: "1"}}',
            "{name: review, ask: [evm.transfer]}",
        )
    )
    assert [f.rule for f in report.errors] == ["review"]
    assert [f.message for f in report.warnings if "shadowed" in f.message] == []


# --- primary_types (typed data) -------------------------------------------------------------

USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"


def test_parse_policy_primary_types_kept_exactly() -> None:
    policy = parse_policy(
        policy_of(
            "{name: t, allow: [evm.sign_typed_data], wallets: [main], "
            "primary_types: [Mail, CancelAuthorization]}"
        )
    )
    assert policy.rules[0].primary_types == ["Mail", "CancelAuthorization"]


def test_lint_primary_types_on_actions_never_from_typed_data_is_warning() -> None:
    report = run_lint(
        policy_of("{name: t, allow: [evm.sign_message], wallets: [main], primary_types: [Mail]}")
    )
    assert any("primary_types only matches typed-data" in f.message for f in report.warnings)


def test_lint_typed_data_for_a_token_contract_without_primary_types_is_warning() -> None:
    report = run_lint(
        policy_of(
            f"{{name: t, allow: [evm.sign_typed_data], wallets: [main], "
            f'contracts: ["{USDC_BASE}"]}}'
        )
    )
    assert [f.message for f in report.warnings if f.rule == "t"] == [
        f"typed data for the token contract {USDC_BASE} is refused unless the rule also names "
        "the message types it allows (primary_types: [...])"
    ]


def test_lint_typed_data_rule_naming_its_types_and_token_is_quiet() -> None:
    report = run_lint(
        policy_of(
            f"{{name: t, allow: [evm.sign_typed_data], wallets: [main], "
            f"primary_types: [CancelAuthorization], "
            f'contracts: ["{USDC_BASE}"]}}'
        )
    )
    assert report.findings == []


def test_lint_primary_types_narrow_a_rule_so_a_broader_deny_still_shadows_it() -> None:
    report = run_lint(
        policy_of(
            "{name: only-mail, allow: [evm.sign_typed_data], wallets: [main], "
            "primary_types: [Mail]}",
            "{name: no-typed, deny: [evm.sign_typed_data]}",
        )
    )
    assert any("shadowed by rule 'no-typed'" in f.message for f in report.warnings)
    narrow = run_lint(
        policy_of(
            "{name: all-typed, allow: [evm.sign_typed_data], wallets: [main], chains: [base]}",
            "{name: no-mail, deny: [evm.sign_typed_data], primary_types: [Mail]}",
        )
    )
    assert not any("shadowed" in f.message for f in narrow.warnings)


@pytest.mark.parametrize(
    "action", ["solana.approve", "solana.set_authority", "solana.close_account"]
)
def test_lint_solana_value_move_actions_are_known(action: str) -> None:
    report = run_lint(
        policy_of(
            f"{{name: v, allow: [{action}], wallets: [sol], chains: [solana], "
            "when: {unlimited: false}}"
        )
    )
    assert report.errors == []


def test_the_shipped_example_has_no_expiry_and_no_weekday_deny_switched_on() -> None:
    shipped = parse_policy(example_text(optional=False))
    assert shipped.expires is None
    assert not [r.name for r in shipped.rules if r.outside_hours is not None]
    report = run_lint(example_text(optional=False))
    assert (report.errors, report.warnings) == ([], [])
    # Switched on as the file says, they are what they claim to be.
    full = parse_policy(example_text())
    assert full.expires is not None and full.rules[-1].name == "business-hours-only"
