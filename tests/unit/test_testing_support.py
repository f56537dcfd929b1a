"""keysafe.testing, the support the tests, benchmarks and demo share: what each piece promises."""

from __future__ import annotations

import pickle
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keysafe.testing import (
    ManualClock,
    free_port,
    start_server,
    stop_process,
    wait_listening,
    wait_until,
)

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_the_manual_clock_moves_only_when_told_and_pickles() -> None:
    clock = ManualClock(START)
    assert clock() == START == clock()
    clock.advance(90)
    assert (clock() - START).total_seconds() == 90
    copy = pickle.loads(pickle.dumps(clock))
    assert copy() == clock()


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def _http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def test_start_server_waits_until_it_listens_and_stop_ends_it(tmp_path: Path) -> None:
    started = start_server(_http_server, {}, tmp_path, name="http", healthy=wait_listening)
    try:
        with socket.create_connection(("127.0.0.1", started.port), timeout=2):
            pass
        assert started.log_path == tmp_path / f"http-{started.port}.log"
    finally:
        stop_process(started.proc)
    assert started.proc.poll() is not None


def test_a_server_that_exits_fails_with_its_log(tmp_path: Path) -> None:
    def argv(port: int) -> list[str]:
        return [sys.executable, "-c", f"print('no luck on {port}'); raise SystemExit(3)"]

    with pytest.raises(RuntimeError, match="no luck on"):
        start_server(argv, {}, tmp_path, name="broken", healthy=wait_listening, timeout=10)


def test_start_server_on_a_given_port_uses_that_port(tmp_path: Path) -> None:
    port = free_port()
    started = start_server(_http_server, {}, tmp_path, healthy=wait_listening, port=port)
    try:
        assert (started.port, started.url) == (port, f"http://127.0.0.1:{port}")
    finally:
        stop_process(started.proc)


def test_wait_until_stops_early_when_the_server_is_gone() -> None:
    asked: list[bool] = []

    def ready() -> bool:
        asked.append(True)
        return False

    assert not wait_until(ready, time.monotonic() + 60, running=lambda: False)
    assert asked == []  # an exited server is not asked at all
    assert wait_until(lambda: True, time.monotonic() + 60)
