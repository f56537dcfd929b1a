"""Parsing a policy file (YAML, `version: 1`) into validated rules.

A rule has exactly one verb (`allow`, `ask` or `deny`) naming actions, optional scope conditions
(wallets, chains, assets, recipients, credentials, methods, urls, primary_types, message_matches,
when, outside_hours, …) and, for allow/ask rules, constraints (max_per_tx, limits, approve_above).
Amounts are quoted decimal strings in token units: a YAML float is refused, because money is
never a float.

`wallets` names the vault wallets a signing rule may use. An allow/ask rule for a signing action
without it matches no wallet (engine), and lint refuses it; there is no wildcard, so a wallet
the owner adds later is never usable by an agent by accident.
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from keysafe.crypto import jcs
from keysafe.errors import MalformedRequestError
from keysafe.policy.registry import parse_decimal

ACTIONS: Final = frozenset(
    {
        "evm.transfer",
        "evm.approve",
        "evm.call",
        "evm.deploy",
        "evm.sign_message",
        "evm.sign_typed_data",
        "solana.transfer",
        "solana.approve",
        "solana.set_authority",
        "solana.close_account",
        "solana.call",
        "solana.sign_message",
        "http.request",
        "data.read",
        "credential.release",
    }
)
# Actions that sign with a vault wallet: their rules are scoped by `wallets`.
SIGNING_ACTIONS: Final = frozenset(a for a in ACTIONS if a.split(".")[0] in ("evm", "solana"))
WILDCARD: Final = "*"
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_RE: Final = re.compile(r"^(\d{1,6})(s|m|h|d)$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool | float):
        raise ValueError('write amounts as quoted decimal strings, e.g. "0.01" (never a float)')
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("must be a decimal string")
    return parse_decimal(value)


Amount = Annotated[Decimal, BeforeValidator(_decimal)]
AmountMap = dict[str, Amount]


def window_seconds(text: str) -> int:
    m = _WINDOW_RE.match(text)
    if not m or int(m.group(1)) == 0:
        raise ValueError("a window is a number and a unit: 30s, 15m, 24h, 7d")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Limit(_Model):
    window: str
    max: AmountMap | None = None
    max_count: int | None = Field(default=None, ge=0)

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        window_seconds(v)
        return v

    @model_validator(mode="after")
    def _something(self) -> Limit:
        if self.max is None and self.max_count is None:
            raise ValueError("a limit needs max (per asset) or max_count")
        return self

    @property
    def seconds(self) -> int:
        return window_seconds(self.window)


class Hours(_Model):
    from_: time = Field(alias="from")
    to: time
    days: list[str] = Field(default_factory=lambda: list(DAYS))
    tz: str = "UTC"

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _hhmm(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            # YAML 1.1 reads 08:00 unquoted as a sexagesimal int (minutes since midnight).
            if not 0 <= v < 24 * 60:
                raise ValueError("a time of day is HH:MM, from 00:00 to 23:59")
            return time(v // 60, v % 60)
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if d.lower() not in DAYS]
        if bad:
            raise ValueError("unknown day; use mon tue wed thu fri sat sun")
        return [d.lower() for d in v]

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            if len(v) > 64:  # no IANA name is this long; the file system refuses some that are
                raise ValueError
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                "unknown time zone; use an IANA name such as UTC or Europe/Berlin"
            ) from None
        return v

    def contains(self, when: datetime) -> bool:
        local = when.astimezone(ZoneInfo(self.tz))
        if DAYS[local.weekday()] not in self.days:
            return False
        t = local.time().replace(tzinfo=None)
        if self.from_ <= self.to:
            return self.from_ <= t < self.to
        return t >= self.from_ or t < self.to  # a span over midnight


class When(_Model):
    unlimited: bool | None = None


class Rule(_Model):
    name: str = Field(min_length=1, max_length=100)
    allow: list[str] | None = None
    ask: list[str] | None = None
    deny: list[str] | None = None
    # scope
    wallets: list[str] | None = None
    chains: list[str | int] | None = None
    assets: list[str] | None = None
    recipients: list[str] | None = None
    contracts: list[str] | None = None
    spenders: list[str] | None = None
    selectors: list[str] | None = None
    credentials: list[str] | None = None
    methods: list[str] | None = None
    urls: list[str] | None = None
    data: list[str] | None = None
    # EIP-712 primaryType names (exact, case-sensitive) of typed-data requests, permits included
    primary_types: list[str] | None = None
    message_matches: str | None = None
    when: When | None = None
    outside_hours: Hours | None = None
    # constraints
    max_per_tx: AmountMap | None = None
    limits: list[Limit] | None = None
    approve_above: AmountMap | None = None

    @model_validator(mode="after")
    def _one_verb(self) -> Rule:
        verbs = [v for v in ("allow", "ask", "deny") if getattr(self, v) is not None]
        if len(verbs) != 1:
            raise ValueError("a rule has exactly one of allow, ask or deny")
        if not self.actions:
            raise ValueError(f"'{verbs[0]}' lists no actions")
        if self.verb == "deny" and (self.max_per_tx or self.limits or self.approve_above):
            raise ValueError("max_per_tx, limits and approve_above belong on allow or ask rules")
        if self.message_matches is not None:
            try:
                re.compile(self.message_matches)
            except re.error as exc:
                where = f" (at position {exc.pos})" if exc.pos is not None else ""
                raise ValueError(
                    f"message_matches is not a valid regular expression{where}"
                ) from None
        if self.wallets is not None and any(
            not w.strip() or w.strip() == WILDCARD for w in self.wallets
        ):
            raise ValueError(
                "wallets lists wallet names; there is no wildcard, so name each wallet"
            )
        if self.methods:
            object.__setattr__(self, "methods", [m.upper() for m in self.methods])
        return self

    @property
    def verb(self) -> Literal["allow", "ask", "deny"]:
        if self.allow is not None:
            return "allow"
        return "ask" if self.ask is not None else "deny"

    @property
    def actions(self) -> list[str]:
        return self.allow or self.ask or self.deny or []

    def covers(self, action: str) -> bool:
        return WILDCARD in self.actions or action in self.actions

    @property
    def signs(self) -> bool:
        """Does the rule cover some action that signs with a wallet?"""
        return WILDCARD in self.actions or not SIGNING_ACTIONS.isdisjoint(self.actions)


class Policy(_Model):
    version: Literal[1]
    rules: list[Rule]
    expires: datetime | None = None

    @field_validator("expires")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> Policy:
        seen: set[str] = set()
        for r in self.rules:
            if r.name in seen:
                raise ValueError(f"two rules are named {r.name!r}; names must be unique")
            seen.add(r.name)
        return self

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the parsed policy (formatting does not change it)."""
        return hashlib.sha256(jcs.dumps(self.model_dump(mode="json", by_alias=True))).hexdigest()


class _PolicyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that dates stay text: YAML's own timestamp constructor raises
    a bare ValueError on an impossible date (`expires: 2026-02-30`), where the model explains
    which field is wrong and why."""


_PolicyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@functools.lru_cache(maxsize=256)
def stored_policy(text: str) -> Policy:
    """A stored policy, parsed once per text: every request reads its agent's policy, and the
    YAML parse was a third of a gated call. `Policy` is frozen, so sharing it is safe."""
    return parse_policy(text)


def parse_policy(text: str, *, source: str = "policy") -> Policy:
    """Parse YAML text; errors name the rule and field, never echo values."""
    try:
        raw = yaml.load(text, Loader=_PolicyLoader)  # noqa: S506 - a SafeLoader, see below
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise MalformedRequestError(
            f"{source} is not valid YAML{where}.",
            next_step="fix the syntax; `keysafe policy lint FILE` checks a file before you set it.",
        ) from None
    if not isinstance(raw, dict):
        raise MalformedRequestError(
            f"{source} must be a mapping with 'version: 1' and 'rules:'.",
            next_step="start from the example in `keysafe policy --help`.",
        )
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        raise MalformedRequestError(
            f"{source} is not a valid policy: {describe_errors(exc, raw)}",
            next_step="fix the fields named above; `keysafe policy lint FILE` explains each rule.",
        ) from None


def describe_errors(exc: ValidationError, raw: dict[str, Any]) -> str:
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:50]:  # every one, at once
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc) or "policy"
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            rules = raw.get("rules") or []
            name = (
                rules[loc[1]].get("name")
                if loc[1] < len(rules) and isinstance(rules[loc[1]], dict)
                else None
            )
            if name:
                where = f"rule '{name}'" + (
                    "." + ".".join(str(p) for p in loc[2:]) if loc[2:] else ""
                )
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)
