"""The four messages of a FROST signing session (threshold.md §1.4, S0–S3), as typed, versioned
dataclasses bound to a session id, and their wire form: canonical RFC 8785 JSON, bytes as
lowercase hex, with a `type` tag so that a message of one kind never parses as another.

* S0 `SignRequest` coordinator → signers: session id, participants, message;
* S1 `Commitments` signer → coordinator: (D_i, E_i);
* S2 `SigningPackage` coordinator → signers: message and the sorted commitment list;
* S3 `SignatureShare` signer → coordinator: z_i.

Parsing accepts exactly the message's fields (its `type` tag plus those of the dataclass),
version 1, JSON types, hex lengths, group elements and scalars of the suite, and one canonical
byte string per message (`canonical_json.read_object`); every failure is a `FrostError` that
names the message, the field and the sender. Building a message in memory runs the same field
checks, so a message that exists is one that could have come off the wire.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Final

from keysafe.crypto import jcs
from keysafe.mpc.frost.canonical_json import CanonicalJsonError, Problem, read_object
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import SUITES, Suite
from keysafe.mpc.frost.keys import MAX_SIGNERS, MIN_SIGNERS, PARTIES
from keysafe.mpc.frost.signing import SigningCommitment

__all__ = [
    "MAX_MESSAGE_SIZE",
    "PROTOCOL_VERSION",
    "SESSION_ID_SIZE",
    "Commitments",
    "SignRequest",
    "SignatureShare",
    "SigningPackage",
]

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
# What each refusal of the canonical-JSON reader says about a signing message.
_JSON_PROBLEMS: Final = {
    Problem.INVALID: "is not valid JSON",
    Problem.TOO_DEEP: "is not valid JSON",
    Problem.NOT_OBJECT: "is not a JSON object",
    Problem.NOT_CANONICAL: "is not canonical JSON (RFC 8785)",
}


# -- field checks shared by the dataclasses and the wire parser ---------------------------------


class Fields:
    """Checks one message's fields; every failure names the message, its origin and the field."""

    def __init__(self, kind: str, origin: str, culprit: int | None) -> None:
        self.kind, self.origin, self.culprit = kind, origin, culprit

    @classmethod
    def of_participant(cls, kind: str, sender: object) -> Fields:
        """The checks of a message from participant `sender` (blamed if it is one)."""
        if type(sender) is int and sender in PARTIES:
            return cls(kind, f"participant {sender}", sender)
        return cls(kind, "an unidentified sender", None)

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

    def header(self, message: _Message) -> None:
        """The fields every message has."""
        self.version(message.version)
        self.session_id(message.session_id)

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

    def message(self, value: object) -> bytes:
        return self.blob("message", value, max_size=MAX_MESSAGE_SIZE)

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


# -- wire parsing --------------------------------------------------------------------------------


def _json_object(data: bytes, f: Fields, *, blame_claimed: bool) -> dict[str, Any]:
    """The canonical JSON object in `data`. With `blame_claimed` (a participant's message that
    no authenticated channel attributes) a non-canonical one blames the sender it claims."""
    try:
        return read_object(data, max_size=_MAX_WIRE_SIZE)
    except CanonicalJsonError as exc:
        if exc.problem is Problem.TOO_LARGE:
            raise f.fail(None, f"is {len(data)} bytes, more than {_MAX_WIRE_SIZE}") from None
        if exc.problem is Problem.DUPLICATE_KEY:
            raise f.fail(exc.key, "appears twice") from None
        if blame_claimed and exc.parsed is not None:
            f = Fields.of_participant(f.kind, exc.parsed.get("sender"))
        raise f.fail(None, _JSON_PROBLEMS[exc.problem]) from None


class _Wire:
    """One received message's JSON object, read as the message class `kind`."""

    def __init__(self, obj: dict[str, Any], kind: str, f: Fields, fields: tuple[str, ...]) -> None:
        self.obj, self.f = obj, f
        expected = {"type", "version", "session_id", *fields}
        tag = _TAGS[kind]
        if obj.get("type") != tag:
            raise f.fail("type", f"is {obj.get('type')!r}, expected {tag!r}")
        for key in sorted(set(obj) - expected):
            raise f.fail(key, "is not a field of this message")
        for key in sorted(expected - set(obj)):
            raise f.fail(key, "is missing")
        f.version(obj["version"])

    @classmethod
    def from_coordinator(cls, kind: str, data: bytes, fields: tuple[str, ...]) -> _Wire:
        f = Fields(kind, _COORDINATOR, None)
        return cls(_json_object(data, f, blame_claimed=False), kind, f, fields)

    @classmethod
    def from_participant(
        cls, kind: str, data: bytes, peer: int | None, fields: tuple[str, ...]
    ) -> tuple[_Wire, int]:
        """Parse a participant's message; blame the authenticated peer, else the claimed sender.
        Returns the reader and the sender the message names (the peer, when one is given)."""
        f = Fields.of_participant(kind, peer)
        obj = _json_object(data, f, blame_claimed=peer is None)
        if peer is None:
            f = Fields.of_participant(kind, obj.get("sender"))
        claimed = f.identifier("sender", obj.get("sender"))
        if peer is not None and claimed != peer:
            raise f.fail("sender", f"claims participant {claimed}, but participant {peer} sent it")
        return cls(obj, kind, f, ("sender", *fields)), claimed

    def hex(self, field: str) -> bytes:
        return self.hex_value(field, self.obj[field])

    def hex_value(self, field: str, raw: object) -> bytes:
        if not isinstance(raw, str) or not _HEX.fullmatch(raw):
            raise self.f.fail(field, "is not lowercase hex")
        return bytes.fromhex(raw)

    def session_id(self) -> bytes:
        return self.f.session_id(self.hex("session_id"))

    def element(self, suite: Suite, field: str) -> bytes:
        return self.f.element(suite, field, self.hex(field))


# -- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Message:
    """What every message has: the protocol version and the session it belongs to."""

    version: int = PROTOCOL_VERSION
    session_id: bytes

    def _wire(self, **fields: object) -> bytes:
        """The wire bytes: this message's tag, version and session id, then `fields`."""
        return jcs.dumps(
            {
                "type": _TAGS[type(self).__name__],
                "version": self.version,
                "session_id": self.session_id.hex(),
                **fields,
            }
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class _FromParticipant(_Message):
    """What a participant's message (S1, S3) adds: its sender."""

    sender: int

    def _checked_header(self) -> Fields:
        """Check the header and the sender; the checks of the other fields, which blame it."""
        f = Fields.of_participant(type(self).__name__, self.sender)
        f.header(self)
        f.identifier("sender", self.sender)
        return f


@dataclass(frozen=True, slots=True, kw_only=True)
class SignRequest(_Message):
    """S0, coordinator → signers: sign `message` in session `session_id` with `participants`."""

    participants: tuple[int, ...]
    message: bytes

    def __post_init__(self) -> None:
        f = Fields("SignRequest", _COORDINATOR, None)
        f.header(self)
        f.participants(self.participants)
        f.message(self.message)

    def to_bytes(self) -> bytes:
        return self._wire(participants=list(self.participants), message=self.message.hex())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignRequest:
        w = _Wire.from_coordinator(cls.__name__, data, ("participants", "message"))
        participants = w.obj["participants"]
        if not isinstance(participants, list):
            raise w.f.fail("participants", "is not a list")
        return cls(
            session_id=w.session_id(),
            participants=w.f.participants(tuple(participants)),
            message=w.f.message(w.hex("message")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Commitments(_FromParticipant):
    """S1, signer → coordinator: participant `sender`'s nonce commitments (D, E)."""

    hiding: bytes
    binding: bytes

    def __post_init__(self) -> None:
        f = self._checked_header()
        f.blob("hiding", self.hiding, sizes=_ELEMENT_SIZES)
        f.blob("binding", self.binding, sizes=_ELEMENT_SIZES)

    @property
    def commitment(self) -> SigningCommitment:
        return SigningCommitment(self.sender, self.hiding, self.binding)

    def to_bytes(self) -> bytes:
        return self._wire(sender=self.sender, hiding=self.hiding.hex(), binding=self.binding.hex())

    @classmethod
    def from_bytes(cls, data: bytes, suite: Suite, *, sender: int | None = None) -> Commitments:
        """Parse S1. `sender` is who the authenticated channel says sent it; blame goes there."""
        w, claimed = _Wire.from_participant(cls.__name__, data, sender, ("hiding", "binding"))
        return cls(
            session_id=w.session_id(),
            sender=claimed,
            hiding=w.element(suite, "hiding"),
            binding=w.element(suite, "binding"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningPackage(_Message):
    """S2, coordinator → signers: the message and every participant's commitments, sorted."""

    message: bytes
    commitments: tuple[SigningCommitment, ...]

    def __post_init__(self) -> None:
        f = Fields("SigningPackage", _COORDINATOR, None)
        f.header(self)
        f.message(self.message)
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
        entries = [
            {"identifier": c.identifier, "hiding": c.hiding.hex(), "binding": c.binding.hex()}
            for c in self.commitments
        ]
        return self._wire(message=self.message.hex(), commitments=entries)

    @classmethod
    def from_bytes(cls, data: bytes, suite: Suite) -> SigningPackage:
        w = _Wire.from_coordinator(cls.__name__, data, ("message", "commitments"))
        entries = w.obj["commitments"]
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_SIGNERS:
            raise w.f.fail("commitments", f"is not a list of 1 to {MAX_SIGNERS} commitments")
        commitments = tuple(_commitment(w, suite, n, e) for n, e in enumerate(entries))
        return cls(
            session_id=w.session_id(),
            message=w.f.message(w.hex("message")),
            commitments=commitments,
        )


def _commitment(w: _Wire, suite: Suite, n: int, entry: object) -> SigningCommitment:
    """Entry `n` of a SigningPackage's commitment list."""
    name = f"commitments[{n}]"
    if not isinstance(entry, dict) or set(entry) != {"identifier", "hiding", "binding"}:
        raise w.f.fail(name, "is not {identifier, hiding, binding}")
    identifier = w.f.identifier(f"{name}.identifier", entry["identifier"])
    points = [
        w.f.element(suite, f"{name}.{part}", w.hex_value(f"{name}.{part}", entry[part]))
        for part in ("hiding", "binding")
    ]
    return SigningCommitment(identifier, *points)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureShare(_FromParticipant):
    """S3, signer → coordinator: participant `sender`'s signature share z_i."""

    share: bytes

    def __post_init__(self) -> None:
        self._checked_header().blob("share", self.share, sizes=_SCALAR_SIZES)

    def to_bytes(self) -> bytes:
        return self._wire(sender=self.sender, share=self.share.hex())

    @classmethod
    def from_bytes(cls, data: bytes, suite: Suite, *, sender: int | None = None) -> SignatureShare:
        """Parse S3. `sender` is who the authenticated channel says sent it; blame goes there."""
        w, claimed = _Wire.from_participant(cls.__name__, data, sender, ("share",))
        return cls(
            session_id=w.session_id(),
            sender=claimed,
            share=w.f.scalar(suite, "share", w.hex("share")),
        )
