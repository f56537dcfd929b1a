"""Credentials: API keys and tokens the vault attaches to requests for agents (issue: proxy).

The owner adds and removes them; nobody lists their values. Listing shows names, hosts and how
the secret is attached.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError
from keysafe.service import placeholders
from keysafe.service.models import Attachment, DataClass, RecordKind, check_host, check_name
from keysafe.service.record_meta import CredentialMeta, credential_meta, record_stamps
from keysafe.service.record_writes import put_audited
from keysafe.vault.records import RecordInfo
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

MAX_SECRET_BYTES = 64 * 1024


class CredentialView(BaseModel):
    """A credential as the owner sees it: where it goes and how, never its value."""

    model_config = ConfigDict(frozen=True)

    name: str
    hosts: list[str]
    attach: dict[str, str]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, info: RecordInfo) -> CredentialView:
        meta = credential_meta(info)
        return cls(hosts=meta.hosts, attach=meta.attach, **record_stamps(info))


def add_credential(
    vault: Vault,
    name: str,
    secret: SecretBytes,
    *,
    hosts: list[str],
    attach: Attachment,
    replace: bool = False,
) -> CredentialView:
    """Store an API key that agents use through keysafe, only towards `hosts`, attached as
    `attach` says; audited. The secret is never shown again.

    Raises:
        MalformedRequestError: a bad name or host, no host, an empty or oversized secret.
        AlreadyExistsError: the name is taken and `replace` is False.
        VaultLockedError: the vault is locked.
    """
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
    meta = CredentialMeta(hosts=clean_hosts, attach=attach.model_dump()).stored()
    with vault.db.write() as conn:
        info = put_audited(
            vault,
            conn,
            kind=RecordKind.CREDENTIAL,
            name=name,
            data_class=DataClass.SENSITIVE,
            meta=meta,
            plaintext=secret,
            replace=replace,
            action="credential.add",
            details=lambda made: {"name": name, "hosts": clean_hosts, "version": made.version},
        )
    logger.info("credential %s stored (version %d)", name, info.version)
    return CredentialView.of(info)


def list_credentials(vault: Vault) -> list[CredentialView]:
    """Every credential with its hosts and how it is attached (never the secret)."""
    with vault.db.read() as conn:
        return [CredentialView.of(i) for i in vault.list_records(conn, RecordKind.CREDENTIAL)]


def remove_credential(vault: Vault, name: str) -> None:
    """Remove a credential and revoke every placeholder of it first; audited.

    Raises:
        NotFoundError: no credential has that name.
    """
    with vault.db.read() as conn:
        vault.get_record(conn, RecordKind.CREDENTIAL, name)  # NOT_FOUND before anything changes
    # Placeholders go first: a credential added later under the same name must never revive them.
    placeholders.revoke_all(vault, name)
    vault.remove_record(RecordKind.CREDENTIAL, name)
    logger.info("credential %s removed", name)
