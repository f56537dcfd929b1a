"""The Vault: one encrypted store, locked or unlocked, with its records and audit log.

A `Vault` is built from an open `Database` and a clock; nothing here is global, so tests run two
vaults in one process and freeze time. While unlocked it holds the master key (and the epoch keys
it opened) in wipeable buffers; `lock()` wipes them.

Writes go through `db.write()` transactions owned by the caller (service/), so a record change and
its audit entry commit together or not at all.

The class keeps one unlock's state; its steps live in vault/header.py, epochs.py, record_rows.py
and unlock.py, and the keys one unlock holds in unlocked_keys.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import Connection, delete, update

from keysafe.audit import log as audit_log
from keysafe.audit.outcome import Outcome
from keysafe.audit.record import AuditEntry
from keysafe.crypto import aead
from keysafe.crypto.kdf import DEFAULT_ARGON2, Argon2Params
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, KmsUnavailableError, UnlockThrottledError
from keysafe.store import tables as t
from keysafe.store.db import Database
from keysafe.vault import header, hierarchy, kms, record_rows, seals, unlock
from keysafe.vault.blobs import BlobConfig, RecordBlobs, open_blobs
from keysafe.vault.epochs import EpochKeys, current_epoch
from keysafe.vault.records import RecordInfo
from keysafe.vault.unlocked_keys import UnlockedKeys

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# One passphrase attempt at a time in this process (Vault.unlock): Argon2 is memory-hard, and
# attempts counted after they finish must not overlap in the process that serves the login.
_ATTEMPTS: Final = threading.Lock()


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Vault:
    def __init__(
        self,
        db: Database,
        vault_id: str,
        *,
        clock: Clock = utc_now,
        blobs: RecordBlobs | None = None,
    ) -> None:
        self.db = db
        self.vault_id = vault_id
        self.clock = clock
        # Where record ciphertext lives; None: read from the vault header at first use, so a
        # Vault built from a database alone still finds its objects.
        self._blobs = blobs
        self._keys = UnlockedKeys(vault_id)  # the master key and its subkeys, while unlocked
        self._epoch_keys = EpochKeys(db, vault_id, master=self._require_master)
        # State that must die with the process and with every lock: the vault's preprocessed
        # threshold-signing nonces (service/threshold.py), the agent rows whose seals verified
        # (service/agents.py), the proxy's HTTP client (closed on lock). Never persisted.
        self.volatile: dict[str, Any] = {}
        # What the running server was told at its start and must keep across a lock: nothing
        # secret (the relay it connects out to). Never persisted.
        self.serving: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(cls, db: Database, *, clock: Clock = utc_now) -> Vault:
        return cls(db, header.read_vault_id(db), clock=clock)

    @classmethod
    def create(
        cls,
        db: Database,
        *,
        master: SecretBytes,
        passphrase: SecretBytes | None,
        provider: kms.KmsProvider | None = None,
        kdf: Argon2Params = DEFAULT_ARGON2,
        clock: Clock = utc_now,
        conn: Connection,
        with_first_epoch: bool = True,
        phrase_pub: bytes,
        blobs: BlobConfig | None = None,
    ) -> Vault:
        """Write a new vault header (inside the caller's transaction) and return it unlocked.

        `phrase_pub` is the public half of the recovery phrase's sealing key
        (`hierarchy.phrase_seal_key`): every epoch key is sealed to it and to the passphrase's.
        `blobs`: keep record ciphertext in that S3 bucket (None: in the database).
        With a `provider` (a KMS) there is no passphrase: a random key-encryption key wrapped by
        the KMS takes the Argon2id key's place, and the header names the provider.
        """
        vault_id = header.insert_header(
            conn,
            master=master,
            passphrase=passphrase,
            provider=provider,
            kdf=kdf,
            created_at=iso(clock()),
            phrase_pub=phrase_pub,
            blobs=blobs,
        )
        vault = cls(db, vault_id, clock=clock, blobs=open_blobs(blobs))
        vault._keys.hold(SecretBytes(master.reveal()))
        header.insert_pause_switch(conn, vault.seal_row)
        if with_first_epoch:
            vault._epoch_keys.new(conn, 1, created_at=iso(clock()))
        return vault

    @property
    def blobs(self) -> RecordBlobs:
        """Where this vault's record ciphertext lives (the header's `blobs` setting)."""
        if self._blobs is None:
            self._blobs = open_blobs(header.blob_config(self.db))
        return self._blobs

    @property
    def is_unlocked(self) -> bool:
        return self._keys.master is not None

    # -- unlocking -------------------------------------------------------------------------

    def unlock(self, passphrase: SecretBytes) -> None:
        """Open the master key with the passphrase, under the throttling rules of unlock.py.

        Attempts in one process run one at a time, each checked against the throttle before
        Argon2 and counted after it: the server's login cannot be raced past the limit, an
        attempt cut short (Ctrl-C, kill -9) counts as nothing because it learned nothing, and
        right passphrases entered at the same time never throttle each other. Separate processes
        are not serialised against each other: a process that can open the database file can
        read the salt and the wrapped key and guess offline, so no counter in that file could
        stop it (SECURITY.md).

        Raises:
            UnlockThrottledError: too many wrong passphrases in a row; Argon2 did not run.
            WrongPassphraseError: the passphrase does not open the master key (counted).
            IntegrityError: the header's key derivation settings are unusable.
        """
        with _ATTEMPTS:
            now = self.clock().timestamp()
            row = header.read_row(self.db)
            config = header.kms_config(row)
            if config.kind is not kms.KmsKind.LOCAL:  # before the throttle: no guess is counted
                raise unlock.not_a_passphrase_vault(config)
            try:
                unlock.check_not_throttled(row.unlock_failures, row.unlock_blocked_until, now)
            except UnlockThrottledError:
                self._audit_unlock_failure("throttled", counted=False, now=now)
                raise
            wrapped = header.wrapped_master(row)
            kek = hierarchy.derive_kek(passphrase, wrapped.salt, wrapped.params)
            try:
                master = hierarchy.unwrap_master_with(kek, wrapped, self.vault_id)
            except aead.DecryptionError:
                kek.wipe()
                self._audit_unlock_failure("wrong passphrase", counted=True, now=now)
                raise unlock.wrong_passphrase() from None
            with kek, self.db.write() as conn:
                conn.execute(update(t.vault).values(unlock_failures=0, unlock_blocked_until=0.0))
                self._keys.hold(master)
                self._epoch_keys.open_with_passphrase(conn, kek)

    def kms_config(self) -> kms.KmsConfig:
        """The key provider the header names (`local` for a passphrase vault)."""
        return header.kms_config(header.read_row(self.db))

    def unlock_with_kms(self, provider: kms.KmsProvider) -> None:
        """Open the master key through the vault's KMS: no passphrase, no throttle (the KMS
        authenticates its caller). Nothing is written when the KMS cannot be reached; a refusal
        or a blob the KMS will not open is audited.

        Raises:
            KmsUnavailableError: the KMS is unreachable or refuses this caller.
            IntegrityError: the KMS will not open this blob (another vault's or key's, or edited),
                or what it opened does not open the master key.
            MalformedRequestError: this is a passphrase vault, or `provider` is not its KMS.
        """
        with _ATTEMPTS:
            row = header.read_row(self.db)
            config = header.kms_config(row)
            unlock.check_provider(config, provider.config)
            now = self.clock().timestamp()
            try:
                self._open_through_kms(provider, config, row)
            except aead.DecryptionError:
                self._audit_unlock_failure(
                    "kms key does not open the header", counted=False, now=now
                )
                raise unlock.kms_key_does_not_open(config) from None
            except KmsUnavailableError as exc:
                if exc.facts.get("reason") == str(kms.KmsReason.REFUSED):
                    self._audit_unlock_failure("kms refused", counted=False, now=now)
                raise
            except IntegrityError:
                self.lock()  # an epoch key that did not open: no half-unlocked vault stays
                self._audit_unlock_failure("kms rejected the header", counted=False, now=now)
                raise

    def _open_through_kms(self, provider: kms.KmsProvider, config: kms.KmsConfig, row: Any) -> None:
        binding = kms.context_for(self.vault_id, config)
        with provider.unwrap(row.kms_blob or b"", context=binding) as kek:
            master = hierarchy.unwrap_master_for_kms(
                kek, row.master_nonce, row.master_wrapped, self.vault_id, binding
            )
            with self.db.write() as conn:
                self._keys.hold(master)
                self._epoch_keys.open_with_passphrase(conn, kek)

    def _audit_unlock_failure(self, reason: str, *, counted: bool, now: float) -> None:
        """Audit a refused attempt; a wrong passphrase is counted in the same transaction (read
        afresh there, so a wrong attempt in another process is not lost)."""
        with self.db.write() as conn:
            failures, delay = unlock.count_failure(conn, counted=counted, now=now)
            self.audit(
                conn,
                actor="owner",
                action="vault.unlock",
                target=f"vault:{self.vault_id}",
                outcome=Outcome.FAILURE,
                details={"reason": reason, "failures": failures, "blocked_seconds": int(delay)},
            )

    def unlock_with_phrase(self, entropy: SecretBytes) -> None:
        """Unlock with the recovery phrase's entropy: the master key, and every epoch key opened
        with the phrase's sealing key (which must open them: the phrase is this vault's).

        Raises:
            WrongRecoveryPhraseError: the phrase is another vault's.
        """
        master = hierarchy.master_from_entropy(entropy.reveal())
        if hierarchy.vault_id_for(master) != self.vault_id:
            master.wipe()
            raise unlock.wrong_phrase()
        self._keys.hold(master)
        with self.db.write() as conn:
            self.adopt_epochs(conn, hierarchy.phrase_seal_key(entropy.reveal()))

    def adopt_epochs(self, conn: Connection, phrase_key: X25519PrivateKey) -> None:
        """Open every epoch key with the recovery phrase's sealing key (or, from before schema
        0009, the master key), and set the phrase's public key if the vault has none yet. The
        passphrase's sealed copies are made again by `rewrap`, which follows.

        Raises:
            WrongRecoveryPhraseError: the phrase is another vault's.
        """
        self._epoch_keys.open_with_phrase(conn, phrase_key)

    def rewrap(self, conn: Connection, passphrase: SecretBytes, kdf: Argon2Params) -> None:
        """Wrap the master key under a new passphrase, with a new sealing key for it that every
        epoch key is sealed to (the old passphrase opens no epoch key made from now on)."""
        header.rewrap(conn, self._epoch_keys, passphrase, kdf, master=self._require_master())

    # -- locking ---------------------------------------------------------------------------

    def lock(self) -> None:
        held = list(self.volatile.values())
        self.volatile.clear()
        self._epoch_keys.wipe()
        self._keys.wipe()
        for value in held:
            # A resource held for this unlock is told it is over (`close`), not left to the
            # garbage collector: the credential proxy's client closes its kept-alive upstream
            # connections once the calls under way end. After the keys are gone, so nothing
            # here can keep them.
            close = getattr(value, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock()
        self.db.close()

    def require_unlocked(self) -> None:
        self._require_master()

    def _require_master(self) -> SecretBytes:
        return self._keys.require_master()

    # -- seals and subkeys -----------------------------------------------------------------

    def seal_row(self, table: str, fields: seals.Fields) -> str | None:
        """The seal for a state row (agents, policies, settings), or None while locked: what an
        unsealed row may still do is the service's rule (service/state.py)."""
        return self._keys.seal_row(table, fields)

    def check_row(self, table: str, fields: seals.Fields, seal: str | None) -> seals.Seal:
        """Whether a state row's seal verifies.

        Raises:
            VaultLockedError: checking needs the owner's key.
        """
        return self._keys.check_row(table, fields, seal)

    def subkey(self, purpose: hierarchy.Subkey) -> SecretBytes:
        return self._keys.subkey(purpose)

    def owner_proof(self, challenge: str) -> str:
        """The owner's answer to a server's login challenge, for a vault with no passphrase (a
        KMS vault): an HMAC under a subkey of the master key, which only someone who could
        unlock the vault (through the KMS, or with the phrase) can compute. Bound to this vault
        and this challenge, so it is good for one login at one server.

        Raises:
            VaultLockedError: computing it needs the master key.
        """
        return self._keys.owner_proof(challenge)

    def check_owner_proof(self, challenge: str, proof: str) -> bool:
        """Constant-time check of `owner_proof` (the vault must be unlocked)."""
        return self._keys.check_owner_proof(challenge, proof)

    # -- epochs (vault/epochs.py) ----------------------------------------------------------

    def current_epoch(self, conn: Connection) -> int:
        """The number of the active epoch (new records are sealed under it).

        Raises:
            IntegrityError: there is none.
        """
        return current_epoch(conn)

    def backup_sealing(self, conn: Connection) -> tuple[int, SecretBytes, str] | None:
        """For a new backup: its epoch, key, and key sealed to the phrase (`EpochKeys`)."""
        return self._epoch_keys.backup_sealing(conn)

    def backup_key(self, epoch: int | None, conn: Connection) -> SecretBytes:
        """The key of a backup made at `epoch` (None: a backup under the master key's subkey).

        Raises:
            IntegrityError: that epoch's key was destroyed by a rotation here.
        """
        if epoch is None:
            return self.subkey("backup")
        return self._epoch_keys.backup_key(epoch, conn)

    def rotate_epoch(self, conn: Connection) -> int:
        """Make a new active epoch key and retire the others (the caller's transaction); new
        records are sealed under it at once, older ones when `reseal_record` moves them.

        Raises:
            VaultLockedError: locked.
        """
        return self._epoch_keys.rotate(conn, created_at=iso(self.clock()))

    def destroy_epoch(self, conn: Connection, number: int) -> int:
        """Delete a retired epoch key no record uses; returns how many blob objects went.

        Raises:
            IntegrityError: it is the active epoch, or a record still uses it.
        """
        return self._epoch_keys.destroy(conn, number, self.blobs)

    # -- records (vault/record_rows.py) ----------------------------------------------------

    def list_records(self, conn: Connection, kind: str) -> list[RecordInfo]:
        return record_rows.list_by_kind(conn, kind)

    def list_records_by_id(self, conn: Connection, ids: list[str]) -> list[RecordInfo]:
        return record_rows.list_by_id(conn, ids)

    def find_record(self, conn: Connection, kind: str, name: str) -> RecordInfo | None:
        return record_rows.find(conn, kind, name)

    def get_record(self, conn: Connection, kind: str, name: str) -> RecordInfo:
        return record_rows.get(conn, kind, name)

    def put_record(
        self,
        conn: Connection,
        *,
        kind: str,
        name: str,
        data_class: str,
        meta: Mapping[str, Any],
        plaintext: SecretBytes,
        replace: bool,
    ) -> RecordInfo:
        """Seal `plaintext` as a new record, or as the next version of the one with that name.

        Raises:
            AlreadyExistsError: one exists and `replace` is False.
        """
        existing = self.find_record(conn, kind, name)
        if existing is not None and not replace:
            raise record_rows.already_exists(kind, name)
        now = iso(self.clock())
        ref = record_rows.next_ref(existing, kind=kind, name=name, data_class=data_class, meta=meta)
        return record_rows.write(
            conn,
            self._epoch_keys,
            self.blobs,
            ref,
            plaintext,
            now=now,
            created_at=existing.created_at if existing else None,
        )

    @contextmanager
    def open_record(self, conn: Connection, info: RecordInfo) -> Iterator[SecretBytes]:
        """Decrypt a record for the duration of the block; the plaintext is wiped afterwards."""
        with record_rows.open_record(conn, self._epoch_keys, self.blobs, info) as plain:
            yield plain

    def reseal_record(self, conn: Connection, info: RecordInfo) -> None:
        """Seal a record again under the current epoch with a fresh data key."""
        record_rows.reseal(conn, self._epoch_keys, self.blobs, info)

    def inline_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A `records` row with its ciphertext in the row itself, for a backup.

        Raises:
            IntegrityError: the object is missing or altered.
            StoreError: the blob store is unreachable.
        """
        return record_rows.inline_row(self.blobs, row)

    def stow_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A `records` row from a backup as this vault keeps it (blob store first)."""
        return record_rows.stow_row(self.blobs, self.vault_id, row)

    def delete_record(self, conn: Connection, info: RecordInfo) -> None:
        self._require_master()  # only the owner, who unlocked, may destroy a record
        conn.execute(delete(t.records).where(t.records.c.id == info.id))

    def remove_record(self, kind: str, name: str) -> None:
        """Delete one record and audit it in the same transaction (the owner, unlocked)."""
        self._require_master()
        with self.db.write() as conn:
            info = self.get_record(conn, kind, name)
            self.delete_record(conn, info)
            self.audit(
                conn,
                actor="owner",
                action=f"{kind}.remove",
                target=f"{kind}:{name}",
                outcome=Outcome.SUCCESS,
                details={"name": name},
            )

    # -- audit -----------------------------------------------------------------------------

    def audit(
        self,
        conn: Connection,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        key = self._keys.audit_key
        return audit_log.append(
            conn,
            time=iso(self.clock()),
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            details=details or {},
            audit_key=key.reveal() if key is not None else None,
            vault_id=self.vault_id,
        )
