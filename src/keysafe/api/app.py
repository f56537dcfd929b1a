"""The FastAPI application: agent routes, owner routes, the web page. Routes are thin: they
authenticate, call one service function and shape the answer.

Rules this module enforces:
- Every owner route refuses anything but an owner session before it looks at the request: an
  agent token or signature never works there (no self-approval).
- Agent routes: bearer `ks_agent_…` or an Ed25519-signed envelope; per-agent rate limit (429).
- Bodies over 1 MiB are refused (413), JSON nested past 64 levels too (400), before any parse
  (keysafe/wire.py); CORS stays closed (no CORS headers are ever sent).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders

from keysafe import __version__, wire
from keysafe import agent_models as answers
from keysafe.api import errors as api_errors
from keysafe.api import streaming
from keysafe.api.state import ServerState
from keysafe.errors import (
    MalformedRequestError,
    NotAuthenticatedError,
    PayloadTooLargeError,
    RateLimitedError,
    VaultLockedError,
)
from keysafe.service import (
    agents,
    approvals,
    audit,
    capabilities,
    checks,
    data,
    keygen,
    notify,
    placeholders,
    proxy,
    release,
    signing,
    spending,
    threshold,
    transfer,
    vault_admin,
    wallets,
)
from keysafe.service.any_owner_op import AnyOp
from keysafe.service.models import (
    ApproveRequest,
    CheckRequest,
    DenyRequest,
    HttpRequestRequest,
    LoginRequest,
    ReadDataRequest,
    ReleaseRequest,
    SealRequest,
    SecretBytes,
    SignMessageRequest,
    SignTransactionRequest,
    SignTypedDataRequest,
    ThresholdCommitRequest,
    ThresholdExchangeRequest,
    TransferPending,
    TransferRequest,
    TransferSent,
)

logger = logging.getLogger(__name__)

MAX_BODY = wire.MAX_BODY
HTTP_ROUTES = ("/v1/agent/http-request", "/v1/agent/http")
COOKIE = "ks_owner"


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.keysafe
    return state


# -- authentication --------------------------------------------------------------------------


async def agent_name(request: Request) -> str:
    """Authenticate the agent: bearer token, or an Ed25519-signed envelope that names this
    request's method, path (with query) and JSON body (RFC 8785), so a signature cannot be moved
    to another route or body (service/agents.py `authenticate_signed`)."""
    st = _state(request)
    auth = request.headers.get("authorization", "")
    sig = request.headers.get("x-keysafe-signature")
    envelope_raw = request.headers.get("x-keysafe-envelope")
    relayed = request.scope.get(wire.RELAYED_AGENT)
    placeholder = auth.lower().startswith("bearer ") and auth[7:].strip().startswith(
        placeholders.PREFIX
    )
    if placeholder:
        # A placeholder speaks for its agent on the credential call and nowhere else; through a
        # sidecar, only for the sidecar's own agent.
        holder = await run_in_threadpool(placeholders.authenticate, st.vault, auth[7:].strip())
        if request.url.path not in HTTP_ROUTES or (
            isinstance(relayed, str) and holder.agent != relayed
        ):
            raise await run_in_threadpool(
                placeholders.refuse_use, st.vault, holder, wanted=request.url.path,
                why="not a credential call" if request.url.path not in HTTP_ROUTES
                else "another agent's sidecar",
            )  # fmt: skip
        request.state.placeholder = holder
        name = holder.agent
    elif isinstance(relayed, str):
        # A paired sidecar's request, opened and checked by api/relay_end.py in this process
        # (signature, freshness, the agent not revoked): no network request can set this key.
        name = relayed
    elif auth.lower().startswith("bearer "):
        token = auth[7:].strip()
        # The quick check reads the agent's row without waiting (microseconds), on the event
        # loop; anything it cannot answer (locked, first sight of a row, last_seen due, a
        # refusal) goes the full way in a worker thread.
        quick = agents.authenticate_token_quick(st.vault, token)
        if quick is None:
            quick = await run_in_threadpool(agents.authenticate, st.vault, bearer=token)
        name = quick
    elif sig and envelope_raw:
        envelope = _json_or_none(envelope_raw)
        raw_body = await request.body()
        body = _json_or_none(raw_body) if raw_body else None
        if not isinstance(envelope, dict) or (raw_body and body is None):
            raise _refused_agent()
        signed = agents.SignedRequest(request.method, _request_target(request), body)
        name = await run_in_threadpool(
            agents.authenticate, st.vault, envelope=envelope, signature=sig, request=signed
        )
    else:
        raise NotAuthenticatedError(
            "This route needs an agent token.",
            next_step="send `Authorization: Bearer ks_agent_…` (from `keysafe agent add`).",
        )
    if not st.allow(name):
        raise RateLimitedError(
            f"Agent '{name}' is sending requests too fast.",
            next_step="slow down and retry in a second.",
            wait_seconds=1,
        )
    st.touch()
    return name


def _json_or_none(raw: str | bytes) -> Any:
    try:
        return wire.loads(raw)  # the envelope header is JSON too: its depth is checked as well
    except MalformedRequestError:
        return None


def _request_target(request: Request) -> str:
    """Path and query exactly as on the request line (before percent-decoding): what the agent
    signed. Routing decodes this same string, so one signed target reaches one route only."""
    raw: bytes | None = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else request.url.path
    query: bytes = request.scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _refused_agent() -> NotAuthenticatedError:
    return NotAuthenticatedError(
        "The agent could not be authenticated.",
        next_step="check the agent token (KEYSAFE_AGENT_TOKEN) or the request signature.",
    )


def owner(request: Request) -> None:
    """Owner session only: bearer `ks_owner_…` (CLI) or the HttpOnly cookie plus CSRF header."""
    st = _state(request)
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    via_cookie = False
    if token is None:
        token = request.cookies.get(COOKIE)
        via_cookie = token is not None
    session = st.session(token) if token else None
    if session is None:
        raise _not_owner(token)
    csrf = request.headers.get("x-csrf-token", "")
    if (
        via_cookie
        and request.method not in ("GET", "HEAD")
        and not hmac.compare_digest(csrf, session.csrf)
    ):
        raise _not_owner("csrf")
    if request.method not in ("GET", "HEAD"):
        st.touch()  # a page that only polls does not keep the vault from idling into a lock


def _not_owner(token: str | None) -> NotAuthenticatedError:
    if token and token.startswith("ks_agent_"):
        msg = "Agent credentials never work on owner routes."
    else:
        msg = "This route is for the vault's owner."
    return NotAuthenticatedError(
        msg, next_step="log in as the owner (`keysafe unlock` or the web page) and retry."
    )


Agent = Annotated[str, Depends(agent_name)]
Owner = Depends(owner)


# -- app --------------------------------------------------------------------------------------


def create_app(state: ServerState) -> BodyLimit:
    app = FastAPI(
        title="keysafe",
        version=__version__,
        description="Agents use keys and credentials without holding them. Agent routes take "
        "`Authorization: Bearer ks_agent_…`; owner routes take an owner session.",
        # No OpenTelemetry: nothing about a request (paths, agents, timings) leaves the process
        # through an exporter the environment configures, and no request pays for the check.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    app.state.keysafe = state
    api_errors.install(app)

    def _refusal(request: Request) -> Response | None:
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.lower() not in state.allowed_hosts:
            return JSONResponse(
                api_errors.error_body(
                    "MISDIRECTED_REQUEST", "This keysafe server does not answer to that host name.",
                    "use http://127.0.0.1:PORT (or the name given to `keysafe serve --host`).",
                ),
                status_code=421,
            )  # fmt: skip
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return _too_large()
        path = request.url.path
        if path.startswith("/v1/owner/") and path != "/v1/owner/login":
            # The owner check runs before FastAPI reads the body: nothing but an owner session
            # gets as far as having its request looked at.
            try:
                owner(request)
            except NotAuthenticatedError as exc:
                return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)
        return None

    app.add_middleware(_Guard, refusal=_refusal)
    _agent_routes(app)
    _owner_routes(app)
    _owner_op_route(app)
    _web_routes(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    wire.pin_recursion_limit()  # after every import above (py_ecc raises it to 100,000)
    return BodyLimit(app)


class _Guard:
    """Refuses what `refusal` refuses before any route sees it, and hardens every answer's
    headers. Plain ASGI on purpose: Starlette's BaseHTTPMiddleware (`@app.middleware`) finishes
    a streamed answer whose body raised with a clean last chunk, so a proxied stream cut off at
    the cap would look whole to the client (api/streaming.py)."""

    def __init__(self, app: wire.ASGIApp, refusal: Callable[[Request], Response | None]) -> None:
        self.app = app
        self.refusal = refusal

    async def __call__(self, scope: wire.Scope, receive: wire.Receive, send: wire.Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(Request(scope))
        if refused is not None:
            await refused(scope, receive, send)
            return

        async def hardened(message: wire.Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["cache-control"] = "no-store"
                headers["x-content-type-options"] = "nosniff"
            await send(message)

        await self.app(scope, receive, hardened)


def _too_large() -> JSONResponse:
    err = PayloadTooLargeError(
        "The request body is over 1 MiB.", next_step="send a smaller request."
    )
    return JSONResponse({"error": err.to_dict()}, status_code=err.http_status)


class BodyLimit(wire.BodyGuard):
    """The app behind the body checks (keysafe/wire.py); `state` so tests and the CLI reach
    app.state.keysafe."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app, max_body=MAX_BODY)
        self.state = app.state


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the error answers keysafe really gives (400, not 422)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "next"],
                "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"},
                    "next": {"type": "string"},
                },
                "additionalProperties": True,
            }
        },
    }  # fmt: skip
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    codes = {
        "400": "malformed request", "401": "not authenticated", "403": "denied by policy",
        "404": "not found", "409": "conflict", "413": "body over 1 MiB",
        "421": "unknown host name", "423": "vault locked", "429": "too many requests",
        "500": "internal error", "503": "chain unavailable",
    }  # fmt: skip
    for methods in schema.get("paths", {}).values():
        for op in methods.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for code, text in codes.items():
                responses.setdefault(code, {"description": text, **ref})
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)
    _security(schema)
    app.openapi_schema = schema
    return schema


def _security(schema: dict[str, Any]) -> None:
    """Say how each route authenticates (`agent_name` and `owner` above), so generated clients
    send the right header. The two signature headers go together: one requirement names both."""
    schema["components"]["securitySchemes"] = {
        "agentToken": {
            "type": "http", "scheme": "bearer", "bearerFormat": "ks_agent_…",
            "description": "An agent token from `keysafe agent add` (a credential placeholder "
            "`ksp_…` is accepted on the http-request routes only).",
        },
        "agentEnvelope": {
            "type": "apiKey", "in": "header", "name": "X-Keysafe-Envelope",
            "description": "A version-2 request envelope (JSON) naming this method, path and body.",
        },
        "agentSignature": {
            "type": "apiKey", "in": "header", "name": "X-Keysafe-Signature",
            "description": "Ed25519 signature (base64) over the envelope's RFC 8785 form.",
        },
        "ownerSession": {
            "type": "http", "scheme": "bearer", "bearerFormat": "ks_owner_…",
            "description": "An owner session from POST /v1/owner/login (the web page uses its "
            "HttpOnly cookie plus X-CSRF-Token instead).",
        },
    }  # fmt: skip
    agent: list[dict[str, list[str]]] = [
        {"agentToken": []}, {"agentEnvelope": [], "agentSignature": []}
    ]  # fmt: skip
    for path, methods in schema.get("paths", {}).items():
        if path.startswith("/v1/agent/"):
            needs = agent
        elif path.startswith("/v1/owner/") and path != "/v1/owner/login":
            needs = [{"ownerSession": []}]
        else:
            continue
        for op in methods.values():
            op["security"] = needs


def _result(res: signing.SignResult) -> JSONResponse:
    if res.status == "pending_approval":
        return JSONResponse(
            {"status": "pending_approval", "approval_id": res.approval_id,
             "expires_at": res.expires_at, "summary": res.summary},
            status_code=202,
        )  # fmt: skip
    return JSONResponse(res.model_dump(mode="json"))


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


def _agent_routes(app: FastAPI) -> None:
    @app.get("/v1/health", tags=["meta"], response_model=answers.Health)
    def health(request: Request) -> dict[str, Any]:
        """Is the server up, and is the vault unlocked? (No secret, no auth.)"""
        return {"ok": True, "unlocked": _state(request).vault.is_unlocked, "version": __version__}

    @app.get("/v1/agent/capabilities", tags=["agent"], **_answer(answers.Capabilities))
    def get_capabilities(request: Request, agent: Agent) -> dict[str, Any]:
        return capabilities.capabilities(_state(request).vault, agent)

    @app.get("/v1/agent/address/{wallet}", tags=["agent"], **_answer(answers.Address))
    def get_address(request: Request, agent: Agent, wallet: str) -> dict[str, Any]:
        for w in capabilities.capabilities(_state(request).vault, agent)["wallets"]:
            if w["name"] == wallet:
                return {"wallet": wallet, "address": w["address"], "chain": w["chain"]}
        from keysafe.errors import NotFoundError

        raise NotFoundError(
            f"No wallet named '{wallet[:64]}'.", next_step="see /v1/agent/capabilities."
        )

    @app.post(
        "/v1/agent/sign-transaction",
        tags=["agent"],
        responses=_or_pending(answers.SignResult),
    )
    def sign_transaction(
        request: Request, agent: Agent, body: SignTransactionRequest
    ) -> JSONResponse:
        return _result(_sign(request, agent, body, broadcast=False))

    @app.post(
        "/v1/agent/send-transaction",
        tags=["agent"],
        responses=_or_pending(answers.SignResult),
    )
    def send_transaction(
        request: Request, agent: Agent, body: SignTransactionRequest
    ) -> JSONResponse:
        return _result(_sign(request, agent, body, broadcast=True))

    @app.post(
        "/v1/agent/transfer",
        tags=["agent"],
        response_model=TransferSent,
        responses={202: {"model": TransferPending, "description": "pending approval"}},
    )
    def transfer_asset(request: Request, agent: Agent, body: TransferRequest) -> JSONResponse:
        """Send `amount` of `asset` to `to`: keysafe builds the transaction (native coin, ERC-20
        or SPL transfer, creating the recipient's token account when missing; nonce, fees and
        blockhash from the chain's RPC), then judges, signs and broadcasts it exactly as
        send-transaction does. 202 while the owner must approve."""
        return _result(
            transfer.transfer(
                _state(request).vault, agent, body.wallet, body.asset, body.to, body.amount,
                chain=body.chain, description=body.description,
                idempotency_key=body.idempotency_key,
            )
        )  # fmt: skip

    @app.post(
        "/v1/agent/sign-message",
        tags=["agent"],
        responses=_or_pending(answers.SignResult),
    )
    def sign_message(request: Request, agent: Agent, body: SignMessageRequest) -> JSONResponse:
        return _result(
            signing.sign_message(
                _state(request).vault, agent, body.wallet, body.message, encoding=body.encoding,
                idempotency_key=body.idempotency_key, threshold=body.threshold,
            )
        )  # fmt: skip

    @app.post(
        "/v1/agent/sign-typed-data",
        tags=["agent"],
        responses=_or_pending(answers.SignResult),
    )
    def sign_typed_data(request: Request, agent: Agent, body: SignTypedDataRequest) -> JSONResponse:
        return _result(
            signing.sign_typed_data(
                _state(request).vault, agent, body.wallet, body.typed_data,
                idempotency_key=body.idempotency_key, threshold=body.threshold,
            )
        )  # fmt: skip

    @app.get("/v1/agent/whoami", tags=["agent"], **_answer(answers.WhoAmI))
    async def whoami(request: Request) -> JSONResponse:
        """Which agent these credentials authenticate (a cheap check for surfaces in front)."""
        # On the event loop, no dependency to resolve, serialised once: nothing here blocks, and
        # the answer is the declared model's one field (the schema comes from the decorator).
        return JSONResponse({"agent": await agent_name(request)})

    @app.post(
        "/v1/agent/http-request",
        tags=["agent"],
        responses=_or_pending(answers.HttpResult),
    )
    @app.post(
        "/v1/agent/http",
        tags=["agent"],
        responses=_or_pending(answers.HttpResult),
    )
    def http_request(
        request: Request,
        agent: Agent,
        body: HttpRequestRequest,
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
                _state(request).vault, holder, wanted=f"credential {body.credential}",
                why="another credential",
            )  # fmt: skip
        call = proxy.http_stream if stream else proxy.http_request
        res = call(
            _state(request).vault, agent, body.credential, body.method, body.url,
            headers=body.headers, body=body.body, body_base64=body.body_base64,
        )  # fmt: skip
        if isinstance(res, proxy.HttpStream):
            return streaming.stream_response(res)
        return JSONResponse(
            res.to_dict(), status_code=202 if res.status == "pending_approval" else 200
        )

    @app.post("/v1/agent/read-data", tags=["agent"], responses=_or_pending(answers.DataValue))
    def read_data(request: Request, agent: Agent, body: ReadDataRequest) -> JSONResponse:
        res = data.read_data(_state(request).vault, agent, body.name, fields=body.fields)
        return JSONResponse(
            res.to_dict(), status_code=202 if res.status == "pending_approval" else 200
        )

    @app.post("/v1/agent/threshold/commit", tags=["agent"], **_answer(answers.ThresholdCommitment))
    def threshold_commit(
        request: Request, agent: Agent, body: ThresholdCommitRequest
    ) -> dict[str, Any]:
        """The vault's round-one commitment for one 2-of-3 signature (single use, 15 minutes).
        keysafe's agent client (`keysafe mcp` with KEYSAFE_AGENT_SHARE_FILE) calls this."""
        return threshold.preprocess(_state(request).vault, agent, body.wallet)

    @app.post("/v1/agent/threshold/exchange", tags=["agent"], **_answer(answers.ThresholdExchange))
    def threshold_exchange(
        request: Request, agent: Agent, body: ThresholdExchangeRequest
    ) -> dict[str, Any]:
        """Step 2 of a 2-of-3 EVM signature (DKLs23): the agent's round 1 in, the vault's rounds
        1 and 2 out. Nothing here lets the agent sign: the vault finishes only inside the gated
        sign request that follows. keysafe's agent client calls this."""
        return signing.threshold_exchange(
            _state(request).vault, agent, body.wallet,
            {"session_id": body.session_id, "round1": body.round1,
             "verifying_share": body.verifying_share},
            transaction=body.transaction, chain=body.chain, message=body.message,
            encoding=body.encoding, typed_data=body.typed_data,
        )  # fmt: skip

    @app.get("/v1/agent/threshold/keygens", tags=["agent"], response_model=answers.Keygens)
    def keygens(request: Request, agent: Agent) -> answers.Keygens:
        """The 2-of-3 keygens the owner opened for this agent and it has not joined yet.
        keysafe's agent side (`keysafe agent threshold join`) calls this."""
        return answers.Keygens(keygens=keygen.pending(_state(request).vault, agent))

    @app.post(
        "/v1/agent/threshold/keygens/{keygen_id}", tags=["agent"], response_model=answers.KeygenView
    )
    def keygen_exchange(
        request: Request, agent: Agent, keygen_id: str, body: answers.KeygenPost
    ) -> answers.KeygenView:
        """The agent's part of a 2-of-3 keygen: its key (tagged with the owner's join code),
        its sealed messages; the answer holds the messages sealed to it. The vault relays what
        it cannot read (service/keygen.py)."""
        return keygen.agent_exchange(_state(request).vault, agent, keygen_id, body)

    @app.post(
        "/v1/agent/credential-release",
        tags=["agent"],
        status_code=202,
        responses={
            202: {
                "description": "pending approval (always; collect the value from the approval)",
                "model": answers.PendingApproval | answers.ReleasedCredential,
            }
        },
    )
    def credential_release(request: Request, agent: Agent, body: ReleaseRequest) -> JSONResponse:
        """Ask for a credential's value for a child process (`keysafe run`); the owner always
        decides. Collect it with GET /v1/agent/approvals/{id} once approved (released once)."""
        res = release.release(
            _state(request).vault, agent, body.credential, purpose=body.purpose or ""
        )
        return JSONResponse(res.to_dict(), status_code=202)

    @app.post("/v1/agent/check", tags=["agent"], **_answer(answers.CheckResult))
    def check(request: Request, agent: Agent, body: CheckRequest) -> dict[str, Any]:
        """Dry run: the decision (allow, ask or deny, with the rule and reason) that the request
        in `request` would get from the `action` route now. Nothing is reserved, parked, signed,
        sent or audited."""
        return checks.check(_state(request).vault, agent, body.action, body.request).to_dict()

    @app.get("/v1/agent/approvals", tags=["agent"], **_answer(answers.PendingApprovals))
    def pending_approvals(request: Request, agent: Agent) -> dict[str, Any]:
        """This agent's requests still waiting for the owner (approval id, summary, expiry)."""
        return {"approvals": approvals.agent_pending(_state(request).vault, agent)}

    @app.get("/v1/agent/approvals/{approval_id}", tags=["agent"], **_answer(answers.ApprovalView))
    async def approval_status(
        request: Request,
        approval_id: str,
        wait: Annotated[
            int, Query(ge=0, le=60, description="Long-poll up to this many seconds.")
        ] = 0,
    ) -> dict[str, Any]:
        agent = await agent_name(request)
        vault = _state(request).vault
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            view = await run_in_threadpool(approvals.agent_view, vault, approval_id, agent)
            if view["status"] != "pending" or asyncio.get_running_loop().time() >= deadline:
                return view
            await asyncio.sleep(0.2)


def _sign(
    request: Request, agent: str, body: SignTransactionRequest, *, broadcast: bool
) -> signing.SignResult:
    return signing.sign_transaction(
        _state(request).vault, agent, body.wallet, body.transaction, chain=body.chain,
        description=body.description, declared=body.declared,
        idempotency_key=body.idempotency_key, broadcast=broadcast, threshold=body.threshold,
    )  # fmt: skip


# The owner's audit filters (service/audit.py `Filter`): names and words, never free text.
AgentFilter = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
ActionFilter = Annotated[
    str | None,
    Query(max_length=64, pattern=r"^[a-z0-9_.-]+$", description='"approval." for all approval.*'),
]
OutcomeFilter = Annotated[str | None, Query(max_length=16, pattern=r"^[a-z_]+$")]


def _owner_routes(app: FastAPI) -> None:
    @app.post("/v1/owner/login", tags=["owner"])
    def login(request: Request, body: LoginRequest, response: Response) -> dict[str, Any]:
        """Prove the passphrase; unlocks the vault if it is locked, and opens an owner session."""
        st = _state(request)
        if body.passphrase is None:
            # A KMS vault's owner: a one-time challenge answered with the vault's own key.
            if body.challenge is None or body.proof is None:
                raise MalformedRequestError(
                    "Log in with the passphrase, or (a KMS vault) a challenge and its proof.",
                    next_step="run `keysafe unlock`.",
                )
            if not st.take_challenge(body.challenge):
                raise NotAuthenticatedError(
                    "That login challenge is unknown, used or expired.",
                    next_step="run `keysafe unlock` again.",
                )
            vault_admin.kms_owner_login(
                st.vault, st.kms_token, st.kms_url, challenge=body.challenge, proof=body.proof
            )
        else:
            secret = SecretBytes(bytearray(body.passphrase.encode()))
            with secret:
                # A refused attempt queues the unlock_failure alert (service/notify.py).
                if st.vault.is_unlocked:
                    probe = type(st.vault).open(st.vault.db, clock=st.vault.clock)
                    notify.unlock_watched(probe, secret)  # throttled like any unlock
                    probe.lock()
                else:
                    notify.unlock_watched(st.vault, secret)
        token, session = st.new_session()
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", path="/", max_age=int(st.session_ttl),
            secure=request.url.scheme == "https",  # over TLS the cookie never travels in clear
        )  # fmt: skip
        st.touch()
        return {"session": token, "csrf": session.csrf, "ttl_seconds": int(st.session_ttl)}

    # Outside /v1/owner/ on purpose: every route there needs an owner session, and this one is
    # asked before there is one (like POST /v1/owner/login, it grants nothing by itself).
    @app.get("/v1/login-challenge", tags=["owner"])
    def challenge(request: Request) -> dict[str, Any]:
        """A one-time login challenge (60 s) for a vault a KMS wraps: the owner's CLI answers it
        with a proof only someone who can unlock the vault can compute."""
        return {"challenge": _state(request).new_challenge(), "ttl_seconds": 60}

    @app.post("/v1/owner/logout", tags=["owner"], dependencies=[Owner])
    def logout(request: Request, response: Response) -> dict[str, Any]:
        auth = request.headers.get("authorization", "")
        token = (
            auth[7:].strip()
            if auth.lower().startswith("bearer ")
            else request.cookies.get(COOKIE, "")
        )
        _state(request).end_session(token)
        response.delete_cookie(COOKIE, path="/")
        return {"ok": True}

    @app.post("/v1/owner/lock", tags=["owner"], dependencies=[Owner])
    def lock(request: Request) -> dict[str, Any]:
        _state(request).vault.lock()
        return {"locked": True}

    @app.get("/v1/owner/status", tags=["owner"], dependencies=[Owner])
    def status(request: Request) -> dict[str, Any]:
        st = _state(request)
        status = vault_admin.status(st.home, st.vault)
        return status.to_dict() | {
            "unlocked": st.vault.is_unlocked,
            "rotations_due": [d.model_dump() for d in st.rotations_due(status.audit_entries)],
        }

    @app.get("/v1/owner/approvals", tags=["owner"], dependencies=[Owner])
    def list_approvals(request: Request, all: bool = False) -> list[dict[str, Any]]:
        """Approvals (pending ones, or `all`), each with the agent's description, the decoded
        intent and, while pending, the budget windows it would draw on (`budget`: left before
        and after, judged as the gate would judge the approved request now)."""
        vault = _state(request).vault
        out = []
        for a in approvals.list_approvals(vault, pending_only=not all):
            view = a.for_owner()
            if a.status is approvals.Status.PENDING:
                windows = approvals.budget_effect(vault, a)
                view["budget"] = [w.to_dict() for w in windows] if windows else []
            out.append(view)
        return out

    @app.post("/v1/owner/approvals/{approval_id}/approve", tags=["owner"], dependencies=[Owner])
    def approve(
        request: Request, approval_id: str, body: ApproveRequest | None = None
    ) -> dict[str, Any]:
        vault = _state(request).vault
        if not vault.is_unlocked:
            raise VaultLockedError(
                "The vault is locked, so the approved request cannot run.",
                next_step="unlock first (`keysafe unlock` or the web page), then approve.",
            )
        seconds = body.for_seconds if body else None
        words = body.words if body else None
        return approvals.approve(vault, approval_id, grant_seconds=seconds, words=words).for_owner()

    @app.post("/v1/owner/approvals/{approval_id}/deny", tags=["owner"], dependencies=[Owner])
    def deny(request: Request, approval_id: str, body: DenyRequest | None = None) -> dict[str, Any]:
        """Deny (the whole id or a unique prefix of at least 6 hex digits); the optional
        `reason` is shown to the agent as plain text."""
        reason = body.reason if body else None
        return approvals.deny(_state(request).vault, approval_id, reason=reason).for_owner()

    @app.get("/v1/owner/grants", tags=["owner"], dependencies=[Owner])
    def list_grants(request: Request) -> list[dict[str, Any]]:
        """Active "approve for a while" grants: agent, rule, the request shape, until when."""
        return [g.to_dict() for g in approvals.list_grants(_state(request).vault)]

    @app.post("/v1/owner/grants/{grant_id}/revoke", tags=["owner"], dependencies=[Owner])
    def revoke_grant(request: Request, grant_id: int) -> dict[str, Any]:
        return approvals.revoke_grant(_state(request).vault, grant_id).to_dict()

    @app.get("/v1/owner/agents", tags=["owner"], dependencies=[Owner])
    def list_agents(request: Request) -> list[dict[str, Any]]:
        vault = _state(request).vault
        out = []
        for a in agents.list_agents(vault):
            caps = capabilities.capabilities(vault, a.name)
            out.append(a.to_dict() | {"rules": caps["policy"]["rules"], "budget": caps["budget"]})
        return out

    @app.post("/v1/owner/agents/{name}/{action}", tags=["owner"], dependencies=[Owner])
    def agent_action(request: Request, name: str, action: str) -> dict[str, Any]:
        status = {"pause": "paused", "resume": "active", "revoke": "revoked"}.get(action)
        if status is None:
            raise MalformedRequestError(
                f"Unknown agent action '{action[:20]}'.", next_step="use pause, resume or revoke."
            )
        return agents.set_status(_state(request).vault, name, status).to_dict()  # type: ignore[arg-type]

    @app.get("/v1/owner/wallets", tags=["owner"], dependencies=[Owner])
    def list_wallets(request: Request) -> list[dict[str, Any]]:
        st = _state(request)
        vault = st.vault
        out = []
        now = st.monotonic()
        for w in wallets.list_wallets(vault, verify=vault.is_unlocked):
            cached = st.balance_cache.get(w.address)
            if cached is None or now - cached[0] > 15:
                cached = (now, wallets.balances(vault, w))
                st.balance_cache[w.address] = cached
            out.append(w.model_dump(mode="json") | {"balances": cached[1]})
        return out

    @app.get("/v1/owner/audit", tags=["owner"], dependencies=[Owner])
    def audit_log(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        agent: AgentFilter = None,
        action: ActionFilter = None,
        outcome: OutcomeFilter = None,
    ) -> list[dict[str, Any]]:
        """The newest `limit` entries that match every filter given, oldest first."""
        where = audit.Filter(agent=agent, action=action, outcome=outcome)
        vault = _state(request).vault
        return [e.to_dict() for e in audit.list_entries(vault, limit=limit, where=where)]

    @app.get(
        "/v1/owner/audit/export",
        tags=["owner"],
        dependencies=[Owner],
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-ndjson": {}},
                         "description": "One audit entry per line (JSON Lines)."}},
    )  # fmt: skip
    def audit_export(
        request: Request,
        agent: AgentFilter = None,
        action: ActionFilter = None,
        outcome: OutcomeFilter = None,
    ) -> StreamingResponse:
        """Every entry that matches the filters, oldest first, as a JSON Lines download."""
        where = audit.Filter(agent=agent, action=action, outcome=outcome)
        return StreamingResponse(
            audit.export_lines(_state(request).vault, where=where),
            media_type="application/x-ndjson",
            headers={"content-disposition": 'attachment; filename="keysafe-audit.jsonl"'},
        )

    @app.get("/v1/owner/spending", tags=["owner"], dependencies=[Owner])
    def get_spending(request: Request, range: spending.Range = "24h") -> spending.Spending:
        """Spending per agent and asset booked against budget windows: the last 24 hours in
        hourly buckets, or 7 days in 6-hour buckets (network fees included)."""
        return spending.spending(_state(request).vault, range)

    @app.get("/v1/owner/audit/verify", tags=["owner"], dependencies=[Owner])
    def audit_verify(request: Request) -> dict[str, Any]:
        return audit.verify(_state(request).vault).to_dict()

    @app.get("/v1/owner/audit/unsealed", tags=["owner"], dependencies=[Owner])
    def audit_unsealed(request: Request) -> list[dict[str, Any]]:
        return [e.to_dict() for e in audit.unsealed(_state(request).vault)]

    @app.post("/v1/owner/audit/seal", tags=["owner"], dependencies=[Owner])
    def audit_seal(body: SealRequest, request: Request) -> dict[str, Any]:
        # Exactly the entries the owner was shown: one written after the list was fetched
        # stays unsealed until it is shown too.
        return {"sealed": audit.seal(_state(request).vault, body.seqs)}


def _owner_op_route(app: FastAPI) -> None:
    @app.post("/v1/owner/ops", tags=["owner"], dependencies=[Owner], response_model=None)
    def owner_op(request: Request, op: Annotated[AnyOp, Body()]) -> Any:
        """Run one owner operation (`service/any_owner_op.AnyOp`: agents, policies, credentials,
        data, wallets, chains, assets, seals) with the server's unlocked vault: how the owner's
        CLI makes changes while `keysafe serve` runs, without asking the passphrase again."""
        return op.run(_state(request).vault)


def _web_routes(app: FastAPI) -> None:
    from importlib import resources

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index() -> HTMLResponse:
        page = (resources.files("keysafe.api") / "web" / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(
            page,
            headers={
                "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                "x-frame-options": "DENY",
                "referrer-policy": "no-referrer",
            },
        )

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in ("app.js", "style.css"):
            from keysafe.errors import NotFoundError

            raise NotFoundError("No such file.", next_step="open / instead.")
        body = (resources.files("keysafe.api") / "web" / name).read_text(encoding="utf-8")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(body, media_type=kind)
