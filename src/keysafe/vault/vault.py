"""The Vault: one encrypted store, locked or unlocked, with its records and audit log.

A `Vault` is built from an open `Database` and a clock; nothing here is global, so tests run two
vaults in one process and freeze time. While unlocked it holds the master key (and the epoch keys
it opened) in wipeable buffers; `lock()` wipes them.

Writes go through `db.write()` transactions owned by the caller (service/), so a record change and
its audit entry commit together or not at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import Connection, delete, insert, select, update

from keysafe.audit import log as audit_log
from keysafe.audit.record import GENESIS_HASH, AuditEntry
from keysafe.crypto import aead, jcs
from keysafe.crypto.kdf import DEFAULT_ARGON2, Argon2Params
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    AlreadyExistsError,
    IntegrityError,
    KmsUnavailableError,
    MalformedRequestError,
    NotFoundError,
    UnlockThrottledError,
    VaultLockedError,
    WrongPassphraseError,
)
from keysafe.store import hot
from keysafe.store import tables as t
from keysafe.store.db import Database
from keysafe.vault import hierarchy, kms, records, seals, unlock
from keysafe.vault.blobs import BlobConfig, RecordBlobs, Stored, open_blobs

logger = logging.getLogger(__name__)

FORMAT: Final = 1
Clock = Callable[[], datetime]
# One passphrase attempt at a time in this process (Vault.unlock): Argon2 is memory-hard, and
# attempts counted after they finish must not overlap in the process that serves the login.
_ATTEMPTS: Final = threading.Lock()


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class RecordInfo:
    """A record's public face: everything but the secret."""

    id: str
    kind: str
    name: str
    data_class: str
    epoch: int
    version: int
    meta: dict[str, Any]
    created_at: str
    updated_at: str

    @property
    def ref(self) -> records.RecordRef:
        return records.RecordRef(
            self.id, self.kind, self.name, self.data_class, self.version, self.meta
        )


# What `_info` reads (not the ciphertext): on the driver (store/hot.py), as every request asks.
_RECORD_INFO: Final = (
    "SELECT id, kind, name, data_class, epoch, version, meta, created_at, updated_at "
    "FROM records WHERE kind = :kind AND name = :name"
)


_RECORD: Final = (
    "SELECT id, kind, name, data_class, epoch, version, meta, created_at, updated_at, "
    "dek_nonce, dek_wrapped, nonce, ciphertext, blob_key, blob_version, blob_sha256 "
    "FROM records WHERE id = :id"
)


def _info(row: Any) -> RecordInfo:
    try:
        meta = json.loads(row.meta)
        if not isinstance(meta, dict):
            raise ValueError("meta is not an object")
    except ValueError:
        raise records.integrity_failure(
            records.RecordRef(row.id, row.kind, row.name, row.data_class, row.version, {})
        ) from None
    return RecordInfo(
        row.id, row.kind, row.name, row.data_class, row.epoch, row.version,
        meta, row.created_at, row.updated_at,
    )  # fmt: skip


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
        self._master: SecretBytes | None = None
        self._state_key: SecretBytes | None = None  # derived once per unlock: read on every request
        self._audit_key: SecretBytes | None = None  # likewise: every request writes audit entries
        # Rows whose seal verified under this unlock, exactly as they were (every request checks
        # its agent's row, policy row and the pause-all switch; they rarely change).
        self._sealed: set[tuple[str, tuple[tuple[str, str | int | None], ...], str]] = set()
        self._epoch_keys: dict[int, SecretBytes] = {}
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
        with db.read() as conn:
            row = conn.execute(select(t.vault.c.id, t.vault.c.format)).first()
        if row is None:
            raise IntegrityError(
                "The vault database has no vault header (it was never finished or was emptied).",
                next_step="rebuild it with `keysafe recover`, then `keysafe backup restore FILE`.",
            )
        if type(row.format) is int and row.format > FORMAT:
            raise IntegrityError(
                f"This vault was written by a newer keysafe (vault format {row.format}; this "
                f"keysafe reads format {FORMAT}), so it was left untouched.",
                next_step="upgrade keysafe (`pip install -U keysafe`) and run it again.",
            )
        if row.format != FORMAT:
            raise IntegrityError(
                f"The vault header names an unknown vault format ({str(row.format)[:20]!r}).",
                next_step="restore the database from a backup, or rebuild with `keysafe recover`.",
            )
        return cls(db, row.id, clock=clock)

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
        if conn.execute(select(t.vault.c.id)).first() is not None:
            # Two inits on one shared database: the second waited for the first's lock
            # (Database.write) and must not add a second header beside it.
            raise AlreadyExistsError(
                "A vault already exists in this database.",
                next_step="use it, or point KEYSAFE_DATABASE_URL at another database.",
            )
        vault_id = hierarchy.vault_id_for(master)
        seal_key = hierarchy.new_seal_key()
        if provider is not None:
            binding = kms.context_for(vault_id, provider.config)
            with hierarchy.new_kek() as kek:
                blob = provider.wrap(kek, context=binding)
                master_nonce, master_wrapped = hierarchy.wrap_master_for_kms(
                    kek, master, vault_id, binding
                )
                seal_nonce, seal_wrapped = hierarchy.wrap_seal_key(kek, vault_id, seal_key)
            key_values: dict[str, Any] = {
                "kdf_params": "{}", "kdf_salt": b"", "master_nonce": master_nonce,
                "master_wrapped": master_wrapped, "kms_kind": str(provider.config.kind),
                "kms_url": provider.config.url, "kms_key": provider.config.key, "kms_blob": blob,
            }  # fmt: skip
        elif passphrase is not None:
            salt = os.urandom(hierarchy.SALT_SIZE)
            with hierarchy.derive_kek(passphrase, salt, kdf) as kek:
                wrapped = hierarchy.wrap_master_with(kek, salt, master, vault_id, kdf)
                seal_nonce, seal_wrapped = hierarchy.wrap_seal_key(kek, vault_id, seal_key)
            key_values = {
                "kdf_params": jcs.dumps(kdf.to_dict()).decode(), "kdf_salt": wrapped.salt,
                "master_nonce": wrapped.nonce, "master_wrapped": wrapped.ciphertext,
            }  # fmt: skip
        else:
            raise ValueError("Vault.create needs a passphrase or a provider")
        now = iso(clock())
        conn.execute(
            insert(t.vault).values(
                id=vault_id,
                format=FORMAT,
                created_at=now,
                **key_values,
                unlock_failures=0,
                unlock_blocked_until=0.0,
                audit_head_seq=0,
                audit_head_hash=GENESIS_HASH,
                seal_pass_pub=hierarchy.public_bytes(seal_key),
                seal_pass_nonce=seal_nonce,
                seal_pass_wrapped=seal_wrapped,
                seal_phrase_pub=phrase_pub,
                blobs=None if blobs is None else blobs.to_json(),
            )
        )
        vault = cls(db, vault_id, clock=clock, blobs=open_blobs(blobs))
        vault._set_master(SecretBytes(master.reveal()))
        # The pause-all switch exists from the start, sealed: deleting its row is then
        # detectable, never a way to switch it off (service/sealed_state.py).
        off = seals.setting_fields(seals.PAUSED_ALL, "0")
        conn.execute(delete(t.settings).where(t.settings.c.key == seals.PAUSED_ALL))
        conn.execute(
            insert(t.settings).values(
                key=seals.PAUSED_ALL, value="0", mac=vault.seal_row("settings", off)
            )
        )
        if with_first_epoch:
            vault._new_epoch(conn, 1)
        return vault

    def _new_epoch(self, conn: Connection, number: int, prev: int | None = None) -> None:
        master = self._require_master()
        key = SecretBytes.adopt(aead.new_key())
        head = conn.execute(select(t.vault.c.seal_pass_pub, t.vault.c.seal_phrase_pub)).one()
        values: dict[str, Any] = {"nonce": b"", "wrapped_key": b""}
        if head.seal_pass_pub:
            values["sealed_pass"] = hierarchy.seal_epoch_key(
                head.seal_pass_pub, self.vault_id, number, key
            )
        if head.seal_phrase_pub:
            values["sealed_phrase"] = hierarchy.seal_epoch_key(
                head.seal_phrase_pub, self.vault_id, number, key
            )
        else:
            # A vault from before schema 0009 whose phrase has not been used since: the master
            # key keeps a copy, so the phrase still opens it (no forward secrecy until then).
            values["nonce"], values["wrapped_key"] = hierarchy.wrap_epoch_key(
                master, self.vault_id, number, key
            )
        if prev is not None:
            # Other servers on the database hold `prev`'s key and follow the rotation from it.
            values["sealed_prev"] = hierarchy.link_epoch_key(
                prev, self._epoch_key(prev, conn), self.vault_id, number, key
            )
        conn.execute(
            insert(t.epochs).values(
                number=number, state="active", created_at=iso(self.clock()), **values
            )
        )  # fmt: skip
        self._epoch_keys[number] = key

    @property
    def blobs(self) -> RecordBlobs:
        """Where this vault's record ciphertext lives (the header's `blobs` setting)."""
        if self._blobs is None:
            with self.db.read() as conn:
                setting = conn.execute(select(t.vault.c.blobs)).scalar()
            self._blobs = open_blobs(None if setting is None else BlobConfig.from_json(setting))
        return self._blobs

    @property
    def is_unlocked(self) -> bool:
        return self._master is not None

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
            with self.db.read() as conn:
                row = conn.execute(select(t.vault)).one()
            config = _config(row)
            if config.kind is not kms.KmsKind.LOCAL:  # before the throttle: no guess is counted
                raise _not_a_passphrase_vault(config)
            try:
                unlock.check_not_throttled(row.unlock_failures, row.unlock_blocked_until, now)
            except UnlockThrottledError:
                self._audit_unlock_failure("throttled", counted=False, now=now)
                raise
            try:
                params = Argon2Params.from_dict(json.loads(row.kdf_params))
            except (KeyError, TypeError, ValueError) as exc:
                raise IntegrityError(
                    f"The vault header's key derivation settings are not usable ({exc}).",
                    next_step="restore the database from a backup, or rebuild with `keysafe recover`.",
                ) from None
            wrapped = hierarchy.WrappedMaster(
                row.kdf_salt, row.master_nonce, row.master_wrapped, params
            )
            kek = hierarchy.derive_kek(passphrase, wrapped.salt, params)
            try:
                master = hierarchy.unwrap_master_with(kek, wrapped, self.vault_id)
            except aead.DecryptionError:
                kek.wipe()
                self._audit_unlock_failure("wrong passphrase", counted=True, now=now)
                raise WrongPassphraseError(
                    "That passphrase does not unlock this vault.",
                    next_step=(
                        "check KEYSAFE_PASSPHRASE / --passphrase-file and retry; if it is lost, "
                        "`keysafe recover` sets a new one from the recovery phrase."
                    ),
                ) from None
            with kek, self.db.write() as conn:
                conn.execute(update(t.vault).values(unlock_failures=0, unlock_blocked_until=0.0))
                self._set_master(master)
                self._open_epochs_with_passphrase(conn, kek)

    def kms_config(self) -> kms.KmsConfig:
        """The key provider the header names (`local` for a passphrase vault)."""
        with self.db.read() as conn:
            return _config(conn.execute(select(t.vault)).one())

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
            with self.db.read() as conn:
                row = conn.execute(select(t.vault)).one()
            config = _config(row)
            if config.kind is kms.KmsKind.LOCAL:
                raise MalformedRequestError(
                    "This vault is unlocked with its passphrase, not a KMS.",
                    next_step="give the passphrase (KEYSAFE_PASSPHRASE, --passphrase-file or "
                    "the prompt).",
                )
            # The URL may differ: the operator's (KEYSAFE_KMS_URL) is the one used; OpenBao
            # may have moved since init, and the header's is not trusted with the token.
            if (provider.config.kind, provider.config.key) != (config.kind, config.key):
                raise MalformedRequestError(
                    f"This vault's key is in {config.describe()}, not "
                    f"{provider.config.describe()}.",
                    next_step="unlock with the provider the vault was made with "
                    "(`keysafe status` shows it).",
                )
            binding = kms.context_for(self.vault_id, config)
            now = self.clock().timestamp()
            try:
                kek = provider.unwrap(row.kms_blob or b"", context=binding)
                with kek:
                    master = hierarchy.unwrap_master_for_kms(
                        kek, row.master_nonce, row.master_wrapped, self.vault_id, binding
                    )
                    with self.db.write() as conn:
                        self._set_master(master)
                        self._open_epochs_with_passphrase(conn, kek)
            except aead.DecryptionError:
                self._audit_unlock_failure("kms key does not open the header", counted=False,
                                           now=now)  # fmt: skip
                raise IntegrityError(
                    f"The key {config.describe()} returned does not open this vault's master "
                    "key: the header was edited or belongs to another vault.",
                    next_step="restore the database from a backup, or rebuild the vault with "
                    "`keysafe recover` and the recovery phrase.",
                ) from None
            except KmsUnavailableError as exc:
                if exc.facts.get("reason") == str(kms.KmsReason.REFUSED):
                    self._audit_unlock_failure("kms refused", counted=False, now=now)
                raise
            except IntegrityError:
                self.lock()  # an epoch key that did not open: no half-unlocked vault stays
                self._audit_unlock_failure("kms rejected the header", counted=False, now=now)
                raise

    def _audit_unlock_failure(self, reason: str, *, counted: bool, now: float) -> None:
        """Audit a refused attempt; a wrong passphrase is counted in the same transaction (read
        afresh there, so a wrong attempt in another process is not lost)."""
        with self.db.write() as conn:
            row = conn.execute(
                select(t.vault.c.unlock_failures, t.vault.c.unlock_blocked_until)
            ).one()
            failures, delay = row.unlock_failures, 0.0
            if counted:
                failures += 1
                delay = unlock.delay_after(failures)
                conn.execute(
                    update(t.vault).values(
                        unlock_failures=failures,
                        unlock_blocked_until=now + delay if delay else 0.0,
                    )
                )
            self.audit(
                conn, actor="owner", action="vault.unlock", target=f"vault:{self.vault_id}",
                outcome="failure",
                details={"reason": reason, "failures": failures, "blocked_seconds": int(delay)},
            )  # fmt: skip

    def unlock_with_phrase(self, entropy: SecretBytes) -> None:
        """Unlock with the recovery phrase's entropy: the master key, and every epoch key opened
        with the phrase's sealing key (which must open them: the phrase is this vault's)."""
        master = hierarchy.master_from_entropy(entropy.reveal())
        if hierarchy.vault_id_for(master) != self.vault_id:
            master.wipe()
            raise_wrong_phrase()
        self._set_master(master)
        with self.db.write() as conn:
            self.adopt_epochs(conn, hierarchy.phrase_seal_key(entropy.reveal()))

    def adopt_epochs(self, conn: Connection, phrase_key: X25519PrivateKey) -> None:
        """Open every epoch key with the recovery phrase's sealing key (or, from before schema
        0009, the master key), and set the phrase's public key if the vault has none yet. The
        passphrase's sealed copies are made again by `rewrap`, which follows."""
        phrase_pub = hierarchy.public_bytes(phrase_key)
        head = conn.execute(select(t.vault.c.seal_phrase_pub)).one()
        if head.seal_phrase_pub and head.seal_phrase_pub != phrase_pub:
            raise_wrong_phrase()
        for row in conn.execute(select(t.epochs).order_by(t.epochs.c.number)).all():
            if row.sealed_phrase:
                try:
                    key = hierarchy.open_epoch_key(
                        phrase_key, self.vault_id, row.number, row.sealed_phrase
                    )
                except aead.DecryptionError:
                    raise_wrong_phrase()
                self._epoch_keys[row.number] = key
            else:
                key = self._epoch_key(row.number, conn)  # the legacy copy, by the master key
                conn.execute(
                    update(t.epochs).where(t.epochs.c.number == row.number).values(
                        sealed_phrase=hierarchy.seal_epoch_key(
                            phrase_pub, self.vault_id, row.number, key
                        )
                    )
                )  # fmt: skip
        if not head.seal_phrase_pub:
            conn.execute(update(t.vault).values(seal_phrase_pub=phrase_pub))

    def _open_epochs_with_passphrase(self, conn: Connection, kek: SecretBytes) -> None:
        """At unlock: open every epoch key sealed to the passphrase's sealing key, whose private
        half is then forgotten (it is not needed again until the next unlock)."""
        head = conn.execute(select(t.vault)).one()
        if not head.seal_pass_pub:
            # From before schema 0009: give the passphrase a sealing key now (the epochs are
            # opened by the master key and sealed to it).
            self._reseal_for_passphrase(conn, kek)
            return
        try:
            seal_key = hierarchy.unwrap_seal_key(
                kek, self.vault_id, head.seal_pass_pub, head.seal_pass_nonce,
                head.seal_pass_wrapped,
            )  # fmt: skip
        except aead.DecryptionError:
            raise IntegrityError(
                "The passphrase's sealing key does not open: the vault header was edited.",
                next_step="restore the database from a backup, or rebuild with `keysafe recover`.",
            ) from None
        for row in conn.execute(select(t.epochs)).all():
            if row.sealed_pass and row.number not in self._epoch_keys:
                try:
                    self._epoch_keys[row.number] = hierarchy.open_epoch_key(
                        seal_key, self.vault_id, row.number, row.sealed_pass
                    )
                except aead.DecryptionError:
                    raise IntegrityError(
                        f"Epoch key {row.number} does not open with this vault's passphrase.",
                        next_step="restore the vault from a backup (`keysafe backup restore "
                        "FILE`), or `keysafe recover` with the recovery phrase.",
                        epoch=row.number,
                    ) from None

    def _reseal_for_passphrase(self, conn: Connection, kek: SecretBytes) -> None:
        """A new sealing key for the passphrase (wrapped by `kek`), and every epoch key sealed to
        it; with the phrase's key known too, the master key's legacy copies go."""
        seal_key = hierarchy.new_seal_key()
        pub = hierarchy.public_bytes(seal_key)
        nonce, wrapped = hierarchy.wrap_seal_key(kek, self.vault_id, seal_key)
        head = conn.execute(select(t.vault.c.seal_phrase_pub)).one()
        for row in conn.execute(select(t.epochs)).all():
            key = self._epoch_key(row.number, conn)
            values: dict[str, Any] = {
                "sealed_pass": hierarchy.seal_epoch_key(pub, self.vault_id, row.number, key)
            }
            if head.seal_phrase_pub and row.sealed_phrase:
                values |= {"nonce": b"", "wrapped_key": b""}
            conn.execute(update(t.epochs).where(t.epochs.c.number == row.number).values(**values))
        conn.execute(
            update(t.vault).values(
                seal_pass_pub=pub, seal_pass_nonce=nonce, seal_pass_wrapped=wrapped
            )
        )

    def lock_epochs(self) -> None:
        """Forget opened epoch keys (after a restore replaced them)."""
        for key in self._epoch_keys.values():
            key.wipe()
        self._epoch_keys.clear()

    def _forget_destroyed_epochs(self, conn: Connection) -> None:
        """Wipe the keys of epochs that are gone from the database (destroyed by another
        server's rotation): a key this process kept would outlive the rotation's promise."""
        live = {int(n) for n in conn.execute(select(t.epochs.c.number)).scalars()}
        for number in [n for n in self._epoch_keys if n not in live]:
            self._epoch_keys.pop(number).wipe()

    def _set_master(self, master: SecretBytes) -> None:
        self._state_key = hierarchy.subkey(master, "state-mac")
        self._audit_key = hierarchy.subkey(master, "audit-hmac")
        self._master = master

    def lock(self) -> None:
        held = list(self.volatile.values())
        self.volatile.clear()
        self.lock_epochs()
        self._sealed.clear()
        for key in (self._state_key, self._audit_key):
            if key is not None:
                key.wipe()
        self._state_key = self._audit_key = None
        if self._master is not None:
            self._master.wipe()
            self._master = None
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
        if self._master is None:
            raise _locked()
        return self._master

    def seal_row(self, table: str, fields: seals.Fields) -> str | None:
        """The seal for a state row (agents, policies, settings), or None while locked: what an
        unsealed row may still do is the service's rule (service/state.py)."""
        key = self._state_key
        return None if key is None else seals.mac(key.reveal(), self.vault_id, table, fields)

    def check_row(self, table: str, fields: seals.Fields, seal: str | None) -> seals.Seal:
        """Whether a state row's seal verifies.

        Raises:
            VaultLockedError: checking needs the owner's key.
        """
        key = self._state_key
        if key is None:
            raise _locked()
        if seal is None:
            return seals.Seal.UNSEALED
        seen = (table, tuple(sorted(fields.items())), seal)
        if seen in self._sealed:
            return seals.Seal.SEALED
        state = seals.check(key.reveal(), self.vault_id, table, fields, seal)
        if state is seals.Seal.SEALED:
            if len(self._sealed) >= 4096:  # bounded: many agents, many policy versions
                self._sealed.clear()
            self._sealed.add(seen)
        return state

    def subkey(self, purpose: hierarchy.Subkey) -> SecretBytes:
        return hierarchy.subkey(self._require_master(), purpose)

    def owner_proof(self, challenge: str) -> str:
        """The owner's answer to a server's login challenge, for a vault with no passphrase (a
        KMS vault): an HMAC under a subkey of the master key, which only someone who could
        unlock the vault (through the KMS, or with the phrase) can compute. Bound to this vault
        and this challenge, so it is good for one login at one server.

        Raises:
            VaultLockedError: computing it needs the master key.
        """
        with self.subkey("owner-login") as key:
            message = jcs.dumps({"purpose": "owner-login", "vault": self.vault_id,
                                 "challenge": challenge})  # fmt: skip
            return hmac.new(bytes(key.reveal()), message, hashlib.sha256).hexdigest()

    def check_owner_proof(self, challenge: str, proof: str) -> bool:
        """Constant-time check of `owner_proof` (the vault must be unlocked)."""
        return hmac.compare_digest(self.owner_proof(challenge), proof)

    def rewrap(self, conn: Connection, passphrase: SecretBytes, kdf: Argon2Params) -> None:
        """Wrap the master key under a new passphrase, with a new sealing key for it that every
        epoch key is sealed to (the old passphrase opens no epoch key made from now on)."""
        salt = os.urandom(hierarchy.SALT_SIZE)
        with hierarchy.derive_kek(passphrase, salt, kdf) as kek:
            wrapped = hierarchy.wrap_master_with(
                kek, salt, self._require_master(), self.vault_id, kdf
            )
            self._reseal_for_passphrase(conn, kek)
        # A vault a KMS wrapped comes back to the passphrase here (recovery with the KMS down):
        # the provider's columns go, so nothing keeps pointing at a key that no longer wraps it.
        conn.execute(
            update(t.vault).values(
                kdf_params=jcs.dumps(kdf.to_dict()).decode(), kdf_salt=wrapped.salt,
                master_nonce=wrapped.nonce, master_wrapped=wrapped.ciphertext,
                unlock_failures=0, unlock_blocked_until=0.0,
                kms_kind=None, kms_url=None, kms_key=None, kms_blob=None,
            )
        )  # fmt: skip

    # -- epochs ----------------------------------------------------------------------------

    def _epoch_key(self, number: int, conn: Connection | None = None) -> SecretBytes:
        if number in self._epoch_keys:
            return self._epoch_keys[number]
        master = self._require_master()
        if conn is None:
            with self.db.read() as c:
                row = c.execute(select(t.epochs).where(t.epochs.c.number == number)).first()
        else:
            row = conn.execute(select(t.epochs).where(t.epochs.c.number == number)).first()
        if row is None:
            raise IntegrityError(
                f"Epoch key {number} is missing from the vault.",
                next_step="restore the vault from a backup (`keysafe backup restore FILE`).",
                epoch=number,
            )
        if not row.wrapped_key and row.sealed_prev:
            key = self._follow_link(number, row.sealed_prev, conn)
            if key is not None:
                return key
        if not row.wrapped_key:
            # Sealed, not wrapped by the master key: opened at unlock. One this process has not
            # opened was made by another process since.
            raise IntegrityError(
                f"Epoch key {number} was made after this process unlocked the vault.",
                next_step="lock and unlock again (`keysafe lock`, `keysafe unlock`).",
                epoch=number,
            )
        try:
            key = hierarchy.unwrap_epoch_key(
                master, self.vault_id, number, row.nonce, row.wrapped_key
            )
        except aead.DecryptionError:
            raise IntegrityError(
                f"Epoch key {number} does not open with this vault's master key.",
                next_step="restore the vault from a backup (`keysafe backup restore FILE`).",
                epoch=number,
            ) from None
        self._epoch_keys[number] = key
        return key

    def _follow_link(self, number: int, link: bytes, conn: Connection | None) -> SecretBytes | None:
        """Epoch `number`'s key from the key of the epoch it succeeded, when this process holds
        that one (made by another server since this one unlocked: a shared database). Then the
        keys of epochs destroyed since are wiped here too. None: the older key is not held (two
        rotations came and went since); the caller says to unlock again."""
        source = hierarchy.link_source(link)
        if source not in self._epoch_keys and source != number:
            try:
                self._epoch_key(source, conn)  # itself perhaps reached by a link
            except IntegrityError:
                return None
        prev = self._epoch_keys.get(source)
        if prev is None:
            return None
        try:
            key = hierarchy.open_linked_epoch_key(prev, self.vault_id, number, link)
        except aead.DecryptionError:
            raise IntegrityError(
                f"Epoch key {number} does not open from epoch {source}'s: the vault's epochs "
                "were edited.",
                next_step="restore the vault from a backup (`keysafe backup restore FILE`).",
                epoch=number,
            ) from None
        self._epoch_keys[number] = key
        if conn is not None:
            self._forget_destroyed_epochs(conn)
        else:
            with self.db.read() as c:
                self._forget_destroyed_epochs(c)
        return key

    def current_epoch(self, conn: Connection) -> int:
        """The number of the active epoch (new records are sealed under it).

        Raises:
            IntegrityError: there is none.
        """
        return self._current_epoch(conn)

    def list_records_by_id(self, conn: Connection, ids: list[str]) -> list[RecordInfo]:
        if not ids:
            return []
        return [_info(r) for r in conn.execute(select(t.records).where(t.records.c.id.in_(ids)))]

    def backup_sealing(self, conn: Connection) -> tuple[int, SecretBytes, str] | None:
        """For a new backup: the current epoch, the backup key from its key, and its key sealed
        to the recovery phrase's key (hex); None for a vault with no phrase key yet (from before
        schema 0009), whose backups stay under a key of the master key."""
        head = conn.execute(select(t.vault.c.seal_phrase_pub)).one()
        if not head.seal_phrase_pub:
            return None
        number = self._current_epoch(conn)
        key = self._epoch_key(number, conn)
        sealed = hierarchy.seal_epoch_key(head.seal_phrase_pub, self.vault_id, number, key)
        return number, hierarchy.backup_key_from_epoch(key), sealed.hex()

    def backup_key(self, epoch: int | None, conn: Connection) -> SecretBytes:
        """The key of a backup made at `epoch` (None: a backup under the master key's subkey).

        Raises:
            IntegrityError: that epoch's key was destroyed by a rotation here.
        """
        if epoch is None:
            return self.subkey("backup")
        try:
            key = self._epoch_key(epoch, conn)
        except IntegrityError:
            raise IntegrityError(
                f"This backup was made in epoch {epoch}, whose key a rotation destroyed: this "
                "vault can no longer open it.",
                next_step="only the recovery phrase opens it now: restore it into an empty "
                "KEYSAFE_HOME (`keysafe backup restore FILE` there).",
                epoch=epoch,
            ) from None
        return hierarchy.backup_key_from_epoch(key)

    def rotate_epoch(self, conn: Connection) -> int:
        """Make a new active epoch key and retire the others (the caller's transaction); new
        records are sealed under it at once, older ones when `reseal_record` moves them.

        Raises:
            VaultLockedError: locked.
        """
        current = self._current_epoch(conn)
        top = conn.execute(select(t.epochs.c.number).order_by(t.epochs.c.number.desc())).scalar()
        number = max(current, int(top or 0)) + 1
        conn.execute(update(t.epochs).where(t.epochs.c.state == "active").values(state="retired"))
        self._new_epoch(conn, number, prev=current)
        return number

    def reseal_record(self, conn: Connection, info: RecordInfo) -> None:
        """Seal a record again under the current epoch with a fresh data key (same name, version
        and metadata): its old data key and ciphertext are gone from the row."""
        epoch = self._current_epoch(conn)
        if info.epoch == epoch:
            return
        with self.open_record(conn, info) as plain:
            sealed = records.seal(
                self.vault_id, epoch, self._epoch_key(epoch, conn), info.ref, plain
            )
        stored = self._stow(info.kind, info.id, info.version, sealed)
        conn.execute(
            update(t.records).where(t.records.c.id == info.id, t.records.c.epoch == info.epoch)
            .values(epoch=epoch, dek_nonce=sealed.dek_nonce, dek_wrapped=sealed.dek_wrapped,
                    **stored.columns())
        )  # fmt: skip

    def _stow(self, kind: str, record_id: str, version: int, sealed: records.Sealed) -> Stored:
        """Store a sealed record's ciphertext where this vault keeps it (an S3 object is put
        before the caller's row is written: a crash leaves garbage, never a dangling row)."""
        return self.blobs.stow(
            self.vault_id, kind=kind, record_id=record_id, epoch=sealed.epoch, version=version,
            nonce=sealed.nonce, ciphertext=sealed.ciphertext,
        )  # fmt: skip

    def inline_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A `records` row with its ciphertext in the row itself (fetched and hash-checked
        from the blob store if it lives there), for a backup that must carry it.

        Raises:
            IntegrityError: the object is missing or altered.
            StoreError: the blob store is unreachable.
        """
        out = dict(row)
        ref = records.RecordRef(out["id"], out["kind"], out["name"], out["data_class"],
                                out["version"], {})  # fmt: skip
        nonce, ciphertext = self.blobs.fetch(Stored(
            out["nonce"], out["ciphertext"], out.get("blob_key"), out.get("blob_version"),
            out.get("blob_sha256"),
        ), ref)  # fmt: skip
        # Without the pointer columns: the row is then exactly what a vault without a blob
        # store writes (and what a keysafe from before schema 0011 can restore).
        for column in ("blob_key", "blob_version", "blob_sha256"):
            out.pop(column, None)
        return out | {"nonce": nonce, "ciphertext": ciphertext}

    def stow_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A `records` row (from a backup, ciphertext inline) as this vault keeps it: its
        ciphertext put into the blob store first where the vault has one."""
        out = dict(row)
        if out.get("blob_key") is not None:
            return out  # already a pointer (a backup never carries one; left as it is)
        sealed = records.Sealed(out["epoch"], out["dek_nonce"], out["dek_wrapped"],
                                out["nonce"], out["ciphertext"])  # fmt: skip
        return out | self._stow(out["kind"], out["id"], out["version"], sealed).columns()

    def destroy_epoch(self, conn: Connection, number: int) -> int:
        """Delete a retired epoch key that no record uses any more, and forget it here; with a
        blob store, every object version under that epoch first. Returns how many went.

        Raises:
            IntegrityError: it is the active epoch, or a record still uses it.
        """
        self._require_master()
        row = conn.execute(select(t.epochs).where(t.epochs.c.number == number)).first()
        users = conn.execute(
            select(t.records.c.id).where(t.records.c.epoch == number).limit(1)
        ).first()
        if row is None or row.state != "retired" or users is not None:
            raise IntegrityError(
                f"Epoch {number} cannot be destroyed: it is active, missing, or still in use.",
                next_step="run `keysafe rotate` again; it finishes re-sealing first.",
                epoch=number,
            )
        # The epoch's objects (every version, and the garbage of crashed writes) go before its
        # key, in this transaction: if the store refuses, the key stays and the next sweep tries
        # again; no row points at them any more (checked above), so deleting is safe.
        gone = self.blobs.destroy_epoch(self.vault_id, number)
        if gone:
            logger.info("epoch %d: %d object versions deleted", number, gone)
        conn.execute(delete(t.epochs).where(t.epochs.c.number == number))
        key = self._epoch_keys.pop(number, None)
        if key is not None:
            key.wipe()
        return gone

    def _current_epoch(self, conn: Connection) -> int:
        number = conn.execute(
            select(t.epochs.c.number).where(t.epochs.c.state == "active")
            .order_by(t.epochs.c.number.desc())
        ).scalar()  # fmt: skip
        if number is None:
            raise IntegrityError(
                "The vault has no active epoch key.",
                next_step="restore the vault from a backup (`keysafe backup restore FILE`).",
            )
        return int(number)

    # -- records ---------------------------------------------------------------------------

    def list_records(self, conn: Connection, kind: str) -> list[RecordInfo]:
        rows = conn.execute(
            select(t.records).where(t.records.c.kind == kind).order_by(t.records.c.name)
        )
        return [_info(r) for r in rows]

    def find_record(self, conn: Connection, kind: str, name: str) -> RecordInfo | None:
        found = hot.named(conn, _RECORD_INFO, {"kind": kind, "name": name})
        return _info(found[0]) if found else None

    def get_record(self, conn: Connection, kind: str, name: str) -> RecordInfo:
        info = self.find_record(conn, kind, name)
        if info is None:
            raise NotFoundError(
                f"No {kind} named '{name}' in this vault.",
                next_step=f"list them with `keysafe {kind} list`.",
                kind=kind,
                name=name,
            )
        return info

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
        existing = self.find_record(conn, kind, name)
        if existing is not None and not replace:
            raise AlreadyExistsError(
                f"A {kind} named '{name}' already exists.",
                next_step=(
                    f"choose another name, or remove it first (`keysafe {kind} remove {name}`)."
                    if kind in ("credential", "data")
                    else "choose another name."
                ),
                kind=kind,
                name=name,
            )
        now = iso(self.clock())
        epoch = self._current_epoch(conn)
        ref = records.RecordRef(
            id=existing.id if existing else secrets.token_hex(16),
            kind=kind,
            name=name,
            data_class=data_class,
            version=existing.version + 1 if existing else 1,
            meta=dict(meta),
        )
        sealed = records.seal(self.vault_id, epoch, self._epoch_key(epoch, conn), ref, plaintext)
        stored = self._stow(kind, ref.id, ref.version, sealed)
        values = {
            "kind": kind, "name": name, "data_class": data_class, "epoch": epoch,
            "version": ref.version, "meta": jcs.dumps(ref.meta).decode(),
            "dek_nonce": sealed.dek_nonce, "dek_wrapped": sealed.dek_wrapped,
            "updated_at": now, **stored.columns(),
        }  # fmt: skip
        if existing is None:
            conn.execute(insert(t.records).values(id=ref.id, created_at=now, **values))
        else:
            conn.execute(update(t.records).where(t.records.c.id == ref.id).values(**values))
        return RecordInfo(
            ref.id, kind, name, data_class, epoch, ref.version, ref.meta,
            existing.created_at if existing else now, now,
        )  # fmt: skip

    @contextmanager
    def open_record(self, conn: Connection, info: RecordInfo) -> Iterator[SecretBytes]:
        """Decrypt a record for the duration of the block; the plaintext is wiped afterwards."""
        found = hot.named(conn, _RECORD, {"id": info.id})
        if not found:  # removed by the owner since `info` was read
            raise NotFoundError(
                f"The {info.kind} '{info.name}' was removed while this request ran.",
                next_step=f"list them with `keysafe {info.kind} list`.",
                kind=info.kind, name=info.name,
            )  # fmt: skip
        row = found[0]
        fresh = _info(row)
        try:
            key = self._epoch_key(row.epoch, conn)
        except IntegrityError:
            raise records.integrity_failure(fresh.ref) from None
        nonce, ciphertext = self.blobs.fetch(Stored.from_row(row), fresh.ref)
        sealed = records.Sealed(row.epoch, row.dek_nonce, row.dek_wrapped, nonce, ciphertext)
        with records.open_sealed(self.vault_id, key, fresh.ref, sealed) as plain:
            yield plain

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
                conn, actor="owner", action=f"{kind}.remove", target=f"{kind}:{name}",
                outcome="success", details={"name": name},
            )  # fmt: skip

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
        key = self._audit_key
        return audit_log.append(
            conn, time=iso(self.clock()), actor=actor, action=action, target=target,
            outcome=outcome, details=details or {},
            audit_key=key.reveal() if key is not None else None, vault_id=self.vault_id,
        )  # fmt: skip


def _config(row: Any) -> kms.KmsConfig:
    """The provider a header row names; NULL (every vault before schema 0010) is `local`."""
    kind = getattr(row, "kms_kind", None)
    if kind is None or kind == kms.KmsKind.LOCAL:
        return kms.KmsConfig.local()
    try:
        return kms.KmsConfig(kms.KmsKind(kind), row.kms_url, row.kms_key)
    except ValueError:
        raise IntegrityError(
            f"The vault header names an unknown key provider ({str(kind)[:20]!r}).",
            next_step="upgrade keysafe, or rebuild the vault with `keysafe recover`.",
        ) from None


def _not_a_passphrase_vault(config: kms.KmsConfig) -> MalformedRequestError:
    return MalformedRequestError(
        f"This vault has no passphrase: its key is wrapped by {config.describe()}.",
        next_step="unlock it through the KMS (KEYSAFE_KMS_TOKEN or --kms-token-file for OpenBao; "
        "AWS credentials for aws-kms), or `keysafe recover` with the recovery phrase.",
    )


def _locked() -> VaultLockedError:
    return VaultLockedError(
        "The vault is locked, so keysafe cannot sign, use credentials or read secrets; "
        "this request was not queued.",
        next_step=(
            "the owner unlocks it (`keysafe unlock`, the web page, or the passphrase prompt), "
            "then retry."
        ),
    )


def raise_wrong_phrase() -> None:
    from keysafe.errors import WrongRecoveryPhraseError

    raise WrongRecoveryPhraseError(
        "That recovery phrase belongs to a different vault.",
        next_step="check the words and their order, or point KEYSAFE_HOME at the right vault.",
    )
