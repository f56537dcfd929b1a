"""`keysafe policy lint`: what in a policy is wrong (errors) or probably not meant (warnings).

Errors refuse the policy: unknown actions, chains or assets; a rule that allows everything with
no condition at all; an allow/ask rule for a signing action that names no `wallets` (it would
match no wallet). Warnings: rules shadowed by an earlier-or-later broader deny/ask (order does
not matter), caps on assets the rule does not name, `approve_above` at or over `max_per_tx`, an
expired policy, `primary_types` on a rule whose actions never come from typed data, a rule
allowing typed data for a registered token's contract without naming `primary_types` (the
engine refuses such typed data unless the rule names the type and the contract), a named wallet
the vault does not hold (only when the vault's wallets are known), `wallets` on a rule that
signs nothing, a rule repeated word for word, a value-moving rule with neither a per-transaction
cap nor a window, a policy that expires within 30 days. Findings carry the line of their rule
when the YAML text is at hand (`rule_lines`).

Each finding comes from one named check: `RULE_CHECKS` run on every rule in turn, then
`POLICY_CHECKS` on the policy as a whole; the order of the tables is the order of the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

import yaml

from keysafe.policy import urls
from keysafe.policy.registry import Registry, UnknownName
from keysafe.policy.rules import ACTIONS, WILDCARD, Policy, Rule

_SCOPE_LISTS = (
    "chains",
    "assets",
    "recipients",
    "contracts",
    "spenders",
    "selectors",
    "credentials",
    "methods",
    "urls",
    "data",
    "primary_types",
)
# Actions an EIP-712 request can decode to (permits are approvals, EIP-3009 and Permit2 transfers
# are transfers, forwarded calls are calls): the only ones `primary_types` can match.
_TYPED_ACTIONS = frozenset(
    {"evm.sign_typed_data", "evm.approve", "evm.transfer", "evm.call", WILDCARD}
)
_SCOPE_OTHER = ("message_matches", "when", "outside_hours")
# Actions that can move value out of a wallet (or hand someone the power to): a rule allowing
# them with neither `max_per_tx` nor a window with `max` lets one request spend everything.
_VALUE_ACTIONS: Final = frozenset(
    {
        "evm.transfer",
        "evm.approve",
        "evm.call",
        "evm.deploy",
        "solana.transfer",
        "solana.approve",
        "solana.set_authority",
        "solana.close_account",
        "solana.call",
        WILDCARD,
    }
)
_EXPIRY_WARNING: Final = timedelta(days=30)
_GLOB: Final = frozenset("*?[]")


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # error | warning
    rule: str | None
    message: str
    line: int | None = None  # of the rule in the YAML text, when known

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"level": self.level, "rule": self.rule, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
        return out

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        rule = f"rule {self.rule!r}: " if self.rule else ""
        return f"{where}{rule}{self.message}"


@dataclass(slots=True)
class LintReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def with_lines(self, lines: dict[str, int]) -> LintReport:
        """The same findings, each with its rule's line (from `rule_lines`)."""
        return LintReport(
            [replace(f, line=lines.get(f.rule)) if f.rule else f for f in self.findings]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.errors,
            "errors": [f.to_dict() for f in self.errors],
            "warnings": [f.to_dict() for f in self.warnings],
        }


def rule_lines(text: str) -> dict[str, int]:
    """Each rule's name → the 1-based line its entry starts on; {} when the text will not say.
    Composes the YAML only (no values are constructed)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, ValueError, RecursionError):
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    lines: dict[str, int] = {}
    for key, value in root.value:
        if key.value != "rules" or not isinstance(value, yaml.SequenceNode):
            continue
        for item in value.value:
            if not isinstance(item, yaml.MappingNode):
                continue
            for k, v in item.value:
                if k.value == "name" and isinstance(v, yaml.ScalarNode):
                    lines.setdefault(str(v.value), item.start_mark.line + 1)
    return lines


def _uncapped(rule: Rule) -> bool:
    """Allows moving value with neither a per-transaction cap nor a window max (an ask rule
    puts the owner in front of every request, so it needs neither)."""
    return (
        rule.verb == "allow"
        and bool(_VALUE_ACTIONS & set(rule.actions))
        and not rule.max_per_tx
        and not any(lim.max for lim in rule.limits or [])
    )


def _unconstrained(rule: Rule) -> bool:
    return all(getattr(rule, f) is None for f in (*_SCOPE_LISTS, *_SCOPE_OTHER)) and not (
        rule.max_per_tx or rule.limits or rule.approve_above
    )


def _chain_names(values: list[str | int], registry: Registry) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(registry.chain(v).name)
        except UnknownName:
            out.append(str(v))
    return out


def _covers(broad: Rule, narrow: Rule, registry: Registry) -> bool:
    """Does `broad`'s scope include every request `narrow`'s scope includes?"""
    if WILDCARD not in broad.actions and not set(narrow.actions) <= set(broad.actions):
        return False
    if broad.wallets is not None and not set(narrow.wallets or [WILDCARD]) <= set(broad.wallets):
        return False
    if broad.wallets is None and broad.verb != "deny" and narrow.signs:
        return False  # an ask rule naming no wallet signs with none: it shadows no signing rule
    for f in _SCOPE_LISTS:
        b, n = getattr(broad, f), getattr(narrow, f)
        if b is None:
            continue
        if f == "chains" and n is not None:
            b, n = _chain_names(b, registry), _chain_names(n, registry)
        if n is None or not {str(x).lower() for x in n} <= {str(x).lower() for x in b}:
            return False
    for f in _SCOPE_OTHER:
        b, n = getattr(broad, f), getattr(narrow, f)
        if b is not None and b != n:
            return False
    return True


@dataclass(frozen=True, slots=True)
class LintContext:
    """What the checks read besides the rule: the policy, the registry and its symbols, the
    vault's wallet names (None: unknown, so no check guesses) and the time."""

    policy: Policy
    registry: Registry
    symbols: frozenset[str]
    wallets: frozenset[str] | None
    now: datetime


RuleCheck = Callable[[Rule, LintContext], Iterator[Finding]]
PolicyCheck = Callable[[LintContext], Iterator[Finding]]


def _error(rule: Rule, message: str) -> Finding:
    return Finding("error", rule.name, message)


def _warning(rule: Rule, message: str) -> Finding:
    return Finding("warning", rule.name, message)


def unknown_actions(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Error: an action keysafe does not know (a typo would otherwise never match)."""
    for action in rule.actions:
        if action != WILDCARD and action not in ACTIONS:
            known = ", ".join(sorted(ACTIONS))
            yield _error(rule, f"unknown action '{action}' (known: {known}, *)")


def unknown_chains(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Error: a chain the registry does not hold (the engine denies such a rule)."""
    for chain in rule.chains or []:
        try:
            at.registry.chain(chain)
        except UnknownName:
            yield _error(rule, f"unknown chain '{chain}' (add it with `keysafe chain add`)")


def signs_without_wallets(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Error: an allow/ask rule for a signing action that names no wallet matches none."""
    if rule.verb != "deny" and rule.signs and not rule.wallets:
        yield _error(
            rule,
            "signs with no `wallets:`, so it matches no wallet; name the wallets it may "
            "use, e.g. `wallets: [main]`",
        )


def wallets_without_signing(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Warning: `wallets` on a rule that signs nothing can never match."""
    if rule.wallets and not rule.signs:
        yield _warning(rule, "names wallets but covers no signing action: it never matches")


def wallets_not_in_vault(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Warning: a named wallet the vault does not hold (only when the wallets are known)."""
    if at.wallets is None:
        return
    for name in dict.fromkeys(rule.wallets or []):
        if name not in at.wallets:
            yield _warning(
                rule, f"wallet '{name[:64]}' is not in this vault (create it, or fix the name)"
            )


def release_of_any_credential(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Warning: credential.release allowed or asked without naming the credentials."""
    if rule.verb != "deny" and "credential.release" in rule.actions and not rule.credentials:
        yield _warning(
            rule,
            "credential.release without `credentials:` lets the agent ask for the value "
            "of ANY credential (each release still needs the owner's approval)",
        )


def unknown_assets(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Error: an asset symbol (in `assets`, a cap, a threshold or a window) the registry does
    not know."""
    named = [*(rule.assets or []), *(rule.max_per_tx or {}), *(rule.approve_above or {})]
    for lim in rule.limits or []:
        named += list(lim.max or {})
    for sym in dict.fromkeys(named):
        if sym.upper() not in at.symbols:
            yield _error(rule, f"unknown asset '{sym}' (add it with `keysafe asset add`)")


def bad_url_patterns(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Error: a URL pattern that is not a valid http(s) pattern."""
    for pattern in rule.urls or []:
        try:
            urls.url_matches(pattern, "https://example.com/")
        except urls.BadUrl:
            yield _error(rule, f"URL pattern {pattern[:80]!r} is not a valid http(s) URL pattern")


def primary_types_never_typed(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Warning: `primary_types` on a rule none of whose actions comes from typed data."""
    if rule.primary_types is not None and not _TYPED_ACTIONS & set(rule.actions):
        yield _warning(
            rule,
            "primary_types only matches typed-data requests, and none of this rule's "
            "actions comes from typed data",
        )


def token_typed_data_unnamed(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Warning: typed data allowed for a registered token's contract without `primary_types`
    (the engine refuses it unless the rule names the type and the contract)."""
    if rule.verb == "deny" or rule.primary_types is not None:
        return
    if "evm.sign_typed_data" not in rule.actions and WILDCARD not in rule.actions:
        return
    tokens = [c for c in rule.contracts or [] if at.registry.asset_contract(c) is not None]
    if tokens:
        yield _warning(
            rule,
            f"typed data for the token contract {tokens[0]} is refused unless the "
            "rule also names the message types it allows (primary_types: [...])",
        )


def allows_without_condition(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """An allow rule with no condition or limit: an error when it allows every action (the
    policy would mean nothing), a warning otherwise."""
    if rule.verb != "allow" or not _unconstrained(rule):
        return
    if WILDCARD in rule.actions:
        yield _error(
            rule, "allows every action with no condition or limit: the policy would mean nothing"
        )
    elif rule.actions:
        yield _warning(rule, f"allows {', '.join(rule.actions)} with no condition or limit")


def caps_outside_assets(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Warning: a cap or threshold for an asset the rule's `assets` leave out."""
    if rule.assets is None:
        return
    for sym in [*(rule.max_per_tx or {}), *(rule.approve_above or {})]:
        if sym.upper() not in {a.upper() for a in rule.assets}:
            yield _warning(rule, f"has a cap for {sym}, which its assets do not include")


def approve_above_never_asks(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Warning: `approve_above` at or over `max_per_tx`: the cap refuses first, so it never
    asks."""
    for sym, threshold in (rule.approve_above or {}).items():
        cap = (rule.max_per_tx or {}).get(sym)
        if cap is not None and threshold >= cap:
            yield _warning(
                rule,
                f"approve_above {sym} {threshold} is not below max_per_tx {cap}: it never asks",
            )


def glob_in_data_names(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Error: a data name with glob characters (data names are exact)."""
    for name in rule.data or []:
        if _GLOB & set(name):
            yield _error(
                rule,
                f"data names are exact, so {name[:64]!r} would never match; list the "
                "records by name",
            )


def uncapped_value(rule: Rule, at: LintContext) -> Iterator[Finding]:
    """Warning: an allow rule that moves value with neither `max_per_tx` nor a window `max`
    (an unconstrained one is reported by `allows_without_condition` instead)."""
    if _uncapped(rule) and not _unconstrained(rule):
        yield _warning(
            rule,
            "moves value with neither max_per_tx nor a window `max`: one request can "
            "spend everything the wallet holds",
        )


def repeated_rules(at: LintContext) -> Iterator[Finding]:
    """Warning: a rule that repeats an earlier one word for word (its name aside)."""
    seen: dict[str, str] = {}
    for rule in at.policy.rules:
        body = rule.model_dump_json(exclude={"name"})
        if body in seen:
            yield _warning(
                rule, f"repeats rule '{seen[body]}' word for word: one of them is redundant"
            )
        else:
            seen[body] = rule.name


def shadowed_rules(at: LintContext) -> Iterator[Finding]:
    """Warning: an allow/ask rule whose every request a broader deny (or, for an allow, a
    broader ask) already decides, wherever either stands in the file."""
    for narrow in at.policy.rules:
        if narrow.verb == "deny":
            continue
        for broad in at.policy.rules:
            if broad is narrow or broad.verb == "allow":
                continue
            if broad.verb == "ask" and narrow.verb == "ask":
                continue
            if _covers(broad, narrow, at.registry):
                effect = "is denied" if broad.verb == "deny" else "asks for approval"
                yield _warning(
                    narrow, f"is shadowed by rule '{broad.name}': everything it allows {effect}"
                )
                break


def expiry(at: LintContext) -> Iterator[Finding]:
    """Warning: the policy has expired (it denies everything), or expires within 30 days."""
    expires, now = at.policy.expires, at.now
    if expires is None:
        return
    if expires <= now:
        yield Finding(
            "warning", None, f"the policy expired at {expires.isoformat()}: it denies everything"
        )
    elif expires - now <= _EXPIRY_WARNING:
        days = max(1, (expires - now).days)
        yield Finding(
            "warning",
            None,
            f"the policy expires in {days} day{'s' if days > 1 else ''} "
            f"({expires.isoformat()}); after that it denies everything",
        )


# The checks in report order: every rule through RULE_CHECKS, then POLICY_CHECKS.
RULE_CHECKS: Final[tuple[RuleCheck, ...]] = (
    unknown_actions,
    unknown_chains,
    signs_without_wallets,
    wallets_without_signing,
    wallets_not_in_vault,
    release_of_any_credential,
    unknown_assets,
    bad_url_patterns,
    primary_types_never_typed,
    token_typed_data_unnamed,
    allows_without_condition,
    caps_outside_assets,
    approve_above_never_asks,
    glob_in_data_names,
    uncapped_value,
)
POLICY_CHECKS: Final[tuple[PolicyCheck, ...]] = (repeated_rules, shadowed_rules, expiry)


def lint(
    policy: Policy,
    registry: Registry,
    *,
    now: datetime,
    wallets: frozenset[str] | None = None,
) -> LintReport:
    """Every finding of every check (RULE_CHECKS per rule, then POLICY_CHECKS).

    Args:
        policy: the parsed policy.
        registry: the chains and assets the policy is read against.
        now: the time expiry is judged at.
        wallets: the names of the vault's wallets, when a vault is at hand (None: unknown).
    """
    at = LintContext(policy, registry, registry.symbols(), wallets, now)
    report = LintReport()
    for rule in policy.rules:
        for check in RULE_CHECKS:
            report.findings.extend(check(rule, at))
    for policy_check in POLICY_CHECKS:
        report.findings.extend(policy_check(at))
    return report
