"""Credentials: API keys and tokens the vault attaches to requests for agents (issue: proxy).

The owner adds and removes them; nobody lists their values. Listing shows names, hosts and how
the secret is attached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError
from keysafe.service import placeholders
from keysafe.service.models import Attachment, DataClass, RecordKind, check_host, check_name
from keysafe.service.record_meta import CredentialMeta, credential_meta
from keysafe.vault.vault import RecordInfo, Vault

logger = logging.getLogger(__name__)

MAX_SECRET_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class CredentialView:
    name: str
    hosts: list[str]
    attach: dict[str, Any]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, info: RecordInfo) -> CredentialView:
        meta = credential_meta(info)
        return cls(info.name, meta.hosts, meta.attach, info.created_at, info.updated_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "hosts": self.hosts, "attach": self.attach,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }  # fmt: skip


def add_credential(
    vault: Vault,
    name: str,
    secret: SecretBytes,
    *,
    hosts: list[str],
    attach: Attachment,
    replace: bool = False,
) -> CredentialView:
    check_name(name, "credential")
    if not hosts:
        raise MalformedRequestError(
            "A credential needs at least one host it may be sent to.",
            next_step="add --host HOST (repeatable), e.g. --host api.github.com.",
        )
    clean_hosts = sorted({check_host(h) for h in hosts})
    if len(secret) == 0:
        raise MalformedRequestError(
            "The secret is empty.", next_step="pipe the secret on stdin or type it at the prompt."
        )
    if len(secret) > MAX_SECRET_BYTES:
        raise MalformedRequestError(
            f"The secret is over {MAX_SECRET_BYTES // 1024} KiB.",
            next_step="store large documents with `keysafe data set` instead.",
        )
    meta = CredentialMeta(hosts=clean_hosts, attach=attach.to_dict()).stored()
    with vault.db.write() as conn:
        info = vault.put_record(
            conn, kind=RecordKind.CREDENTIAL, name=name, data_class=DataClass.SENSITIVE,
            meta=meta, plaintext=secret, replace=replace,
        )  # fmt: skip
        vault.audit(
            conn, actor="owner", action="credential.add", target=f"credential:{name}",
            outcome="success",
            details={"name": name, "hosts": clean_hosts, "version": info.version},
        )  # fmt: skip
    logger.info("credential %s stored (version %d)", name, info.version)
    return CredentialView.of(info)


def list_credentials(vault: Vault) -> list[CredentialView]:
    with vault.db.read() as conn:
        return [CredentialView.of(i) for i in vault.list_records(conn, RecordKind.CREDENTIAL)]


def remove_credential(vault: Vault, name: str) -> None:
    with vault.db.read() as conn:
        vault.get_record(conn, RecordKind.CREDENTIAL, name)  # NOT_FOUND before anything changes
    # Placeholders go first: a credential added later under the same name must never revive them.
    placeholders.revoke_all(vault, name)
    vault.remove_record(RecordKind.CREDENTIAL, name)
    logger.info("credential %s removed", name)
