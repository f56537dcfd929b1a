"""Reading and verifying the audit log (no passphrase needed: it holds no secret values)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from keysafe.audit import log as audit_log
from keysafe.audit.log import Filter
from keysafe.audit.outcome import Outcome
from keysafe.audit.record import AuditEntry, ChainReport
from keysafe.notify.notice import Event, alert
from keysafe.service import notify
from keysafe.vault.vault import Vault

__all__ = ["Filter", "export_lines", "list_entries", "seal", "unsealed", "verify"]


def list_entries(
    vault: Vault,
    *,
    since: str | None = None,
    limit: int | None = None,
    where: Filter | None = None,
) -> list[AuditEntry]:
    """Entries oldest first: the newest `limit` of those matching `where` (every one without)."""
    with vault.db.read() as conn:
        return audit_log.entries(conn, since=since, limit=limit, where=where)


def export_lines(vault: Vault, *, where: Filter | None = None) -> Iterator[str]:
    """Every matching entry as one JSON line (JSON Lines), oldest first, for a download."""
    for entry in list_entries(vault, where=where):
        yield json.dumps(entry.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"


def verify(vault: Vault) -> ChainReport:
    """Verify the chain; when the vault is unlocked, the owner's seals are checked too."""
    key = vault.subkey("audit-hmac") if vault.is_unlocked else None
    try:
        with vault.db.read() as conn:
            report = audit_log.verify(conn, audit_key=key.reveal() if key is not None else None)
    finally:
        if key is not None:
            key.wipe()
    if not report.ok:
        where = f" at entry {report.first_bad_seq}" if report.first_bad_seq is not None else ""
        notify.emit_safely(
            vault,
            alert(
                Event.AUDIT_VERIFY_FAILURE,
                f"the audit log did not verify{where}; keep a copy of the home as evidence and "
                "run keysafe audit verify",
            ),
        )
    return report


def unsealed(vault: Vault) -> list[AuditEntry]:
    """Entries the owner has not sealed: written while the vault was locked, or forged."""
    with vault.db.read() as conn:
        return audit_log.unsealed(conn)


def seal(vault: Vault, seqs: list[int]) -> int:
    """Seal the entries `seqs` after the owner has been shown them (`unsealed`); audited.

    Raises:
        VaultLockedError: sealing needs the owner's key (unlock first).
    """
    key = vault.subkey("audit-hmac")  # VaultLockedError when locked
    try:
        with vault.db.write() as conn:
            done = audit_log.seal(conn, seqs, audit_key=key.reveal(), vault_id=vault.vault_id)
            vault.audit(
                conn,
                actor="owner",
                action="audit.seal",
                target=f"vault:{vault.vault_id}",
                outcome=Outcome.SUCCESS,
                details={"sealed": done, "seqs": seqs[:200]},
            )
    finally:
        key.wipe()
    return done
