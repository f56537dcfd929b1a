"""A clock that moves only when a test says so."""

from __future__ import annotations

from datetime import datetime, timedelta


class ManualClock:
    """Call it for the time; set `now` or `advance` it to move time on.

    A plain class (not a closure) so that it pickles: tests hand it to spawned processes.
    """

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock `seconds` on."""
        self.now += timedelta(seconds=seconds)
