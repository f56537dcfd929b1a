"""The FastAPI application, assembled: the guard, the error handlers, the routes, the schema.

Routes are thin (api/routes/): they authenticate (api/auth.py), call one service function and
shape the answer.

Rules this module enforces:
- The guard answers before any route sees a request: a Host that is not the server's (421), a
  declared body over 1 MiB (413), an owner route without an owner session (401, before the
  body is read).
- Bodies over 1 MiB are refused (413), JSON nested past 64 levels too (400), before any parse
  (keysafe/wire.py); CORS stays closed (no CORS headers are ever sent).
- Every answer carries `cache-control: no-store` and `x-content-type-options: nosniff`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders

from keysafe import __version__, wire
from keysafe.api import auth, openapi
from keysafe.api import errors as api_errors
from keysafe.api.routes import agent, owner, web
from keysafe.api.state import ServerState
from keysafe.errors import PayloadTooLargeError

logger = logging.getLogger(__name__)

MAX_BODY = wire.MAX_BODY


def create_app(state: ServerState) -> BodyLimit:
    """The server's ASGI app over `state` (the vault handle, sessions, limits), behind the body
    checks of keysafe/wire.py."""
    app = FastAPI(
        title="keysafe",
        version=__version__,
        description="Agents use keys and credentials without holding them. Agent routes take "
        "`Authorization: Bearer ks_agent_…`; owner routes take an owner session.",
        # No OpenTelemetry: nothing about a request (paths, agents, timings) leaves the process
        # through an exporter the environment configures, and no request pays for the check.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
        # No Swagger UI or ReDoc: they load scripts from a CDN, on the origin that holds the
        # owner's session cookie. The document itself stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.keysafe = state
    api_errors.install(app)
    app.add_middleware(_Guard, refusal=_refusal)
    # In this order: a request two routes could both match goes to the first one added.
    for routes in (agent.meta, agent.routes, owner.login_routes, owner.routes, web.routes):
        routes.add_to(app)
    # FastAPI's documented way to customise the schema is to replace this method.
    app.openapi = lambda: openapi.openapi_schema(app)  # type: ignore[method-assign]
    wire.pin_recursion_limit()  # after every import above (py_ecc raises it to 100,000)
    return BodyLimit(app)


def _refusal(request: Request) -> Response | None:
    """What the guard answers instead of the app, in order: a wrong Host, a body declared too
    large, an owner route without an owner session; None lets the request through."""
    misdirected = auth.misdirected(request)
    if misdirected is not None:
        return misdirected
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        return _too_large()
    return auth.owner_refusal(request)


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
    return api_errors.error_response(err)


class BodyLimit(wire.BodyGuard):
    """The app behind the body checks (keysafe/wire.py); `state` so tests and the CLI reach
    app.state.keysafe."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app, max_body=MAX_BODY)
        self.state = app.state
