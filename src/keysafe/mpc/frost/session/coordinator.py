"""The coordinator of a FROST signing session: S0, collect S1, S2, collect and verify S3,
aggregate. It accepts each message only from the participant it claims to be from (the
transport authenticates `sender`), verifies every share on arrival (identifiable abort), and
returns only a signature that verifies, for Ed25519 also under libsodium. Every failure aborts
the session for good; nothing is retried with the same nonces."""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from enum import Enum
from typing import TypeVar

from keysafe.mpc.frost import signing
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.keys import PublicKeyPackage
from keysafe.mpc.frost.session.messages import (
    SESSION_ID_SIZE,
    Commitments,
    Fields,
    SignatureShare,
    SigningPackage,
    SignRequest,
)
from keysafe.mpc.frost.session.signer import SignerEndpoint
from keysafe.mpc.frost.signing import SigningCommitment

__all__ = ["Coordinator", "CoordinatorState"]

logger = logging.getLogger(__name__)

# A message a participant sends the coordinator.
_FromSigner = TypeVar("_FromSigner", Commitments, SignatureShare)


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

    def _admit(
        self,
        cls: type[_FromSigner],
        message: _FromSigner | bytes,
        sender: int,
        state: CoordinatorState,
        seen: Collection[int],
    ) -> _FromSigner:
        """`sender`'s message, decoded if need be: its own, for this session, expected in
        `state`, and the first of its kind from it (`seen` are those already in)."""
        kind = cls.__name__
        msg = (
            cls.from_bytes(message, self._public.suite, sender=sender)
            if isinstance(message, bytes | bytearray)
            else message
        )
        if msg.sender != sender:
            raise FrostError(
                f"{kind}: field 'sender' claims participant {msg.sender}", culprit=sender
            )
        if sender not in self.participants:
            raise FrostError(f"{kind} from a party outside this session", culprit=sender)
        if not hmac.compare_digest(msg.session_id, self.session_id):
            raise FrostError(f"{kind}: field 'session_id' names another session", culprit=sender)
        if self._state is not state:
            raise FrostError(f"{kind} arrived in state {self._state.value}", culprit=sender)
        if sender in seen:
            raise FrostError(f"{kind} sent twice", culprit=sender)
        return msg

    def _require(
        self, state: CoordinatorState, wrong_state: str, received: Collection[int], what: str
    ) -> None:
        """A step the caller may take only in `state` with every participant's `what` in
        (`received`); anything else is the caller's bug, not a participant's fault."""
        if self._state is not state:
            raise RuntimeError(wrong_state)
        missing = [i for i in self.participants if i not in received]
        if missing:
            raise RuntimeError(f"no {what} yet from participants {missing}")

    def _sent_package(self) -> SigningPackage:
        package = self._package
        assert package is not None  # state SHARES is only entered with a package
        return package

    def add_commitments(self, message: Commitments | bytes, *, sender: int) -> None:
        """S1 from `sender`: checked, then kept; a duplicate aborts the session."""
        suite = self._public.suite
        with self._abort_on_error():
            state = CoordinatorState.COMMITMENTS
            msg = self._admit(Commitments, message, sender, state, self._commitments)
            f = Fields("Commitments", f"participant {sender}", sender)
            self._commitments[sender] = SigningCommitment(
                sender,
                f.element(suite, "hiding", msg.hiding),
                f.element(suite, "binding", msg.binding),
            )

    def signing_package(self) -> SigningPackage:
        """S2, to every participant, once all S1 are in."""
        with self._abort_on_error():
            self._require(
                CoordinatorState.COMMITMENTS,
                f"the signing package is built once (state {self._state.value})",
                self._commitments,
                "commitments",
            )
            self._package = SigningPackage(
                session_id=self.session_id,
                message=self._request.message,
                commitments=tuple(self._commitments[i] for i in self.participants),
            )
            self._state = CoordinatorState.SHARES
            return self._package

    def add_share(self, message: SignatureShare | bytes, *, sender: int) -> None:
        """S3 from `sender`: decoded and verified at once, so a bad share names its sender."""
        with self._abort_on_error():
            msg = self._admit(
                SignatureShare, message, sender, CoordinatorState.SHARES, self._shares
            )
            package = self._sent_package()
            signing.verify_signature_share(
                self._public,
                sender,
                self._commitments[sender],
                msg.share,
                package.commitments,
                package.message,
            )
            self._shares[sender] = msg.share

    def signature(self) -> bytes:
        """Aggregate once every share is in; the result has been verified (for Ed25519 also by
        libsodium) before it is returned."""
        if self._signature is not None:
            return self._signature
        with self._abort_on_error():
            self._require(
                CoordinatorState.SHARES,
                f"no signature in state {self._state.value}",
                self._shares,
                "signature share",
            )
            package = self._sent_package()
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
