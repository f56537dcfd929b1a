"""Owner settings kept in the vault (not secret): approval lifetime."""

from __future__ import annotations

from sqlalchemy import delete, insert

from keysafe.store import tables as t
from keysafe.vault.vault import Vault


def set_approval_ttl(vault: Vault, seconds: int) -> None:
    with vault.db.write() as conn:
        conn.execute(delete(t.settings).where(t.settings.c.key == "approval_ttl"))
        conn.execute(insert(t.settings).values(key="approval_ttl", value=str(int(seconds))))
