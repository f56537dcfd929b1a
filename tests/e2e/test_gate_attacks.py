"""Black-box attacks on the gate (issue 12), each against the real `keysafe serve` over HTTP.

- Hole 1: a reused idempotency key signed new documents (new permits, new messages) with no
  decision and no budget, even for a paused agent.
- An identical request while one is pending parked a second approval.
- "Approve for a while" covered the whole rule, not the shape the owner saw; grants could be
  neither listed nor revoked.
- Hole 8: every approve was audited as `approval.deny`; expiry was not audited; the grant logged
  its duration as `count`.
- Hole 9 (in flight): a second request with the same key while the first still ran was told
  "retry with a new idempotency key" — which pays twice.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from tests.conftest import Cli
from tests.e2e.server_fixture import (
    MILLI_ETH,
    Server,
    add_agent,
    agent_headers,
    cli_env,
    error_of,
    evm_tx,
    keysafe_server,
)

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"  # USDC on Ethereum (built-in registry)
SPENDER = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
R1 = "0x1111111111111111111111111111111111111111"
R4 = "0x4444444444444444444444444444444444444444"
R5 = "0x5555555555555555555555555555555555555555"

POLICY = f"""\
version: 1
rules:
  - name: greet-twice
    allow: [evm.sign_message]
    wallets: [main]
    limits:
      - {{window: 24h, max_count: 2}}
  - name: one-permit
    allow: [evm.approve]
    wallets: [main]
    chains: [ethereum]
    assets: [USDC]
    spenders: ["{SPENDER}"]
    max_per_tx: {{USDC: "10"}}
    limits:
      - {{window: 24h, max_count: 1}}
  - name: pay-r1
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R1}"]
    max_per_tx: {{ETH: "0.01"}}
    limits:
      - {{window: 24h, max: {{ETH: "1"}}}}
  - name: ask-r4-r5
    ask: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R4}", "{R5}"]
    max_per_tx: {{ETH: "0.01"}}
"""


def permit(owner: str, nonce: int, value: int = 5_000_000) -> dict[str, Any]:
    """An EIP-2612 permit of `value` USDC base units to SPENDER (a new document per nonce)."""
    field = [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
    domain_type = [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ]
    return {
        "types": {"EIP712Domain": domain_type, "Permit": field},
        "primaryType": "Permit",
        "domain": {"name": "USD Coin", "version": "2", "chainId": 1, "verifyingContract": USDC},
        "message": {
            "owner": owner,
            "spender": SPENDER,
            "value": value,
            "nonce": nonce,
            "deadline": 1893456000,
        },
    }


@dataclass
class Stack:
    server: Server
    home: Path
    address: str
    token: str
    session: str

    def agent(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{self.server.url}{path}", json=body, headers=agent_headers(self.token), timeout=30
        )

    def owner(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.server.url}{path}",
            json=body,
            headers={"authorization": f"Bearer {self.session}"},
            timeout=60,
        )

    def audit(self, action: str) -> list[dict[str, Any]]:
        db = sqlite3.connect(f"file:{self.home / 'vault.db'}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT outcome, details FROM audit WHERE action = ? ORDER BY seq", (action,)
            ).fetchall()
        finally:
            db.close()
        return [{"outcome": o, **json.loads(d)} for o, d in rows]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("gate")
    home = root / "home"
    cli = Cli(home, cli_env(home))
    cli.ok("init", "--json")
    created = cli.ok("wallet", "create", "main", "--chain", "evm", "--json").stdout
    address = json.loads(created)["address"]
    policy = root / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    token = add_agent(cli, "bot", policy)
    with keysafe_server(cli_env(home), "--unlock", "--rate-limit", "1000", log_dir=root) as server:
        yield Stack(server, home, address, token, server.login())


# -- hole 1: a reused idempotency key -------------------------------------------------------------


def test_attack_reused_idempotency_key_cannot_sign_a_second_permit(stack: Stack) -> None:
    first = stack.agent(
        "/v1/agent/sign-typed-data",
        {"wallet": "main", "typed_data": permit(stack.address, 0), "idempotency_key": "permit-k"},
    )
    assert first.status_code == 200, first.text
    again = stack.agent(
        "/v1/agent/sign-typed-data",
        {"wallet": "main", "typed_data": permit(stack.address, 0), "idempotency_key": "permit-k"},
    )
    assert again.json()["signature"] == first.json()["signature"]  # the stored result
    for nonce in (1, 2, 3):  # new permits under the same key: never signed
        r = stack.agent(
            "/v1/agent/sign-typed-data",
            {
                "wallet": "main",
                "typed_data": permit(stack.address, nonce),
                "idempotency_key": "permit-k",
            },
        )
        assert r.status_code == 409, r.text
        err = error_of(r)
        assert err["code"] == "IDEMPOTENCY_CONFLICT"
        assert "new idempotency key" in err["next"]
        assert "signature" not in r.text
    # A second permit needs a decision, and the rule's 1-per-24h count refuses it.
    r = stack.agent(
        "/v1/agent/sign-typed-data", {"wallet": "main", "typed_data": permit(stack.address, 4)}
    )
    assert r.status_code == 403 and error_of(r)["code"] == "BUDGET_EXCEEDED", r.text
    signed = [e for e in stack.audit("evm.sign_typed_data") if e["outcome"] == "success"]
    assert len(signed) == 1


def test_attack_reused_idempotency_key_cannot_sign_another_message(stack: Stack) -> None:
    r = stack.agent(
        "/v1/agent/sign-message", {"wallet": "main", "message": "gm", "idempotency_key": "m-k"}
    )
    assert r.status_code == 200, r.text
    signature = r.json()["signature"]
    recovered = Account.recover_message(encode_defunct(text="gm"), signature=signature)
    assert recovered == stack.address
    other = stack.agent(
        "/v1/agent/sign-message", {"wallet": "main", "message": "gn", "idempotency_key": "m-k"}
    )
    assert other.status_code == 409 and error_of(other)["code"] == "IDEMPOTENCY_CONFLICT"
    same = stack.agent(
        "/v1/agent/sign-message", {"wallet": "main", "message": "gm", "idempotency_key": "m-k"}
    )
    assert same.json()["signature"] == signature


def test_attack_paused_agent_gets_nothing_for_a_known_key(stack: Stack) -> None:
    body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH, nonce=50), "idempotency_key": "p-k"}
    first = stack.agent("/v1/agent/sign-transaction", body)
    assert first.status_code == 200, first.text
    assert stack.owner("POST", "/v1/owner/agents/bot/pause").status_code == 200
    try:
        for b in (body, body | {"transaction": evm_tx(MILLI_ETH, nonce=51)}):
            r = stack.agent("/v1/agent/sign-transaction", b)
            assert r.status_code == 403, r.text
            assert error_of(r)["reason_code"] == "AGENT_PAUSED"
            assert "signed_transaction" not in r.text
        msg = stack.agent(
            "/v1/agent/sign-message",
            {"wallet": "main", "message": "paused?", "idempotency_key": "m-k"},
        )
        assert msg.status_code == 403 and "signature" not in msg.text
    finally:
        assert stack.owner("POST", "/v1/owner/agents/bot/resume").status_code == 200


# -- hole 9: the same key while the first request runs ---------------------------------------


def test_attack_same_key_in_flight_is_told_to_retry_with_the_same_key(stack: Stack) -> None:
    body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH, nonce=60), "idempotency_key": "race"}
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(12)

    def go() -> None:
        barrier.wait()
        answers.append(stack.agent("/v1/agent/sign-transaction", body))

    threads = [threading.Thread(target=go) for _ in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    signed = {a.json()["signed_transaction"] for a in answers if a.status_code == 200}
    assert len(signed) == 1, "one key, one transaction"
    for a in answers:
        if a.status_code != 200:
            err = error_of(a)
            assert err["code"] == "REQUEST_IN_PROGRESS", a.text
            assert "same idempotency key" in err["next"] and "new" not in err["next"]
    final = stack.agent("/v1/agent/sign-transaction", body)
    assert final.json()["signed_transaction"] in signed


# -- pending approvals and grants ------------------------------------------------------------------


def _ask(stack: Stack, to: str, nonce: int) -> httpx.Response:
    return stack.agent(
        "/v1/agent/sign-transaction",
        {"wallet": "main", "transaction": evm_tx(2 * MILLI_ETH, to=to, nonce=nonce)},
    )


def test_attack_identical_request_while_pending_gets_the_same_approval(stack: Stack) -> None:
    first = _ask(stack, R4, 70)
    assert first.status_code == 202, first.text
    again = [_ask(stack, R4, 70) for _ in range(3)]
    assert {a.json()["approval_id"] for a in again} == {first.json()["approval_id"]}
    pending = [
        a
        for a in stack.owner("GET", "/v1/owner/approvals").json()
        if a["approval_id"] == first.json()["approval_id"]
    ]
    assert len(pending) == 1
    other = _ask(stack, R4, 71)  # other bytes: a new question
    assert other.json()["approval_id"] != first.json()["approval_id"]
    for a in (first, other):
        stack.owner("POST", f"/v1/owner/approvals/{a.json()['approval_id']}/deny")


def test_attack_grant_covers_only_the_shape_the_owner_saw(stack: Stack) -> None:
    parked = _ask(stack, R4, 80)
    approval_id = parked.json()["approval_id"]
    r = stack.owner("POST", f"/v1/owner/approvals/{approval_id}/approve", {"for_seconds": 3600})
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    assert _ask(stack, R4, 81).status_code == 200  # the same shape: granted
    to_r5 = _ask(stack, R5, 82)  # same rule, another recipient: asks again
    assert to_r5.status_code == 202, to_r5.text
    stack.owner("POST", f"/v1/owner/approvals/{to_r5.json()['approval_id']}/deny")

    grants = stack.owner("GET", "/v1/owner/grants").json()
    mine = [g for g in grants if g["approval_id"] == approval_id]
    assert len(mine) == 1 and R4.lower() in mine[0]["summary"]
    revoked = stack.owner("POST", f"/v1/owner/grants/{mine[0]['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    after = _ask(stack, R4, 83)
    assert after.status_code == 202, "a revoked grant no longer covers anything"
    stack.owner("POST", f"/v1/owner/approvals/{after.json()['approval_id']}/deny")
    assert stack.audit("grant.revoke")[-1]["rule"] == "ask-r4-r5"


def test_grants_cli_lists_and_revokes(stack: Stack) -> None:
    parked = _ask(stack, R5, 90)
    approval_id = parked.json()["approval_id"]
    stack.owner("POST", f"/v1/owner/approvals/{approval_id}/approve", {"for_seconds": 600})
    cli = stack.server.cli()
    listed = json.loads(cli.ok("grants", "--json").stdout)
    grant = next(g for g in listed if g["approval_id"] == approval_id)
    out = cli.ok("grants", "revoke", str(grant["id"])).stdout
    assert f"Grant {grant['id']} revoked" in out
    assert all(g["id"] != grant["id"] for g in json.loads(cli.ok("grants", "--json").stdout))
    missing = cli("grants", "revoke", str(grant["id"]))
    assert missing.exit_code == 1 and "keysafe grants" in missing.stderr


# -- hole 8: the owner's decisions in the audit ----------------------------------------------------


def test_attack_approvals_are_audited_as_what_the_owner_did(stack: Stack) -> None:
    approve_id = _ask(stack, R4, 100).json()["approval_id"]
    deny_id = _ask(stack, R4, 101).json()["approval_id"]
    stack.owner("POST", f"/v1/owner/approvals/{approve_id}/approve", {"for_seconds": 90})
    stack.owner("POST", f"/v1/owner/approvals/{deny_id}/deny")
    approved = [e for e in stack.audit("approval.approve") if e["request_id"] == approve_id]
    denied = [e for e in stack.audit("approval.deny") if e["request_id"] in (approve_id, deny_id)]
    assert len(approved) == 1
    assert [e["request_id"] for e in denied] == [deny_id]
    grant = [e for e in stack.audit("approval.grant") if e["request_id"] == approve_id]
    assert grant[0]["seconds"] == 90 and "count" not in grant[0]


def test_attack_expired_approval_is_audited_when_noticed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cli = Cli(home, cli_env(home))
    cli.ok("init", "--json")
    cli.ok("wallet", "create", "main", "--chain", "evm", "--json")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    token = add_agent(cli, "bot", policy)
    with keysafe_server(cli_env(home), "--unlock", "--approval-ttl", "10") as server:
        r = httpx.post(
            f"{server.url}/v1/agent/sign-transaction",
            json={"wallet": "main", "transaction": evm_tx(2 * MILLI_ETH, to=R4)},
            headers=agent_headers(token),
            timeout=30,
        )
        approval_id = r.json()["approval_id"]
        threading.Event().wait(10.5)
        session = server.login()
        listed = httpx.get(
            f"{server.url}/v1/owner/approvals?all=true",
            headers={"authorization": f"Bearer {session}"},
            timeout=30,
        ).json()
        assert next(a for a in listed if a["approval_id"] == approval_id)["status"] == "expired"
        db = sqlite3.connect(f"file:{home / 'vault.db'}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT details FROM audit WHERE action = 'approval.expire'"
            ).fetchall()
        finally:
            db.close()
        assert [json.loads(d)["request_id"] for (d,) in rows] == [approval_id]
