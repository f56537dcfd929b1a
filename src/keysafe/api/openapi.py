"""The OpenAPI document: FastAPI's, plus the error answers and the authentication keysafe
really uses.

FastAPI documents a 422 that keysafe never sends (api/errors.py answers 400) and knows nothing of
the agent and owner checks, which run as plain dependencies and middleware (api/auth.py).
`create_app` installs `openapi_schema` as the app's `openapi()`; the document is built once.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from keysafe.api import errors as api_errors

logger = logging.getLogger(__name__)


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the error answers keysafe really gives (400, not 422)."""
    if app.openapi_schema:
        return app.openapi_schema

    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    error_schema, codes = api_errors.openapi_errors()
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = error_schema
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for methods in schema.get("paths", {}).values():
        for op in methods.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for code, text in codes.items():
                responses.setdefault(code, {"description": f"one of: {text}", **ref})
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)
    _security(schema)
    app.openapi_schema = schema
    return schema


def _security(schema: dict[str, Any]) -> None:
    """Say how each route authenticates (`agent_name` and `owner` in api/auth.py), so generated
    clients send the right header. The two signature headers go together: one requirement names
    both."""
    schema["components"]["securitySchemes"] = {
        "agentToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ks_agent_…",
            "description": "An agent token from `keysafe agent add` (a credential placeholder "
            "`ksp_…` is accepted on the http-request routes only).",
        },
        "agentEnvelope": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Keysafe-Envelope",
            "description": "A version-2 request envelope (JSON) naming this method, path and body.",
        },
        "agentSignature": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Keysafe-Signature",
            "description": "Ed25519 signature (base64) over the envelope's RFC 8785 form.",
        },
        "ownerSession": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ks_owner_…",
            "description": "An owner session from POST /v1/owner/login (the web page uses its "
            "HttpOnly cookie plus X-CSRF-Token instead).",
        },
    }
    agent: list[dict[str, list[str]]] = [
        {"agentToken": []},
        {"agentEnvelope": [], "agentSignature": []},
    ]
    for path, methods in schema.get("paths", {}).items():
        if path.startswith("/v1/agent/"):
            needs = agent
        elif path.startswith("/v1/owner/") and path != "/v1/owner/login":
            needs = [{"ownerSession": []}]
        else:
            continue
        for op in methods.values():
            op["security"] = needs
