"""Unlocking this home's vault in this process: through its KMS when one wraps its key, else
with the owner's passphrase."""

from __future__ import annotations

from pathlib import Path

from keysafe.cli import inputs
from keysafe.cli.home import home
from keysafe.service import notify, vault_admin
from keysafe.service.context import open_vault
from keysafe.service.vault_admin import KmsKind
from keysafe.vault.vault import Vault


def unlocked(passphrase_file: Path | None, kms_token_file: Path | None = None) -> Vault:
    """Open the vault in KEYSAFE_HOME and unlock it: through its KMS when one wraps its key,
    else with the owner's passphrase."""
    vault = open_vault(home())
    try:
        unlock(vault, passphrase_file, kms_token_file)
    except BaseException:
        vault.db.close()
        raise
    return vault


def unlock(vault: Vault, passphrase_file: Path | None, kms_token_file: Path | None = None) -> None:
    """Unlock `vault` the way its header says: the KMS (no passphrase asked) or the passphrase."""
    if vault_admin.key_provider(vault).kind is not KmsKind.LOCAL:
        unlock_with_kms(vault, kms_token_file)
        return
    with inputs.passphrase(passphrase_file) as secret:
        notify.unlock_watched(vault, secret)  # a refused attempt alerts the owner's channels


def unlock_with_kms(vault: Vault, kms_token_file: Path | None) -> None:
    """Unlock a vault a KMS wraps, with the KMS token read for this call and wiped after it."""
    token = inputs.kms_token(kms_token_file)
    try:
        vault_admin.unlock_with_kms(vault, token, inputs.kms_url())
    finally:
        if token is not None:
            token.wipe()
