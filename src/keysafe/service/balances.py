"""Wallet balances for the owner's page, fetched from chain nodes at most every BALANCE_TTL_S.

The page polls every few seconds; each poll would otherwise ask every configured RPC node for
every wallet. A `BalanceCache` belongs to one running server (api/state.py) and keeps each
address's last answer with the moment it was fetched; the caller passes that moment in (`now`,
from its own monotonic clock), so tests move time without sleeping.

    cache = BalanceCache()
    views = wallets_with_balances(vault, cache, now=time.monotonic())
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

from keysafe.service import wallets
from keysafe.service.wallets import WalletView
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

BALANCE_TTL_S: Final = 15.0


@dataclass
class BalanceCache:
    """Each address's balances as last fetched: (when, the balances)."""

    _fetched: dict[str, tuple[float, list[dict[str, Any]]]] = field(default_factory=dict)

    def balances(self, vault: Vault, wallet: WalletView, *, now: float) -> list[dict[str, Any]]:
        """The wallet's balances: the cached ones while younger than BALANCE_TTL_S, else fresh
        from the chain nodes (`wallets.balances`, which reports a silent node, never raises)."""
        cached = self._fetched.get(wallet.address)
        if cached is None or now - cached[0] > BALANCE_TTL_S:
            cached = (now, wallets.balances(vault, wallet))
            self._fetched[wallet.address] = cached
        return cached[1]


def wallets_with_balances(vault: Vault, cache: BalanceCache, *, now: float) -> list[dict[str, Any]]:
    """Every wallet as the owner's page lists it, each with its `balances`.

    Addresses are re-derived from their keys when the vault is unlocked (`wallets.list_wallets`).

    Raises:
        IntegrityError: a wallet does not match its stored address.
    """
    return [
        view.model_dump(mode="json") | {"balances": cache.balances(vault, view, now=now)}
        for view in wallets.list_wallets(vault, verify=vault.is_unlocked)
    ]
