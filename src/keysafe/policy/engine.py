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

Speed (issue "Speed"): each policy is compiled once against the registry (compiled.py: rules
indexed by action, names resolved, caps in base units, cached per policy and registry content),
so a decision does set lookups and integer compares. The explanation is built where it is read:
a decision keeps its budget windows as numbers, and `Decision.windows` formats them
(WindowState) on first access, so an allow the gate only books pays for no strings. The
semantics are those of the engine as it was before compiling, kept as the oracle the tests
compare against (tests/unit/policy/reference_engine.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal, overload

from keysafe.policy import urls
from keysafe.policy.compiled import (
    Asset,
    Chain,
    CompiledRegistry,
    CompiledRule,
    SymbolPeers,
    address_key,
    compile_policy,
)
from keysafe.policy.intent import Intent
from keysafe.policy.registry import (
    ChainInfo,
    Registry,
    decimal_text,
    from_base_units,
    parse_decimal,
    to_base_units,
)
from keysafe.policy.rules import ACTIONS, SIGNING_ACTIONS, Policy

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
            "rule": self.rule, "window": self.window, "kind": self.kind, "asset": self.asset,
            "limit": self.limit, "used": self.used, "requested": self.requested,
            "left": self.left, "after": self.after, "ok": self.ok,
        }  # fmt: skip


# A budget window as the numbers it was judged with: (rule, window, symbol (None for a count
# window), limit, used, requested, unlimited, scale, ok), amounts in base units of `scale`
# decimals (window_spend); a count window counts with scale 0. A plain tuple: one is made per
# window per decision, and Decision.windows turns them into WindowState only when read.
_Row = tuple[str, str, str | None, int, int, int, bool, int, bool]


class _Trace(list[_Row]):
    """The windows one decision judged, as numbers (only the engine makes one)."""


def _window_state(row: _Row) -> WindowState:
    rule, window, symbol, limit, used, requested, unlimited, scale, ok = row
    after = max(limit - used - requested, 0) if ok else 0
    return WindowState(
        rule, window, "count" if symbol is None else "amount", symbol,
        from_base_units(limit, scale), from_base_units(used, scale),
        "unlimited" if unlimited else from_base_units(requested, scale),
        from_base_units(max(limit - used, 0), scale), ok, from_base_units(after, scale),
    )  # fmt: skip


class _Windows:
    """`Decision.windows`: a tuple of WindowState, made from the decision's numbers (`_Row`) the
    first time it is read. Most allows are only booked, never shown, and the strings were a
    large part of a decision's cost. A dataclass field with a descriptor as its default keeps
    the constructor, `dataclasses.replace`, equality and repr as they were."""

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> tuple[WindowState, ...]: ...
    @overload
    def __get__(self, obj: Decision, owner: type | None = None) -> tuple[WindowState, ...]: ...
    def __get__(self, obj: Decision | None, owner: type | None = None) -> tuple[WindowState, ...]:
        if obj is None:
            return ()  # the field's default
        value: tuple[WindowState, ...] | _Trace = obj.__dict__["_windows"]
        if not isinstance(value, _Trace):
            return value  # as the constructor was given it
        built = tuple(map(_window_state, value))
        obj.__dict__["_windows"] = built  # the same value whichever thread builds it first
        return built

    def __set__(self, obj: Decision, value: tuple[WindowState, ...] | _Trace) -> None:
        obj.__dict__["_windows"] = value


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    rule: str | None
    code: str | None
    reason: str
    matched: tuple[str, ...] = ()
    windows: _Windows = _Windows()
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


@dataclass(slots=True)
class _Spend:
    """One asset the request spends: `units` in base units, of which `fee_units` is network fee."""

    asset: Asset
    units: int
    unlimited: bool = False
    fee_units: int = 0

    def text(self) -> str:
        sym, decimals = self.asset.symbol, self.asset.decimals
        if self.unlimited:
            return f"an unlimited amount of {sym}"
        total = from_base_units(self.units, decimals)
        if not self.fee_units:
            return f"{total} {sym}"
        fee = from_base_units(self.fee_units, decimals)
        if self.fee_units == self.units:
            return f"up to {fee} {sym} in network fees"
        value = from_base_units(self.units - self.fee_units, decimals)
        return f"{total} {sym} ({value} {sym} + up to {fee} {sym} network fee)"


@dataclass(slots=True)
class _Resolved:
    intent: Intent
    chain: Chain | None
    asset: Asset | None
    unlimited: bool
    when: datetime
    fee: Decimal | None  # the most the network fee can cost, native units
    spends: list[_Spend]  # what caps and windows are charged, per asset


def _decision(
    outcome: Outcome,
    rule: str | None,
    code: str | None,
    reason: str,
    matched: tuple[str, ...],
    windows: _Trace | tuple[()],
    charges: tuple[Charge, ...] = (),
) -> Decision:
    """`Decision(outcome, …)` for the engine's own allow, ask and budget results: the same
    object, made without the frozen dataclass's one `object.__setattr__` per field, which were a
    tenth of an allow's cost. (A test holds it equal to the constructor's.)"""
    made = object.__new__(Decision)
    object.__setattr__(
        made,
        "__dict__",
        {
            "outcome": outcome, "rule": rule, "code": code, "reason": reason,
            "matched": matched, "_windows": windows, "charges": charges, "next_step": None,
        },
    )  # fmt: skip
    return made


def _deny(code: str, reason: str, rule: str | None = None, **kw: Any) -> Decision:
    return Decision("deny", rule, code, reason, **kw)


# An amount as most requests write it: ASCII digits, and decimals after one '.'.
_PLAIN_AMOUNT: Final = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


def _base_units(text: str, decimals: int | None) -> int:
    """An amount in base units, exactly as parse_decimal and to_base_units read it (their
    errors, in their order). Plain amounts skip the Decimal round trip; anything else takes it.

    Raises:
        ValueError: not a plain decimal, no asset to judge it by, or finer than the asset's unit.
    """
    plain = _PLAIN_AMOUNT.fullmatch(text)
    if plain is None or decimals is None or decimals < 0:
        amount = parse_decimal(text)
        if decimals is None:
            raise ValueError("needs an asset to be judged")
        return to_base_units(amount, decimals)
    whole, frac = plain.groups("")
    if len(frac) > decimals:
        if frac[decimals:].strip("0"):
            raise ValueError(f"has more than {decimals} decimal places")
        frac = frac[:decimals]
    return int(whole + frac.ljust(decimals, "0"))


def _resolve(intent: Intent, reg: CompiledRegistry, when: datetime) -> _Resolved | Decision:
    chain = asset = None
    if intent.chain is not None:
        chain = reg.chain(intent.chain)
        if chain is None:
            return _deny(
                "UNKNOWN_CHAIN",
                f"The chain '{str(intent.chain)[:40]}' is not in the chain registry, so no rule "
                "can judge this request. Nothing was signed.",
            )
    if intent.asset is not None:
        if chain is None:
            return _deny("UNEVALUABLE", "The request names an asset but no chain.")
        asset = chain.asset(intent.asset)
        if asset is None:
            return _deny(
                "UNKNOWN_ASSET",
                f"The asset '{intent.asset[:60]}' is not known on {chain.name}, so its amount "
                "cannot be judged. Nothing was signed.",
            )
    units = None
    unlimited = intent.is_unlimited
    if intent.amount is not None and not unlimited:
        try:
            units = _base_units(intent.amount, None if asset is None else asset.decimals)
        except ValueError as exc:
            return _deny("UNEVALUABLE", f"The amount {exc}, so it cannot be judged.")
    spends: list[_Spend] = []
    if asset is not None:
        spends.append(_Spend(asset, units or 0, unlimited))
    fee = None
    if intent.fee is not None:
        if chain is None:
            return _deny("UNEVALUABLE", "The request names a network fee but no chain.")
        native = chain.native
        if native is None:
            return _deny(
                "UNEVALUABLE",
                f"The network fee no native asset registered for {chain.name}, so it cannot "
                "be judged.",
            )
        try:
            fee = parse_decimal(intent.fee)
            fee_units = to_base_units(fee, native.decimals)
        except ValueError as exc:
            return _deny("UNEVALUABLE", f"The network fee {exc}, so it cannot be judged.")
        if fee_units and spends and spends[0].asset is native:
            spends[0] = _Spend(native, spends[0].units + fee_units, unlimited, fee_units)
        elif fee_units:
            spends.append(_Spend(native, fee_units, False, fee_units))
    return _Resolved(intent, chain, asset, unlimited, when, fee, spends)


def _scope_matches(rule: CompiledRule, r: _Resolved) -> bool:
    """Does the rule's scope cover this request? Raises Unevaluable when it cannot tell.

    The conditions are checked in the order the engine always had: a rule that cannot be
    evaluated denies only when no earlier condition already rules it out. (Allow/ask rules
    without `wallets` never reach here for a signing action: compiled._index.)
    """
    i = r.intent
    if rule.wallets is not None and (i.wallet is None or i.wallet not in rule.wallets):
        return False
    if rule.chains is not None:
        if r.chain is None:
            return False
        if rule.chain_error is not None:
            raise Unevaluable(rule.chain_error)
        if r.chain.name not in rule.chains:
            return False
    if rule.assets is not None and (r.asset is None or r.asset.peers.upper not in rule.assets):
        return False
    if rule.recipients is not None and (i.to is None or address_key(i.to) not in rule.recipients):
        return False
    if rule.rare and not _rare_conditions_hold(rule, r):
        return False
    return rule.hours is None or not rule.hours.contains(r.when)


def _rare_conditions_hold(rule: CompiledRule, r: _Resolved) -> bool:
    """The conditions after `recipients` and before `outside_hours`, which few rules set (the
    compiled rule says whether it sets any, so most rules skip these tests)."""
    i = r.intent
    if rule.contracts is not None and (
        i.contract is None or address_key(i.contract) not in rule.contracts
    ):
        return False
    if rule.spenders is not None and (
        i.spender is None or address_key(i.spender) not in rule.spenders
    ):
        return False
    if rule.selectors is not None and (i.selector or "").lower() not in rule.selectors:
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
    if rule.message is not None and (i.message is None or rule.message.search(i.message) is None):
        return False
    return rule.unlimited is None or rule.unlimited == r.unlimited


def _fmt(units: int, asset: Asset) -> str:
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
    decimals = {a.identity: a.decimals for a in peers}
    summed = SymbolPeers(
        symbol.upper(), max(a.decimals for a in peers), decimals, min(decimals.values())
    )
    return _used(units_by_key, summed), summed.scale


def _used(units_by_key: Mapping[str, int], peers: SymbolPeers) -> int:
    """window_spend's sum, with the symbol's peers worked out beforehand (compiled.py)."""
    used = 0
    for key, units in units_by_key.items():
        d = peers.decimals.get(key)
        if d is None and ":" not in key and key.upper() == peers.upper:
            d = peers.coarsest
        if d is not None:
            used += units * 10 ** (peers.scale - d)
    return used


def _what(r: _Resolved) -> str:
    if not r.spends:
        return "this request"
    return " and ".join(s.text() for s in r.spends)


def _chain_label(chain: ChainInfo) -> str:
    return chain.name.replace("-", " ").title()


def _fee_too_high(r: _Resolved, registry: Registry) -> Decision | None:
    """The chain's fee ceiling: the one place a fee is refused whatever the rules say."""
    if r.fee is None or r.chain is None:
        return None
    # The caller's own ChainInfo: the compiled registry may come from an equal one whose ceiling
    # is written differently ("0.05" or "0.050"), and the message quotes it.
    chain = registry.chains[r.chain.index]
    if r.fee <= chain.fee_ceiling:
        return None
    ceiling, native = decimal_text(chain.fee_ceiling), chain.native
    return _deny(
        "FEE_TOO_HIGH",
        f"The network fee of this request can reach {decimal_text(r.fee)} {native}, over the "
        f"{ceiling} {native} ceiling per transaction on {_chain_label(chain)}. "
        "Nothing was signed.",
        next_step=f"lower the fee to at most {ceiling} {native} (EVM: gas × maxFeePerGas or "
        "gasPrice; Solana: the priority fee); if such fees are expected, the owner raises the "
        f"ceiling with `keysafe chain add {chain.name} … --max-fee AMOUNT`.",
    )


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
    and denies still hold). `granted`: rules the owner granted this agent for a while.

    The policy is compiled against the registry once and cached (compiled.compile_policy)."""
    if agent.status != "active" or agent.paused_all:
        stopped = status_refusal(agent)
        if stopped is not None:
            return stopped
    if policy is None:
        return _deny("NO_POLICY", f"Agent '{agent.name}' has no policy, so everything is denied.")
    compiled = compile_policy(policy, registry)
    when = intent.time or now  # a dry run may ask "at that moment"; real requests carry no time
    # Expiry is the agent's real state: a dry run dated before it does not revive the policy.
    expires = compiled.expires  # policy.expires in UTC: compares without a zone lookup
    if expires is not None and (now >= expires or (when is not now and when >= expires)):
        return _deny(
            "POLICY_EXPIRED",
            f"The policy of agent '{agent.name}' expired at {compiled.expires_text}; "
            "everything is denied until the owner sets a new one.",
        )
    if intent.action not in ACTIONS:
        return _deny("UNKNOWN_ACTION", f"'{intent.action[:64]}' is not an action keysafe knows.")
    resolved = _resolve(intent, compiled.registry, when)
    if isinstance(resolved, Decision):
        return resolved
    r = resolved
    if r.fee is not None:
        too_high = _fee_too_high(r, registry)
        if too_high is not None:
            return too_high

    matched: list[CompiledRule] = []
    matched_names: list[str] = []
    for rule in compiled.by_action[intent.action]:  # smallest name first
        try:
            if _scope_matches(rule, r):
                matched.append(rule)
                matched_names.append(rule.name)
        except Unevaluable as exc:
            return _deny(
                "UNEVALUABLE",
                f"Rule '{rule.name}' cannot be evaluated for this request: {exc}. Nothing was signed.",
                rule.name,
            )
    names = tuple(matched_names)

    for d in matched:
        if d.verb == "deny":
            return _deny(
                "POLICY_DENIED", f"Rule '{d.name}' denies {intent.action} here.", d.name,
                matched=names,
            )  # fmt: skip
    token = (
        compiled.registry.contracts.get(intent.contract.lower())
        if intent.action == "evm.sign_typed_data" and intent.contract
        else None
    )
    if token is not None:
        unnamed = [m for m in matched if not m.names_typed_data]
        matched = [m for m in matched if m.names_typed_data]
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

    windows = _Trace()
    charges: list[Charge] = []
    violation: Decision | None = None
    asks: list[str] = []
    allows: list[str] = []
    for rule in matched:  # every one allows or asks: a deny returned above
        (allows if rule.verb == "allow" else asks).append(rule.name)
        try:
            violation = _judge_rule(agent, rule, r, usage, windows, charges, asks, violation)
        except Unevaluable as exc:
            return _deny(
                "UNEVALUABLE", f"Rule '{rule.name}' cannot be evaluated: {exc}.", rule.name
            )
    trace = windows or ()
    if violation is not None:
        return _decision("deny", violation.rule, violation.code, violation.reason, names, trace)
    pending_asks = sorted(set(asks) - granted) if asks and not approved else []
    if pending_asks:
        first = pending_asks[0]
        return _decision(
            "ask", first, "APPROVAL_REQUIRED",
            f"Rule '{first}' needs the owner's approval for {intent.action} of {_what(r)}.",
            names, trace, tuple(charges),
        )  # fmt: skip
    if allows or asks:
        named = sorted(asks)[0] if asks else allows[0]
        why = (
            f"Allowed by rule '{named}'."
            if not asks
            else f"Rule '{named}' asked, and the owner approved"
            + (" this request." if approved else " this kind of request for a while.")
        )
        return _decision("allow", named, None, why, names, trace, tuple(charges))
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
    rule: CompiledRule,
    r: _Resolved,
    usage: Usage,
    windows: _Trace,
    charges: list[Charge],
    asks: list[str],
    violation: Decision | None,
) -> Decision | None:
    """One matched allow/ask rule's caps, thresholds and windows, for every asset the request
    spends (the fee included). Appends to `windows`, `charges` and `asks`; returns the first
    violation (the one passed in, if there was one already).

    Raises:
        Unevaluable: a cap the rule sets for a spent asset is finer than the asset's unit (the
            first such cap in the order the engine always read them).
    """
    name = rule.name
    for spend in r.spends:
        cap, threshold = rule.plans[spend.asset.index]
        if isinstance(cap, str):
            raise Unevaluable(cap)
        if isinstance(threshold, str):
            raise Unevaluable(threshold)
        if cap is not None and (spend.unlimited or spend.units > cap) and violation is None:
            violation = _deny(
                "OVER_PER_TX_LIMIT",
                f"Agent '{agent.name}' may send at most {_fmt(cap, spend.asset)} "
                f"{spend.asset.symbol} per transaction (rule '{name}'); this one sends "
                f"{spend.text()}. Nothing was signed.",
                name,
            )
        if threshold is not None and (spend.unlimited or spend.units > threshold):
            asks.append(name)
    if not rule.limits:
        return violation
    for spend in r.spends:
        charges.append(Charge(name, spend.asset.identity, spend.units))
    if not r.spends:
        charges.append(Charge(name, None, 0))  # counted by max_count windows
    for limit in rule.limits:
        used_by_key, used_count = usage(name, r.when - limit.span)
        if limit.max_count is not None:
            ok = used_count + 1 <= limit.max_count
            windows.append((name, limit.window, None, limit.max_count, used_count, 1, False, 0, ok))
            if not ok and violation is None:
                violation = _deny(
                    "RATE_LIMITED",
                    f"Rule '{name}' allows at most {limit.max_count} actions per "
                    f"{limit.window}; {used_count} already used. Nothing was signed.",
                    name,
                )
        if limit.caps is None:
            continue
        for spend in r.spends:
            asset = spend.asset
            cap = limit.caps[asset.index]
            if cap is None:
                continue
            if isinstance(cap, str):
                raise Unevaluable(cap)
            # Cap, request and usage in base units of the finest decimals among the assets
            # that share this symbol, so each row counts in its own asset's units.
            scale = asset.peers.scale
            used = _used(used_by_key, asset.peers) if used_by_key else 0
            req = spend.units * asset.up
            ok = not spend.unlimited and used + req <= cap
            windows.append(
                (name, limit.window, asset.symbol, cap, used, req, spend.unlimited, scale, ok)
            )
            if not ok and violation is None:
                left = from_base_units(max(cap - used, 0), scale)
                violation = _deny(
                    "BUDGET_EXCEEDED",
                    f"Over the {limit.window} {asset.symbol} limit of rule '{name}': "
                    f"{left} {asset.symbol} left, this request is {spend.text()}. "
                    "Nothing was signed.",
                    name,
                )
    return violation
