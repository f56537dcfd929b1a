"""Creating, recovering and describing the vault itself."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from mnemonic import Mnemonic
from sqlalchemy import func, select
from zxcvbn import zxcvbn

from keysafe.crypto.kdf import DEFAULT_ARGON2, Argon2Params
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    AlreadyExistsError,
    MalformedRequestError,
    WrongRecoveryPhraseError,
)
from keysafe.service.context import open_database, open_vault
from keysafe.service.models import DataClass, RecordKind
from keysafe.store import tables as t
from keysafe.vault import hierarchy
from keysafe.vault.home import Home
from keysafe.vault.vault import Clock, Vault, utc_now

logger = logging.getLogger(__name__)

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


def _seed_record(vault: Vault, conn: Any, phrase_words: str) -> None:
    seed = SecretBytes(bytearray(Mnemonic.to_seed(phrase_words, passphrase="")))
    with seed:
        vault.put_record(
            conn, kind=RecordKind.HD_SEED, name="default", data_class=DataClass.CRITICAL,
            meta={"standard": "bip39"}, plaintext=seed, replace=False,
        )  # fmt: skip


def _create(
    home: Home,
    *,
    entropy: SecretBytes,
    passphrase: SecretBytes,
    kdf: Argon2Params,
    clock: Clock,
    action: str,
) -> Vault:
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
    home.create()
    home.clear_unfinished()
    db = open_database(home, create=True)
    master = hierarchy.master_from_entropy(entropy.reveal())
    words = Mnemonic("english").to_mnemonic(bytes(entropy.reveal()))
    try:
        with db.write() as conn:
            phrase_pub = hierarchy.public_bytes(hierarchy.phrase_seal_key(entropy.reveal()))
            vault = Vault.create(
                db, master=master, passphrase=passphrase, kdf=kdf, clock=clock, conn=conn,
                phrase_pub=phrase_pub,
            )  # fmt: skip
            _seed_record(vault, conn, words)
            vault.audit(
                conn, actor="owner", action=action, target=f"vault:{vault.vault_id}",
                outcome="success", details={"vault_id": vault.vault_id, "from_empty_home": True},
            )  # fmt: skip
    except BaseException:
        db.close()
        if home.database_url is None:  # PostgreSQL: the failed transaction left nothing
            for suffix in ("", "-wal", "-shm"):
                home.db_path.with_name(home.db_path.name + suffix).unlink(missing_ok=True)
        raise
    finally:
        master.wipe()
    logger.info("vault %s created (%s)", vault.vault_id, action)
    return vault


def init_vault(
    home: Home,
    passphrase: SecretBytes,
    *,
    kdf: Argon2Params = DEFAULT_ARGON2,
    clock: Clock = utc_now,
) -> tuple[Vault, SecretBytes]:
    """Create a vault; returns it unlocked and the 24-word recovery phrase (shown once)."""
    check_new_passphrase(passphrase)
    entropy = SecretBytes(bytearray(os.urandom(32)))
    with entropy:
        phrase = SecretBytes(Mnemonic("english").to_mnemonic(bytes(entropy.reveal())).encode())
        vault = _create(
            home, entropy=entropy, passphrase=passphrase, kdf=kdf, clock=clock, action="vault.init"
        )
    return vault, phrase


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
                _create(home, entropy=entropy, passphrase=new_passphrase, kdf=kdf, clock=clock,
                        action="vault.recover"),
                True,
            )  # fmt: skip
        vault = open_vault(home, clock=clock)
        vault.unlock_with_phrase(entropy)
    with vault.db.write() as conn:
        vault.rewrap(conn, new_passphrase, kdf)
        vault.audit(
            conn, actor="owner", action="vault.recover", target=f"vault:{vault.vault_id}",
            outcome="success", details={"vault_id": vault.vault_id, "from_empty_home": False},
        )  # fmt: skip
    logger.info("vault %s passphrase reset from recovery phrase", vault.vault_id)
    return vault, False


def change_passphrase(
    vault: Vault, new_passphrase: SecretBytes, *, kdf: Argon2Params = DEFAULT_ARGON2
) -> None:
    check_new_passphrase(new_passphrase)
    with vault.db.write() as conn:
        vault.rewrap(conn, new_passphrase, kdf)
        vault.audit(
            conn,
            actor="owner",
            action="passphrase.change",
            target=f"vault:{vault.vault_id}",
            outcome="success",
        )
    logger.info("vault %s passphrase changed", vault.vault_id)


@dataclass(frozen=True, slots=True)
class Status:
    home: str
    vault_id: str
    created_at: str
    records: dict[str, int]
    agents: int
    audit_entries: int
    audit_head: str
    unlock_failures: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "initialized": True,
            "home": self.home,
            "vault_id": self.vault_id,
            "created_at": self.created_at,
            "credentials": self.records.get(RecordKind.CREDENTIAL, 0),
            "data": self.records.get(RecordKind.DATA, 0),
            "wallets": self.records.get(RecordKind.WALLET, 0),
            "agents": self.agents,
            "audit_entries": self.audit_entries,
            "audit_head": self.audit_head,
            "unlock_failures": self.unlock_failures,
        }


def status(home: Home, vault: Vault) -> Status:
    with vault.db.read() as conn:
        head = conn.execute(select(t.vault)).one()
        agents = conn.execute(select(func.count()).select_from(t.agents)).scalar_one()
        counts: dict[str, int] = dict(
            conn.execute(select(t.records.c.kind, func.count()).group_by(t.records.c.kind)).all()
        )
    return Status(
        home=str(home.path), vault_id=vault.vault_id, created_at=head.created_at,
        records={str(k): int(v) for k, v in counts.items()}, agents=agents,
        audit_entries=head.audit_head_seq,
        audit_head=head.audit_head_hash, unlock_failures=head.unlock_failures,
    )  # fmt: skip
