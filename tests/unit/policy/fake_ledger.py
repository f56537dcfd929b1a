"""An in-memory stand-in for store/ledger.py, shared by the engine's table and property tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from keysafe.policy.engine import Decision


@dataclass
class Ledger:
    """In-memory stand-in for store/ledger.py: live entries (time, rule, asset key, units,
    request), where the key is an asset identity ("base:0x8335…") or, in rows older than
    identities, a bare symbol.

    As in the real ledger, a request may book several rows under one rule (value and fee), and a
    count window counts requests, not rows.
    """

    entries: list[tuple[datetime, str, str | None, int, int]] = field(default_factory=list)
    requests: int = 0

    def usage(self, rule: str, since: datetime) -> tuple[Mapping[str, int], int]:
        rows = [e for e in self.entries if e[1] == rule and e[0] >= since]
        units: dict[str, int] = {}
        for _, _, asset, n, _ in rows:
            if asset is not None:
                units[asset] = units.get(asset, 0) + n
        return units, len({e[4] for e in rows})

    def apply(self, decision: Decision, now: datetime) -> None:
        if decision.outcome == "allow":
            self.requests += 1
            for c in decision.charges:
                self.entries.append((now, c.rule, c.asset, c.units, self.requests))
