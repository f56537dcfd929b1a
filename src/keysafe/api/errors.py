"""Mapping errors to HTTP once: `{"error": {"code", "message", "next", …}}` with STATUS codes.

FastAPI's own 422 echoes the request input, which may hold a secret; every validation error is a
400 MALFORMED_REQUEST with only the location and the message. A bug is a 500 INTERNAL with an
incident id; its traceback goes to the server log only.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from keysafe.errors import KeysafeError
from keysafe.service.context import known_fault

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, next_step: str, **extra: object) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "next": next_step, **extra}}


def install(app: FastAPI) -> None:
    @app.exception_handler(KeysafeError)
    async def _keysafe(_: Request, exc: KeysafeError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.to_dict()}, status_code=exc.http_status, headers=_headers(exc)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))[:200]}
            for e in exc.errors()[:10]
        ]
        return JSONResponse(
            error_body(
                "MALFORMED_REQUEST", "The request body or parameters are not valid.",
                "fix the fields named in 'problems' (see /openapi.json).", problems=problems,
            ),
            status_code=400,
        )  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "NOT_AUTHENTICATED"}.get(
            exc.status_code, "HTTP_ERROR"
        )
        return JSONResponse(
            error_body(code, str(exc.detail)[:200], "see /openapi.json for the routes."),
            status_code=exc.status_code,
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        known = known_fault(exc)
        if known is not None:
            return await _keysafe(request, known)
        incident = secrets.token_hex(4)
        logger.exception("internal error, incident %s", incident)
        return JSONResponse(
            error_body(
                "INTERNAL", f"keysafe hit an internal error (incident {incident}).",
                f"the owner finds the details in the server log under incident {incident}.",
            ),
            status_code=500,
        )  # fmt: skip


def _headers(exc: KeysafeError) -> dict[str, str]:
    wait = exc.facts.get("wait_seconds")
    return {"Retry-After": str(wait)} if wait is not None else {}
