"""A participant's side of a FROST signing session (S1 and S3): policy-check the request, commit
to fresh nonces kept in a `NonceStore`, and sign in round two only the very message it approved,
for exactly the participant set it agreed to, with its own commitment unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Protocol

from keysafe.errors import PolicyDeniedError
from keysafe.mpc.frost import signing
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.keys import KeyPackage
from keysafe.mpc.frost.session.messages import (
    Commitments,
    SignatureShare,
    SigningPackage,
    SignRequest,
)
from keysafe.mpc.frost.session.nonces import NonceRecord, NonceStore

__all__ = ["Signer", "SignerEndpoint"]


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
        self._check_request(request)
        me = self._key.identifier
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

    def _check_request(self, request: SignRequest) -> None:
        """This signer is in the session, knows every participant, has not seen the session
        before, and its policy approves the message."""
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
        """S0 bytes in, S1 bytes out (`SignerEndpoint`)."""
        return self.round1(SignRequest.from_bytes(data)).to_bytes()

    def handle_round2(self, data: bytes) -> bytes:
        """S2 bytes in, S3 bytes out (`SignerEndpoint`)."""
        return self.round2(SigningPackage.from_bytes(data, self._key.suite)).to_bytes()
