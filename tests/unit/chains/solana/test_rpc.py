"""SolanaRpc against a local stand-in node that speaks Solana JSON-RPC over real HTTP.

No validator runs here, so the stand-in (http.server on 127.0.0.1, a free port, one thread)
records every request and answers sendTransaction, getLatestBlockhash and getBalance the way a
node does: it checks the transaction's signatures with solders and answers -32003 when one fails.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from solders.transaction import VersionedTransaction

from keysafe.chains.solana import (
    SolanaRpc,
    SolanaRpcError,
    TransactionRejectedError,
    intent_from_tx,
    parse_transaction,
    sign_transaction,
)
from keysafe.errors import MalformedRequestError
from tests.unit.chains.solana import (
    BLOCKHASH,
    BOB,
    SOL,
    SPONSOR,
    SYSTEM,
    WALLET,
    legacy_b64,
    registry_with_usdc,
    sol_transfer,
    v0_b64,
    wallet_seed,
)

API_KEY = "CANARY-API-KEY-7f3a9c"


@dataclass
class Node:
    """What the stand-in saw, and how it should misbehave (mode)."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    mode: str = "ok"
    balance: int = 1_500_000_000


def _answer(node: Node, body: dict[str, Any]) -> tuple[int, bytes]:
    def ok(result: Any) -> tuple[int, bytes]:
        rid = body["id"] + (1 if node.mode == "wrong id" else 0)
        return 200, json.dumps({"jsonrpc": "2.0", "result": result, "id": rid}).encode()

    def err(code: int, message: str, data: Any = None) -> tuple[int, bytes]:
        error = {"code": code, "message": message, **({"data": data} if data else {})}
        return 200, json.dumps({"jsonrpc": "2.0", "error": error, "id": body["id"]}).encode()

    if node.mode == "html 502":
        return 502, b"<html>bad gateway</html>"
    if node.mode == "rate limited":
        return 429, b'{"jsonrpc":"2.0","error":{"code":429,"message":"Too many requests"},"id":1}'
    method, params = body.get("method"), body.get("params", [])
    if method == "sendTransaction":
        if params[1].get("encoding") != "base64":
            return err(-32602, "invalid encoding")
        tx = VersionedTransaction.from_bytes(base64.b64decode(params[0]))
        if not all(tx.verify_with_results()):
            return err(-32003, "Transaction signature verification failure")
        if node.mode == "simulation fails":
            logs = [
                "Program 11111111111111111111111111111111 invoke [1]",
                "Transfer: insufficient lamports 0, need 1",
            ]
            return err(
                -32002,
                "Transaction simulation failed: Error processing Instruction 0: custom program "
                "error: 0x1",
                {"logs": logs, "err": {"InstructionError": [0, {"Custom": 1}]}},
            )
        if node.mode == "other signature":
            return ok("1" * 88)
        return ok(str(tx.signatures[0]))
    if method == "getLatestBlockhash":
        if node.mode == "bad blockhash":
            return ok({"context": {"slot": 7}, "value": {"blockhash": "xyz"}})
        value = {"blockhash": str(BLOCKHASH), "lastValidBlockHeight": 3090}
        return ok({"context": {"apiVersion": "2.1.0", "slot": 7}, "value": value})
    if method == "getBalance":
        return ok({"context": {"slot": 7}, "value": node.balance})
    if method == "getAccountInfo":
        if params[0] == str(BOB):  # no account there
            return ok({"context": {"slot": 7}, "value": None})
        owner = "not-base58!" if node.mode == "bad owner" else str(SYSTEM)
        value = {"owner": owner, "lamports": 1, "data": ["", "base64"], "executable": False}
        return ok({"context": {"slot": 7}, "value": value})
    return err(-32601, "Method not found")


@pytest.fixture
def node() -> Iterator[Node]:
    state = Node(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            if state.mode == "not json":
                status, out = 200, b"hello"
            else:
                body = json.loads(raw)
                state.requests.append(body)
                status, out = _answer(state, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *_: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/?api-key={API_KEY}"
    # A short poll interval: shutdown() waits for the loop to notice, once per test.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _signed(b64: str | None = None) -> str:
    tx = parse_transaction(b64 or legacy_b64([sol_transfer(BOB, SOL // 2)]))
    return sign_transaction(tx, wallet_seed()).base64


def test_send_transaction_request_shape_and_the_node_verifies_it(node: Node) -> None:
    signed = _signed()
    with SolanaRpc(node.url) as rpc:
        signature = rpc.send_transaction(signed)
    (req,) = node.requests
    assert req["jsonrpc"] == "2.0" and isinstance(req["id"], int)
    assert req["method"] == "sendTransaction"
    assert req["params"] == [signed, {"encoding": "base64"}]
    assert node.headers[0]["content-type"] == "application/json"
    received = VersionedTransaction.from_bytes(base64.b64decode(req["params"][0]))
    assert received.verify_with_results() == [True]
    assert signature == str(received.signatures[0])


def test_send_transaction_passes_options_by_their_rpc_names(node: Node) -> None:
    signed = _signed(v0_b64([sol_transfer(BOB, 1)]))
    with SolanaRpc(node.url) as rpc:
        rpc.send_transaction(
            signed, skip_preflight=True, preflight_commitment="confirmed", max_retries=3
        )
    config = node.requests[0]["params"][1]
    assert config == {
        "encoding": "base64",
        "skipPreflight": True,
        "preflightCommitment": "confirmed",
        "maxRetries": 3,
    }


def test_full_flow_decode_sign_broadcast(node: Node) -> None:
    reg = registry_with_usdc()
    tx = parse_transaction(v0_b64([sol_transfer(BOB, SOL // 2)]))
    intent = intent_from_tx(tx, registry=reg, chain=reg.chain("solana"), wallet_address=str(WALLET))
    assert (intent.action, intent.amount, intent.to) == ("solana.transfer", "0.5", str(BOB))
    signed = sign_transaction(tx, wallet_seed())
    with SolanaRpc(node.url) as rpc:
        assert rpc.send_transaction(signed.base64) == signed.signature_b58
    sent = parse_transaction(node.requests[0]["params"][0])
    assert sent.message_bytes == tx.message_bytes


def test_unsigned_fee_payer_is_not_sent(node: Node) -> None:
    partly = _signed(legacy_b64([sol_transfer(BOB, 1)], payer=SPONSOR))
    with SolanaRpc(node.url) as rpc, pytest.raises(MalformedRequestError, match="has not signed"):
        rpc.send_transaction(partly)
    assert node.requests == []


def test_rejected_transaction_carries_the_node_message_and_logs(node: Node) -> None:
    node.mode = "simulation fails"
    with SolanaRpc(node.url) as rpc, pytest.raises(TransactionRejectedError) as info:
        rpc.send_transaction(_signed())
    err = info.value
    assert "Transaction simulation failed" in err.what and "insufficient lamports" in err.what
    assert err.facts["rpc_code"] == -32002
    assert err.code == "MALFORMED_REQUEST"


def test_node_answering_another_signature_is_an_rpc_error(node: Node) -> None:
    node.mode = "other signature"
    with SolanaRpc(node.url) as rpc, pytest.raises(SolanaRpcError, match="not this transaction"):
        rpc.send_transaction(_signed())


def test_latest_blockhash_request_and_answer(node: Node) -> None:
    with SolanaRpc(node.url) as rpc:
        latest = rpc.latest_blockhash()
        rpc.latest_blockhash(commitment="confirmed")
    assert latest.blockhash == str(BLOCKHASH) and latest.last_valid_block_height == 3090
    assert [r["method"] for r in node.requests] == ["getLatestBlockhash"] * 2
    assert node.requests[0]["params"] == []
    assert node.requests[1]["params"] == [{"commitment": "confirmed"}]


def test_get_balance_request_and_answer(node: Node) -> None:
    with SolanaRpc(node.url) as rpc:
        assert rpc.get_balance(str(WALLET)) == 1_500_000_000
        rpc.get_balance(str(WALLET), commitment="finalized")
    assert node.requests[0]["method"] == "getBalance"
    assert node.requests[0]["params"] == [str(WALLET)]
    assert node.requests[1]["params"] == [str(WALLET), {"commitment": "finalized"}]
    assert node.requests[0]["id"] != node.requests[1]["id"]


def test_account_owner_request_and_answer(node: Node) -> None:
    with SolanaRpc(node.url) as rpc:
        assert rpc.account_owner(str(WALLET)) == str(SYSTEM)
        assert rpc.account_owner(str(BOB)) is None
        node.mode = "bad owner"
        with pytest.raises(SolanaRpcError, match="malformed owner"):
            rpc.account_owner(str(WALLET))
    # Only the owner is asked for: no account data comes back.
    config = {"encoding": "base64", "dataSlice": {"offset": 0, "length": 0}}
    assert node.requests[0]["params"] == [str(WALLET), config]


def test_get_balance_of_a_non_address_is_refused_locally(node: Node) -> None:
    with SolanaRpc(node.url) as rpc, pytest.raises(MalformedRequestError, match="not a Solana"):
        rpc.get_balance("0x1111111111111111111111111111111111111111")
    assert node.requests == []


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("wrong id", "another request id"),
        ("not json", "did not answer getBalance with JSON-RPC"),
        ("html 502", "HTTP 502"),
        ("rate limited", "rate limiting"),
    ],
)
def test_misbehaving_node_is_a_clear_rpc_error(node: Node, mode: str, words: str) -> None:
    node.mode = mode
    with SolanaRpc(node.url) as rpc, pytest.raises(SolanaRpcError, match=words):
        rpc.get_balance(str(WALLET))


def test_malformed_blockhash_answer_is_refused(node: Node) -> None:
    node.mode = "bad blockhash"
    with SolanaRpc(node.url) as rpc, pytest.raises(SolanaRpcError, match="malformed value"):
        rpc.latest_blockhash()


def test_rpc_error_on_a_read_method_names_the_node_message(node: Node) -> None:
    with SolanaRpc(node.url) as rpc, pytest.raises(SolanaRpcError, match="Method not found"):
        rpc._result("getNothing", [])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable_node_error_never_shows_the_api_key() -> None:
    url = f"http://user:{API_KEY}@127.0.0.1:{_closed_port()}/rpc/{API_KEY}?api-key={API_KEY}"
    rpc = SolanaRpc(url, timeout=2)
    with rpc, pytest.raises(SolanaRpcError, match="could not be reached") as info:
        rpc.get_balance(str(WALLET))
    err = info.value
    for text in (str(err), repr(err), repr(err.to_dict()), repr(rpc)):
        assert API_KEY not in text
    assert err.__cause__ is None and err.__context__ is None


def test_stand_in_node_errors_never_show_the_api_key(node: Node) -> None:
    node.mode = "html 502"
    with SolanaRpc(node.url) as rpc, pytest.raises(SolanaRpcError) as info:
        rpc.latest_blockhash()
    assert API_KEY not in str(info.value) and "127.0.0.1" in str(info.value)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "not a url", ""])
def test_non_http_url_is_refused(url: str) -> None:
    with pytest.raises(MalformedRequestError, match="not an http"):
        SolanaRpc(url)
