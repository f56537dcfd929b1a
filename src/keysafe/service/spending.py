"""Spending over time, per agent and asset, for the owner's page: read from the budget ledger.

Rules this module keeps:
- The numbers are the ledger's, the rows the gate books and the budget windows are judged on
  (store/ledger.py): committed spends and reservations still in flight, never released ones.
  Network fees are spent in the native asset and count with it, as in the windows.
- A request booked under several windowed rules counts once per asset.
- Only what a windowed rule booked is here: a rule with no `limits` books nothing (the audit
  log lists every signature), and the page says so.
- Amounts are exact: base units summed as integers, shown as decimal strings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from keysafe.policy.registry import AssetInfo, Registry, from_base_units
from keysafe.service.registry import load_registry
from keysafe.store import ledger
from keysafe.vault.vault import Vault

Range = Literal["24h", "7d"]

# (bucket length in seconds, number of buckets): hours over a day, quarter days over a week.
_BUCKETS: Final[dict[str, tuple[int, int]]] = {"24h": (3600, 24), "7d": (21600, 28)}


class SpendingSeries(BaseModel):
    """One agent's spending of one asset, one amount per bucket."""

    model_config = ConfigDict(frozen=True)

    agent: str
    asset: str  # the asset's identity: chain and contract ("base:0x8335…") or "CHAIN:native"
    symbol: str
    chain: str | None
    total: str  # decimal string, token units
    points: list[str]  # one decimal string per bucket, oldest first


class Spending(BaseModel):
    """Spending per agent and asset over the last 24 hours (hourly) or 7 days (6-hourly)."""

    model_config = ConfigDict(frozen=True)

    range: Range
    bucket_seconds: int
    buckets: list[str]  # each bucket's start, UTC ISO 8601, oldest first
    end: str  # the end of the last bucket
    series: list[SpendingSeries]


def _asset_of(key: str, registry: Registry) -> AssetInfo | None:
    for a in registry.assets:
        if a.identity == key:
            return a
    # A row written before identities holds a bare symbol: read with that symbol's coarsest
    # decimals, as the windows do (limits.window_spend).
    peers = registry.same_symbol(key) if ":" not in key else ()
    return min(peers, key=lambda a: a.decimals) if peers else None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spending(vault: Vault, range_: Range = "24h") -> Spending:
    """Spending per agent and asset in `range_`, in buckets that start on whole UTC hours;
    the last bucket holds now. Works locked (the ledger holds no secret)."""
    size, count = _BUCKETS[range_]
    now = vault.clock().timestamp()
    end = (int(now) // size + 1) * size  # the current bucket is the last one
    start = end - size * count
    with vault.db.read() as conn:
        registry = load_registry(conn)
        rows = ledger.booked_since(conn, datetime.fromtimestamp(start, UTC))
    sums: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        i = int((row.at - start) // size)
        if 0 <= i < count:
            sums.setdefault((row.agent, row.asset), [0] * count)[i] += row.units
    series = []
    for (agent, key), units in sorted(sums.items()):
        asset = _asset_of(key, registry)
        if asset is None:
            continue  # an asset the registry no longer knows: its decimals are unknown
        series.append(
            SpendingSeries(
                agent=agent,
                asset=key,
                symbol=asset.symbol,
                chain=asset.chain if ":" in key else None,
                total=from_base_units(sum(units), asset.decimals),
                points=[from_base_units(u, asset.decimals) for u in units],
            )
        )
    return Spending(
        range=range_,
        bucket_seconds=size,
        buckets=[_iso(start + i * size) for i in range(count)],
        end=_iso(end),
        series=series,
    )


__all__ = ["Range", "Spending", "SpendingSeries", "spending"]
