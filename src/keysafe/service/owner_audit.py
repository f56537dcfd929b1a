"""The audit entry of an owner's change to the vault as a whole (a backup made or restored,
pause-all, sealed state rows): made by "owner", about "vault:<id>", a success.

A change to one thing (an agent, a record, a channel) is audited about that thing instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from keysafe.audit.outcome import Outcome
from keysafe.vault.vault import Vault


def vault_changed(
    vault: Vault, conn: Connection, action: str, details: Mapping[str, object] | None = None
) -> None:
    """Audit the owner's `action` on the whole vault, in the caller's transaction."""
    vault.audit(
        conn,
        actor="owner",
        action=action,
        target=f"vault:{vault.vault_id}",
        outcome=Outcome.SUCCESS,
        details=details,
    )


__all__ = ["vault_changed"]
