"""Black-box: no self-approval. Every owner route of `keysafe serve` refuses agent credentials.

The owner routes are enumerated from the running server's /openapi.json (every path under
/v1/owner/ except /v1/owner/login), so a route added later is covered without editing this file.
Each is called with the agent's bearer token, with an Ed25519-signed agent envelope
(X-Keysafe-Envelope / X-Keysafe-Signature over the RFC 8785 form) and with the agent token in the
owner's cookie; each must answer 401/403 and do nothing: the agent's pending approval stays
pending, the agent stays active, the vault stays unlocked, and the audit shows no owner decision.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.server_fixture import (
    MILLI_ETH,
    Pristine,
    Server,
    SignedAgent,
    agent_headers,
    cli_env,
    copy_home,
    error_of,
    evm_tx,
    keysafe_server,
    standard_vault,
)

SIGN = "/v1/agent/sign-transaction"
OWNER_DECISIONS = {
    "approval.approve",
    "approval.deny",
    "approval.grant",
    "agent.revoke",
    "agent.pause",
    "agent.resume",
}


@dataclass
class Setup:
    server: Server
    vault: Pristine
    client: httpx.Client
    owner: dict[str, str]  # the owner's session header
    approval_ids: dict[str, str]  # agent -> its pending approval

    @property
    def signer(self) -> SignedAgent:
        return self.vault.signers["signer"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """An unlocked server where `bot` (token) and `signer` (Ed25519) each have a pending
    approval."""
    vault = standard_vault(tmp_path_factory)
    root = tmp_path_factory.mktemp("owner-routes")
    home = copy_home(vault, root)
    with keysafe_server(cli_env(home), "--unlock", log_dir=root) as server, server.client() as c:
        body = {"wallet": "main", "transaction": evm_tx(6 * MILLI_ETH)}
        ids = {}
        r = c.post(SIGN, json=body, headers=agent_headers(vault.tokens["bot"]))
        assert r.status_code == 202, r.text
        ids["bot"] = r.json()["approval_id"]
        r = c.post(SIGN, json=body, headers=vault.signers["signer"].headers("POST", SIGN, body))
        assert r.status_code == 202, r.text
        ids["signer"] = r.json()["approval_id"]
        owner = {"authorization": f"Bearer {server.login()}"}
        yield Setup(server, vault, c, owner, ids)


def owner_routes(client: httpx.Client) -> list[tuple[str, str]]:
    """(METHOD, path template) of every owner route the server publishes, login excepted."""
    spec = client.get("/openapi.json").json()
    routes = [
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        if path.startswith("/v1/owner/") and path != "/v1/owner/login"
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    ]
    return sorted(routes)


def _fill(path: str, approval_id: str) -> str:
    """The most harmful concrete values: the agent's own approval, and revoking itself."""
    values = {"approval_id": approval_id, "name": "bot", "action": "revoke"}

    def one(m: re.Match[str]) -> str:
        return values.get(m.group(1), "x")

    return re.sub(r"\{([^}]+)\}", one, path)


def _body(path: str) -> dict[str, Any] | None:
    return {"for_seconds": 3600} if path.endswith("/approve") else None


# (setup, method, path as sent, body) -> the credential headers
Credentials = Callable[[Setup, str, str, dict[str, Any] | None], dict[str, str]]


def _bearer(s: Setup, _m: str, _p: str, _b: dict[str, Any] | None) -> dict[str, str]:
    return agent_headers(s.vault.tokens["bot"])


def _envelope(s: Setup, method: str, path: str, body: dict[str, Any] | None) -> dict[str, str]:
    # Signed for exactly this owner route: the refusal must come from the route, not a mismatch.
    return s.signer.headers(method, path, body)


def _cookie(s: Setup, _m: str, _p: str, _b: dict[str, Any] | None) -> dict[str, str]:
    return {"cookie": f"ks_owner={s.vault.tokens['bot']}", "x-csrf-token": "x"}


CREDENTIALS: dict[str, Credentials] = {
    "agent-bearer": _bearer,
    "agent-signed-envelope": _envelope,
    "agent-token-as-owner-cookie": _cookie,
}


def _call(s: Setup, method: str, path: str, creds: Credentials, approval_id: str) -> httpx.Response:
    body = _body(path)
    target = _fill(path, approval_id)
    # A fresh client per call: no cookie may carry over from one attempt to the next.
    with httpx.Client(base_url=s.server.url, timeout=30) as c:
        return c.request(method, target, json=body, headers=creds(s, method, target, body))


def _assert_nothing_happened(s: Setup) -> None:
    pending = {a["approval_id"]: a for a in _owner_get(s, "/v1/owner/approvals")}
    for agent, approval_id in s.approval_ids.items():
        assert approval_id in pending, f"{agent}'s approval is no longer pending"
    agents = {a["name"]: a["status"] for a in _owner_get(s, "/v1/owner/agents")}
    assert agents["bot"] == "active" and agents["signer"] == "active", agents
    assert s.client.get("/v1/health").json()["unlocked"] is True
    actions = {e["action"] for e in _owner_get(s, "/v1/owner/audit?limit=1000")}
    assert not actions & OWNER_DECISIONS, actions & OWNER_DECISIONS


def _owner_get(s: Setup, path: str) -> Any:
    r = s.client.get(path, headers=s.owner)
    assert r.status_code == 200, r.text
    return r.json()


def test_owner_routes_enumerated_from_openapi_include_approve_deny_and_lock(
    setup: Setup,
) -> None:
    routes = owner_routes(setup.client)
    assert ("POST", "/v1/owner/approvals/{approval_id}/approve") in routes
    assert ("POST", "/v1/owner/approvals/{approval_id}/deny") in routes
    assert ("POST", "/v1/owner/lock") in routes
    assert ("POST", "/v1/owner/login") not in routes
    assert len(routes) >= 10


@pytest.mark.parametrize("kind", sorted(CREDENTIALS))
def test_every_owner_route_refuses_agent_credentials_and_performs_nothing(
    setup: Setup, kind: str
) -> None:
    creds = CREDENTIALS[kind]
    approval_id = setup.approval_ids["signer" if kind == "agent-signed-envelope" else "bot"]
    wrong = []
    for method, path in owner_routes(setup.client):
        r = _call(setup, method, path, creds, approval_id)
        if r.status_code not in (401, 403):
            wrong.append(f"{method} {path} -> {r.status_code} {r.text[:200]}")
            continue
        err = error_of(r)
        if err["code"] != "NOT_AUTHENTICATED":
            wrong.append(f"{method} {path} -> {err['code']}")
    assert not wrong, "owner routes that did not refuse " + kind + ":\n" + "\n".join(wrong)
    _assert_nothing_happened(setup)


def test_approve_own_approval_with_agent_token_says_agent_credentials_never_work(
    setup: Setup,
) -> None:
    approval_id = setup.approval_ids["bot"]
    r = setup.client.post(
        f"/v1/owner/approvals/{approval_id}/approve",
        json={"for_seconds": 3600},
        headers=agent_headers(setup.vault.tokens["bot"]),
    )
    assert r.status_code == 401
    assert "Agent credentials never work on owner routes" in error_of(r)["message"]
    status = setup.client.get(
        f"/v1/agent/approvals/{approval_id}", headers=agent_headers(setup.vault.tokens["bot"])
    ).json()
    assert status["status"] == "pending"
    assert "result" not in status


def test_owner_route_with_agent_token_and_unparsable_body_is_401_not_400(
    setup: Setup,
) -> None:
    """Owner routes refuse a non-owner before they look at the request (api/app.py)."""
    r = setup.client.post(
        f"/v1/owner/approvals/{setup.approval_ids['bot']}/approve",
        content=b'{"for_seconds": ',
        headers=agent_headers(setup.vault.tokens["bot"]) | {"content-type": "application/json"},
    )
    assert r.status_code == 401, r.text


def test_owner_route_with_agent_token_and_invalid_query_is_401(setup: Setup) -> None:
    r = setup.client.get(
        "/v1/owner/audit",
        params={"limit": "not-a-number"},
        headers=agent_headers(setup.vault.tokens["bot"]),
    )
    assert r.status_code == 401, r.text
    assert error_of(r)["code"] == "NOT_AUTHENTICATED"


def test_signed_envelope_that_opens_agent_routes_still_cannot_approve(setup: Setup) -> None:
    """The envelope is valid (agent routes accept it), so the owner route's refusal is real."""
    caps = "/v1/agent/capabilities"
    ok = setup.client.get(caps, headers=setup.signer.headers("GET", caps))
    assert ok.status_code == 200, ok.text
    approval_id = setup.approval_ids["signer"]
    body = {"for_seconds": 3600}
    approve = f"/v1/owner/approvals/{approval_id}/approve"
    r = setup.client.post(approve, json=body, headers=setup.signer.headers("POST", approve, body))
    assert r.status_code in (401, 403)
    status = f"/v1/agent/approvals/{approval_id}"
    mine = setup.client.get(status, headers=setup.signer.headers("GET", status)).json()
    assert mine["status"] == "pending"


def test_owner_session_itself_can_list_and_is_not_refused(setup: Setup) -> None:
    """The refusals above are about who asks: the owner's session opens the same routes."""
    listed = _owner_get(setup, "/v1/owner/approvals")
    assert {a["agent"] for a in listed} >= {"bot", "signer"}
    assert all(a["status"] == "pending" for a in listed)
    session = setup.owner["authorization"].removeprefix("Bearer ")
    with httpx.Client(base_url=setup.server.url, timeout=30) as c:
        by_cookie = c.get("/v1/owner/approvals", headers={"cookie": f"ks_owner={session}"})
    assert by_cookie.status_code == 200, by_cookie.text
