"""Hostile request bodies against the real `keysafe serve` (issue 13, hole 1).

eth-account pulls in py_ecc, which raises the recursion limit to 100,000; a ~400 KB body of
nested `[` then overflowed the C stack in the JSON parser: a segfault from a local process with
no token, and the vault came back locked. Now every surface refuses JSON nested past 64 levels
before anything parses it, the recursion limit is put back after the imports, and a storm of
malformed bodies leaves the server up, answering 4xx, and its memory where it was.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keysafe import wire
from tests.e2e.server_fixture import (
    Server,
    agent_headers,
    cli_env,
    copy_home,
    error_of,
    evm_tx,
    keysafe_server,
    standard_vault,
)

DEEP = 400_000  # the depth that crashed the server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    pristine = standard_vault(tmp_path_factory)
    home = copy_home(pristine, tmp_path_factory.mktemp("hostile"))
    with keysafe_server(cli_env(home), "--unlock", "--rate-limit", "100000") as s:
        yield s, pristine.tokens["bot"]


def _alive(server: Server) -> None:
    assert server.proc.poll() is None, server.log()[-3000:]
    assert httpx.get(f"{server.url}/v1/health", timeout=10).status_code == 200


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("with_token", [False, True])
def test_attack_deeply_nested_json_is_refused_and_the_server_stays_up(
    server: tuple[Server, str], with_token: bool
) -> None:
    srv, token = server
    headers = {"content-type": "application/json"} | (agent_headers(token) if with_token else {})
    with srv.client() as c:
        # An EVM request first: it is what imported py_ecc (and its recursion limit) before.
        ok = c.post(
            "/v1/agent/sign-transaction",
            headers=agent_headers(token),
            json={"wallet": "main", "transaction": evm_tx(10**12)},
        )
        assert ok.status_code == 200, ok.text
        for body in (b"[" * DEEP, b'{"a":' * (DEEP // 4), b"[" * 65 + b"]" * 65):
            r = c.post("/v1/agent/sign-transaction", content=body, headers=headers)
            assert r.status_code == 400, (r.status_code, r.text[:300])
            assert error_of(r)["code"] == "MALFORMED_REQUEST"
        # Depth is counted outside strings only: brackets inside a string are text.
        fine = {"wallet": "main", "transaction": evm_tx(10**12), "description": "[" * 400}
        r = c.post("/v1/agent/sign-transaction", json=fine, headers=agent_headers(token))
        assert r.status_code == 200, r.text
    _alive(srv)


def test_attack_a_deep_signed_envelope_header_is_refused(server: tuple[Server, str]) -> None:
    srv, _ = server
    with srv.client() as c:
        r = c.post(
            "/v1/agent/sign-transaction",
            content=b"{}",
            headers={
                "x-keysafe-signature": "00",
                "x-keysafe-envelope": "[" * 30_000,
                "content-type": "application/json",
            },
        )
    assert r.status_code == 401, r.text
    _alive(srv)


def _hostile(rng: random.Random) -> tuple[bytes, str]:
    """One hostile body and the content type it claims."""
    kind = rng.randrange(8)
    if kind == 0:
        depth = rng.choice((65, 1_000, 100_000, 400_000))
        return rng.choice((b"[", b'{"x":', b'[{"a":')) * depth, "application/json"
    if kind == 1:
        return b'{"wallet": "main", "transaction": ' + b"9" * rng.choice((5_000, 500_000)) + b"}", (
            "application/json"
        )
    if kind == 2:
        return b'{"wallet": "' + b"a" * rng.choice((100_000, 1_000_000)) + b'"}', "application/json"
    if kind == 3:
        return b'{"wallet": "\xff\xfe\xc0\x80", "transaction": {}}', "application/json"
    if kind == 4:
        return b'{"wallet": "main", "transaction": {"value": 1e999999}}', "application/json"
    if kind == 5:
        return b"wallet=main&transaction=x", rng.choice(
            ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data")
        )
    if kind == 6:
        return os.urandom(rng.choice((10, 10_000))), "application/octet-stream"
    return b'{"wallet": "main", "transaction": "' + b"\\u0000" * 20_000 + b'"}', "application/json"


ROUTES = (
    "/v1/agent/sign-transaction",
    "/v1/agent/sign-message",
    "/v1/agent/sign-typed-data",
    "/v1/agent/http-request",
    "/v1/owner/login",
    "/v1/owner/policy/bot",
)


def test_attack_a_thousand_hostile_bodies_leave_the_server_up_and_its_memory_flat(
    server: tuple[Server, str],
) -> None:
    srv, token = server
    rng = random.Random(1013)
    statuses: dict[int, int] = {}

    def storm(n: int) -> None:
        with srv.client(timeout=60) as c:
            for _ in range(n):
                body, ctype = _hostile(rng)
                route = rng.choice(ROUTES)
                headers = {"content-type": ctype}
                if rng.random() < 0.5:
                    headers |= agent_headers(token)
                r = c.post(route, content=body, headers=headers)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                assert 400 <= r.status_code < 500, (route, ctype, body[:80], r.text[:300])

    storm(100)  # warm every path (and the allocator) before the baseline
    before = _rss_kib(srv.proc.pid)
    storm(1000)
    _alive(srv)
    after = _rss_kib(srv.proc.pid)
    assert after <= before * 1.10, (before, after, statuses)


def test_too_deep_counts_only_structure() -> None:
    assert not wire.too_deep(b'{"a": [1, 2, {"b": "[[[["}]}')
    assert not wire.too_deep(b"[" * 64 + b"]" * 64)
    assert wire.too_deep(b"[" * 65 + b"]" * 65)
    assert wire.too_deep(b"[" * 65)  # left open: a recursive parser descends just as far
    assert not wire.too_deep(b'{"a": [1, ')  # shallow and malformed: the parser's to refuse
    assert wire.too_deep(b"[" + b"[]" * 300_000)  # long and malformed: refused outright
    assert not wire.too_deep(b"[]" * 300_000)
    # Escaped quotes do not end a string, escaped backslashes do not escape its quote.
    assert not wire.too_deep(b'["\\"' + b"[" * 100 + b'"]')
    assert wire.too_deep(b'["\\\\"' + b", [" * 100 + b"]" * 100 + b"]")
    # Linear time on the worst shapes (no regular-expression backtracking).
    assert wire.too_deep(b'"\\"' * 300_000 + b"[" * 100)
