"""Shared pieces of the black-box MCP tests: a vault that exercises every tool, a local upstream,
and a synchronous handle on an MCP SDK `Client` session.

`build_mcp_vault` extends the standard vault (wallet `main`, agent `bot` under STANDARD_POLICY)
with what the other tools need: the built-in chain `local` pointed at the upstream's JSON-RPC
endpoint (so send_transaction really broadcasts), a bearer credential `echo` for the upstream, a
standard data record `profile`, a message rule, a typed-data rule, and a second token agent
`helper` with a policy of its own.

`Upstream` is a ThreadingHTTPServer on a loopback port: `POST /rpc` answers Ethereum JSON-RPC
(eth_sendRawTransaction returns the transaction's keccak hash and records the raw bytes); any other
request is recorded and answered with a JSON body that echoes the Authorization header it carried.

`McpSession` runs one `mcp.Client` in a thread with its own event loop, so plain (sync) pytest
tests can call tools one after the other on one connection; it keeps the JSON of everything the
client received for canary greps.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from eth_utils import keccak
from mcp import Client
from mcp_types import CallToolResult

from tests.conftest import Cli
from tests.e2e.server_fixture import (
    KEYSAFE,
    R1,
    STANDARD_POLICY,
    Pristine,
    add_agent,
    build_vault,
    cli_env,
    free_port,
)

TOOL_NAMES = frozenset(
    {
        "list_capabilities",
        "get_address",
        "sign_transaction",
        "send_transaction",
        "sign_message",
        "sign_typed_data",
        "http_request",
        "read_data",
        "approval_status",
    }
)

LOCAL_CHAIN_ID = 31337  # the built-in chain `local`, re-pointed at the upstream's /rpc
SIWE = "example.com wants you to sign in with your Ethereum account"
PROFILE = {"city": "Lyon", "zip": "69001", "email": "owner@example.com"}

HELPER_POLICY = """\
version: 1
rules:
  - name: helper-reads-profile
    allow: [data.read]
    data: [profile]
"""


def mcp_policy(upstream_port: int) -> str:
    """STANDARD_POLICY plus one allow rule for each of the other tools."""
    return STANDARD_POLICY + f"""\
  - name: send-local
    allow: [evm.transfer]
    chains: [local]
    assets: [ETH]
    recipients: ["{R1}"]
    max_per_tx: {{ETH: "0.01"}}
  - name: echo-api
    allow: [http.request]
    credentials: [echo]
    methods: [GET, POST]
    urls: ["http://127.0.0.1:{upstream_port}/**"]
  - name: read-profile
    allow: [data.read]
    data: [profile]
  - name: sign-in
    allow: [evm.sign_message]
    message_matches: "^example.com wants you to sign in"
  - name: typed-on-ethereum
    allow: [evm.sign_typed_data]
    chains: [ethereum]
"""


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

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path == "/rpc" and self.command == "POST":
                self._rpc(json.loads(body))
                return
            up.requests.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            self._answer(
                200,
                {"path": self.path, "method": self.command,
                 "authorization": self.headers.get("authorization", "")},
            )  # fmt: skip

        def _rpc(self, req: dict[str, Any]) -> None:
            method, params = req.get("method"), req.get("params") or []
            if method == "eth_sendRawTransaction":
                raw = str(params[0])
                up.raw_txs.append(raw)
                result: Any = "0x" + keccak(bytes.fromhex(raw.removeprefix("0x"))).hex()
            elif method == "eth_chainId":
                result = hex(LOCAL_CHAIN_ID)
            else:
                self._answer(200, {"jsonrpc": "2.0", "id": req.get("id"),
                                   "error": {"code": -32601, "message": "no such method"}})  # fmt: skip
                return
            self._answer(200, {"jsonrpc": "2.0", "id": req.get("id"), "result": result})

        do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

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

    @property
    def home(self) -> Path:
        return self.pristine.home

    @property
    def bot_token(self) -> str:
        return self.pristine.tokens["bot"]


def build_mcp_vault(root: Path, upstream_port: int) -> McpVault:
    pristine = build_vault(root, mcp_policy(upstream_port))
    cli = Cli(pristine.home, cli_env(pristine.home))
    rpc = f"http://127.0.0.1:{upstream_port}/rpc"
    cli.ok("chain", "add", "local", "--chain-id", str(LOCAL_CHAIN_ID), "--rpc", rpc)
    secret = "canary-mcp-" + base64.b32encode(os.urandom(20)).decode().lower()
    host = f"127.0.0.1:{upstream_port}"
    cli.ok("credential", "add", "echo", "--host", host, "--bearer", input=secret)
    cli.ok("data", "set", "profile", "--class", "standard", input=json.dumps(PROFILE))
    helper_policy = root / "helper-policy.yaml"
    helper_policy.write_text(HELPER_POLICY, encoding="utf-8")
    helper = add_agent(cli, "helper", helper_policy)
    return McpVault(pristine, secret, helper)


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
                    except BaseException as exc:  # noqa: BLE001 - handed to the waiting test
                        fut.set_exception(exc)
                    else:
                        fut.set_result(result)
        except BaseException as exc:  # noqa: BLE001 - reported by __enter__ or close
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
    """The error object of a refusal, after checking text and structure agree on `code`."""
    assert result.is_error, result
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith(f"{code}: "), text
    data = result.structured_content
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


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def mcp_http_server(env: dict[str, str], vault_url: str, log_dir: Path) -> Iterator[McpHttp]:
    """`keysafe mcp --http --port FREE` with KEYSAFE_URL=vault_url; yields once the port answers."""
    for attempt in range(3):
        port = free_port()
        log_path = log_dir / f"mcp-http-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [KEYSAFE, "mcp", "--http", "--port", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env | {"KEYSAFE_URL": vault_url},
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None and not _accepts(port):
            time.sleep(0.05)
        if proc.poll() is None and _accepts(port):
            break
        _stop(proc)
        text = log_path.read_text(errors="replace")
        if "address already in use" not in text.lower() or attempt == 2:
            raise RuntimeError(f"keysafe mcp --http did not start:\n{text}")
    server = McpHttp(f"http://127.0.0.1:{port}/mcp", port, proc, log_path)
    try:
        yield server
    finally:
        _stop(proc)
