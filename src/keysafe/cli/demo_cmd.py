"""`keysafe demo`: the main job on the embedded default, on a throwaway vault in a temp dir.

The story is the real thing, end to end: a vault server on a loopback port, `keysafe mcp` as a
subprocess, and the MCP SDK's own client speaking stdio to it, as Claude Desktop would. The only
stand-in is the API upstream (a local HTTP server that records what it receives).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, TypedDict, TypeVar

import typer
import yaml
from pydantic import BaseModel

from keysafe.agent_models import ApprovalView, Capabilities, HttpResult, PendingApproval, SignResult
from keysafe.chains import Chain
from keysafe.cli import render
from keysafe.errors import KeysafeError
from keysafe.service import agents, audit, credentials, policies, vault_admin, wallets
from keysafe.service.context import Home
from keysafe.service.models import Attachment, SecretBytes
from keysafe.testing import free_port
from keysafe.vault.vault import Vault

RECIPIENT = "0x1111111111111111111111111111111111111111"
USDC_ON_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"


def _step(n: int, text: str) -> None:
    render.out.print(f"\n[bold cyan]{n}.[/bold cyan] {text}")


def _say(text: str) -> None:
    render.out.print(f"   {text}", highlight=False, markup=False)


# `keysafe demo`, mounted at the top by cli/app.py.
commands = typer.Typer()


@commands.command()
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the demo vault and print where it is.")
    ] = False,
) -> None:
    """Watch an AI agent use a wallet and an API key through MCP without ever holding them.

    A throwaway vault (SQLite in a temp dir): two wallets, an API credential, an agent under the
    example policy (which names one wallet); then a real MCP client (stdio) lists its
    capabilities, makes an allowed payment, one the owner must approve, one over the limit, one
    from the wallet its policy does not name, and an API call where the
    upstream gets the key and the agent does not; then the agent is revoked and the audit log
    verified. No prompts; nothing touches your real vault; the temp dir is removed afterwards.
    """
    tmp = Path(tempfile.mkdtemp(prefix="keysafe-demo-"))
    try:
        _run(tmp)
    finally:
        if keep:
            render.out.print(
                f"\nDemo vault kept in {tmp / 'home'} (passphrase in {tmp / 'passphrase'})."
            )
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# -- stand-ins and plumbing -------------------------------------------------------------------


class Upstream:
    """A local API standing in for api.example.com: records the Authorization it receives and,
    like a careless API might, echoes it back in its answer."""

    def __init__(self) -> None:
        seen: list[str] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("authorization", "")
                seen.append(auth)
                body = json.dumps({"ok": True, "you_sent": auth}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class VaultServer:
    """`keysafe serve` in this process, on a free loopback port, over the unlocked demo vault."""

    def __init__(self, home: Home, vault: Vault) -> None:
        import uvicorn

        from keysafe.api import create_app
        from keysafe.api.state import ServerState

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(ServerState(home, vault, idle_lock_after=None)),
            host="127.0.0.1",
            port=self.port,
            log_level="error",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the demo's vault server did not start")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _demo_policy(upstream_port: int) -> str:
    """The example policy (its optional parts stay off, so it runs at any hour), expiring a day
    ahead (a demo's policy should not outlive it), and one rule that lets the agent call the
    demo's local API."""
    doc = yaml.safe_load(policies.example())
    doc["rules"].append(
        {
            "name": "demo-api",
            "allow": ["http.request"],
            "credentials": ["example-api"],
            "methods": ["GET"],
            "urls": [f"http://127.0.0.1:{upstream_port}/**"],
        }
    )
    doc["expires"] = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(yaml.safe_dump(doc, sort_keys=False))


class _Eip1559Json(TypedDict):
    """An EIP-1559 transaction as the sign_transaction tool takes it (JSON-RPC field names)."""

    to: str
    data: str
    value: str
    chainId: int
    nonce: int
    gas: int
    maxFeePerGas: str
    maxPriorityFeePerGas: str


def _usdc_transfer(amount: str, nonce: int) -> _Eip1559Json:
    """A complete EIP-1559 USDC transfer on Base: nothing left for an RPC to fill in."""
    units = int(Decimal(amount) * 10**6)
    data = "0xa9059cbb" + RECIPIENT[2:].lower().rjust(64, "0") + hex(units)[2:].rjust(64, "0")
    return {
        "to": USDC_ON_BASE,
        "data": data,
        "value": "0x0",
        "chainId": 8453,
        "nonce": nonce,
        "gas": 80000,
        "maxFeePerGas": hex(2 * 10**9),
        "maxPriorityFeePerGas": hex(10**8),
    }


# -- the story ------------------------------------------------------------------------------


def _run(tmp: Path) -> None:
    started = time.monotonic()
    home = Home(tmp / "home")
    vault = _create_vault(tmp, home)
    _create_wallets(vault)
    upstream = Upstream()
    api_key = _store_api_key(vault, upstream)
    token = _add_agent(vault, upstream)
    server = VaultServer(home, vault)
    _step(5, f"Start the vault server on {server.url}; the agent's host launches `keysafe mcp`.")
    try:
        token_text = bytes(token.reveal()).decode()
        asyncio.run(_agent_session(server, vault, token_text, upstream, api_key))
    finally:
        token.wipe()
        server.close()
        upstream.close()
    _verify_audit(vault)
    vault.lock()
    render.out.print(
        f"\n[bold green]Done[/bold green] in {time.monotonic() - started:.0f} s. Your own vault: "
        "`keysafe init`, `keysafe serve --unlock`, then `keysafe agent add NAME --mcp-config`."
    )


def _create_vault(tmp: Path, home: Home) -> Vault:
    """Step 1: a throwaway vault under a random passphrase (kept in `tmp` for --keep)."""
    pw_text = "demo-" + secrets.token_urlsafe(12)
    (tmp / "passphrase").write_text(pw_text)
    pw = SecretBytes(bytearray(pw_text.encode()))
    render.out.print(
        "[bold]keysafe demo[/bold]: an AI agent uses a wallet and an API key through MCP, "
        f"and never holds either. Throwaway vault in {home.path}"
    )
    _step(1, "Create the vault: a new 24-word recovery phrase, wrapped under Argon2id.")
    vault, phrase = vault_admin.init_vault(home, pw)
    phrase.wipe()
    pw.wipe()
    _say(f"vault {vault.vault_id}: SQLite, encrypted records, tamper-evident audit log")
    return vault


def _create_wallets(vault: Vault) -> None:
    _step(2, "Create two wallets (keys derived inside the vault; they never leave it).")
    w = wallets.create_wallet(vault, "main", Chain.EVM)
    _say(f"main     evm  {w.address}")
    savings = wallets.create_wallet(vault, "savings", Chain.EVM)
    _say(f"savings  evm  {savings.address}  (no rule names it: no agent can use it)")


def _store_api_key(vault: Vault, upstream: Upstream) -> str:
    """Step 3: a random API key for the local stand-in API; returns it, to check who saw it."""
    _step(
        3,
        f"Store an API key for a local API on 127.0.0.1:{upstream.port} "
        "(it stands in for a real one).",
    )
    api_key = "sk-demo-" + secrets.token_hex(12)
    credentials.add_credential(
        vault,
        "example-api",
        SecretBytes(bytearray(api_key.encode())),
        hosts=[f"127.0.0.1:{upstream.port}"],
        attach=Attachment.bearer(),
    )
    _say(f"example-api → sent as 'Authorization: Bearer …' only to 127.0.0.1:{upstream.port}")
    return api_key


def _add_agent(vault: Vault, upstream: Upstream) -> SecretBytes:
    """Step 4: the agent 'shopper' under the demo's policy; returns its token."""
    _step(4, "Add the agent 'shopper' under the example policy (business-hours rule left out).")
    _, token = agents.add_agent(vault, "shopper")
    assert token is not None
    policies.set_policy(vault, "shopper", _demo_policy(upstream.port), source="example policy")
    _say(
        "USDC on Base from wallet main: up to 25 a payment, the owner approves above 10, 100 a day"
    )
    return token


def _verify_audit(vault: Vault) -> None:
    _step(12, "Verify the audit log: a SHA-256 chain over every action, sealed with a vault key.")
    report = audit.verify(vault)
    for e in audit.list_entries(vault)[-6:]:
        _say(f"#{e.seq:<3} {e.action:<20} {e.target:<32} {e.outcome}")
    _say(f"chain ok: {report.ok} ({report.entries} entries)")


# An MCP tool call as the agent sees it: (refused, structured result or error object, text).
# The result is the tool's JSON as it came; each step reads it as the answer model it expects.
ToolCall = Callable[[str, dict[str, Any]], Awaitable[tuple[bool, dict[str, Any], str]]]


async def _agent_session(
    server: VaultServer, vault: Vault, token: str, upstream: Upstream, api_key: str
) -> None:
    """Steps 6 to 11: the agent, through `keysafe mcp` over stdio, uses what the vault holds."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters
    from mcp_types import TextContent

    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    env |= {"KEYSAFE_URL": server.url, "KEYSAFE_AGENT_TOKEN": token, "KEYSAFE_HOME": os.devnull}
    params = StdioServerParameters(command=sys.executable, args=["-m", "keysafe", "mcp"], env=env)
    async with Client(params) as mcp:

        async def call(tool: str, args: dict[str, Any]) -> tuple[bool, dict[str, Any], str]:
            r = await mcp.call_tool(tool, args)
            texts = [c.text for c in r.content if isinstance(c, TextContent)]
            if r.is_error:  # a refusal: its error object is the second text block (JSON)
                return True, json.loads(texts[1]) if len(texts) > 1 else {}, texts[0]
            return False, dict(r.structured_content or {}), texts[0] if texts else ""

        tools = await mcp.list_tools()
        _say(f"MCP client connected over stdio; {len(tools.tools)} tools")
        await _capabilities(call)
        await _payments(call, vault)
        await _refusals(call)
        await _api_call(call, upstream, api_key)
        _step(11, "Revoke the agent: its very next call is refused.")
        agents.set_status(vault, "shopper", "revoked")
        is_error, res, _ = await call("list_capabilities", {})
        err = res.get("error", {})
        _say(f"refused={is_error}: {err.get('code')}: {err.get('message')}")


async def _capabilities(call: ToolCall) -> None:
    _step(6, "The agent asks what it may do (list_capabilities).")
    _, answer, _ = await call("list_capabilities", {})
    caps = Capabilities.model_validate(answer)
    for wal in caps.wallets:  # only the wallets its rules name: `savings` is not listed
        _say(f"wallet {wal.name} ({wal.chain}) {wal.address}")
    for b in caps.budget:
        if b.asset:
            _say(f"budget {b.rule}: {b.left} {b.asset} left of {b.limit} per {b.window}")


Answer = TypeVar("Answer", bound=BaseModel)


async def _pay(
    call: ToolCall, amount: str, nonce: int, invoice: int, answer: type[Answer]
) -> Answer:
    """The agent asks the vault to sign a USDC payment from wallet main; the tool's result, read
    as the `answer` this payment should get."""
    _, res, _ = await call(
        "sign_transaction",
        {
            "wallet": "main",
            "transaction": _usdc_transfer(amount, nonce),
            "description": f"pay invoice #{invoice}",
        },
    )
    return answer.model_validate(res)


async def _payments(call: ToolCall, vault: Vault) -> None:
    """Steps 7 and 8: a payment within the policy, and one the owner must approve."""
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service import approvals

    _step(7, "An allowed payment: 5 USDC → signed inside the vault, key never exposed.")
    signed = await _pay(call, "5", 0, 41, SignResult)
    _say(f"{signed.status}: {signed.summary}; tx {str(signed.tx_hash)[:18]}…")

    _step(8, "12.5 USDC is above approve_above: the request waits for the owner.")
    pending = await _pay(call, "12.5", 1, 42, PendingApproval)
    approval_id = pending.approval_id
    _say(f"{pending.status}: {approval_id} — {pending.summary}")

    def owner_approves() -> None:
        time.sleep(1.0)
        approvals.approve(vault, approval_id)

    threading.Thread(target=owner_approves, daemon=True).start()
    _say("the owner approves (here: the demo, after a second; for you: the web page or CLI)")
    _, answer, _ = await call("approval_status", {"approval_id": approval_id, "wait_seconds": 30})
    view = ApprovalView.model_validate(answer)
    result = SignResult.model_validate(view.result)
    _say(f"approval_status → {view.status}; result {result.status}, tx {str(result.tx_hash)[:18]}…")


async def _refusals(call: ToolCall) -> None:
    _step(
        9,
        "30 USDC is over the 25-per-payment limit, and no rule names wallet savings: "
        "refused with a reason the model can use.",
    )
    for wallet, amount in (("main", "30"), ("savings", "5")):
        is_error, res, _ = await call(
            "sign_transaction", {"wallet": wallet, "transaction": _usdc_transfer(amount, 2)}
        )
        err = res.get("error", {})
        _say(
            f"refused={is_error}: {err.get('code')} ({err.get('reason_code')}): "
            f"{err.get('message')}"
        )


async def _api_call(call: ToolCall, upstream: Upstream, api_key: str) -> None:
    """Step 10: an API call through the credential; the key reaches the upstream, never the agent.

    Raises:
        KeysafeError: the key reached the agent, or did not reach the upstream (a bug).
    """
    _step(10, "An API call through the credential: the upstream gets the key, the agent not.")
    _, res, _ = await call(
        "http_request",
        {
            "credential": "example-api",
            "method": "GET",
            "url": f"http://127.0.0.1:{upstream.port}/v1/me",
        },
    )
    got = upstream.seen[-1] if upstream.seen else ""
    _say(f"upstream received: Authorization: Bearer {api_key[:10]}… (the real key)")
    _say(f"agent received:    {HttpResult.model_validate(res).body}")
    if api_key in json.dumps(res):  # anywhere in what the agent got, not only the body
        raise KeysafeError("The API key reached the agent.", next_step="report this keysafe bug.")
    if api_key not in got:
        raise KeysafeError(
            "The upstream did not receive the API key.", next_step="report this keysafe bug."
        )
