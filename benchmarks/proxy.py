"""The credential proxy: `POST /v1/agent/http-request` (keysafe attaches the credential, calls
the upstream, scrubs the answer) to a local upstream, beside the same GET sent directly with
httpx. The upstream is a small HTTP/1.1 server in its own process, so neither path shares a
GIL with it. Both clients keep their connection open (an agent's usual httpx.Client); a direct
request that opens a new connection each time is reported too.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from benchmarks import common

_UPSTREAM = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = json.dumps({"ok": True, "items": [{"id": i, "name": f"item-{i}"} for i in range(8)]}).encode()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once (no delayed-ACK stalls)

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@contextmanager
def upstream() -> Iterator[str]:
    """A local upstream on a free port; yields 'host:port'."""
    proc = subprocess.Popen([sys.executable, "-c", _UPSTREAM], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
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
