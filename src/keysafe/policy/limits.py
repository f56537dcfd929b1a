"""A matched allow/ask rule's limits judged against one request: its per-transaction caps, its
`approve_above` thresholds and its budget windows (the engine's last step before it answers).

Rules this module enforces (engine.py states them for the whole decision):
- A spend over a rule's `max_per_tx`, or an unlimited one under a cap, is refused
  (OVER_PER_TX_LIMIT); one over `approve_above` makes the rule ask.
- A window's `max_count` counts this request as one more action (COUNT_LIMIT_EXCEEDED past it);
  its `max` sums every asset identity with the symbol, in base units of the finest decimals
  among them (`window_spend`), plus this request (BUDGET_EXCEEDED past it).
- The first refusal is the one reported, in the order rules, spends and windows are read; every
  window is still judged, so the trace shows all of them.
- A rule with windows books a `Charge` per spend (one empty charge when nothing is spent, for
  its count windows); the gate reserves them before anything is signed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from keysafe.policy._match import Unevaluable
from keysafe.policy._resolve import Resolved, Spend
from keysafe.policy.compiled import Asset, Cap, CompiledLimit, CompiledRule, SymbolPeers
from keysafe.policy.reasons import Reason
from keysafe.policy.registry import Registry, from_base_units

# usage(rule_name, since) -> (live base units per ledger asset key, live action count). A key is
# an asset identity (AssetInfo.identity); rows written before identities hold a bare symbol.
Usage = Callable[[str, datetime], tuple[Mapping[str, int], int]]

# A budget window as the numbers it was judged with: (rule, window, symbol (None for a count
# window), limit, used, requested, unlimited, scale, ok), amounts in base units of `scale`
# decimals (window_spend); a count window counts with scale 0. A plain tuple: one is made per
# window per decision, and Decision.windows turns them into WindowState only when read.
WindowRow = tuple[str, str, str | None, int, int, int, bool, int, bool]


class Trace(list[WindowRow]):
    """The windows one decision judged, as numbers (only the engine makes one)."""


@dataclass(frozen=True, slots=True)
class Charge:
    """What an allowed action books against one rule's windows."""

    rule: str
    asset: str | None  # the asset's identity (AssetInfo.identity), never its bare symbol
    units: int


class Violation(NamedTuple):
    """A limit the request breaks: the deny the engine answers with."""

    code: Reason
    reason: str
    rule: str


class Tally:
    """What judging the matched rules adds up to: the windows read, the charges to book, the
    rules that allow and ask, and the first limit broken. (A plain class: one is made per
    decision, and a dataclass's default factories cost more than these four lines.)"""

    __slots__ = ("allows", "asks", "charges", "violation", "windows")

    def __init__(self) -> None:
        self.windows = Trace()
        self.charges: list[Charge] = []
        self.allows: list[str] = []  # matched allow rules, smallest name first
        self.asks: list[str] = []  # ask rules, and rules over `approve_above`
        self.violation: Violation | None = None


def judge_rule(agent: str, rule: CompiledRule, r: Resolved, usage: Usage, tally: Tally) -> None:
    """One matched allow/ask rule's caps, thresholds and windows, for every asset the request
    spends (the fee included); adds what it finds to `tally`.

    Raises:
        Unevaluable: a cap the rule sets for a spent asset is finer than the asset's unit (the
            first such cap in the order the engine always read them).
    """
    judge_per_tx(agent, rule, r, tally)
    if not rule.limits:
        return
    # Booked per spent asset identity; one empty charge when nothing is spent, so the rule's
    # count windows still count the action.
    for spend in r.spends:
        tally.charges.append(Charge(rule.name, spend.asset.identity, spend.units))
    if not r.spends:
        tally.charges.append(Charge(rule.name, None, 0))
    for limit in rule.limits:
        used_by_key, used_count = usage(rule.name, r.when - limit.span)
        if limit.max_count is not None:
            judge_count_window(rule.name, limit, limit.max_count, used_count, tally)
        if limit.caps is not None:
            judge_amount_window(rule.name, limit, limit.caps, used_by_key, r.spends, tally)


def judge_per_tx(agent: str, rule: CompiledRule, r: Resolved, tally: Tally) -> None:
    """The rule's `max_per_tx` (a violation) and `approve_above` (an ask), per spent asset.

    Raises:
        Unevaluable: the cap or threshold for a spent asset is finer than its unit.
    """
    for spend in r.spends:
        cap, threshold = rule.plans[spend.asset.index]
        if isinstance(cap, str):
            raise Unevaluable(cap)
        if isinstance(threshold, str):
            raise Unevaluable(threshold)
        if cap is not None and (spend.unlimited or spend.units > cap) and tally.violation is None:
            tally.violation = Violation(
                Reason.OVER_PER_TX_LIMIT,
                f"Agent '{agent}' may send at most {_fmt(cap, spend.asset)} "
                f"{spend.asset.symbol} per transaction (rule '{rule.name}'); this one sends "
                f"{spend.text()}. Nothing was signed.",
                rule.name,
            )
        if threshold is not None and (spend.unlimited or spend.units > threshold):
            tally.asks.append(rule.name)


def judge_count_window(
    rule: str, limit: CompiledLimit, max_count: int, used_count: int, tally: Tally
) -> None:
    """A window's `max_count`: this request is one more action."""
    ok = used_count + 1 <= max_count
    tally.windows.append((rule, limit.window, None, max_count, used_count, 1, False, 0, ok))
    if not ok and tally.violation is None:
        tally.violation = Violation(
            Reason.COUNT_LIMIT_EXCEEDED,
            f"Rule '{rule}' allows at most {max_count} actions per "
            f"{limit.window}; {used_count} already used. Nothing was signed.",
            rule,
        )


def judge_amount_window(
    rule: str,
    limit: CompiledLimit,
    caps: tuple[Cap, ...],
    used_by_key: Mapping[str, int],
    spends: list[Spend],
    tally: Tally,
) -> None:
    """A window's `max` per spent asset the window caps: what the rule's rows of that symbol
    already used, plus this request, must fit.

    Raises:
        Unevaluable: the window's cap for a spent asset is finer than its unit.
    """
    for spend in spends:
        asset = spend.asset
        cap = caps[asset.index]
        if cap is None:
            continue
        if isinstance(cap, str):
            raise Unevaluable(cap)
        # Cap, request and usage in base units of the finest decimals among the assets
        # that share this symbol, so each row counts in its own asset's units.
        scale = asset.peers.scale
        used = used_units(used_by_key, asset.peers) if used_by_key else 0
        req = spend.units * asset.up
        ok = not spend.unlimited and used + req <= cap
        tally.windows.append(
            (rule, limit.window, asset.symbol, cap, used, req, spend.unlimited, scale, ok)
        )
        if not ok and tally.violation is None:
            left = from_base_units(max(cap - used, 0), scale)
            tally.violation = Violation(
                Reason.BUDGET_EXCEEDED,
                f"Over the {limit.window} {asset.symbol} limit of rule '{rule}': "
                f"{left} {asset.symbol} left, this request is {spend.text()}. "
                "Nothing was signed.",
                rule,
            )


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
    return used_units(units_by_key, summed), summed.scale


def used_units(units_by_key: Mapping[str, int], peers: SymbolPeers) -> int:
    """window_spend's sum, with the symbol's peers worked out beforehand (compiled.py)."""
    used = 0
    for key, units in units_by_key.items():
        d = peers.decimals.get(key)
        if d is None and ":" not in key and key.upper() == peers.upper:
            d = peers.coarsest
        if d is not None:
            used += units * 10 ** (peers.scale - d)
    return used


def _fmt(units: int, asset: Asset) -> str:
    return from_base_units(units, asset.decimals)
