"""Every approval kind and every alert, with canary secrets planted everywhere an agent or an
attacker could put them, sent by the server's real notifier through both real channels: what the
Telegram stand-in received and what the webhook receiver received hold none of them.

In-process (the vault, and the notifier thread `keysafe serve` runs), so every kind can be parked
directly; the channels are real HTTP (python-telegram-bot to the stand-in, httpx to the
receiver)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from keysafe import approvals as parked
from keysafe.api.notifier import Notifier
from keysafe.approvals import Kind
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import WrongPassphraseError
from keysafe.policy.intent import Intent
from keysafe.service import agents, audit, credentials, data, notify, notify_channels, policies
from keysafe.service.models import Attachment, DataClass
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault
from tests.conftest import PASSPHRASE
from tests.support.telegram_standin import TelegramStandin
from tests.support.webhook_receiver import WebhookReceiver
from tests.unit.notify.test_notice import CANARIES, FULL, INTENTS

TOKEN = "7000002:CANARY-bot-token-Zq81"
OWNER = 555000555000


def _request(kind: Kind) -> dict[str, Any]:
    intent = INTENTS[kind]
    body: dict[str, Any] = {
        "description": CANARIES["description"],
        "transaction": {"to": FULL, "data": CANARIES["request"]},
        "words": [CANARIES["pairing words"]],
    }
    if intent is not None:
        body |= {"action": intent.action, "intent": intent.model_dump(exclude_none=True)}
    return body


def _queued(vault: Vault) -> list[str]:
    with vault.db.read() as conn:
        return [r.state for r in conn.execute(select(t.notify_queue.c.state))]


def test_attack_every_kind_and_alert_through_both_channels_carries_no_canary(
    tmp_path: Path,
) -> None:
    vault, _ = init_vault(
        Home(tmp_path / "h"), SecretBytes(bytearray(PASSPHRASE.encode())), kdf=CHEAP_KDF
    )
    credentials.add_credential(
        vault,
        "github",
        SecretBytes(bytearray(CANARIES["credential value"].encode())),
        hosts=["api.github.com"],
        attach=Attachment.bearer(),
    )
    data.set_data(
        vault,
        "ssn",
        SecretBytes(bytearray(CANARIES["data value"].encode())),
        data_class=DataClass.SENSITIVE,
    )
    agents.add_agent(vault, "bot")
    policies.set_policy(vault, "bot", "version: 1\nrules: []\n")
    stop = threading.Event()
    with TelegramStandin(TOKEN) as tg, WebhookReceiver() as hooks:
        notify_channels.set_telegram(
            vault,
            SecretBytes(bytearray(TOKEN.encode())),
            OWNER,
            "@keysafe_test_bot",
            list(notify.SUBSCRIBABLE),
            None,
        )
        added = notify_channels.add_webhook(vault, f"{hooks.url}/ok", list(notify.SUBSCRIBABLE))
        hooks.secrets["/ok"] = added.secret
        with vault.db.write() as conn:
            for i, kind in enumerate(Kind):
                a = parked.park(
                    vault,
                    conn,
                    agent="bot",
                    kind=kind,
                    request=_request(kind),
                    fingerprint=f"{i:064x}",
                    summary=CANARIES["summary"] + FULL,
                    rule="ask-rule",
                )
                notify.on_approval(vault, conn, a)
                vault.audit(
                    conn, actor="agent:bot", action="decide.x", target="agent:bot", outcome="deny"
                )
                intent = INTENTS[kind] or Intent(action="pairing")
                notify.on_deny(vault, conn, "bot", kind, intent, "deny-rule")
        agents.set_paused_all(vault, True)
        notify.note_rotation_due(vault, 1, "agent token of bot")
        notify.send_test(vault)
        Notifier(vault, telegram_api=tg.url, stop=stop, release_leases=True).start()
        try:
            hooks.wait_for(lambda: "queued" not in _queued(vault), timeout=30)
            # Locked now: the channels opened while unlocked still carry the alert.
            vault.lock()
            with pytest.raises(WrongPassphraseError):
                notify.unlock_watched(vault, SecretBytes(bytearray(b"not the passphrase")))
            with vault.db.write() as conn:  # an edited audit entry: verification fails
                conn.execute(t.audit.update().where(t.audit.c.seq == 3).values(outcome="x"))
            assert not audit.verify(vault).ok
            hooks.wait_for(
                lambda: (
                    {"unlock_failure", "audit_verify_failure"} <= {d.event for d in hooks.on("/ok")}
                )
            )
            tg.wait_sent(OWNER, "Audit log did not verify")
            hooks.wait_for(lambda: "queued" not in _queued(vault), timeout=30)
        finally:
            stop.set()
            time.sleep(1.5)  # the notifier's last round ends (its long poll is 1 s)
        sent_tg = tg.everything_sent()
        sent_hooks = b"".join(d.body for d in hooks.on("/ok")).decode()
        events = {d.event for d in hooks.on("/ok")}
        assert events == set(notify.SUBSCRIBABLE) | {"test"}
        assert all(d.verified for d in hooks.on("/ok"))
        for sent in (sent_tg, sent_hooks):
            leaks = [name for name, c in CANARIES.items() if c.lower() in sent.lower()]
            assert leaks == []
            assert TOKEN not in sent and added.secret not in sent
        approvals_sent = [m for m in tg.sent_to(OWNER) if "Approval needed" in m.text]
        assert len(approvals_sent) == len(Kind)
        deny_only = [m for m in approvals_sent if [b for b, _ in m.buttons] == ["Deny"]]
        assert len(deny_only) == 1 and "pairing" in deny_only[0].text.lower()
        assert _queued(vault).count("sent") == len(_queued(vault))
