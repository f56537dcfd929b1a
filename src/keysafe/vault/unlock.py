"""Unlock throttling and refusals: after 5 wrong passphrases in a row, refuse every attempt for
30 s, doubling with each further failure. The counter lives in the database, so restarting the
process does not reset it, and a refused attempt does not even run Argon2.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection, select, update

from keysafe.errors import (
    IntegrityError,
    MalformedRequestError,
    UnlockThrottledError,
    WrongPassphraseError,
    WrongRecoveryPhraseError,
)
from keysafe.store import tables as t
from keysafe.vault.kms import KmsConfig, KmsKind, not_a_kms_vault

FREE_ATTEMPTS: Final = 5
BASE_DELAY_S: Final = 30.0


def delay_after(failures: int) -> float:
    """Seconds to refuse attempts after `failures` consecutive failures."""
    if failures < FREE_ATTEMPTS:
        return 0.0
    return BASE_DELAY_S * float(2 ** (failures - FREE_ATTEMPTS))


def check_not_throttled(failures: int, blocked_until: float, now: float) -> None:
    if failures >= FREE_ATTEMPTS and now < blocked_until:
        wait = int(blocked_until - now) + 1
        raise UnlockThrottledError(
            f"Too many wrong passphrases ({failures} in a row): unlocking is refused for "
            f"another {wait} s, even with the right passphrase.",
            next_step=f"wait {wait} s, then try again with the right passphrase.",
            wait_seconds=wait,
            failures=failures,
        )


def wrong_passphrase() -> WrongPassphraseError:
    return WrongPassphraseError(
        "That passphrase does not unlock this vault.",
        next_step=(
            "check KEYSAFE_PASSPHRASE / --passphrase-file and retry; if it is lost, "
            "`keysafe recover` sets a new one from the recovery phrase."
        ),
    )


def wrong_phrase() -> WrongRecoveryPhraseError:
    return WrongRecoveryPhraseError(
        "That recovery phrase belongs to a different vault.",
        next_step="check the words and their order, or point KEYSAFE_HOME at the right vault.",
    )


def not_a_passphrase_vault(config: KmsConfig) -> MalformedRequestError:
    return MalformedRequestError(
        f"This vault has no passphrase: its key is wrapped by {config.describe()}.",
        next_step="unlock it through the KMS (KEYSAFE_KMS_TOKEN or --kms-token-file for OpenBao; "
        "AWS credentials for aws-kms), or `keysafe recover` with the recovery phrase.",
    )


def check_provider(config: KmsConfig, given: KmsConfig) -> None:
    """Refuse to unlock a vault the header says is wrapped by `config` through `given`.

    Raises:
        MalformedRequestError: a passphrase vault, or another provider or key.
    """
    if config.kind is KmsKind.LOCAL:
        raise not_a_kms_vault()
    # The URL may differ: the operator's (KEYSAFE_KMS_URL) is the one used; OpenBao may have
    # moved since init, and the header's is not trusted with the token.
    if (given.kind, given.key) != (config.kind, config.key):
        raise MalformedRequestError(
            f"This vault's key is in {config.describe()}, not {given.describe()}.",
            next_step="unlock with the provider the vault was made with "
            "(`keysafe status` shows it).",
        )


def count_failure(conn: Connection, *, counted: bool, now: float) -> tuple[int, float]:
    """The failures in a row and the seconds attempts are now refused for; a counted failure
    is added (read afresh in the caller's transaction, so one in another process is not lost)."""
    row = conn.execute(select(t.vault.c.unlock_failures, t.vault.c.unlock_blocked_until)).one()
    failures, delay = int(row.unlock_failures), 0.0
    if counted:
        failures += 1
        delay = delay_after(failures)
        conn.execute(
            update(t.vault).values(
                unlock_failures=failures,
                unlock_blocked_until=now + delay if delay else 0.0,
            )
        )
    return failures, delay


def kms_key_does_not_open(config: KmsConfig) -> IntegrityError:
    return IntegrityError(
        f"The key {config.describe()} returned does not open this vault's master "
        "key: the header was edited or belongs to another vault.",
        next_step="restore the database from a backup, or rebuild the vault with "
        "`keysafe recover` and the recovery phrase.",
    )
