"""Support for keysafe's tests, benchmarks and demo: one copy of what each used to write again.

- `free_port`: a free loopback TCP port (ports.py).
- `ManualClock`: a clock that moves only when told, for vaults built with `clock=` (clock.py).
- `CHEAP_KDF`: Argon2id parameters that make a throwaway vault in milliseconds (kdf.py); a
  vault anyone may keep uses the default cost.
- `start_server` / `stop_process` / `wait_healthy` / `wait_listening`: a `keysafe serve` (or any
  server command) in a subprocess on a free port, until it answers (process.py); `wait_until`
  and `answers_ok` for a server started some other way.

Nothing in keysafe's own request path imports this package; it ships in the wheel so that the
demo (`keysafe demo`) and the benchmarks run from an installed keysafe as the tests do.
"""

from keysafe.testing.clock import ManualClock
from keysafe.testing.kdf import CHEAP_KDF
from keysafe.testing.ports import free_port
from keysafe.testing.process import (
    Started,
    answers_ok,
    start_server,
    stop_process,
    wait_healthy,
    wait_listening,
    wait_until,
)

__all__ = [
    "CHEAP_KDF",
    "ManualClock",
    "Started",
    "answers_ok",
    "free_port",
    "start_server",
    "stop_process",
    "wait_healthy",
    "wait_listening",
    "wait_until",
]
