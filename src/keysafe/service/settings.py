"""Owner settings kept in the vault (not secret, but sealed): approval lifetime, response cap.

A setting is honoured as written when it carries the owner's seal (set with the vault
unlocked); unsealed (set while locked, or written into the file), only in the safe direction;
with a seal that does not verify, it is refused (IntegrityError), never silently ignored.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection, select

from keysafe.approvals import TTL_SETTING
from keysafe.errors import IntegrityError
from keysafe.service import sealed_state
from keysafe.store import tables as t
from keysafe.vault.seals import Seal
from keysafe.vault.vault import Vault

MAX_RESPONSE_SETTING: Final = "max_response"
# The credential proxy's response cap: a streamed image or a long model answer fits; a runaway
# download does not tie up the server's memory (a whole answer is held for the JSON/MCP form).
DEFAULT_MAX_RESPONSE: Final = 10 * 1024 * 1024
MIN_MAX_RESPONSE: Final = 1024
MAX_MAX_RESPONSE: Final = 1024 * 1024 * 1024


def set_approval_ttl(vault: Vault, seconds: int) -> None:
    """Store how long approvals wait; sealed when unlocked (unsealed, only a shorter-than-default
    lifetime is honoured: approvals/_parked.py)."""
    with vault.db.write() as conn:
        sealed_state.write_setting(vault, conn, TTL_SETTING, str(int(seconds)))


def set_max_response(vault: Vault, size: int) -> None:
    """Store the credential proxy's response cap in bytes; sealed when unlocked (unsealed, only
    a cap at or below the default is honoured).

    Raises:
        ValueError: outside MIN_MAX_RESPONSE..MAX_MAX_RESPONSE (the CLI checks first).
    """
    if not MIN_MAX_RESPONSE <= size <= MAX_MAX_RESPONSE:
        raise ValueError(f"response cap out of range: {size}")
    with vault.db.write() as conn:
        sealed_state.write_setting(vault, conn, MAX_RESPONSE_SETTING, str(int(size)))


def response_cap(vault: Vault, conn: Connection) -> int:
    """The response cap in bytes: the owner's setting, or DEFAULT_MAX_RESPONSE.

    Raises:
        IntegrityError: the setting was changed outside keysafe.
    """
    row = conn.execute(select(t.settings).where(t.settings.c.key == MAX_RESPONSE_SETTING)).first()
    if row is None:
        return DEFAULT_MAX_RESPONSE
    value = int(row.value) if row.value.isdigit() else -1
    state = sealed_state.setting_seal_state(vault, row)
    if not MIN_MAX_RESPONSE <= value <= MAX_MAX_RESPONSE or state is Seal.BROKEN:
        raise IntegrityError(
            "The vault's response cap setting was changed outside keysafe.",
            next_step="set it again (`keysafe serve --max-response BYTES` with the vault "
            "unlocked), and keep a copy of the home as evidence.",
        )
    return value if state is Seal.SEALED else min(value, DEFAULT_MAX_RESPONSE)
