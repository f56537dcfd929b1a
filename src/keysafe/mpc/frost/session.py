"""The FROST signing protocol between parties (threshold.md §1.4, S0–S3), with typed, versioned
messages bound to a session id, single-use nonces that survive crashes, and a coordinator that
names whoever cheats.

    >>> store = FileNonceStore(home / "frost-nonces")                        # doctest: +SKIP
    >>> agent = Signer(agent_key, store, check_message=policy_allows)        # doctest: +SKIP
    >>> coordinator = Coordinator(public, [AGENT, USER], message)            # doctest: +SKIP
    >>> signature = coordinator.run({AGENT: agent, USER: user_endpoint})     # doctest: +SKIP

Messages (canonical RFC 8785 JSON on the wire, bytes as lowercase hex):

* S0 `SignRequest` coordinator → signers: session id, participants, message;
* S1 `Commitments` signer → coordinator: (D_i, E_i);
* S2 `SigningPackage` coordinator → signers: message and the sorted commitment list;
* S3 `SignatureShare` signer → coordinator: z_i.

What is enforced:

* parsing: exactly the message's fields (a `type` tag plus those of the dataclass), version 1,
  JSON types, hex lengths, group elements and scalars of the suite, and canonical encoding (one
  byte string per message); every failure names the message, the field and the sender;
* a signer runs its `check_message` policy hook on the SignRequest before it commits, and signs
  in round two only the very message it approved, for exactly the participant set it agreed to,
  with its own commitment unchanged;
* nonces are single use across crashes: round one stores them under the session id durably
  before the commitment leaves; round two records "used" durably, with the nonces erased,
  *before* a share is computed, so a second round two for a session is refused even after a
  restart. Nonce state must never be restored from a backup (threshold.md §1.4);
* the coordinator accepts each message only from the participant it claims to be from (the
  transport authenticates `sender`), verifies every share on arrival (identifiable abort), and
  returns only a signature that verifies, for Ed25519 also under libsodium.

Every failure aborts the session for good (`FrostError`); nothing is retried with the same
nonces. Channels must be authenticated and should be encrypted: messages are transaction intents.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Final, Protocol

from keysafe.crypto import jcs
from keysafe.errors import PolicyDeniedError, StoreError, UnsafePermissionsError
from keysafe.mpc.frost import signing
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import SUITES, Suite
from keysafe.mpc.frost.keys import MAX_SIGNERS, MIN_SIGNERS, PARTIES, KeyPackage, PublicKeyPackage
from keysafe.mpc.frost.signing import SigningCommitment, SigningNonces

__all__ = [
    "MAX_MESSAGE_SIZE",
    "PROTOCOL_VERSION",
    "SESSION_ID_SIZE",
    "Commitments",
    "Coordinator",
    "CoordinatorState",
    "FileNonceStore",
    "NonceRecord",
    "NonceStore",
    "SignRequest",
    "SignatureShare",
    "Signer",
    "SignerEndpoint",
    "SigningPackage",
]

logger = logging.getLogger(__name__)

PROTOCOL_VERSION: Final = 1
SESSION_ID_SIZE: Final = 32
# A Solana transaction is at most 1232 bytes and an EVM digest 32; anything near this is an attack.
MAX_MESSAGE_SIZE: Final = 64 * 1024
_MAX_WIRE_SIZE: Final = 2 * MAX_MESSAGE_SIZE + 4096
_ELEMENT_SIZES: Final = frozenset(s.element_len for s in SUITES.values())
_SCALAR_SIZES: Final = frozenset(s.scalar_len for s in SUITES.values())
_HEX: Final = re.compile(r"(?:[0-9a-f]{2})*")
_COORDINATOR: Final = "the coordinator"
# The `type` tag of each message on the wire: a message of one kind never parses as another.
_TAGS: Final = {
    "SignRequest": "frost.sign_request",
    "Commitments": "frost.commitments",
    "SigningPackage": "frost.signing_package",
    "SignatureShare": "frost.signature_share",
}


# -- field checks shared by the dataclasses and the wire parser ---------------------------------


class _Fields:
    """Checks one message's fields; every failure names the message, its origin and the field."""

    def __init__(self, kind: str, origin: str, culprit: int | None) -> None:
        self.kind, self.origin, self.culprit = kind, origin, culprit

    def fail(self, field: str | None, problem: str) -> FrostError:
        # A named culprit is appended by FrostError itself; say the origin only when it is not.
        head = self.kind if self.culprit is not None else f"{self.kind} from {self.origin}"
        where = head + (f": field {field!r}" if field else "")
        return FrostError(f"{where} {problem}", culprit=self.culprit)

    def integer(self, field: str, value: object) -> int:
        # bool is an int in Python and JSON's true would otherwise pass as 1.
        if type(value) is not int:
            raise self.fail(field, "is not an integer")
        return value

    def version(self, value: object) -> int:
        if self.integer("version", value) != PROTOCOL_VERSION:
            raise self.fail("version", f"is {value}, only version {PROTOCOL_VERSION} is spoken")
        return PROTOCOL_VERSION

    def identifier(self, field: str, value: object) -> int:
        i = self.integer(field, value)
        if i not in PARTIES:
            raise self.fail(field, f"is {i}, not one of the participants {PARTIES}")
        return i

    def blob(
        self,
        field: str,
        value: object,
        *,
        sizes: frozenset[int] | None = None,
        max_size: int | None = None,
    ) -> bytes:
        if not isinstance(value, bytes):
            raise self.fail(field, "is not bytes")
        if sizes is not None and len(value) not in sizes:
            raise self.fail(field, f"has {len(value)} bytes, expected {sorted(sizes)}")
        if max_size is not None and len(value) > max_size:
            raise self.fail(field, f"has {len(value)} bytes, more than {max_size}")
        return value

    def session_id(self, value: object) -> bytes:
        return self.blob("session_id", value, sizes=frozenset({SESSION_ID_SIZE}))

    def participants(self, value: object) -> tuple[int, ...]:
        if not isinstance(value, tuple):
            raise self.fail("participants", "is not a list")
        if not MIN_SIGNERS <= len(value) <= MAX_SIGNERS:
            raise self.fail(
                "participants",
                f"has {len(value)} entries; a session has {MIN_SIGNERS} to {MAX_SIGNERS} signers",
            )
        ids = tuple(self.identifier("participants", i) for i in value)
        if any(a >= b for a, b in itertools.pairwise(ids)):
            raise self.fail("participants", "is not strictly ascending (sorted, no duplicates)")
        return ids

    def element(self, suite: Suite, field: str, value: bytes) -> bytes:
        self.blob(field, value, sizes=frozenset({suite.element_len}))
        try:
            return suite.deserialize_element(value, what=field)
        except FrostError:
            raise self.fail(field, f"is not a valid {suite.name} group element") from None

    def scalar(self, suite: Suite, field: str, value: bytes) -> bytes:
        self.blob(field, value, sizes=frozenset({suite.scalar_len}))
        try:
            suite.deserialize_scalar(value, what=field)
        except FrostError:
            raise self.fail(field, "is not below the group order") from None
        return value


def _participant(sender: object) -> tuple[str, int | None]:
    if type(sender) is int and sender in PARTIES:
        return f"participant {sender}", sender
    return "an unidentified sender", None


# -- wire parsing --------------------------------------------------------------------------------


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise ValueError("floats are not part of this protocol")


def _json_object(data: bytes, f: _Fields) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray):
        raise TypeError("a wire message is bytes")
    if len(data) > _MAX_WIRE_SIZE:
        raise f.fail(None, f"is {len(data)} bytes, more than {_MAX_WIRE_SIZE}")
    try:
        obj = json.loads(
            bytes(data), object_pairs_hook=_no_duplicates, parse_float=_no_float,
            parse_constant=_no_float,
        )  # fmt: skip
    except _Duplicate as e:
        raise f.fail(str(e), "appears twice") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise f.fail(None, "is not valid JSON") from None
    if not isinstance(obj, dict):
        raise f.fail(None, "is not a JSON object")
    return obj


class _Wire:
    """Reads one parsed JSON object as the message `kind` (its `type` tag is `tag`)."""

    def __init__(self, obj: dict[str, Any], data: bytes, tag: str, f: _Fields) -> None:
        self.obj, self.data, self.tag, self.f = obj, bytes(data), tag, f

    def check(self, fields: tuple[str, ...]) -> None:
        expected = {"type", "version", *fields}
        if self.obj.get("type") != self.tag:
            raise self.f.fail("type", f"is {self.obj.get('type')!r}, expected {self.tag!r}")
        for key in sorted(set(self.obj) - expected):
            raise self.f.fail(key, "is not a field of this message")
        for key in sorted(expected - set(self.obj)):
            raise self.f.fail(key, "is missing")
        self.f.version(self.obj["version"])

    def canonical(self) -> None:
        # One byte string per message: nothing can ride along in whitespace, order or escapes.
        if jcs.dumps(self.obj) != self.data:
            raise self.f.fail(None, "is not canonical JSON (RFC 8785)")

    def hex(self, field: str) -> bytes:
        return self.hex_value(field, self.obj[field])

    def hex_value(self, field: str, raw: object) -> bytes:
        if not isinstance(raw, str) or not _HEX.fullmatch(raw):
            raise self.f.fail(field, "is not lowercase hex")
        return bytes.fromhex(raw)


def _hex(b: bytes) -> str:
    return bytes(b).hex()


# -- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SignRequest:
    """S0, coordinator → signers: sign `message` in session `session_id` with `participants`."""

    version: int = PROTOCOL_VERSION
    session_id: bytes
    participants: tuple[int, ...]
    message: bytes

    def __post_init__(self) -> None:
        f = _Fields("SignRequest", _COORDINATOR, None)
        f.version(self.version)
        f.session_id(self.session_id)
        f.participants(self.participants)
        f.blob("message", self.message, max_size=MAX_MESSAGE_SIZE)

    def to_bytes(self) -> bytes:
        return jcs.dumps(
            {
                "type": _TAGS[type(self).__name__],
                "version": self.version,
                "session_id": _hex(self.session_id),
                "participants": list(self.participants),
                "message": _hex(self.message),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SignRequest:
        f = _Fields("SignRequest", _COORDINATOR, None)
        w = _Wire(_json_object(data, f), data, _TAGS[cls.__name__], f)
        w.check(("session_id", "participants", "message"))
        participants = w.obj["participants"]
        if not isinstance(participants, list):
            raise f.fail("participants", "is not a list")
        out = cls(
            session_id=f.session_id(w.hex("session_id")),
            participants=f.participants(tuple(participants)),
            message=f.blob("message", w.hex("message"), max_size=MAX_MESSAGE_SIZE),
        )
        w.canonical()
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Commitments:
    """S1, signer → coordinator: participant `sender`'s nonce commitments (D, E)."""

    version: int = PROTOCOL_VERSION
    session_id: bytes
    sender: int
    hiding: bytes
    binding: bytes

    def __post_init__(self) -> None:
        f = _Fields("Commitments", *_participant(self.sender))
        f.version(self.version)
        f.session_id(self.session_id)
        f.identifier("sender", self.sender)
        f.blob("hiding", self.hiding, sizes=_ELEMENT_SIZES)
        f.blob("binding", self.binding, sizes=_ELEMENT_SIZES)

    @property
    def commitment(self) -> SigningCommitment:
        return SigningCommitment(self.sender, self.hiding, self.binding)

    def to_bytes(self) -> bytes:
        return jcs.dumps(
            {
                "type": _TAGS[type(self).__name__],
                "version": self.version,
                "session_id": _hex(self.session_id),
                "sender": self.sender,
                "hiding": _hex(self.hiding),
                "binding": _hex(self.binding),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, suite: Suite, *, sender: int | None = None) -> Commitments:
        """Parse S1. `sender` is who the authenticated channel says sent it; blame goes there."""
        f, w, claimed = _from_participant("Commitments", _TAGS[cls.__name__], data, sender)
        w.check(("session_id", "sender", "hiding", "binding"))
        out = cls(
            session_id=f.session_id(w.hex("session_id")),
            sender=claimed,
            hiding=f.element(suite, "hiding", w.hex("hiding")),
            binding=f.element(suite, "binding", w.hex("binding")),
        )
        w.canonical()
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningPackage:
    """S2, coordinator → signers: the message and every participant's commitments, sorted."""

    version: int = PROTOCOL_VERSION
    session_id: bytes
    message: bytes
    commitments: tuple[SigningCommitment, ...]

    def __post_init__(self) -> None:
        f = _Fields("SigningPackage", _COORDINATOR, None)
        f.version(self.version)
        f.session_id(self.session_id)
        f.blob("message", self.message, max_size=MAX_MESSAGE_SIZE)
        if not isinstance(self.commitments, tuple) or not all(
            isinstance(c, SigningCommitment) for c in self.commitments
        ):
            raise f.fail("commitments", "is not a list of commitments")
        if not 1 <= len(self.commitments) <= MAX_SIGNERS:
            raise f.fail("commitments", f"has {len(self.commitments)} entries")
        for n, c in enumerate(self.commitments):
            f.identifier(f"commitments[{n}].identifier", c.identifier)
            f.blob(f"commitments[{n}].hiding", c.hiding, sizes=_ELEMENT_SIZES)
            f.blob(f"commitments[{n}].binding", c.binding, sizes=_ELEMENT_SIZES)

    def to_bytes(self) -> bytes:
        return jcs.dumps(
            {
                "type": _TAGS[type(self).__name__],
                "version": self.version,
                "session_id": _hex(self.session_id),
                "message": _hex(self.message),
                "commitments": [
                    {
                        "identifier": c.identifier,
                        "hiding": _hex(c.hiding),
                        "binding": _hex(c.binding),
                    }
                    for c in self.commitments
                ],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, suite: Suite) -> SigningPackage:
        f = _Fields("SigningPackage", _COORDINATOR, None)
        w = _Wire(_json_object(data, f), data, _TAGS[cls.__name__], f)
        w.check(("session_id", "message", "commitments"))
        entries = w.obj["commitments"]
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_SIGNERS:
            raise f.fail("commitments", f"is not a list of 1 to {MAX_SIGNERS} commitments")
        commitments = []
        for n, entry in enumerate(entries):
            name = f"commitments[{n}]"
            if not isinstance(entry, dict) or set(entry) != {"identifier", "hiding", "binding"}:
                raise f.fail(name, "is not {identifier, hiding, binding}")
            commitments.append(
                SigningCommitment(
                    f.identifier(f"{name}.identifier", entry["identifier"]),
                    f.element(
                        suite, f"{name}.hiding", w.hex_value(f"{name}.hiding", entry["hiding"])
                    ),
                    f.element(
                        suite, f"{name}.binding", w.hex_value(f"{name}.binding", entry["binding"])
                    ),
                )
            )
        out = cls(
            session_id=f.session_id(w.hex("session_id")),
            message=f.blob("message", w.hex("message"), max_size=MAX_MESSAGE_SIZE),
            commitments=tuple(commitments),
        )
        w.canonical()
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureShare:
    """S3, signer → coordinator: participant `sender`'s signature share z_i."""

    version: int = PROTOCOL_VERSION
    session_id: bytes
    sender: int
    share: bytes

    def __post_init__(self) -> None:
        f = _Fields("SignatureShare", *_participant(self.sender))
        f.version(self.version)
        f.session_id(self.session_id)
        f.identifier("sender", self.sender)
        f.blob("share", self.share, sizes=_SCALAR_SIZES)

    def to_bytes(self) -> bytes:
        return jcs.dumps(
            {
                "type": _TAGS[type(self).__name__],
                "version": self.version,
                "session_id": _hex(self.session_id),
                "sender": self.sender,
                "share": _hex(self.share),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, suite: Suite, *, sender: int | None = None) -> SignatureShare:
        """Parse S3. `sender` is who the authenticated channel says sent it; blame goes there."""
        f, w, claimed = _from_participant("SignatureShare", _TAGS[cls.__name__], data, sender)
        w.check(("session_id", "sender", "share"))
        out = cls(
            session_id=f.session_id(w.hex("session_id")),
            sender=claimed,
            share=f.scalar(suite, "share", w.hex("share")),
        )
        w.canonical()
        return out


def _from_participant(
    kind: str, tag: str, data: bytes, peer: int | None
) -> tuple[_Fields, _Wire, int]:
    """Parse a participant's message; blame the authenticated peer, else the claimed sender."""
    origin, culprit = _participant(peer) if peer is not None else ("an unidentified sender", None)
    f = _Fields(kind, origin, culprit)
    obj = _json_object(data, f)
    if peer is None:
        f = _Fields(kind, *_participant(obj.get("sender")))
    claimed = f.identifier("sender", obj.get("sender"))
    if peer is not None and claimed != peer:
        raise f.fail("sender", f"claims participant {claimed}, but participant {peer} sent it")
    return f, _Wire(obj, data, tag, f), claimed


# -- nonce store -----------------------------------------------------------------------------------


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
                "session_id": _hex(self.session_id),
                "suite": self.suite,
                "group_public_key": _hex(self.group_public_key),
                "identifier": self.identifier,
                "participants": list(self.participants),
                "message_sha256": _hex(self.message_digest),
                "hiding_nonce": suite.serialize_scalar(self.nonces.hiding).hex(),
                "binding_nonce": suite.serialize_scalar(self.nonces.binding).hex(),
                "hiding": _hex(self.commitment.hiding),
                "binding": _hex(self.commitment.binding),
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
            obj = json.loads(raw)
            if obj["version"] != PROTOCOL_VERSION or obj["state"] != "ready":
                raise used
            return NonceRecord.from_json(obj)
        except FrostError:
            raise used from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            # Half-wiped or foreign: refusing is always safe, signing might not be.
            raise used from None

    def _write(self, path: Path, data: bytes, *, wipe_old: bool) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
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


# -- signer ----------------------------------------------------------------------------------------


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


class SignerEndpoint(Protocol):
    """How a coordinator reaches a signer: wire bytes in, wire bytes out (in-process or remote)."""

    def handle_round1(self, data: bytes) -> bytes: ...

    def handle_round2(self, data: bytes) -> bytes: ...


class Signer:
    """One participant's side of signing (S1 and S3). Holds the key package; never logs it.

    `check_message(request)` is this party's own policy decision on the SignRequest: return True
    to approve, False (or raise a keysafe error) to refuse. The threshold only proves that two
    parties agreed; each must decide on its own (threshold.md §1.4 S0).
    """

    def __init__(
        self,
        key_package: KeyPackage,
        store: NonceStore,
        *,
        check_message: Callable[[SignRequest], bool],
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._key = key_package
        self._store = store
        self._check_message = check_message
        self._rng = rng

    def __repr__(self) -> str:
        return f"Signer(identifier={self.identifier}, suite={self._key.suite.name})"

    @property
    def identifier(self) -> int:
        return self._key.identifier

    def round1(self, request: SignRequest) -> Commitments:
        """S0 → S1: policy-check the request, then commit to fresh nonces stored durably."""
        if not isinstance(request, SignRequest):
            raise TypeError("round one takes a SignRequest")
        me = self._key.identifier
        if me not in request.participants:
            raise FrostError(
                f"SignRequest from the coordinator: field 'participants' {request.participants} "
                f"does not include this signer (participant {me})"
            )
        unknown = set(request.participants) - set(self._key.public.verifying_shares)
        if unknown:
            raise FrostError(
                "SignRequest from the coordinator: field 'participants' names parties without "
                f"a verifying share: {sorted(unknown)}"
            )
        # Before the policy hook: a replayed request must not reserve budget a second time.
        if request.session_id in self._store:
            raise FrostError(
                "SignRequest from the coordinator: field 'session_id' was seen before",
                next_step="start a new session with a fresh session id",
            )
        if self._check_message(request) is not True:
            raise PolicyDeniedError(
                f"Participant {me}'s policy did not approve this message; nothing was signed.",
                next_step="change the request so that every signer's policy allows it",
            )
        nonces, commitment = signing.commit(self._key, self._rng)
        self._store.put(
            NonceRecord(
                session_id=request.session_id,
                suite=self._key.suite.name,
                group_public_key=self._key.public.group_public_key,
                identifier=me,
                participants=request.participants,
                message_digest=hashlib.sha256(request.message).digest(),
                nonces=nonces,
                commitment=commitment,
            )
        )
        del nonces  # only the store keeps them now
        return Commitments(
            session_id=request.session_id,
            sender=me,
            hiding=commitment.hiding,
            binding=commitment.binding,
        )

    def round2(self, package: SigningPackage) -> SignatureShare:
        """S2 → S3: burn this session's nonces durably, check the package, return z_i."""
        if not isinstance(package, SigningPackage):
            raise TypeError("round two takes a SigningPackage")
        # Marked used before any check or computation: whatever happens next, these nonces
        # never sign anything else (an abort is final for the session).
        record = self._store.take(package.session_id)
        try:
            return self._share(package, record)
        except FrostError as e:
            # At a signer every fault in S2 is the coordinator's to answer for: it has already
            # checked each participant's S1, so naming a participant here could blame an honest one.
            raise FrostError(f"SigningPackage from the coordinator rejected: {e.what}") from None

    def _share(self, package: SigningPackage, record: NonceRecord) -> SignatureShare:
        key = self._key
        me = key.identifier
        if (
            record.identifier != me
            or record.suite != key.suite.name
            or record.group_public_key != key.public.group_public_key
        ):
            raise FrostError("the stored round-one state belongs to another key")
        digest = hashlib.sha256(package.message).digest()
        if not hmac.compare_digest(digest, record.message_digest):
            raise FrostError("field 'message' differs from the message approved in round one")
        ids = tuple(c.identifier for c in package.commitments)
        if ids != record.participants:
            raise FrostError(
                f"field 'commitments' is for participants {ids}, "
                f"the agreed set is {record.participants}"
            )
        own = next(c for c in package.commitments if c.identifier == me)
        if own != record.commitment:
            raise FrostError(f"field 'commitments' changed this signer's (participant {me}) entry")
        z = signing.sign(key, record.nonces, package.message, package.commitments)
        # A fault in our own arithmetic must not leave the process as a bad share.
        signing.verify_signature_share(key.public, me, own, z, package.commitments, package.message)
        return SignatureShare(session_id=package.session_id, sender=me, share=z)

    def abort(self, session_id: bytes) -> None:
        """Burn a session's nonces without signing (the coordinator gave up on it)."""
        with contextlib.suppress(FrostError):
            self._store.take(session_id)

    def handle_round1(self, data: bytes) -> bytes:
        return self.round1(SignRequest.from_bytes(data)).to_bytes()

    def handle_round2(self, data: bytes) -> bytes:
        return self.round2(SigningPackage.from_bytes(data, self._key.suite)).to_bytes()


# -- coordinator -----------------------------------------------------------------------------------


class CoordinatorState(Enum):
    COMMITMENTS = "commitments"  # S0 sent; collecting every participant's S1
    SHARES = "shares"  # S2 sent; collecting every participant's S3
    DONE = "done"  # the signature was aggregated and verified
    ABORTED = "aborted"  # a check failed; the session is over and is never resumed


class Coordinator:
    """Runs one signing session: S0, collect S1, S2, collect and verify S3, aggregate.

    `sender` arguments are the identity the authenticated channel gives the message's origin;
    a message claiming another sender is that channel peer's fault.
    """

    def __init__(
        self,
        public: PublicKeyPackage,
        participants: Sequence[int],
        message: bytes,
        *,
        session_id: bytes | None = None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(set(participants)) != len(participants):
            raise ValueError("participants must be distinct")
        missing = set(participants) - set(public.verifying_shares)
        if missing:
            raise ValueError(f"no verifying share for participants {sorted(missing)}")
        self._public = public
        self._request = SignRequest(
            session_id=session_id if session_id is not None else rng(SESSION_ID_SIZE),
            participants=tuple(sorted(participants)),
            message=bytes(message),
        )
        self._commitments: dict[int, SigningCommitment] = {}
        self._shares: dict[int, bytes] = {}
        self._package: SigningPackage | None = None
        self._state = CoordinatorState.COMMITMENTS
        self._signature: bytes | None = None

    @property
    def state(self) -> CoordinatorState:
        return self._state

    @property
    def session_id(self) -> bytes:
        return self._request.session_id

    @property
    def participants(self) -> tuple[int, ...]:
        return self._request.participants

    def request(self) -> SignRequest:
        """S0, to every participant."""
        return self._request

    @contextlib.contextmanager
    def _abort_on_error(self) -> Iterator[None]:
        if self._state is CoordinatorState.ABORTED:
            raise FrostError("this signing session was aborted earlier")
        try:
            yield
        except BaseException as e:
            self._abort(e)
            raise

    def _abort(self, cause: BaseException) -> None:
        if self._state is not CoordinatorState.ABORTED:  # nested steps log once
            logger.warning(
                "FROST session %s aborted (culprit: %s)",
                self.session_id.hex()[:16],
                getattr(cause, "culprit", None),
            )
        self._state = CoordinatorState.ABORTED

    def _accept(self, kind: str, sender: int, session_id: bytes, state: CoordinatorState) -> None:
        if sender not in self.participants:
            raise FrostError(f"{kind} from a party outside this session", culprit=sender)
        if not hmac.compare_digest(session_id, self.session_id):
            raise FrostError(f"{kind}: field 'session_id' names another session", culprit=sender)
        if self._state is not state:
            raise FrostError(f"{kind} arrived in state {self._state.value}", culprit=sender)

    def add_commitments(self, message: Commitments | bytes, *, sender: int) -> None:
        """S1 from `sender`: checked, then kept; a duplicate aborts the session."""
        suite = self._public.suite
        with self._abort_on_error():
            msg = (
                Commitments.from_bytes(message, suite, sender=sender)
                if isinstance(message, bytes | bytearray)
                else message
            )
            if msg.sender != sender:
                raise FrostError(
                    f"Commitments: field 'sender' claims participant {msg.sender}", culprit=sender
                )
            self._accept("Commitments", sender, msg.session_id, CoordinatorState.COMMITMENTS)
            if sender in self._commitments:
                raise FrostError("Commitments sent twice", culprit=sender)
            f = _Fields("Commitments", f"participant {sender}", sender)
            self._commitments[sender] = SigningCommitment(
                sender,
                f.element(suite, "hiding", msg.hiding),
                f.element(suite, "binding", msg.binding),
            )

    def signing_package(self) -> SigningPackage:
        """S2, to every participant, once all S1 are in."""
        with self._abort_on_error():
            if self._state is not CoordinatorState.COMMITMENTS:
                raise RuntimeError(f"the signing package is built once (state {self._state.value})")
            missing = [i for i in self.participants if i not in self._commitments]
            if missing:
                raise RuntimeError(f"no commitments yet from participants {missing}")
            self._package = SigningPackage(
                session_id=self.session_id,
                message=self._request.message,
                commitments=tuple(self._commitments[i] for i in self.participants),
            )
            self._state = CoordinatorState.SHARES
            return self._package

    def add_share(self, message: SignatureShare | bytes, *, sender: int) -> None:
        """S3 from `sender`: decoded and verified at once, so a bad share names its sender."""
        suite = self._public.suite
        with self._abort_on_error():
            msg = (
                SignatureShare.from_bytes(message, suite, sender=sender)
                if isinstance(message, bytes | bytearray)
                else message
            )
            if msg.sender != sender:
                raise FrostError(
                    f"SignatureShare: field 'sender' claims participant {msg.sender}",
                    culprit=sender,
                )
            self._accept("SignatureShare", sender, msg.session_id, CoordinatorState.SHARES)
            if sender in self._shares:
                raise FrostError("SignatureShare sent twice", culprit=sender)
            package = self._package
            assert package is not None  # state SHARES is only entered with a package
            signing.verify_signature_share(
                self._public, sender, self._commitments[sender], msg.share,
                package.commitments, package.message,
            )  # fmt: skip
            self._shares[sender] = msg.share

    def signature(self) -> bytes:
        """Aggregate once every share is in; the result has been verified (for Ed25519 also by
        libsodium) before it is returned."""
        if self._signature is not None:
            return self._signature
        with self._abort_on_error():
            if self._state is not CoordinatorState.SHARES:
                raise RuntimeError(f"no signature in state {self._state.value}")
            missing = [i for i in self.participants if i not in self._shares]
            if missing:
                raise RuntimeError(f"no signature share yet from participants {missing}")
            package = self._package
            assert package is not None  # state SHARES is only entered with a package
            self._signature = signing.aggregate(
                self._public, package.commitments, package.message, self._shares
            )
            self._state = CoordinatorState.DONE
            return self._signature

    def run(self, parties: Mapping[int, SignerEndpoint]) -> bytes:
        """The whole session over `parties[i]` (endpoints for every participant)."""
        with self._abort_on_error():
            request = self._request.to_bytes()
            for i in self.participants:
                self.add_commitments(parties[i].handle_round1(request), sender=i)
            package = self.signing_package().to_bytes()
            for i in self.participants:
                self.add_share(parties[i].handle_round2(package), sender=i)
            return self.signature()
