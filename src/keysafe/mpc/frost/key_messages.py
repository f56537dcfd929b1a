"""What every message of the FROST key ceremonies (the DKG of `dkg.py`, the reshare of
`reshare.py`) has in common, and how one is read off the wire.

Each message is typed, versioned, and bound to the suite and the 32-byte session id; the wire
form is canonical JSON (RFC 8785, read by `canonical_json.read_object`), and `Reader` refuses
unknown or missing fields, other versions, other suites, other sessions, wrong lengths, and a
`sender` that is not the authenticated channel. Every refusal is a `FrostError` naming the
message kind and, whenever the evidence allows it, the participant to blame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NoReturn, Self, TypeAlias

from keysafe.crypto import jcs
from keysafe.mpc.frost.canonical_json import CanonicalJsonError, Problem, read_object
from keysafe.mpc.frost.errors import FrostError, InvalidElement, InvalidScalar
from keysafe.mpc.frost.groups import SUITES, Suite
from keysafe.mpc.frost.keys import MIN_SIGNERS, PARTIES

__all__ = [
    "DIGEST_LEN",
    "MAX_WIRE_SIZE",
    "SESSION_ID_LEN",
    "VERSION",
    "KeyMessage",
    "Known",
    "Reader",
    "check_digest",
    "check_element",
    "check_scalar",
    "fail",
    "shown",
]

VERSION: Final = 1
SESSION_ID_LEN: Final = 32
DIGEST_LEN: Final = 32
# The bound of the signing messages (session/messages.py), so that every FROST message has one;
# an honest key-ceremony message is under 1 KiB, and deeper nesting than fits is refused as such.
MAX_WIRE_SIZE: Final = 2 * 64 * 1024 + 4096

Known: TypeAlias = int | None
"""A participant the transport names, or None where it did not say."""

_HEADER: Final = ("type", "version", "suite", "session_id", "sender")
_LOWER_HEX: Final = re.compile(r"(?:[0-9a-f]{2})*")
_FIELD: Final = object()  # "read the value from the named field"
# What each refusal of the canonical-JSON reader says about a key-ceremony message.
_JSON_PROBLEMS: Final = {
    Problem.TOO_LARGE: f"more than {MAX_WIRE_SIZE} bytes",
    Problem.INVALID: "not valid JSON",
    Problem.DUPLICATE_KEY: "not valid JSON",
    Problem.TOO_DEEP: "nested too deep",
    Problem.NOT_OBJECT: "not a JSON object",
    # One encoding per message: echoes hash the bytes, so the same content must not have two
    # spellings.
    Problem.NOT_CANONICAL: "not canonical JSON (RFC 8785)",
}


def fail(kind: str, what: str, culprit: int | None) -> NoReturn:
    """Refuse a message of `kind`, blaming `culprit` (None: nobody can be named)."""
    raise FrostError(f"{kind}: {what}", culprit=culprit)


def shown(value: object) -> str:
    """A peer-supplied value for an error message, cut short: errors reach logs and people."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_culprit(i: object) -> int | None:
    return i if type(i) is int and i in PARTIES else None


def check_element(suite: Suite, point: bytes, kind: str, what: str, culprit: int | None) -> None:
    """`point` is a valid, non-identity element of the suite's prime-order group."""
    if not isinstance(point, bytes):
        fail(kind, f"{what} is not bytes", culprit)
    try:
        suite.deserialize_element(point, what=f"{kind}: {what}")
    except InvalidElement as exc:
        raise InvalidElement(exc.what, culprit=culprit) from None


def check_scalar(suite: Suite, s: int, kind: str, what: str, culprit: int | None) -> None:
    """`s` is an integer below the group order."""
    if type(s) is not int or not 0 <= s < suite.order:
        raise InvalidScalar(
            f"{kind}: {what} is not a scalar below the group order", culprit=culprit
        )


def check_digest(d: bytes, kind: str, what: str, culprit: int | None) -> None:
    """`d` is a 32-byte digest."""
    if not isinstance(d, bytes) or len(d) != DIGEST_LEN:
        fail(kind, f"{what} must be a {DIGEST_LEN}-byte digest", culprit)


@dataclass(frozen=True, slots=True)
class KeyMessage:
    """The header of every DKG and reshare message. A subclass names its `KIND` (the `type` on
    the wire) and `FIELDS` (its own), and checks them in `_check_fields`."""

    KIND: ClassVar[str]
    FIELDS: ClassVar[tuple[str, ...]]

    suite: Suite
    session_id: bytes
    sender: int

    def __post_init__(self) -> None:
        culprit = _as_culprit(self.sender)
        if not isinstance(self.suite, Suite) or SUITES.get(self.suite.name) is not self.suite:
            fail(self.KIND, "unknown ciphersuite", culprit)
        if not isinstance(self.session_id, bytes) or len(self.session_id) != SESSION_ID_LEN:
            fail(self.KIND, f"session_id must be {SESSION_ID_LEN} bytes", culprit)
        if culprit is None:
            fail(
                self.KIND, f"sender {self.sender!r} is not one of the participants {PARTIES}", None
            )
        self._check_fields()

    def _check_fields(self) -> None:
        raise NotImplementedError

    def _refuse(self, what: str) -> NoReturn:
        """Refuse this message, blaming its sender (a participant: the header is checked)."""
        fail(self.KIND, what, self.sender)

    def _check_element(self, point: bytes, what: str) -> None:
        check_element(self.suite, point, self.KIND, what, self.sender)

    def _check_commitment(self, points: object, name: str, wrong_length: str) -> None:
        """A Feldman commitment to a degree-1 polynomial: `MIN_SIGNERS` valid points, each
        called `{name}_{sender}{k}` in errors (`wrong_length` says what a longer one means)."""
        if not isinstance(points, tuple) or len(points) != MIN_SIGNERS:
            self._refuse(wrong_length)
        for k, point in enumerate(points):
            self._check_element(point, f"commitment {name}_{self.sender}{k}")

    def _check_scalar(self, s: int, what: str) -> None:
        check_scalar(self.suite, s, self.KIND, what, self.sender)

    def _check_digest(self, d: bytes, what: str) -> None:
        check_digest(d, self.KIND, what, self.sender)

    def _wire(self, **fields: object) -> bytes:
        """The wire bytes: the header, then `fields`."""
        return jcs.dumps(
            {
                "type": self.KIND,
                "version": VERSION,
                "suite": self.suite.name,
                "session_id": self.session_id.hex(),
                "sender": self.sender,
                **fields,
            }
        )

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        suite: Suite,
        session_id: bytes,
        sender: Known = None,
        receiver: Known = None,
    ) -> Self:
        """Parse a received message of this kind.

        Args:
            data: the bytes received.
            suite: this session's ciphersuite.
            session_id: this session's id.
            sender: who the authenticated channel says sent it (None: the transport did not
                say; blame goes to the sender the message claims).
            receiver: for a message to one party, who it was delivered to (us).

        Raises:
            FrostError: the message is not a well-formed one of this kind for this session.
        """
        if receiver is not None and "receiver" not in cls.FIELDS:
            raise TypeError(f"a {cls.KIND} message is a broadcast, with no receiver")
        reader = Reader(
            data,
            kind=cls.KIND,
            fields=cls.FIELDS,
            suite=suite,
            session_id=session_id,
            sender=sender,
            receiver=receiver,
        )
        return cls._read(reader)

    @classmethod
    def _read(cls, r: Reader) -> Self:
        """The message in `r`, whose header has been checked."""
        raise NotImplementedError

    def expect(self, *, suite: Suite, session_id: bytes, sender: int) -> None:
        """The checks `from_bytes` does against this session, repeated for a message built in
        memory: this suite, this session, and from the channel it came from."""
        if self.suite is not suite:
            fail(self.KIND, f"for suite {self.suite.name}, this session uses {suite.name}", sender)
        if self.session_id != session_id:
            fail(self.KIND, "bound to another session", sender)
        if self.sender != sender:
            fail(self.KIND, f"claims sender {self.sender} but came from {sender}", sender)


class Reader:
    """One received message's JSON object. Every refusal names the field and blames the
    authenticated sender (or, when the transport did not say, the sender the message claims)."""

    def __init__(
        self,
        data: bytes,
        *,
        kind: str,
        fields: tuple[str, ...],
        suite: Suite,
        session_id: bytes,
        sender: int | None,
        receiver: int | None = None,
    ) -> None:
        self.kind, self.suite, self.session_id = kind, suite, session_id
        self.culprit = sender
        self._receiver = receiver
        self.obj: dict[str, Any] = self._parse(data)
        if unknown := sorted(set(self.obj) - {*_HEADER, *fields}):
            self.fail(f"unknown field {shown(unknown[0])}")
        if missing := [f for f in (*_HEADER, *fields) if f not in self.obj]:
            self.fail(f"missing field {missing[0]!r}")
        self.sender: int = self._header(session_id, sender)

    def _parse(self, data: bytes) -> dict[str, Any]:
        try:
            obj = read_object(data, max_size=MAX_WIRE_SIZE)
        except CanonicalJsonError as exc:
            if exc.parsed is not None and self.culprit is None:
                self.culprit = _as_culprit(exc.parsed.get("sender"))
            self.fail(_JSON_PROBLEMS[exc.problem])
        if self.culprit is None:
            self.culprit = _as_culprit(obj.get("sender"))
        return obj

    def _header(self, session_id: bytes, sender: int | None) -> int:
        """The sender the message names, once its type, version, suite and session are ours."""
        obj, kind, suite = self.obj, self.kind, self.suite
        if obj["type"] != kind:
            self.fail(f"field 'type' is {shown(obj['type'])}, expected {kind!r}")
        if self.integer("version") != VERSION:
            self.fail(f"field 'version' is {shown(obj['version'])}, this code speaks {VERSION}")
        if obj["suite"] != suite.name:
            self.fail(f"field 'suite' is {shown(obj['suite'])}, this session uses {suite.name!r}")
        if self.hexbytes("session_id", SESSION_ID_LEN) != session_id:
            self.fail("field 'session_id' is not this session's")
        claimed = self.integer("sender")
        if claimed not in PARTIES:
            self.fail(f"field 'sender' {claimed} is not one of the participants {PARTIES}")
        if sender is not None and claimed != sender:
            self.fail(f"field 'sender' says {claimed} but the message came from {sender}")
        return claimed

    def fail(self, what: str) -> NoReturn:
        fail(self.kind, what, self.culprit)

    def integer(self, name: str) -> int:
        return self._int(name, self.obj[name])

    def _int(self, name: str, value: object) -> int:
        if type(value) is not int:
            self.fail(f"field {name!r} must be an integer")
        return value

    def receiver(self) -> int:
        """The `receiver` field, which must be who the message was delivered to, when known."""
        to = self.integer("receiver")
        if self._receiver is not None and to != self._receiver:
            self.fail(f"field 'receiver' is {to}, but it was delivered to {self._receiver}")
        return to

    def hexbytes(self, name: str, length: int, value: object = _FIELD) -> bytes:
        value = self.obj[name] if value is _FIELD else value
        if not isinstance(value, str) or not _LOWER_HEX.fullmatch(value):
            self.fail(f"field {name!r} must be lower-case hex")
        raw = bytes.fromhex(value)
        if len(raw) != length:
            self.fail(f"field {name!r} has {len(raw)} bytes, expected {length}")
        return raw

    def element(self, name: str, value: object = _FIELD) -> bytes:
        return self.hexbytes(name, self.suite.element_len, value)

    def elements(self, name: str, length: int) -> tuple[bytes, ...]:
        """A list of exactly `length` group elements."""
        return tuple(self.element(name, v) for v in self.array(name, length))

    def scalar(self, name: str) -> int:
        raw = self.hexbytes(name, self.suite.scalar_len)
        try:
            return self.suite.deserialize_scalar(raw, what=f"{self.kind}: field {name!r}")
        except InvalidScalar as exc:
            raise InvalidScalar(exc.what, culprit=self.culprit) from None

    def array(self, name: str, length: int | None = None) -> list[Any]:
        value = self.obj[name]
        if not isinstance(value, list):
            self.fail(f"field {name!r} must be a list")
        if length is not None and len(value) != length:
            self.fail(f"field {name!r} has {len(value)} entries, expected {length}")
        return value

    def ids(self, name: str) -> tuple[int, ...]:
        return tuple(self._int(name, v) for v in self.array(name))

    def digests(self, name: str) -> dict[int, bytes]:
        value = self.obj[name]
        if not isinstance(value, dict):
            self.fail(f"field {name!r} must be an object")
        names = {str(i): i for i in PARTIES}
        out: dict[int, bytes] = {}
        for key, digest in value.items():
            if key not in names:
                self.fail(f"field {name!r} has an entry for {shown(key)}, not a participant")
            out[names[key]] = self.hexbytes(name, DIGEST_LEN, digest)
        return out
