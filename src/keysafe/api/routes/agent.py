"""The agent routes (`/v1/agent/…`) and the health check.

An agent authenticates on every call (`Agent`, api/auth.py) and each route runs one service use
case as that agent: the gate, policy, budgets and audit are the service layer's. A request the
owner must approve first answers 202 with the approval's id; the agent polls
GET /v1/agent/approvals/{id} for the outcome.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from keysafe import __version__
from keysafe import agent_models as answers
from keysafe.api import streaming
from keysafe.api.auth import Agent, agent_name
from keysafe.api.routes.table import RouteTable
from keysafe.api.state import server_state
from keysafe.errors import NotFoundError
from keysafe.service import (
    approvals,
    capabilities,
    checks,
    data,
    dispatch,
    keygen,
    models,
    placeholders,
    proxy,
    release,
    signing,
    threshold,
)
from keysafe.service.signing_gate import SignResult

logger = logging.getLogger(__name__)

meta = RouteTable(tags=["meta"])
routes = RouteTable(tags=["agent"])


def _result(res: SignResult) -> JSONResponse:
    if res.status == "pending_approval":
        return JSONResponse(
            {
                "status": "pending_approval",
                "approval_id": res.approval_id,
                "expires_at": res.expires_at,
                "summary": res.summary,
            },
            status_code=202,
        )
    return JSONResponse(res.model_dump(mode="json"))


def _whole_or_pending(res: BaseModel, *, pending: bool) -> JSONResponse:
    """The whole result, 202 while it waits for the owner."""
    return JSONResponse(res.model_dump(mode="json"), status_code=202 if pending else 200)


def _answer(model: type[BaseModel]) -> dict[str, Any]:
    """A dict route's declared answer: checked and documented, and sent with only the fields the
    route set (a field it leaves out stays out, rather than becoming null)."""
    return {"response_model": model, "response_model_exclude_unset": True}


def _or_pending(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """A route that answers 200 with `model`, or 202 while the owner decides."""
    return {
        200: {"model": model},
        202: {"description": "pending approval", "model": answers.PendingApproval},
    }


SIGNED = _or_pending(answers.SignResult)


@meta.get("/v1/health", response_model=answers.Health)
def health(request: Request) -> answers.Health:
    """Is the server up, and is the vault unlocked? (No secret, no auth.)"""
    unlocked = server_state(request).vault.is_unlocked
    return answers.Health(ok=True, unlocked=unlocked, version=__version__)


@routes.get("/v1/agent/capabilities", **_answer(answers.Capabilities))
def get_capabilities(request: Request, agent: Agent) -> answers.Capabilities:
    return capabilities.capabilities(server_state(request).vault, agent)


@routes.get("/v1/agent/address/{wallet}", **_answer(answers.Address))
def get_address(request: Request, agent: Agent, wallet: str) -> answers.Address:
    for w in capabilities.capabilities(server_state(request).vault, agent).wallets:
        if w.name == wallet:
            return answers.Address(wallet=wallet, address=w.address, chain=w.chain)
    raise NotFoundError(
        f"No wallet named '{wallet[:64]}'.", next_step="see /v1/agent/capabilities."
    )


def _how(
    body: models.SignTransactionRequest
    | models.TransferRequest
    | models.SignMessageRequest
    | models.SignTypedDataRequest,
) -> dispatch.How:
    """A route's run: only the agent's idempotency key sets it apart."""
    return dispatch.How(idempotency_key=body.idempotency_key)


def _sign(
    request: Request, agent: str, body: models.SignTransactionRequest, *, broadcast: bool
) -> JSONResponse:
    vault = server_state(request).vault
    return _result(dispatch.sign_transaction(vault, agent, body, _how(body), broadcast=broadcast))


@routes.post("/v1/agent/sign-transaction", responses=SIGNED)
def sign_transaction(
    request: Request, agent: Agent, body: models.SignTransactionRequest
) -> JSONResponse:
    return _sign(request, agent, body, broadcast=False)


@routes.post("/v1/agent/send-transaction", responses=SIGNED)
def send_transaction(
    request: Request, agent: Agent, body: models.SignTransactionRequest
) -> JSONResponse:
    return _sign(request, agent, body, broadcast=True)


@routes.post(
    "/v1/agent/transfer",
    response_model=models.TransferSent,
    responses={202: {"model": models.TransferPending, "description": "pending approval"}},
)
def transfer_asset(request: Request, agent: Agent, body: models.TransferRequest) -> JSONResponse:
    """Send `amount` of `asset` to `to`: keysafe builds the transaction (native coin, ERC-20
    or SPL transfer, creating the recipient's token account when missing; nonce, fees and
    blockhash from the chain's RPC), then judges, signs and broadcasts it exactly as
    send-transaction does. 202 while the owner must approve."""
    vault = server_state(request).vault
    return _result(dispatch.transfer_asset(vault, agent, body, _how(body)))


@routes.post("/v1/agent/sign-message", responses=SIGNED)
def sign_message(request: Request, agent: Agent, body: models.SignMessageRequest) -> JSONResponse:
    vault = server_state(request).vault
    return _result(dispatch.sign_message(vault, agent, body, _how(body)))


@routes.post("/v1/agent/sign-typed-data", responses=SIGNED)
def sign_typed_data(
    request: Request, agent: Agent, body: models.SignTypedDataRequest
) -> JSONResponse:
    vault = server_state(request).vault
    return _result(dispatch.sign_typed_data(vault, agent, body, _how(body)))


@routes.get("/v1/agent/whoami", **_answer(answers.WhoAmI))
async def whoami(request: Request) -> JSONResponse:
    """Which agent these credentials authenticate (a cheap check for surfaces in front)."""
    # On the event loop, no dependency to resolve, serialised once: nothing here blocks, and
    # the answer is the declared model's one field (the schema comes from the decorator).
    return JSONResponse({"agent": await agent_name(request)})


# One route under two paths: "/v1/agent/http" is registered first (decorators apply bottom-up).
@routes.post("/v1/agent/http-request", responses=_or_pending(answers.HttpResult))
@routes.post("/v1/agent/http", responses=_or_pending(answers.HttpResult))
def http_request(
    request: Request,
    agent: Agent,
    body: models.HttpRequestRequest,
    stream: Annotated[
        bool,
        Query(
            description="Answer with the upstream's own status, headers and body, streamed "
            "as it arrives (marked `x-keysafe-upstream: 1`), instead of a JSON result."
        ),
    ] = False,
) -> Response:
    holder = getattr(request.state, "placeholder", None)
    if holder is not None and body.credential != holder.credential:
        raise placeholders.refuse_use(
            server_state(request).vault,
            holder,
            wanted=f"credential {body.credential}",
            why="another credential",
        )
    call = proxy.http_stream if stream else proxy.http_request
    res = call(server_state(request).vault, agent, body)
    if isinstance(res, proxy.HttpStream):
        return streaming.stream_response(res)
    return _whole_or_pending(res, pending=isinstance(res, answers.PendingApproval))


@routes.post("/v1/agent/read-data", responses=_or_pending(answers.DataValue))
def read_data(request: Request, agent: Agent, body: models.ReadDataRequest) -> JSONResponse:
    res = data.read_data(server_state(request).vault, agent, body.name, fields=body.fields)
    return _whole_or_pending(res, pending=res.pending)


@routes.post("/v1/agent/threshold/commit", **_answer(answers.ThresholdCommitment))
def threshold_commit(
    request: Request, agent: Agent, body: models.ThresholdCommitRequest
) -> dict[str, Any]:
    """The vault's round-one commitment for one 2-of-3 signature (single use, 15 minutes).
    keysafe's agent client (`keysafe mcp` with KEYSAFE_AGENT_SHARE_FILE) calls this."""
    return threshold.preprocess(server_state(request).vault, agent, body.wallet)


@routes.post("/v1/agent/threshold/exchange", **_answer(answers.ThresholdExchange))
def threshold_exchange(
    request: Request, agent: Agent, body: models.ThresholdExchangeRequest
) -> dict[str, Any]:
    """Step 2 of a 2-of-3 EVM signature (DKLs23): the agent's round 1 in, the vault's rounds
    1 and 2 out. Nothing here lets the agent sign: the vault finishes only inside the gated
    sign request that follows. keysafe's agent client calls this."""
    return signing.threshold_exchange(server_state(request).vault, agent, body)


@routes.get("/v1/agent/threshold/keygens", response_model=answers.Keygens)
def keygens(request: Request, agent: Agent) -> answers.Keygens:
    """The 2-of-3 keygens the owner opened for this agent and it has not joined yet.
    keysafe's agent side (`keysafe agent threshold join`) calls this."""
    return answers.Keygens(keygens=keygen.pending(server_state(request).vault, agent))


@routes.post("/v1/agent/threshold/keygens/{keygen_id}", response_model=answers.KeygenView)
def keygen_exchange(
    request: Request, agent: Agent, keygen_id: str, body: answers.KeygenPost
) -> answers.KeygenView:
    """The agent's part of a 2-of-3 keygen: its key (tagged with the owner's join code),
    its sealed messages; the answer holds the messages sealed to it. The vault relays what
    it cannot read (service/keygen.py)."""
    return keygen.agent_exchange(server_state(request).vault, agent, keygen_id, body)


@routes.post(
    "/v1/agent/credential-release",
    status_code=202,
    responses={
        202: {
            "description": "pending approval (always; collect the value from the approval)",
            "model": answers.PendingApproval | answers.ReleasedCredential,
        }
    },
)
def credential_release(request: Request, agent: Agent, body: models.ReleaseRequest) -> JSONResponse:
    """Ask for a credential's value for a child process (`keysafe run`); the owner always
    decides. Collect it with GET /v1/agent/approvals/{id} once approved (released once)."""
    res = release.release(
        server_state(request).vault, agent, body.credential, purpose=body.purpose or ""
    )
    return JSONResponse(res.model_dump(mode="json"), status_code=202)


@routes.post("/v1/agent/check", **_answer(answers.CheckResult))
def check(request: Request, agent: Agent, body: models.CheckRequest) -> answers.CheckResult:
    """Dry run: the decision (allow, ask or deny, with the rule and reason) that the request
    in `request` would get from the `action` route now. Nothing is reserved, parked, signed,
    sent or audited."""
    return checks.check(server_state(request).vault, agent, body.action, body.request)


@routes.get("/v1/agent/approvals", **_answer(answers.PendingApprovals))
def pending_approvals(request: Request, agent: Agent) -> dict[str, Any]:
    """This agent's requests still waiting for the owner (approval id, summary, expiry)."""
    return {"approvals": approvals.agent_pending(server_state(request).vault, agent)}


@routes.get("/v1/agent/approvals/{approval_id}", **_answer(answers.ApprovalView))
async def approval_status(
    request: Request,
    approval_id: str,
    wait: Annotated[int, Query(ge=0, le=60, description="Long-poll up to this many seconds.")] = 0,
) -> dict[str, Any]:
    agent = await agent_name(request)
    vault = server_state(request).vault
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        view = await run_in_threadpool(approvals.agent_view, vault, approval_id, agent)
        if view["status"] != "pending" or asyncio.get_running_loop().time() >= deadline:
            return view
        await asyncio.sleep(0.2)
