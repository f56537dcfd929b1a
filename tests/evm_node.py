"""A real local EVM node for tests: ganache from tests/tools/evm (installed by scripts/test).

The node listens on a free loopback port with chain id 31337 and deterministic, unlocked
accounts; `Node.rpc(method, *params)` speaks plain JSON-RPC, and `deploy_token` compiles
tests/tools/evm/Token.sol with solc-js (once per process) and deploys it. Modules share one node
per test process through the session fixture `evm_node` (import `evm_node_fixture`).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keysafe.testing import free_port

TOOLS = Path(__file__).resolve().parent / "tools" / "evm"
GANACHE = TOOLS / "node_modules" / "ganache" / "dist" / "node" / "cli.js"


@dataclass
class Node:
    url: str
    accounts: list[str]

    def rpc(self, method: str, *params: Any) -> Any:
        r = httpx.post(
            self.url,
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
            timeout=30,
        )
        body = r.json()
        if "error" in body:
            raise RuntimeError(f"{method}: {body['error']}")
        return body["result"]

    def balance(self, address: str) -> int:
        return int(self.rpc("eth_getBalance", address, "latest"), 16)

    def nonce(self, address: str) -> int:
        return int(self.rpc("eth_getTransactionCount", address, "latest"), 16)

    def send_from_node(self, tx: dict[str, Any]) -> dict[str, Any]:
        """Send from one of the node's unlocked accounts and wait for the receipt."""
        tx_hash = self.rpc("eth_sendTransaction", {"from": self.accounts[0], **tx})
        return self.wait(tx_hash)

    def wait(self, tx_hash: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            receipt = self.rpc("eth_getTransactionReceipt", tx_hash)
            if receipt:
                return dict(receipt)
            time.sleep(0.1)
        raise TimeoutError(f"no receipt for {tx_hash}")

    def deploy_token(self, name: str, symbol: str, decimals: int, supply: int) -> str:
        from eth_abi import encode

        compiled = _compiled_token()
        args = encode(["string", "string", "uint8", "uint256"], [name, symbol, decimals, supply])
        receipt = self.send_from_node(
            {"data": compiled["bytecode"] + args.hex(), "gas": hex(3_000_000)}
        )
        assert receipt["status"] == "0x1", receipt
        return str(receipt["contractAddress"])

    def token_balance(self, token: str, owner: str) -> int:
        data = "0x70a08231" + owner.lower().removeprefix("0x").rjust(64, "0")
        return int(self.rpc("eth_call", {"to": token, "data": data}, "latest"), 16)


@functools.cache
def _compiled_token() -> dict[str, Any]:
    """Token.sol compiled once per test process (solc-js takes seconds)."""
    out = subprocess.run(
        ["node", str(TOOLS / "compile.js")], check=True, capture_output=True, timeout=120
    ).stdout
    return dict(json.loads(out))


@contextmanager
def running_node() -> Iterator[Node]:
    if not GANACHE.exists():
        raise RuntimeError("ganache is not installed: run `bash scripts/test` (it runs npm ci)")
    port = free_port()
    proc = subprocess.Popen(
        [
            "node",
            str(GANACHE),
            "--server.host",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--chain.chainId",
            "31337",
            "--wallet.deterministic",
            "--wallet.totalAccounts",
            "3",
            "--logging.quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ | {"NODE_NO_WARNINGS": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                node = Node(url, [])
                node.accounts = list(node.rpc("eth_accounts"))
                break
            except (httpx.HTTPError, RuntimeError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"ganache did not start: {err[-500:]}") from None
                time.sleep(0.2)
        yield node
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session", name="evm_node")
def evm_node_fixture() -> Iterator[Node]:
    """One ganache per test process, shared by the modules that import this fixture; each test
    uses fresh vault wallets, so they only share the node's pre-funded accounts."""
    with running_node() as n:
        yield n
