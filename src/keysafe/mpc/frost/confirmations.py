"""The two checks that end a FROST key ceremony (the DKG of `dkg.py`, the reshare of
`reshare.py`) before any new share may be used:

- the echo: each party reports digests of the broadcasts it received, which stops a party from
  showing different broadcasts to different peers;
- the confirmation: each party broadcasts the digest of the public key package it computed,
  which stops one from making honest parties finish with different keys ("key destruction").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import Suite
from keysafe.mpc.frost.key_messages import fail
from keysafe.mpc.frost.keys import PARTIES, KeyPackage, transcript_hash

__all__ = [
    "Confirming",
    "EchoMismatch",
    "check_confirmation_digests",
    "check_confirmation_headers",
    "compare_echoes",
    "echo_digest",
]


class EchoMismatch(FrostError):
    """Two parties saw different broadcasts from a third. With authenticated but unsigned
    channels the equivocator and a lying echoer look alike, so `suspects` names both and
    `culprit` is None."""

    def __init__(self, what: str, *, suspects: tuple[int, ...]) -> None:
        super().__init__(what)
        self.suspects = suspects


class Confirming(Protocol):
    """A confirmation message: who computed which public key package digest, in which session."""

    @property
    def session_id(self) -> bytes: ...
    @property
    def sender(self) -> int: ...
    @property
    def digest(self) -> bytes: ...
    def expect(self, *, suite: Suite, session_id: bytes, sender: int) -> None: ...


def echo_digest(kind: str, message: bytes) -> bytes:
    """The digest of one received broadcast of `kind`, as an echo reports it."""
    return transcript_hash(b"keysafe/frost/echo", kind.encode(), message)


def compare_echoes(
    kind: str, mine: Mapping[int, bytes], theirs: Mapping[int, bytes], *, me: int, peer: int
) -> None:
    """Compare `peer`'s echo with ours (entries are keyed by the broadcaster). Blame is certain
    when the dispute is about our own broadcast (we know what we sent) or the peer's own (it
    contradicts what it sent us). A dispute about a third party's broadcast cannot tell an
    equivocating sender from a lying echoer, so both become suspects and none the culprit.

    Raises:
        FrostError: the echoes differ (`EchoMismatch` when about a third party's broadcast).
    """
    if set(theirs) != set(mine):
        fail(kind, f"echo covers {sorted(theirs)}, expected {sorted(mine)}", peer)
    if me in mine and theirs[me] != mine[me]:
        fail(kind, f"echo does not match the message participant {me} sent", peer)
    if peer in mine and theirs[peer] != mine[peer]:
        fail(kind, f"echo of its own message differs from the one it sent to {me}", peer)
    for j in sorted(mine):
        if theirs[j] != mine[j]:
            raise EchoMismatch(
                f"{kind}: participants {me} and {peer} saw different messages from participant "
                f"{j}; {j} sent inconsistent messages or {peer} misreports them",
                suspects=(j, peer),
            )


def check_confirmation_headers(
    key_package: KeyPackage,
    confirmations: Mapping[int, Confirming],
    *,
    kind: str,
    session_id: bytes | None,
) -> bytes:
    """Every party's confirmation is present and for this session; ours is for this key
    package. Returns the session id (by default, the one in our own confirmation).

    Raises:
        FrostError: a confirmation is missing, extra, or for another session or key.
    """
    me = key_package.identifier
    if missing := sorted(set(PARTIES) - set(confirmations)):
        fail(kind, f"no confirmation from participant {missing[0]}", missing[0])
    if extra := sorted(set(confirmations) - set(PARTIES)):
        raise FrostError(f"{kind}: confirmation from {extra[0]!r}, not a participant")
    own = confirmations[me]
    sid = own.session_id if session_id is None else session_id
    if own.sender != me or own.session_id != sid or own.digest != key_package.public.digest(sid):
        raise FrostError(f"{kind}: our own confirmation is not for this key package")
    for j in PARTIES:
        confirmations[j].expect(suite=key_package.suite, session_id=sid, sender=j)
    return sid


def check_confirmation_digests(
    key_package: KeyPackage, confirmations: Mapping[int, Confirming], *, kind: str, sid: bytes
) -> None:
    """Every party computed our public key package.

    Raises:
        FrostError: one did not (it is the culprit).
    """
    expected = key_package.public.digest(sid)
    for j in PARTIES:
        if confirmations[j].digest != expected:
            fail(kind, f"participant {j} computed a different public key package", j)
