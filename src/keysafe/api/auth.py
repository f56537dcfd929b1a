"""Who is calling: the agent and owner checks the routes depend on, and the Host check.

Rules this module enforces:
- Agent routes: bearer `ks_agent_…`, a credential placeholder `ksp_…` (on the credential call
  only), a paired sidecar's relayed request, or an Ed25519-signed envelope that names this
  request's method, target and body; then the per-agent rate limit (429).
- Owner routes: an owner session only, as a bearer `ks_owner_…` (CLI) or the HttpOnly cookie
  plus the CSRF header; an agent token or signature never works there (no self-approval).
- A request whose Host is not one of the server's names is refused (421), so a web page on a
  rebinding DNS name cannot reach the vault through the owner's browser.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from keysafe import wire
from keysafe.api import errors as api_errors
from keysafe.api.state import ServerState, server_state
from keysafe.errors import (
    MalformedRequestError,
    MisdirectedRequestError,
    NotAuthenticatedError,
    RateLimitedError,
)
from keysafe.service import agent_auth, placeholders

logger = logging.getLogger(__name__)

HTTP_ROUTES = ("/v1/agent/http-request", "/v1/agent/http")
COOKIE = "ks_owner"
LOGIN_PATH = "/v1/owner/login"  # under /v1/owner/, yet asked before there is a session


# -- agents -----------------------------------------------------------------------------------


async def agent_name(request: Request) -> str:
    """Authenticate the agent: bearer token, or an Ed25519-signed envelope that names this
    request's method, path (with query) and JSON body (RFC 8785), so a signature cannot be moved
    to another route or body (service/agents.py `authenticate_signed`)."""
    st = server_state(request)
    token = _bearer(request)
    relayed = request.scope.get(wire.RELAYED_AGENT)
    sig = request.headers.get("x-keysafe-signature")
    envelope_raw = request.headers.get("x-keysafe-envelope")
    if token is not None and token.startswith(placeholders.PREFIX):
        name = await _placeholder_agent(request, st, token, relayed)
    elif isinstance(relayed, str):
        # A paired sidecar's request, opened and checked by api/relay_end.py in this process
        # (signature, freshness, the agent not revoked): no network request can set this key.
        name = relayed
    elif token is not None:
        # The quick check reads the agent's row without waiting (microseconds), on the event
        # loop; anything it cannot answer (locked, first sight of a row, last_seen due, a
        # refusal) goes the full way in a worker thread.
        quick = agent_auth.authenticate_token_quick(st.vault, token)
        if quick is None:
            quick = await run_in_threadpool(agent_auth.authenticate, st.vault, bearer=token)
        name = quick
    elif sig and envelope_raw:
        name = await _signed_agent(request, st, sig, envelope_raw)
    else:
        raise NotAuthenticatedError(
            "This route needs an agent token.",
            next_step="send `Authorization: Bearer ks_agent_…` (from `keysafe agent add`).",
        )
    _admit(st, name)
    return name


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


async def _placeholder_agent(request: Request, st: ServerState, token: str, relayed: object) -> str:
    # A placeholder speaks for its agent on the credential call and nowhere else; through a
    # sidecar, only for the sidecar's own agent.
    holder = await run_in_threadpool(placeholders.authenticate, st.vault, token)
    if request.url.path not in HTTP_ROUTES or (
        isinstance(relayed, str) and holder.agent != relayed
    ):
        raise await run_in_threadpool(
            placeholders.refuse_use,
            st.vault,
            holder,
            wanted=request.url.path,
            why="not a credential call"
            if request.url.path not in HTTP_ROUTES
            else "another agent's sidecar",
        )
    request.state.placeholder = holder
    return holder.agent


async def _signed_agent(request: Request, st: ServerState, sig: str, envelope_raw: str) -> str:
    envelope = _json_or_none(envelope_raw)
    raw_body = await request.body()
    body = _json_or_none(raw_body) if raw_body else None
    if not isinstance(envelope, dict) or (raw_body and body is None):
        raise _refused_agent()
    signed = agent_auth.SignedRequest(request.method, _request_target(request), body)
    name: str = await run_in_threadpool(
        agent_auth.authenticate, st.vault, envelope=envelope, signature=sig, request=signed
    )
    return name


def _admit(st: ServerState, name: str) -> None:
    if not st.allow(name):
        raise RateLimitedError(
            f"Agent '{name}' is sending requests too fast.",
            next_step="slow down and retry in a second.",
            wait_seconds=1,
        )
    st.touch()


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


# -- the owner --------------------------------------------------------------------------------


def owner(request: Request) -> None:
    """Owner session only: bearer `ks_owner_…` (CLI) or the HttpOnly cookie plus CSRF header."""
    st = server_state(request)
    token = _bearer(request)
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


def owner_token(request: Request) -> str:
    """The owner session's token as this request carries it (bearer or cookie; "" if none)."""
    token = _bearer(request)
    return token if token is not None else request.cookies.get(COOKIE, "")


def _not_owner(token: str | None) -> NotAuthenticatedError:
    if token and token.startswith("ks_agent_"):
        msg = "Agent credentials never work on owner routes."
    else:
        msg = "This route is for the vault's owner."
    return NotAuthenticatedError(
        msg, next_step="log in as the owner (`keysafe unlock` or the web page) and retry."
    )


def owner_refusal(request: Request) -> Response | None:
    """The owner check, run before FastAPI reads the body: nothing but an owner session gets as
    far as having its request looked at. None when the request may go on."""
    path = request.url.path
    if path.startswith("/v1/owner/") and path != LOGIN_PATH:
        try:
            owner(request)
        except NotAuthenticatedError as exc:
            return api_errors.error_response(exc)
    return None


# -- the Host header --------------------------------------------------------------------------


def misdirected(request: Request) -> Response | None:
    """421 when the request's Host is not one of the server's names, else None."""
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.lower() not in server_state(request).allowed_hosts:
        return api_errors.error_response(
            MisdirectedRequestError(
                "This keysafe server does not answer to that host name.",
                next_step="use http://127.0.0.1:PORT (or the name given to `keysafe serve "
                "--host`).",
            )
        )
    return None


Agent = Annotated[str, Depends(agent_name)]
Owner = Depends(owner)
