"""Shared pieces of the black-box MCP tests (test_mcp_stdio.py, test_mcp_http.py).

The vault: wallet `main`, and `spare` (EVM too) that no policy names; agent `bot` under MCP_POLICY
(STANDARD_POLICY plus one allow rule for each other tool); agents `helper` and `doomed` (revoked by
a test) under HELPER_POLICY; standard data `profile`. That part is built once per run
(`shared_once`); each test process copies it and binds it to its own `Upstream`: the built-in chain
`local` gets the upstream's JSON-RPC endpoint (so send_transaction really broadcasts) and a bearer
credential `echo` (a fresh canary secret) gets the upstream's host:port. The session fixture `world`
(imported by both test modules) runs `keysafe serve --unlock` on that copy.

`Upstream` is a ThreadingHTTPServer on a loopback port: `POST /rpc` answers Ethereum JSON-RPC
(eth_sendRawTransaction returns the transaction's keccak hash and records the raw bytes; the
nonce, gas price, gas estimate and balance a transfer needs are fixed values); any other
request is recorded and answered with a JSON body, and an `x-echo-authorization` header, that echo
the Authorization header it carried: the vault must scrub the secret from both.

`McpSession` runs one `mcp.Client` in a thread with its own event loop, so plain (sync) pytest
tests can call tools one after the other on one connection; it keeps the JSON of everything the
client received for canary greps. `ToolScenarios` holds the tests both transports must pass.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import rlp  # type: ignore[import-untyped]
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils.crypto import keccak
from mcp import Client
from mcp_types import CallToolResult

from keysafe.testing import start_server, stop_process, wait_listening
from tests.conftest import Cli, shared_once
from tests.e2e.server_fixture import (
    EVM_TX_FEE,
    KEYSAFE,
    MILLI_ETH,
    R1,
    R2,
    R3,
    R4,
    STANDARD_POLICY,
    Pristine,
    Server,
    add_agent,
    cli_env,
    copy_home,
    evm_tx,
    keysafe_server,
)

TOOL_NAMES = frozenset(
    {
        "list_capabilities",
        "get_address",
        "sign_transaction",
        "send_transaction",
        "transfer",
        "sign_message",
        "sign_typed_data",
        "http_request",
        "read_data",
        "approval_status",
        "check_policy",
        "list_pending_approvals",
    }
)

LOCAL_CHAIN_ID = 31337  # the built-in chain `local`, re-pointed at the upstream's /rpc
# What the upstream's /rpc answers besides broadcasts (eth_feeHistory is "no such method", so
# fees fall back to the gas price): a transfer of ETH on `local` costs 21000 × 1 gwei at most.
UPSTREAM_QUOTES: dict[str, str] = {
    "eth_chainId": hex(LOCAL_CHAIN_ID),
    "eth_getTransactionCount": "0x5",
    "eth_gasPrice": hex(10**9),
    "eth_estimateGas": hex(21000),
    "eth_getBalance": hex(10**18),
}
SIWE = "example.com wants you to sign in with your Ethereum account"
PROFILE = {"city": "Lyon", "zip": "69001", "email": "owner@example.com"}
MEDICAL = {"blood_type": "O-", "allergies": ["penicillin"]}  # sensitive: read only on approval

HELPER_POLICY = """\
version: 1
rules:
  - name: helper-reads-profile
    allow: [data.read]
    data: [profile]
"""


# STANDARD_POLICY plus one allow rule for each of the other tools. It names no port: the
# credential `echo` is bound to the upstream's host:port, which differs per test process.
MCP_POLICY = (
    STANDARD_POLICY
    + f"""\
  - name: send-local
    allow: [evm.transfer]
    wallets: [main]
    chains: [local]
    assets: [ETH]
    recipients: ["{R1}"]
    max_per_tx: {{ETH: "0.01"}}
  - name: echo-api
    allow: [http.request]
    credentials: [echo]
    methods: [GET, POST]
  - name: read-profile
    allow: [data.read]
    data: [profile, medical]
  - name: sign-in
    allow: [evm.sign_message]
    wallets: [main]
    message_matches: "^example.com wants you to sign in"
  - name: typed-on-ethereum
    allow: [evm.sign_typed_data]
    wallets: [main]
    chains: [ethereum]
"""
)


def local_tx(value_wei: int, *, to: str = R1, nonce: int = 0) -> dict[str, Any]:
    """A complete legacy transaction for the `local` chain (31337)."""
    return {
        "to": to,
        "value": hex(value_wei),
        "chainId": LOCAL_CHAIN_ID,
        "nonce": nonce,
        "gas": 21000,
        "gasPrice": hex(10**9),
    }


def mail_typed_data(chain_id: int = 1) -> dict[str, Any]:
    """The EIP-712 specification's Mail example: plain typed data, not a permit."""
    person = [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}]
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Person": person,
            "Mail": [
                {"name": "from", "type": "Person"},
                {"name": "to", "type": "Person"},
                {"name": "contents", "type": "string"},
            ],
        },
        "primaryType": "Mail",
        "domain": {
            "name": "Ether Mail",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
        },
        "message": {
            "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
            "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
            "contents": "Hello, Bob!",
        },
    }


# -- the upstream ----------------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    port: int
    requests: list[Seen] = field(default_factory=list)
    raw_txs: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(up: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, payload: Any, echo: str = "") -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            if echo:
                self.send_header("x-echo-authorization", echo)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path == "/rpc" and self.command == "POST":
                self._rpc(json.loads(body))
                return
            up.requests.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            auth = self.headers.get("authorization", "")
            self._answer(
                200,
                {"path": self.path, "method": self.command, "authorization": auth},
                echo=auth,
            )

        def _rpc(self, req: dict[str, Any]) -> None:
            method, params = req.get("method"), req.get("params") or []
            if method == "eth_sendRawTransaction":
                raw = str(params[0])
                up.raw_txs.append(raw)
                result: Any = "0x" + keccak(bytes.fromhex(raw.removeprefix("0x"))).hex()
            elif method in UPSTREAM_QUOTES:
                result = UPSTREAM_QUOTES[str(method)]
            else:
                self._answer(
                    200,
                    {
                        "jsonrpc": "2.0",
                        "id": req.get("id"),
                        "error": {"code": -32601, "message": "no such method"},
                    },
                )
                return
            self._answer(200, {"jsonrpc": "2.0", "id": req.get("id"), "result": result})

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler


@contextmanager
def upstream() -> Iterator[Upstream]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(up := Upstream(0)))
    up.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield up
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- the vault -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class McpVault:
    pristine: Pristine
    secret: str  # the credential `echo`'s secret: must reach the upstream, never the agent
    helper_token: str
    doomed_token: str  # agent `doomed`: same policy as `helper`, revoked by a test
    placeholder: str  # a real `ksp_…` placeholder of `echo` for agent `bot`

    @property
    def home(self) -> Path:
        return self.pristine.home

    @property
    def bot_token(self) -> str:
        return self.pristine.tokens["bot"]


def _build_base(root: Path) -> dict[str, Any]:
    """What does not depend on the upstream's port, built once per test run (`shared_once`):
    wallets `main` and `spare` (named by no rule), data `profile` and `medical` (sensitive), agents
    `bot` (MCP_POLICY), `helper` and `doomed` (HELPER_POLICY).
    """
    home = root / "home"
    cli = Cli(home, cli_env(home))
    cli.ok("init", "--json")
    created = cli.ok("wallet", "create", "main", "--chain", "evm", "--json").stdout
    cli.ok("wallet", "create", "spare", "--chain", "evm")  # no rule names it: unusable by agents
    cli.ok("data", "set", "profile", "--class", "standard", input=json.dumps(PROFILE))
    cli.ok("data", "set", "medical", "--class", "sensitive", input=json.dumps(MEDICAL))
    (root / "policy.yaml").write_text(MCP_POLICY, encoding="utf-8")
    (root / "helper-policy.yaml").write_text(HELPER_POLICY, encoding="utf-8")
    tokens = {
        name: add_agent(cli, name, root / policy)
        for name, policy in (
            ("bot", "policy.yaml"),
            ("helper", "helper-policy.yaml"),
            ("doomed", "helper-policy.yaml"),  # revoked by a test, mid-session
        )
    }
    return {"address": json.loads(created)["address"], "tokens": tokens}


def build_mcp_vault(factory: pytest.TempPathFactory, root: Path, upstream_port: int) -> McpVault:
    """A copy of the shared base vault, bound to the upstream on `upstream_port`: chain `local`'s
    RPC, the credential `echo` (a fresh canary secret) and a placeholder of it for `bot`."""
    base, info = shared_once(factory, "mcp-base-vault", _build_base)
    home = copy_home(Pristine(base / "home", info["address"], {}), root)
    cli = Cli(home, cli_env(home))
    rpc = f"http://127.0.0.1:{upstream_port}/rpc"
    cli.ok("chain", "add", "local", "--chain-id", str(LOCAL_CHAIN_ID), "--rpc", rpc)
    secret = "canary-mcp-" + base64.b32encode(os.urandom(20)).decode().lower()
    host = f"127.0.0.1:{upstream_port}"
    cli.ok("credential", "add", "echo", "--host", host, "--bearer", input=secret)
    out = cli.ok("credential", "placeholder", "echo", "--agent", "bot", "--json").stdout
    placeholder = json.loads(out)["placeholder"]
    assert placeholder.startswith("ksp_")
    tokens = dict(info["tokens"])
    pristine = Pristine(home, info["address"], tokens)
    return McpVault(pristine, secret, tokens["helper"], tokens["doomed"], placeholder)


# -- an MCP client session, driven from sync tests -------------------------------------------------


class McpSession:
    """One open `mcp.Client`, on an event loop in a thread of its own.

    `call(tool, args)` runs one tool call and returns its CallToolResult; `submit` starts one and
    returns a future, so a test can act (e.g. approve) while a long call waits.
    """

    def __init__(self, make_client: Callable[[], Client]) -> None:
        self._make = make_client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.received: list[str] = []  # JSON of every result the client was given

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        try:
            async with self._make() as client:
                self._ready.set()
                while (item := await self._queue.get()) is not None:
                    fn, fut = item
                    try:
                        result = await fn(client)
                    except BaseException as exc:
                        fut.set_exception(exc)
                    else:
                        fut.set_result(result)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> McpSession:
        self._thread.start()
        if not self._ready.wait(60):
            raise TimeoutError("the MCP client did not connect within 60 s")
        if self._error is not None:
            raise RuntimeError(f"the MCP client could not connect: {self._error!r}") from (
                self._error
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._queue is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
        self._thread.join(30)

    def submit(self, fn: Callable[[Client], Awaitable[Any]]) -> concurrent.futures.Future[Any]:
        if self._error is not None or not self._thread.is_alive():
            raise RuntimeError(f"the MCP client session is closed ({self._error!r})")
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        assert self._loop is not None and self._queue is not None
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (fn, fut))
        return fut

    def start_call(
        self, tool: str, args: dict[str, Any] | None = None
    ) -> concurrent.futures.Future[CallToolResult]:
        async def go(client: Client) -> CallToolResult:
            result = await client.call_tool(tool, args or {})
            self.received.append(result.model_dump_json(by_alias=True))
            return result

        return self.submit(go)

    def call(
        self, tool: str, args: dict[str, Any] | None = None, *, timeout: float = 90
    ) -> CallToolResult:
        return self.start_call(tool, args).result(timeout)

    def list_tools(self) -> Any:
        async def go(client: Client) -> Any:
            result = await client.list_tools()
            self.received.append(result.model_dump_json(by_alias=True))
            return result

        return self.submit(go).result(60)


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful call, checked against its text content."""
    assert not result.is_error, result.content
    data = result.structured_content
    assert isinstance(data, dict), result
    assert json.loads(result.content[0].text) == data  # type: ignore[union-attr]
    return data


def refused(result: CallToolResult, code: str) -> dict[str, Any]:
    """The error object of a refusal, after checking its text and its JSON agree on `code`."""
    assert result.is_error, result
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith(f"{code}: "), text
    # No structured content on an error: TypeScript hosts check it against the output schema
    # and drop the whole result when it does not match (test_mcp_inspector.py).
    assert result.structured_content is None, result
    data = json.loads(result.content[1].text)  # type: ignore[union-attr]
    assert isinstance(data, dict) and set(data) == {"error"}, data
    err = data["error"]
    assert err["code"] == code, err
    for key in ("message", "next"):
        assert isinstance(err.get(key), str) and err[key], err
    assert err["message"] in text
    return dict(err)


# -- `keysafe mcp --http` --------------------------------------------------------------------------


@dataclass
class McpHttp:
    url: str  # http://127.0.0.1:PORT/mcp
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def agent_side_env(nowhere: Path) -> dict[str, str]:
    """The environment of a process on the agent's side: no passphrase, no vault home (KEYSAFE_HOME
    points at `nowhere`, which must still not exist afterwards)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    return base | {"KEYSAFE_HOME": str(nowhere)}


@contextmanager
def mcp_http_server(env: dict[str, str], vault_url: str, log_dir: Path) -> Iterator[McpHttp]:
    """`keysafe mcp --http --port FREE` with KEYSAFE_URL=vault_url; yields once the port answers."""
    started = start_server(
        lambda port: [KEYSAFE, "mcp", "--http", "--port", str(port)],
        env | {"KEYSAFE_URL": vault_url},
        log_dir,
        name="mcp-http",
        healthy=wait_listening,
    )
    server = McpHttp(f"{started.url}/mcp", started.port, started.proc, started.log_path)
    try:
        yield server
    finally:
        stop_process(started.proc)


# -- a running world: upstream, vault, `keysafe serve` ---------------------------------------------


@dataclass
class McpWorld:
    vault: McpVault
    server: Server
    upstream: Upstream
    _owner: list[str] = field(default_factory=list)

    def owner(self, path: str, body: Any = None) -> httpx.Response:
        """POST an owner route with an owner session (logged in once)."""
        if not self._owner:
            self._owner.append(self.server.login())
        headers = {"authorization": f"Bearer {self._owner[0]}"}
        return httpx.post(f"{self.server.url}{path}", json=body, headers=headers, timeout=30)


@pytest.fixture(scope="session", name="world")
def world_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpWorld]:
    """Upstream + MCP vault + `keysafe serve --unlock` on it, once per test process and shared by
    the stdio and HTTP modules, which import it (so no test relies on ledger state another
    leaves)."""
    root = tmp_path_factory.mktemp("mcp-world")
    with upstream() as up:
        vault = build_mcp_vault(tmp_path_factory, root, up.port)
        # One server serves every MCP test of this process, back to back, and over HTTP each
        # tool call costs two vault requests (the gate's token check + the call): the default
        # 20 requests/s per agent is for real agents, not for a test suite.
        with keysafe_server(
            cli_env(vault.home), "--unlock", "--rate-limit", "1000", log_dir=root
        ) as server:
            yield McpWorld(vault, server, up)


# -- what both transports must do ------------------------------------------------------------------

PENDING_KEYS = {"status", "approval_id", "expires_at", "summary"}

EXPECTED_REQUIRED = {
    "list_capabilities": set(),
    "get_address": {"wallet"},
    "sign_transaction": {"wallet", "transaction"},
    "send_transaction": {"wallet", "transaction"},
    "transfer": {"wallet", "asset", "to", "amount"},
    "sign_message": {"wallet", "message"},
    "sign_typed_data": {"wallet", "typed_data"},
    "http_request": {"credential", "method", "url"},
    "read_data": {"name"},
    "approval_status": {"approval_id"},
    "check_policy": {"tool", "arguments"},
    "list_pending_approvals": set(),
}
READ_ONLY = {
    "list_capabilities",
    "get_address",
    "read_data",
    "approval_status",
    "check_policy",
    "list_pending_approvals",
}


def sample_calls(upstream_port: int) -> dict[str, dict[str, Any]]:
    """Well-formed arguments for every tool (for sweeps where the vault refuses all of them)."""
    return {
        "list_capabilities": {},
        "get_address": {"wallet": "main"},
        "sign_transaction": {"wallet": "main", "transaction": evm_tx(MILLI_ETH)},
        "send_transaction": {"wallet": "main", "transaction": local_tx(MILLI_ETH)},
        "transfer": {
            "wallet": "main",
            "asset": "native",
            "to": R1,
            "amount": "0.001",
            "chain": "local",
        },
        "sign_message": {"wallet": "main", "message": SIWE},
        "sign_typed_data": {"wallet": "main", "typed_data": mail_typed_data()},
        "http_request": {
            "credential": "echo",
            "method": "GET",
            "url": f"http://127.0.0.1:{upstream_port}/sweep",
        },
        "read_data": {"name": "profile"},
        "approval_status": {"approval_id": "apr_000000000000000000000000"},
        "check_policy": {"tool": "sign_message", "arguments": {"wallet": "main", "message": SIWE}},
        "list_pending_approvals": {},
    }


def secret_forms(secret: str) -> dict[str, str]:
    raw = secret.encode()
    return {
        "raw": secret,
        "hex": raw.hex(),
        "base64": base64.b64encode(raw).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "bearer basic": base64.b64encode(f"Bearer {secret}".encode()).decode().rstrip("="),
    }


def decode_signed(raw_hex: str) -> tuple[str, str, int, int]:
    """(signer, recipient, value, chain id) of a signed legacy (EIP-155) transaction."""
    fields = rlp.decode(bytes.fromhex(raw_hex.removeprefix("0x")))
    signer = Account.recover_transaction(raw_hex)
    v = int.from_bytes(fields[6], "big")
    return signer, "0x" + fields[3].hex(), int.from_bytes(fields[4], "big"), (v - 35) // 2


def tx_hash_of(raw_hex: str) -> str:
    return "0x" + keccak(bytes.fromhex(raw_hex.removeprefix("0x"))).hex()


class ToolScenarios:
    """Every tool, allowed and refused, through the MCP SDK's client. A test module subclasses
    this as `Test…` and provides module fixtures `world` (McpWorld) and `session` (McpSession,
    agent `bot`)."""

    # -- discovery ---------------------------------------------------------------------------------

    def test_list_tools_is_exactly_the_twelve_tools_with_descriptions_and_schemas(
        self, session: McpSession
    ) -> None:
        tools = session.list_tools().tools
        names = [t.name for t in tools]
        assert len(names) == len(set(names)) == 12 and set(names) == TOOL_NAMES, names
        for t in tools:
            assert t.description and len(t.description) > 40, t.name
            assert t.input_schema["type"] == "object", t.name
            assert set(t.input_schema.get("required", [])) == EXPECTED_REQUIRED[t.name], t.name
            assert t.output_schema and t.output_schema["type"] == "object", t.name
            assert t.output_schema.get("properties"), t.name
            assert t.annotations is not None
            assert bool(t.annotations.read_only_hint) == (t.name in READ_ONLY), t.name
        by_name = {t.name: t for t in tools}
        wait = by_name["approval_status"].input_schema["properties"]["wait_seconds"]
        assert (wait.get("minimum"), wait.get("maximum")) == (0, 60), wait
        assert "status" in by_name["sign_transaction"].output_schema["properties"]

    # -- list_capabilities / get_address -----------------------------------------------------------

    def test_list_capabilities_names_the_agent_its_wallet_credential_data_and_rules(
        self, world: McpWorld, session: McpSession
    ) -> None:
        caps = ok(session.call("list_capabilities"))
        assert (caps["agent"], caps["status"]) == ("bot", "active")
        assert caps["wallets"] == [
            {"name": "main", "chain": "evm", "address": world.vault.pristine.address}
        ]
        assert caps["credentials"] == [
            {"name": "echo", "hosts": [f"127.0.0.1:{world.upstream.port}"]}
        ]
        data = {d["name"]: d for d in caps["data"]}
        assert set(data) == {"profile", "medical"}
        assert (data["profile"]["class"], data["medical"]["class"]) == ("standard", "sensitive")
        assert sorted(data["profile"]["fields"]) == sorted(PROFILE)
        rules = [r.split(":", 1)[0] for r in caps["policy"]["rules"]]
        assert rules == [
            "pay-r1",
            "tiny-budget-r3",
            "ask-r4",
            "send-local",
            "echo-api",
            "read-profile",
            "sign-in",
            "typed-on-ethereum",
        ]
        budget = {(b["rule"], b["window"], b["asset"]): b["limit"] for b in caps["budget"]}
        assert budget[("pay-r1", "24h", "ETH")] == "1"
        assert world.vault.secret not in json.dumps(caps)

    def test_get_address_of_main_is_the_vault_wallet(
        self, world: McpWorld, session: McpSession
    ) -> None:
        got = ok(session.call("get_address", {"wallet": "main"}))
        assert got == {"wallet": "main", "address": world.vault.pristine.address, "chain": "evm"}

    def test_get_address_of_an_unknown_wallet_is_not_found(self, session: McpSession) -> None:
        err = refused(session.call("get_address", {"wallet": "nope"}), "NOT_FOUND")
        assert "nope" in err["message"]

    def test_attack_get_address_of_a_wallet_no_rule_names_is_not_found(
        self, session: McpSession
    ) -> None:
        refused(session.call("get_address", {"wallet": "spare"}), "NOT_FOUND")

    def test_attack_sign_from_a_wallet_no_rule_names_is_policy_denied(
        self, session: McpSession
    ) -> None:
        # the rule pay-r1 allows this transfer, but only from wallet `main`
        result = session.call(
            "sign_transaction", {"wallet": "spare", "transaction": evm_tx(MILLI_ETH)}
        )
        err = refused(result, "POLICY_DENIED")
        assert err["reason_code"] == "NO_MATCHING_RULE"
        assert "from wallet 'spare'" in err["message"]
        assert "signed_transaction" not in result.model_dump_json()

    # -- sign_transaction / send_transaction -------------------------------------------------------

    def test_sign_transaction_within_policy_is_signed_by_the_vault_wallet(
        self, world: McpWorld, session: McpSession
    ) -> None:
        args = {"wallet": "main", "transaction": evm_tx(2 * MILLI_ETH), "description": "test"}
        got = ok(session.call("sign_transaction", args))
        assert got["status"] == "signed"
        assert (got["wallet"], got["address"], got["chain"]) == (
            "main",
            world.vault.pristine.address,
            "ethereum",
        )
        raw = got["signed_transaction"]
        assert decode_signed(raw) == (world.vault.pristine.address, R1, 2 * MILLI_ETH, 1)
        assert got["tx_hash"] == tx_hash_of(raw)

    def test_sign_transaction_to_a_recipient_no_rule_allows_is_policy_denied(
        self, session: McpSession
    ) -> None:
        result = session.call(
            "sign_transaction", {"wallet": "main", "transaction": evm_tx(MILLI_ETH, to=R2)}
        )
        err = refused(result, "POLICY_DENIED")
        assert err["reason_code"] == "NO_MATCHING_RULE"
        assert "Nothing was signed" in err["message"]
        assert "signed_transaction" not in result.model_dump_json()

    def test_sign_transaction_over_the_per_tx_cap_is_policy_denied_naming_the_rule(
        self, session: McpSession
    ) -> None:
        result = session.call(
            "sign_transaction", {"wallet": "main", "transaction": evm_tx(20 * MILLI_ETH)}
        )
        err = refused(result, "POLICY_DENIED")
        assert (err["reason_code"], err["rule"]) == ("OVER_PER_TX_LIMIT", "pay-r1")
        assert "0.01 ETH" in err["message"]

    def test_sign_transaction_spends_the_24h_budget_and_over_it_is_budget_exceeded(
        self, session: McpSession
    ) -> None:
        def left() -> int:  # wei left in tiny-budget-r3's 24h window (0.002 ETH at first)
            caps = ok(session.call("list_capabilities"))
            (row,) = [b for b in caps["budget"] if b["rule"] == "tiny-budget-r3"]
            return int(Decimal(row["left"]) * 10**18)

        before = left()
        assert before > 1
        spend = before // 2
        args = {"wallet": "main", "transaction": evm_tx(spend, to=R3)}
        assert ok(session.call("sign_transaction", args))["status"] == "signed"
        assert left() == before - spend - EVM_TX_FEE  # value + max fee are charged
        # One wei more than what is left once this request's own fee is counted.
        over_value = before - spend - 2 * EVM_TX_FEE + 1
        over = {"wallet": "main", "transaction": evm_tx(over_value, to=R3)}
        err = refused(session.call("sign_transaction", over), "BUDGET_EXCEEDED")
        assert err["rule"] == "tiny-budget-r3"
        assert left() == before - spend - EVM_TX_FEE, "a refused request consumed budget"

    def test_send_transaction_within_policy_is_broadcast_through_the_chain_rpc(
        self, world: McpWorld, session: McpSession
    ) -> None:
        before = len(world.upstream.raw_txs)
        key = f"send-{secrets.token_hex(8)}"
        args = {"wallet": "main", "transaction": local_tx(MILLI_ETH), "idempotency_key": key}
        got = ok(session.call("send_transaction", args))
        assert (got["status"], got["chain"]) == ("sent", "local")
        raw = got["signed_transaction"]
        assert world.upstream.raw_txs[before:] == [raw]
        assert decode_signed(raw) == (world.vault.pristine.address, R1, MILLI_ETH, LOCAL_CHAIN_ID)
        assert got["tx_hash"] == tx_hash_of(raw)
        # The same idempotency key again: the vault acts at most once.
        again = ok(session.call("send_transaction", args))
        assert again["tx_hash"] == got["tx_hash"]
        assert world.upstream.raw_txs[before:] == [raw]

    def test_send_transaction_over_the_cap_is_refused_and_nothing_is_broadcast(
        self, world: McpWorld, session: McpSession
    ) -> None:
        before = len(world.upstream.raw_txs)
        result = session.call(
            "send_transaction", {"wallet": "main", "transaction": local_tx(20 * MILLI_ETH)}
        )
        err = refused(result, "POLICY_DENIED")
        assert (err["reason_code"], err["rule"]) == ("OVER_PER_TX_LIMIT", "send-local")
        assert len(world.upstream.raw_txs) == before

    # -- transfer ----------------------------------------------------------------------------------

    def test_transfer_builds_signs_and_broadcasts_what_was_asked(
        self, world: McpWorld, session: McpSession
    ) -> None:
        before = len(world.upstream.raw_txs)
        args = {
            "wallet": "main",
            "asset": "ETH",
            "to": R1.upper().replace("0X", "0x"),
            "amount": "0.0025",
            "chain": "local",
            "description": "pay R1",
        }
        got = ok(session.call("transfer", args))
        assert (got["status"], got["chain"], got["wallet"]) == ("sent", "local", "main")
        raw = got["signed_transaction"]
        assert world.upstream.raw_txs[before:] == [raw]
        assert got["tx_hash"] == tx_hash_of(raw)
        # An EIP-1559 transaction the vault filled from the chain: nonce, gas, fee cap.
        typed = bytes.fromhex(raw.removeprefix("0x"))
        assert typed[0] == 2
        chain_id, nonce, _tip, cap, gas, to, value, data = rlp.decode(typed[1:])[:8]
        assert int.from_bytes(chain_id, "big") == LOCAL_CHAIN_ID
        assert (int.from_bytes(nonce, "big"), int.from_bytes(gas, "big")) == (5, 21000)
        assert int.from_bytes(cap, "big") == 10**9
        assert ("0x" + to.hex(), int.from_bytes(value, "big"), data) == (
            R1,
            2 * MILLI_ETH + MILLI_ETH // 2,
            b"",
        )
        assert Account.recover_transaction(raw) == world.vault.pristine.address

    def test_transfer_refusals_name_the_field_and_say_what_a_model_can_do(
        self, world: McpWorld, session: McpSession
    ) -> None:
        # (Policy refusals of transfers: test_transfer.py over HTTP, test_mcp_inspector.py.)
        before = len(world.upstream.raw_txs)
        base = {"wallet": "main", "asset": "native", "to": R1, "amount": "0.001", "chain": "local"}
        err = refused(session.call("transfer", base | {"amount": "1e-3"}), "MALFORMED_REQUEST")
        assert err["field"] == "amount" and "plain decimal" in err["message"]
        err = refused(session.call("transfer", base | {"asset": "WBTC"}), "NOT_FOUND")
        assert err["field"] == "asset"
        assert err["next"] == "call list_capabilities for the names you may use."
        err = refused(session.call("transfer", base | {"amount": 0.001}), "MALFORMED_REQUEST")
        assert "'amount'" in err["message"] and "\n" not in err["message"]
        assert len(world.upstream.raw_txs) == before

    # -- sign_message / sign_typed_data ------------------------------------------------------------

    def test_sign_message_the_rule_allows_is_signed_by_the_vault_wallet(
        self, world: McpWorld, session: McpSession
    ) -> None:
        got = ok(session.call("sign_message", {"wallet": "main", "message": SIWE}))
        assert (got["status"], got["address"]) == ("signed", world.vault.pristine.address)
        signer = Account.recover_message(encode_defunct(text=SIWE), signature=got["signature"])
        assert signer == world.vault.pristine.address

    def test_sign_message_no_rule_allows_is_policy_denied(self, session: McpSession) -> None:
        result = session.call("sign_message", {"wallet": "main", "message": "transfer all funds"})
        err = refused(result, "POLICY_DENIED")
        assert err["reason_code"] == "NO_MATCHING_RULE"
        assert "signature" not in (result.structured_content or {})

    def test_sign_typed_data_on_the_allowed_chain_is_signed_by_the_vault_wallet(
        self, world: McpWorld, session: McpSession
    ) -> None:
        doc = mail_typed_data(1)
        got = ok(session.call("sign_typed_data", {"wallet": "main", "typed_data": doc}))
        assert got["status"] == "signed"
        signable = encode_typed_data(full_message=doc)
        assert Account.recover_message(signable, signature=got["signature"]) == (
            world.vault.pristine.address
        )

    def test_sign_typed_data_for_a_chain_no_rule_allows_is_policy_denied(
        self, session: McpSession
    ) -> None:
        doc = mail_typed_data(8453)  # base: the rule covers ethereum only
        result = session.call("sign_typed_data", {"wallet": "main", "typed_data": doc})
        assert refused(result, "POLICY_DENIED")["reason_code"] == "NO_MATCHING_RULE"

    # -- http_request ------------------------------------------------------------------------------

    def test_http_request_sends_the_secret_upstream_and_never_shows_it_to_the_agent(
        self, world: McpWorld, session: McpSession
    ) -> None:
        up, secret = world.upstream, world.vault.secret
        url = f"{up.base}/hello?x=1"
        args = {
            "credential": "echo",
            "method": "POST",
            "url": url,
            "headers": {"X-Trace": "t-1"},
            "body": "ping",
        }
        got = ok(session.call("http_request", args))
        seen = up.requests[-1]
        assert (seen.method, seen.path, seen.body) == ("POST", "/hello?x=1", b"ping")
        assert seen.headers["Authorization"] == f"Bearer {secret}"
        assert seen.headers["X-Trace"] == "t-1"
        assert got["status_code"] == 200
        echoed = json.loads(got["body"])
        assert (echoed["path"], echoed["method"]) == ("/hello?x=1", "POST")
        # The upstream echoed the secret in its body and a header; the agent gets neither.
        assert echoed["authorization"].startswith("Bearer ") and secret not in got["body"]
        assert "x-echo-authorization" in {k.lower() for k in got["headers"]}
        everything = "\n".join(session.received)
        leaks = [form for form, needle in secret_forms(secret).items() if needle in everything]
        assert not leaks, f"the secret reached the MCP client as {leaks}"

    def test_http_request_sends_a_json_body_given_as_text_or_as_a_value(
        self, world: McpWorld, session: McpSession
    ) -> None:
        # A model sends JSON either way; the SDK turns JSON-looking text into an object before
        # validation, which a text-only `body` refused. Both arrive as the same JSON, once.
        url = f"{world.upstream.base}/json"
        for body in ('{"amount": 5, "tags": ["a"]}', {"amount": 5, "tags": ["a"]}):
            args = {"credential": "echo", "method": "POST", "url": url, "body": body}
            assert ok(session.call("http_request", args))["status_code"] == 200
            seen = world.upstream.requests[-1]
            assert json.loads(seen.body) == {"amount": 5, "tags": ["a"]}, seen.body
        assert seen.headers["Content-Type"] == "application/json"
        args = {"credential": "echo", "method": "POST", "url": url, "body": "plain text, [not json"}
        ok(session.call("http_request", args))
        assert world.upstream.requests[-1].body == b"plain text, [not json"

    def test_http_request_cannot_replace_the_credential_header(
        self, world: McpWorld, session: McpSession
    ) -> None:
        args = {
            "credential": "echo",
            "method": "GET",
            "url": f"{world.upstream.base}/who",
            "headers": {"Authorization": "Bearer chosen-by-agent"},
        }
        ok(session.call("http_request", args))
        seen = world.upstream.requests[-1]
        assert seen.path == "/who"
        assert seen.headers["Authorization"] == f"Bearer {world.vault.secret}"

    def test_http_request_to_a_host_not_of_the_credential_is_refused_and_nothing_is_sent(
        self, world: McpWorld, session: McpSession
    ) -> None:
        before = len(world.upstream.requests)
        for url in ("https://evil.example/steal", f"http://localhost:{world.upstream.port}/x"):
            args = {"credential": "echo", "method": "GET", "url": url}
            err = refused(session.call("http_request", args), "POLICY_DENIED")
            assert err["reason_code"] == "HOST_NOT_ALLOWED", url
            assert "Nothing was sent" in err["message"]
        denied = {"credential": "echo", "method": "DELETE", "url": f"{world.upstream.base}/x"}
        err = refused(session.call("http_request", denied), "POLICY_DENIED")
        assert err["reason_code"] == "NO_MATCHING_RULE"
        assert len(world.upstream.requests) == before
        assert world.vault.secret not in "\n".join(session.received)

    # -- read_data ---------------------------------------------------------------------------------

    def test_read_data_returns_only_the_fields_asked_for(self, session: McpSession) -> None:
        got = ok(session.call("read_data", {"name": "profile", "fields": ["city"]}))
        assert got == {"status": "value", "name": "profile", "value": {"city": "Lyon"}}
        whole = ok(session.call("read_data", {"name": "profile"}))
        assert whole["value"] == PROFILE

    def test_read_data_of_sensitive_data_waits_for_the_owner_then_gives_the_value(
        self, world: McpWorld, session: McpSession
    ) -> None:
        pending = ok(session.call("read_data", {"name": "medical", "fields": ["blood_type"]}))
        assert set(pending) == PENDING_KEYS, pending
        assert "O-" not in json.dumps(pending), "a sensitive value was shown before approval"
        approval_id = pending["approval_id"]
        r = world.owner(f"/v1/owner/approvals/{approval_id}/approve")
        assert r.status_code == 200, r.text
        view = ok(session.call("approval_status", {"approval_id": approval_id, "wait_seconds": 5}))
        assert view["status"] == "approved"
        assert view["result"] == {
            "status": "value",
            "name": "medical",
            "value": {"blood_type": "O-"},
        }

    def test_read_data_of_unknown_data_is_not_found(self, session: McpSession) -> None:
        err = refused(session.call("read_data", {"name": "diary"}), "NOT_FOUND")
        assert "diary" in err["message"]

    # -- approvals ---------------------------------------------------------------------------------

    def test_approval_status_of_an_unknown_approval_is_not_found(self, session: McpSession) -> None:
        result = session.call("approval_status", {"approval_id": "apr_0123456789abcdef01234567"})
        refused(result, "NOT_FOUND")

    def test_approval_status_waiting_over_60_seconds_is_an_argument_error(
        self, session: McpSession
    ) -> None:
        args = {"approval_id": "apr_0123456789abcdef01234567", "wait_seconds": 61}
        err = refused(session.call("approval_status", args), "MALFORMED_REQUEST")
        # One line naming the argument and why; none of pydantic's report or links.
        assert "'wait_seconds'" in err["message"] and "\n" not in err["message"], err
        assert "pydantic" not in json.dumps(err) and "61" not in err["message"]
        assert err["next"] == "fix that argument and call approval_status again."

    def test_refusals_tell_a_model_what_to_do_never_a_shell_command(
        self, session: McpSession
    ) -> None:
        calls = [
            ("get_address", {"wallet": "spare"}),
            ("sign_transaction", {"wallet": "main", "transaction": evm_tx(MILLI_ETH, to=R2)}),
            ("read_data", {"name": "diary"}),
            ("get_address", {"wallet": "x" * 65}),
        ]
        for tool, args in calls:
            result = session.call(tool, args)
            assert result.is_error, (tool, result)
            err = json.loads(result.content[1].text)["error"]  # type: ignore[union-attr]
            for mark in ("`", "keysafe ", "KEYSAFE_", "--", "http"):
                assert mark not in err["next"], (tool, err["next"])
        denied = json.loads(session.call(*calls[1]).content[1].text)["error"]  # type: ignore[union-attr]
        assert "list_capabilities" in denied["next"]

    # -- dry runs and what is waiting -------------------------------------------------------------

    def test_check_policy_answers_allow_ask_and_deny_and_changes_nothing(
        self, world: McpWorld, session: McpSession
    ) -> None:
        budget = ok(session.call("list_capabilities", {}))["budget"]
        waiting = ok(session.call("list_pending_approvals", {}))["approvals"]
        sent = len(world.upstream.requests)

        def check(tool: str, args: dict[str, Any]) -> dict[str, Any]:
            return ok(session.call("check_policy", {"tool": tool, "arguments": args}))

        def tx(to: str, value: int = MILLI_ETH) -> dict[str, Any]:
            return {"wallet": "main", "transaction": evm_tx(value, to=to)}

        allowed = check("sign_transaction", tx(R1))
        assert (allowed["decision"], allowed["rule"]) == ("allow", "pay-r1"), allowed
        asked = check("sign_transaction", tx(R4))
        assert (asked["decision"], asked["rule"]) == ("ask", "ask-r4"), asked
        denied = check("sign_transaction", tx(R2))
        assert (denied["decision"], denied["code"]) == ("deny", "NO_MATCHING_RULE"), denied
        over = check("sign_transaction", tx(R1, MILLI_ETH * 20))
        assert over["decision"] == "deny" and "pay-r1" in over["reason"], over
        elsewhere = {"credential": "echo", "method": "GET", "url": "https://evil.example/x"}
        assert check("http_request", elsewhere)["code"] == "HOST_NOT_ALLOWED"
        json_body = {
            "credential": "echo",
            "method": "POST",
            "url": f"{world.upstream.base}/j",
            "body": {"a": 1},
        }
        assert check("http_request", json_body)["decision"] == "allow"
        # Nothing was reserved, parked or sent.
        assert ok(session.call("list_capabilities", {}))["budget"] == budget
        assert ok(session.call("list_pending_approvals", {}))["approvals"] == waiting
        assert len(world.upstream.requests) == sent

    def test_list_pending_approvals_shows_what_waits_for_the_owner_until_decided(
        self, world: McpWorld, session: McpSession
    ) -> None:
        args = {"wallet": "main", "transaction": evm_tx(MILLI_ETH + 7, to=R4)}
        parked = ok(session.call("sign_transaction", args))
        assert parked["status"] == "pending_approval"
        listed = {
            a["approval_id"]: a for a in ok(session.call("list_pending_approvals", {}))["approvals"]
        }
        mine = listed[parked["approval_id"]]
        assert mine["status"] == "pending" and mine["summary"] == parked["summary"]
        assert world.owner(f"/v1/owner/approvals/{parked['approval_id']}/deny").status_code == 200
        after = ok(session.call("list_pending_approvals", {}))["approvals"]
        assert parked["approval_id"] not in {a["approval_id"] for a in after}

    def test_pending_then_owner_approves_then_approval_status_returns_the_signed_result(
        self, world: McpWorld, session: McpSession
    ) -> None:
        direct = ok(
            session.call("sign_transaction", {"wallet": "main", "transaction": evm_tx(MILLI_ETH)})
        )
        args = {
            "wallet": "main",
            "transaction": evm_tx(MILLI_ETH, to=R4),
            "description": "pay R4 for the test",
        }
        pending = ok(session.call("sign_transaction", args))
        assert set(pending) == PENDING_KEYS, pending
        assert pending["status"] == "pending_approval"
        approval_id = pending["approval_id"]
        assert approval_id.startswith("apr_") and "ETH" in pending["summary"]
        still = ok(session.call("approval_status", {"approval_id": approval_id}))
        assert (still["status"], still.get("result")) == ("pending", None)

        started = time.monotonic()
        waiting = session.start_call(
            "approval_status", {"approval_id": approval_id, "wait_seconds": 30}
        )
        time.sleep(1.0)
        assert not waiting.done(), "approval_status did not wait for the owner"
        r = world.owner(f"/v1/owner/approvals/{approval_id}/approve")
        assert r.status_code == 200, r.text
        view = ok(waiting.result(60))
        assert time.monotonic() - started < 20, "the wait did not end when the owner approved"
        assert (view["status"], view["approval_id"]) == ("approved", approval_id)
        result = view["result"]
        assert set(result) == set(direct), (result, direct)
        assert result["status"] == "signed"
        for key in ("wallet", "address", "chain"):
            assert result[key] == direct[key], key
        raw = result["signed_transaction"]
        assert decode_signed(raw) == (world.vault.pristine.address, R4, MILLI_ETH, 1)
        assert result["tx_hash"] == tx_hash_of(raw)
        # Asking again gives the same result: the approved request ran once.
        assert ok(session.call("approval_status", {"approval_id": approval_id}))["result"] == (
            result
        )

    def test_pending_then_owner_denies_then_approval_status_is_denied_without_result(
        self, world: McpWorld, session: McpSession
    ) -> None:
        args = {"wallet": "main", "transaction": evm_tx(7 * MILLI_ETH)}  # above approve_above
        pending = ok(session.call("sign_transaction", args))
        assert pending["status"] == "pending_approval"
        approval_id = pending["approval_id"]
        r = world.owner(f"/v1/owner/approvals/{approval_id}/deny")
        assert r.status_code == 200, r.text
        view = ok(session.call("approval_status", {"approval_id": approval_id, "wait_seconds": 2}))
        assert (view["status"], view.get("result")) == ("denied", None)
