"""Every error body a running surface gives carries an ErrorCode, with that code's STATUS.

One real `keysafe serve` (a copy of the standard vault) is asked the wrong things every way a
caller can: no route, the wrong method, a foreign Host name, a body over the cap, a body that is
not JSON, no credentials, a policy refusal. The local proxy (`keysafe proxy`) and the MCP HTTP
endpoint run in-process in front of it and are asked the wrong things too. `error_of` (shared by
every black-box test) also checks the code of each error body it reads against ErrorCode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest

from keysafe import local_proxy
from keysafe.errors import STATUS, ErrorCode
from keysafe.mcp_server import http_app
from keysafe.sidecar import local_app
from tests.e2e.server_fixture import (
    MILLI_ETH,
    R2,
    Pristine,
    Server,
    agent_headers,
    cli_env,
    copy_home,
    error_of,
    evm_tx,
    keysafe_server,
    standard_vault,
)

SIGN = "/v1/agent/sign-transaction"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Pristine]]:
    vault = standard_vault(tmp_path_factory)
    root = tmp_path_factory.mktemp("error-codes")
    with keysafe_server(cli_env(copy_home(vault, root)), "--unlock", log_dir=root) as server:
        yield server, vault


def _check(r: httpx.Response, code: ErrorCode) -> None:
    assert error_of(r)["code"] == code, r.text
    assert r.status_code == STATUS[code][0], r.text


def _probes(bot: dict[str, str]) -> list[tuple[str, dict[str, Any], ErrorCode]]:
    sign = {"wallet": "main", "transaction": evm_tx(MILLI_ETH)}
    return [
        ("GET /v1/agent/no-such-route", {"headers": bot}, ErrorCode.NOT_FOUND),
        ("DELETE /v1/agent/capabilities", {"headers": bot}, ErrorCode.METHOD_NOT_ALLOWED),
        ("GET /v1/health", {"headers": {"host": "evil.example"}}, ErrorCode.MISDIRECTED_REQUEST),
        (
            f"POST {SIGN}",
            {"content": b"x" * (1024 * 1024 + 1), "headers": bot},
            ErrorCode.PAYLOAD_TOO_LARGE,
        ),
        (
            f"POST {SIGN}",
            {"content": b"{not json", "headers": bot | {"content-type": "application/json"}},
            ErrorCode.MALFORMED_REQUEST,
        ),
        (f"POST {SIGN}", {"json": {"wallet": 7}, "headers": bot}, ErrorCode.MALFORMED_REQUEST),
        (f"POST {SIGN}", {"json": sign}, ErrorCode.NOT_AUTHENTICATED),
        ("GET /v1/owner/agents", {}, ErrorCode.NOT_AUTHENTICATED),
        (f"POST {SIGN}", {"json": sign | {"wallet": "nope"}, "headers": bot}, ErrorCode.NOT_FOUND),
        (
            f"POST {SIGN}",
            {"json": {"wallet": "main", "transaction": evm_tx(MILLI_ETH, to=R2)}, "headers": bot},
            ErrorCode.POLICY_DENIED,
        ),
    ]


def test_every_refusal_of_the_server_carries_its_error_code(
    served: tuple[Server, Pristine],
) -> None:
    server, vault = served
    with server.client() as client:
        for what, kwargs, code in _probes(agent_headers(vault.tokens["bot"])):
            method, path = what.split(" ", 1)
            _check(client.request(method, path, **kwargs), code)


def test_a_405_from_the_server_names_the_methods_the_route_takes(
    served: tuple[Server, Pristine],
) -> None:
    """RFC 9110 15.5.6: a 405 must carry Allow. The API's handler once dropped routing's
    headers (the proxy's and the sidecar's kept them); one handler serves all three now."""
    server, vault = served
    with server.client() as client:
        r = client.delete("/v1/agent/capabilities", headers=agent_headers(vault.tokens["bot"]))
    _check(r, ErrorCode.METHOD_NOT_ALLOWED)
    assert "GET" in r.headers["allow"].split(", "), r.headers
    assert error_of(r)["next"] == "see /openapi.json for the routes."


def test_the_openapi_document_lists_the_codes_of_each_error_status(
    served: tuple[Server, Pristine],
) -> None:
    server, _ = served
    doc = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    enum = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
    assert set(enum["enum"]) == {str(c) for c in ErrorCode}
    sign = doc["paths"][SIGN]["post"]["responses"]
    assert "POLICY_DENIED" in sign["403"]["description"]
    assert "METHOD_NOT_ALLOWED" in sign["405"]["description"]


def _ask(app: Any, base: str, requests: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base) as c:
            return [await c.request("POST", path, **kw) for path, kw in requests]

    return asyncio.run(run())


def test_the_local_proxy_refuses_with_error_codes(served: tuple[Server, Pristine]) -> None:
    server, _ = served
    port = local_proxy.DEFAULT_PORT
    app = local_proxy.create_app(port=port, url=server.url)
    answers = _ask(
        app,
        f"http://127.0.0.1:{port}",
        [
            ("/openai/v1/chat", {}),
            ("/openai/v1/chat", {"headers": {"origin": "https://evil.example"}}),
            ("/openai/v1/chat", {"headers": {"authorization": "Bearer ksp_" + "x" * 40}}),
        ],
    )
    _check(answers[0], ErrorCode.NOT_AUTHENTICATED)
    _check(answers[1], ErrorCode.MISDIRECTED_REQUEST)
    _check(answers[2], ErrorCode.NOT_AUTHENTICATED)  # the vault's own refusal, passed on
    # Starlette's own refusals too: they were plain text.
    (nowhere,) = _ask(app, f"http://127.0.0.1:{port}", [("/", {})])
    _check(nowhere, ErrorCode.NOT_FOUND)


def test_the_sidecar_refuses_unknown_routes_and_methods_with_error_codes() -> None:
    # The refusals come from routing, before the sidecar's state or channel are touched.
    app = local_app(cast(Any, None), cast(Any, None))
    answers = _ask(app, "http://127.0.0.1:8423", [("/v1/owner/agents", {}), ("/v1/health", {})])
    _check(answers[0], ErrorCode.NOT_FOUND)
    _check(answers[1], ErrorCode.METHOD_NOT_ALLOWED)
    assert set(answers[1].headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_attack_the_vault_origin_serves_no_third_party_script(
    served: tuple[Server, Pristine],
) -> None:
    """FastAPI's /docs and /redoc pull scripts from a CDN onto the origin that holds the
    owner's session cookie; the server must not serve them (the schema stays at /openapi.json).
    """
    server, _ = served
    with server.client() as client:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            r = client.get(path)
            _check(r, ErrorCode.NOT_FOUND)
            assert "cdn.jsdelivr.net" not in r.text
        assert client.get("/openapi.json").status_code == 200


def test_the_mcp_http_endpoint_refuses_with_error_codes(served: tuple[Server, Pristine]) -> None:
    server, _ = served
    answers = _ask(
        http_app(url=server.url),
        "http://127.0.0.1:8422",
        [
            ("/mcp", {}),
            ("/mcp", {"headers": {"authorization": "Bearer ks_agent_" + "x" * 40}}),
        ],
    )
    _check(answers[0], ErrorCode.NOT_AUTHENTICATED)
    _check(answers[1], ErrorCode.NOT_AUTHENTICATED)
