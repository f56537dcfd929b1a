"""The vault home a command works on (KEYSAFE_HOME)."""

from __future__ import annotations

from keysafe.service.context import Home


def home() -> Home:
    """The home this run works on: KEYSAFE_HOME, else ~/.keysafe."""
    return Home.from_env()
