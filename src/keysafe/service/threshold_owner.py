"""User + recovery: the owner signs with the recovery file, in two processes.

The vault commits and co-signs here (`owner_commit`, `owner_exchange`, `owner_cosign`); the
recovery share signs in the owner's CLI (`recovery_start`, `recovery_finish`, `recovery_part`),
exactly as the agent's side does. Each side checks the other: the CLI checks the recovery share
against the public package the vault sent, and the vault names a bad part and audits it.
"""

from __future__ import annotations

from typing import Any

from eth_account.messages import SignableMessage
from solders.signature import Signature

from keysafe.audit.outcome import Outcome
from keysafe.chains.evm import signing as evm_signing
from keysafe.chains.evm.intents import personal_message_bytes
from keysafe.errors import KeysafeError, MalformedRequestError
from keysafe.mpc import share_file
from keysafe.mpc.dkls import cosigner as dkls_cosigner
from keysafe.mpc.dkls import signing as dkls_signing
from keysafe.mpc.frost import cosigner
from keysafe.mpc.frost.groups import SECP256K1
from keysafe.mpc.frost.keys import RECOVERY, USER, KeyPackage, PublicKeyPackage
from keysafe.service import threshold_state as state
from keysafe.service.models import SecretBytes
from keysafe.service.threshold import commit, frost_cosign
from keysafe.service.threshold_dkls import DklsCosigner
from keysafe.service.threshold_records import threshold_wallet
from keysafe.vault.vault import Vault


def owner_commit(vault: Vault, wallet: str) -> dict[str, Any]:
    """The vault's commitment for one signature the owner makes with the recovery file, with
    the wallet's public package so the owner's side can tell a stale recovery file."""
    vault.require_unlocked()
    found = threshold_wallet(vault, wallet)
    return commit(vault, found, state.OWNER) | {"public": found.meta.public}


def owner_message_digest(message: str) -> tuple[SignableMessage, bytes]:
    """What `wallet sign-message` signs on EVM: personal_sign over the text (MetaMask's rule)."""
    return evm_signing.personal_digest(personal_message_bytes(message))


def owner_exchange(
    vault: Vault, wallet: str, message: str, fields: dict[str, Any]
) -> dict[str, str]:
    """Step 2 of the owner's EVM signature with the recovery file: the vault's rounds 1 and 2
    against the recovery side's round 1, over the message hashed here."""
    vault.require_unlocked()
    found = threshold_wallet(vault, wallet)
    digest = owner_message_digest(message)[1]
    try:
        return DklsCosigner(vault, state.OWNER, found, RECOVERY).exchange(digest, fields)
    except KeysafeError as exc:
        _audit_owner_sign(vault, wallet, exc)
        raise


def recovery_start(
    wallet: str,
    answer: dict[str, Any],
    recovery: dict[str, Any],
    share: share_file.Share,
    message: str,
) -> tuple[dkls_signing.SigningState, dict[str, str]]:
    """The owner's side of an EVM signature (its CLI; no vault here): check the recovery share
    against the public package the vault sent, then round 1 over the message hashed here."""
    check_recovery(wallet, PublicKeyPackage.from_dict(answer["public"]), recovery, share.key)
    digest = owner_message_digest(message)[1]
    return dkls_cosigner.start(share.key, share.pairs[USER], answer, digest)


def recovery_finish(state: dkls_signing.SigningState, rounds: dict[str, Any]) -> dict[str, str]:
    """Rounds 2 and 3 against the vault's rounds 1 and 2 (its checks name the vault)."""
    return dkls_cosigner.finish(state, rounds)


def _audit_owner_sign(vault: Vault, wallet: str, exc: KeysafeError | None = None) -> None:
    """Audit the owner's recovery signature: its success, or a refused part (a wrong share, a
    reused session), worth a trace as someone with the owner's session trying a share that is
    not the wallet's."""
    details: dict[str, Any] = {"name": wallet, "signer": "user+recovery"}
    if exc is not None:
        details |= {"code": str(exc.code), **exc.facts}
    with vault.db.write() as conn:
        vault.audit(
            conn,
            actor="owner",
            action="wallet.sign_message",
            target=f"wallet:{wallet}",
            outcome=Outcome.SUCCESS if exc is None else "failure",
            details=details,
        )


def recovery_part(
    wallet: str, answer: dict[str, Any], recovery: dict[str, Any], key: KeyPackage, message: bytes
) -> dict[str, str]:
    """The owner's side (its CLI, no vault here): check the recovery share against the public
    package the vault sent with its commitment (`answer`), then commit and sign over `message`.

    Raises:
        MalformedRequestError: the recovery file is another wallet's or from before a refresh,
            or the vault's commitment is malformed.
    """
    check_recovery(wallet, PublicKeyPackage.from_dict(answer["public"]), recovery, key)
    return cosigner.part(key, answer, message)


def owner_cosign(vault: Vault, wallet: str, message: bytes, fields: dict[str, Any]) -> str:
    """The vault's share beside the recovery share the owner's CLI signed with; returns the
    base58 signature, verified, and audits it."""
    vault.require_unlocked()
    found = threshold_wallet(vault, wallet)
    try:
        if found.public().suite is SECP256K1:
            signable, digest = owner_message_digest(message.decode("utf-8"))
            ecdsa = DklsCosigner(vault, state.OWNER, found, RECOVERY).cosign(digest, fields)
            text = evm_signing.assemble_message_signature(
                signable, ecdsa.r, ecdsa.s, ecdsa.recovery_id, found.address
            )
        else:
            text = str(
                Signature.from_bytes(
                    frost_cosign(vault, state.OWNER, found, message, fields, partner=RECOVERY)
                )
            )
    except KeysafeError as exc:
        _audit_owner_sign(vault, wallet, exc)
        raise
    _audit_owner_sign(vault, wallet)
    return text


def open_recovery(
    wallet: str, current: PublicKeyPackage, recovery: dict[str, Any], passphrase: SecretBytes
) -> KeyPackage:
    """The recovery share of `wallet` from its recovery file, checked against the wallet's
    current public package (`current`: the vault's, or what the vault sent the owner's CLI).

    Raises:
        WrongPassphraseError / IntegrityError: the passphrase is wrong or the file was altered.
        MalformedRequestError: the file is another wallet's, or from before a refresh.
    """
    key = share_file.open_recovery_share(recovery, passphrase).key
    check_recovery(wallet, current, recovery, key)
    return key


def check_recovery(
    wallet: str, current: PublicKeyPackage, recovery: dict[str, Any], key: KeyPackage
) -> None:
    """Raises MalformedRequestError unless `key` (opened from the `recovery` file) is the
    current recovery share of `wallet`, whose public package is `current`."""
    if key.identifier != RECOVERY or key.public.group_public_key != current.group_public_key:
        raise MalformedRequestError(
            f"That recovery file is not for wallet '{wallet}'.",
            next_step="use the wallet's current recovery file.",
        )
    if key.public.verifying_shares != current.verifying_shares:
        raise MalformedRequestError(
            f"That recovery file is from before wallet '{wallet}' was refreshed; its share "
            "no longer signs.",
            next_step="use the recovery file the last `keysafe wallet refresh` rewrote.",
        )
    if recovery.get("wallet") != wallet:
        raise MalformedRequestError(
            f"That recovery file is for wallet '{recovery.get('wallet')}'.",
            next_step=f"use the recovery file written for '{wallet}'.",
        )
