"""What keysafe decodes from EVM requests: a named table of transactions, typed data and messages.

Each case gives the raw request as an agent would send it and either the intent fields the policy
will judge (plus a piece of the owner's summary) or the words of the MalformedRequestError.
Calldata and RLP are built here with eth-abi and rlp directly, never with keysafe's encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import rlp  # type: ignore[import-untyped]
from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keysafe.chains.evm.intents import (
    intent_from_personal_message,
    intent_from_tx,
    intent_from_typed_data,
)
from keysafe.chains.evm.tx import parse_transaction
from keysafe.errors import MalformedRequestError, PolicyDeniedError
from keysafe.policy.intent import Intent
from keysafe.policy.registry import Registry

REG = Registry.builtin()

ALICE = "0x1111111111111111111111111111111111111111"
BOB = "0x2222222222222222222222222222222222222222"
UNKNOWN_TOKEN = "0x3333333333333333333333333333333333333333"
SPENDER = "0xDeaD00000000000000000000000000000000BEEf"
USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
USDC_ETH = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
DAI_ETH = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
WETH_BASE = "0x4200000000000000000000000000000000000006"
ROUTER02 = "0x2626664c2603336E57B271c5C0b26F421741e481"
ROUTER_V3 = "0xE592427A0AEce92De3Edee1F18E0157C05861564"
ROUTER_V2 = "0x4752ba5DBc23f44D87826276BF6Fd6b1C372aD24"
PERMIT2 = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
NFT = "0x03a520b32C04BF3bEEf7BEb72E919cf822Ed34f1"
MAX256 = 2**256 - 1
MAX160 = 2**160 - 1


def sel(signature: str) -> str:
    return keccak(text=signature)[:4].hex()


def call(signature: str, *args: Any) -> str:
    """Calldata for `signature` with `args`, as "0x" hex."""
    types = signature[signature.index("(") + 1 : -1]
    parts = _split(types)
    return "0x" + sel(signature) + encode(parts, list(args)).hex()


def _split(body: str) -> list[str]:
    out, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(body[start:i])
            start = i + 1
    if body:
        out.append(body[start:])
    return out


def b(hex_addr: str) -> bytes:
    return bytes.fromhex(hex_addr[2:])


def rlp_hex(prefix: bytes, items: list[Any], *, with_0x: bool = True) -> str:
    raw: bytes = prefix + rlp.encode(items)
    return ("0x" if with_0x else "") + raw.hex()


def typed(
    primary: str, types: dict[str, Any], message: dict[str, Any], domain: dict[str, Any]
) -> dict[str, Any]:
    domain_type = [
        {"name": n, "type": t}
        for n, t in (
            ("name", "string"),
            ("version", "string"),
            ("chainId", "uint256"),
            ("verifyingContract", "address"),
        )
        if n in domain
    ]
    return {
        "types": {"EIP712Domain": domain_type, **types},
        "primaryType": primary,
        "domain": domain,
        "message": message,
    }


def fields(*pairs: str) -> list[dict[str, str]]:
    return [{"type": p.split()[0], "name": p.split()[1]} for p in pairs]


def permit_2612(token: str, chain_id: Any, value: Any, name: str = "USD Coin") -> dict[str, Any]:
    return typed(
        "Permit",
        {
            "Permit": fields(
                "address owner",
                "address spender",
                "uint256 value",
                "uint256 nonce",
                "uint256 deadline",
            )
        },
        {"owner": ALICE, "spender": SPENDER, "value": value, "nonce": 0, "deadline": 1893456000},
        {"name": name, "version": "2", "chainId": chain_id, "verifyingContract": token},
    )


P2_DOMAIN = {"name": "Permit2", "chainId": 8453, "verifyingContract": PERMIT2}
P2_DETAILS = fields("address token", "uint160 amount", "uint48 expiration", "uint48 nonce")
P2_PERMISSIONS = fields("address token", "uint256 amount")


def permit2_single(token: str, amount: int) -> dict[str, Any]:
    return typed(
        "PermitSingle",
        {
            "PermitSingle": fields(
                "PermitDetails details", "address spender", "uint256 sigDeadline"
            ),
            "PermitDetails": P2_DETAILS,
        },
        {
            "details": {
                "token": token,
                "amount": str(amount),
                "expiration": 1893456000,
                "nonce": 0,
            },
            "spender": SPENDER,
            "sigDeadline": "1893456000",
        },
        P2_DOMAIN,
    )


def permit2_batch(tokens: list[tuple[str, int]]) -> dict[str, Any]:
    return typed(
        "PermitBatch",
        {
            "PermitBatch": fields(
                "PermitDetails[] details", "address spender", "uint256 sigDeadline"
            ),
            "PermitDetails": P2_DETAILS,
        },
        {
            "details": [
                {"token": t, "amount": a, "expiration": 1893456000, "nonce": i}
                for i, (t, a) in enumerate(tokens)
            ],
            "spender": SPENDER,
            "sigDeadline": 1893456000,
        },
        P2_DOMAIN,
    )


def permit2_transfer(token: str, amount: int, *, witness: bool = False) -> dict[str, Any]:
    head = ["TokenPermissions permitted", "address spender", "uint256 nonce", "uint256 deadline"]
    types: dict[str, Any] = {"TokenPermissions": P2_PERMISSIONS}
    message: dict[str, Any] = {
        "permitted": {"token": token, "amount": amount},
        "spender": SPENDER,
        "nonce": 7,
        "deadline": 1893456000,
    }
    primary = "PermitTransferFrom"
    if witness:
        primary = "PermitWitnessTransferFrom"
        head.append("ExampleWitness witness")
        types["ExampleWitness"] = fields("address user")
        message["witness"] = {"user": ALICE}
    types[primary] = fields(*head)
    return typed(primary, types, message, P2_DOMAIN)


MAIL = typed(
    "Mail",
    {
        "Person": fields("string name", "address wallet"),
        "Mail": fields("Person from", "Person to", "string contents"),
    },
    {
        "from": {"name": "Cow", "wallet": ALICE},
        "to": {"name": "Bob", "wallet": BOB},
        "contents": "Hello, Bob!",
    },
    {"name": "Ether\u202eMail\n", "version": "1", "chainId": 8453, "verifyingContract": NFT},
)

USDC_DOMAIN = {"name": "USD Coin", "version": "2", "chainId": 8453, "verifyingContract": USDC_BASE}
EIP3009 = fields(
    "address from",
    "address to",
    "uint256 value",
    "uint256 validAfter",
    "uint256 validBefore",
    "bytes32 nonce",
)


def authorization(
    primary: str = "TransferWithAuthorization",
    *,
    sender: str = ALICE,
    value: Any = 5_000_000,
    domain: dict[str, Any] | None = None,
    shape: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """An EIP-3009 authorization as x402 clients sign it (USDC on Base by default)."""
    message = {
        "from": sender,
        "to": BOB,
        "value": value,
        "validAfter": 0,
        "validBefore": 1893456000,
        "nonce": "0x" + "ab" * 32,
    }
    types = shape or EIP3009
    message = {k: v for k, v in message.items() if k in {f["name"] for f in types}}
    return typed(primary, {primary: types}, message, domain or USDC_DOMAIN)


FORWARDER = "0x5555555555555555555555555555555555555555"
SAFE = "0x6666666666666666666666666666666666666666"


def forward(
    to: str, data: str, value: int = 0, *, deadline: bool = False, sender: str = ALICE
) -> dict[str, Any]:
    """An ERC-2771 ForwardRequest: MinimalForwarder, or OZ 5's ERC2771Forwarder with deadline."""
    names = ["address from", "address to", "uint256 value", "uint256 gas", "uint256 nonce"]
    message: dict[str, Any] = {"from": sender, "to": to, "value": value, "gas": 100000, "nonce": 0}
    if deadline:
        names.append("uint48 deadline")
        message["deadline"] = 1893456000
    names.append("bytes data")
    message["data"] = data
    domain = {"name": "Forwarder", "version": "1", "chainId": 8453, "verifyingContract": FORWARDER}
    return typed("ForwardRequest", {"ForwardRequest": fields(*names)}, message, domain)


def meta_tx(target: str, data: str, *, salt_chain: int | None = None) -> dict[str, Any]:
    """A MetaTransaction (executeMetaTransaction): the target contract runs `data` as `from`."""
    doc = typed(
        "MetaTransaction",
        {"MetaTransaction": fields("uint256 nonce", "address from", "bytes functionSignature")},
        {"nonce": 0, "from": ALICE, "functionSignature": data},
        {"name": "USD Coin", "version": "1", "chainId": 8453, "verifyingContract": target},
    )
    if salt_chain is not None:  # Biconomy style: the chain id in the salt, no chainId
        doc["domain"] = {
            "name": "USD Coin",
            "version": "1",
            "verifyingContract": target,
            "salt": "0x" + salt_chain.to_bytes(32, "big").hex(),
        }
        doc["types"]["EIP712Domain"] = fields(
            "string name", "string version", "address verifyingContract", "bytes32 salt"
        )
    return doc


SAFE_TX = fields(
    "address to",
    "uint256 value",
    "bytes data",
    "uint8 operation",
    "uint256 safeTxGas",
    "uint256 baseGas",
    "uint256 gasPrice",
    "address gasToken",
    "address refundReceiver",
    "uint256 nonce",
)


def safe_tx(
    to: str,
    data: str = "0x",
    value: int = 0,
    *,
    operation: int = 0,
    gas_price: int = 0,
    chain_id: bool = True,
) -> dict[str, Any]:
    domain: dict[str, Any] = {"chainId": 8453, "verifyingContract": SAFE}
    if not chain_id:
        del domain["chainId"]
    message = {
        "to": to,
        "value": value,
        "data": data,
        "operation": operation,
        "safeTxGas": 0,
        "baseGas": 0,
        "gasPrice": gas_price,
        "gasToken": "0x" + "00" * 20,
        "refundReceiver": "0x" + "00" * 20,
        "nonce": 3,
    }
    return typed("SafeTx", {"SafeTx": SAFE_TX}, message, domain)


SEAPORT_ORDER = typed(
    "OrderComponents",
    {
        "OrderComponents": fields("address offerer", "OfferItem[] offer", "uint256 counter"),
        "OfferItem": fields("uint8 itemType", "address token", "uint256 startAmount"),
    },
    {"offerer": ALICE, "offer": [{"itemType": 2, "token": NFT, "startAmount": 1}], "counter": 0},
    {
        "name": "Seaport",
        "version": "1.6",
        "chainId": 8453,
        "verifyingContract": "0x0000000000000068F116a894984e2DB1123eB395",
    },
)

SIWE = (
    "example.com wants you to sign in with your Ethereum account:\n"
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\nSign in to Example.\n\nURI: https://example.com\n"
    "Version: 1\nChain ID: 8453\nNonce: 32891756\nIssued At: 2021-09-30T16:25:24Z"
)


@dataclass(frozen=True)
class Case:
    payload: Any
    kind: Literal["tx", "typed", "personal"] = "tx"
    chain: str = "base"
    pass_chain_id: bool = True  # give parse_transaction the chain's id
    expect: dict[str, Any] = field(default_factory=dict)  # Intent fields
    tx: dict[str, Any] = field(default_factory=dict)  # EvmTx fields
    summary: str | None = None  # must appear in intent.summary
    error: str | None = None  # MalformedRequestError message must contain this
    denied: str | None = None  # PolicyDeniedError message must contain this
    wallet: str | None = None  # the signing wallet's address, for typed data


def native(amount: str, to: str = ALICE) -> dict[str, Any]:
    return {
        "action": "evm.transfer",
        "chain": "base",
        "asset": "ETH",
        "amount": amount,
        "to": to,
        "contract": None,
        "spender": None,
        "selector": None,
    }


CASES: dict[str, Case] = {
    # ---- native transfers, every encoding --------------------------------------------------
    "native transfer, hex value": Case(
        {"to": ALICE, "value": "0xde0b6b3a7640000"},
        expect=native("1"),
        tx={"type": 2, "chain_id": 8453, "nonce": None, "gas": None},
        summary="send 1 ETH on Base to 0x1111…1111",
    ),
    "native transfer, decimal string value": Case(
        {"to": ALICE, "value": "1500000000000000000", "chainId": "8453"}, expect=native("1.5")
    ),
    "native transfer, JSON integer value and hex chainId": Case(
        {"to": ALICE, "value": 10**15, "chainId": "0x2105"}, expect=native("0.001")
    ),
    "native transfer of zero": Case({"to": BOB}, expect=native("0", BOB)),
    "lower-case recipient is checksummed": Case(
        {"to": SPENDER.lower(), "value": 1}, expect=native("0.000000000000000001", SPENDER)
    ),
    "legacy dict (gasPrice, no type) is type 0": Case(
        {"to": ALICE, "value": "0x1", "gasPrice": "1000000000", "gas": 21000, "nonce": "0x7"},
        expect=native("0.000000000000000001"),
        tx={"type": 0, "gas_price": 10**9, "gas": 21000, "nonce": 7},
    ),
    "EIP-2930 dict with access list": Case(
        {
            "type": "0x1",
            "to": ALICE,
            "value": 1,
            "gasPrice": 5,
            "gas": 30000,
            "nonce": 1,
            "accessList": [{"address": BOB, "storageKeys": ["0x" + "00" * 31 + "01"]}],
        },
        expect=native("0.000000000000000001"),
        tx={"type": 1, "gas_price": 5},
    ),
    "EIP-1559 dict, input instead of data, gasLimit instead of gas": Case(
        {
            "type": 2,
            "to": ALICE,
            "value": 2,
            "maxFeePerGas": "0x3b9aca00",
            "maxPriorityFeePerGas": 1,
            "gasLimit": "0x5208",
            "nonce": 0,
            "input": "0x",
        },
        expect=native("0.000000000000000002"),
        tx={"type": 2, "max_fee_per_gas": 10**9, "max_priority_fee_per_gas": 1, "gas": 21000},
    ),
    "nulls mean not set; from is kept for the signer to check": Case(
        {
            "from": ALICE.lower(),
            "to": BOB,
            "value": "0x0",
            "nonce": None,
            "gas": None,
            "gasLimit": "21000",
            "maxFeePerGas": None,
            "chainId": None,
            "data": None,
            "input": "0x",
            "accessList": None,
            "type": None,
        },
        expect=native("0", BOB),
        tx={"type": 2, "nonce": None, "gas": 21000, "sender": ALICE, "chain_id": 8453},
    ),
    "legacy EIP-155 RLP": Case(
        rlp_hex(b"", [3, 10**9, 21000, b(ALICE), 10**18, b"", 8453, 0, 0]),
        expect=native("1"),
        tx={"type": 0, "nonce": 3, "gas_price": 10**9, "chain_id": 8453},
    ),
    "legacy pre-EIP-155 RLP takes the requested chain": Case(
        rlp_hex(b"", [3, 10**9, 21000, b(ALICE), 10**18, b""]),
        expect=native("1"),
        tx={"type": 0, "chain_id": 8453},
    ),
    "EIP-2930 RLP with access list": Case(
        rlp_hex(b"\x01", [8453, 0, 7, 30000, b(ALICE), 5, b"", [[b(BOB), [bytes(32)]]]]),
        expect=native("0.000000000000000005"),
        tx={"type": 1, "gas_price": 7},
    ),
    "EIP-1559 RLP without 0x prefix": Case(
        rlp_hex(b"\x02", [8453, 9, 1, 100, 21000, b(ALICE), 10**17, b"", []], with_0x=False),
        expect=native("0.1"),
        tx={"type": 2, "nonce": 9, "max_priority_fee_per_gas": 1, "max_fee_per_gas": 100},
    ),
    # ---- ERC-20 -----------------------------------------------------------------------------
    "ERC-20 transfer of USDC on Base": Case(
        {"to": USDC_BASE, "data": call("transfer(address,uint256)", ALICE, 25_000_000)},
        expect={
            "action": "evm.transfer",
            "chain": "base",
            "asset": "USDC",
            "amount": "25",
            "to": ALICE,
            "contract": USDC_BASE,
            "selector": "0xa9059cbb",
            "function": "transfer(address,uint256)",
            "spender": None,
        },
        summary="send 25 USDC (0x8335…2913 on Base) to 0x1111…1111",
    ),
    "ERC-20 transfer of USDC on Ethereum, fractional amount": Case(
        {"to": USDC_ETH, "data": call("transfer(address,uint256)", BOB, 1_500_001)},
        chain="ethereum",
        expect={"chain": "ethereum", "asset": "USDC", "amount": "1.500001", "to": BOB},
        summary="send 1.500001 USDC (0xA0b8…eB48 on Ethereum) to 0x2222…2222",
    ),
    "ERC-20 transferFrom: to is the token recipient": Case(
        {"to": USDC_BASE, "data": call("transferFrom(address,address,uint256)", BOB, ALICE, 10**6)},
        expect={
            "action": "evm.transfer",
            "asset": "USDC",
            "amount": "1",
            "to": ALICE,
            "contract": USDC_BASE,
            "selector": "0x23b872dd",
        },
        summary="taken from 0x2222…2222",
    ),
    "ERC-20 transfer of an unknown token keeps base units and the token address": Case(
        {"to": UNKNOWN_TOKEN, "data": call("transfer(address,uint256)", ALICE, 12345)},
        expect={
            "action": "evm.transfer",
            "asset": UNKNOWN_TOKEN,
            "amount": "12345",
            "contract": UNKNOWN_TOKEN,
            "to": ALICE,
        },
        summary="12345 base units of unknown token 0x3333…3333",
    ),
    "ERC-20 transfer with native value attached is a call showing the ETH": Case(
        {"to": USDC_BASE, "value": 10**18, "data": call("transfer(address,uint256)", ALICE, 1)},
        expect={
            "action": "evm.call",
            "asset": "ETH",
            "amount": "1",
            "to": USDC_BASE,
            "contract": USDC_BASE,
            "function": "transfer(address,uint256)",
        },
        summary="with 1 ETH attached",
    ),
    "approve 25 USDC": Case(
        {"to": USDC_BASE, "data": call("approve(address,uint256)", SPENDER, 25 * 10**6)},
        expect={
            "action": "evm.approve",
            "asset": "USDC",
            "amount": "25",
            "spender": SPENDER,
            "contract": USDC_BASE,
            "unlimited": False,
            "to": None,
            "selector": "0x095ea7b3",
        },
        summary="approve 25 USDC to 0xDeaD…BEEf (0x8335…2913 on Base)",
    ),
    "approve max uint256 is unlimited": Case(
        {"to": USDC_BASE, "data": call("approve(address,uint256)", SPENDER, MAX256)},
        expect={
            "action": "evm.approve",
            "amount": "unlimited",
            "unlimited": True,
            "spender": SPENDER,
            "asset": "USDC",
        },
        summary="APPROVE UNLIMITED USDC to 0xDeaD…BEEf",
    ),
    "approve exactly 2^128 is unlimited": Case(
        {"to": USDC_BASE, "data": call("approve(address,uint256)", SPENDER, 2**128)},
        expect={"amount": "unlimited", "unlimited": True},
    ),
    "approve 2^128 - 1 is a (huge) limited amount": Case(
        {"to": USDC_BASE, "data": call("approve(address,uint256)", SPENDER, 2**128 - 1)},
        expect={"amount": "340282366920938463463374607431768.211455", "unlimited": False},
    ),
    "approve zero (revoke)": Case(
        {"to": USDC_BASE, "data": call("approve(address,uint256)", SPENDER, 0)},
        expect={"action": "evm.approve", "amount": "0", "unlimited": False},
    ),
    "increaseAllowance is an approval": Case(
        {"to": USDC_BASE, "data": call("increaseAllowance(address,uint256)", SPENDER, 5 * 10**6)},
        expect={
            "action": "evm.approve",
            "amount": "5",
            "spender": SPENDER,
            "unlimited": False,
            "selector": "0x39509351",
        },
        summary="more (increaseAllowance adds to the allowance)",
    ),
    "increaseAllowance by max uint256 is unlimited": Case(
        {"to": USDC_BASE, "data": call("increaseAllowance(address,uint256)", SPENDER, MAX256)},
        expect={"action": "evm.approve", "amount": "unlimited", "unlimited": True},
    ),
    "approve on an unknown token": Case(
        {"to": UNKNOWN_TOKEN, "data": call("approve(address,uint256)", SPENDER, 777)},
        expect={
            "action": "evm.approve",
            "asset": UNKNOWN_TOKEN,
            "amount": "777",
            "unlimited": False,
        },
        summary="approve 777 base units of unknown token 0x3333…3333 to 0xDeaD…BEEf",
    ),
    "unlimited approve on an unknown token": Case(
        {"to": UNKNOWN_TOKEN, "data": call("approve(address,uint256)", SPENDER, MAX256)},
        expect={"asset": UNKNOWN_TOKEN, "amount": "unlimited", "unlimited": True},
        summary="APPROVE UNLIMITED unknown token 0x3333…3333 to 0xDeaD…BEEf (on Base)",
    ),
    "setApprovalForAll(true) is unlimited": Case(
        {"to": NFT, "data": call("setApprovalForAll(address,bool)", SPENDER, True)},
        expect={
            "action": "evm.approve",
            "spender": SPENDER,
            "contract": NFT,
            "unlimited": True,
            "amount": "unlimited",
            "asset": None,
            "selector": "0xa22cb465",
        },
        summary="APPROVE ALL NFTs of 0x03a5…34f1 on Base to 0xDeaD…BEEf",
    ),
    "setApprovalForAll(false) revokes": Case(
        {"to": NFT, "data": call("setApprovalForAll(address,bool)", SPENDER, False)},
        expect={"action": "evm.approve", "spender": SPENDER, "unlimited": False, "amount": None},
        summary="revoke 0xDeaD…BEEf's approval for all NFTs",
    ),
    "Permit2 on-chain approve of max uint160 is unlimited": Case(
        {
            "to": PERMIT2,
            "data": call(
                "approve(address,address,uint160,uint48)", USDC_BASE, SPENDER, MAX160, 1893456000
            ),
        },
        expect={
            "action": "evm.approve",
            "asset": "USDC",
            "contract": USDC_BASE,
            "spender": SPENDER,
            "unlimited": True,
        },
        summary="via Permit2",
    ),
    "Permit2's approve selector sent to another contract is a plain call": Case(
        {
            "to": UNKNOWN_TOKEN,
            "data": call("approve(address,address,uint160,uint48)", USDC_BASE, SPENDER, 5, 0),
        },
        expect={"action": "evm.call", "function": "approve(address,address,uint160,uint48)"},
    ),
    # ---- other calls ------------------------------------------------------------------------
    "WETH deposit carries its ETH": Case(
        {"to": WETH_BASE, "value": "0x16345785d8a0000", "data": "0xd0e30db0"},
        expect={
            "action": "evm.call",
            "asset": "ETH",
            "amount": "0.1",
            "to": WETH_BASE,
            "contract": WETH_BASE,
            "selector": "0xd0e30db0",
            "function": "deposit()",
        },
        summary="call deposit() on 0x4200…0006 on Base with 0.1 ETH attached",
    ),
    "WETH withdraw": Case(
        {"to": WETH_BASE, "data": call("withdraw(uint256)", 10**18)},
        expect={
            "action": "evm.call",
            "function": "withdraw(uint256)",
            "amount": None,
            "asset": None,
        },
    ),
    "multicall names its inner calls": Case(
        {
            "to": ROUTER02,
            "data": call(
                "multicall(uint256,bytes[])",
                1893456000,
                [
                    bytes.fromhex(
                        call(
                            "exactInputSingle((address,address,uint24,address,uint256,uint256,uint160))",
                            (WETH_BASE, USDC_BASE, 500, ALICE, 10**18, 0, 0),
                        )[2:]
                    ),
                    bytes.fromhex(sel("unwrapWETH9(uint256,address)")) + bytes(64),
                ],
            ),
        },
        expect={
            "action": "evm.call",
            "function": "multicall(uint256,bytes[])",
            "selector": "0x5ae401dc",
        },
        summary="(2 inner calls: exactInputSingle, unwrapWETH9)",
    ),
    "Uniswap V2 swapExactTokensForTokens": Case(
        {
            "to": ROUTER_V2,
            "data": call(
                "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
                10**6,
                1,
                [USDC_BASE, WETH_BASE],
                ALICE,
                1893456000,
            ),
        },
        expect={
            "action": "evm.call",
            "selector": "0x38ed1739",
            "contract": ROUTER_V2,
            "function": "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
        },
    ),
    "Uniswap V3 exactInputSingle (SwapRouter) with ETH in": Case(
        {
            "to": ROUTER_V3,
            "value": 10**18,
            "data": call(
                "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
                (WETH_BASE, USDC_BASE, 500, ALICE, 1893456000, 10**18, 0, 0),
            ),
        },
        expect={"action": "evm.call", "selector": "0x414bf389", "asset": "ETH", "amount": "1"},
        summary="call exactInputSingle(",
    ),
    "Uniswap V3 exactInputSingle (SwapRouter02)": Case(
        {
            "to": ROUTER02,
            "data": call(
                "exactInputSingle((address,address,uint24,address,uint256,uint256,uint160))",
                (USDC_BASE, WETH_BASE, 500, ALICE, 10**6, 0, 0),
            ),
        },
        expect={"action": "evm.call", "selector": "0x04e45aaf"},
    ),
    "ERC-721 safeTransferFrom is a call": Case(
        {"to": NFT, "data": call("safeTransferFrom(address,address,uint256)", ALICE, BOB, 7)},
        expect={
            "action": "evm.call",
            "function": "safeTransferFrom(address,address,uint256)",
            "contract": NFT,
        },
    ),
    "unknown selector is an opaque call": Case(
        {"to": UNKNOWN_TOKEN, "data": "0x12345678" + "00" * 32},
        expect={
            "action": "evm.call",
            "selector": "0x12345678",
            "function": None,
            "to": UNKNOWN_TOKEN,
            "contract": UNKNOWN_TOKEN,
            "amount": None,
        },
        summary="call unknown function 0x12345678 on 0x3333…3333 on Base",
    ),
    "unknown selector with native value keeps the value visible": Case(
        {"to": UNKNOWN_TOKEN, "value": "2000000000000000000", "data": "0xdeadbeef"},
        expect={"action": "evm.call", "selector": "0xdeadbeef", "asset": "ETH", "amount": "2"},
        summary="with 2 ETH attached",
    ),
    "contract creation is a deploy": Case(
        {"to": None, "data": "0x6080604052348015600f57600080fd5b50"},
        expect={"action": "evm.deploy", "to": None, "contract": None, "amount": None},
        summary="deploy a contract on Base (17 bytes of init code)",
    ),
    "contract creation with value, as RLP": Case(
        rlp_hex(b"\x02", [8453, 0, 1, 2, 100000, b"", 5 * 10**17, b"\x60\x00", []]),
        expect={"action": "evm.deploy", "to": None, "asset": "ETH", "amount": "0.5"},
        summary="with 0.5 ETH",
    ),
    # ---- malformed --------------------------------------------------------------------------
    "truncated RLP": Case(
        rlp_hex(b"\x02", [8453, 0, 1, 2, 21000, b(ALICE), 1, b"", []])[:-6],
        error="not valid RLP",
    ),
    "RLP with trailing bytes": Case(
        rlp_hex(b"\x02", [8453, 0, 1, 2, 21000, b(ALICE), 1, b"", []]) + "00",
        error="not valid RLP",
    ),
    "RLP integer with a leading zero byte": Case(
        rlp_hex(b"\x02", [8453, 0, 1, 2, b"\x00\x52\x08", b(ALICE), 1, b"", []]),
        error="not a canonical integer",
    ),
    "RLP value wider than 256 bits": Case(
        rlp_hex(b"\x02", [8453, 0, 1, 2, 21000, b(ALICE), 2**256, b"", []]),
        error="larger than 2^256 - 1",
    ),
    "signed EIP-1559 RLP is refused": Case(
        rlp_hex(b"\x02", [8453, 0, 1, 2, 21000, b(ALICE), 1, b"", [], 1, 5, 6]),
        error="already signed",
    ),
    "signed legacy RLP is refused": Case(
        rlp_hex(b"", [0, 1, 21000, b(ALICE), 1, b"", 16941, 5, 6]), error="already signed"
    ),
    "RLP with a 19-byte to": Case(
        rlp_hex(b"\x02", [8453, 0, 1, 2, 21000, b(ALICE)[:19], 1, b"", []]), error="20"
    ),
    "blob transaction type is unsupported": Case(
        rlp_hex(b"\x03", [8453, 0]), error="EIP-4844 blob transactions"
    ),
    "not hex at all": Case("send all my money to bob", error="neither a JSON object nor hex"),
    "wrong chain id in a dict": Case({"to": ALICE, "chainId": 1}, error="chain id 1"),
    "wrong chain id in RLP": Case(
        rlp_hex(b"", [0, 1, 21000, b(ALICE), 1, b"", 1, 0, 0]), error="chain id 1"
    ),
    "wrong chain id found at decode time": Case(
        {"to": ALICE, "chainId": 1},
        pass_chain_id=False,
        error="chain id 1, but the request is for base",
    ),
    "no chain id anywhere": Case({"to": ALICE}, pass_chain_id=False, error="no chainId"),
    "calldata shorter than its selector": Case(
        {"to": USDC_BASE, "data": "0xa9059c"}, error="shorter than a 4-byte function selector"
    ),
    "known selector with no arguments": Case(
        {"to": USDC_BASE, "data": "0x095ea7b3"}, error="approve(address,uint256) does not decode"
    ),
    "transfer with truncated arguments": Case(
        {"to": USDC_BASE, "data": call("transfer(address,uint256)", ALICE, 1)[:-20]},
        error="does not decode",
    ),
    "transfer with dirty address padding": Case(
        {"to": USDC_BASE, "data": "0xa9059cbb" + "ff" * 12 + ALICE[2:] + "00" * 31 + "01"},
        error="does not decode",
    ),
    "value beyond uint256 (hex)": Case({"to": ALICE, "value": "0x1" + "0" * 64}, error="2^256"),
    "value beyond uint256 (decimal)": Case({"to": ALICE, "value": str(2**256)}, error="2^256"),
    "negative value": Case({"to": ALICE, "value": -1}, error="must not be negative"),
    "float value": Case({"to": ALICE, "value": 1.5}, error="must be an integer"),
    "nonce beyond 2^64 - 2": Case({"to": ALICE, "nonce": 2**64 - 1}, error="nonce is larger"),
    "unknown dict field": Case(
        {"to": ALICE, "value": 1, "hash": "0x00"}, error="unknown transaction field(s): hash"
    ),
    "mixed fee fields": Case(
        {"to": ALICE, "gasPrice": 1, "maxFeePerGas": 2}, error="gasPrice and maxFeePerGas"
    ),
    "type 2 with gasPrice": Case({"type": 2, "to": ALICE, "gasPrice": 1}, error="not gasPrice"),
    "type 0 with maxFeePerGas": Case(
        {"type": "0x0", "to": ALICE, "maxFeePerGas": 1}, error="not maxFeePerGas"
    ),
    "tip above fee cap": Case(
        {"to": ALICE, "maxFeePerGas": 1, "maxPriorityFeePerGas": 2}, error="above maxFeePerGas"
    ),
    "bad address checksum": Case(
        {"to": "0xdead00000000000000000000000000000000BEEF"}, error="not a valid address"
    ),
    "empty to is not contract creation": Case({"to": "", "value": 1}, error="not a valid address"),
    "odd-length data": Case({"to": ALICE, "data": "0xabc"}, error="odd number of hex digits"),
    "data and input disagree": Case(
        {"to": ALICE, "data": "0x", "input": "0xd0e30db0"}, error="both given and differ"
    ),
    # ---- EIP-712 permits and typed data -----------------------------------------------------
    "EIP-2612 permit for 25 USDC": Case(
        permit_2612(USDC_BASE, 8453, "25000000"),
        kind="typed",
        expect={
            "action": "evm.approve",
            "asset": "USDC",
            "amount": "25",
            "spender": SPENDER,
            "contract": USDC_BASE,
            "unlimited": False,
            "primary_type": "Permit",
        },
        summary="approve 25 USDC to 0xDeaD…BEEf (0x8335…2913 on Base) by EIP-2612 permit",
    ),
    "EIP-2612 permit of max uint256, hex chainId, is unlimited": Case(
        permit_2612(USDC_BASE, "0x2105", hex(MAX256)),
        kind="typed",
        expect={"action": "evm.approve", "amount": "unlimited", "unlimited": True},
        summary="APPROVE UNLIMITED USDC to 0xDeaD…BEEf",
    ),
    "EIP-2612 permit on another chain is refused": Case(
        permit_2612(USDC_BASE, 1, 1), kind="typed", error="typed data is for chain id 1"
    ),
    "EIP-2612 permit with a fuzzy amount string is refused": Case(
        permit_2612(USDC_BASE, 8453, "1_000"), kind="typed", error="must be a whole number"
    ),
    "DAI permit allowed=true is unlimited": Case(
        typed(
            "Permit",
            {
                "Permit": fields(
                    "address holder",
                    "address spender",
                    "uint256 nonce",
                    "uint256 expiry",
                    "bool allowed",
                )
            },
            {"holder": ALICE, "spender": SPENDER, "nonce": 0, "expiry": 0, "allowed": True},
            {"name": "Dai Stablecoin", "version": "1", "chainId": 1, "verifyingContract": DAI_ETH},
        ),
        kind="typed",
        chain="ethereum",
        expect={
            "action": "evm.approve",
            "unlimited": True,
            "spender": SPENDER,
            "asset": DAI_ETH,
            "contract": DAI_ETH,
        },
        summary="by DAI-style permit",
    ),
    "ERC-4494 NFT permit approves one token": Case(
        typed(
            "Permit",
            {
                "Permit": fields(
                    "address spender", "uint256 tokenId", "uint256 nonce", "uint256 deadline"
                )
            },
            {"spender": SPENDER, "tokenId": 42, "nonce": 0, "deadline": 1893456000},
            {"name": "Positions", "version": "1", "chainId": 8453, "verifyingContract": NFT},
        ),
        kind="typed",
        expect={"action": "evm.approve", "unlimited": False, "spender": SPENDER, "contract": NFT},
        summary="take NFT #42 of 0x03a5…34f1",
    ),
    "Permit2 PermitSingle of max uint160 is unlimited": Case(
        permit2_single(USDC_BASE, MAX160),
        kind="typed",
        expect={
            "action": "evm.approve",
            "asset": "USDC",
            "amount": "unlimited",
            "unlimited": True,
            "spender": SPENDER,
            "contract": USDC_BASE,
        },
        summary="APPROVE UNLIMITED USDC to 0xDeaD…BEEf (0x8335…2913 on Base) via Permit2",
    ),
    "Permit2 PermitSingle for 10 USDC": Case(
        permit2_single(USDC_BASE, 10 * 10**6),
        kind="typed",
        expect={"action": "evm.approve", "amount": "10", "unlimited": False},
    ),
    "Permit2 PermitBatch of one token": Case(
        permit2_batch([(USDC_BASE, 3 * 10**6)]),
        kind="typed",
        expect={"action": "evm.approve", "asset": "USDC", "amount": "3", "unlimited": False},
    ),
    "Permit2 PermitBatch over two tokens is refused": Case(
        permit2_batch([(USDC_BASE, 1), (WETH_BASE, 1)]),
        kind="typed",
        error="2 different tokens",
    ),
    "Permit2 PermitTransferFrom is a transfer to the spender": Case(
        permit2_transfer(USDC_BASE, 7 * 10**6),
        kind="typed",
        expect={
            "action": "evm.transfer",
            "asset": "USDC",
            "amount": "7",
            "to": SPENDER,
            "spender": SPENDER,
            "contract": USDC_BASE,
            "unlimited": False,
        },
        summary="by Permit2 signature transfer",
    ),
    "Permit2 witness transfer of an unknown token": Case(
        permit2_transfer(UNKNOWN_TOKEN, 99, witness=True),
        kind="typed",
        expect={"action": "evm.transfer", "asset": UNKNOWN_TOKEN, "amount": "99"},
    ),
    "unrecognised permit is judged as unlimited": Case(
        typed(
            "PermitForAll",
            {"PermitForAll": fields("address spender", "uint256 nonce")},
            {"spender": SPENDER, "nonce": 1},
            {"name": "Thing", "chainId": 8453, "verifyingContract": NFT},
        ),
        kind="typed",
        expect={
            "action": "evm.approve",
            "unlimited": True,
            "amount": "unlimited",
            "spender": SPENDER,
        },
        summary="APPROVE UNLIMITED: unrecognised permit",
    ),
    "plain typed data is sign_typed_data with its domain": Case(
        MAIL,
        kind="typed",
        expect={
            "action": "evm.sign_typed_data",
            "contract": NFT,
            "primary_type": "Mail",
            "domain": {
                "name": "Ether\u202eMail\n",
                "version": "1",
                "chainId": 8453,
                "verifyingContract": NFT,
            },
        },
        summary='sign typed data for "Ether Mail" (0x03a5…34f1 on Base) as a "Mail" message',
    ),
    "typed data with an unknown top-level field is refused": Case(
        {**MAIL, "extra": 1}, kind="typed", error="unknown field(s): extra"
    ),
    "typed data with a non-canonical EIP712Domain is refused": Case(
        {
            **MAIL,
            "types": {
                **MAIL["types"],
                "EIP712Domain": list(reversed(MAIL["types"]["EIP712Domain"])),
            },
        },
        kind="typed",
        error="EIP712Domain",
    ),
    # ---- network fees --------------------------------------------------------------------
    "EIP-1559 fee is gas × maxFeePerGas": Case(
        {
            "to": ALICE,
            "value": 10**15,
            "gas": 21000,
            "maxFeePerGas": 20 * 10**9,
            "maxPriorityFeePerGas": 10**9,
        },
        expect=native("0.001") | {"fee": "0.00042"},
        summary="send 0.001 ETH on Base to 0x1111…1111, max fee 0.00042 ETH",
    ),
    "legacy fee is gas × gasPrice, exact even when absurd": Case(
        {"to": ALICE, "value": 10**15, "gas": 21000, "gasPrice": 2 * 10**21, "nonce": 0},
        expect=native("0.001") | {"fee": "42000000"},
        summary="max fee 42000000 ETH",
    ),
    "fee of a token transfer is in ETH": Case(
        {
            "to": USDC_BASE,
            "data": call("transfer(address,uint256)", BOB, 10**6),
            "gas": 60000,
            "gasPrice": 10**9,
            "nonce": 0,
        },
        expect={"action": "evm.transfer", "asset": "USDC", "amount": "1", "fee": "0.00006"},
        summary="send 1 USDC (0x8335…2913 on Base) to 0x2222…2222, max fee 0.00006 ETH",
    ),
    "fee of a contract deployment": Case(
        {"data": "0x6000", "gas": 100000, "gasPrice": 10**9, "nonce": 0},
        expect={"action": "evm.deploy", "fee": "0.0001"},
    ),
    "the largest possible fee still fits the intent": Case(
        {"to": ALICE, "gas": 2**64 - 1, "gasPrice": MAX256, "nonce": 0},
        expect={
            "fee": str((2**64 - 1) * MAX256 // 10**18)
            + "."
            + str((2**64 - 1) * MAX256 % 10**18).zfill(18).rstrip("0")
        },
    ),
    "no fee until the RPC fills gas": Case(
        {"to": ALICE, "value": 1, "maxFeePerGas": 10**9}, expect={"fee": None}
    ),
    # ---- EIP-3009 authorizations (USDC, x402) -------------------------------------------------
    "EIP-3009 TransferWithAuthorization is a USDC transfer": Case(
        authorization(),
        kind="typed",
        wallet=ALICE,
        expect={
            "action": "evm.transfer",
            "asset": "USDC",
            "amount": "5",
            "to": BOB,
            "contract": USDC_BASE,
            "primary_type": "TransferWithAuthorization",
            "fee": None,
        },
        summary="send 5 USDC (0x8335…2913 on Base) to 0x2222…2222 by EIP-3009 signed "
        "authorization (TransferWithAuthorization) from 0x1111…1111",
    ),
    "EIP-3009 ReceiveWithAuthorization is a transfer too": Case(
        authorization("ReceiveWithAuthorization", value="0x989680"),
        kind="typed",
        expect={"action": "evm.transfer", "asset": "USDC", "amount": "10", "to": BOB},
    ),
    "EIP-3009 on Ethereum USDC is judged on Ethereum": Case(
        authorization(
            domain={"name": "USD Coin", "version": "2", "chainId": 1, "verifyingContract": USDC_ETH}
        ),
        kind="typed",
        chain="ethereum",
        expect={"action": "evm.transfer", "chain": "ethereum", "asset": "USDC", "amount": "5"},
    ),
    "EIP-3009 of an unknown token keeps its address as asset": Case(
        authorization(domain={"name": "X", "chainId": 8453, "verifyingContract": UNKNOWN_TOKEN}),
        kind="typed",
        expect={"action": "evm.transfer", "asset": UNKNOWN_TOKEN, "amount": "5000000"},
    ),
    "EIP-3009 from another account than the wallet is refused": Case(
        authorization(sender=BOB),
        kind="typed",
        wallet=ALICE,
        error="which is not the signing wallet",
    ),
    "EIP-3009 with a missing field is refused": Case(
        authorization(shape=EIP3009[:5]), kind="typed", error="does not have the EIP-3009 fields"
    ),
    "EIP-3009 without a chain id is refused": Case(
        authorization(domain={"name": "USD Coin", "version": "2", "verifyingContract": USDC_BASE}),
        kind="typed",
        error="names no chain",
    ),
    "EIP-3009 without a verifying contract is refused": Case(
        authorization(domain={"name": "USD Coin", "version": "2", "chainId": 8453}),
        kind="typed",
        error="cannot name its token",
    ),
    "EIP-3009 CancelAuthorization stays typed data": Case(
        typed(
            "CancelAuthorization",
            {"CancelAuthorization": fields("address authorizer", "bytes32 nonce")},
            {"authorizer": ALICE, "nonce": "0x" + "ab" * 32},
            USDC_DOMAIN,
        ),
        kind="typed",
        expect={
            "action": "evm.sign_typed_data",
            "contract": USDC_BASE,
            "primary_type": "CancelAuthorization",
        },
    ),
    # ---- forwarded calls, meta transactions, Safe transactions ---------------------------------
    "ERC-2771 ForwardRequest of a USDC transfer is that transfer": Case(
        forward(USDC_BASE, call("transfer(address,uint256)", BOB, 7 * 10**6)),
        kind="typed",
        wallet=ALICE,
        expect={
            "action": "evm.transfer",
            "asset": "USDC",
            "amount": "7",
            "to": BOB,
            "contract": USDC_BASE,
            "primary_type": "ForwardRequest",
        },
        summary="by ERC-2771 forwarded call from 0x1111…1111",
    ),
    "ERC-2771 ForwardRequest with deadline and value is a native transfer": Case(
        forward(BOB, "0x", 10**16, deadline=True),
        kind="typed",
        expect={"action": "evm.transfer", "asset": "ETH", "amount": "0.01", "to": BOB},
    ),
    "ERC-2771 ForwardRequest of an unlimited approval": Case(
        forward(USDC_BASE, call("approve(address,uint256)", SPENDER, MAX256)),
        kind="typed",
        expect={"action": "evm.approve", "unlimited": True, "spender": SPENDER},
    ),
    "ERC-2771 ForwardRequest of a call with value": Case(
        forward(ROUTER_V2, "0xd0e30db0", 10**15),
        kind="typed",
        expect={"action": "evm.call", "asset": "ETH", "amount": "0.001", "contract": ROUTER_V2},
    ),
    "ERC-2771 ForwardRequest from another account is refused": Case(
        forward(BOB, "0x", 1, sender=BOB),
        kind="typed",
        wallet=ALICE,
        error="not the signing wallet",
    ),
    "ForwardRequest of another forwarder's shape is refused": Case(
        typed(
            "ForwardRequest",
            {
                "ForwardRequest": fields(
                    "address from",
                    "address to",
                    "uint256 value",
                    "uint256 gas",
                    "uint256 nonce",
                    "bytes data",
                    "uint256 validUntilTime",
                )
            },
            {
                "from": ALICE,
                "to": BOB,
                "value": 0,
                "gas": 1,
                "nonce": 0,
                "data": "0x",
                "validUntilTime": 0,
            },
            {"name": "GSN", "chainId": 8453, "verifyingContract": FORWARDER},
        ),
        kind="typed",
        error="not an ERC-2771 forwarder request",
    ),
    "ForwardRequest with truncated inner calldata is refused": Case(
        forward(USDC_BASE, "0xa9059c"), kind="typed", error="shorter than a 4-byte"
    ),
    "MetaTransaction runs its function on the verifying contract": Case(
        meta_tx(USDC_BASE, call("transfer(address,uint256)", BOB, 2 * 10**6)),
        kind="typed",
        wallet=ALICE,
        expect={
            "action": "evm.transfer",
            "asset": "USDC",
            "amount": "2",
            "to": BOB,
            "contract": USDC_BASE,
            "primary_type": "MetaTransaction",
        },
        summary="by meta-transaction",
    ),
    "MetaTransaction with the chain in the salt": Case(
        meta_tx(USDC_BASE, call("approve(address,uint256)", SPENDER, 10**6), salt_chain=8453),
        kind="typed",
        expect={"action": "evm.approve", "asset": "USDC", "amount": "1", "spender": SPENDER},
    ),
    "MetaTransaction salted for another chain is refused": Case(
        meta_tx(USDC_BASE, "0x", salt_chain=137), kind="typed", error="chain id 137 (domain salt)"
    ),
    "Safe SafeTx of a USDC transfer is that transfer": Case(
        safe_tx(USDC_BASE, call("transfer(address,uint256)", BOB, 3 * 10**6)),
        kind="typed",
        expect={
            "action": "evm.transfer",
            "asset": "USDC",
            "amount": "3",
            "to": BOB,
            "primary_type": "SafeTx",
        },
        summary="by Safe transaction of Safe 0x6666…6666",
    ),
    "Safe SafeTx sending ETH": Case(
        safe_tx(BOB, value=2 * 10**18),
        kind="typed",
        expect={"action": "evm.transfer", "asset": "ETH", "amount": "2", "to": BOB},
    ),
    "Safe SafeTx delegatecall is refused": Case(
        safe_tx(BOB, "0xd0e30db0", operation=1), kind="typed", denied="delegatecall"
    ),
    "Safe SafeTx with a gas refund is refused": Case(
        safe_tx(BOB, gas_price=10**9), kind="typed", denied="refunds gas"
    ),
    "Safe SafeTx without a chain id is refused": Case(
        safe_tx(BOB, chain_id=False), kind="typed", error="names no chain"
    ),
    "Safe SafeTx with operation 2 is refused": Case(
        safe_tx(BOB, operation=2), kind="typed", error="operation must be 0"
    ),
    "Seaport order is refused": Case(SEAPORT_ORDER, kind="typed", denied="Seaport order"),
    "typed data primaryType that is not a struct name is refused": Case(
        typed("Mail Box", {"Mail Box": fields("string a")}, {"a": "x"}, {"chainId": 8453}),
        kind="typed",
        error="primaryType must be a struct name",
    ),
    # ---- personal_sign ----------------------------------------------------------------------
    "SIWE message is a sign-in": Case(
        SIWE,
        kind="personal",
        expect={"action": "evm.sign_message", "chain": "base", "message": SIWE},
        summary="sign in to example.com",
    ),
    "SIWE message sent as hex is judged as its text": Case(
        "0x" + SIWE.encode().hex(),
        kind="personal",
        expect={"action": "evm.sign_message", "message": SIWE},
        summary="sign in to example.com",
    ),
    "plain text message": Case(
        "Hello\u202e from the agent",
        kind="personal",
        expect={"message": "Hello\u202e from the agent"},
        summary='sign the message "Hello from the agent"',
    ),
    "binary message is flagged as blind signing": Case(
        "0x" + "ff" * 32,
        kind="personal",
        expect={"action": "evm.sign_message", "message": "0x" + "ff" * 32},
        summary="sign 32 bytes of binary data",
    ),
    "empty message is refused": Case("", kind="personal", error="nothing to sign"),
}


def decode(case: Case) -> Intent:
    chain = REG.chain(case.chain)
    if case.kind == "typed":
        return intent_from_typed_data(
            case.payload, registry=REG, chain=chain, wallet_address=case.wallet
        )
    if case.kind == "personal":
        return intent_from_personal_message(case.payload, chain=chain)[0]
    tx = parse_transaction(case.payload, chain_id=chain.chain_id if case.pass_chain_id else None)
    for name, value in case.tx.items():
        assert getattr(tx, name) == value, name
    return intent_from_tx(tx, registry=REG, chain=chain)


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 45
    assert sum(c.error is not None for c in CASES.values()) >= 15


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_decode(case: Case) -> None:
    if case.denied is not None:
        with pytest.raises(PolicyDeniedError) as denied:
            decode(case)
        assert case.denied in str(denied.value)
        assert denied.value.facts["reason_code"] == "UNJUDGEABLE_TYPED_DATA"
        return
    if case.error is not None:
        with pytest.raises(MalformedRequestError) as info:
            decode(case)
        message = str(info.value)
        assert case.error in message
        assert len(message) < 500, "errors must not echo long input"
        assert "Traceback" not in message
        return
    intent = decode(case)
    for name, value in case.expect.items():
        assert getattr(intent, name) == value, f"{name}: {getattr(intent, name)!r}"
    assert intent.summary, "every intent has a summary"
    if case.summary is not None:
        assert case.summary in intent.summary
    if case.expect.get("unlimited"):
        assert intent.is_unlimited


def test_summaries_do_not_carry_control_or_bidi_characters() -> None:
    for case in CASES.values():
        if case.error is None and case.denied is None:
            summary = decode(case).summary or ""
            assert not any(ch in summary for ch in "\n\r\u202e\u200f"), summary


def test_long_rlp_garbage_is_not_echoed() -> None:
    garbage = "02" + "ab" * 5000
    with pytest.raises(MalformedRequestError) as info:
        parse_transaction(garbage, chain_id=8453)
    assert "abab" not in str(info.value)


def test_checksummed_addresses_in_decoded_calldata() -> None:
    data = call("transfer(address,uint256)", SPENDER.lower(), 1)
    intent = decode(Case({"to": USDC_BASE, "data": data}))
    assert intent.to == SPENDER == to_checksum_address(SPENDER)
