"""Signing and verifying EVM transactions and messages, and filling them from a JSON-RPC node.

The test key is Hardhat's account 0 and doubles as the canary: it must never appear in any
exception text, repr or chained exception, whatever fails.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import rlp  # type: ignore[import-untyped]
from eth_account import Account
from eth_account._utils.legacy_transactions import serializable_unsigned_transaction_from_dict
from eth_account.messages import encode_defunct
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.crypto import keccak

from keysafe.chains.evm import signing
from keysafe.chains.evm.rpc import EvmRpc, RpcError
from keysafe.chains.evm.signing import (
    SignedTx,
    sign_personal_message,
    sign_transaction,
    sign_typed_data,
    verify_signed,
)
from keysafe.chains.evm.tx import (
    EvmTx,
    encode_unsigned,
    parse_transaction,
    to_eth_account_dict,
    with_filled,
)
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    IntegrityError,
    InternalError,
    KeysafeError,
    MalformedRequestError,
)

CANARY_HEX = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
HARDHAT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
OTHER_KEY = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # Hardhat 1
ALICE = "0x1111111111111111111111111111111111111111"
BOB = "0x2222222222222222222222222222222222222222"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def key() -> SecretBytes:
    return SecretBytes(bytes.fromhex(CANARY_HEX))


def complete(**overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "chainId": 31337,
        "nonce": 4,
        "to": ALICE,
        "value": 10**16,
        "gas": 21000,
        "maxFeePerGas": 2 * 10**9,
        "maxPriorityFeePerGas": 10**8,
    }
    d.update(overrides)
    return {k: v for k, v in d.items() if v is not None}


TX_KINDS: dict[str, dict[str, Any]] = {
    "EIP-1559": complete(),
    "EIP-1559 with access list and calldata": complete(
        to=BOB,
        data="0xa9059cbb" + "00" * 12 + ALICE[2:] + "00" * 31 + "05",
        gas=60000,
        accessList=[{"address": BOB, "storageKeys": ["0x" + "00" * 31 + "01", "0x" + "ab" * 32]}],
    ),
    "EIP-2930": complete(
        type=1,
        maxFeePerGas=None,
        maxPriorityFeePerGas=None,
        gasPrice=10**9,
        accessList=[{"address": ALICE, "storageKeys": []}],
    ),
    "legacy EIP-155": complete(maxFeePerGas=None, maxPriorityFeePerGas=None, gasPrice=10**9),
    "EIP-1559 contract creation": complete(to=None, data="0x6080604052", gas=100000),
    "legacy contract creation with value": complete(
        to=None,
        data="0x60006000",
        gas=100000,
        maxFeePerGas=None,
        maxPriorityFeePerGas=None,
        gasPrice=1,
    ),
}


@pytest.mark.parametrize("payload", TX_KINDS.values(), ids=list(TX_KINDS))
def test_sign_and_verify_round_trip(payload: dict[str, Any]) -> None:
    tx = parse_transaction(payload)
    signed = sign_transaction(tx, key())
    raw = bytes.fromhex(signed.raw_hex[2:])
    assert signed.sender == HARDHAT_0
    assert signed.tx_hash == "0x" + keccak(raw).hex()
    assert Account.recover_transaction(raw) == HARDHAT_0
    verify_signed(signed, tx, HARDHAT_0)  # idempotent: verifying again passes
    expected_type = tx.type
    assert (raw[0] if raw[0] < 0x7F else 0) == expected_type


@pytest.mark.parametrize("payload", TX_KINDS.values(), ids=list(TX_KINDS))
def test_encode_unsigned_is_what_eth_account_signs(payload: dict[str, Any]) -> None:
    tx = parse_transaction(payload)
    unsigned = encode_unsigned(tx)
    d = to_eth_account_dict(tx)
    if tx.type == 0:
        library_hash = serializable_unsigned_transaction_from_dict(d).hash()
    else:
        library_hash = TypedTransaction.from_dict(d).hash()
    assert keccak(unsigned) == bytes(library_hash)
    assert parse_transaction(unsigned.hex()) == tx
    assert parse_transaction("0x" + unsigned.hex(), chain_id=31337) == tx


# ---- tampering ----------------------------------------------------------------------------


def resign(d: dict[str, Any], hex_key: str = CANARY_HEX) -> SignedTx:
    s = Account.sign_transaction(d, bytes.fromhex(hex_key))
    raw = bytes(s.raw_transaction)
    return SignedTx("0x" + raw.hex(), "0x" + keccak(raw).hex(), HARDHAT_0)


TAMPERS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = {
    "value": (lambda d: {**d, "value": d["value"] + 1}, "value"),
    "to": (lambda d: {**d, "to": BOB}, "to"),
    "nonce": (lambda d: {**d, "nonce": d["nonce"] + 1}, "nonce"),
    "chain": (lambda d: {**d, "chainId": 1}, "chain"),
    "data": (lambda d: {**d, "data": b"\x00"}, "data"),
    "gas": (lambda d: {**d, "gas": d["gas"] + 1}, "gas"),
    "fee cap": (lambda d: {**d, "maxFeePerGas": d["maxFeePerGas"] * 10}, "maxFeePerGas"),
    "type": (
        lambda d: {
            **{k: v for k, v in d.items() if not k.startswith("maxP") and k != "maxFeePerGas"},
            "type": 1,
            "gasPrice": 10**9,
        },
        "type",
    ),
    "access list": (
        lambda d: {**d, "accessList": [{"address": BOB, "storageKeys": []}]},
        "accessList",
    ),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_verify_signed_catches_a_changed_field(name: str) -> None:
    change, field = TAMPERS[name]
    tx = parse_transaction(complete())
    tampered = resign(change(to_eth_account_dict(tx)))
    with pytest.raises(IntegrityError) as info:
        verify_signed(tampered, tx, HARDHAT_0)
    assert info.value.facts["field"] == field
    assert "was not returned" in str(info.value)


def test_verify_signed_catches_another_signer() -> None:
    tx = parse_transaction(complete())
    other = resign(to_eth_account_dict(tx), OTHER_KEY)
    with pytest.raises(IntegrityError) as info:
        verify_signed(other, tx, HARDHAT_0)
    assert info.value.facts["field"] == "sender"


def test_verify_signed_catches_pre_eip155_legacy() -> None:
    tx = parse_transaction(complete(maxFeePerGas=None, maxPriorityFeePerGas=None, gasPrice=1))
    d = to_eth_account_dict(tx)
    del d["chainId"]
    with pytest.raises(IntegrityError) as info:
        verify_signed(resign(d), tx, HARDHAT_0)
    assert info.value.facts["field"] == "chain"


def test_verify_signed_catches_flipped_bytes_and_wrong_hash() -> None:
    tx = parse_transaction(complete())
    signed = sign_transaction(tx, key())
    raw = bytearray.fromhex(signed.raw_hex[2:])
    for i in (5, len(raw) // 2, len(raw) - 1):
        broken = bytearray(raw)
        broken[i] ^= 0x01
        forged = SignedTx("0x" + broken.hex(), "0x" + keccak(bytes(broken)).hex(), HARDHAT_0)
        with pytest.raises(IntegrityError):
            verify_signed(forged, tx, HARDHAT_0)
    with pytest.raises(IntegrityError) as info:
        verify_signed(replace(signed, tx_hash="0x" + "00" * 32), tx, HARDHAT_0)
    assert info.value.facts["field"] == "hash"
    with pytest.raises(IntegrityError):
        verify_signed(replace(signed, raw_hex="0xzz"), tx, HARDHAT_0)


def test_verify_signed_refuses_high_s() -> None:
    tx = parse_transaction(complete())
    signed = sign_transaction(tx, key())
    raw = bytes.fromhex(signed.raw_hex[2:])
    items = rlp.decode(raw[1:])
    y, s = int.from_bytes(items[-3] or b"\x00", "big"), int.from_bytes(items[-1], "big")
    items[-3] = b"" if y == 1 else b"\x01"
    items[-1] = (N - s).to_bytes(32, "big").lstrip(b"\x00")
    malleated = b"\x02" + rlp.encode(items)
    forged = SignedTx("0x" + malleated.hex(), "0x" + keccak(malleated).hex(), HARDHAT_0)
    with pytest.raises(IntegrityError) as info:
        verify_signed(forged, tx, HARDHAT_0)
    assert info.value.facts["field"] == "signature"  # recovery alone would accept it


def test_signatures_are_low_s() -> None:
    for nonce in range(24):
        signed = sign_transaction(parse_transaction(complete(nonce=nonce)), key())
        raw = bytes.fromhex(signed.raw_hex[2:])
        s = int.from_bytes(rlp.decode(raw[1:])[-1], "big")
        assert 0 < s <= N // 2
        signature, _ = sign_personal_message(f"message {nonce}".encode(), key())
        assert int(signature[66:130], 16) <= N // 2


# ---- refusals before signing --------------------------------------------------------------


def test_incomplete_transaction_is_refused_naming_the_fields() -> None:
    tx = parse_transaction({"to": ALICE, "value": 1}, chain_id=31337)
    assert tx.missing_fields() == ("nonce", "gas", "maxFeePerGas", "maxPriorityFeePerGas")
    with pytest.raises(MalformedRequestError, match="missing nonce, gas, maxFeePerGas"):
        sign_transaction(tx, key())


def test_declared_sender_must_be_the_wallet() -> None:
    tx = parse_transaction(complete(**{"from": BOB}))
    with pytest.raises(MalformedRequestError, match="this wallet is 0xf39F"):
        sign_transaction(tx, key())
    ok = parse_transaction(complete(**{"from": HARDHAT_0.lower()}))
    assert sign_transaction(ok, key()).sender == HARDHAT_0


def test_with_filled_never_overrides_and_fits_the_type() -> None:
    tx = parse_transaction({"to": ALICE, "maxFeePerGas": 100}, chain_id=31337)
    filled = with_filled(
        tx, nonce=3, gas=21000, gas_price=7, max_fee_per_gas=999, max_priority_fee_per_gas=500
    )
    assert (filled.nonce, filled.gas, filled.gas_price) == (3, 21000, None)
    assert filled.max_fee_per_gas == 100  # the agent's cap is kept
    assert filled.max_priority_fee_per_gas == 100  # a filled tip never exceeds it
    assert filled.missing_fields() == ()
    legacy = parse_transaction({"to": ALICE, "gasPrice": 5}, chain_id=31337)
    assert with_filled(legacy, gas_price=9, max_fee_per_gas=9).gas_price == 5
    tipped = parse_transaction({"to": ALICE, "maxPriorityFeePerGas": 50}, chain_id=31337)
    assert with_filled(tipped, max_fee_per_gas=10).max_fee_per_gas == 50


# ---- personal_sign and typed data ---------------------------------------------------------


def test_personal_sign_recovers_the_wallet() -> None:
    message = b"example.com wants you to sign in with your Ethereum account"
    signature, address = sign_personal_message(message, key())
    assert address == HARDHAT_0
    sig = bytes.fromhex(signature[2:])
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert Account.recover_message(encode_defunct(primitive=message), signature=sig) == HARDHAT_0
    expected = Account.sign_message(encode_defunct(primitive=message), bytes.fromhex(CANARY_HEX))
    assert sig == bytes(expected.signature)


def test_personal_sign_refuses_empty() -> None:
    with pytest.raises(MalformedRequestError):
        sign_personal_message(b"", key())


# ---- canary -------------------------------------------------------------------------------


def _texts(exc: BaseException) -> Iterator[str]:
    yield str(exc)
    yield repr(exc)
    yield "".join(traceback.format_exception(exc))
    if isinstance(exc, KeysafeError):
        yield json.dumps(exc.to_dict())
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            yield from _texts(linked)


class _LeakyAccount:
    """Stands in for a library that echoes its arguments (the key) in its errors."""

    @staticmethod
    def sign_transaction(d: Any, private_key: bytes) -> Any:
        raise ValueError(f"cannot sign with {private_key.hex()} / {private_key!r}")

    @staticmethod
    def sign_message(m: Any, private_key: bytes) -> Any:
        raise ValueError(f"cannot sign with {private_key.hex()}")


def test_canary_key_never_appears_in_errors_or_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    forms = {CANARY_HEX, CANARY_HEX.upper(), str(int(CANARY_HEX, 16)), CANARY_HEX[:40]}
    tx = parse_transaction(complete())
    failures: list[Callable[[], object]] = [
        lambda: sign_transaction(parse_transaction({"to": ALICE}, chain_id=1), key()),
        lambda: sign_transaction(parse_transaction(complete(**{"from": BOB})), key()),
        lambda: verify_signed(resign(to_eth_account_dict(replace(tx, value=1))), tx, HARDHAT_0),
        lambda: sign_personal_message(b"", key()),
        lambda: sign_typed_data({"types": {}, "domain": {}, "message": {}, "x": 1}, key()),
        lambda: sign_transaction(tx, SecretBytes(bytes.fromhex(CANARY_HEX)[:31])),
    ]
    seen: list[str] = []
    for fail in failures:
        with pytest.raises(KeysafeError) as info:
            fail()
        seen.extend(_texts(info.value))

    monkeypatch.setattr(signing, "Account", _LeakyAccount)
    for leaky in (
        lambda: sign_transaction(tx, key()),
        lambda: sign_personal_message(b"hi", key()),
    ):
        with pytest.raises(InternalError) as internal:
            leaky()
        assert internal.value.__context__ is None and internal.value.__cause__ is None
        seen.extend(_texts(internal.value))

    k = key()
    seen += [repr(k), str(k), f"{k}", repr(sign_transaction.__doc__)]
    for text in seen:
        for form in forms:
            assert form not in text


def test_signed_tx_repr_has_no_key() -> None:
    signed = sign_transaction(parse_transaction(complete()), key())
    assert CANARY_HEX not in repr(signed)


# ---- JSON-RPC filling ---------------------------------------------------------------------


class FakeNode:
    """A local stand-in speaking JSON-RPC over httpx's MockTransport."""

    def __init__(self, chain_id: int = 31337, fee_history: bool = True) -> None:
        self.chain_id = chain_id
        self.fee_history = fee_history
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        method, params = body["method"], body["params"]
        self.calls.append(method)
        results: dict[str, Any] = {
            "eth_chainId": hex(self.chain_id),
            "eth_getTransactionCount": "0x2a",
            "eth_gasPrice": hex(3 * 10**9),
            "eth_maxPriorityFeePerGas": hex(10**9),
            "eth_estimateGas": "0x5208"
            if method == "eth_estimateGas" and params[0]["data"] == "0x"
            else "0xb411",
            "eth_sendRawTransaction": "0x" + "ab" * 32,
            "eth_getTransactionReceipt": {"status": "0x1"},
        }
        if method == "eth_feeHistory" and self.fee_history:
            result: Any = {"baseFeePerGas": ["0x1", "0x2", hex(5 * 10**9)], "reward": [["0x1"]]}
        elif method in results:
            result = results[method]
        else:
            return httpx.Response(
                200,
                json={
                    "jsonrpc": "2.0",
                    "id": body["id"],
                    "error": {"code": -32601, "message": f"the method {method} does not exist"},
                },
            )
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": result})


def rpc(node: FakeNode) -> EvmRpc:
    return EvmRpc("https://node.example/v2/SECRET-API-KEY", transport=httpx.MockTransport(node))


def test_fill_sets_only_missing_fields() -> None:
    node = FakeNode()
    tx = parse_transaction({"to": ALICE, "value": 1, "maxPriorityFeePerGas": 7}, chain_id=31337)
    filled = rpc(node).fill(tx, HARDHAT_0)
    assert filled.nonce == 42
    assert filled.gas == 21000
    assert filled.max_priority_fee_per_gas == 7  # kept
    assert filled.max_fee_per_gas == 2 * 5 * 10**9 + 10**9
    assert filled.missing_fields() == ()
    assert node.calls[0] == "eth_chainId"
    complete_tx = parse_transaction(complete())
    assert rpc(node).fill(complete_tx, HARDHAT_0) is complete_tx


def test_fill_legacy_and_fee_fallback() -> None:
    node = FakeNode(fee_history=False)
    legacy = parse_transaction({"to": ALICE, "gasPrice": None, "type": 0}, chain_id=31337)
    assert rpc(node).fill(legacy, HARDHAT_0).gas_price == 3 * 10**9
    fees = rpc(node).fees()
    assert fees.max_fee_per_gas == fees.max_priority_fee_per_gas == 3 * 10**9


def test_fill_refuses_a_node_for_another_chain() -> None:
    tx = parse_transaction({"to": ALICE}, chain_id=31337)
    with pytest.raises(RpcError, match="serves chain id 8453"):
        rpc(FakeNode(chain_id=8453)).fill(tx, HARDHAT_0)


def test_rpc_errors_name_the_host_not_the_url() -> None:
    client = rpc(FakeNode())
    with pytest.raises(RpcError) as info:
        client.request("eth_unknown", [])
    assert "node.example" in str(info.value)
    assert "does not exist" in str(info.value)
    assert "SECRET-API-KEY" not in str(info.value) + repr(client)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    offline = EvmRpc("http://127.0.0.1:9/key/SECRET", transport=httpx.MockTransport(down))
    with pytest.raises(RpcError, match="could not be reached") as info:
        offline.chain_id()
    assert "SECRET" not in str(info.value)


def test_send_raw_and_receipt() -> None:
    client = rpc(FakeNode())
    signed = sign_transaction(parse_transaction(complete()), key())
    assert client.send_raw(signed.raw_hex) == "0x" + "ab" * 32
    assert client.receipt("0x" + "ab" * 32, wait_seconds=0) == {"status": "0x1"}


def test_evm_tx_is_frozen() -> None:
    tx: EvmTx = parse_transaction(complete())
    with pytest.raises(AttributeError):
        tx.value = 5  # type: ignore[misc]
