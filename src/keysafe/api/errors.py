"""Mapping errors to HTTP once: `{"error": {"code", "message", "next", …}}` with STATUS codes.

FastAPI's own 422 echoes the request input, which may hold a secret; every validation error is a
400 MALFORMED_REQUEST with only the location and the message. A bug is a 500 INTERNAL with an
incident id; its traceback goes to the server log only. The OpenAPI document's error answers are
read off the same STATUS table (`openapi_errors`), so the two cannot drift apart.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from keysafe import wire
from keysafe.errors import (
    STATUS,
    ErrorCode,
    InternalError,
    KeysafeError,
    codes_by_status,
)
from keysafe.service.context import known_fault

logger = logging.getLogger(__name__)


def error_body(code: ErrorCode, message: str, next_step: str, **extra: object) -> dict[str, object]:
    """The JSON body of an error answer."""
    return {"error": {"code": str(code), "message": message, "next": next_step, **extra}}


def error_response(exc: KeysafeError) -> JSONResponse:
    """`exc` as an HTTP answer: its STATUS code, and Retry-After when it says how long to wait."""
    return JSONResponse(
        {"error": exc.to_dict()}, status_code=exc.http_status, headers=_headers(exc)
    )


def as_keysafe_error(exc: BaseException) -> KeysafeError:
    """What any exception means to a caller: itself, a known fault (a damaged row, a full disk),
    or else a bug, logged here with its traceback under an incident id and answered INTERNAL."""
    if isinstance(exc, KeysafeError):
        return exc
    known = known_fault(exc)
    if known is not None:
        return known
    incident = secrets.token_hex(4)
    logger.error("internal error, incident %s", incident, exc_info=exc)
    return InternalError(
        f"keysafe hit an internal error (incident {incident}).",
        next_step=f"the owner finds the details in the server log under incident {incident}.",
    )


def install(app: FastAPI) -> None:
    """Install the error handlers on `app`: every answer that is not a success is an error body."""

    @app.exception_handler(KeysafeError)
    async def _keysafe(_: Request, exc: KeysafeError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))[:200]}
            for e in exc.errors()[:10]
        ]
        body = error_body(
            ErrorCode.MALFORMED_REQUEST,
            "The request body or parameters are not valid.",
            "fix the fields named in 'problems' (see /openapi.json).",
            problems=problems,
        )
        return JSONResponse(body, status_code=STATUS[ErrorCode.MALFORMED_REQUEST][0])

    # Routing's own refusals (404, 405 with its Allow header), as the other surfaces answer them.
    app.add_exception_handler(
        StarletteHTTPException, wire.http_error_handler("see /openapi.json for the routes.")
    )

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        return error_response(as_keysafe_error(exc))


def openapi_errors() -> tuple[dict[str, object], dict[str, str]]:
    """The `Error` schema (its `code` an enum of every ErrorCode) and, per HTTP error status,
    the codes that answer with it: what the OpenAPI document says a route can answer."""
    schema: dict[str, object] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "next"],
                "properties": {
                    "code": {"type": "string", "enum": [str(c) for c in ErrorCode]},
                    "message": {"type": "string"},
                    "next": {"type": "string"},
                },
                "additionalProperties": True,
            }
        },
    }
    statuses = {
        str(status): ", ".join(str(c) for c in codes)
        for status, codes in codes_by_status().items()
        if status >= 400
    }
    return schema, statuses


def _headers(exc: KeysafeError) -> dict[str, str]:
    wait = exc.facts.get("wait_seconds")
    return {"Retry-After": str(wait)} if wait is not None else {}
