"""What `keysafe status` and GET /v1/owner/status show of a vault: never a secret."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from keysafe.service.models import RecordKind
from keysafe.store import tables as t
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault


class KmsView(BaseModel):
    """Where the vault's key is wrapped: kind, URL and key id, never a token."""

    model_config = ConfigDict(frozen=True)

    kind: str
    url: str | None
    key: str | None


class Status(BaseModel):
    """The home, the vault id, counts of records and agents, the audit chain's length and head,
    failed unlocks, the KMS and the blob store."""

    model_config = ConfigDict(frozen=True)

    initialized: Literal[True] = True
    home: str
    vault_id: str
    created_at: str
    credentials: int
    data: int
    wallets: int
    agents: int
    audit_entries: int
    audit_head: str
    unlock_failures: int
    kms: KmsView
    # Where record ciphertext lives when not in the database. Left out, not null, without a
    # blob store: such a vault shows exactly what it showed before blob stores existed.
    blobs: str | None = Field(default=None, exclude_if=lambda v: v is None)


def status(home: Home, vault: Vault) -> Status:
    """What `keysafe status` shows of `vault` in `home` (works while locked: nothing secret is
    read)."""
    with vault.db.read() as conn:
        head = conn.execute(select(t.vault)).one()
        agents = conn.execute(select(func.count()).select_from(t.agents)).scalar_one()
        rows = conn.execute(select(t.records.c.kind, func.count()).group_by(t.records.c.kind))
        counts = {str(kind): int(n) for kind, n in rows.all()}
    kms = vault.kms_config()
    return Status(
        home=str(home.path),
        vault_id=vault.vault_id,
        created_at=head.created_at,
        credentials=counts.get(RecordKind.CREDENTIAL, 0),
        data=counts.get(RecordKind.DATA, 0),
        wallets=counts.get(RecordKind.WALLET, 0),
        agents=agents,
        audit_entries=head.audit_head_seq,
        audit_head=head.audit_head_hash,
        unlock_failures=head.unlock_failures,
        kms=KmsView(kind=str(kms.kind), url=kms.url, key=kms.key),
        blobs=vault.blobs.description if vault.blobs.remote else None,
    )
