"""The credential proxy: `POST /v1/agent/http-request` (keysafe attaches the credential, calls
the upstream, scrubs the answer) to a local upstream, beside the same GET sent directly with
httpx. The upstream is a small HTTP/1.1 server in its own process, so neither path shares a
GIL with it. Both clients keep their connection open (an agent's usual httpx.Client); a direct
request that opens a new connection each time is reported too.

Streaming (`measure_stream`): time to the first server-sent event of a token stream whose first
token the upstream sends after `ttft_ms` (a model's time to first token: 200 ms is a fast hosted
model; many take 300 ms to over a second), through the vault's route (`?stream=true`), through
`keysafe proxy` with a placeholder (as an unmodified SDK), and sent directly. The ratio is the
slower keysafe path's first event over the direct one's; since keysafe adds a fixed cost per
call (the gated path; upstream connections are kept alive) and not a per-token one, the ratio
depends on the TTFT, so what keysafe adds is reported in ms beside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks import common
from keysafe.testing import free_port

_UPSTREAM = (
    r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = json.dumps({"ok": True, "items": [{"id": i, "name": f"item-{i}"} for i in range(8)]})"""
    r""".encode()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once (no delayed-ACK stalls)

    def do_GET(self):
        if self.path.startswith("/v1/stream"):
            return self.stream()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def stream(self):
        # A model API's token stream: the first event after TTFT_MS (the model "thinking"),
        # then a few more, chunked (the connection stays open, as a real API's does).
        ttft = int(self.path.rsplit("=", 1)[1]) / 1000 if "ttft_ms=" in self.path else 0.0
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        time.sleep(ttft)
        for i in range(5):
            event = f"data: {{\"token\": {i}}}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            time.sleep(0.002)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""
)


@contextmanager
def upstream() -> Iterator[str]:
    """A local upstream on a free port; yields 'host:port'."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _UPSTREAM],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().decode().strip())
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def measure(server_url: str, token: str, upstream_host: str, *, calls: int) -> dict[str, Any]:
    url = f"http://{upstream_host}/v1/items"
    body = {"credential": common.CREDENTIAL, "method": "GET", "url": url}
    headers = {"authorization": f"Bearer {token}"}
    samples: dict[str, list[float]] = {"proxy": [], "direct": [], "direct_new_connection": []}
    with (
        httpx.Client(base_url=server_url, headers=headers, timeout=30) as ks,
        httpx.Client(timeout=30) as direct,
    ):

        def via_proxy() -> None:
            r = ks.post("/v1/agent/http-request", json=body)
            assert r.status_code == 200 and r.json()["status_code"] == 200, r.text

        def via_direct() -> None:
            r = direct.get(url, headers={"authorization": f"Bearer {common.CREDENTIAL_SECRET}"})
            assert r.status_code == 200, r.text

        def via_new_connection() -> None:
            r = httpx.get(url, headers={"authorization": f"Bearer {common.CREDENTIAL_SECRET}"})
            assert r.status_code == 200, r.text

        fns = {
            "proxy": via_proxy,
            "direct": via_direct,
            "direct_new_connection": via_new_connection,
        }
        for fn in fns.values():
            for _ in range(5):
                fn()  # warm: connections, imports
        rounds = 5
        per_round = max(1, calls // rounds)
        for _ in range(rounds):
            for key, fn in fns.items():
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    fn()
                    samples[key].append(time.perf_counter() - t0)
    out = {k: common.summary(v) for k, v in samples.items()}
    ratio = out["proxy"]["p50_ms"] / out["direct"]["p50_ms"]
    return {
        "figure": "credential proxy http_request vs the same GET sent directly with httpx",
        "upstream": url,
        "timings": out,
        "ratio": ratio,
        "ratio_vs_direct_new_connection": out["proxy"]["p50_ms"]
        / out["direct_new_connection"]["p50_ms"],
        "target": {"max": 2.0, "met": ratio <= 2.0},
    }


STREAM_TARGET: float = 1.2  # first event through the proxy / direct


def issue_placeholder(home: Path, agent: str) -> str:
    """A `ksp_…` placeholder for the bench credential, issued in-process (before serving)."""
    from keysafe.service import placeholders

    with common.unlocked(home) as vault:
        issued = placeholders.issue(vault, common.CREDENTIAL, agent)
        try:
            return bytes(issued.reveal()).decode()
        finally:
            issued.wipe()


@contextmanager
def local_proxy(vault_url: str) -> Iterator[str]:
    """`keysafe proxy` on a free port, talking to `vault_url`; yields its base URL."""
    port = free_port()
    with tempfile.TemporaryDirectory() as agent_home:
        os.chmod(agent_home, 0o700)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
        env |= {"KEYSAFE_URL": vault_url, "KEYSAFE_HOME": agent_home}
        proc = subprocess.Popen(
            [common.KEYSAFE, "proxy", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("keysafe proxy did not start") from None
                    time.sleep(0.02)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _first_and_last(
    open_stream: Callable[[], AbstractContextManager[httpx.Response]],
) -> tuple[float, float]:
    """(seconds to the first event, seconds to the end of the stream) for one streamed call."""
    t0 = time.perf_counter()
    first = 0.0
    events = 0
    with open_stream() as r:
        assert r.status_code == 200, r.read()[:300]
        for line in r.iter_lines():
            if line.startswith("data: "):
                events += 1
                if events == 1:
                    first = time.perf_counter() - t0
    assert events == 5, events
    return first, time.perf_counter() - t0


def measure_stream(
    server_url: str,
    token: str,
    proxy_url: str,
    placeholder: str,
    upstream_host: str,
    *,
    calls: int,
    ttft_ms: int = 200,
) -> dict[str, Any]:
    path = f"/v1/stream?ttft_ms={ttft_ms}"
    url = f"http://{upstream_host}{path}"
    body = {"credential": common.CREDENTIAL, "method": "GET", "url": url}
    with (
        httpx.Client(timeout=30, headers={"authorization": f"Bearer {token}"}) as ks,
        httpx.Client(timeout=30, headers={"authorization": f"Bearer {placeholder}"}) as sdk,
        httpx.Client(timeout=30) as direct,
    ):
        secret = {"authorization": f"Bearer {common.CREDENTIAL_SECRET}"}
        paths: dict[str, Callable[[], AbstractContextManager[httpx.Response]]] = {
            "direct": lambda: direct.stream("GET", url, headers=secret),
            "vault_route": lambda: ks.stream(
                "POST", f"{server_url}/v1/agent/http?stream=true", json=body
            ),
            "local_proxy": lambda: sdk.stream("GET", f"{proxy_url}/{common.CREDENTIAL}{path}"),
        }
        first: dict[str, list[float]] = {k: [] for k in paths}
        last: dict[str, list[float]] = {k: [] for k in paths}
        for fn in paths.values():
            for _ in range(2):
                _first_and_last(fn)  # warm: connections, imports
        rounds = 3
        for _ in range(rounds):  # interleaved, so drift on a shared machine hits every path
            for key, fn in paths.items():
                for _ in range(max(1, calls // rounds)):
                    a, b = _first_and_last(fn)
                    first[key].append(a)
                    last[key].append(b)
    out = {
        k: {"first_event": common.summary(first[k]), "last_event": common.summary(last[k])}
        for k in paths
    }
    direct_p50 = out["direct"]["first_event"]["p50_ms"]
    ratio = max(out[k]["first_event"]["p50_ms"] for k in ("vault_route", "local_proxy"))
    ratio /= direct_p50
    return {
        "figure": "first server-sent event through the credential proxy vs sent directly",
        "upstream": url,
        "ttft_ms": ttft_ms,
        "timings": out,
        "ratio": ratio,  # the slower of the two keysafe paths
        "ratio_vault_route": out["vault_route"]["first_event"]["p50_ms"] / direct_p50,
        "ratio_local_proxy": out["local_proxy"]["first_event"]["p50_ms"] / direct_p50,
        "added_ms": {
            k: out[k]["first_event"]["p50_ms"] - direct_p50 for k in ("vault_route", "local_proxy")
        },
        "target": {"max": STREAM_TARGET, "met": ratio <= STREAM_TARGET},
    }
