"""The owner page's balance cache (service/balances.py): one fetch per address per TTL."""

from __future__ import annotations

from typing import Any, cast

import pytest

from keysafe.service import wallets
from keysafe.service.balances import BALANCE_TTL_S, BalanceCache
from keysafe.service.wallets import WalletView
from keysafe.vault.vault import Vault

VAULT = cast(Vault, object())  # passed through to the fetch, which is counted instead
WALLET = WalletView(
    name="main",
    chain="evm",
    address="0xabc",
    source="hd",
    index=0,
    created_at="2025-03-01T09:00:00Z",
)


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand in for the chain nodes: each fetch is counted and answers its number."""
    seen: list[str] = []

    def balances(vault: Vault, view: WalletView) -> list[dict[str, Any]]:
        seen.append(view.address)
        return [{"fetch": len(seen)}]

    monkeypatch.setattr(wallets, "balances", balances)
    return seen


def test_balance_cache_answers_from_cache_until_the_ttl_has_passed(fetches: list[str]) -> None:
    cache = BalanceCache()
    assert cache.balances(VAULT, WALLET, now=100.0) == [{"fetch": 1}]
    assert cache.balances(VAULT, WALLET, now=100.0 + BALANCE_TTL_S) == [{"fetch": 1}]
    assert cache.balances(VAULT, WALLET, now=100.1 + BALANCE_TTL_S) == [{"fetch": 2}]
    assert fetches == ["0xabc", "0xabc"]


def test_balance_cache_keeps_each_address_apart(fetches: list[str]) -> None:
    cache = BalanceCache()
    other = WALLET.model_copy(update={"name": "spare", "address": "0xdef", "index": 1})
    cache.balances(VAULT, WALLET, now=1.0)
    cache.balances(VAULT, other, now=1.0)
    cache.balances(VAULT, WALLET, now=2.0)
    assert fetches == ["0xabc", "0xdef"]
