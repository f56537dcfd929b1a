"""The epoch keys one process opened for one vault, and the `epochs` rows that hold them sealed.

    keys = EpochKeys(db, vault_id, master=vault_master)    # `master` raises while locked
    keys.open_with_passphrase(conn, kek)                    # at unlock
    number = current_epoch(conn)
    sealed = records.seal(vault_id, number, keys.key(number, conn), ref, plaintext)

Rules this module keeps (vault/hierarchy.py has the formats):
- An epoch key is sealed to the passphrase's sealing key and to the recovery phrase's, never
  wrapped by the master key (vaults from before schema 0009 keep that legacy copy until the
  phrase is used once): an old copy of the database with today's master key opens no epoch key.
- A new epoch's key is also wrapped under a key derived from the epoch it replaces (schema
  0014), so another server on a shared database follows a rotation from the key it holds; keys
  of epochs that are gone from the database are wiped when it does.
- A retired epoch is destroyed only when no record uses it, its blob objects first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import Connection, delete, insert, select, update

from keysafe.crypto import aead
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError
from keysafe.store import tables as t
from keysafe.store.db import Database
from keysafe.vault import hierarchy
from keysafe.vault.blobs import RecordBlobs
from keysafe.vault.unlock import wrong_phrase

logger = logging.getLogger(__name__)

_RESTORE: Final = "restore the vault from a backup (`keysafe backup restore FILE`)."


def current_epoch(conn: Connection) -> int:
    """The number of the active epoch (new records are sealed under it).

    Raises:
        IntegrityError: there is none.
    """
    number = conn.execute(
        select(t.epochs.c.number)
        .where(t.epochs.c.state == "active")
        .order_by(t.epochs.c.number.desc())
    ).scalar()
    if number is None:
        raise IntegrityError("The vault has no active epoch key.", next_step=_RESTORE)
    return int(number)


class EpochKeys(Mapping[int, SecretBytes]):
    """The epoch keys this process opened, by epoch number; `wipe` forgets them all.

    Args:
        db: the vault's database (read when a key is asked for outside a transaction).
        vault_id: the vault every key is bound to.
        master: returns the master key, or raises VaultLockedError while locked.
    """

    def __init__(self, db: Database, vault_id: str, *, master: Callable[[], SecretBytes]) -> None:
        self._db = db
        self._vault_id = vault_id
        self._master = master
        self._keys: dict[int, SecretBytes] = {}

    @property
    def vault_id(self) -> str:
        return self._vault_id

    def __getitem__(self, number: int) -> SecretBytes:
        return self._keys[number]

    def __iter__(self) -> Iterator[int]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def wipe(self) -> None:
        """Forget every opened key (at lock, or after a restore replaced them)."""
        for key in self._keys.values():
            key.wipe()
        self._keys.clear()

    # -- opening -----------------------------------------------------------------------------

    def key(self, number: int, conn: Connection | None = None) -> SecretBytes:
        """Epoch `number`'s key: held, reached by the link from the epoch before it, or (before
        schema 0009) unwrapped by the master key.

        Raises:
            VaultLockedError: locked.
            IntegrityError: the epoch is missing, does not open, or was made by another
                process since this one unlocked and cannot be followed.
        """
        if number in self._keys:
            return self._keys[number]
        master = self._master()
        row = self._row(number, conn)
        if row is None:
            raise IntegrityError(
                f"Epoch key {number} is missing from the vault.", next_step=_RESTORE, epoch=number
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
                master, self._vault_id, number, row.nonce, row.wrapped_key
            )
        except aead.DecryptionError:
            raise IntegrityError(
                f"Epoch key {number} does not open with this vault's master key.",
                next_step=_RESTORE,
                epoch=number,
            ) from None
        self._keys[number] = key
        return key

    def _row(self, number: int, conn: Connection | None) -> Any:
        query = select(t.epochs).where(t.epochs.c.number == number)
        if conn is not None:
            return conn.execute(query).first()
        with self._db.read() as c:
            return c.execute(query).first()

    def _follow_link(self, number: int, link: bytes, conn: Connection | None) -> SecretBytes | None:
        """Epoch `number`'s key from the key of the epoch it succeeded, when this process holds
        that one (made by another server since this one unlocked: a shared database). Then the
        keys of epochs destroyed since are wiped here too. None: the older key is not held (two
        rotations came and went since); the caller says to unlock again."""
        source = hierarchy.link_source(link)
        if source not in self._keys and source != number:
            try:
                self.key(source, conn)  # itself perhaps reached by a link
            except IntegrityError:
                return None
        prev = self._keys.get(source)
        if prev is None:
            return None
        try:
            key = hierarchy.open_linked_epoch_key(prev, self._vault_id, number, link)
        except aead.DecryptionError:
            raise IntegrityError(
                f"Epoch key {number} does not open from epoch {source}'s: the vault's epochs "
                "were edited.",
                next_step=_RESTORE,
                epoch=number,
            ) from None
        self._keys[number] = key
        if conn is not None:
            self._forget_destroyed(conn)
        else:
            with self._db.read() as c:
                self._forget_destroyed(c)
        return key

    def _forget_destroyed(self, conn: Connection) -> None:
        """Wipe the keys of epochs that are gone from the database (destroyed by another
        server's rotation): a key this process kept would outlive the rotation's promise."""
        live = {int(n) for n in conn.execute(select(t.epochs.c.number)).scalars()}
        for number in [n for n in self._keys if n not in live]:
            self._keys.pop(number).wipe()

    def open_with_passphrase(self, conn: Connection, kek: SecretBytes) -> None:
        """At unlock: open every epoch key sealed to the passphrase's sealing key, whose private
        half is then forgotten (it is not needed again until the next unlock).

        Raises:
            IntegrityError: the sealing key or an epoch key does not open (edited rows).
        """
        head = conn.execute(select(t.vault)).one()
        if not head.seal_pass_pub:
            # From before schema 0009: give the passphrase a sealing key now (the epochs are
            # opened by the master key and sealed to it).
            self.reseal_for_passphrase(conn, kek)
            return
        try:
            seal_key = hierarchy.unwrap_seal_key(
                kek,
                self._vault_id,
                head.seal_pass_pub,
                head.seal_pass_nonce,
                head.seal_pass_wrapped,
            )
        except aead.DecryptionError:
            raise IntegrityError(
                "The passphrase's sealing key does not open: the vault header was edited.",
                next_step="restore the database from a backup, or rebuild with `keysafe recover`.",
            ) from None
        for row in conn.execute(select(t.epochs)).all():
            if row.sealed_pass and row.number not in self._keys:
                self._keys[row.number] = self._open_sealed_pass(
                    seal_key, row.number, row.sealed_pass
                )

    def _open_sealed_pass(
        self, seal_key: X25519PrivateKey, number: int, sealed: bytes
    ) -> SecretBytes:
        try:
            return hierarchy.open_epoch_key(seal_key, self._vault_id, number, sealed)
        except aead.DecryptionError:
            raise IntegrityError(
                f"Epoch key {number} does not open with this vault's passphrase.",
                next_step="restore the vault from a backup (`keysafe backup restore "
                "FILE`), or `keysafe recover` with the recovery phrase.",
                epoch=number,
            ) from None

    def open_with_phrase(self, conn: Connection, phrase_key: X25519PrivateKey) -> None:
        """Open every epoch key with the recovery phrase's sealing key (or, from before schema
        0009, the master key), and set the phrase's public key if the vault has none yet.

        Raises:
            WrongRecoveryPhraseError: the phrase is another vault's.
        """
        phrase_pub = hierarchy.public_bytes(phrase_key)
        head = conn.execute(select(t.vault.c.seal_phrase_pub)).one()
        if head.seal_phrase_pub and head.seal_phrase_pub != phrase_pub:
            raise wrong_phrase()
        for row in conn.execute(select(t.epochs).order_by(t.epochs.c.number)).all():
            if row.sealed_phrase:
                try:
                    self._keys[row.number] = hierarchy.open_epoch_key(
                        phrase_key, self._vault_id, row.number, row.sealed_phrase
                    )
                except aead.DecryptionError:
                    raise wrong_phrase() from None
            else:
                key = self.key(row.number, conn)  # the legacy copy, by the master key
                sealed = hierarchy.seal_epoch_key(phrase_pub, self._vault_id, row.number, key)
                conn.execute(
                    update(t.epochs)
                    .where(t.epochs.c.number == row.number)
                    .values(sealed_phrase=sealed)
                )
        if not head.seal_phrase_pub:
            conn.execute(update(t.vault).values(seal_phrase_pub=phrase_pub))

    def reseal_for_passphrase(self, conn: Connection, kek: SecretBytes) -> None:
        """A new sealing key for the passphrase (wrapped by `kek`), and every epoch key sealed to
        it (`seal_to_passphrase`)."""
        seal_key = hierarchy.new_seal_key()
        nonce, wrapped = hierarchy.wrap_seal_key(kek, self._vault_id, seal_key)
        self.seal_to_passphrase(conn, seal_key, nonce, wrapped)

    def seal_to_passphrase(
        self, conn: Connection, seal_key: X25519PrivateKey, nonce: bytes, wrapped: bytes
    ) -> None:
        """Make `seal_key` (`nonce`, `wrapped`: wrapped by the passphrase's key-encryption key)
        the passphrase's sealing key and seal every epoch key to it; with the phrase's key known
        too, the master key's legacy copies go."""
        pub = hierarchy.public_bytes(seal_key)
        head = conn.execute(select(t.vault.c.seal_phrase_pub)).one()
        for row in conn.execute(select(t.epochs)).all():
            key = self.key(row.number, conn)
            values: dict[str, Any] = {
                "sealed_pass": hierarchy.seal_epoch_key(pub, self._vault_id, row.number, key)
            }
            if head.seal_phrase_pub and row.sealed_phrase:
                values |= {"nonce": b"", "wrapped_key": b""}
            conn.execute(update(t.epochs).where(t.epochs.c.number == row.number).values(**values))
        conn.execute(
            update(t.vault).values(
                seal_pass_pub=pub, seal_pass_nonce=nonce, seal_pass_wrapped=wrapped
            )
        )

    # -- making and destroying ---------------------------------------------------------------

    def new(
        self, conn: Connection, number: int, *, created_at: str, prev: int | None = None
    ) -> None:
        """Make epoch `number`'s key and its row, sealed to the header's public keys (and linked
        from epoch `prev`'s key, when it replaces one)."""
        master = self._master()
        key = SecretBytes.adopt(aead.new_key())
        head = conn.execute(select(t.vault.c.seal_pass_pub, t.vault.c.seal_phrase_pub)).one()
        values: dict[str, Any] = {"nonce": b"", "wrapped_key": b""}
        if head.seal_pass_pub:
            values["sealed_pass"] = hierarchy.seal_epoch_key(
                head.seal_pass_pub, self._vault_id, number, key
            )
        if head.seal_phrase_pub:
            values["sealed_phrase"] = hierarchy.seal_epoch_key(
                head.seal_phrase_pub, self._vault_id, number, key
            )
        else:
            # A vault from before schema 0009 whose phrase has not been used since: the master
            # key keeps a copy, so the phrase still opens it (no forward secrecy until then).
            values["nonce"], values["wrapped_key"] = hierarchy.wrap_epoch_key(
                master, self._vault_id, number, key
            )
        if prev is not None:
            # Other servers on the database hold `prev`'s key and follow the rotation from it.
            values["sealed_prev"] = hierarchy.link_epoch_key(
                prev, self.key(prev, conn), self._vault_id, number, key
            )
        conn.execute(
            insert(t.epochs).values(number=number, state="active", created_at=created_at, **values)
        )
        self._keys[number] = key

    def rotate(self, conn: Connection, *, created_at: str) -> int:
        """Make a new active epoch key and retire the others; returns its number.

        Raises:
            VaultLockedError: locked.
        """
        current = current_epoch(conn)
        top = conn.execute(select(t.epochs.c.number).order_by(t.epochs.c.number.desc())).scalar()
        number = max(current, int(top or 0)) + 1
        conn.execute(update(t.epochs).where(t.epochs.c.state == "active").values(state="retired"))
        self.new(conn, number, created_at=created_at, prev=current)
        return number

    def destroy(self, conn: Connection, number: int, blobs: RecordBlobs) -> int:
        """Delete a retired epoch key that no record uses any more, and forget it here; every
        object version under that epoch in `blobs` first. Returns how many objects went.

        Raises:
            IntegrityError: it is the active epoch, or a record still uses it.
        """
        self._master()
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
        gone = blobs.destroy_epoch(self._vault_id, number)
        if gone:
            logger.info("epoch %d: %d object versions deleted", number, gone)
        conn.execute(delete(t.epochs).where(t.epochs.c.number == number))
        key = self._keys.pop(number, None)
        if key is not None:
            key.wipe()
        return gone

    # -- backups -----------------------------------------------------------------------------

    def backup_sealing(self, conn: Connection) -> tuple[int, SecretBytes, str] | None:
        """For a new backup: the current epoch, the backup key from its key, and its key sealed
        to the recovery phrase's key (hex); None for a vault with no phrase key yet (from before
        schema 0009), whose backups stay under a key of the master key."""
        head = conn.execute(select(t.vault.c.seal_phrase_pub)).one()
        if not head.seal_phrase_pub:
            return None
        number = current_epoch(conn)
        key = self.key(number, conn)
        sealed = hierarchy.seal_epoch_key(head.seal_phrase_pub, self._vault_id, number, key)
        return number, hierarchy.backup_key_from_epoch(key), sealed.hex()

    def backup_key(self, epoch: int, conn: Connection) -> SecretBytes:
        """The key of a backup made at `epoch`.

        Raises:
            IntegrityError: that epoch's key was destroyed by a rotation here.
        """
        try:
            key = self.key(epoch, conn)
        except IntegrityError:
            raise IntegrityError(
                f"This backup was made in epoch {epoch}, whose key a rotation destroyed: this "
                "vault can no longer open it.",
                next_step="only the recovery phrase opens it now: restore it into an empty "
                "KEYSAFE_HOME (`keysafe backup restore FILE` there).",
                epoch=epoch,
            ) from None
        return hierarchy.backup_key_from_epoch(key)
