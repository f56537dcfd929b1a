"""The writes of wallet, credential and data records, each audited in its transaction.

A record and the audit entry that says who wrote it commit together or not at all: an entry
for a record that was never kept, or a record no entry accounts for, cannot happen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from keysafe.audit.outcome import Outcome
from keysafe.service.models import DataClass, RecordKind, SecretBytes
from keysafe.vault.records import RecordInfo
from keysafe.vault.vault import Vault


def put_audited(
    vault: Vault,
    conn: Connection,
    *,
    kind: RecordKind,
    name: str,
    data_class: DataClass,
    meta: dict[str, Any],
    plaintext: SecretBytes,
    replace: bool,
    action: str,
    details: Callable[[RecordInfo], dict[str, Any]],
    actor: str = "owner",
) -> RecordInfo:
    """Seal `plaintext` as record `kind`/`name` inside `conn`'s write transaction and audit
    `action` by `actor` (the owner, or an agent joining a keygen), with the `details` of the
    stored record (its version, say).

    Raises:
        AlreadyExistsError: the record exists and `replace` is false.
    """
    info = vault.put_record(
        conn,
        kind=kind,
        name=name,
        data_class=data_class,
        meta=meta,
        plaintext=plaintext,
        replace=replace,
    )
    vault.audit(
        conn,
        actor=actor,
        action=action,
        target=f"{kind}:{name}",
        outcome=Outcome.SUCCESS,
        details=details(info),
    )
    return info
