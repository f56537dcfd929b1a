"""A server in a subprocess on a free port, started until it answers and stopped for sure."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from keysafe.testing.ports import free_port

PORT_ATTEMPTS = 3  # a free port can be taken between probing it and the server binding it


@dataclass
class Started:
    """A server process that answered its health check."""

    url: str  # http://127.0.0.1:PORT
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path  # its stdout and stderr
    startup_s: float  # from spawning it to its first healthy answer

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def wait_until(
    ready: Callable[[], bool],
    deadline: float,
    *,
    running: Callable[[], bool] = lambda: True,
    every: float = 0.01,
) -> bool:
    """Poll `ready()` until it says so (True), `running()` says the server has exited, or
    `deadline` (time.monotonic) passes (False). `ready` answers False for "not yet", never
    raises for it; `every` is fine-grained by default: the benchmarks report start-up time
    from it."""
    while time.monotonic() < deadline:
        if not running():
            return False
        if ready():
            return True
        time.sleep(every)
    return False


def answers_ok(url: str) -> bool:
    """GET `url` answers 200 now (False while nothing answers there)."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _accepts(port: int) -> bool:
    """Something accepts TCP connections on 127.0.0.1:`port` now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_healthy(
    url: str, proc: subprocess.Popen[bytes], deadline: float, *, path: str = "/v1/health"
) -> bool:
    """Poll GET `url``path` until it answers 200 (True), the process exits or `deadline`
    (time.monotonic) passes (False)."""
    return wait_until(lambda: answers_ok(f"{url}{path}"), deadline, running=_running(proc))


def wait_listening(url: str, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Like `wait_healthy`, for a server with no health route: until its port accepts."""
    port = int(url.rsplit(":", 1)[1])
    return wait_until(lambda: _accepts(port), deadline, running=_running(proc))


def _running(proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: proc.poll() is None


def stop_process(
    proc: subprocess.Popen[bytes] | None, *, grace: float = 10, sig: int = signal.SIGTERM
) -> None:
    """`sig` (SIGTERM), then SIGKILL after `grace` seconds: a server a test started ends with
    it. None (a process that never started) is nothing to stop."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def start_server(
    argv: Callable[[int], Sequence[str]],
    env: Mapping[str, str],
    log_dir: Path,
    *,
    name: str = "serve",
    timeout: float = 30,
    healthy: Callable[[str, subprocess.Popen[bytes], float], bool] = wait_healthy,
    port: int | None = None,
) -> Started:
    """Run `argv(port)` on a free port (or `port`) with `env` until `healthy` says it answers.

    Args:
        argv: the command line for a given port (e.g. `keysafe serve --port PORT …`).
        env: the process's whole environment.
        log_dir: where its log goes (`{name}-{port}.log`), which a failure quotes.
        name: the log file's prefix.
        timeout: seconds it has to become healthy.
        healthy: the check, given the URL, the process and the deadline (default: GET
            /v1/health answers 200).
        port: this port, not a free one: a server brought back where its clients already
            point (tried once: nothing else should hold it).

    Raises:
        RuntimeError: it exited or did not become healthy in time (its log is in the message);
            a port taken by another process is retried on a new port first.
    """
    attempts = PORT_ATTEMPTS if port is None else 1
    for attempt in range(attempts):
        port_now = free_port() if port is None else port
        url = f"http://127.0.0.1:{port_now}"
        log_path = log_dir / f"{name}-{port_now}.log"
        t0 = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                list(argv(port_now)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
            )
        try:
            ok = healthy(url, proc, time.monotonic() + timeout)
        except BaseException:
            stop_process(proc)
            raise
        if ok:
            return Started(url, port_now, proc, log_path, time.perf_counter() - t0)
        stop_process(proc)
        text = log_path.read_text(errors="replace")
        if "address already in use" not in text.lower() or attempt == attempts - 1:
            raise RuntimeError(f"{name} did not become healthy:\n{text}")
    raise AssertionError("unreachable: the last attempt returns or raises")
