"""Routes declared next to their handlers, added straight onto an app: `RouteTable`.

Why not FastAPI's `APIRouter`: FastAPI 0.165's `include_router` mounts a router as one nested
routing layer that re-matches its routes with extra bookkeeping on every request; in process,
that took a refused whoami from 67 to 80 µs, a later route or a miss (404, 405) paid 40-50 µs
more, and whoami is the no-op the HTTP benchmarks divide by (benchmarks/RESULTS.md). A `RouteTable`
only remembers what its decorators were given, and `add_to` calls `app.add_api_route` with exactly
that, in declaration order: the app's routes are the ones `@app.get(…)` would have made.

    routes = RouteTable(tags=["owner"])

    @routes.get("/v1/owner/status")
    def status(request: Request) -> dict[str, Any]: ...

    routes.add_to(app)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI

logger = logging.getLogger(__name__)

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class RouteTable:
    """Route declarations, in order; `defaults` go to every route (a route's own options win)."""

    def __init__(self, **defaults: Any) -> None:
        self._defaults = defaults
        self._routes: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []

    def get(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Declare a GET route: the options of FastAPI's `app.get`."""
        return self.route(path, methods=["GET"], **options)

    def post(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Declare a POST route: the options of FastAPI's `app.post`."""
        return self.route(path, methods=["POST"], **options)

    def route(
        self, path: str, *, methods: list[str], **options: Any
    ) -> Callable[[Endpoint], Endpoint]:
        """Declare a route for `methods`: the options of FastAPI's `app.api_route`."""

        def declare(endpoint: Endpoint) -> Endpoint:
            self._routes.append((path, endpoint, {**self._defaults, **options, "methods": methods}))
            return endpoint

        return declare

    def add_to(self, app: FastAPI) -> None:
        """Add every declared route to `app`, in the order declared."""
        for path, endpoint, options in self._routes:
            app.add_api_route(path, endpoint, **options)
