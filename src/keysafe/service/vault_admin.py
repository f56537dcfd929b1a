"""Creating, unlocking and recovering the vault itself (what `keysafe status` shows of it is in
`vault_status`)."""

from __future__ import annotations

import logging
import os
from typing import Any

from mnemonic import Mnemonic
from sqlalchemy import Connection
from zxcvbn import zxcvbn

from keysafe.audit.outcome import Outcome
from keysafe.crypto.kdf import DEFAULT_ARGON2, Argon2Params
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    AlreadyExistsError,
    MalformedRequestError,
    NotAuthenticatedError,
    WrongRecoveryPhraseError,
)
from keysafe.service import notify
from keysafe.service.context import open_database, open_vault
from keysafe.service.models import DataClass, RecordKind
from keysafe.vault import hierarchy
from keysafe.vault.blobs import BlobConfig, S3Blobs
from keysafe.vault.home import Home
from keysafe.vault.kms import KmsConfig, KmsKind, provider_for
from keysafe.vault.vault import Clock, Vault, utc_now

logger = logging.getLogger(__name__)
__all__ = [
    "KmsConfig",
    "KmsKind",
    "change_passphrase",
    "init_vault",
    "key_provider",
    "kms_health",
    "kms_owner_login",
    "owner_proof",
    "recover_vault",
    "require_passphrase_vault",
    "unlock_with_kms",
]

MIN_PASSPHRASE = 12
MIN_SCORE = 3  # zxcvbn: "safely unguessable" against a slow-hash offline attack
_WORDS_TO_BITS = {12: 128, 15: 160, 18: 192, 21: 224, 24: 256}


def check_new_passphrase(passphrase: SecretBytes, *, what: str = "passphrase") -> None:
    """A passphrase someone is choosing now (vault, new vault passphrase, recovery file): at least
    MIN_PASSPHRASE characters and a zxcvbn score of MIN_SCORE or more. A stolen copy of the
    vault or a recovery file is attacked offline, at the Argon2id cost per guess, so the
    passphrase is all that stands between it and the keys.

    Raises:
        MalformedRequestError: too short or too easy to guess (the message says why, never
            repeating the passphrase).
    """
    text = bytes(passphrase.reveal()).decode("utf-8", "replace")
    try:
        if len(text) < MIN_PASSPHRASE:
            raise MalformedRequestError(
                f"The new {what} is too short: it needs at least {MIN_PASSPHRASE} characters.",
                next_step="choose a longer one; four or more random words work well.",
            )
        # zxcvbn's cost grows with length; past 100 characters a passphrase is long enough.
        result = zxcvbn(text[:100])
    finally:
        text = ""
    score = int(result["score"])
    if score < MIN_SCORE:
        feedback = result.get("feedback") or {}
        why = str(feedback.get("warning") or "it follows a common pattern").rstrip(".")
        tips = " ".join(str(t) for t in feedback.get("suggestions") or [])
        raise MalformedRequestError(
            f"The new {what} is too easy to guess ({why}; strength {score} of 4, keysafe needs "
            f"{MIN_SCORE}). Anyone with a copy of the vault files could try guesses offline.",
            next_step=(
                "use four or more random words, or a password manager's generator. " + tips
            ).strip(),
        )


def parse_phrase(phrase: SecretBytes) -> SecretBytes:
    """Validate a BIP-39 English phrase (12-24 words) and return its entropy."""
    m = Mnemonic("english")
    words = bytes(phrase.reveal()).decode("utf-8", "replace").lower().split()
    if len(words) not in _WORDS_TO_BITS:
        raise WrongRecoveryPhraseError(
            f"A recovery phrase has 12, 15, 18, 21 or 24 words; this one has {len(words)}.",
            next_step="type the words from your recovery sheet, separated by spaces.",
        )
    known = set(m.wordlist)
    for i, w in enumerate(words, 1):
        if w not in known:
            raise WrongRecoveryPhraseError(
                f"Word {i} of the recovery phrase is not a BIP-39 English word.",
                next_step="check the spelling of that word on your recovery sheet.",
                word_position=i,
            )
    normalized = " ".join(words)
    if not m.check(normalized):
        raise WrongRecoveryPhraseError(
            "The recovery phrase's checksum does not match: a word is wrong or out of order.",
            next_step="compare each word and its position with your recovery sheet.",
        )
    return SecretBytes(bytearray(m.to_entropy(normalized)))


def _seed_record(vault: Vault, conn: Connection, phrase_words: str) -> None:
    seed = SecretBytes(bytearray(Mnemonic.to_seed(phrase_words, passphrase="")))
    with seed:
        vault.put_record(
            conn,
            kind=RecordKind.HD_SEED,
            name="default",
            data_class=DataClass.CRITICAL,
            meta={"standard": "bip39"},
            plaintext=seed,
            replace=False,
        )


def _audit_vault(
    vault: Vault,
    conn: Connection,
    action: str,
    details: dict[str, Any] | None = None,
    *,
    outcome: Outcome = Outcome.SUCCESS,
) -> None:
    """Audit `action` by the owner on the vault itself (its creation, recovery, passphrase)."""
    vault.audit(
        conn,
        actor="owner",
        action=action,
        target=f"vault:{vault.vault_id}",
        outcome=outcome,
        details=details,
    )


def _create(
    home: Home,
    *,
    entropy: SecretBytes,
    passphrase: SecretBytes | None,
    kdf: Argon2Params,
    kms: KmsConfig | None = None,
    kms_token: SecretBytes | None = None,
    clock: Clock,
    action: str,
    blobs: BlobConfig | None = None,
) -> Vault:
    _refuse_existing(home)
    # Built (and, for AWS, boto3 loaded) before anything is written: a bad provider leaves no
    # half-made home behind.
    provider = (
        None
        if kms is None or kms.kind is KmsKind.LOCAL
        else provider_for(kms, token=kms_token, url=kms.url)
    )
    home.create()
    home.clear_unfinished()
    db = open_database(home, create=True)
    master = hierarchy.master_from_entropy(entropy.reveal())
    words = Mnemonic("english").to_mnemonic(bytes(entropy.reveal()))
    try:
        with db.write() as conn:
            phrase_pub = hierarchy.public_bytes(hierarchy.phrase_seal_key(entropy.reveal()))
            vault = Vault.create(
                db,
                master=master,
                passphrase=passphrase,
                provider=provider,
                kdf=kdf,
                clock=clock,
                conn=conn,
                phrase_pub=phrase_pub,
                blobs=blobs,
            )
            _seed_record(vault, conn, words)
            _audit_vault(vault, conn, action, {"vault_id": vault.vault_id, "from_empty_home": True})
    except BaseException:
        db.close()
        if provider is not None:
            provider.close()
        if home.database_url is None:  # PostgreSQL: the failed transaction left nothing
            for suffix in ("", "-wal", "-shm"):
                home.db_path.with_name(home.db_path.name + suffix).unlink(missing_ok=True)
        raise
    finally:
        master.wipe()
    logger.info("vault %s created (%s)", vault.vault_id, action)
    return vault


def _refuse_existing(home: Home) -> None:
    """A new vault never replaces one: its records would be lost with their keys."""
    if home.exists():
        raise AlreadyExistsError(
            f"A vault already exists in {home.where}.",
            next_step=(
                "use it, set KEYSAFE_HOME to another directory, or `keysafe recover` to reset "
                "its passphrase."
                if home.database_url is None
                else "use it, point KEYSAFE_DATABASE_URL at another database, or `keysafe "
                "recover` to reset its passphrase."
            ),
        )


def blob_setting(url: str | None, endpoint: str | None) -> BlobConfig | None:
    """The blob store a new vault is to use (None: its database), checked to answer before
    anything is written.

    Raises:
        MalformedRequestError: a malformed URL, or an endpoint without a URL.
        StoreError: the bucket cannot be reached or used.
    """
    if url is None:
        if endpoint is not None:
            raise MalformedRequestError(
                "--blobs-endpoint is the address of the S3 server --blobs names; it needs --blobs.",
                next_step="add --blobs s3://BUCKET/PREFIX, or leave --blobs-endpoint out.",
            )
        return None
    config = BlobConfig.parse(url, endpoint=endpoint)
    S3Blobs(config).check()  # an unusable bucket stops here, before the vault exists
    return config


def init_vault(
    home: Home,
    passphrase: SecretBytes | None,
    *,
    kms: KmsConfig | None = None,
    kms_token: SecretBytes | None = None,
    kdf: Argon2Params = DEFAULT_ARGON2,
    clock: Clock = utc_now,
    blobs_url: str | None = None,
    blobs_endpoint: str | None = None,
) -> tuple[Vault, SecretBytes]:
    """Create a vault; returns it unlocked and the 24-word recovery phrase (shown once).

    With `kms` (not `local`) the vault has no passphrase: the KMS wraps its key, and
    `kms_token` (OpenBao's; never stored) reaches it. `blobs_url` (`s3://bucket/prefix`, with
    `blobs_endpoint` for an S3-compatible server) keeps record ciphertext in that bucket; the
    bucket is checked before anything is written.

    Raises:
        MalformedRequestError: a weak passphrase, or a malformed `blobs_url`.
        KmsUnavailableError: the KMS is unreachable or refuses; nothing was created.
        StoreError: the bucket cannot be reached or used.
    """
    if kms is None or kms.kind is KmsKind.LOCAL:
        if passphrase is None:
            raise MalformedRequestError(
                "A vault needs a passphrase or a KMS.", next_step="give one (`keysafe init`)."
            )
        check_new_passphrase(passphrase)
    blobs = blob_setting(blobs_url, blobs_endpoint)
    entropy = SecretBytes(bytearray(os.urandom(32)))
    with entropy:
        phrase = SecretBytes(Mnemonic("english").to_mnemonic(bytes(entropy.reveal())).encode())
        vault = _create(
            home,
            entropy=entropy,
            passphrase=passphrase,
            kdf=kdf,
            clock=clock,
            action="vault.init",
            kms=kms,
            kms_token=kms_token,
            blobs=blobs,
        )
    if blobs is not None:
        logger.info("vault %s keeps record ciphertext in %s", vault.vault_id, blobs.url)
    return vault, phrase


def key_provider(vault: Vault) -> KmsConfig:
    """Which provider wraps the vault's key (kind, URL, key id; no token)."""
    return vault.kms_config()


def unlock_with_kms(vault: Vault, token: SecretBytes | None, url: str | None) -> None:
    """Unlock a KMS vault through its KMS (the provider the header names).

    Raises:
        KmsUnavailableError: the KMS is unreachable or refuses (nothing was changed).
        IntegrityError: the KMS will not open this vault's blob.
        MalformedRequestError: a passphrase vault, or OpenBao without a token.
    """
    provider = provider_for(vault.kms_config(), token=token, url=url)
    try:
        vault.unlock_with_kms(provider)
    finally:
        provider.close()


def owner_proof(vault: Vault, challenge: str) -> str:
    """The owner's answer to a server's login challenge (a KMS vault, unlocked here)."""
    return vault.owner_proof(challenge)


def kms_owner_login(
    vault: Vault, token: SecretBytes | None, url: str | None, *, challenge: str, proof: str
) -> None:
    """A KMS vault's owner login at the server: unlock through the server's own KMS access if
    locked, then check the owner's proof (`owner_proof`, computed by a CLI that unlocked the
    vault through the KMS itself). A wrong proof is audited and alerted, and leaves the served
    vault as it was: reaching the server is not being the owner.

    Raises:
        KmsUnavailableError / IntegrityError: the server cannot unlock through the KMS.
        NotAuthenticatedError: the proof is wrong.
    """
    # The proof is checked on a vault object of its own: the served vault is never unlocked
    # for a caller who has not proven anything (a loop of bad logins would otherwise keep a
    # vault the owner locked unlocked part of the time, and agents' requests would run then).
    probe = type(vault).open(vault.db, clock=vault.clock)
    try:
        unlock_with_kms(probe, token, url)
        proven = probe.check_owner_proof(challenge, proof)
    finally:
        probe.lock()
    if proven:
        if not vault.is_unlocked:
            unlock_with_kms(vault, token, url)
        return
    with vault.db.write() as conn:
        _audit_vault(
            vault, conn, "vault.unlock", {"reason": "wrong owner proof"}, outcome=Outcome.FAILURE
        )
    notify.note_unlock_failure(vault, throttled=False)
    raise NotAuthenticatedError(
        "That owner proof does not match this vault.",
        next_step="run `keysafe unlock` on the machine that holds the vault's home, with the "
        "KMS token (KEYSAFE_KMS_TOKEN or --kms-token-file).",
    )


def kms_health(vault: Vault, token: SecretBytes | None, url: str | None) -> str | None:
    """One line on the vault's KMS (None for a passphrase vault): does it answer, is the key
    usable. Never raises for the KMS's sake: this is for status and doctor."""
    config = vault.kms_config()
    if config.kind is KmsKind.LOCAL:
        return None
    try:
        provider = provider_for(config, token=token, url=url)
    except MalformedRequestError as exc:
        return f"not checked: {exc.what}"
    try:
        health = provider.health()
    finally:
        provider.close()
    return ("answers: " if health.ok else "NOT usable: ") + health.detail


def recover_vault(
    home: Home,
    phrase: SecretBytes,
    new_passphrase: SecretBytes,
    *,
    kdf: Argon2Params = DEFAULT_ARGON2,
    clock: Clock = utc_now,
) -> tuple[Vault, bool]:
    """Set a new passphrase from the recovery phrase; on an empty home, rebuild the vault.

    Returns the unlocked vault and whether it was rebuilt from nothing.
    """
    check_new_passphrase(new_passphrase)
    entropy = parse_phrase(phrase)
    with entropy:
        if not home.exists():
            return (
                _create(
                    home,
                    entropy=entropy,
                    passphrase=new_passphrase,
                    kdf=kdf,
                    clock=clock,
                    action="vault.recover",
                ),
                True,
            )
        vault = open_vault(home, clock=clock)
        vault.unlock_with_phrase(entropy)
    # The phrase needs no KMS: a vault a KMS wrapped comes back as a passphrase vault (`rewrap`
    # drops the provider), so a KMS that is down or gone never locks the owner out.
    was = vault.kms_config()
    with vault.db.write() as conn:
        vault.rewrap(conn, new_passphrase, kdf)
        _audit_vault(
            vault,
            conn,
            "vault.recover",
            {"vault_id": vault.vault_id, "from_empty_home": False, "previous_kms": str(was.kind)},
        )
    logger.info("vault %s passphrase reset from recovery phrase", vault.vault_id)
    return vault, False


def require_passphrase_vault(vault: Vault) -> None:
    """A KMS vault has no passphrase to change: refused rather than re-wrapped, because giving it
    one would add a second, offline-guessable way in beside the KMS. Turning it back into a
    passphrase vault is what `keysafe recover` does, on purpose and with the phrase.

    Raises:
        MalformedRequestError: the vault's key is wrapped by a KMS.
    """
    config = vault.kms_config()
    if config.kind is not KmsKind.LOCAL:
        raise MalformedRequestError(
            f"This vault has no passphrase: its key is wrapped by {config.describe()}.",
            next_step="manage access in the KMS (its token and policies); to move the vault "
            "back to a passphrase, run `keysafe recover` with the recovery phrase.",
        )


def change_passphrase(
    vault: Vault, new_passphrase: SecretBytes, *, kdf: Argon2Params = DEFAULT_ARGON2
) -> None:
    """Raises MalformedRequestError for a KMS vault (see `require_passphrase_vault`)."""
    require_passphrase_vault(vault)
    check_new_passphrase(new_passphrase)
    with vault.db.write() as conn:
        vault.rewrap(conn, new_passphrase, kdf)
        _audit_vault(vault, conn, "passphrase.change")
    logger.info("vault %s passphrase changed", vault.vault_id)
