"""The owner's web page in a real browser: Playwright (Python) drives Debian's Chromium against a
real `keysafe serve` subprocess. An agent's request waits; the test clicks on the page like the
owner would; the agent gets its signed transaction (or a denial, with the budget untouched).

One vault and one server are built per module (per xdist worker); every test logs in through the
page itself and touches only its own approvals and agents, so the tests do not depend on order.
Screenshots of each section go to test-artifacts/web/ (gitignored) for a person to look at; the
ones the README shows (approval card, agents with their spending charts, audit filters) are
rewritten in docs/screenshots/ on every run, from a fixed viewport in the light colour scheme.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from keysafe.testing import free_port
from tests.conftest import PASSPHRASE, Cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(
        "no Chromium binary (install Debian's `chromium`; scripts/test does it)",
        allow_module_level=True,
    )

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEYSAFE = shutil.which("keysafe", path=str(Path(sys.executable).parent)) or "keysafe"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "web"
DOCS_SHOTS = REPO / "docs" / "screenshots"
CANARY = "CANARY-web-7f3a9c1e-do-not-show"
R1 = "0x1111111111111111111111111111111111111111"
POLICY = """\
version: 1
rules:
  - name: pay-eth
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    max_per_tx: {ETH: "1"}
    limits:
      - {window: 24h, max: {ETH: "1.5"}}
      - {window: 1h, max_count: 20}
    approve_above: {ETH: "0.1"}
"""


@dataclass
class Server:
    url: str
    home: Path
    address: str  # the EVM wallet `main`
    tokens: dict[str, str]  # agent name -> bearer token
    log: Path


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"keysafe serve exited: {log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).json()["ok"]:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("keysafe serve did not answer /v1/health within 30 s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("web")
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")} | {
        "KEYSAFE_HOME": str(home),
        "KEYSAFE_PASSPHRASE": PASSPHRASE,
    }
    cli = Cli(home, env)
    cli.ok("init", "--json")
    address = json.loads(cli.ok("wallet", "create", "main", "--chain", "evm", "--json").stdout)
    policy = root / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    tokens = {
        name: json.loads(cli.ok("agent", "add", name, "--policy", str(policy), "--json").stdout)[
            "token"
        ]
        for name in ("bot", "granted", "spare")
    }
    cli.ok("credential", "add", "canary", "--host", "api.example.com", input=CANARY)
    port = free_port()
    log = root / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [KEYSAFE, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield Server(url, home, address["address"], tokens, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """A fresh browser profile (no cookie, no CSRF token) on the server's page."""
    context = browser.new_context(
        viewport={"width": 1200, "height": 860}, base_url=server.url, color_scheme="light"
    )
    p = context.new_page()
    p.set_default_timeout(10_000)
    problems: list[str] = []
    p.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    p.on(
        "console",
        lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    yield p
    context.close()
    assert not problems, f"the page broke or hit the CSP: {problems}"


# -- helpers ---------------------------------------------------------------------------------------


def unlock(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_role("heading", name="Pending approvals")).to_be_visible()


def pay_small(server: Server, agent: str, nonce: int) -> None:
    """0.05 ETH, under approve_above: signed at once and booked against the agent's windows."""
    tx = {
        "to": R1,
        "value": hex(5 * 10**16),
        "chainId": 1,
        "nonce": nonce,
        "gas": 21000,
        "gasPrice": hex(10**9),
    }
    r = httpx.post(
        f"{server.url}/v1/agent/sign-transaction",
        headers={"Authorization": f"Bearer {server.tokens[agent]}"},
        json={"wallet": "main", "transaction": tx},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["status"] == "signed", r.text


def ask(server: Server, agent: str, eth: str, nonce: int, description: str | None = None) -> str:
    """The agent asks to sign a transfer above approve_above; returns the approval id."""
    tx = {
        "to": R1,
        # Hex, not a JSON integer: canonical JSON (RFC 8785) refuses integers above 2**53.
        "value": hex(int(Decimal(eth) * 10**18)),
        "chainId": 1,
        "nonce": nonce,
        "gas": 21000,
        "gasPrice": hex(10**9),
    }
    r = httpx.post(
        f"{server.url}/v1/agent/sign-transaction",
        headers={"Authorization": f"Bearer {server.tokens[agent]}"},
        json={"wallet": "main", "transaction": tx, "description": description},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "pending_approval"
    approval_id: str = body["approval_id"]
    return approval_id


def agent_wait(server: Server, agent: str, approval_id: str, wait: int) -> dict[str, Any]:
    """The agent's long poll for the owner's decision."""
    deadline = time.monotonic() + wait
    while True:
        r = httpx.get(
            f"{server.url}/v1/agent/approvals/{approval_id}",
            params={"wait": wait},
            headers={"Authorization": f"Bearer {server.tokens[agent]}"},
            timeout=wait + 30,
        )
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        # Known race in service/approvals.approve: the row says "approved" a moment before the
        # signed result is stored, and the long poll returns at once. Ask again until the result
        # is there (drop this loop once approve() stores status and result together).
        if answer["status"] != "approved" or "result" in answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def owner_get(page: Page, path: str) -> Any:
    """An owner GET with the page's own session cookie (no second login)."""
    return page.evaluate(
        "async (path) => { const r = await fetch(path); return { status: r.status, "
        "body: await r.text() }; }",
        path,
    )


def live_ledger_rows(server: Server, agent: str) -> int:
    with closing(sqlite3.connect(server.home / "vault.db")) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM ledger WHERE agent = ? AND state IN ('reserved', 'committed')",
            (agent,),
        ).fetchone()
    return int(count)


def card_of(page: Page, approval_id: str) -> Locator:
    return page.locator(f'article[data-id="{approval_id}"]')


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def docs_shot(part: Locator, name: str) -> None:
    """A screenshot the README links to (docs/screenshots/NAME.png), of one part of the page."""
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    part.screenshot(path=str(DOCS_SHOTS / f"{name}.png"), animations="disabled", caret="hide")


def owner_post(page: Page, path: str) -> Any:
    """An owner POST with the page's own session cookie and CSRF token (no second login)."""
    return page.evaluate(
        "async (path) => { const r = await fetch(path, { method: 'POST', headers: "
        "{ 'X-CSRF-Token': sessionStorage.getItem('ks_csrf') } }); "
        "return { status: r.status, body: await r.json() }; }",
        path,
    )


def budget_left(page: Page, agent: str, rule: str, window: str) -> Decimal:
    for a in json.loads(owner_get(page, "/v1/owner/agents")["body"]):
        if a["name"] == agent:
            for w in a["budget"]:
                if (w["rule"], w["window"], w["asset"]) == (rule, window, "ETH"):
                    return Decimal(w["left"])
    raise AssertionError(f"no {window} ETH window of rule {rule} for {agent}")


# -- tests -----------------------------------------------------------------------------------------


def test_page_is_served_with_a_strict_csp(server: Server) -> None:
    r = httpx.get(f"{server.url}/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    # Nothing inline that the CSP would block, and no third-party URL (works offline).
    assert not re.search(r"<script(?![^>]*\bsrc=)", r.text)
    assert not re.search(r"\sstyle=|\son[a-z]+=", r.text)
    assert "http://" not in r.text and "https://" not in r.text
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        asset = httpx.get(f"{server.url}/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert "http://" not in asset.text and "https://" not in asset.text
    assert httpx.get(f"{server.url}/static/index.html").status_code == 404


def test_unlock_through_the_page(server: Server, page: Page) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Unlock the vault")).to_be_visible()
    expect(page.get_by_role("heading", name="Pending approvals")).to_be_hidden()

    page.get_by_label("Passphrase").fill("not the passphrase")
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_role("alert")).to_contain_text("passphrase")
    assert "not the passphrase" not in page.content()

    page.get_by_label("Passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_role("heading", name="Pending approvals")).to_be_visible()
    expect(page.locator("#vault-state")).to_contain_text("Vault unlocked")
    assert PASSPHRASE not in page.content()
    assert page.locator("#passphrase").input_value() == ""
    assert httpx.get(f"{server.url}/v1/health").json()["unlocked"] is True


def test_agent_waits_and_owner_approves_on_the_page(server: Server, page: Page) -> None:
    unlock(page)
    approval_id = ask(server, "bot", "0.5", nonce=1)
    card = card_of(page, approval_id)
    expect(card.get_by_role("heading")).to_have_text(
        "send 0.5 ETH on Ethereum to 0x1111…1111, max fee 0.000021 ETH", timeout=5000
    )
    expect(card).to_contain_text("pay-eth")
    expect(card.locator("details pre")).to_be_hidden()  # raw details folded away

    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(agent_wait, server, "bot", approval_id, 20)
        time.sleep(0.3)  # the agent is now in its long poll
        card.get_by_role("button", name="Approve", exact=True).click()
        answer = waiting.result(timeout=40)

    assert answer["status"] == "approved", answer
    raw = answer["result"]["signed_transaction"]
    assert Account.recover_transaction(raw) == server.address
    expect(page.locator("#message")).to_contain_text("Approved: send 0.5 ETH")
    expect(card).to_have_count(0)


def test_approve_for_a_while_lets_the_next_request_pass(server: Server, page: Page) -> None:
    unlock(page)
    approval_id = ask(server, "granted", "0.2", nonce=1)
    card = card_of(page, approval_id)
    card.get_by_label("or approve and allow requests like this for").select_option(
        label="15 minutes"
    )
    card.get_by_role("button", name="Approve for 15 minutes").click()
    assert agent_wait(server, "granted", approval_id, 10)["status"] == "approved"

    r = httpx.post(
        f"{server.url}/v1/agent/sign-transaction",
        headers={"Authorization": f"Bearer {server.tokens['granted']}"},
        json={
            "wallet": "main",
            "transaction": {
                "to": R1,
                "value": hex(2 * 10**17),
                "chainId": 1,
                "nonce": 2,
                "gas": 21000,
                "gasPrice": hex(10**9),
            },
        },
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["status"] == "signed", r.text

    # The grant is listed with what it covers, and revoking it on the page ends it.
    row = page.locator("#grant-rows tr").filter(has_text="granted")
    expect(row).to_contain_text(R1.lower(), timeout=5000)
    row.get_by_role("button", name=re.compile("^Revoke grant")).click()
    expect(page.locator("#message")).to_contain_text("Grant revoked")
    expect(page.locator("#grant-rows tr").filter(has_text="granted")).to_have_count(0)
    assert ask(server, "granted", "0.2", nonce=3)  # asks again (ask() checks the 202)


def test_deny_on_the_page_leaves_the_budget_untouched(server: Server, page: Page) -> None:
    unlock(page)
    rows_before = live_ledger_rows(server, "bot")
    budget_before = json.loads(owner_get(page, "/v1/owner/agents")["body"])
    approval_id = ask(server, "bot", "0.3", nonce=2)
    card = card_of(page, approval_id)
    expect(card.get_by_role("heading")).to_have_text(
        "send 0.3 ETH on Ethereum to 0x1111…1111, max fee 0.000021 ETH"
    )
    card.get_by_role("button", name="Deny").click()

    answer = agent_wait(server, "bot", approval_id, 10)
    assert answer["status"] == "denied" and "result" not in answer
    expect(page.locator("#message")).to_contain_text("Denied: send 0.3 ETH")
    expect(card).to_have_count(0)
    assert live_ledger_rows(server, "bot") == rows_before
    budget_after = json.loads(owner_get(page, "/v1/owner/agents")["body"])
    assert [a["budget"] for a in budget_after] == [a["budget"] for a in budget_before]


def test_agents_page_pauses_resumes_and_revokes(server: Server, page: Page) -> None:
    unlock(page)
    page.get_by_role("link", name="Agents").click()
    card = page.locator("article.agent", has=page.get_by_role("heading", name=re.compile("^spare")))
    expect(card).to_contain_text("allow evm.transfer from wallet main on ethereum of ETH")
    expect(card.get_by_role("table")).to_contain_text("1.5 ETH")
    auth = {"Authorization": f"Bearer {server.tokens['spare']}"}

    def small_transfer(nonce: int) -> httpx.Response:  # under approve_above: no approval needed
        tx = {
            "to": R1,
            "value": hex(5 * 10**16),
            "chainId": 1,
            "nonce": nonce,
            "gas": 21000,
            "gasPrice": hex(10**9),
        }
        return httpx.post(
            f"{server.url}/v1/agent/sign-transaction",
            headers=auth,
            json={"wallet": "main", "transaction": tx},
            timeout=30,
        )

    card.get_by_role("button", name="Pause").click()
    expect(card.locator(".badge")).to_have_text("paused")
    refused = small_transfer(1)
    assert refused.status_code == 403, refused.text
    card.get_by_role("button", name="Resume").click()
    expect(card.locator(".badge")).to_have_text("active")
    assert small_transfer(2).json()["status"] == "signed"

    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="Revoke").click()
    expect(card.locator(".badge")).to_have_text("revoked")
    expect(card.get_by_role("button")).to_have_count(0)
    assert httpx.get(f"{server.url}/v1/agent/capabilities", headers=auth).status_code == 401


def test_verify_chain_lists_entries_written_while_locked_then_seals_them(
    server: Server, page: Page
) -> None:
    # A wrong passphrase is audited without the owner's key: an entry the page must show the
    # owner before it is sealed.
    # Lock first (an earlier test may have left it unlocked), through an owner session.
    session = httpx.post(
        f"{server.url}/v1/owner/login", json={"passphrase": PASSPHRASE}, timeout=60
    ).json()["session"]
    locked = httpx.post(
        f"{server.url}/v1/owner/lock", headers={"authorization": f"Bearer {session}"}, timeout=30
    )
    assert locked.status_code == 200, locked.text
    wrong = httpx.post(
        f"{server.url}/v1/owner/login", json={"passphrase": "not it at all"}, timeout=30
    )
    assert wrong.status_code == 401
    unlock(page)
    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#audit-rows tr").first).to_be_visible()
    page.get_by_role("button", name="Verify chain").click()
    result = page.locator("#verify-result")
    expect(result).to_contain_text("written while the vault was locked")
    expect(result.locator("ul.unsealed li").first).to_be_visible()
    shot(page, "audit-unsealed")
    page.get_by_role("button", name=re.compile(r"Seal these \d+ entries")).click()
    expect(result).to_contain_text("Chain OK")
    shot(page, "audit-verified")


def test_every_section_renders_and_never_shows_a_secret(server: Server, page: Page) -> None:
    secrets = [CANARY, PASSPHRASE, *server.tokens.values()]

    def assert_clean(where: str) -> None:
        html = page.content()
        for secret in secrets:
            assert secret not in html, f"a secret is on the {where} page"

    page.goto("/")
    expect(page.get_by_role("heading", name="Unlock the vault")).to_be_visible()
    shot(page, "unlock")
    assert_clean("unlock")

    unlock(page)
    # Stays pending (for the screenshot); its agent-written description tries to inject markup.
    markup = "<img src=x id=injected><b>pay the invoice</b>"
    approval_id = ask(server, "bot", "0.25", nonce=3, description=markup)
    expect(card_of(page, approval_id)).to_be_visible()
    shot(page, "approvals")
    card_of(page, approval_id).get_by_text("Raw request").click()
    expect(card_of(page, approval_id).locator("pre")).to_contain_text('"nonce": 3')
    expect(card_of(page, approval_id).locator("pre")).to_contain_text(markup)  # shown as text
    assert page.locator("#injected").count() == 0
    shot(page, "approvals-raw")
    assert_clean("approvals")

    page.get_by_role("link", name="Agents").click()
    expect(page.get_by_role("heading", name=re.compile("^bot"))).to_be_visible()
    shot(page, "agents")
    assert_clean("agents")

    page.get_by_role("link", name="Wallets").click()
    expect(page.get_by_text(server.address)).to_be_visible()
    shot(page, "wallets")
    assert_clean("wallets")

    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#audit-rows")).to_contain_text("credential.add")
    shot(page, "audit")
    assert_clean("audit")

    # What the page reads from the server holds no secret either, nor does the server's log.
    for path in (
        "/v1/owner/status",
        "/v1/owner/approvals?all=true",
        "/v1/owner/agents",
        "/v1/owner/wallets",
        "/v1/owner/audit?limit=1000",
    ):
        answer = owner_get(page, path)
        assert answer["status"] == 200, answer
        assert CANARY not in answer["body"] and PASSPHRASE not in answer["body"]
    assert CANARY not in server.log.read_text(errors="replace")


def test_lock_button_locks_the_vault(server: Server, page: Page) -> None:
    unlock(page)
    page.get_by_role("button", name="Lock vault").click()
    expect(page.get_by_role("heading", name="Unlock the vault")).to_be_visible()
    expect(page.locator("#message")).to_contain_text("Vault locked")
    assert httpx.get(f"{server.url}/v1/health").json()["unlocked"] is False
    assert owner_get(page, "/v1/owner/status")["status"] == 401  # the session ended too
    unlock(page)  # and the page unlocks it again
    assert httpx.get(f"{server.url}/v1/health").json()["unlocked"] is True


# -- issue 14: the approval card, deny reasons, prefixes, spending, audit filters ------------------


def test_approval_card_shows_what_the_owner_decides_on_and_the_reason_reaches_the_agent(
    server: Server, page: Page
) -> None:
    unlock(page)
    before = budget_left(page, "bot", "pay-eth", "24h")
    approval_id = ask(server, "bot", "0.2", nonce=10, description="Pay invoice 42 (GPU rental)")
    card = card_of(page, approval_id)
    expect(card.locator("blockquote.said")).to_have_text("bot says: Pay invoice 42 (GPU rental)")
    recipient = card.locator("dd code.address").first
    expect(recipient).to_have_text(R1)  # whole, never shortened
    expect(recipient.locator("strong")).to_have_text(["0x1111", "1111"])
    expect(card).to_contain_text("up to 0.000021 ETH")  # the network fee
    expect(card.get_by_text(approval_id, exact=True)).to_be_visible()  # the id, whole
    # The budget from the gate's own decision: before, and after this request with its fee.
    row = card.locator("table.effect tbody tr").filter(has_text="per 24h")
    after = before - Decimal("0.200021")
    expect(row.locator("td")).to_have_text(
        [
            "pay-eth",
            "per 24h",
            "1.5 ETH",
            f"{before.normalize():f} ETH",
            f"{after.normalize():f} ETH",
        ]
    )
    expect(card.locator("summary")).to_have_text("Raw request (exactly what will be signed)")
    expect(card.get_by_role("button", name="Approve for 1 hour")).to_be_visible()
    docs_shot(card, "approval-card")

    card.get_by_label("Reason for the agent (optional)").fill("Wrong invoice: use March's")
    card.get_by_role("button", name="Deny").click()
    answer = agent_wait(server, "bot", approval_id, 10)
    assert answer["status"] == "denied" and answer["reason"] == "Wrong invoice: use March's"
    expect(page.locator("#message")).to_contain_text("bot is told: “Wrong invoice: use March's”")


def test_attack_hostile_description_recipient_and_reason_render_as_text(
    server: Server, page: Page
) -> None:
    # The agent writes the description; the decoded intent is display data in the vault's file
    # (someone who can edit that file can put anything there); the owner types the reason.
    hostile = '<img src=x id=pwn-desc onerror="document.title=1">'
    approval_id = ask(server, "granted", "0.3", nonce=11, description=hostile)
    with closing(sqlite3.connect(server.home / "vault.db")) as conn:
        (raw,) = conn.execute(
            "SELECT request FROM approvals WHERE id = ?", (approval_id,)
        ).fetchone()
        request = json.loads(raw)
        request["intent"]["to"] = "<svg id=pwn-to onload=alert(1)>"
        request["intent"]["url"] = "javascript:alert(1)"
        conn.execute(
            "UPDATE approvals SET request = ? WHERE id = ?", (json.dumps(request), approval_id)
        )
        conn.commit()
    unlock(page)
    card = card_of(page, approval_id)
    expect(card.locator("blockquote.said q")).to_have_text(hostile)
    expect(card.locator("dd code.address").first).to_have_text("<svg id=pwn-to onload=alert(1)>")
    expect(card).to_contain_text("javascript:alert(1)")
    assert card.locator("a").count() == 0  # a URL is text, never a link

    reason = "<img src=x id=pwn-reason onerror=alert(1)>\u202egnp.exe\nsecond line"
    card.get_by_label("Reason for the agent (optional)").fill(reason)
    card.get_by_role("button", name="Deny").click()
    expect(page.locator("#message")).to_contain_text("<img src=x id=pwn-reason")
    answer = agent_wait(server, "granted", approval_id, 10)
    # The agent gets text, with the bidi override and the line break flattened to spaces.
    assert answer["reason"] == "<img src=x id=pwn-reason onerror=alert(1)> gnp.exe second line"
    for planted in ("#pwn-desc", "#pwn-to", "#pwn-reason"):
        assert page.locator(planted).count() == 0, planted
    assert page.title() != "1"


def test_owner_routes_take_a_unique_prefix_and_the_page_shows_ids_whole(
    server: Server, page: Page
) -> None:
    unlock(page)
    approval_id = ask(server, "bot", "0.15", nonce=12)
    # A decided approval whose id shares the first 12 characters (a collision made on purpose).
    twin = approval_id[:12] + "".join("1" if c == "0" else "0" for c in approval_id[12:])
    with closing(sqlite3.connect(server.home / "vault.db")) as conn:
        conn.execute(
            "INSERT INTO approvals (id, agent, kind, request, fingerprint, summary, rule, "
            "created_at, expires_at, status) VALUES (?, 'bot', 'sign_transaction', '{}', ?, "
            "'old', 'pay-eth', 0, 1, 'denied')",
            (twin, "0" * 64),
        )
        conn.commit()
    short = owner_post(page, "/v1/owner/approvals/apr_12/deny")
    assert short["status"] == 400 and "at least 6 characters" in short["body"]["error"]["next"]
    both = owner_post(page, f"/v1/owner/approvals/{approval_id[:12]}/deny")
    assert both["status"] == 400, both
    assert approval_id in both["body"]["error"]["message"]
    assert twin in both["body"]["error"]["message"]
    # The page lists the pending one with its whole id.
    expect(card_of(page, approval_id).get_by_text(approval_id, exact=True)).to_be_visible()

    # Deny by a prefix without "apr_": the answer names the whole id.
    done = owner_post(page, f"/v1/owner/approvals/{approval_id[4:14]}/deny")
    assert done["status"] == 200 and done["body"]["approval_id"] == approval_id
    assert agent_wait(server, "bot", approval_id, 10)["status"] == "denied"


def test_agents_page_charts_spending_per_agent_and_asset(server: Server, page: Page) -> None:
    pay_small(server, "bot", nonce=13)
    unlock(page)
    week = json.loads(owner_get(page, "/v1/owner/spending?range=7d")["body"])
    assert (week["range"], week["bucket_seconds"], len(week["buckets"])) == ("7d", 21600, 28)
    [bot] = [s for s in week["series"] if s["agent"] == "bot"]
    assert bot["asset"] == "ethereum:native" and Decimal(bot["total"]) >= Decimal("0.050021")
    assert owner_get(page, "/v1/owner/spending?range=1y")["status"] == 400

    page.get_by_role("link", name="Agents").click()
    card = page.locator("article.agent", has=page.get_by_role("heading", name=re.compile("^bot")))
    chart = card.locator("figure.spend").filter(has_text="ETH")
    expect(chart.locator("rect.bar")).to_have_count(24)  # hourly over 24 hours
    expect(chart.locator("rect.bar:not(.zero)").first).to_be_visible()
    day = json.loads(owner_get(page, "/v1/owner/spending?range=24h")["body"])
    [bot_day] = [s for s in day["series"] if s["agent"] == "bot"]
    expect(chart.locator("figcaption")).to_contain_text(f"{bot_day['total']} ETH")
    docs_shot(card, "agents-spending")
    page.get_by_role("button", name="7 d").click()
    expect(page.get_by_role("button", name="7 d")).to_have_attribute("aria-pressed", "true")
    expect(chart.locator("rect.bar")).to_have_count(28)  # 6-hourly over 7 days
    expect(chart.locator("figcaption")).to_contain_text(f"{bot['total']} ETH")


def test_audit_filters_and_json_lines_export(server: Server, page: Page) -> None:
    pay_small(server, "bot", nonce=14)
    unlock(page)
    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#audit-rows tr").first).to_be_visible()
    page.get_by_label("Agent", exact=True).select_option("bot")
    page.get_by_label("Action", exact=True).fill("decide.")
    page.get_by_label("Outcome", exact=True).select_option("allow")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#audit-rows tr")
    expect(rows.first).to_contain_text("decide.evm.transfer")
    expect(page.locator("#audit-caption")).to_contain_text("matching entries")
    for cells in rows.all():
        expect(cells.locator("strong")).to_have_text(re.compile(r"^decide\."))
        expect(cells.locator(".outcome")).to_have_text("allow")
        expect(cells).to_contain_text("bot")
    docs_shot(page.locator("#audit"), "audit-filters")

    with page.expect_download() as info:
        page.get_by_role("link", name="Export JSON lines").click()
    download = info.value
    assert download.suggested_filename == "keysafe-audit.jsonl"
    lines = Path(download.path()).read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) >= rows.count() > 0
    assert all(e["action"].startswith("decide.") and e["outcome"] == "allow" for e in entries)
    assert all("bot" in (e["actor"], e["details"].get("agent")) for e in entries)
    head = page.evaluate(
        "async (p) => (await fetch(p)).headers.get('content-type')",
        "/v1/owner/audit/export?outcome=deny",
    )
    assert head.startswith("application/x-ndjson")
    bad = owner_get(page, "/v1/owner/audit?outcome=%3Cscript%3E")
    assert bad["status"] == 400


def test_due_rotations_are_listed_under_the_vault_state_with_the_command(
    server: Server, page: Page
) -> None:
    """The owner's rotation policy (`keysafe rotation-policy`) lists on the page what agents hold
    that is due for replacement; the page shows none while nothing is due."""
    unlock(page)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")} | {
        "KEYSAFE_HOME": str(server.home),
        "KEYSAFE_PASSPHRASE": PASSPHRASE,
    }
    cli = Cli(server.home, env)
    policy = server.home.parent / "policy.yaml"  # its own agent: other tests pause and revoke
    added = cli.ok("agent", "add", "rotating", "--policy", str(policy), "--json").stdout
    server.tokens["rotating"] = json.loads(added)["token"]
    due = page.locator("#rotations-due")
    try:
        cli.ok("rotation-policy", "--after-uses", "1")  # through the unlocked server
        pay_small(server, "rotating", nonce=21)
        expect(due).to_contain_text("agent token of rotating, used 1 times", timeout=30_000)
        expect(due.locator("code", has_text="keysafe agent rotate-token rotating")).to_be_visible()
        shot(page, "rotations-due")
    finally:
        cli.ok("rotation-policy", "--after-uses", "0")
    expect(due).to_be_hidden(timeout=30_000)  # the page recomputes at most every 10 s
