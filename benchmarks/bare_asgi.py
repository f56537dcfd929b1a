"""The floor under keysafe's HTTP figures: a bare ASGI endpoint on the same server stack.

`keysafe serve` runs its FastAPI app with `uvicorn.run(app, host=…, port=…, log_level="warning")`
(cli/server_cmds.py). This module serves a bare ASGI callable that answers every request with a
small JSON body (the size of whoami's `{"agent": "agent-00"}`) through that same call, in its own
process, so "no-op (whoami) / bare ASGI" says what keysafe's app, middleware and token check cost
on top of uvicorn itself.

    .venv/bin/python benchmarks/bare_asgi.py --port 8799    # serve until interrupted
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from keysafe.testing import start_server, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402 - after the path is set, when run as a script

BODY = b'{"agent":"agent-00"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Answer 200 with BODY to any HTTP request, after reading its body (as an endpoint would)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # The same call, with the same settings, as `keysafe serve` (cli/server_cmds.py).
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


@contextmanager
def serve(workdir: Path, *, timeout: float = 30) -> Iterator[common.Served]:
    """The bare endpoint in its own process on a free port, until it answers."""
    started = start_server(
        lambda port: [sys.executable, str(Path(__file__).resolve()), "--port", str(port)],
        os.environ,
        workdir,
        name="bare-asgi",
        timeout=timeout,
        healthy=lambda url, proc, deadline: wait_healthy(url, proc, deadline, path="/"),
    )
    try:
        yield common.Served.of(started)
    finally:
        stop_process(started.proc, grace=15)


if __name__ == "__main__":
    main()
