"""The vault home a command works on (KEYSAFE_HOME), and reading its vault without unlocking it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from keysafe.service.context import Home, open_vault
from keysafe.vault.vault import Vault

T = TypeVar("T")


def home() -> Home:
    """The home this run works on: KEYSAFE_HOME, else ~/.keysafe."""
    return Home.from_env()


def read_vault(read: Callable[[Vault], T]) -> T:
    """What `read` finds in this home's vault, opened but not unlocked: for what needs no
    passphrase (lists of names, policies, checks), so no prompt comes up for it.

    Raises:
        KeysafeError: no vault here, or whatever `read` raises.
    """
    with open_vault(home()) as vault:
        return read(vault)
