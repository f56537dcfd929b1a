"""The decision: allow, deny(reason, rule) or ask(approval), with the trace that explains it.

Rules this module enforces (issue "Agents, policies and budgets"):
- A revoked, paused or globally paused agent, a missing or expired policy: deny.
- Deny overrides ask, ask overrides allow; a request no rule allows is denied.
- A rule that covers the action but cannot be evaluated (unknown chain or asset, an amount that
  does not fit the asset, a URL that cannot be parsed) denies, on the allow and the ask axis.
- Every allow/ask rule that matches must hold: its per-transaction cap and its windows. A rule's
  `approve_above` turns an allow into an ask.
- The result does not depend on the order of rules in the file: when several rules could be
  named, the one with the smallest name is.

- A rule for a signing action (evm.*, solana.*) matches only the wallets its `wallets` names; an
  allow/ask rule without `wallets` matches no wallet, so an agent signs only with wallets a rule
  names (no covering rule: NO_MATCHING_RULE). A deny rule without `wallets` applies to every
  wallet: deny-wide is the safe reading of a deny that says nothing about wallets.
- Budget windows are charged per asset identity (chain + contract/mint, or chain + native), not
  per symbol, because two tokens with one symbol may count different decimals. A window's cap
  (`max: {USDC: "10"}`) still means token units of that symbol across everything the rule
  covers: the rule's rows of every identity with that symbol are brought to the finest decimals
  among them (exact integers) and summed, so 10 USDC on base plus 10 "USDC" with 18 decimals on
  another chain is 20 USDC against the cap. Summing per identity instead would let a rule that
  spans N chains spend N times its cap (ETH on every EVM chain shares one cap, as before).

The engine is pure: usage of the budget windows comes in through `usage`, time through `now`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from keysafe.policy import urls
from keysafe.policy.intent import Intent
from keysafe.policy.registry import (
    AssetInfo,
    ChainInfo,
    Registry,
    UnknownName,
    from_base_units,
    parse_decimal,
    to_base_units,
)
from keysafe.policy.rules import ACTIONS, SIGNING_ACTIONS, Policy, Rule

Outcome = Literal["allow", "ask", "deny"]
# usage(rule_name, since) -> (live base units per ledger asset key, live action count). A key is
# an asset identity (AssetInfo.identity); rows written before identities hold a bare symbol.
Usage = Callable[[str, datetime], tuple[Mapping[str, int], int]]


@dataclass(frozen=True, slots=True)
class AgentState:
    name: str
    status: Literal["active", "paused", "revoked"]
    paused_all: bool = False


@dataclass(frozen=True, slots=True)
class Charge:
    """What an allowed action books against one rule's windows."""

    rule: str
    asset: str | None  # the asset's identity (AssetInfo.identity), never its bare symbol
    units: int


@dataclass(frozen=True, slots=True)
class WindowState:
    rule: str
    window: str
    kind: Literal["amount", "count"]
    asset: str | None
    limit: str
    used: str
    requested: str
    left: str
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "window": self.window, "kind": self.kind, "asset": self.asset,
            "limit": self.limit, "used": self.used, "requested": self.requested,
            "left": self.left, "ok": self.ok,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    rule: str | None
    code: str | None
    reason: str
    matched: tuple[str, ...] = ()
    windows: tuple[WindowState, ...] = ()
    charges: tuple[Charge, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.outcome,
            "rule": self.rule,
            "code": self.code,
            "reason": self.reason,
            "matched": list(self.matched),
            "windows": [w.to_dict() for w in self.windows],
        }


class Unevaluable(Exception):
    """A condition cannot be judged; the rule that needed it denies."""


@dataclass(frozen=True, slots=True)
class _Resolved:
    intent: Intent
    chain: ChainInfo | None
    asset: AssetInfo | None
    units: int | None  # None when no amount, or unlimited
    unlimited: bool
    when: datetime


def _deny(code: str, reason: str, rule: str | None = None, **kw: Any) -> Decision:
    return Decision("deny", rule, code, reason, **kw)


def _resolve(intent: Intent, registry: Registry, now: datetime) -> _Resolved | Decision:
    chain = asset = None
    if intent.chain is not None:
        try:
            chain = registry.chain(intent.chain)
        except UnknownName:
            return _deny(
                "UNKNOWN_CHAIN",
                f"The chain '{str(intent.chain)[:40]}' is not in the chain registry, so no rule "
                "can judge this request. Nothing was signed.",
            )
    if intent.asset is not None:
        if chain is None:
            return _deny("UNEVALUABLE", "The request names an asset but no chain.")
        try:
            asset = registry.asset(chain, intent.asset)
        except UnknownName:
            return _deny(
                "UNKNOWN_ASSET",
                f"The asset '{intent.asset[:60]}' is not known on {chain.name}, so its amount "
                "cannot be judged. Nothing was signed.",
            )
    units = None
    unlimited = intent.is_unlimited
    if intent.amount is not None and not unlimited:
        try:
            amount = parse_decimal(intent.amount)
            if asset is None:
                raise ValueError("needs an asset to be judged")
            units = to_base_units(amount, asset.decimals)
        except ValueError as exc:
            return _deny("UNEVALUABLE", f"The amount {exc}, so it cannot be judged.")
    return _Resolved(intent, chain, asset, units, unlimited, intent.time or now)


def _same_address(a: str, b: str) -> bool:
    if a[:2].lower() == "0x" and b[:2].lower() == "0x":
        return a.lower() == b.lower()
    return a == b


def _in(values: Sequence[str], item: str | None) -> bool:
    return item is not None and any(_same_address(v, item) for v in values)


def _scope_matches(rule: Rule, r: _Resolved, registry: Registry) -> bool:
    """Does the rule's scope cover this request? Raises Unevaluable when it cannot tell."""
    i = r.intent
    if rule.wallets is not None:
        if i.wallet is None or i.wallet not in rule.wallets:
            return False
    elif rule.verb != "deny" and i.action in SIGNING_ACTIONS:
        return False  # an allow/ask rule signs only with the wallets it names
    if rule.chains is not None:
        if r.chain is None:
            return False
        try:
            names = {registry.chain(c).name for c in rule.chains}
        except UnknownName as exc:
            raise Unevaluable(f"rule names an {exc}") from None
        if r.chain.name not in names:
            return False
    if rule.assets is not None:
        if r.asset is None:
            return False
        if r.asset.symbol.upper() not in {a.upper() for a in rule.assets}:
            return False
    if rule.recipients is not None and not _in(rule.recipients, i.to):
        return False
    if rule.contracts is not None and not _in(rule.contracts, i.contract):
        return False
    if rule.spenders is not None and not _in(rule.spenders, i.spender):
        return False
    if rule.selectors is not None and (i.selector or "").lower() not in {
        s.lower() for s in rule.selectors
    }:
        return False
    if rule.credentials is not None and i.credential not in rule.credentials:
        return False
    if rule.methods is not None and (i.method or "").upper() not in rule.methods:
        return False
    if rule.data is not None and i.data not in rule.data:
        return False
    if rule.urls is not None:
        if i.url is None:
            return False
        try:
            if not any(urls.url_matches(p, i.url) for p in rule.urls):
                return False
        except urls.BadUrl as exc:
            raise Unevaluable(f"the URL cannot be judged ({exc})") from None
    if rule.message_matches is not None and (
        i.message is None or re.search(rule.message_matches, i.message) is None
    ):
        return False
    if rule.when is not None and rule.when.unlimited not in (None, r.unlimited):
        return False
    return not (rule.outside_hours is not None and rule.outside_hours.contains(r.when))


def _cap_units(rule: Rule, caps: dict[str, Decimal] | None, r: _Resolved) -> int | None:
    """The rule's cap for this request's asset, in base units (None: no cap for it)."""
    if not caps or r.asset is None:
        return None
    for sym, cap in caps.items():
        if sym.upper() == r.asset.symbol.upper():
            try:
                return to_base_units(cap, r.asset.decimals)
            except ValueError:
                raise Unevaluable(f"its cap for {sym} is finer than the asset's unit") from None
    return None


def window_spend(
    units_by_key: Mapping[str, int], symbol: str, registry: Registry
) -> tuple[int, int] | None:
    """A window's spend of `symbol`: (used, decimals), summed over every asset identity with
    that symbol in base units of the finest decimals among them, so each row is converted with
    its own asset's decimals and the sum is exact. None when no asset has the symbol.

    A row of an identity the registry no longer knows is not counted (its decimals are
    unknown). A row keyed by a bare symbol (written before identities) is read with the
    coarsest decimals of that symbol: the largest amount it could have been.
    """
    peers = registry.same_symbol(symbol)
    if not peers:
        return None
    scale = max(a.decimals for a in peers)
    decimals = {a.identity: a.decimals for a in peers}
    coarsest = min(decimals.values())
    used = 0
    for key, units in units_by_key.items():
        d = decimals.get(key)
        if d is None and ":" not in key and key.upper() == symbol.upper():
            d = coarsest
        if d is not None:
            used += units * 10 ** (scale - d)
    return used, scale


def _fmt(units: int, r: _Resolved) -> str:
    return from_base_units(units, r.asset.decimals) if r.asset else str(units)


def _what(r: _Resolved) -> str:
    if r.asset is None:
        return "this request"
    amount = "an unlimited amount" if r.unlimited else f"{_fmt(r.units or 0, r)} {r.asset.symbol}"
    return amount


def decide(
    policy: Policy | None,
    agent: AgentState,
    intent: Intent,
    *,
    registry: Registry,
    usage: Usage,
    now: datetime,
    approved: bool = False,
    granted: frozenset[str] = frozenset(),
) -> Decision:
    """Decide. `approved`: the owner approved this exact request, so asks are satisfied (limits
    and denies still hold). `granted`: rules the owner granted this agent for a while."""
    if agent.status == "revoked":
        return _deny("AGENT_REVOKED", f"Agent '{agent.name}' is revoked; it can do nothing.")
    if agent.status == "paused":
        return _deny(
            "AGENT_PAUSED", f"Agent '{agent.name}' is paused by the owner; nothing was signed."
        )
    if agent.paused_all:
        return _deny("PAUSED_ALL", "The owner paused every agent (pause-all); nothing was signed.")
    if policy is None:
        return _deny("NO_POLICY", f"Agent '{agent.name}' has no policy, so everything is denied.")
    when = intent.time or now  # a dry run may ask "at that moment"; real requests carry no time
    # Expiry is the agent's real state: a dry run dated before it does not revive the policy.
    if policy.expires is not None and (now >= policy.expires or when >= policy.expires):
        return _deny(
            "POLICY_EXPIRED",
            f"The policy of agent '{agent.name}' expired at {policy.expires.isoformat()}; "
            "everything is denied until the owner sets a new one.",
        )
    if intent.action not in ACTIONS:
        return _deny("UNKNOWN_ACTION", f"'{intent.action[:64]}' is not an action keysafe knows.")
    resolved = _resolve(intent, registry, now)
    if isinstance(resolved, Decision):
        return resolved
    r = resolved

    covering = sorted(
        (rule for rule in policy.rules if rule.covers(intent.action)), key=lambda x: x.name
    )
    matched: list[Rule] = []
    for rule in covering:
        try:
            if _scope_matches(rule, r, registry):
                matched.append(rule)
        except Unevaluable as exc:
            return _deny(
                "UNEVALUABLE",
                f"Rule '{rule.name}' cannot be evaluated for this request: {exc}. Nothing was signed.",
                rule.name,
            )
    names = tuple(m.name for m in matched)

    denies = [m for m in matched if m.verb == "deny"]
    if denies:
        d = denies[0]
        return _deny(
            "POLICY_DENIED", f"Rule '{d.name}' denies {intent.action} here.", d.name, matched=names
        )

    windows: list[WindowState] = []
    charges: list[Charge] = []
    violation: Decision | None = None
    asks: list[str] = []
    allows: list[str] = []
    for rule in (m for m in matched if m.verb in ("allow", "ask")):
        (allows if rule.verb == "allow" else asks).append(rule.name)
        try:
            cap = _cap_units(rule, rule.max_per_tx, r)
            threshold = _cap_units(rule, rule.approve_above, r)
        except Unevaluable as exc:
            return _deny(
                "UNEVALUABLE", f"Rule '{rule.name}' cannot be evaluated: {exc}.", rule.name
            )
        if cap is not None and (r.unlimited or (r.units or 0) > cap) and violation is None:
            violation = _deny(
                "OVER_PER_TX_LIMIT",
                f"Agent '{agent.name}' may send at most {_fmt(cap, r)} {r.asset.symbol if r.asset else ''} "
                f"per transaction (rule '{rule.name}'); this one sends {_what(r)}. Nothing was signed.",
                rule.name,
            )
        if threshold is not None and (r.unlimited or (r.units or 0) > threshold):
            asks.append(rule.name)
        if rule.limits:
            charges.append(Charge(rule.name, r.asset.identity if r.asset else None, r.units or 0))
            for limit in rule.limits:
                since = when - timedelta(seconds=limit.seconds)
                used_by_key, used_count = usage(rule.name, since)
                if limit.max_count is not None:
                    ok = used_count + 1 <= limit.max_count
                    windows.append(WindowState(
                        rule.name, limit.window, "count", None, str(limit.max_count),
                        str(used_count), "1", str(max(limit.max_count - used_count, 0)), ok,
                    ))  # fmt: skip
                    if not ok and violation is None:
                        violation = _deny(
                            "RATE_LIMITED",
                            f"Rule '{rule.name}' allows at most {limit.max_count} actions per "
                            f"{limit.window}; {used_count} already used. Nothing was signed.",
                            rule.name,
                        )
                lim = _cap_units(rule, limit.max, r)
                spend = (
                    window_spend(used_by_key, r.asset.symbol, registry)
                    if lim is not None and r.asset is not None
                    else None
                )
                if lim is not None and r.asset is not None and spend is not None:
                    # Cap, request and usage in base units of the finest same-symbol decimals.
                    used, scale = spend
                    up = 10 ** (scale - r.asset.decimals)
                    lim, req = lim * up, (r.units or 0) * up
                    ok = not r.unlimited and used + req <= lim
                    left = from_base_units(max(lim - used, 0), scale)
                    windows.append(WindowState(
                        rule.name, limit.window, "amount", r.asset.symbol,
                        from_base_units(lim, scale), from_base_units(used, scale),
                        "unlimited" if r.unlimited else from_base_units(req, scale), left, ok,
                    ))  # fmt: skip
                    if not ok and violation is None:
                        violation = _deny(
                            "BUDGET_EXCEEDED",
                            f"Over the {limit.window} {r.asset.symbol} limit of rule "
                            f"'{rule.name}': {left} left, this request "
                            f"is {_what(r)}. Nothing was signed.",
                            rule.name,
                        )
    if violation is not None:
        return Decision(
            "deny", violation.rule, violation.code, violation.reason, names, tuple(windows)
        )
    pending_asks = [] if approved else sorted(set(asks) - granted)
    if pending_asks:
        first = pending_asks[0]
        return Decision(
            "ask", first, "APPROVAL_REQUIRED",
            f"Rule '{first}' needs the owner's approval for {intent.action} of {_what(r)}.",
            names, tuple(windows), tuple(charges),
        )  # fmt: skip
    if allows or asks:
        named = sorted(asks)[0] if asks else allows[0]
        why = (
            f"Allowed by rule '{named}'."
            if not asks
            else f"Rule '{named}' asked, and the owner approved"
            + (" this request." if approved else " this kind of request for a while.")
        )
        return Decision("allow", named, None, why, names, tuple(windows), tuple(charges))
    source = (
        f" from wallet '{intent.wallet}'"
        if intent.wallet is not None and intent.action in SIGNING_ACTIONS
        else ""
    )
    return _deny(
        "NO_MATCHING_RULE",
        f"No rule in the policy of agent '{agent.name}' allows {intent.action}{source} with "
        "these details, so it is denied (no match means deny). Nothing was signed.",
        matched=names,
    )
