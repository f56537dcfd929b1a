"""A local Solana node for tests: LiteSVM (solders) behind a JSON-RPC endpoint on loopback.

No validator runs here; LiteSVM is the Solana runtime in-process, with the real System, SPL
Token, Token-2022 and associated-token-account programs, so a transaction the vault broadcasts
is executed for real (signatures verified, accounts created, balances moved, blockhash checked).
The endpoint speaks the JSON-RPC methods keysafe uses: getLatestBlockhash, getAccountInfo,
getBalance and sendTransaction (a failing transaction is answered -32002 with its error, as a
node's preflight does). Every request is recorded in `requests`.

    with running_node() as node:
        mint = node.create_mint(decimals=6)
        node.fund_tokens(mint, owner, 10**9)
        rpc_url = node.url
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from solders.account import Account
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address
from solders.token.state import Mint, TokenAccount, TokenAccountState
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
_MINT_LEN, _ACCOUNT_LEN = 82, 165


@dataclass
class SolanaNode:
    svm: LiteSVM
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def airdrop(self, address: str, lamports: int) -> None:
        with self.lock:
            self.svm.airdrop(Pubkey.from_string(address), lamports)

    def balance(self, address: str) -> int:
        with self.lock:
            return self.svm.get_balance(Pubkey.from_string(address)) or 0

    def create_mint(self, decimals: int) -> str:
        mint = Keypair().pubkey()
        data = bytes(Mint(Keypair().pubkey(), 10**15, decimals, True))
        with self.lock:
            rent = self.svm.minimum_balance_for_rent_exemption(_MINT_LEN)
            self.svm.set_account(mint, Account(rent, data, TOKEN_PROGRAM))
        return str(mint)

    def fund_tokens(self, mint: str, owner: str, units: int) -> str:
        """Give `owner` an associated token account holding `units`; its address."""
        m, o = Pubkey.from_string(mint), Pubkey.from_string(owner)
        ata = get_associated_token_address(o, m)
        state = TokenAccount(m, o, units, None, TokenAccountState.Initialized, None, 0)
        with self.lock:
            rent = self.svm.minimum_balance_for_rent_exemption(_ACCOUNT_LEN)
            self.svm.set_account(ata, Account(rent, bytes(state), TOKEN_PROGRAM))
        return str(ata)

    def token_balance(self, mint: str, owner: str) -> int | None:
        """The amount in `owner`'s associated token account, None when it does not exist."""
        ata = get_associated_token_address(Pubkey.from_string(owner), Pubkey.from_string(mint))
        with self.lock:
            account = self.svm.get_account(ata)
        return None if account is None else TokenAccount.from_bytes(bytes(account.data)).amount

    def methods(self) -> list[str]:
        return [str(r.get("method")) for r in self.requests]

    # -- JSON-RPC ----------------------------------------------------------------------------------

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        rid, method, params = body.get("id"), body.get("method"), body.get("params") or []

        def ok(result: Any) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": rid, "result": result}

        def err(code: int, message: str, data: Any = None) -> dict[str, Any]:
            error = {"code": code, "message": message} | ({"data": data} if data else {})
            return {"jsonrpc": "2.0", "id": rid, "error": error}

        context = {"slot": 1}
        with self.lock:
            if method == "getLatestBlockhash":
                value = {"blockhash": str(self.svm.latest_blockhash()), "lastValidBlockHeight": 150}
                return ok({"context": context, "value": value})
            if method == "getBalance":
                lamports = self.svm.get_balance(Pubkey.from_string(params[0])) or 0
                return ok({"context": context, "value": lamports})
            if method == "getAccountInfo":
                account = self.svm.get_account(Pubkey.from_string(params[0]))
                if account is None:
                    return ok({"context": context, "value": None})
                info = {
                    "owner": str(account.owner),
                    "lamports": account.lamports,
                    "executable": account.executable,
                    "rentEpoch": 0,
                    "data": ["", "base64"],
                    "space": len(account.data),
                }
                return ok({"context": context, "value": info})
            if method == "sendTransaction":
                tx = VersionedTransaction.from_bytes(base64.b64decode(params[0]))
                result = self.svm.send_transaction(tx)
                if isinstance(result, FailedTransactionMetadata):
                    logs = list(result.meta().logs())[-5:]
                    return err(
                        -32002, f"Transaction simulation failed: {result.err()}", {"logs": logs}
                    )
                return ok(str(tx.signatures[0]))
        return err(-32601, "Method not found")


@contextmanager
def json_rpc_server(answer: Callable[[Any], Any]) -> Iterator[str]:
    """Serve JSON-RPC over HTTP on a free loopback port: each POST body goes to `answer`, whose
    return value is the reply. Yields the URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            out = json.dumps(answer(json.loads(raw))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def running_node() -> Iterator[SolanaNode]:
    node = SolanaNode(LiteSVM())
    with json_rpc_server(node.answer) as url:
        node.url = url
        yield node
