"""Attacks on issue 12's EVM holes, over the real server's HTTP API.

Hole 2: an agent allowed to sign typed data got an EIP-3009 TransferWithAuthorization signed,
which moves USDC with no cap or window; and any typed data for a token's own contract was signed
as harmless text. Hole 3: the network fee was neither capped nor charged, so an "allowed" 0.001
ETH transfer was signed with a 42,000,000 ETH max fee, and fees never counted against windows.

One unlocked server serves the module; each test uses its own rule (recipient), so the tests do
not meet in the ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from tests.e2e.server_fixture import (
    GWEI,
    MILLI_ETH,
    R1,
    R2,
    R3,
    Pristine,
    Server,
    agent_headers,
    build_vault,
    cli_env,
    copy_home,
    error_of,
    evm_tx,
    keysafe_server,
)

SIGN_TX = "/v1/agent/sign-transaction"
SIGN_TYPED = "/v1/agent/sign-typed-data"
USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
R5 = "0x5555555555555555555555555555555555555555"

POLICY = f"""\
version: 1
rules:
  - name: eth-to-r1
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R1}"]
    max_per_tx: {{ETH: "0.01"}}
  - name: eth-window-r3
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R3}"]
    max_per_tx: {{ETH: "0.01"}}
    limits:
      - {{window: 24h, max: {{ETH: "0.01"}}}}
  - name: usdc-to-r1
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
    assets: [USDC]
    recipients: ["{R1}"]
    max_per_tx: {{USDC: "1"}}
  - name: usdc-window-r5
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
    assets: [USDC]
    recipients: ["{R5}"]
    max_per_tx: {{USDC: "1"}}
    limits:
      - {{window: 24h, max: {{USDC: "2"}}}}
  - name: typed-data-on-base
    allow: [evm.sign_typed_data]
    wallets: [main]
    chains: [base]
"""


@dataclass
class Running:
    server: Server
    vault: Pristine
    client: httpx.Client

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(path, json=body, headers=agent_headers(self.vault.tokens["bot"]))

    def sign_typed(self, doc: dict[str, Any]) -> httpx.Response:
        return self.post(SIGN_TYPED, {"wallet": "main", "typed_data": doc})


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    vault = build_vault(tmp_path_factory.mktemp("attack-vault"), POLICY)
    root = tmp_path_factory.mktemp("attack-server")
    home = copy_home(vault, root)
    with keysafe_server(cli_env(home), "--unlock", log_dir=root) as server, server.client() as c:
        yield Running(server, vault, c)


def _fields(*pairs: str) -> list[dict[str, str]]:
    return [{"type": p.split()[0], "name": p.split()[1]} for p in pairs]


def transfer_authorization(
    sender: str, to: str, units: int, nonce: int, primary: str = "TransferWithAuthorization"
) -> dict[str, Any]:
    """An EIP-3009 authorization for USDC on Base, as an x402 client builds it."""
    return {
        "types": {
            "EIP712Domain": _fields(
                "string name", "string version", "uint256 chainId", "address verifyingContract"
            ),
            primary: _fields(
                "address from",
                "address to",
                "uint256 value",
                "uint256 validAfter",
                "uint256 validBefore",
                "bytes32 nonce",
            ),
        },
        "primaryType": primary,
        "domain": {
            "name": "USD Coin",
            "version": "2",
            "chainId": 8453,
            "verifyingContract": USDC_BASE,
        },
        "message": {
            "from": sender,
            "to": to,
            "value": str(units),
            "validAfter": 0,
            "validBefore": 4102444800,
            "nonce": "0x" + nonce.to_bytes(32, "big").hex(),
        },
    }


# -- hole 2: signed transfers judged as harmless typed data ----------------------------------------


def test_attack_transfer_authorization_to_unlisted_recipient_is_refused(running: Running) -> None:
    doc = transfer_authorization(running.vault.address, R2, 1000 * 10**6, nonce=1)
    r = running.sign_typed(doc)
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert (err["code"], err["reason_code"]) == ("POLICY_DENIED", "NO_MATCHING_RULE")
    assert "evm.transfer" in err["message"]
    assert "signature" not in r.json()


def test_attack_transfer_authorization_over_the_usdc_cap_is_refused(running: Running) -> None:
    r = running.sign_typed(transfer_authorization(running.vault.address, R1, 5 * 10**6, nonce=2))
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert (err["code"], err["rule"], err["reason_code"]) == (
        "POLICY_DENIED",
        "usdc-to-r1",
        "OVER_PER_TX_LIMIT",
    )
    assert "1 USDC" in err["message"] and "5 USDC" in err["message"]


def test_attack_transfer_authorizations_are_charged_against_the_usdc_window(
    running: Running,
) -> None:
    address = running.vault.address
    docs = [transfer_authorization(address, R5, 10**6, nonce=n) for n in (10, 11, 12)]
    answers = [running.sign_typed(doc) for doc in docs]
    assert [a.status_code for a in answers] == [200, 200, 403], answers[-1].text
    err = error_of(answers[2])
    assert (err["code"], err["rule"]) == ("BUDGET_EXCEEDED", "usdc-window-r5")
    for doc, answer in zip(docs[:2], answers[:2], strict=True):
        body = answer.json()
        assert "send 1 USDC" in body["summary"] and "EIP-3009" in body["summary"]
        signer = Account.recover_message(
            encode_typed_data(full_message=doc), signature=body["signature"]
        )
        assert signer == address


def test_attack_receive_with_authorization_is_judged_as_a_transfer_too(running: Running) -> None:
    doc = transfer_authorization(
        running.vault.address, R2, 10**6, nonce=20, primary="ReceiveWithAuthorization"
    )
    r = running.sign_typed(doc)
    assert r.status_code == 403, r.text
    assert error_of(r)["reason_code"] == "NO_MATCHING_RULE"


def test_attack_unknown_typed_data_for_the_usdc_contract_is_refused(running: Running) -> None:
    doc = transfer_authorization(running.vault.address, R1, 10**6, nonce=30)
    doc["primaryType"] = "Transfer"  # same fields, a type keysafe does not decode
    doc["types"]["Transfer"] = doc["types"].pop("TransferWithAuthorization")
    r = running.sign_typed(doc)
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert (err["reason_code"], err["rule"]) == ("TYPED_DATA_ON_ASSET", "typed-data-on-base")
    assert "primary_types: [Transfer]" in err["next"]


def test_authorization_from_another_account_is_malformed(running: Running) -> None:
    r = running.sign_typed(transfer_authorization(R2, R1, 10**6, nonce=40))
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "MALFORMED_REQUEST"
    assert "not the signing wallet" in err["message"]


def test_plain_typed_data_for_an_app_contract_is_still_signed(running: Running) -> None:
    doc = {
        "types": {
            "EIP712Domain": _fields("string name", "uint256 chainId", "address verifyingContract"),
            "Mail": _fields("string contents"),
        },
        "primaryType": "Mail",
        "domain": {"name": "Mail", "chainId": 8453, "verifyingContract": R2},
        "message": {"contents": "hello"},
    }
    r = running.sign_typed(doc)
    assert r.status_code == 200, r.text
    assert r.json()["signature"].startswith("0x")


# -- hole 3: fees neither judged nor capped --------------------------------------------------------


def test_attack_42_million_eth_max_fee_on_an_allowed_transfer_is_refused(running: Running) -> None:
    tx = evm_tx(MILLI_ETH, to=R1) | {"gasPrice": hex(2 * 10**21)}  # 21000 gas → 42,000,000 ETH
    r = running.post(SIGN_TX, {"wallet": "main", "transaction": tx})
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert (err["code"], err["reason_code"]) == ("POLICY_DENIED", "FEE_TOO_HIGH")
    assert "42000000 ETH" in err["message"] and "0.05 ETH" in err["message"]
    assert "--max-fee" in err["next"]
    assert "signed_transaction" not in r.json()


def test_attack_fees_are_charged_against_the_24h_eth_window(running: Running) -> None:
    # 0.005 + 0.005 ETH of value fits the 0.01 ETH window; with 21000 × 1 gwei of fee each it
    # does not.
    first = running.post(
        SIGN_TX, {"wallet": "main", "transaction": evm_tx(5 * MILLI_ETH, to=R3, nonce=1)}
    )
    assert first.status_code == 200, first.text
    second = running.post(
        SIGN_TX, {"wallet": "main", "transaction": evm_tx(5 * MILLI_ETH, to=R3, nonce=2)}
    )
    assert second.status_code == 403, second.text
    err = error_of(second)
    assert (err["code"], err["rule"]) == ("BUDGET_EXCEEDED", "eth-window-r3")
    assert "network fee" in err["message"]
    assert "max fee 0.000021 ETH" in first.json()["summary"]


def test_realistic_fee_on_an_allowed_transfer_is_signed(running: Running) -> None:
    tx = evm_tx(MILLI_ETH, to=R1, nonce=3) | {"gasPrice": hex(30 * GWEI)}
    r = running.post(SIGN_TX, {"wallet": "main", "transaction": tx})
    assert r.status_code == 200, r.text
    assert r.json()["summary"].endswith("max fee 0.00063 ETH")
