"""RouteTable: routes declared beside their handlers land on the app exactly as `@app.get` would
put them, in order, and the server's app has no nested router layer (api/routes/table.py)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from keysafe.api import create_app
from keysafe.api.routes.table import RouteTable


def _seen() -> None:
    """A dependency that does nothing: only its presence on the route is checked."""


def test_route_table_adds_routes_in_order_with_defaults_and_own_options_winning() -> None:
    routes = RouteTable(tags=["owner"], dependencies=[Depends(_seen)])

    @routes.get("/b", summary="bee")
    def second() -> dict[str, Any]:
        return {"route": "b"}

    @routes.post("/a")
    @routes.route("/a", methods=["GET", "HEAD"], tags=["other"])
    def first() -> dict[str, Any]:
        return {"route": "a"}

    app = FastAPI()
    routes.add_to(app)
    added = [r for r in app.routes if isinstance(r, APIRoute)]
    assert [(r.path, sorted(r.methods)) for r in added] == [
        ("/b", ["GET"]),
        ("/a", ["GET", "HEAD"]),
        ("/a", ["POST"]),
    ]
    assert [r.tags for r in added] == [["owner"], ["other"], ["owner"]]
    assert all(len(r.dependencies) == 1 for r in added)
    assert added[0].summary == "bee"
    client = TestClient(app)
    assert client.get("/b").json() == {"route": "b"}
    assert client.post("/a").json() == {"route": "a"}


def test_route_table_schema_equals_the_decorator_on_the_app() -> None:
    routes = RouteTable(tags=["agent"])

    @routes.get("/v1/thing/{name}", response_model=None)
    def thing(name: str, limit: int = 10) -> dict[str, Any]:
        """A thing by name."""
        return {"name": name, "limit": limit}

    via_table = FastAPI()
    routes.add_to(via_table)
    direct = FastAPI()
    direct.get("/v1/thing/{name}", tags=["agent"], response_model=None)(thing)
    assert via_table.openapi() == direct.openapi()


def test_server_app_routes_sit_on_the_app_itself() -> None:
    """No FastAPI include_router layer: every route is matched by the app's own router."""
    app = create_app(None)  # type: ignore[arg-type]  # the route list does not read the state
    inner = app.app
    assert isinstance(inner, FastAPI)
    api_routes = [r for r in inner.routes if isinstance(r, APIRoute)]
    assert len(api_routes) == len(inner.routes) - 1  # FastAPI's own: the schema (no docs pages)
    paths = [r.path for r in api_routes]
    assert paths[0] == "/v1/health" and paths[-2:] == ["/", "/static/{name}"]
    assert paths.index("/v1/agent/http") < paths.index("/v1/agent/http-request")
