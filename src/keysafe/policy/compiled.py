"""A policy compiled against a chain registry, once, so each decision does lookups, not parsing.

The engine (engine.py) judged the policy as written on every request: it scanned the registry to
resolve chain and asset names, turned each Decimal cap into base units again, called `covers` on
every rule and sorted the covering ones. Here that work is done once per (policy, registry):

- rules indexed by action, `*` rules included, sorted by name (the engine reports the smallest
  name, so rule order never matters); for a signing action the allow/ask rules without `wallets`
  are left out, as they can never match (engine.py: an agent signs only with wallets a rule names);
- chain names resolved (or the error a rule naming an unknown chain must deny with);
- caps, `approve_above` and window limits in base units per registry asset (or the error a cap
  finer than the asset's unit must deny with), window lengths as timedeltas;
- recipient, contract and spender lists normalised (EVM addresses without case), symbol,
  selector and method lists as sets, `message_matches` compiled, `outside_hours` time zones
  loaded;
- the registry itself as dicts: chain by name or id, asset by symbol or address per chain, the
  native asset per chain, registered EVM tokens by address, and per symbol the decimals a
  window's sum is kept in.

Nothing here decides; engine.py does, with exactly the semantics it had before (a test compares
it, decision by decision, with the uncompiled engine kept in tests/unit/policy/reference_engine.py).

The cache: a compiled form is kept per (Policy object, registry content). A `Policy` is frozen,
and the service shares one per stored text (rules.stored_policy), so its identity stands for its
content (a policy whose lists were mutated in place would not be seen: nothing in keysafe does
that, and the parsed policy is shared with every request already); each entry holds the objects
whose ids key it, so no id is reused while its entry lives. A registry is built anew for every
request (service/registry.py), so it is keyed by its content: every field of every chain and
asset, whatever fields they grow (a changed decimals, address, chain id or an added chain or
asset is a new key, never a stale compiled form). A caller that passes the same registry object
again skips even that key (a small identity map in front). All caches are small and bounded; an
evicted entry is compiled again when needed.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
import re
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Final, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from keysafe.policy.registry import AssetInfo, ChainInfo, Registry, UnknownName, to_base_units
from keysafe.policy.rules import ACTIONS, DAYS, SIGNING_ACTIONS, Hours, Policy, Rule

# A cap for one asset: None (the rule sets none for it), base units, or, as a str, why it cannot
# be judged (the rule then denies: "its cap for X is finer than the asset's unit").
Cap = int | str | None
# What one rule allows of one asset per transaction: (max_per_tx, approve_above).
AssetPlan = tuple[Cap, Cap]

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")

POLICY_CACHE_SIZE: Final = 256
REGISTRY_CACHE_SIZE: Final = 32


@dataclass(frozen=True, slots=True, eq=False)
class SymbolPeers:
    """Every registry asset that shares one symbol, as a budget window sums them (see
    limits.window_spend): in base units of the finest decimals among them."""

    upper: str
    scale: int  # the finest decimals among them
    decimals: dict[str, int]  # identity -> decimals
    coarsest: int  # a pre-identity row (bare symbol) is read with these


@dataclass(frozen=True, slots=True, eq=False)
class Asset:
    """A registry asset with what a decision reads of it worked out once."""

    info: AssetInfo
    index: int  # its place in Registry.assets: caps are kept per index
    symbol: str
    decimals: int
    identity: str
    peers: SymbolPeers
    up: int  # 10 ** (peers.scale - decimals): its base units in the window's units


@dataclass(frozen=True, slots=True, eq=False)
class Chain:
    """A registry chain with its assets by symbol and by address."""

    info: ChainInfo
    index: int  # its place in Registry.chains
    name: str
    evm: bool
    by_symbol: dict[str, Asset]  # upper-case symbol -> the first such asset on the chain
    by_address: dict[str, Asset]  # address (EVM: lower case) -> the first such asset
    native: Asset | None  # the first asset without an address: fees are paid in it
    # The answers for references written exactly as the registry writes a symbol or address
    # (most requests), filled in by `_asset` itself
    known: dict[str, Asset] = dataclasses.field(default_factory=dict)

    def asset(self, ref: str) -> Asset | None:
        """As Registry.asset: the first asset on the chain (in registry order) whose symbol or
        address `ref` names."""
        known = self.known.get(ref)
        return known if known is not None else self._asset(ref)

    def _asset(self, ref: str) -> Asset | None:
        text = ref.strip()
        by_symbol = self.by_symbol.get(text.upper())
        by_address = self.by_address.get(text.lower() if self.evm else text)
        if by_symbol is None or by_address is None:
            return by_symbol or by_address
        return by_symbol if by_symbol.index < by_address.index else by_address


class CompiledRegistry:
    """Registry lookups as dicts. Build with `compile_registry`."""

    __slots__ = ("assets", "chains", "contracts", "serial")

    def __init__(self, registry: Registry, serial: int) -> None:
        self.serial = serial
        assets_by_chain: dict[str, list[tuple[int, AssetInfo]]] = {}
        for i, a in enumerate(registry.assets):
            assets_by_chain.setdefault(a.chain, []).append((i, a))
        peers = _peers(registry)
        self.assets: tuple[Asset, ...] = tuple(
            _asset(a, i, peers[a.symbol.upper()]) for i, a in enumerate(registry.assets)
        )
        # By name or id, as Registry.chain reads a reference (stripped, lower case): the first
        # chain in registry order that either names wins. A key that is not in that form can
        # never equal a reference, so it is left out.
        self.chains: dict[str, Chain] = {}
        first_by_name: dict[str, ChainInfo] = {}
        for ci, c in enumerate(registry.chains):
            first_by_name.setdefault(c.name, c)
            evm = c.family == "evm"
            by_symbol: dict[str, Asset] = {}
            by_address: dict[str, Asset] = {}
            native = None
            for i, a in assets_by_chain.get(c.name, ()):
                by_symbol.setdefault(a.symbol.upper(), self.assets[i])
                if a.address is not None:
                    key = a.address.lower() if evm else a.address
                    by_address.setdefault(key, self.assets[i])
                elif native is None:
                    native = self.assets[i]
            chain = Chain(c, ci, c.name, evm, by_symbol, by_address, native)
            for _, a in assets_by_chain.get(c.name, ()):
                for ref in (a.symbol, a.address):
                    found = None if ref is None else chain._asset(ref)
                    if ref is not None and found is not None:
                        chain.known.setdefault(ref, found)
            for ref in (c.name, None if c.chain_id is None else str(c.chain_id)):
                if ref is not None and ref == ref.strip().lower():
                    self.chains.setdefault(ref, chain)
        # Registry.asset_contract: the first asset at an address whose chain is an EVM chain.
        self.contracts: dict[str, AssetInfo] = {}
        for a in registry.assets:
            if a.address is None or a.address.lower() in self.contracts:
                continue
            home = first_by_name.get(a.chain)
            if home is not None and home.family == "evm":
                self.contracts[a.address.lower()] = a

    def chain(self, ref: str | int) -> Chain | None:
        """As Registry.chain (None where it raises UnknownName)."""
        if type(ref) is str:
            hit = self.chains.get(ref)  # most requests name the chain as the registry does
            if hit is not None:
                return hit
        return self.chains.get(str(ref).strip().lower())


def _asset(a: AssetInfo, index: int, peers: SymbolPeers) -> Asset:
    return Asset(
        a, index, a.symbol, a.decimals, a.identity, peers, 10 ** (peers.scale - a.decimals)
    )


def _peers(registry: Registry) -> dict[str, SymbolPeers]:
    out: dict[str, SymbolPeers] = {}
    for a in registry.assets:
        upper = a.symbol.upper()
        if upper in out:
            continue
        same = registry.same_symbol(a.symbol)
        decimals = {p.identity: p.decimals for p in same}
        out[upper] = SymbolPeers(
            upper, max(p.decimals for p in same), decimals, min(decimals.values())
        )
    return out


@dataclass(frozen=True, slots=True, eq=False)
class CompiledHours:
    """`outside_hours`, with its time zone loaded and its days as weekday numbers."""

    hours: Hours
    tz: tzinfo | None  # None: the zone did not load here; Hours.contains is asked instead
    days: frozenset[int]
    start: time
    end: time

    def contains(self, when: datetime) -> bool:
        if self.tz is None:
            return self.hours.contains(when)
        local = when.astimezone(self.tz)
        if local.weekday() not in self.days:
            return False
        t = local.time()  # naive: datetime.time() drops the zone, as Hours.contains does
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # a span over midnight


@dataclass(frozen=True, slots=True, eq=False)
class CompiledLimit:
    window: str
    span: timedelta
    max_count: int | None
    # `max` per registry asset index, in the base units the window sums in (Asset.up);
    # None: the limit caps no amount
    caps: tuple[Cap, ...] | None


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """One rule's scope and constraints, ready for set lookups (see _match.scope_matches)."""

    rule: Rule
    name: str
    verb: Literal["allow", "ask", "deny"]
    wallets: frozenset[str] | None
    chains: frozenset[str] | None  # resolved chain names
    chain_error: str | None  # the rule names an unknown chain: it cannot be evaluated
    assets: frozenset[str] | None  # upper-case symbols
    recipients: frozenset[str] | None  # address keys (see address_key)
    contracts: frozenset[str] | None
    spenders: frozenset[str] | None
    selectors: frozenset[str] | None  # lower case
    credentials: frozenset[str] | None
    methods: frozenset[str] | None  # upper case (the model already made them so)
    urls: tuple[str, ...] | None
    data: frozenset[str] | None
    primary_types: frozenset[str] | None
    message: re.Pattern[str] | None
    unlimited: bool | None  # `when: {unlimited: …}`
    rare: bool  # sets any of contracts … when (_match.rare_conditions_hold)
    hours: CompiledHours | None
    names_typed_data: bool  # names both primary_types and contracts
    limits: tuple[CompiledLimit, ...]
    plans: tuple[AssetPlan, ...]  # per registry asset index


@dataclass(frozen=True, slots=True, eq=False)
class CompiledPolicy:
    policy: Policy
    registry: CompiledRegistry
    # policy.expires in UTC (an aware datetime compares with another of the same zone without
    # asking either zone for its offset), and as the policy wrote it, for the message
    expires: datetime | None
    expires_text: str
    # action -> the rules that can match it, smallest name first
    by_action: dict[str, tuple[CompiledRule, ...]]


def address_key(value: str) -> str:
    """What engine matching compares an address by: EVM ("0x…") addresses without case, anything
    else (base58) exactly. Two values match iff their keys are equal, as `_same_address` had it."""
    return value.lower() if value[:2].lower() == "0x" else value


def _addresses(values: list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(address_key(v) for v in values)


def _caps(caps: dict[str, Decimal] | None, registry: Registry) -> tuple[Cap, ...] | None:
    """A cap map per registry asset, as the engine's `_cap_units` read it per request: the first
    key naming the asset's symbol (without case) counts."""
    if not caps:
        return None
    out: list[Cap] = []
    for a in registry.assets:
        cap: Cap = None
        for sym, amount in caps.items():
            if sym.upper() == a.symbol.upper():
                try:
                    cap = to_base_units(amount, a.decimals)
                except ValueError:
                    cap = f"its cap for {sym} is finer than the asset's unit"
                break
        out.append(cap)
    return tuple(out)


def _hours(hours: Hours | None) -> CompiledHours | None:
    if hours is None:
        return None
    tz: tzinfo | None
    try:
        # The database's UTC is offset 0 forever: datetime's own UTC gives the same local time,
        # without a zone lookup per request (the policy default, and most policies).
        tz = UTC if hours.tz == "UTC" else ZoneInfo(hours.tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        tz = None  # judged as written, which raises as it did before compiling
    days = frozenset(DAYS.index(d) for d in hours.days if d in DAYS)
    return CompiledHours(hours, tz, days, hours.from_, hours.to)


def _chains(rule: Rule, registry: Registry) -> tuple[frozenset[str] | None, str | None]:
    if rule.chains is None:
        return None, None
    names = set()
    for ref in rule.chains:
        try:
            names.add(registry.chain(ref).name)
        except UnknownName as exc:
            return frozenset(), f"rule names an {exc}"
    return frozenset(names), None


def _set(
    values: list[str] | None, norm: Callable[[str], str] | None = None
) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset(values if norm is None else map(norm, values))


def _plans(rule: Rule, registry: Registry, assets: tuple[Asset, ...]) -> tuple[AssetPlan, ...]:
    per_tx = _caps(rule.max_per_tx, registry)
    above = _caps(rule.approve_above, registry)
    return tuple(
        (None if per_tx is None else per_tx[a.index], None if above is None else above[a.index])
        for a in assets
    )


def _window_caps(
    caps: dict[str, Decimal] | None, registry: Registry, assets: tuple[Asset, ...]
) -> tuple[Cap, ...] | None:
    """A limit's `max` per asset, in the units its window sums in (the finest decimals among
    the assets that share the symbol)."""
    per_asset = _caps(caps, registry)
    if per_asset is None:
        return None
    return tuple(
        c * a.up if isinstance(c, int) else c for c, a in zip(per_asset, assets, strict=True)
    )


def compile_rule(rule: Rule, registry: Registry, compiled: CompiledRegistry) -> CompiledRule:
    """One rule against `registry` (`compiled` is the same registry, compiled)."""
    chains, chain_error = _chains(rule, registry)
    limits = tuple(
        CompiledLimit(
            limit.window,
            timedelta(seconds=limit.seconds),
            limit.max_count,
            _window_caps(limit.max, registry, compiled.assets),
        )
        for limit in rule.limits or ()
    )
    rare = (
        rule.contracts,
        rule.spenders,
        rule.selectors,
        rule.credentials,
        rule.methods,
        rule.data,
        rule.urls,
        rule.primary_types,
        rule.message_matches,
        rule.when,
    )
    return CompiledRule(
        rule=rule,
        name=rule.name,
        verb=rule.verb,
        wallets=_set(rule.wallets),
        chains=chains,
        chain_error=chain_error,
        assets=_set(rule.assets, str.upper),
        recipients=_addresses(rule.recipients),
        contracts=_addresses(rule.contracts),
        spenders=_addresses(rule.spenders),
        selectors=_set(rule.selectors, str.lower),
        credentials=_set(rule.credentials),
        methods=_set(rule.methods),
        urls=None if rule.urls is None else tuple(rule.urls),
        data=_set(rule.data),
        primary_types=_set(rule.primary_types),
        message=None if rule.message_matches is None else re.compile(rule.message_matches),
        unlimited=None if rule.when is None else rule.when.unlimited,
        rare=any(c is not None for c in rare),
        hours=_hours(rule.outside_hours),
        names_typed_data=rule.primary_types is not None and rule.contracts is not None,
        limits=limits,
        plans=_plans(rule, registry, compiled.assets),
    )


def _index(rules: list[CompiledRule]) -> dict[str, tuple[CompiledRule, ...]]:
    by_name = sorted(rules, key=lambda r: r.name)
    out: dict[str, tuple[CompiledRule, ...]] = {}
    for action in ACTIONS:
        out[action] = tuple(
            r
            for r in by_name
            if r.rule.covers(action)
            # an allow/ask rule signs only with the wallets it names: without any, it never
            # matches a signing action, and its other conditions are never looked at
            and not (r.wallets is None and r.verb != "deny" and action in SIGNING_ACTIONS)
        )
    return out


# --- the caches -------------------------------------------------------------------------------

_CHAIN_FIELDS: Final = operator.attrgetter(*(f.name for f in dataclasses.fields(ChainInfo)))
_ASSET_FIELDS: Final = operator.attrgetter(*(f.name for f in dataclasses.fields(AssetInfo)))
_lock = threading.Lock()
_serials = itertools.count(1)
# registry content -> its compiled form
_registries: dict[Hashable, CompiledRegistry] = {}
# (id(policy), compiled registry serial) -> (policy, its compiled form)
_policies: dict[tuple[int, int], tuple[Policy, CompiledPolicy]] = {}
# (id(policy), id(registry)) -> (policy, registry, compiled form): callers that pass the same
# registry object again (the benchmark; a server that caches its registry) skip the content key
_by_identity: dict[tuple[int, int], tuple[Policy, Registry, CompiledPolicy]] = {}


def registry_key(registry: Registry) -> Hashable:
    """Every field of every chain and asset, in order: equal keys, equal registries."""
    return tuple(map(_CHAIN_FIELDS, registry.chains)), tuple(map(_ASSET_FIELDS, registry.assets))


def _remember(cache: dict[_K, _V], key: _K, value: _V, size: int) -> None:
    with _lock:
        cache[key] = value
        while len(cache) > size:
            del cache[next(iter(cache))]  # the oldest entry


def compile_registry(registry: Registry) -> CompiledRegistry:
    """The registry's lookups, built once per registry content."""
    key = registry_key(registry)
    compiled = _registries.get(key)
    if compiled is None:
        compiled = CompiledRegistry(registry, next(_serials))
        _remember(_registries, key, compiled, REGISTRY_CACHE_SIZE)
    return compiled


def compile_policy(policy: Policy, registry: Registry) -> CompiledPolicy:
    """`policy` compiled against `registry`, from the cache when it was compiled before.

    A Policy is frozen (pydantic): one that changes is a new object, so a new entry. Every entry
    holds the objects whose ids key it, so no id is reused while its entry lives.
    """
    ids = (id(policy), id(registry))
    same = _by_identity.get(ids)
    if same is not None and same[0] is policy and same[1] is registry:
        return same[2]
    reg = compile_registry(registry)
    key = (id(policy), reg.serial)
    held = _policies.get(key)
    if held is not None and held[0] is policy:
        compiled = held[1]
    else:
        expires = policy.expires
        compiled = CompiledPolicy(
            policy,
            reg,
            None if expires is None else expires.astimezone(UTC),
            "" if expires is None else expires.isoformat(),
            _index([compile_rule(rule, registry, reg) for rule in policy.rules]),
        )
        _remember(_policies, key, (policy, compiled), POLICY_CACHE_SIZE)
    _remember(_by_identity, ids, (policy, registry, compiled), REGISTRY_CACHE_SIZE)
    return compiled


def clear_caches() -> None:
    """Forget every compiled form (tests; nothing in keysafe needs it)."""
    with _lock:
        _registries.clear()
        _policies.clear()
        _by_identity.clear()
