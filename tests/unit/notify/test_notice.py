"""The one formatter of what leaves the vault, fed every approval kind and every alert with
canary secrets planted wherever an agent or an attacker could put them; and the outbox that
carries its notices, through the real service calls that emit them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from telegram import Update

from keysafe.approvals import Approval, Kind, Status
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError, NotFoundError, WrongPassphraseError
from keysafe.notify import telegram, webhook
from keysafe.notify.notice import Event, Notice, for_approval, for_deny, short_address
from keysafe.policy.intent import Intent
from keysafe.service import (
    agents,
    audit,
    notify,
    notify_channels,
    notify_outbox,
    notify_telegram,
    policies,
)
from keysafe.service.notify_channels import Cap
from keysafe.service.notify_outbox import Claimed
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF, ManualClock
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

FULL = "0xdeadbeef00000000000000000000000000c0ffee"  # a full address: only its short form may leave
SPENDER = "0xbadc0de000000000000000000000000000000bad"
CANARIES = {
    "description": "CANARY-description-1a2b",
    "request": "CANARY-request-3c4d",
    "data value": "CANARY-data-value-5e6f",
    "credential value": "CANARY-credential-7a8b",
    "message": "CANARY-message-9c0d",
    "url path": "CANARY-url-path-1e2f",
    "url query": "CANARY-url-query-3a4b",
    "summary": "CANARY-summary-5c6d",
    "pairing words": "CANARY-words-7e8f",
    "typed data": "CANARY-typed-9a0b",
    "result": "CANARY-result-1c2d",
    "full address": FULL,
    "spender": SPENDER,
}

INTENTS: dict[Kind, Intent | None] = {
    Kind.SIGN_TRANSACTION: Intent(
        action="evm.transfer",
        chain="ethereum",
        wallet="main",
        asset="ETH",
        amount="0.25",
        to=FULL,
        summary=CANARIES["summary"],
    ),
    Kind.SEND_TRANSACTION: Intent(
        action="evm.approve",
        chain="base",
        wallet="main",
        asset="USDC",
        amount="unlimited",
        spender=SPENDER,
        contract=FULL,
        function=CANARIES["request"],
    ),
    Kind.TRANSFER: Intent(
        action="evm.transfer",
        chain="ethereum",
        wallet="main",
        asset=FULL,
        amount="12",
        to=FULL,
    ),
    Kind.SIGN_MESSAGE: Intent(
        action="evm.sign_message",
        wallet="main",
        message=CANARIES["message"] + FULL,
    ),
    Kind.SIGN_TYPED_DATA: Intent(
        action="evm.sign_typed_data",
        wallet="main",
        primary_type=CANARIES["typed data"],
        domain={"name": CANARIES["typed data"], "verifyingContract": FULL},
    ),
    Kind.READ_DATA: Intent(action="data.read", data="ssn"),
    Kind.HTTP_REQUEST: Intent(
        action="http.request",
        method="post",
        credential="github",
        url=f"https://api.github.com/{CANARIES['url path']}?t={CANARIES['url query']}",
    ),
    Kind.RELEASE_CREDENTIAL: Intent(action="credential.release", credential="github"),
    Kind.PAIRING: None,
}


def _approval(kind: Kind) -> Approval:
    intent = INTENTS[kind]
    request: dict[str, Any] = {
        "description": CANARIES["description"],
        "purpose": CANARIES["description"],
        "transaction": {"to": FULL, "data": CANARIES["request"]},
        "value": CANARIES["data value"],
        "secret": CANARIES["credential value"],
        "words": [CANARIES["pairing words"]],
        "sidecar": CANARIES["request"],
    }
    if intent is not None:
        request |= {"action": intent.action, "intent": intent.model_dump(exclude_none=True)}
    return Approval(
        "apr_0123456789abcdef01234567",
        "bot",
        kind,
        CANARIES["summary"] + FULL,
        "ask-rule",
        1000.0,
        1300.0,
        Status.PENDING,
        request,
        {"value": CANARIES["result"]},
        "f" * 64,
    )


def _leaks(text: str) -> list[str]:
    return [name for name, canary in CANARIES.items() if canary.lower() in text.lower()]


def _everything(notice: Notice) -> str:
    return notice.model_dump_json() + notice.text(now=1100.0)


@pytest.mark.parametrize("kind", list(Kind), ids=str)
def test_attack_approval_notice_of_every_kind_carries_no_canary(kind: Kind) -> None:
    notice = for_approval(_approval(kind))
    assert _leaks(_everything(notice)) == []
    assert notice.agent == "bot" and notice.approval_id == "apr_0123456789abcdef01234567"
    assert "expires in 3 min 20 s" in notice.text(now=1100.0)


@pytest.mark.parametrize("kind", list(Kind), ids=str)
def test_attack_deny_notice_of_every_kind_carries_no_canary(kind: Kind) -> None:
    assert _leaks(_everything(for_deny("bot", kind, INTENTS[kind], "rule-1"))) == []


def test_payment_summary_names_amount_asset_and_a_shortened_recipient() -> None:
    notice = for_approval(_approval(Kind.SIGN_TRANSACTION))
    assert notice.category == "payment"
    assert notice.summary == "send 0.25 ETH to 0xdead…ffee with wallet 'main' on ethereum"
    assert short_address(FULL) == "0xdead…ffee"
    approve = for_approval(_approval(Kind.SEND_TRANSACTION)).summary
    assert approve.startswith("let 0xbadc…0bad spend unlimited USDC")


def test_category_of_each_kind_is_in_the_owners_words() -> None:
    got = {k: for_approval(_approval(k)).category.value for k in Kind}
    assert got[Kind.HTTP_REQUEST] == "API call"
    assert got[Kind.READ_DATA] == "data read"
    assert got[Kind.SIGN_MESSAGE] == got[Kind.SIGN_TYPED_DATA] == "message signature"
    assert got[Kind.PAIRING] == "pairing"
    assert for_approval(_approval(Kind.PAIRING)).approve_elsewhere  # words must be typed


def test_attack_control_characters_and_long_names_are_cleaned() -> None:
    intent = Intent(action="data.read", data="a\u202eb\ncd" + "x" * 55)
    summary = for_deny("bot", Kind.READ_DATA, intent, "r\x1b[31m").summary
    assert "\u202e" not in summary and "\n" not in summary and len(summary) < 60


def test_telegram_may_approve_only_within_its_cap_and_never_a_pairing() -> None:
    cap = Cap(amount="0.3", asset="ETH")
    ok, pairing = _approval(Kind.SIGN_TRANSACTION), _approval(Kind.PAIRING)
    assert notify_telegram.may_approve(ok, None) and notify_telegram.may_approve(ok, cap)
    assert not notify_telegram.may_approve(ok, Cap(amount="0.2", asset="ETH"))
    assert not notify_telegram.may_approve(ok, Cap(amount="1", asset="USDC"))
    assert not notify_telegram.may_approve(pairing, None)
    assert not notify_telegram.may_approve(_approval(Kind.SEND_TRANSACTION), cap)  # unlimited
    assert not notify_telegram.may_approve(_approval(Kind.SIGN_TYPED_DATA), cap)
    assert notify_telegram.may_approve(_approval(Kind.HTTP_REQUEST), cap)
    assert not notify_telegram.may_approve(_approval(Kind.RELEASE_CREDENTIAL), cap)


def _with_intent(kind: Kind, intent: Intent) -> Approval:
    a = _approval(kind)
    a.request["intent"] = intent.model_dump(exclude_none=True)
    return a


def test_attack_a_contract_call_with_a_little_value_is_no_payment_and_only_denied_under_a_cap() -> (
    None
):
    """A call (a router pulling tokens, say) with 0.001 ETH attached was shown as "Payment: send
    0.001 ETH" and approvable under a 0.008 ETH cap: what a call moves is in its data."""
    cap = Cap(amount="0.008", asset="ETH")
    call = Intent(
        action="evm.call",
        chain="ethereum",
        wallet="main",
        asset="ETH",
        amount="0.001",
        to=FULL,
        fee="0.0004",
    )
    a = _with_intent(Kind.SIGN_TRANSACTION, call)
    assert not notify_telegram.may_approve(a, cap)
    notice = for_approval(a)
    assert notice.category.value == "transaction signature"
    assert notice.summary.startswith("call 0xdead…ffee (contract code decides what moves)")
    assert "0.001 ETH attached" in notice.summary and "network fee up to 0.0004" in notice.summary
    assert notify_telegram.may_approve(a, None)  # without a cap the owner decides on the phone


def test_the_fee_counts_against_the_cap() -> None:
    cap = Cap(amount="0.008", asset="ETH")

    def transfer(amount: str, fee: str) -> Approval:
        return _with_intent(
            Kind.SIGN_TRANSACTION,
            Intent(
                action="evm.transfer",
                chain="ethereum",
                wallet="main",
                asset="ETH",
                amount=amount,
                to=FULL,
                fee=fee,
            ),
        )

    assert notify_telegram.may_approve(transfer("0.005", "0.001"), cap)
    assert not notify_telegram.may_approve(transfer("0.001", "0.5"), cap)
    assert not notify_telegram.may_approve(transfer("0.007", "0.002"), cap)


@pytest.mark.parametrize(
    ("text", "cap"), [("0.1ETH", "0.1 ETH"), (" 25 usdc ", "25 USDC"), ("1 SOL", "1 SOL")]
)
def test_parse_cap(text: str, cap: str) -> None:
    assert notify_channels.parse_cap(text).describe() == cap


@pytest.mark.parametrize("text", ["ETH", "0.1", "-1ETH", "1,5ETH", "0.1 ETH extra"])
def test_parse_cap_refuses_what_is_not_an_amount_and_asset(text: str) -> None:
    with pytest.raises(MalformedRequestError, match="approval cap"):
        notify_channels.parse_cap(text)


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example/ks", "http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]:8/"],
)
def test_webhook_url_https_or_loopback_is_accepted(url: str) -> None:
    assert webhook.check_url(url) == url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://hooks.example/ks", "in clear"),
        ("ftp://x/y", "not a webhook URL"),
        ("https://user:pw@hooks.example/", "password"),
        ("hooks.example", "not a webhook URL"),
    ],
)
def test_webhook_url_refused_says_why(url: str, words: str) -> None:
    with pytest.raises(MalformedRequestError, match=words):
        webhook.check_url(url)


def test_webhook_signature_verifies_and_refuses_tamper_and_staleness() -> None:
    secret = webhook.new_secret()
    header = webhook.signature_header(secret, b'{"a":1}', 1000)
    assert webhook.verify(secret, b'{"a":1}', header, now=1200)
    assert not webhook.verify(secret, b'{"a":2}', header, now=1200)
    assert not webhook.verify(secret, b'{"a":1}', header, now=1301)
    assert not webhook.verify("whsec_other", b'{"a":1}', header, now=1000)


# -- the outbox, through the service calls that emit ----------------------------------------------


PASS = b"passphrase-123"


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    v, _ = init_vault(
        Home(tmp_path / "h"),
        SecretBytes(bytearray(PASS)),
        kdf=CHEAP_KDF,
        clock=ManualClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
    )
    agents.add_agent(v, "bot")
    policies.set_policy(v, "bot", "version: 1\nrules: []\n")
    return v


def _queued(v: Vault) -> list[tuple[str, str]]:
    with v.db.read() as conn:
        return [(r.event, r.notice) for r in conn.execute(select(t.notify_queue))]


def test_attack_every_alert_through_the_outbox_carries_no_canary(vault: Vault) -> None:
    added = notify_channels.add_webhook(vault, "http://127.0.0.1:9/hook", list(notify.SUBSCRIBABLE))
    assert added.secret.startswith("whsec_")
    with vault.db.write() as conn:
        notify.on_approval(vault, conn, _approval(Kind.HTTP_REQUEST))
        for _ in range(notify.ANOMALY_DENIALS):
            vault.audit(
                conn, actor="agent:bot", action="decide.http.request", target="x", outcome="deny"
            )
            notify.on_deny(vault, conn, "bot", Kind.HTTP_REQUEST, INTENTS[Kind.HTTP_REQUEST], "r")
    agents.set_paused_all(vault, True)
    notify.note_rotation_due(vault, 2, "agent token of bot")
    vault.lock()
    with pytest.raises(WrongPassphraseError):
        notify.unlock_watched(vault, SecretBytes(bytearray(b"wrong-" + PASS)))
    with vault.db.write() as conn:  # an edit in the audit log: verify fails and says so
        conn.execute(t.audit.update().where(t.audit.c.seq == 2).values(outcome="edited"))
    assert not audit.verify(vault).ok
    rows = _queued(vault)
    events = [e for e, _ in rows]
    assert set(events) == set(notify.SUBSCRIBABLE)
    assert events.count("anomaly") == 1  # once per burst
    assert events.count("rotation_due") == 1
    assert notify.note_rotation_due(vault, 2, "again") == 0  # at most daily
    assert _leaks("".join(n for _, n in rows)) == []
    assert added.secret not in json.dumps(rows)


def test_outbox_claims_once_retries_with_backoff_then_dead_letters(vault: Vault) -> None:
    clock = vault.clock
    assert isinstance(clock, ManualClock)
    notify_channels.add_webhook(vault, "https://hooks.example/k", [Event.PAUSE_ALL])
    agents.set_paused_all(vault, True)
    channels = {c.name for c in notify_channels.list_channels(vault)}
    (item,) = notify_outbox.claim(vault, channels=channels)
    assert notify_outbox.claim(vault, channels=channels) == []  # leased: nobody else takes it
    for attempt in (1, 2, 3):
        assert item.attempt == attempt
        dead = notify_outbox.mark_failed(vault, item, "HTTP 500")
        assert dead is (attempt == 3)
        clock.now += timedelta(seconds=60)
        again = notify_outbox.claim(vault, channels=channels)
        if dead:
            assert again == []
        else:
            assert [a.delivery_id for a in again] == [item.delivery_id]  # same id on retry
            item = again[0]
    entries = [e for e in audit.list_entries(vault) if e.action == "notify.dead_letter"]
    assert len(entries) == 1


def test_a_claim_cut_by_a_crash_is_released_at_start_and_keeps_its_id(vault: Vault) -> None:
    notify_channels.add_webhook(vault, "https://hooks.example/k", [Event.PAUSE_ALL])
    agents.set_paused_all(vault, True)
    channels = {c.name for c in notify_channels.list_channels(vault)}
    (cut,) = notify_outbox.claim(vault, channels=channels)
    assert notify_outbox.release_claims(vault) == 1  # the next server's start
    (again,) = notify_outbox.claim(vault, channels=channels)
    assert isinstance(again, Claimed) and again.delivery_id == cut.delivery_id
    notify_outbox.mark_sent(vault, again.delivery_id)
    assert notify_outbox.release_claims(vault) == 0


def test_removing_a_channel_drops_its_queue_and_prune_forgets_old_rows(vault: Vault) -> None:
    clock = vault.clock
    assert isinstance(clock, ManualClock)
    keep = notify_channels.add_webhook(vault, "https://a.example/k", [Event.PAUSE_ALL]).channel.name
    gone = notify_channels.add_webhook(vault, "https://b.example/k", [Event.PAUSE_ALL]).channel.name
    agents.set_paused_all(vault, True)
    notify_channels.remove_channel(vault, gone)
    assert [c.name for c in notify_channels.list_channels(vault)] == [keep]
    with pytest.raises(NotFoundError, match="notify list"):
        notify_channels.remove_channel(vault, gone)
    (item,) = notify_outbox.claim(vault, channels={keep, gone})
    assert item.channel == keep
    notify_outbox.mark_sent(vault, item.delivery_id)
    assert notify_outbox.prune(vault) == 0
    clock.now += timedelta(days=8)
    assert notify_outbox.prune(vault) == 2  # the sent one, and the removed channel's dropped one


def _update(chat_type: str, chat_id: int, from_id: int, *, button: bool) -> Update:
    user = {"id": from_id, "is_bot": False, "first_name": "Mallory"}
    msg = {
        "message_id": 7,
        "date": 0,
        "text": "hi",
        "chat": {"id": chat_id, "type": chat_type},
        "from": user,
    }
    if button:
        body = {
            "callback_query": {
                "id": "q",
                "from": user,
                "chat_instance": "c",
                "data": "x",
                "message": msg,
            }
        }
    else:
        body = {"message": msg}
    return Update.de_json({"update_id": 1, **body}, None)


@pytest.mark.parametrize("button", [False, True])
def test_attack_a_group_chat_or_another_member_never_pairs_or_presses(button: bool) -> None:
    """In a group the bot's pairing code and its buttons are seen by every member: keysafe reads
    only private chats, and only presses by that chat's own user."""
    assert telegram._incoming(_update("private", 42, 42, button=button)) is not None
    assert telegram._incoming(_update("group", -100, 42, button=button)) is None
    assert telegram._incoming(_update("supergroup", -100, 42, button=button)) is None
    assert telegram._incoming(_update("private", 42, 43, button=button)) is None
