"""Relays and Redis for tests: `redis_server()` starts a throwaway redis-server, `relay_process()`
runs `keysafe relay` as its own process (so a test can kill -9 and restart it).

    with redis_server() as redis_url, relay_process(free_port(), redis_url) as relay:
        link = RelayLink(relay.ws_url, SigningKey.generate())
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext
from pathlib import Path

import httpx

from keysafe.relay.server import RelayConfig, make_relay_app
from keysafe.testing import free_port, stop_process

KEYSAFE = shutil.which("keysafe", path=str(Path(sys.executable).parent)) or "keysafe"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server on a free loopback port, without persistence; yields its redis:// URL."""
    for attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    up = s.recv(16).startswith(b"+PONG")
            except OSError:
                pass
            if up:
                break
            time.sleep(0.05)
        if up:
            break
        stop_process(proc)
        if attempt == 2:
            raise RuntimeError("redis-server did not start")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc, sig=signal.SIGKILL)


class RelayProcess:
    """A running `keysafe relay`: its URLs, pid and log; `restart()` starts it again."""

    def __init__(self, port: int, args: Sequence[str], log_dir: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"
        self._args = list(args)
        self._log_dir = log_dir
        self._logs: list[Path] = []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        """Everything every run of this relay wrote to stderr (and stdout)."""
        return "".join(p.read_text(encoding="utf-8", errors="replace") for p in self._logs)

    def start(self, timeout: float = 20) -> None:
        log_path = self._log_dir / f"relay-{self.port}-{len(self._logs)}.log"
        self._logs.append(log_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
        env["KEYSAFE_HOME"] = str(self._log_dir / "no-home")  # no vault: nothing logs to a file
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [KEYSAFE, "relay", "--port", str(self.port), *self._args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keysafe relay exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v1/relay/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"keysafe relay did not become healthy:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig=sig)

    def kill(self) -> None:
        """kill -9: no shutdown, no goodbye to anyone connected."""
        self.stop(signal.SIGKILL)

    def restart(self, *, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL if `kill`) and start again on the same port."""
        self.stop(signal.SIGKILL if kill else signal.SIGTERM)
        self.start()


@contextmanager
def relay_process(
    port: int, redis_url: str | None = None, extra_args: Sequence[str] = ()
) -> Iterator[RelayProcess]:
    """`keysafe relay --port PORT [--redis URL] *extra_args` in its own process, once its health
    check answers; stopped on exit."""
    args = [*(["--redis", redis_url] if redis_url else []), *extra_args]
    relay = RelayProcess(port, args, Path(tempfile.mkdtemp(prefix="keysafe-relay-")))
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


@asynccontextmanager
async def running_relay(config: RelayConfig | None = None) -> AsyncIterator[str]:
    """The relay app served by uvicorn inside the running event loop; yields its http:// base
    URL (ws:// is the same with the scheme swapped). Faster than a process, for unit tests."""
    import uvicorn

    config = config or RelayConfig()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            make_relay_app(config),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="websockets-sansio",
            ws_max_size=config.ws_max_frame,
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
    )
    server.capture_signals = nullcontext  # type: ignore[method-assign,assignment]  # pytest keeps ^C
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the relay did not start")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
