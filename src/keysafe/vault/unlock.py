"""Unlock throttling: after 5 wrong passphrases in a row, refuse every attempt for 30 s,
doubling with each further failure. The counter lives in the database, so restarting the
process does not reset it, and a refused attempt does not even run Argon2.
"""

from __future__ import annotations

from typing import Final

from keysafe.errors import UnlockThrottledError

FREE_ATTEMPTS: Final = 5
BASE_DELAY_S: Final = 30.0


def delay_after(failures: int) -> float:
    """Seconds to refuse attempts after `failures` consecutive failures."""
    if failures < FREE_ATTEMPTS:
        return 0.0
    return BASE_DELAY_S * float(2 ** (failures - FREE_ATTEMPTS))


def check_not_throttled(failures: int, blocked_until: float, now: float) -> None:
    if failures >= FREE_ATTEMPTS and now < blocked_until:
        wait = int(blocked_until - now) + 1
        raise UnlockThrottledError(
            f"Too many wrong passphrases ({failures} in a row): unlocking is refused for "
            f"another {wait} s, even with the right passphrase.",
            next_step=f"wait {wait} s, then try again with the right passphrase.",
            wait_seconds=wait,
            failures=failures,
        )
