"""Approvals on the owner's phone, against a local stand-in of the Telegram Bot API: pairing by
code, Approve and Deny buttons, and the presses keysafe must refuse (a replayed button, another
chat, an expired or changed request, a request above the owner's Telegram cap, a locked vault).

One `keysafe serve` (real subprocess) and one stand-in serve the whole module; each test makes
its own approvals.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import Cli
from tests.e2e.notify_fixture import notify_vault
from tests.e2e.server_fixture import (
    KEYSAFE,
    MILLI_ETH,
    R1,
    R4,
    Server,
    agent_headers,
    cli_env,
    evm_tx,
    keysafe_server,
)
from tests.support.telegram_standin import TelegramStandin

TOKEN = "7000001:CANARY-bot-token-AAHq9yVqXw3e5Lr2"
OWNER = 987654321987  # the owner's chat
STRANGER = 666  # someone else who found the bot
CANARY = "CANARY-agent-words-5d1c9e"
DOCS_SHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
)  # in the agent's description: must never reach the chat


@dataclass
class Paired:
    tg: TelegramStandin
    server: Server
    client: httpx.Client
    token: str  # the agent's
    home: Path
    pair_output: str

    def sign(self, value_wei: int, *, to: str = R1) -> str:
        """An agent request that parks for the owner; returns the approval id."""
        body = {
            "wallet": "main",
            "transaction": evm_tx(value_wei, to=to),
            "description": f"please pay {CANARY}",
        }
        r = self.client.post(
            "/v1/agent/sign-transaction", json=body, headers=agent_headers(self.token)
        )
        assert r.status_code == 202, r.text
        approval_id: str = r.json()["approval_id"]
        return approval_id

    def status(self, approval_id: str) -> str:
        r = self.client.get(f"/v1/agent/approvals/{approval_id}", headers=agent_headers(self.token))
        assert r.status_code == 200, r.text
        status: str = r.json()["status"]
        return status

    def message_for(self, approval_id: str) -> Any:
        return self.tg.wait_sent(OWNER, approval_id)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.home / "vault.db", timeout=30)


def _pair(home: Path, tg: TelegramStandin, tmp: Path) -> str:
    token_file = tmp / "bot.token"
    token_file.write_text(TOKEN + "\n")
    env = cli_env(home, KEYSAFE_TELEGRAM_API_URL=tg.url)
    proc = subprocess.Popen(
        [
            KEYSAFE,
            "notify",
            "telegram",
            "--bot-token-file",
            str(token_file),
            "--approve-up-to",
            "0.008ETH",
            "--wait",
            "30",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        tg.wait_polling()  # the CLI listens: only a message sent from now on counts
        tg.user_says(OWNER, "hello bot")
        code = re.search(r"code: (\d{6})", tg.wait_sent(OWNER, "pairing code").text)
        assert code is not None
        out, err = proc.communicate((code.group(1) + "\n").encode(), timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    tg.wait_sent(OWNER, "Paired")
    return out.decode() + err.decode()


@pytest.fixture(scope="module")
def paired(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Paired]:
    root = tmp_path_factory.mktemp("notify-telegram")
    home, token = notify_vault(tmp_path_factory, root)
    with TelegramStandin(TOKEN) as tg:
        said = _pair(home, tg, root)
        env = cli_env(home, KEYSAFE_TELEGRAM_API_URL=tg.url)
        with keysafe_server(env, "--unlock", log_dir=root) as server, server.client() as c:
            yield Paired(tg, server, c, token, home, said)


def test_pairing_proves_the_chat_and_seals_the_token(paired: Paired) -> None:
    assert "Paired @keysafe_test_bot" in paired.pair_output
    cli = Cli(paired.home, cli_env(paired.home))
    listed = cli.ok("notify", "list", "--json").stdout
    assert '"telegram"' in listed and "0.008 ETH" not in listed  # the cap is a model, not text
    assert '"amount": "0.008"' in listed
    # Neither the token nor the chat id is stored or printed in clear.
    raw = b"".join(p.read_bytes() for p in paired.home.iterdir() if p.is_file())
    assert TOKEN.encode() not in raw and str(OWNER).encode() not in raw
    assert TOKEN not in listed + paired.pair_output + paired.server.log()


def test_approve_button_approves_through_the_owner_path_and_works_once(paired: Paired) -> None:
    approval_id = paired.sign(6 * MILLI_ETH)  # under the 0.008 ETH cap
    msg = paired.message_for(approval_id)
    assert [label for label, _ in msg.buttons] == ["Approve", "Deny"]
    assert "Payment: send 0.006 ETH to 0x1111…1111" in msg.text
    assert "expires in" in msg.text and "Agent: bot" in msg.text
    approve, deny_data = msg.button("Approve"), msg.button("Deny")
    qid = paired.tg.press(OWNER, msg.message_id, approve)
    assert paired.tg.wait_answer(qid) == "Approved."
    assert paired.status(approval_id) == "approved"
    paired.tg.wait_for(lambda: "Approved from Telegram." in msg.text)
    assert "0x1111…1111" in msg.text and not msg.buttons  # the notice stays, its buttons go
    # The same button again (a replay), and the other button of the message: both refused.
    again = paired.tg.press(OWNER, msg.message_id, approve)
    assert "already used" in paired.tg.wait_answer(again)
    deny = paired.tg.press(OWNER, msg.message_id, deny_data)
    assert "already used" in paired.tg.wait_answer(deny)
    assert paired.status(approval_id) == "approved"


def test_deny_button_denies(paired: Paired) -> None:
    approval_id = paired.sign(MILLI_ETH, to=R4)
    msg = paired.message_for(approval_id)
    qid = paired.tg.press(OWNER, msg.message_id, msg.button("Deny"))
    assert paired.tg.wait_answer(qid) == "Denied."
    assert paired.status(approval_id) == "denied"


def test_attack_button_pressed_in_another_chat_is_refused_and_audited(paired: Paired) -> None:
    approval_id = paired.sign(2 * MILLI_ETH, to=R4)
    msg = paired.message_for(approval_id)
    qid = paired.tg.press(STRANGER, msg.message_id, msg.button("Approve"), name="Mallory")
    assert "not paired" in paired.tg.wait_answer(qid)
    assert paired.status(approval_id) == "pending"
    audit = Cli(paired.home, cli_env(paired.home)).ok("audit", "--json").stdout
    assert "notify.telegram.button" in audit and f"telegram:{STRANGER}" in audit
    # The owner's own press still works: the stranger spent nothing.
    ok = paired.tg.press(OWNER, msg.message_id, msg.button("Approve"))
    assert paired.tg.wait_answer(ok) == "Approved."


def test_button_of_an_expired_approval_is_refused(paired: Paired) -> None:
    approval_id = paired.sign(3 * MILLI_ETH, to=R4)
    msg = paired.message_for(approval_id)
    with paired.db() as db:
        db.execute(
            "UPDATE approvals SET expires_at = ? WHERE id = ?", (time.time() - 1, approval_id)
        )
    qid = paired.tg.press(OWNER, msg.message_id, msg.button("Approve"))
    assert "already expired" in paired.tg.wait_answer(qid)
    assert paired.status(approval_id) == "expired"


def test_attack_button_of_a_changed_request_is_refused(paired: Paired) -> None:
    approval_id = paired.sign(4 * MILLI_ETH, to=R4)
    msg = paired.message_for(approval_id)
    with paired.db() as db:  # someone with the files swaps what the owner was shown
        (request,) = db.execute(
            "SELECT request FROM approvals WHERE id = ?", (approval_id,)
        ).fetchone()
        db.execute(
            "UPDATE approvals SET request = ? WHERE id = ?",
            (request.replace("0x4444", "0x2222"), approval_id),
        )
    qid = paired.tg.press(OWNER, msg.message_id, msg.button("Approve"))
    assert "changed" in paired.tg.wait_answer(qid)
    assert paired.status(approval_id) == "pending"


def test_over_the_cap_telegram_may_only_deny(paired: Paired) -> None:
    approval_id = paired.sign(9 * MILLI_ETH)  # above the 0.008 ETH cap
    msg = paired.message_for(approval_id)
    assert [label for label, _ in msg.buttons] == ["Deny"]
    assert "Approve on the web page or CLI" in msg.text
    qid = paired.tg.press(OWNER, msg.message_id, msg.button("Deny"))
    assert paired.tg.wait_answer(qid) == "Denied."


def test_approve_while_locked_says_so_and_works_after_unlock(paired: Paired) -> None:
    approval_id = paired.sign(5 * MILLI_ETH, to=R4)
    msg = paired.message_for(approval_id)
    session = paired.server.login()
    r = paired.client.post("/v1/owner/lock", headers={"authorization": f"Bearer {session}"})
    assert r.status_code == 200, r.text
    qid = paired.tg.press(OWNER, msg.message_id, msg.button("Approve"))
    assert "locked" in paired.tg.wait_answer(qid)
    paired.server.login()  # unlocks again
    assert paired.status(approval_id) == "pending"
    qid = paired.tg.press(OWNER, msg.message_id, msg.button("Approve"))
    assert paired.tg.wait_answer(qid) == "Approved."


def test_nothing_private_reaches_the_chat(paired: Paired) -> None:
    paired.message_for(paired.sign(7 * MILLI_ETH))
    sent = paired.tg.everything_sent()
    for secret in (CANARY, R1, R4, TOKEN, "please pay"):
        assert secret not in sent


def test_notify_test_reaches_the_chat(paired: Paired) -> None:
    out = paired.server.cli().ok("notify", "test").stdout
    assert "1 channel" in out
    paired.tg.wait_sent(OWNER, "Test notification")
    assert os.environ.get("KEYSAFE_TELEGRAM_API_URL") is None  # the tests set it per process


def test_screenshot_of_an_approval_message_for_the_docs(paired: Paired) -> None:
    """docs/screenshots/telegram-approval.png: the message as the stand-in renders it."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip("no Chromium binary (install Debian's `chromium`)")
    msg = paired.message_for(paired.sign(6 * MILLI_ETH))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 560, "height": 400})
            page.goto(f"{paired.tg.url}/_view/{OWNER}?message={msg.message_id}")
            DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
            page.locator("main").screenshot(
                path=str(DOCS_SHOTS / "telegram-approval.png"), animations="disabled"
            )
            assert page.locator(".key").all_inner_texts() == ["Approve", "Deny"]
        finally:
            browser.close()


def test_pairing_the_served_bot_again_is_refused_with_the_way_out(paired: Paired) -> None:
    token_file = paired.home.parent / "bot.token"
    cli = paired.server.cli()
    again = cli(
        "notify",
        "telegram",
        "--bot-token-file",
        str(token_file),
        "--wait",
        "5",
        env={"KEYSAFE_TELEGRAM_API_URL": paired.tg.url},
    )
    assert again.exit_code == 1
    assert "keysafe notify remove telegram" in again.stderr
    assert TOKEN not in again.stderr + again.stdout
