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

`decide` is a sequence of named steps, each answering one question and either returning the
decision or handing on: the owner's brakes (`status_refusal`), the policy (`_no_policy`,
`_policy_expired`), the action (`_unknown_action`), the request resolved against the registry
(_resolve.py), the fee ceiling (`_fee_too_high`), the rules that cover it (`_matching_rules`,
_match.py), a deny among them (`_denied_by_rule`), token typed data (`_typed_data_on_asset`), the
limits of every matched rule (`_judge_limits`, limits.py), and the answer they add up to
(`_verdict`). The reason codes are `Reason` (reasons.py).

Speed (issue "Speed"): each policy is compiled once against the registry (compiled.py: rules
indexed by action, names resolved, caps in base units, cached per policy and registry content),
so a decision does set lookups and integer compares. The explanation is built where it is read:
a decision keeps its budget windows as numbers, and `Decision.windows` formats them
(WindowState) on first access, so an allow the gate only books pays for no strings. The
semantics are those of the engine as it was before compiling, kept as the oracle the tests
compare against (tests/unit/policy/reference_engine.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, Final, Literal, overload

from keysafe.policy._match import Unevaluable, scope_matches
from keysafe.policy._resolve import Refused, Resolved, resolve
from keysafe.policy.compiled import CompiledPolicy, CompiledRule, compile_policy
from keysafe.policy.intent import Intent
from keysafe.policy.limits import Charge, Tally, Trace, Usage, WindowRow, judge_rule
from keysafe.policy.reasons import Reason
from keysafe.policy.registry import ChainInfo, Registry, decimal_text, from_base_units
from keysafe.policy.rules import ACTIONS, SIGNING_ACTIONS, Policy

Outcome = Literal["allow", "ask", "deny"]
_NAME: Final = attrgetter("name")  # a rule's name, without a Python frame per rule


@dataclass(frozen=True, slots=True)
class AgentState:
    name: str
    status: Literal["active", "paused", "revoked"]
    paused_all: bool = False


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


def _window_state(row: WindowRow) -> WindowState:
    rule, window, symbol, limit, used, requested, unlimited, scale, ok = row
    after = max(limit - used - requested, 0) if ok else 0
    return WindowState(
        rule,
        window,
        "count" if symbol is None else "amount",
        symbol,
        from_base_units(limit, scale),
        from_base_units(used, scale),
        "unlimited" if unlimited else from_base_units(requested, scale),
        from_base_units(max(limit - used, 0), scale),
        ok,
        from_base_units(after, scale),
    )


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
        value: tuple[WindowState, ...] | Trace = obj.__dict__["_windows"]
        if not isinstance(value, Trace):
            return value  # as the constructor was given it
        built = tuple(map(_window_state, value))
        obj.__dict__["_windows"] = built  # the same value whichever thread builds it first
        return built

    def __set__(self, obj: Decision, value: tuple[WindowState, ...] | Trace) -> None:
        obj.__dict__["_windows"] = value


def verdict_fields(outcome: str, rule: str | None, code: str | None, reason: str) -> dict[str, Any]:
    """A decision's verdict as every answer shows it (a decision's, a dry run's)."""
    return {"decision": outcome, "rule": rule, "code": code, "reason": reason}


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    rule: str | None
    code: Reason | None
    reason: str
    matched: tuple[str, ...] = ()
    windows: _Windows = _Windows()
    charges: tuple[Charge, ...] = field(default=())
    next_step: str | None = None  # what the agent or owner can do about a deny, when specific

    def to_dict(self) -> dict[str, Any]:
        return {
            **verdict_fields(self.outcome, self.rule, self.code, self.reason),
            "matched": list(self.matched),
            "windows": [w.to_dict() for w in self.windows],
        }


def _decision(
    outcome: Outcome,
    rule: str | None,
    code: Reason | None,
    reason: str,
    matched: tuple[str, ...],
    windows: Trace | tuple[()],
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
            "outcome": outcome,
            "rule": rule,
            "code": code,
            "reason": reason,
            "matched": matched,
            "_windows": windows,
            "charges": charges,
            "next_step": None,
        },
    )
    return made


def _deny(code: Reason, reason: str, rule: str | None = None, **kw: Any) -> Decision:
    return Decision("deny", rule, code, reason, **kw)


def _what(r: Resolved) -> str:
    if not r.spends:
        return "this request"
    return " and ".join(s.text() for s in r.spends)


def _chain_label(chain: ChainInfo) -> str:
    return chain.name.replace("-", " ").title()


def status_refusal(agent: AgentState) -> Decision | None:
    """The owner's brakes, judged before anything else (the gate asks this before it even looks
    up an idempotency key, so a paused agent cannot collect stored results either)."""
    if agent.status == "revoked":
        return _deny(Reason.AGENT_REVOKED, f"Agent '{agent.name}' is revoked; it can do nothing.")
    if agent.status == "paused":
        return _deny(
            Reason.AGENT_PAUSED,
            f"Agent '{agent.name}' is paused by the owner; nothing was signed.",
        )
    if agent.paused_all:
        return _deny(
            Reason.PAUSED_ALL, "The owner paused every agent (pause-all); nothing was signed."
        )
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

    The policy is compiled against the registry once and cached (compiled.compile_policy).
    Each step returns the decision when it settles the request (module docstring: the order)."""
    if agent.status != "active" or agent.paused_all:
        stopped = status_refusal(agent)
        if stopped is not None:
            return stopped
    if policy is None:
        return _no_policy(agent)
    compiled = compile_policy(policy, registry)
    when = intent.time or now  # a dry run may ask "at that moment"; real requests carry no time
    if compiled.expires is not None:
        expired = _policy_expired(compiled, agent, now, when)
        if expired is not None:
            return expired
    if intent.action not in ACTIONS:
        return _unknown_action(intent)
    try:
        r = resolve(intent, compiled.registry, when)
    except Refused as exc:
        return _deny(exc.code, exc.reason)
    if r.fee is not None:
        too_high = _fee_too_high(r, registry)
        if too_high is not None:
            return too_high
    matched = _matching_rules(compiled, r)
    if isinstance(matched, Decision):
        return matched
    names = tuple(map(_NAME, matched))
    denied = _denied_by_rule(matched, intent, names)
    if denied is not None:
        return denied
    if intent.action == "evm.sign_typed_data" and intent.contract:
        kept = _typed_data_on_asset(compiled, intent, matched, names)
        if isinstance(kept, Decision):
            return kept
        matched, names = kept
    tally = _judge_limits(agent, matched, r, usage)
    if isinstance(tally, Decision):
        return tally
    return _verdict(tally, agent, r, names, approved=approved, granted=granted)


def _no_policy(agent: AgentState) -> Decision:
    """An agent without a policy may do nothing."""
    return _deny(Reason.NO_POLICY, f"Agent '{agent.name}' has no policy, so everything is denied.")


def _policy_expired(
    compiled: CompiledPolicy, agent: AgentState, now: datetime, when: datetime
) -> Decision | None:
    """Past the policy's `expires`, everything is denied. Expiry is the agent's real state: a
    dry run dated before it (`when`) does not revive the policy."""
    expires = compiled.expires  # policy.expires in UTC: compares without a zone lookup
    if expires is None or not (now >= expires or (when is not now and when >= expires)):
        return None
    return _deny(
        Reason.POLICY_EXPIRED,
        f"The policy of agent '{agent.name}' expired at {compiled.expires_text}; "
        "everything is denied until the owner sets a new one.",
    )


def _unknown_action(intent: Intent) -> Decision:
    """An action keysafe does not know (not in rules.ACTIONS) is denied before any rule is
    read."""
    return _deny(Reason.UNKNOWN_ACTION, f"'{intent.action[:64]}' is not an action keysafe knows.")


def _fee_too_high(r: Resolved, registry: Registry) -> Decision | None:
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
        Reason.FEE_TOO_HIGH,
        f"The network fee of this request can reach {decimal_text(r.fee)} {native}, over the "
        f"{ceiling} {native} ceiling per transaction on {_chain_label(chain)}. "
        "Nothing was signed.",
        next_step=f"lower the fee to at most {ceiling} {native} (EVM: gas × maxFeePerGas or "
        "gasPrice; Solana: the priority fee); if such fees are expected, the owner raises the "
        f"ceiling with `keysafe chain add {chain.name} … --max-fee AMOUNT`.",
    )


def _matching_rules(compiled: CompiledPolicy, r: Resolved) -> list[CompiledRule] | Decision:
    """The rules for this action whose scope covers the request, smallest name first; the
    first rule that cannot tell denies (UNEVALUABLE)."""
    matched: list[CompiledRule] = []
    for rule in compiled.by_action[r.intent.action]:  # smallest name first
        try:
            if scope_matches(rule, r):
                matched.append(rule)
        except Unevaluable as exc:
            return _deny(
                Reason.UNEVALUABLE,
                f"Rule '{rule.name}' cannot be evaluated for this request: {exc}. "
                "Nothing was signed.",
                rule.name,
            )
    return matched


def _denied_by_rule(
    matched: list[CompiledRule], intent: Intent, names: tuple[str, ...]
) -> Decision | None:
    """Deny overrides ask and allow: the first matched deny rule (by name) decides."""
    for rule in matched:
        if rule.verb == "deny":
            return _deny(
                Reason.POLICY_DENIED,
                f"Rule '{rule.name}' denies {intent.action} here.",
                rule.name,
                matched=names,
            )
    return None


def _typed_data_on_asset(
    compiled: CompiledPolicy,
    intent: Intent,
    matched: list[CompiledRule],
    names: tuple[str, ...],
) -> tuple[list[CompiledRule], tuple[str, ...]] | Decision:
    """Typed data for a registered token's contract is covered only by rules naming its primary
    type and contract: the matched rules that do, and their names (all of them, unchanged, when
    the contract is no token). Denies when rules matched but none of them names it."""
    token = compiled.registry.contracts.get((intent.contract or "").lower())
    if token is None:
        return matched, names
    unnamed = [m for m in matched if not m.names_typed_data]
    named = [m for m in matched if m.names_typed_data]
    if unnamed and not named:
        kind = (intent.primary_type or "unnamed")[:100]
        return _deny(
            Reason.TYPED_DATA_ON_ASSET,
            f'This asks to sign "{kind}" typed data for the {token.symbol} token contract '
            f"{intent.contract} ({token.chain}). keysafe cannot tell what such a message "
            f"does to the token, and rule '{unnamed[0].name}' does not name that type and "
            "contract. Nothing was signed.",
            unnamed[0].name,
            matched=names,
            next_step=f"if this message is expected, the owner allows it with a rule naming "
            f"primary_types: [{kind}] and contracts: [{intent.contract}].",
        )
    return named, tuple(m.name for m in named)


def _judge_limits(
    agent: AgentState, matched: list[CompiledRule], r: Resolved, usage: Usage
) -> Tally | Decision:
    """Every matched rule (each allows or asks: a deny returned before) judged against its caps
    and windows (limits.judge_rule); a rule whose limits cannot be judged denies."""
    tally = Tally()
    for rule in matched:
        (tally.allows if rule.verb == "allow" else tally.asks).append(rule.name)
        try:
            judge_rule(agent.name, rule, r, usage, tally)
        except Unevaluable as exc:
            return _deny(
                Reason.UNEVALUABLE, f"Rule '{rule.name}' cannot be evaluated: {exc}.", rule.name
            )
    return tally


def _verdict(
    tally: Tally,
    agent: AgentState,
    r: Resolved,
    names: tuple[str, ...],
    *,
    approved: bool,
    granted: frozenset[str],
) -> Decision:
    """What the judged rules add up to: a broken limit denies; an ask the owner has neither
    approved nor granted asks (the smallest such rule named); a matched rule allows; none
    denies (no match means deny)."""
    trace = tally.windows or ()
    if tally.violation is not None:
        v = tally.violation
        return _decision("deny", v.rule, v.code, v.reason, names, trace)
    asks, action = tally.asks, r.intent.action
    pending_asks = sorted(set(asks) - granted) if asks and not approved else []
    if pending_asks:
        first = pending_asks[0]
        return _decision(
            "ask",
            first,
            Reason.APPROVAL_REQUIRED,
            f"Rule '{first}' needs the owner's approval for {action} of {_what(r)}.",
            names,
            trace,
            tuple(tally.charges),
        )
    if tally.allows or asks:
        named = sorted(asks)[0] if asks else tally.allows[0]
        why = (
            f"Allowed by rule '{named}'."
            if not asks
            else f"Rule '{named}' asked, and the owner approved"
            + (" this request." if approved else " this kind of request for a while.")
        )
        return _decision("allow", named, None, why, names, trace, tuple(tally.charges))
    return _no_matching_rule(agent, r.intent, names)


def _no_matching_rule(agent: AgentState, intent: Intent, names: tuple[str, ...]) -> Decision:
    """No rule allows the request: denied, naming the wallet when it is a signing action."""
    source = (
        f" from wallet '{intent.wallet}'"
        if intent.wallet is not None and intent.action in SIGNING_ACTIONS
        else ""
    )
    return _deny(
        Reason.NO_MATCHING_RULE,
        f"No rule in the policy of agent '{agent.name}' allows {intent.action}{source} with "
        "these details, so it is denied (no match means deny). Nothing was signed.",
        matched=names,
    )
