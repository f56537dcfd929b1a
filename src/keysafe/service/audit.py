"""Reading and verifying the audit log (no passphrase needed: it holds no secret values)."""

from __future__ import annotations

from keysafe.audit import log as audit_log
from keysafe.audit.record import AuditEntry, ChainReport
from keysafe.vault.vault import Vault


def list_entries(
    vault: Vault, *, since: str | None = None, limit: int | None = None
) -> list[AuditEntry]:
    with vault.db.read() as conn:
        return audit_log.entries(conn, since=since, limit=limit)


def verify(vault: Vault) -> ChainReport:
    """Verify the chain; when the vault is unlocked, the owner's seals are checked too."""
    key = vault.subkey("audit-hmac") if vault.is_unlocked else None
    try:
        with vault.db.read() as conn:
            return audit_log.verify(conn, audit_key=key.reveal() if key is not None else None)
    finally:
        if key is not None:
            key.wipe()
