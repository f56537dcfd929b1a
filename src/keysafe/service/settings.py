"""Owner settings kept in the vault (not secret, but sealed): approval lifetime."""

from __future__ import annotations

from keysafe.approvals import TTL_SETTING
from keysafe.service import sealed_state
from keysafe.vault.vault import Vault


def set_approval_ttl(vault: Vault, seconds: int) -> None:
    """Store how long approvals wait; sealed when unlocked (unsealed, only a shorter-than-default
    lifetime is honoured: approvals/__init__.py)."""
    with vault.db.write() as conn:
        sealed_state.write_setting(vault, conn, TTL_SETTING, str(int(seconds)))
