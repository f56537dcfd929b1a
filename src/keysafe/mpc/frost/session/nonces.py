"""Where a signer keeps its nonces between round one and round two of a signing session, so that
they are single use across crashes (threshold.md §1.4): round one stores them under the session
id durably before the commitment leaves; round two marks them used durably, with the nonces
erased, *before* a share is computed, so a second round two for a session is refused even after
a restart. Nonce state must never be restored from a backup.

* `FileNonceStore`: one file per session on disk, for a signer that outlives its process;
* `MemoryNonceStore`: a dict, for a session that begins and ends in one process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from keysafe.crypto import jcs
from keysafe.errors import StoreError, UnsafePermissionsError
from keysafe.mpc.frost.canonical_json import read_object
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import SUITES
from keysafe.mpc.frost.keys import PARTIES
from keysafe.mpc.frost.session.messages import PROTOCOL_VERSION, SESSION_ID_SIZE
from keysafe.mpc.frost.signing import SigningCommitment, SigningNonces

__all__ = ["FileNonceStore", "MemoryNonceStore", "NonceRecord", "NonceStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NonceRecord:
    """What a signer keeps between round one and round two of one session. Secret (nonces)."""

    session_id: bytes
    suite: str
    group_public_key: bytes
    identifier: int
    participants: tuple[int, ...]
    message_digest: bytes  # SHA-256 of the message the policy hook approved
    nonces: SigningNonces
    commitment: SigningCommitment

    def __repr__(self) -> str:
        return f"NonceRecord(session={self.session_id.hex()[:16]}…, identifier={self.identifier})"

    def to_json(self) -> bytes:
        suite = SUITES[self.suite]
        return jcs.dumps(
            {
                "version": PROTOCOL_VERSION,
                "state": "ready",
                "session_id": self.session_id.hex(),
                "suite": self.suite,
                "group_public_key": self.group_public_key.hex(),
                "identifier": self.identifier,
                "participants": list(self.participants),
                "message_sha256": self.message_digest.hex(),
                "hiding_nonce": suite.serialize_scalar(self.nonces.hiding).hex(),
                "binding_nonce": suite.serialize_scalar(self.nonces.binding).hex(),
                "hiding": self.commitment.hiding.hex(),
                "binding": self.commitment.binding.hex(),
            }
        )

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> NonceRecord:
        suite = SUITES[obj["suite"]]
        identifier = obj["identifier"]
        if type(identifier) is not int or identifier not in PARTIES:
            raise ValueError("bad identifier")
        participants = obj["participants"]
        if not isinstance(participants, list) or not all(type(i) is int for i in participants):
            raise ValueError("bad participants")
        return cls(
            session_id=bytes.fromhex(obj["session_id"]),
            suite=suite.name,
            group_public_key=bytes.fromhex(obj["group_public_key"]),
            identifier=identifier,
            participants=tuple(participants),
            message_digest=bytes.fromhex(obj["message_sha256"]),
            nonces=SigningNonces(
                suite.deserialize_scalar(bytes.fromhex(obj["hiding_nonce"])),
                suite.deserialize_scalar(bytes.fromhex(obj["binding_nonce"])),
            ),
            commitment=SigningCommitment(
                identifier, bytes.fromhex(obj["hiding"]), bytes.fromhex(obj["binding"])
            ),
        )


class NonceStore(Protocol):
    """Durable single-use nonce storage. `take` must make the record unusable on disk (and
    erase the nonces) *before* it returns, so a crash after it can never lead to a second use."""

    def __contains__(self, session_id: bytes) -> bool:
        """True if the session id was ever stored, used or not."""
        ...

    def put(self, record: NonceRecord) -> None:
        """Store durably; refuse (FrostError) a session id seen before."""
        ...

    def take(self, session_id: bytes) -> NonceRecord:
        """Return the record and durably mark it used; refuse (FrostError) unknown or used ids."""
        ...


class FileNonceStore:
    """One file per session in a 0700 directory: `<session id hex>.json`, mode 0600.

    Writes go to a temporary file that is fsynced and renamed over the target, then the
    directory is fsynced; an exclusive `flock` on `.lock` serialises processes and threads.
    Using a session overwrites the file in place with zeros, then renames a tombstone (no
    nonces) over it: a crash between the two leaves an unreadable file, which counts as used.
    Overwriting is best effort on journaling or copy-on-write file systems and SSDs.
    Tombstones are kept so that a replayed session id is refused forever.
    """

    _MAX_FILE: Final = 4096

    def __init__(self, directory: Path | str) -> None:
        self._dir = Path(directory)
        try:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = stat.S_IMODE(self._dir.stat().st_mode)
        except OSError as e:
            raise self._store_error("could not be created", e) from None
        if mode & 0o077:
            raise UnsafePermissionsError(
                f"The FROST nonce directory {self._dir} is readable by other users "
                f"(mode {mode:o}); no nonce was written.",
                next_step=f"run `chmod 700 {self._dir}` and retry",
            )
        with self._locked():
            for stale in self._dir.glob(".*.tmp"):  # a crash mid-write; its nonces were never sent
                stale.unlink(missing_ok=True)

    def _path(self, session_id: bytes) -> Path:
        if not isinstance(session_id, bytes) or len(session_id) != SESSION_ID_SIZE:
            raise ValueError("a session id is 32 bytes")
        return self._dir / f"{session_id.hex()}.json"

    def _store_error(self, what: str, e: OSError) -> StoreError:
        return StoreError(
            f"The FROST nonce store at {self._dir} {what} ({e.strerror}); the session is aborted.",
            next_step="check the disk and the directory's permissions, then start a new session",
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, bytes) and os.path.lexists(self._path(session_id))

    def put(self, record: NonceRecord) -> None:
        path = self._path(record.session_id)
        try:
            with self._locked():
                if os.path.lexists(path):
                    raise FrostError(
                        "this session id was seen before; a session id is used once",
                        next_step="start a new session with a fresh session id",
                    )
                self._write(path, record.to_json(), wipe_old=False)
        except OSError as e:
            raise self._store_error("could not be written", e) from None

    def take(self, session_id: bytes) -> NonceRecord:
        path = self._path(session_id)
        try:
            with self._locked():
                if not os.path.lexists(path):
                    raise FrostError(
                        "no round-one state for this session (unknown session id)",
                        next_step="start a new session; round two needs this signer's round one",
                    )
                record = self._read(path)
                if record.session_id != session_id:
                    raise FrostError("the nonce store entry is for another session; refused")
                tombstone = jcs.dumps(
                    {"version": PROTOCOL_VERSION, "state": "used", "session_id": session_id.hex()}
                )
                self._write(path, tombstone, wipe_old=True)
                return record
        except OSError as e:
            raise self._store_error("could not be updated", e) from None

    def _read(self, path: Path) -> NonceRecord:
        used = FrostError(
            "this session's nonces were already used; a second round two is refused",
            next_step="start a new session; nonces are never reused",
        )
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(self._MAX_FILE + 1)
        try:
            obj = read_object(raw, max_size=self._MAX_FILE)
            if obj["version"] != PROTOCOL_VERSION or obj["state"] != "ready":
                raise used
            return NonceRecord.from_json(obj)
        except FrostError:
            raise used from None
        except (ValueError, KeyError, TypeError):
            # Half-wiped, altered or foreign: refusing is always safe, signing might not be.
            raise used from None

    def _write(self, path: Path, data: bytes, *, wipe_old: bool) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            _write_durably(fd, data)
            if wipe_old:
                self._overwrite(path)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @staticmethod
    def _overwrite(path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.write(fd, bytes(os.fstat(fd).st_size))
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_durably(fd: int, data: bytes) -> None:
    """Write all of `data` to the new file `fd`, fsync it and close it."""
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class MemoryNonceStore:
    """Nonces for a signing session that begins and ends in this process: kept in memory only,
    single use (the NonceStore protocol without a disk)."""

    def __init__(self) -> None:
        self._records: dict[bytes, NonceRecord | None] = {}

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._records

    def put(self, record: NonceRecord) -> None:
        if record.session_id in self._records:
            raise FrostError("this session id was seen before")
        self._records[record.session_id] = record

    def take(self, session_id: bytes) -> NonceRecord:
        record = self._records.get(session_id)
        self._records[session_id] = None
        if record is None:
            raise FrostError("no unused round-one state for this session")
        return record
