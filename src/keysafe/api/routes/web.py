"""The owner's web page: `/` and its two static files, none of them in the OpenAPI document.

The page holds no secret and runs no inline script: its content security policy allows only
this origin's own script and style, and no page may frame it. It talks to the owner routes
with the session cookie plus the CSRF header (api/auth.py).
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Final

from fastapi import Response
from fastapi.responses import HTMLResponse

from keysafe.api.routes.table import RouteTable
from keysafe.errors import NotFoundError

logger = logging.getLogger(__name__)

routes = RouteTable(include_in_schema=False)

STATIC: Final = ("app.js", "style.css")


@routes.route("/", methods=["GET", "HEAD"])
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


@routes.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC:
        raise NotFoundError("No such file.", next_step="open / instead.")
    body = (resources.files("keysafe.api") / "web" / name).read_text(encoding="utf-8")
    kind = "text/javascript" if name.endswith(".js") else "text/css"
    return Response(body, media_type=kind)
