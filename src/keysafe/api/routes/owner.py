"""The owner routes: login, then everything under `/v1/owner/` with an owner session.

Every route of `routes` needs an owner session (`Owner`, api/auth.py), checked again here after
the middleware checked it before the body was read; an agent's credentials never work there.
`login_routes` holds the two routes asked before there is a session, which grant nothing by
themselves.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Final, Literal

from fastapi import Body, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from keysafe.api.auth import COOKIE, Owner, owner_token
from keysafe.api.routes.table import RouteTable
from keysafe.api.state import server_state
from keysafe.errors import MalformedRequestError, VaultLockedError
from keysafe.service import agents, approvals, audit, spending, vault_status
from keysafe.service.any_owner_op import AnyOp
from keysafe.service.balances import wallets_with_balances
from keysafe.service.models import ApproveRequest, DenyRequest, LoginRequest, SealRequest
from keysafe.service.owner_login import prove_owner
from keysafe.service.owner_ops import Done
from keysafe.service.owner_views import agents_for_owner, approvals_for_owner

logger = logging.getLogger(__name__)

login_routes = RouteTable(tags=["owner"])
routes = RouteTable(tags=["owner"], dependencies=[Owner])


class Session(BaseModel):
    """POST /v1/owner/login: the session token (also set as a cookie), its CSRF token, and how
    long it lasts without use."""

    session: str
    csrf: str
    ttl_seconds: int


class LoginChallenge(BaseModel):
    """GET /v1/login-challenge: a one-time challenge, and how long it may be answered."""

    challenge: str
    ttl_seconds: int


class Locked(BaseModel):
    """POST /v1/owner/lock: the vault is locked."""

    locked: Literal[True] = True


class AuditSealed(BaseModel):
    """POST /v1/owner/audit/seal: how many entries were sealed."""

    sealed: int


# The owner's audit filters (service/audit.py `Filter`): names and words, never free text.
AgentFilter = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
ActionFilter = Annotated[
    str | None,
    Query(max_length=64, pattern=r"^[a-z0-9_.-]+$", description='"approval." for all approval.*'),
]
OutcomeFilter = Annotated[str | None, Query(max_length=16, pattern=r"^[a-z_]+$")]

_AGENT_ACTIONS: Final[dict[str, agents.Status]] = {
    "pause": "paused",
    "resume": "active",
    "revoke": "revoked",
}


@login_routes.post("/v1/owner/login")
def login(request: Request, body: LoginRequest, response: Response) -> Session:
    """Prove the passphrase; unlocks the vault if it is locked, and opens an owner session."""
    st = server_state(request)
    prove_owner(
        st.vault,
        body,
        take_challenge=st.take_challenge,
        kms_token=st.kms_token,
        kms_url=st.kms_url,
    )
    token, session = st.new_session()
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/",
        max_age=int(st.session_ttl),
        secure=request.url.scheme == "https",  # over TLS the cookie never travels in clear
    )
    st.touch()
    return Session(session=token, csrf=session.csrf, ttl_seconds=int(st.session_ttl))


# Outside /v1/owner/ on purpose: every route there needs an owner session, and this one is
# asked before there is one (like POST /v1/owner/login, it grants nothing by itself).
@login_routes.get("/v1/login-challenge")
def challenge(request: Request) -> LoginChallenge:
    """A one-time login challenge (60 s) for a vault a KMS wraps: the owner's CLI answers it
    with a proof only someone who can unlock the vault can compute."""
    return LoginChallenge(challenge=server_state(request).new_challenge(), ttl_seconds=60)


@routes.post("/v1/owner/logout")
def logout(request: Request, response: Response) -> Done:
    server_state(request).end_session(owner_token(request))
    response.delete_cookie(COOKIE, path="/")
    return Done()


@routes.post("/v1/owner/lock")
def lock(request: Request) -> Locked:
    server_state(request).vault.lock()
    return Locked()


@routes.get("/v1/owner/status")
def status(request: Request) -> dict[str, Any]:
    st = server_state(request)
    status = vault_status.status(st.home, st.vault)
    return status.model_dump(mode="json") | {
        "unlocked": st.vault.is_unlocked,
        "rotations_due": [d.model_dump() for d in st.rotations_due(status.audit_entries)],
    }


@routes.get("/v1/owner/approvals")
def list_approvals(request: Request, all: bool = False) -> list[dict[str, Any]]:
    """Approvals (pending ones, or `all`), each with the agent's description, the decoded
    intent and, while pending, the budget windows it would draw on (`budget`: left before
    and after, judged as the gate would judge the approved request now)."""
    return approvals_for_owner(server_state(request).vault, pending_only=not all)


@routes.post("/v1/owner/approvals/{approval_id}/approve")
def approve(
    request: Request, approval_id: str, body: ApproveRequest | None = None
) -> dict[str, Any]:
    vault = server_state(request).vault
    if not vault.is_unlocked:
        raise VaultLockedError(
            "The vault is locked, so the approved request cannot run.",
            next_step="unlock first (`keysafe unlock` or the web page), then approve.",
        )
    seconds = body.for_seconds if body else None
    words = body.words if body else None
    return approvals.approve(vault, approval_id, grant_seconds=seconds, words=words).for_owner()


@routes.post("/v1/owner/approvals/{approval_id}/deny")
def deny(request: Request, approval_id: str, body: DenyRequest | None = None) -> dict[str, Any]:
    """Deny (the whole id or a unique prefix of at least 6 hex digits); the optional
    `reason` is shown to the agent as plain text."""
    reason = body.reason if body else None
    return approvals.deny(server_state(request).vault, approval_id, reason=reason).for_owner()


@routes.get("/v1/owner/grants")
def list_grants(request: Request) -> list[dict[str, Any]]:
    """Active "approve for a while" grants: agent, rule, the request shape, until when."""
    return [g.model_dump(mode="json") for g in approvals.list_grants(server_state(request).vault)]


@routes.post("/v1/owner/grants/{grant_id}/revoke")
def revoke_grant(request: Request, grant_id: int) -> dict[str, Any]:
    return approvals.revoke_grant(server_state(request).vault, grant_id).model_dump(mode="json")


@routes.get("/v1/owner/agents")
def list_agents(request: Request) -> list[dict[str, Any]]:
    return agents_for_owner(server_state(request).vault)


@routes.post("/v1/owner/agents/{name}/{action}")
def agent_action(request: Request, name: str, action: str) -> dict[str, Any]:
    status = _AGENT_ACTIONS.get(action)
    if status is None:
        raise MalformedRequestError(
            f"Unknown agent action '{action[:20]}'.", next_step="use pause, resume or revoke."
        )
    return agents.set_status(server_state(request).vault, name, status).model_dump(mode="json")


@routes.get("/v1/owner/wallets")
def list_wallets(request: Request) -> list[dict[str, Any]]:
    st = server_state(request)
    return wallets_with_balances(st.vault, st.balances, now=st.monotonic())


@routes.get("/v1/owner/audit")
def audit_log(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    agent: AgentFilter = None,
    action: ActionFilter = None,
    outcome: OutcomeFilter = None,
) -> list[dict[str, Any]]:
    """The newest `limit` entries that match every filter given, oldest first."""
    where = audit.Filter(agent=agent, action=action, outcome=outcome)
    vault = server_state(request).vault
    return [e.to_dict() for e in audit.list_entries(vault, limit=limit, where=where)]


@routes.get(
    "/v1/owner/audit/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {}},
            "description": "One audit entry per line (JSON Lines).",
        }
    },
)
def audit_export(
    request: Request,
    agent: AgentFilter = None,
    action: ActionFilter = None,
    outcome: OutcomeFilter = None,
) -> StreamingResponse:
    """Every entry that matches the filters, oldest first, as a JSON Lines download."""
    where = audit.Filter(agent=agent, action=action, outcome=outcome)
    return StreamingResponse(
        audit.export_lines(server_state(request).vault, where=where),
        media_type="application/x-ndjson",
        headers={"content-disposition": 'attachment; filename="keysafe-audit.jsonl"'},
    )


@routes.get("/v1/owner/spending")
def get_spending(request: Request, range: spending.Range = "24h") -> spending.Spending:
    """Spending per agent and asset booked against budget windows: the last 24 hours in
    hourly buckets, or 7 days in 6-hour buckets (network fees included)."""
    return spending.spending(server_state(request).vault, range)


@routes.get("/v1/owner/audit/verify")
def audit_verify(request: Request) -> dict[str, Any]:
    return audit.verify(server_state(request).vault).to_dict()


@routes.get("/v1/owner/audit/unsealed")
def audit_unsealed(request: Request) -> list[dict[str, Any]]:
    return [e.to_dict() for e in audit.unsealed(server_state(request).vault)]


@routes.post("/v1/owner/audit/seal")
def audit_seal(body: SealRequest, request: Request) -> AuditSealed:
    # Exactly the entries the owner was shown: one written after the list was fetched
    # stays unsealed until it is shown too.
    return AuditSealed(sealed=audit.seal(server_state(request).vault, body.seqs))


@routes.post("/v1/owner/ops", response_model=None)
def owner_op(request: Request, op: Annotated[AnyOp, Body()]) -> Any:
    """Run one owner operation (`service/any_owner_op.AnyOp`: agents, policies, credentials,
    data, wallets, chains, assets, seals) with the server's unlocked vault: how the owner's
    CLI makes changes while `keysafe serve` runs, without asking the passphrase again."""
    return op.run(server_state(request).vault)
