"""Approvals: ask → park → approve (runs the parked request exactly) / deny / expire / grant."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError, NotFoundError
from keysafe.service import agents, approvals, policies, signing, wallets
from keysafe.service.models import SignTransactionRequest
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF, ManualClock
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

BOB = "0x1111111111111111111111111111111111111111"
POLICY = """
version: 1
rules:
  - name: pay
    allow: [evm.transfer]
    wallets: [main]
    max_per_tx: {ETH: "1"}
    limits: [{window: 24h, max: {ETH: "1.5"}}]
    approve_above: {ETH: "0.1"}
"""


@dataclass
class Made:
    vault: Vault
    clock: ManualClock
    address: str


@pytest.fixture
def made(tmp_path: Path, database_url: str | None) -> Iterator[Made]:
    """On SQLite, then on PostgreSQL (`database_url`)."""
    clock = ManualClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    vault, _ = init_vault(
        Home(tmp_path / "h", database_url),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
        clock=clock,
    )
    w = wallets.create_wallet(vault, "main", Chain.EVM)
    agents.add_agent(vault, "bot")
    policies.set_policy(vault, "bot", POLICY)
    yield Made(vault, clock, w.address)
    vault.lock()
    vault.db.close()


def tx(value_eth: float, nonce: int = 0) -> dict[str, Any]:
    return {
        "to": BOB,
        "value": hex(int(value_eth * 10**18)),
        "chainId": 1,
        "nonce": nonce,
        "gas": 21000,
        "gasPrice": 10**9,
    }


def from_main(payload: dict[str, Any], description: str | None = None) -> SignTransactionRequest:
    """`payload` as the agent asks to sign it with the wallet "main"."""
    return SignTransactionRequest(wallet="main", transaction=payload, description=description)


FEE = 21000 * 10**9  # gas × gasPrice of `tx`: booked with the value (native caps see both)


def live(vault: Vault) -> int:
    with vault.db.read() as conn:
        rows = conn.execute(
            t.ledger.select().where(t.ledger.c.state.in_(("reserved", "committed")))
        )
        return sum(int(r.units) for r in rows)


def test_ask_parks_the_request_and_reserves_nothing(made: Made) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    assert res.status == "pending_approval"
    assert res.approval_id and res.approval_id.startswith("apr_")
    assert live(made.vault) == 0
    pending = approvals.list_approvals(made.vault)
    assert [a.id for a in pending] == [res.approval_id]
    assert "0.5 ETH" in pending[0].summary


def test_approve_runs_the_parked_request_exactly_and_stores_the_result(made: Made) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5, nonce=7)))
    done = approvals.approve(made.vault, res.approval_id or "")
    assert done.status == "approved"
    assert done.result is not None and done.result["status"] == "signed"
    assert Account.recover_transaction(done.result["signed_transaction"]) == made.address
    assert live(made.vault) == 5 * 10**17 + FEE
    view = approvals.get(made.vault, res.approval_id or "", agent="bot").for_agent()
    assert view["status"] == "approved" and view["result"]["tx_hash"] == done.result["tx_hash"]


def test_approval_is_single_use(made: Made) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    approvals.approve(made.vault, res.approval_id or "")
    with pytest.raises(MalformedRequestError, match="already approved"):
        approvals.approve(made.vault, res.approval_id or "")
    assert live(made.vault) == 5 * 10**17 + FEE


def test_deny_leaves_the_budget_untouched(made: Made) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    assert approvals.deny(made.vault, res.approval_id or "").status == "denied"
    assert live(made.vault) == 0
    with pytest.raises(MalformedRequestError, match="already denied"):
        approvals.approve(made.vault, res.approval_id or "")


def test_expired_approval_cannot_be_approved(made: Made) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    made.clock.now += timedelta(minutes=6)
    assert approvals.get(made.vault, res.approval_id or "").status == "expired"
    with pytest.raises(MalformedRequestError, match="already expired"):
        approvals.approve(made.vault, res.approval_id or "")
    assert live(made.vault) == 0


def test_approval_rechecks_budget_at_execution(made: Made) -> None:
    first = signing.sign_transaction(made.vault, "bot", from_main(tx(0.9)))
    second = signing.sign_transaction(made.vault, "bot", from_main(tx(0.9, nonce=1)))
    assert approvals.approve(made.vault, first.approval_id or "").status == "approved"
    late = approvals.approve(made.vault, second.approval_id or "")
    assert late.status == "failed"
    assert late.result is not None and late.result["error"]["code"] == "BUDGET_EXCEEDED"
    assert live(made.vault) == 9 * 10**17 + FEE


def test_session_grant_lets_the_next_request_pass_without_asking(made: Made) -> None:
    first = signing.sign_transaction(made.vault, "bot", from_main(tx(0.2)))
    approvals.approve(made.vault, first.approval_id or "", grant_seconds=3600)
    again = signing.sign_transaction(made.vault, "bot", from_main(tx(0.2, nonce=1)))
    assert again.status == "signed"
    made.clock.now += timedelta(hours=2)
    later = signing.sign_transaction(made.vault, "bot", from_main(tx(0.2, nonce=2)))
    assert later.status == "pending_approval"


def test_another_agent_cannot_read_the_approval(made: Made) -> None:
    agents.add_agent(made.vault, "other")
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    with pytest.raises(NotFoundError):
        approvals.get(made.vault, res.approval_id or "", agent="other")


def test_json_number_beyond_2_53_is_parked_and_runs_the_same_amount(made: Made) -> None:
    big = {
        "to": BOB,
        "value": 5 * 10**17,
        "chainId": 1,
        "nonce": 3,
        "gas": 21000,
        "gasPrice": 10**9,
    }
    res = signing.sign_transaction(made.vault, "bot", from_main(big))
    assert res.status == "pending_approval"
    done = approvals.approve(made.vault, res.approval_id or "")
    assert done.status == "approved"
    assert live(made.vault) == 5 * 10**17 + FEE


def test_owner_view_carries_the_decoded_intent_with_full_addresses(made: Made) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    view = approvals.get(made.vault, res.approval_id or "").for_owner()
    assert view["request"]["intent"]["to"].lower() == BOB
    assert view["request"]["intent"]["amount"] == "0.5"


def test_a_bug_while_executing_marks_the_approval_failed_not_stuck(
    made: Made, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))

    def boom(*_: object) -> dict[str, object]:
        raise RuntimeError("bug")

    monkeypatch.setattr(approvals, "_execute", boom)
    with pytest.raises(RuntimeError):
        approvals.approve(made.vault, res.approval_id or "")
    assert approvals.get(made.vault, res.approval_id or "").status == "failed"
    assert live(made.vault) == 0


# -- the owner names an approval by a unique prefix; ids print whole ------------------------------


def _fake_approval(vault: Vault, approval_id: str) -> None:
    """A decided approval row with a chosen id (a prefix collision cannot be waited for)."""
    with vault.db.write() as conn:
        conn.execute(
            t.approvals.insert().values(
                id=approval_id,
                agent="bot",
                kind="sign_transaction",
                request="{}",
                fingerprint="0" * 64,
                summary="old",
                rule="pay",
                created_at=0.0,
                expires_at=1.0,
                status="denied",
            )
        )


def test_resolve_unique_prefix_with_or_without_apr_gives_the_whole_id(made: Made) -> None:
    whole = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5))).approval_id or ""
    assert approvals.resolve(made.vault, whole[:10]) == whole
    assert approvals.resolve(made.vault, whole[4:12].upper()) == whole
    assert approvals.deny(made.vault, whole[:10]).id == whole


def test_resolve_too_short_or_unknown_prefix_is_refused(made: Made) -> None:
    signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    with pytest.raises(MalformedRequestError, match="too short") as short:
        approvals.resolve(made.vault, "apr_12345")
    assert "at least 6 characters" in short.value.next_step
    with pytest.raises(NotFoundError):
        approvals.resolve(made.vault, "apr_ffffffffffff")
    with pytest.raises(NotFoundError):
        approvals.resolve(made.vault, "apr_%%%%%%")  # never a LIKE wildcard


def test_resolve_ambiguous_prefix_lists_every_candidate_whole(made: Made) -> None:
    whole = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5))).approval_id or ""
    twin = whole[:12] + "0" * (len(whole) - 12)
    _fake_approval(made.vault, twin if twin != whole else whole[:12] + "1" * (len(whole) - 12))
    with pytest.raises(MalformedRequestError, match="starts 2 approval ids") as err:
        approvals.approve(made.vault, whole[:12])
    assert whole in err.value.what and whole[:12] in err.value.what
    assert live(made.vault) == 0  # nothing ran
    assert approvals.approve(made.vault, whole).status == "approved"  # the whole id still works


# -- the owner's reason for a denial reaches the agent as plain text -----------------------------


def test_deny_reason_is_stored_cleaned_and_shown_to_the_agent(made: Made) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    hostile = "Not\nthis\u202e one\x00 <b>x</b>"
    done = approvals.deny(made.vault, res.approval_id or "", reason=hostile)
    assert done.reason == "Not this one <b>x</b>"  # line breaks, bidi, NUL: gone; markup: text
    view = approvals.get(made.vault, res.approval_id or "", agent="bot").for_agent()
    assert view["status"] == "denied" and view["reason"] == "Not this one <b>x</b>"
    assert "result" not in view


def test_deny_reason_over_the_cap_is_refused_and_nothing_is_decided(made: Made) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    with pytest.raises(MalformedRequestError, match="at most 300"):
        approvals.deny(made.vault, res.approval_id or "", reason="x" * 301)
    assert approvals.get(made.vault, res.approval_id or "").status == "pending"


def test_approve_without_reason_and_deny_without_reason_carry_none(made: Made) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    done = approvals.deny(made.vault, res.approval_id or "", reason="   ")
    assert done.reason is None and "reason" not in done.for_agent()


# -- what the owner's card is told --------------------------------------------------------------


def test_owner_view_says_what_is_signed_and_whether_a_grant_can_apply(made: Made) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5), description="invoice 42"))
    view = approvals.get(made.vault, res.approval_id or "").for_owner()
    assert view["description"] == "invoice 42"
    assert view["signs"] is True and view["grantable"] is True
    every_time = approvals.get(made.vault, res.approval_id or "")
    release = dataclasses.replace(every_time, kind=approvals.Kind.RELEASE_CREDENTIAL)
    assert release.grantable is False and release.for_owner()["signs"] is False
    marked = dataclasses.replace(
        every_time, request=every_time.request | {"owner_decides_every_time": True}
    )
    assert marked.grantable is False
    assert dataclasses.replace(every_time, rule=None).grantable is False


def test_approve_for_a_while_is_refused_where_no_grant_can_apply(made: Made) -> None:
    res = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    with made.vault.db.write() as conn:  # as a request no rule asked about would be parked
        conn.execute(
            t.approvals.update().where(t.approvals.c.id == res.approval_id).values(rule=None)
        )
    with pytest.raises(MalformedRequestError, match="cannot be approved for a while"):
        approvals.approve(made.vault, res.approval_id or "", grant_seconds=900)
    assert approvals.get(made.vault, res.approval_id or "").status == "pending"
    assert approvals.list_grants(made.vault) == []


def test_budget_effect_is_the_gates_window_before_and_after(made: Made) -> None:
    first = signing.sign_transaction(made.vault, "bot", from_main(tx(0.5)))
    approvals.approve(made.vault, first.approval_id or "")
    ask = signing.sign_transaction(made.vault, "bot", from_main(tx(0.4, nonce=1)))
    windows = approvals.budget_effect(made.vault, approvals.get(made.vault, ask.approval_id or ""))
    assert windows is not None
    [w] = windows
    # 1.5 ETH a day; 0.5 + fee used; this one is 0.4 + fee.
    assert (w.rule, w.window, w.asset) == ("pay", "24h", "ETH")
    assert (w.left, w.after, w.ok) == ("0.999979", "0.599958", True)
    big = signing.sign_transaction(made.vault, "bot", from_main(tx(0.99, nonce=2)))
    approvals.approve(made.vault, ask.approval_id or "")  # now 0.599958 left: 0.99 cannot fit
    [over] = (
        approvals.budget_effect(made.vault, approvals.get(made.vault, big.approval_id or "")) or []
    )
    assert over.ok is False and over.after == "0"
