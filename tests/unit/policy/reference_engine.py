"""The decision engine as it was before policies were compiled (src/keysafe/policy/compiled.py),
kept as the oracle test_engine_compiled.py compares the engine with, decision by decision. It
judges the policy as written on every call: slow, and simple to read. Change it only together
with a deliberate change of the engine's semantics.

Its original docstring follows.

The decision: allow, deny(reason, rule) or ask(approval), with the trace that explains it.

Rules this module enforces (issue "Agents, policies and budgets"):
- A revoked, paused or globally paused agent, a missing or expired policy: deny.
- Deny overrides ask, ask overrides allow; a request no rule allows is denied.
- A rule that covers the action but cannot be evaluated (unknown chain or asset, an amount that
  does not fit the asset, a URL that cannot be parsed) denies, on the allow and the ask axis.
- Every allow/ask rule that matches must hold: its per-transaction cap and its windows. A rule's
  `approve_above` turns an allow into an ask.
- The result does not depend on the order of rules in the file: when several rules could be
  named, the one with the smallest name is.
- A network fee over the chain's ceiling (`ChainInfo.fee_ceiling`) denies (FEE_TOO_HIGH), before
  any rule: the fee is paid even when the transaction fails.
- The fee is spent in the chain's native asset: when the request moves the native asset, its
  caps, windows and `approve_above` see value + fee; otherwise the fee is a second amount in the
  native asset, judged by whatever the rule sets for that asset (a token transfer under a rule
  with an ETH window still charges the window its fee).
- Typed data whose verifying contract is a registered token (on any chain) cannot be judged as
  harmless text: an allow/ask rule covers it only if it names the primary type
  (`primary_types`) and the contract (`contracts`).

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
    decimal_text,
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
    left: str  # before this request
    ok: bool
    after: str = ""  # left once this request is booked (0 when it does not fit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "window": self.window,
            "kind": self.kind,
            "asset": self.asset,
            "limit": self.limit,
            "used": self.used,
            "requested": self.requested,
            "left": self.left,
            "after": self.after,
            "ok": self.ok,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    rule: str | None
    code: str | None
    reason: str
    matched: tuple[str, ...] = ()
    windows: tuple[WindowState, ...] = ()
    charges: tuple[Charge, ...] = field(default=())
    next_step: str | None = None  # what the agent or owner can do about a deny, when specific

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
class _Spend:
    """One asset the request spends: `units` in base units, of which `fee_units` is network fee."""

    asset: AssetInfo
    units: int
    unlimited: bool = False
    fee_units: int = 0

    def text(self) -> str:
        sym = self.asset.symbol
        if self.unlimited:
            return f"an unlimited amount of {sym}"
        total = from_base_units(self.units, self.asset.decimals)
        if not self.fee_units:
            return f"{total} {sym}"
        fee = from_base_units(self.fee_units, self.asset.decimals)
        if self.fee_units == self.units:
            return f"up to {fee} {sym} in network fees"
        value = from_base_units(self.units - self.fee_units, self.asset.decimals)
        return f"{total} {sym} ({value} {sym} + up to {fee} {sym} network fee)"


@dataclass(frozen=True, slots=True)
class _Resolved:
    intent: Intent
    chain: ChainInfo | None
    asset: AssetInfo | None
    units: int | None  # None when no amount, or unlimited
    unlimited: bool
    when: datetime
    fee: Decimal | None  # the most the network fee can cost, native units
    spends: tuple[_Spend, ...]  # what caps and windows are charged, per asset


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
    spends: list[_Spend] = []
    if asset is not None:
        spends.append(_Spend(asset, units or 0, unlimited))
    fee = None
    if intent.fee is not None:
        if chain is None:
            return _deny("UNEVALUABLE", "The request names a network fee but no chain.")
        try:
            native = registry.native_asset(chain)
            fee = parse_decimal(intent.fee)
            fee_units = to_base_units(fee, native.decimals)
        except (UnknownName, ValueError) as exc:
            return _deny("UNEVALUABLE", f"The network fee {exc}, so it cannot be judged.")
        if fee_units and spends and spends[0].asset == native:
            spends[0] = _Spend(native, spends[0].units + fee_units, unlimited, fee_units)
        elif fee_units:
            spends.append(_Spend(native, fee_units, False, fee_units))
    return _Resolved(intent, chain, asset, units, unlimited, intent.time or now, fee, tuple(spends))


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
    if rule.primary_types is not None and i.primary_type not in rule.primary_types:
        return False
    if rule.message_matches is not None and (
        i.message is None or re.search(rule.message_matches, i.message) is None
    ):
        return False
    if rule.when is not None and rule.when.unlimited not in (None, r.unlimited):
        return False
    return not (rule.outside_hours is not None and rule.outside_hours.contains(r.when))


def _cap_units(caps: dict[str, Decimal] | None, asset: AssetInfo) -> int | None:
    """A rule's cap (or threshold, or window limit) for `asset`, in base units (None: none)."""
    if not caps:
        return None
    for sym, cap in caps.items():
        if sym.upper() == asset.symbol.upper():
            try:
                return to_base_units(cap, asset.decimals)
            except ValueError:
                raise Unevaluable(f"its cap for {sym} is finer than the asset's unit") from None
    return None


def _fmt(units: int, asset: AssetInfo) -> str:
    return from_base_units(units, asset.decimals)


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


def _what(r: _Resolved) -> str:
    if not r.spends:
        return "this request"
    return " and ".join(s.text() for s in r.spends)


def _chain_label(chain: ChainInfo) -> str:
    return chain.name.replace("-", " ").title()


def _fee_too_high(r: _Resolved) -> Decision | None:
    """The chain's fee ceiling: the one place a fee is refused whatever the rules say."""
    if r.fee is None or r.chain is None or r.fee <= r.chain.fee_ceiling:
        return None
    ceiling, native = decimal_text(r.chain.fee_ceiling), r.chain.native
    return _deny(
        "FEE_TOO_HIGH",
        f"The network fee of this request can reach {decimal_text(r.fee)} {native}, over the "
        f"{ceiling} {native} ceiling per transaction on {_chain_label(r.chain)}. "
        "Nothing was signed.",
        next_step=f"lower the fee to at most {ceiling} {native} (EVM: gas × maxFeePerGas or "
        "gasPrice; Solana: the priority fee); if such fees are expected, the owner raises the "
        f"ceiling with `keysafe chain add {r.chain.name} … --max-fee AMOUNT`.",
    )


def _typed_data_asset(intent: Intent, registry: Registry) -> AssetInfo | None:
    """The registered token an undecoded typed-data request would be signed for, if any."""
    if intent.action != "evm.sign_typed_data" or not intent.contract:
        return None
    return registry.asset_contract(intent.contract)


def _names_typed_data(rule: Rule) -> bool:
    # Scope matching already held the request to these lists; here they must exist at all.
    return rule.primary_types is not None and rule.contracts is not None


def status_refusal(agent: AgentState) -> Decision | None:
    """The owner's brakes, judged before anything else (the gate asks this before it even looks
    up an idempotency key, so a paused agent cannot collect stored results either)."""
    if agent.status == "revoked":
        return _deny("AGENT_REVOKED", f"Agent '{agent.name}' is revoked; it can do nothing.")
    if agent.status == "paused":
        return _deny(
            "AGENT_PAUSED", f"Agent '{agent.name}' is paused by the owner; nothing was signed."
        )
    if agent.paused_all:
        return _deny("PAUSED_ALL", "The owner paused every agent (pause-all); nothing was signed.")
    return None


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
    stopped = status_refusal(agent)
    if stopped is not None:
        return stopped
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
    too_high = _fee_too_high(r)
    if too_high is not None:
        return too_high

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
                f"Rule '{rule.name}' cannot be evaluated for this request: {exc}. "
                "Nothing was signed.",
                rule.name,
            )
    names = tuple(m.name for m in matched)

    denies = [m for m in matched if m.verb == "deny"]
    if denies:
        d = denies[0]
        return _deny(
            "POLICY_DENIED", f"Rule '{d.name}' denies {intent.action} here.", d.name, matched=names
        )
    token = _typed_data_asset(intent, registry)
    if token is not None:
        unnamed = [m for m in matched if not _names_typed_data(m)]
        matched = [m for m in matched if _names_typed_data(m)]
        if unnamed and not matched:
            kind = (intent.primary_type or "unnamed")[:100]
            return _deny(
                "TYPED_DATA_ON_ASSET",
                f'This asks to sign "{kind}" typed data for the {token.symbol} token contract '
                f"{intent.contract} ({token.chain}). keysafe cannot tell what such a message "
                f"does to the token, and rule '{unnamed[0].name}' does not name that type and "
                "contract. Nothing was signed.",
                unnamed[0].name,
                matched=names,
                next_step=f"if this message is expected, the owner allows it with a rule naming "
                f"primary_types: [{kind}] and contracts: [{intent.contract}].",
            )
        names = tuple(m.name for m in matched)

    windows: list[WindowState] = []
    charges: list[Charge] = []
    violation: Decision | None = None
    asks: list[str] = []
    allows: list[str] = []
    for rule in (m for m in matched if m.verb in ("allow", "ask")):
        (allows if rule.verb == "allow" else asks).append(rule.name)
        try:
            violation = _judge_rule(
                agent, rule, r, usage, registry, when, windows, charges, asks, violation
            )
        except Unevaluable as exc:
            return _deny(
                "UNEVALUABLE", f"Rule '{rule.name}' cannot be evaluated: {exc}.", rule.name
            )
    if violation is not None:
        return Decision(
            "deny", violation.rule, violation.code, violation.reason, names, tuple(windows)
        )
    pending_asks = [] if approved else sorted(set(asks) - granted)
    if pending_asks:
        first = pending_asks[0]
        return Decision(
            "ask",
            first,
            "APPROVAL_REQUIRED",
            f"Rule '{first}' needs the owner's approval for {intent.action} of {_what(r)}.",
            names,
            tuple(windows),
            tuple(charges),
        )
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


def _judge_rule(
    agent: AgentState,
    rule: Rule,
    r: _Resolved,
    usage: Usage,
    registry: Registry,
    when: datetime,
    windows: list[WindowState],
    charges: list[Charge],
    asks: list[str],
    violation: Decision | None,
) -> Decision | None:
    """One matched allow/ask rule's caps, thresholds and windows, for every asset the request
    spends (the fee included). Appends to `windows`, `charges` and `asks`; returns the first
    violation (the one passed in, if there was one already)."""
    for spend in r.spends:
        cap = _cap_units(rule.max_per_tx, spend.asset)
        threshold = _cap_units(rule.approve_above, spend.asset)
        sym = spend.asset.symbol
        if cap is not None and (spend.unlimited or spend.units > cap) and violation is None:
            violation = _deny(
                "OVER_PER_TX_LIMIT",
                f"Agent '{agent.name}' may send at most {_fmt(cap, spend.asset)} {sym} "
                f"per transaction (rule '{rule.name}'); this one sends {spend.text()}. "
                "Nothing was signed.",
                rule.name,
            )
        if threshold is not None and (spend.unlimited or spend.units > threshold):
            asks.append(rule.name)
    if not rule.limits:
        return violation
    if r.spends:
        charges.extend(Charge(rule.name, s.asset.identity, s.units) for s in r.spends)
    else:
        charges.append(Charge(rule.name, None, 0))  # counted by max_count windows
    for limit in rule.limits:
        since = when - timedelta(seconds=limit.seconds)
        used_by_key, used_count = usage(rule.name, since)
        if limit.max_count is not None:
            ok = used_count + 1 <= limit.max_count
            windows.append(
                WindowState(
                    rule.name,
                    limit.window,
                    "count",
                    None,
                    str(limit.max_count),
                    str(used_count),
                    "1",
                    str(max(limit.max_count - used_count, 0)),
                    ok,
                    str(max(limit.max_count - used_count - 1, 0)),
                )
            )
            if not ok and violation is None:
                violation = _deny(
                    "COUNT_LIMIT_EXCEEDED",
                    f"Rule '{rule.name}' allows at most {limit.max_count} actions per "
                    f"{limit.window}; {used_count} already used. Nothing was signed.",
                    rule.name,
                )
        for spend in r.spends:
            lim = _cap_units(limit.max, spend.asset)
            sym = spend.asset.symbol
            summed = window_spend(used_by_key, sym, registry) if lim is not None else None
            if lim is None or summed is None:
                continue
            # Cap, request and usage in base units of the finest decimals among the assets
            # that share this symbol, so each row counts in its own asset's units.
            used, scale = summed
            up = 10 ** (scale - spend.asset.decimals)
            cap, req = lim * up, spend.units * up
            ok = not spend.unlimited and used + req <= cap
            left = from_base_units(max(cap - used, 0), scale)
            after = from_base_units(max(cap - used - req, 0) if ok else 0, scale)
            windows.append(
                WindowState(
                    rule.name,
                    limit.window,
                    "amount",
                    sym,
                    from_base_units(cap, scale),
                    from_base_units(used, scale),
                    "unlimited" if spend.unlimited else from_base_units(req, scale),
                    left,
                    ok,
                    after,
                )
            )
            if not ok and violation is None:
                violation = _deny(
                    "BUDGET_EXCEEDED",
                    f"Over the {limit.window} {sym} limit of rule '{rule.name}': "
                    f"{left} {sym} left, this request is {spend.text()}. Nothing was signed.",
                    rule.name,
                )
    return violation
