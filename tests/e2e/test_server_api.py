"""Black-box HTTP tests of `keysafe serve`: the agent routes and the owner's live CLI commands.

A real server runs in a subprocess on a free port (`server_fixture.keysafe_server`); agents talk
to it with httpx, the owner with `keysafe unlock|lock|approve|deny` through KEYSAFE_URL. Most tests
share one unlocked server per module (each on its own recipient or rule, so they do not meet in
the ledger); tests that lock, revoke or wait for expiry get a server of their own.

Statuses under test: 200 done, 202 pending_approval, 400 MALFORMED_REQUEST (never echoing input),
401, 403 POLICY_DENIED / BUDGET_EXCEEDED, 409 IDEMPOTENCY_CONFLICT, 413, 423 VAULT_LOCKED, 429.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import stat
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import rlp  # type: ignore[import-untyped]
from eth_account import Account

from keysafe.testing import free_port
from tests.conftest import PASSPHRASE, Cli
from tests.e2e.server_fixture import (
    MILLI_ETH,
    R1,
    R2,
    R3,
    R4,
    Pristine,
    Server,
    agent_headers,
    cli_env,
    copy_home,
    error_of,
    evm_tx,
    keysafe_server,
    standard_vault,
)

SIGN = "/v1/agent/sign-transaction"
SEND = "/v1/agent/send-transaction"
PENDING_KEYS = {"status", "approval_id", "expires_at", "summary"}
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@dataclass
class Running:
    server: Server
    vault: Pristine
    client: httpx.Client

    @property
    def bot(self) -> dict[str, str]:
        return agent_headers(self.vault.tokens["bot"])

    def sign(self, value_wei: int, *, to: str = R1, **extra: Any) -> httpx.Response:
        body = {"wallet": "main", "transaction": evm_tx(value_wei, to=to)} | extra
        return self.client.post(SIGN, json=body, headers=self.bot)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One unlocked server on a private copy of the standard vault, shared by the module."""
    vault = standard_vault(tmp_path_factory)
    root = tmp_path_factory.mktemp("api-server")
    home = copy_home(vault, root)
    with keysafe_server(cli_env(home), "--unlock", log_dir=root) as server, server.client() as c:
        yield Running(server, vault, c)


def _signed_tx(raw_hex: str) -> tuple[str, str, int]:
    """(signer, recipient, value) of a signed legacy transaction."""
    fields = rlp.decode(bytes.fromhex(raw_hex.removeprefix("0x")))
    signer = Account.recover_transaction(raw_hex)
    return signer, "0x" + fields[3].hex(), int.from_bytes(fields[4], "big")


def _pending(r: httpx.Response) -> str:
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == PENDING_KEYS, body
    assert body["status"] == "pending_approval"
    assert body["approval_id"].startswith("apr_")
    assert ISO_Z.match(body["expires_at"]), body
    assert "ETH" in body["summary"]
    approval_id: str = body["approval_id"]
    return approval_id


def _approval(run: Running, approval_id: str, *, wait: int = 0) -> dict[str, Any]:
    r = run.client.get(f"/v1/agent/approvals/{approval_id}", params={"wait": wait}, headers=run.bot)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# -- health and authentication ---------------------------------------------------------------------


def test_health_without_credentials_is_200_and_reports_unlocked(running: Running) -> None:
    r = running.client.get("/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True and body["unlocked"] is True
    assert isinstance(body["version"], str)


def test_agent_route_without_credentials_is_401_not_authenticated(running: Running) -> None:
    r = running.client.post(SIGN, json={"wallet": "main", "transaction": evm_tx(MILLI_ETH)})
    assert r.status_code == 401
    assert error_of(r)["code"] == "NOT_AUTHENTICATED"


def test_agent_route_with_unknown_token_is_401_not_authenticated(running: Running) -> None:
    fake = "ks_agent_" + secrets.token_urlsafe(32)
    r = running.client.get("/v1/agent/capabilities", headers=agent_headers(fake))
    assert r.status_code == 401
    err = error_of(r)
    assert err["code"] == "NOT_AUTHENTICATED"
    assert fake not in r.text


def test_signed_envelope_authenticates_agent_and_replay_is_401(running: Running) -> None:
    signer = running.vault.signers["signer"]
    headers = signer.headers("GET", "/v1/agent/capabilities")
    first = running.client.get("/v1/agent/capabilities", headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["agent"] == "signer"
    again = running.client.get("/v1/agent/capabilities", headers=headers)
    assert again.status_code == 401
    assert error_of(again)["code"] == "REPLAY"


def test_signed_envelope_over_another_body_is_refused_with_401(running: Running) -> None:
    signer = running.vault.signers["signer"]
    signed_body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH)}
    sent_body = {"wallet": "main", "transaction": evm_tx(4 * MILLI_ETH)}
    r = running.client.post(SIGN, json=sent_body, headers=signer.headers("POST", SIGN, signed_body))
    assert r.status_code == 401, r.text
    assert error_of(r)["code"] == "NOT_AUTHENTICATED"


def _signer_audit(run: Running) -> list[dict[str, Any]]:
    """The audit entries agent `signer` caused (owner's view)."""
    owner = {"authorization": f"Bearer {run.server.login()}"}
    r = run.client.get("/v1/owner/audit", params={"limit": 1000}, headers=owner)
    assert r.status_code == 200, r.text
    return [e for e in r.json() if e["actor"] == "agent:signer"]


def test_attack_envelope_signed_for_sign_transaction_is_refused_on_send_transaction(
    running: Running,
) -> None:
    """Hole 7: the envelope bound only the body, so a captured sign-transaction envelope whose
    nonce the vault had not seen also worked on send-transaction, which signs AND broadcasts."""
    signer = running.vault.signers["signer"]
    body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH + 7, to=R1)}
    headers = signer.headers("POST", SIGN, body)
    before = _signer_audit(running)
    r = running.client.post(SEND, json=body, headers=headers)
    assert r.status_code == 401, r.text
    err = error_of(r)
    assert err["code"] == "NOT_AUTHENTICATED"
    assert err["message"] == "The agent could not be authenticated."
    assert _signer_audit(running) == before  # nothing decided, signed or sent
    # The envelope itself was good: on the route it names it signs (its nonce was not burnt).
    own = running.client.post(SIGN, json=body, headers=headers)
    assert own.status_code == 200, own.text
    assert own.json()["status"] == "signed"


def test_attack_envelope_signed_for_another_method_is_refused(running: Running) -> None:
    signer = running.vault.signers["signer"]
    body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH + 8, to=R1)}
    before = _signer_audit(running)
    r = running.client.post(SIGN, json=body, headers=signer.headers("PUT", SIGN, body))
    assert r.status_code == 401, r.text
    assert error_of(r)["code"] == "NOT_AUTHENTICATED"
    assert _signer_audit(running) == before


def test_attack_envelope_signed_for_another_query_is_refused(running: Running) -> None:
    """The query is part of the signed path: `?wait=0` does not stand for `?wait=1`."""
    signer = running.vault.signers["signer"]
    body = {"wallet": "main", "transaction": evm_tx(9 * MILLI_ETH, to=R1)}
    approval_id = _pending(
        running.client.post(SIGN, json=body, headers=signer.headers("POST", SIGN, body))
    )
    path = f"/v1/agent/approvals/{approval_id}"
    r = running.client.get(
        path, params={"wait": 1}, headers=signer.headers("GET", path + "?wait=0")
    )
    assert r.status_code == 401, r.text
    assert error_of(r)["code"] == "NOT_AUTHENTICATED"
    own = running.client.get(
        path, params={"wait": 0}, headers=signer.headers("GET", path + "?wait=0")
    )
    assert own.status_code == 200, own.text
    assert own.json()["status"] == "pending"


@pytest.mark.parametrize(
    "drop",
    [
        pytest.param(("method", "path"), id="no-method-no-path"),
        pytest.param(("method",), id="no-method"),
        pytest.param(("path",), id="no-path"),
    ],
)
def test_attack_envelope_without_method_or_path_is_refused(
    running: Running, drop: tuple[str, ...]
) -> None:
    signer = running.vault.signers["signer"]
    body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH + 9, to=R1)}
    envelope = {k: v for k, v in signer.envelope("POST", SIGN, body).items() if k not in drop}
    before = _signer_audit(running)
    r = running.client.post(SIGN, json=body, headers=signer.sign(envelope))
    assert r.status_code == 401, r.text
    assert error_of(r)["code"] == "NOT_AUTHENTICATED"
    assert _signer_audit(running) == before


def test_attack_old_format_envelope_is_refused_and_says_to_update_the_client(
    running: Running,
) -> None:
    """Version 1 ({agent, timestamp, nonce, body}) signed the body only: refused, and said so."""
    signer = running.vault.signers["signer"]
    body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH + 10, to=R1)}
    v2 = signer.envelope("POST", SIGN, body)
    v1 = {k: v2[k] for k in ("agent", "timestamp", "nonce", "body")}
    before = _signer_audit(running)
    r = running.client.post(SEND, json=body, headers=signer.sign(v1))
    assert r.status_code == 401, r.text
    err = error_of(r)
    assert err["code"] == "NOT_AUTHENTICATED"
    assert "old envelope format" in err["message"]
    assert "update the agent's client" in err["next"]
    assert "method" in err["next"] and "path" in err["next"]
    assert _signer_audit(running) == before


# -- allow, deny, budget ---------------------------------------------------------------------------


def test_sign_transaction_within_policy_is_200_signed_by_the_vault_wallet(
    running: Running,
) -> None:
    r = running.sign(2 * MILLI_ETH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "signed"
    assert (body["wallet"], body["address"], body["chain"]) == (
        "main",
        running.vault.address,
        "ethereum",
    )
    assert body["tx_hash"].startswith("0x")
    signer, to, value = _signed_tx(body["signed_transaction"])
    assert signer == running.vault.address
    assert (to, value) == (R1, 2 * MILLI_ETH)


def test_sign_transaction_to_recipient_no_rule_allows_is_403_policy_denied(
    running: Running,
) -> None:
    r = running.sign(MILLI_ETH, to=R2)
    assert r.status_code == 403
    err = error_of(r)
    assert err["code"] == "POLICY_DENIED"
    assert "Nothing was signed" in err["message"]
    assert "signed_transaction" not in r.text


def test_sign_transaction_over_per_tx_cap_is_403_policy_denied_naming_the_rule(
    running: Running,
) -> None:
    r = running.sign(20 * MILLI_ETH)
    assert r.status_code == 403
    err = error_of(r)
    assert (err["code"], err["rule"]) == ("POLICY_DENIED", "pay-r1")
    assert "0.01 ETH" in err["message"]


def test_sign_transaction_over_24h_budget_is_403_budget_exceeded(running: Running) -> None:
    first = running.sign(MILLI_ETH * 3 // 2, to=R3)
    assert first.status_code == 200, first.text
    second = running.sign(MILLI_ETH * 3 // 2, to=R3)
    assert second.status_code == 403, second.text
    err = error_of(second)
    assert (err["code"], err["rule"]) == ("BUDGET_EXCEEDED", "tiny-budget-r3")


# -- approvals -------------------------------------------------------------------------------------


def test_ask_then_cli_approve_gives_the_polling_agent_the_signed_result(
    running: Running,
) -> None:
    approval_id = _pending(running.sign(6 * MILLI_ETH))
    assert _approval(running, approval_id)["status"] == "pending"
    out = running.server.cli().ok("approve", approval_id, "--json")
    assert json.loads(out.stdout)["status"] == "approved"
    seen = _approval(running, approval_id)
    assert seen["status"] == "approved"
    result = seen["result"]
    assert result["status"] == "signed"
    signer, to, value = _signed_tx(result["signed_transaction"])
    assert (signer, to, value) == (running.vault.address, R1, 6 * MILLI_ETH)


def test_ask_then_cli_deny_agent_sees_denied_without_result(running: Running) -> None:
    approval_id = _pending(running.sign(7 * MILLI_ETH))
    # A unique prefix names it (the answer gives the whole id); the reason reaches the agent.
    out = running.server.cli().ok("deny", approval_id[:12], "--reason", "not today", "--json")
    denied = json.loads(out.stdout)
    assert (denied["status"], denied["approval_id"]) == ("denied", approval_id)
    seen = _approval(running, approval_id, wait=2)
    assert seen["status"] == "denied" and seen["reason"] == "not today"
    assert "result" not in seen
    again = running.server.cli()("approve", approval_id[4:14])
    assert again.exit_code == 1
    assert "denied" in again.stderr


def test_approve_for_session_lets_a_similar_request_pass_without_asking(
    running: Running,
) -> None:
    approval_id = _pending(running.sign(MILLI_ETH, to=R4))
    out = running.server.cli().ok("approve", approval_id, "--for", "1h", "--json")
    assert json.loads(out.stdout)["status"] == "approved"
    second = running.sign(2 * MILLI_ETH, to=R4)
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "signed"
    # The grant covers that rule only: another rule that asks still asks.
    _pending(running.sign(6 * MILLI_ETH, to=R1))


def test_approval_status_of_another_agents_approval_is_404(running: Running) -> None:
    approval_id = _pending(running.sign(8 * MILLI_ETH))
    signer = running.vault.signers["signer"]
    path = f"/v1/agent/approvals/{approval_id}"
    r = running.client.get(path, headers=signer.headers("GET", path))
    assert r.status_code == 404
    assert error_of(r)["code"] == "NOT_FOUND"


# -- malformed, idempotency, size, rate ------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    ["description", "wallet", "idempotency_key", "chain", "declared"],
)
def test_wrong_typed_field_is_400_malformed_and_never_echoes_the_input(
    running: Running, field: str
) -> None:
    canary = "CANARY-" + secrets.token_hex(8)
    body: dict[str, Any] = {"wallet": "main", "transaction": evm_tx(MILLI_ETH)}
    body[field] = [{"secret": canary}, canary]
    r = running.client.post(SIGN, json=body, headers=running.bot)
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "MALFORMED_REQUEST"
    assert any(p["loc"][-1] == field for p in err["problems"]), err
    assert canary not in r.text
    assert canary not in str(r.headers)


def test_invalid_json_body_is_400_malformed_and_never_echoes_it(running: Running) -> None:
    canary = "CANARY-" + secrets.token_hex(8)
    raw = '{"wallet": "main", "transaction": "' + canary + '",'
    r = running.client.post(
        SIGN, content=raw, headers=running.bot | {"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert error_of(r)["code"] == "MALFORMED_REQUEST"
    assert canary not in r.text


def test_same_idempotency_key_same_tx_replays_the_first_result(running: Running) -> None:
    key = "idem-" + secrets.token_hex(8)
    first = running.sign(MILLI_ETH, idempotency_key=key)
    assert first.status_code == 200, first.text
    replay = running.sign(MILLI_ETH, idempotency_key=key)
    assert replay.status_code == 200, replay.text
    assert replay.json()["request_id"] == first.json()["request_id"]
    assert replay.json()["signed_transaction"] == first.json()["signed_transaction"]


def test_idempotency_key_of_pending_request_reused_for_another_tx_is_409(
    running: Running,
) -> None:
    key = "idem-" + secrets.token_hex(8)
    _pending(running.sign(9 * MILLI_ETH, idempotency_key=key))
    other = running.sign(3 * MILLI_ETH, idempotency_key=key)
    assert other.status_code == 409, other.text
    err = error_of(other)
    assert err["code"] == "IDEMPOTENCY_CONFLICT"
    assert "different request" in err["message"]


def test_idempotency_key_of_signed_request_reused_for_another_tx_is_409(
    running: Running,
) -> None:
    key = "idem-" + secrets.token_hex(8)
    first = running.sign(MILLI_ETH, idempotency_key=key)
    assert first.status_code == 200, first.text
    other = running.sign(3 * MILLI_ETH, idempotency_key=key)
    assert other.status_code == 409, other.text
    assert error_of(other)["code"] == "IDEMPOTENCY_CONFLICT"


def _big_body() -> bytes:
    return json.dumps({"wallet": "main", "message": "x" * (1024 * 1024 + 10)}).encode()


def test_body_over_1_mib_is_413(running: Running) -> None:
    r = running.client.post(
        "/v1/agent/sign-message",
        content=_big_body(),
        headers=running.bot | {"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert error_of(r)["code"] == "PAYLOAD_TOO_LARGE"


def test_chunked_body_over_1_mib_is_413(running: Running) -> None:
    data = _big_body()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    r = running.client.post(
        "/v1/agent/sign-message",
        content=chunks(),
        headers=running.bot | {"content-type": "application/json"},
    )
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413, r.text


def test_burst_over_40_requests_from_one_agent_is_429_then_recovers(
    running: Running,
) -> None:
    time.sleep(2.5)  # the bucket (burst 40, 20/s) is full again after the other tests

    def one(_: int) -> httpx.Response:
        return running.client.get("/v1/agent/capabilities", headers=running.bot)

    with ThreadPoolExecutor(max_workers=8) as pool:  # well over 20 requests a second
        answers = list(pool.map(one, range(100)))
    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) == {200, 429}, statuses
    assert statuses[200] >= 40, statuses
    limited = next(r for r in answers if r.status_code == 429)
    assert limited.headers.get("retry-after") == "1"
    assert "too fast" in error_of(limited)["message"]
    deadline = time.monotonic() + 5
    while one(0).status_code == 429:
        assert time.monotonic() < deadline, "the agent stays rate limited"
        time.sleep(0.2)


# -- servers of their own: lock/unlock, revoke, expiry, refusing to serve --------------------------


@dataclass
class Own:
    """A private copy of the standard vault, for a test that runs its own server."""

    home: Path
    vault: Pristine

    @property
    def bot(self) -> dict[str, str]:
        return agent_headers(self.vault.tokens["bot"])


@pytest.fixture
def own(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Own:
    vault = standard_vault(tmp_path_factory)
    return Own(copy_home(vault, tmp_path), vault)


def test_server_starts_locked_423_until_cli_unlock_and_423_again_after_cli_lock(
    own: Own, tmp_path: Path
) -> None:
    body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH)}
    with keysafe_server(cli_env(own.home), log_dir=tmp_path) as server, server.client() as c:
        assert c.get("/v1/health").json()["unlocked"] is False
        locked = c.post(SIGN, json=body, headers=own.bot)
        assert locked.status_code == 423, locked.text
        assert error_of(locked)["code"] == "VAULT_LOCKED"

        owner = server.cli()
        assert "unlocked" in owner.ok("unlock").stdout
        cache = own.home / "owner-session.json"
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600
        assert c.get("/v1/health").json()["unlocked"] is True
        assert c.post(SIGN, json=body, headers=own.bot).status_code == 200

        owner.ok("lock")
        assert c.get("/v1/health").json()["unlocked"] is False
        again = c.post(SIGN, json=body, headers=own.bot)
        assert again.status_code == 423
        assert error_of(again)["code"] == "VAULT_LOCKED"
    assert PASSPHRASE not in server.log()
    assert PASSPHRASE not in "".join(owner.outputs)


def test_revoke_while_serving_refuses_the_agents_next_request_with_401(
    own: Own, tmp_path: Path
) -> None:
    body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH)}
    with (
        keysafe_server(cli_env(own.home), "--unlock", log_dir=tmp_path) as server,
        server.client() as c,
    ):
        assert c.post(SIGN, json=body, headers=own.bot).status_code == 200
        Cli(own.home, cli_env(own.home)).ok("agent", "revoke", "bot")
        r = c.post(SIGN, json=body | {"transaction": evm_tx(MILLI_ETH, nonce=1)}, headers=own.bot)
        assert r.status_code == 401, r.text
        assert error_of(r)["code"] == "NOT_AUTHENTICATED"
        assert c.get("/v1/agent/capabilities", headers=own.bot).status_code == 401


@pytest.mark.slow
def test_pending_approval_expires_after_approval_ttl_and_cannot_be_approved(
    own: Own, tmp_path: Path
) -> None:
    args = ("--unlock", "--approval-ttl", "10")
    body = {"wallet": "main", "transaction": evm_tx(6 * MILLI_ETH)}
    with (
        keysafe_server(cli_env(own.home), *args, log_dir=tmp_path) as server,
        server.client() as c,
    ):
        approval_id = _pending(c.post(SIGN, json=body, headers=own.bot))
        started = time.monotonic()
        r = c.get(f"/v1/agent/approvals/{approval_id}", params={"wait": 20}, headers=own.bot)
        assert r.status_code == 200
        assert r.json()["status"] == "expired"
        assert "result" not in r.json()
        assert 5 < time.monotonic() - started < 20
        owner = server.cli()
        late = owner("approve", approval_id)
        assert late.exit_code == 1
        assert "expired" in late.stderr
        listed = json.loads(owner.ok("approvals", "--all", "--json").stdout)
        assert [a["status"] for a in listed if a["approval_id"] == approval_id] == ["expired"]


def test_serve_on_non_loopback_host_without_tls_exits_1_with_one_line(keysafe: Cli) -> None:
    r = keysafe("serve", "--host", "0.0.0.0", "--port", str(free_port()), timeout=30)
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("Error [MALFORMED_REQUEST]:")
    assert "TLS" in r.stderr
    assert "serving on" not in r.stdout
    assert "Traceback" not in r.stderr + r.stdout


def test_serve_on_a_busy_port_says_so_in_one_line_and_exits_1(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = Cli(tmp_path / "home", env)("serve", "--port", str(port), timeout=30)
    assert r.exit_code == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error [MALFORMED_REQUEST]: "), r.stderr
    assert f"Port {port} on 127.0.0.1 is already in use" in lines[0]
    assert "Traceback" not in r.stderr and "Errno" not in r.stderr
