"""The binary wire format of DKLs23 messages and the hashes every step shares.

A message is `MAGIC ‖ kind ‖ session id ‖ sender ‖ receiver ‖ body`, where the body is a fixed
sequence of fixed-length fields: no length the peer chooses, so parsing is a sequence of exact
slices and a message of the wrong size is refused before any field is read (threshold.md: strict
lengths). The header binds the message to one session and one direction; a message replayed
into another session or to another party is refused, blaming the authenticated sender.

Hashes are length-prefixed and domain-separated (`transcript_hash`), so no two field lists hash
alike (the ambiguity TSSHOCK exploited).
"""

from __future__ import annotations

import hashlib
from enum import IntEnum
from typing import Final, NoReturn

from keysafe.mpc.dkls.errors import DklsAbort
from keysafe.mpc.frost.errors import InvalidElement
from keysafe.mpc.frost.groups import SECP256K1
from keysafe.mpc.frost.keys import PARTIES, transcript_hash

MAGIC: Final = b"KSDKLS23\x01"
SESSION_ID_LEN: Final = 32
SCALAR_LEN: Final = 32
POINT_LEN: Final = 33
HEADER_LEN: Final = len(MAGIC) + 1 + SESSION_ID_LEN + 2

G: Final = SECP256K1
N: Final = SECP256K1.order


class Kind(IntEnum):
    SETUP1 = 1
    SETUP2 = 2
    SIGN1 = 3
    SIGN2 = 4
    SIGN3 = 5


def pack(kind: Kind, session_id: bytes, sender: int, receiver: int, *fields: bytes) -> bytes:
    if len(session_id) != SESSION_ID_LEN:
        raise ValueError("session id must be 32 bytes")
    return b"".join((MAGIC, bytes([kind, *session_id, sender, receiver]), *fields))


def scalar_bytes(s: int) -> bytes:
    return (s % N).to_bytes(SCALAR_LEN, "big")


class Reader:
    """One received message. Every refusal blames `sender`, the peer the authenticated channel
    says sent it, and says which field was wrong."""

    def __init__(
        self,
        data: bytes,
        *,
        kind: Kind,
        body_len: int,
        session_id: bytes,
        sender: int,
        receiver: int,
    ) -> None:
        self.kind = kind
        self.culprit = sender
        name = kind.name.lower()
        if not isinstance(data, bytes) or len(data) != HEADER_LEN + body_len:
            self.fail(f"{name} message has the wrong length")
        if data[: len(MAGIC)] != MAGIC:
            self.fail(f"{name} message is not a DKLs23 v1 message")
        at = len(MAGIC)
        if data[at] != kind:
            self.fail(f"expected a {name} message, got kind {data[at]}")
        if data[at + 1 : at + 1 + SESSION_ID_LEN] != session_id:
            self.fail(f"{name} message belongs to another session (replayed or misrouted)")
        at += 1 + SESSION_ID_LEN
        if (data[at], data[at + 1]) != (sender, receiver):
            self.fail(
                f"{name} message is addressed {data[at]}→{data[at + 1]}, not {sender}→{receiver}"
            )
        self._data = memoryview(data)
        self._at = HEADER_LEN

    def fail(self, what: str, *, ban: bool = False) -> NoReturn:
        raise DklsAbort(what, culprit=self.culprit, ban=ban)

    def take(self, n: int) -> bytes:
        out = bytes(self._data[self._at : self._at + n])
        self._at += n
        return out

    def scalar(self, what: str) -> int:
        value = int.from_bytes(self.take(SCALAR_LEN), "big")
        if value >= N:
            self.fail(f"{self.kind.name.lower()}: {what} is not below the group order")
        return value

    def point(self, what: str) -> bytes:
        """A canonical compressed secp256k1 point, never the identity."""
        data = self.take(POINT_LEN)
        try:
            return G.deserialize_element(data, what=f"{self.kind.name.lower()}: {what}")
        except InvalidElement as exc:
            self.fail(exc.what)


def read_from_peer(
    data: bytes, kind: Kind, body_len: int, session_id: bytes, peer: int, me: int
) -> Reader:
    """`peer`'s message of `kind` in the pair session `session_id`, addressed to us (`me`)."""
    return Reader(
        data,
        kind=kind,
        body_len=body_len,
        session_id=session_id,
        sender=peer,
        receiver=me,
    )


def hash_to_scalar(tag: bytes, *parts: bytes) -> int:
    """A uniform scalar from a domain-separated transcript (48 bytes reduced: bias < 2^-128)."""
    digest = hashlib.shake_256(transcript_hash(tag, *parts)).digest(48)
    return int.from_bytes(digest, "big") % N


def hash_to_scalars(count: int, tag: bytes, *parts: bytes) -> list[int]:
    stream = hashlib.shake_256(transcript_hash(tag, *parts)).digest(48 * count)
    return [int.from_bytes(stream[48 * i : 48 * i + 48], "big") % N for i in range(count)]


def party_byte(i: int) -> bytes:
    if i not in PARTIES:
        raise ValueError(f"{i!r} is not a party")
    return bytes([i])
