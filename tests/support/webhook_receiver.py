"""A webhook receiver for tests: a real HTTP server on loopback that verifies every delivery with
the recipe printed in docs/notifications.md (the function is taken from the page itself, so the
docs cannot drift from what is tested) and counts deliveries by their delivery id.

Per path: `/ok` answers 200; `/flaky` answers 500 to the first FLAKY tries of each delivery;
`/down` always 500; `/hold` keeps the first request of each delivery open until `release()`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
FLAKY = 2


def docs_recipe() -> Callable[..., bool]:
    """`verify_keysafe` as docs/notifications.md prints it (the python block after
    "### Verifying a delivery")."""
    text = DOCS.read_text(encoding="utf-8").split("### Verifying a delivery", 1)[1]
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match is not None, "docs/notifications.md lost its verification recipe"
    scope: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOCS), "exec"), scope)
    fn: Callable[..., bool] = scope["verify_keysafe"]
    return fn


@dataclass
class Delivery:
    path: str
    delivery_id: str
    event: str
    signature: str
    body: bytes
    verified: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}  # path -> whsec_… (set once the webhook is added)
        self.deliveries: list[Delivery] = []
        self._cond = threading.Condition()
        self._held = threading.Event()
        self._verify = docs_recipe()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._held.set()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        self._held.set()

    def verify(self, path: str, body: bytes, header: str, now: float | None = None) -> bool:
        return self._verify(self.secrets[path], body, header, now)

    def on(self, path: str) -> list[Delivery]:
        with self._cond:
            return [d for d in self.deliveries if d.path == path]

    def ids(self, path: str) -> Counter[str]:
        """Posts per delivery id (a receiver dedupes on the id)."""
        return Counter(d.delivery_id for d in self.on(path))

    def wait_for(self, what: Callable[[], Any], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                found = what()
                if found:
                    return found
                self._cond.wait(0.1)
        raise AssertionError("the receiver waited in vain")

    def wait_event(self, path: str, event: str, count: int = 1, timeout: float = 30) -> Delivery:
        found: list[Delivery] = self.wait_for(
            lambda: [d for d in self.on(path) if d.event == event][count - 1 :] or None, timeout
        )
        return found[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                path = self.path
                sig = self.headers.get("keysafe-signature", "")
                d = Delivery(
                    path,
                    self.headers.get("keysafe-delivery", ""),
                    self.headers.get("keysafe-event", ""),
                    sig,
                    body,
                    path in receiver.secrets and receiver.verify(path, body, sig),
                    time.time(),
                )
                with receiver._cond:
                    tries = receiver.ids(path)[d.delivery_id]
                    receiver.deliveries.append(d)
                    receiver._cond.notify_all()
                if path == "/hold" and tries == 0:
                    receiver._held.wait(60)
                fail = path == "/down" or (path == "/flaky" and tries < FLAKY)
                self.send_response(500 if fail else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        return Handler
