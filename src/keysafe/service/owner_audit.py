"""The audit entry of a change the owner made: made by "owner", about what changed, a success.

`changed` names the thing ("agent:NAME", "notify:NAME"); `vault_changed` is for a change to the
vault as a whole (a backup made or restored, pause-all, sealed state rows), about "vault:<id>".
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from keysafe.audit.outcome import Outcome
from keysafe.vault.vault import Vault


def changed(
    vault: Vault,
    conn: Connection,
    action: str,
    target: str,
    details: Mapping[str, object] | None = None,
) -> None:
    """Audit the owner's `action` on `target`, in the caller's transaction."""
    vault.audit(
        conn, actor="owner", action=action, target=target, outcome=Outcome.SUCCESS, details=details
    )


def vault_changed(
    vault: Vault, conn: Connection, action: str, details: Mapping[str, object] | None = None
) -> None:
    """Audit the owner's `action` on the whole vault, in the caller's transaction."""
    changed(vault, conn, action, f"vault:{vault.vault_id}", details)


__all__ = ["changed", "vault_changed"]
