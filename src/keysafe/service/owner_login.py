"""The owner's login at a running server: what must be proven before an owner session opens.

Two proofs, one per kind of vault:
- the passphrase: it unlocks the vault if it is locked; on an unlocked vault it is checked on a
  vault object of its own, so a wrong one never locks or changes the served vault. Either way a
  refused attempt is throttled and queues the unlock_failure alert (service/notify.py);
- a vault a KMS wraps has no passphrase: the owner's CLI answers a one-time challenge the server
  issued (GET /v1/login-challenge) with a proof only someone who can unlock the vault can
  compute (`vault_admin.kms_owner_login`).

The session itself (token, cookie, CSRF) is the server's business (api/state.py): this module
only says whether the caller is the owner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from keysafe.errors import MalformedRequestError, NotAuthenticatedError
from keysafe.service import notify, vault_admin
from keysafe.service.models import LoginRequest, SecretBytes
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)


def prove_owner(
    vault: Vault,
    login: LoginRequest,
    *,
    take_challenge: Callable[[str], bool],
    kms_token: SecretBytes | None,
    kms_url: str | None,
) -> None:
    """Check the owner's proof in `login`; the vault is unlocked afterwards.

    Args:
        vault: the served vault (unlocked here if it is locked and the proof holds).
        login: the passphrase, or a challenge and its proof.
        take_challenge: uses up a challenge the server issued; False when it is unknown, used
            or expired.
        kms_token: the server's own KMS token (a KMS vault), given at `keysafe serve`.
        kms_url: where that token goes: the operator's, never the request's.

    Raises:
        MalformedRequestError: neither a passphrase nor a challenge with its proof.
        NotAuthenticatedError: the challenge is unknown, used or expired, or the proof is wrong.
        WrongPassphraseError / UnlockThrottledError: the passphrase is refused.
        KmsUnavailableError / IntegrityError: the server cannot unlock through the KMS.
    """
    if login.passphrase is not None:
        _prove_passphrase(vault, login.passphrase)
        return
    # A KMS vault's owner: a one-time challenge answered with the vault's own key.
    if login.challenge is None or login.proof is None:
        raise MalformedRequestError(
            "Log in with the passphrase, or (a KMS vault) a challenge and its proof.",
            next_step="run `keysafe unlock`.",
        )
    if not take_challenge(login.challenge):
        raise NotAuthenticatedError(
            "That login challenge is unknown, used or expired.",
            next_step="run `keysafe unlock` again.",
        )
    vault_admin.kms_owner_login(
        vault, kms_token, kms_url, challenge=login.challenge, proof=login.proof
    )


def _prove_passphrase(vault: Vault, passphrase: str) -> None:
    secret = SecretBytes(bytearray(passphrase.encode()))
    with secret:
        # A refused attempt queues the unlock_failure alert (service/notify.py).
        if vault.is_unlocked:
            probe = type(vault).open(vault.db, clock=vault.clock)
            notify.unlock_watched(probe, secret)  # throttled like any unlock
            probe.lock()
        else:
            notify.unlock_watched(vault, secret)
