"""The owner page's spending series (from the budget ledger) and the audit log's filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.service import agents, approvals, audit, policies, signing, spending, wallets
from keysafe.service.models import SignTransactionRequest
from keysafe.service.signing_gate import SignResult
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF, ManualClock
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

BOB = "0x1111111111111111111111111111111111111111"
# Two windowed rules match every transfer: the ledger books each spend once per rule, and the
# spending series must still count it once.
POLICY = """
version: 1
rules:
  - name: pay
    allow: [evm.transfer]
    wallets: [main]
    limits: [{window: 24h, max: {ETH: "5"}}]
    approve_above: {ETH: "1"}
  - name: pay-hourly
    allow: [evm.transfer]
    wallets: [main]
    limits: [{window: 1h, max_count: 50}, {window: 1h, max: {ETH: "3"}}]
"""
FEE = "0.000021"  # gas 21000 × 1 gwei


@pytest.fixture
def vault(tmp_path: Path) -> tuple[Vault, ManualClock]:
    clock = ManualClock(datetime(2026, 11, 23, 9, 30, tzinfo=UTC))
    v, _ = init_vault(
        Home(tmp_path / "h"),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
        clock=clock,
    )
    wallets.create_wallet(v, "main", Chain.EVM)
    for name in ("bot", "other"):
        agents.add_agent(v, name)
        policies.set_policy(v, name, POLICY)
    return v, clock


def pay(v: Vault, agent: str, eth: str, nonce: int) -> SignResult:
    tx = {
        "to": BOB,
        "value": hex(int(float(eth) * 10**18)),
        "chainId": 1,
        "nonce": nonce,
        "gas": 21000,
        "gasPrice": 10**9,
    }
    return signing.sign_transaction(v, agent, SignTransactionRequest(wallet="main", transaction=tx))


def test_spending_counts_each_request_once_per_asset_in_its_hour(
    vault: tuple[Vault, ManualClock],
) -> None:
    v, clock = vault
    pay(v, "bot", "0.5", 0)
    clock.now -= timedelta(hours=3)
    pay(v, "bot", "0.25", 1)
    clock.now += timedelta(hours=3)
    s = spending.spending(v, "24h")
    assert (s.range, s.bucket_seconds, len(s.buckets)) == ("24h", 3600, 24)
    assert s.end == "2026-11-23T10:00:00Z" and s.buckets[-1] == "2026-11-23T09:00:00Z"
    [bot] = s.series
    assert (bot.agent, bot.asset, bot.symbol, bot.chain) == (
        "bot",
        "ethereum:native",
        "ETH",
        "ethereum",
    )
    assert bot.points[-1] == "0.500021" and bot.points[-4] == "0.250021"
    assert bot.total == "0.750042"  # value and fee, once each though two rules booked them
    assert sum(1 for p in bot.points if p != "0") == 2


def test_spending_leaves_out_denied_pending_and_old_requests(
    vault: tuple[Vault, ManualClock],
) -> None:
    v, clock = vault
    clock.now -= timedelta(days=2)
    pay(v, "other", "0.1", 0)  # two days ago: in 7 days, not in 24 hours
    clock.now += timedelta(days=2)
    asked = pay(v, "other", "2", 1)  # above approve_above: pending, nothing booked
    assert asked.status == "pending_approval"
    approvals.deny(v, asked.approval_id or "")
    assert spending.spending(v, "24h").series == []
    week = spending.spending(v, "7d")
    assert (week.bucket_seconds, len(week.buckets)) == (21600, 28)
    [other] = week.series
    assert other.agent == "other" and other.total == "0.100021"


def test_audit_filter_by_agent_action_prefix_and_outcome(vault: tuple[Vault, ManualClock]) -> None:
    v, _ = vault
    pay(v, "bot", "0.5", 0)
    asked = pay(v, "other", "2", 0)
    approvals.deny(v, asked.approval_id or "", reason="too much")

    def of(**kw: str) -> list[tuple[str, str, str]]:
        found = audit.list_entries(v, where=audit.Filter(**kw))
        return [(e.actor, e.action, e.outcome) for e in found]

    mine = of(agent="other")
    assert mine and all("bot" not in str(row) for row in mine)
    assert ("owner", "approval.deny", "success") in mine  # names the agent in its details
    assert ("owner", "agent.add", "success") in mine  # its target is the agent
    assert {a for _, a, _ in of(action="approval.")} == {"approval.request", "approval.deny"}
    assert of(action="approval") == []  # without the dot: that exact action only
    assert of(agent="bot", outcome="allow") == [("agent:bot", "decide.evm.transfer", "allow")]
    assert of(agent="b") == []  # a name, not a substring
    newest = audit.list_entries(v, limit=2, where=audit.Filter(agent="other"))
    assert [e.seq for e in newest] == sorted(e.seq for e in newest)  # oldest first
    assert newest[-1].action == "approval.deny"


def test_audit_export_is_one_json_object_per_line(vault: tuple[Vault, ManualClock]) -> None:
    v, _ = vault
    asked = pay(v, "other", "2", 0)
    approvals.deny(v, asked.approval_id or "", reason="line one\nline two")
    lines = list(audit.export_lines(v, where=audit.Filter(action="approval.")))
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    rows = [json.loads(line) for line in lines]
    assert [r["action"] for r in rows] == ["approval.request", "approval.deny"]
    assert rows[1]["details"]["reason"] == "line one line two"
