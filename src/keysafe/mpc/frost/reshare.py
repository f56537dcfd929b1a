"""One protocol for refreshing a 2-of-3 FROST key and for replacing a lost or compromised share
(threshold.md §4, "Recommended single protocol"): redistribution after Desmedt–Jajodia and
Wong–Wang–Wing, the generalisation of the HJKY proactive refresh ZF ships as `refresh_dkg_*`.

A quorum Q of two current holders re-deals the same secret to the three identifiers without
anyone ever holding it:

    deal     (each dealer i ∈ Q)  a_i = λ_i^Q·x_i, random b_i, g_i(z) = a_i + b_i·z
             → ReshareCommitment  broadcast   D_i0 = a_i·G, D_i1 = b_i·G
             → ReshareShare       p2p, secret g_i(k) for each new holder k ∈ {1, 2, 3}
    receive  (each new holder k)  D_i0 == λ_i^Q·X_i (the dealer re-dealt its real share),
                                  Σ D_i0 == PK, g_i(k)·G == D_i0 + k·D_i1;
                                  x'_k = Σ g_i(k), X'_j = Σ (D_i0 + j·D_i1)
             → ReshareConfirmation broadcast  echo of every commitment + H(sid, PK, X'_1..3)
    finish   all three confirmations equal: only now may the new share be used and the old
             one be deleted.

Refresh is a run with the three current holders; eviction (e.g. a compromised agent) is a run
whose quorum leaves the evicted party out, with a fresh device receiving identifier 1. The group
key never changes. The threshold cannot change either: every commitment has exactly two points
and every message states threshold 2 (the check ZF added in frost 2.2.0 for refresh).

Old shares stay dangerous until deleted: an old share and a new one do not combine (different
polynomials), but two old shares still do (ZF book caveat). Delete only after `finish`.

`repair_step1/2/3` are the Laing–Stinson repairable threshold scheme with ZF `keys::repairable`
semantics; they rebuild the *same* share, so use them only when the lost device is known to be
destroyed. Unlike ZF, step 3 checks the result against the verifying share.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from keysafe.mpc.frost.confirmations import (
    check_confirmation_digests,
    check_confirmation_headers,
    compare_echoes,
    echo_digest,
)
from keysafe.mpc.frost.dkg import Rng, commitment_at, random_scalar
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import Suite
from keysafe.mpc.frost.key_messages import DIGEST_LEN, KeyMessage, Reader, check_scalar, fail, shown
from keysafe.mpc.frost.keys import MIN_SIGNERS, PARTIES, KeyPackage, PublicKeyPackage, lagrange

__all__ = [
    "ReshareCommitment",
    "ReshareConfirmation",
    "ReshareShare",
    "deal",
    "finish",
    "receive",
    "repair_step1",
    "repair_step2",
    "repair_step3",
]

COMMIT: Final = "keysafe/frost/reshare/commit"
SHARE: Final = "keysafe/frost/reshare/share"
CONFIRM: Final = "keysafe/frost/reshare/confirm"

logger = logging.getLogger(__name__)


def _check_quorum(quorum: Sequence[int], *, kind: str, culprit: int | None) -> tuple[int, int]:
    q = tuple(quorum)
    if len(q) != MIN_SIGNERS or len(set(q)) != len(q) or any(i not in PARTIES for i in q):
        fail(kind, f"quorum {shown(q)} is not {MIN_SIGNERS} distinct participants", culprit)
    if list(q) != sorted(q):
        fail(kind, f"quorum {q!r} is not in ascending order", culprit)
    return q[0], q[1]


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReshareCommitment(KeyMessage):
    """Broadcast by a dealer: Feldman commitments (D_i0, D_i1) to g_i."""

    KIND: ClassVar[str] = COMMIT
    FIELDS: ClassVar[tuple[str, ...]] = ("quorum", "threshold", "commitments")

    quorum: tuple[int, int]
    commitments: tuple[bytes, bytes]
    threshold: int = MIN_SIGNERS

    def _check_fields(self) -> None:
        c = self.sender
        _check_quorum(self.quorum, kind=COMMIT, culprit=c)
        if self.sender not in self.quorum:
            self._refuse(f"dealer {c} is not in the quorum {self.quorum}")
        if self.threshold != MIN_SIGNERS:
            self._refuse(f"threshold {self.threshold!r}; resharing cannot change it")
        # A longer commitment is a higher-degree polynomial: a silent threshold change.
        self._check_commitment(
            self.commitments, "D", f"a threshold-{MIN_SIGNERS} commitment has {MIN_SIGNERS} points"
        )

    def to_bytes(self) -> bytes:
        return self._wire(
            quorum=list(self.quorum),
            threshold=self.threshold,
            commitments=[p.hex() for p in self.commitments],
        )

    @classmethod
    def _read(cls, r: Reader) -> Self:
        points = r.array("commitments", MIN_SIGNERS)
        quorum = _check_quorum(r.ids("quorum"), kind=COMMIT, culprit=r.sender)
        return cls(
            suite=r.suite,
            session_id=r.session_id,
            sender=r.sender,
            quorum=quorum,
            commitments=(r.element("commitments", points[0]), r.element("commitments", points[1])),
            threshold=r.integer("threshold"),
        )


@dataclass(frozen=True, slots=True, repr=False)
class ReshareShare(KeyMessage):
    """Sent by a dealer to one new holder over a confidential channel: g_sender(receiver)."""

    KIND: ClassVar[str] = SHARE
    FIELDS: ClassVar[tuple[str, ...]] = ("receiver", "share")

    receiver: int
    share: int

    def _check_fields(self) -> None:
        # A dealer is also a new holder, so it may address a share to itself.
        if self.receiver not in PARTIES:
            self._refuse(f"receiver {self.receiver!r} is not a participant")
        self._check_scalar(self.share, "share")

    def __repr__(self) -> str:  # the share is secret
        return f"ReshareShare(sender={self.sender}, receiver={self.receiver}, share=<redacted>)"

    def to_bytes(self) -> bytes:
        return self._wire(
            receiver=self.receiver, share=self.suite.serialize_scalar(self.share).hex()
        )

    @classmethod
    def _read(cls, r: Reader) -> Self:
        return cls(r.suite, r.session_id, r.sender, r.receiver(), r.scalar("share"))


@dataclass(frozen=True, slots=True)
class ReshareConfirmation(KeyMessage):
    """Broadcast by every new holder: what it saw (echo) and what it computed (digest)."""

    KIND: ClassVar[str] = CONFIRM
    FIELDS: ClassVar[tuple[str, ...]] = ("echo", "digest")

    echo: dict[int, bytes]
    digest: bytes

    def _check_fields(self) -> None:
        if not isinstance(self.echo, dict) or len(self.echo) != MIN_SIGNERS:
            self._refuse(f"the echo must cover the {MIN_SIGNERS} dealers")
        _check_quorum(sorted(self.echo), kind=CONFIRM, culprit=self.sender)
        for i, d in self.echo.items():
            self._check_digest(d, f"echo[{i}]")
        self._check_digest(self.digest, "digest")

    def to_bytes(self) -> bytes:
        return self._wire(
            echo={str(i): d.hex() for i, d in sorted(self.echo.items())},
            digest=self.digest.hex(),
        )

    @classmethod
    def _read(cls, r: Reader) -> Self:
        return cls(
            r.suite, r.session_id, r.sender, r.digests("echo"), r.hexbytes("digest", DIGEST_LEN)
        )


# -- the protocol -------------------------------------------------------------------------------


def deal(
    key_package: KeyPackage,
    *,
    quorum: Sequence[int],
    session_id: bytes,
    rng: Rng = secrets.token_bytes,
) -> tuple[ReshareCommitment, dict[int, ReshareShare]]:
    """Re-deal our share λ_i^Q·x_i to the three identifiers (ourselves included).

    Nothing secret needs keeping afterwards: b_i lives only in the shares just produced. `rng`
    is read once, for b_i. The old share stays in use until `finish` succeeds.
    """
    me, suite = key_package.identifier, key_package.suite
    q = _check_quorum(quorum, kind=COMMIT, culprit=None)
    if me not in q:
        raise FrostError(f"participant {me} is not in the quorum {q} and cannot deal")
    if suite.base_mul(key_package.signing_share) != key_package.public.verifying_shares[me]:
        raise FrostError("our share does not match our verifying share; refusing to deal it")
    a = lagrange(suite, me, q) * key_package.signing_share % suite.order
    b = random_scalar(suite, rng)
    commitment = ReshareCommitment(suite, session_id, me, q, (suite.base_mul(a), suite.base_mul(b)))
    shares = {k: ReshareShare(suite, session_id, me, k, (a + b * k) % suite.order) for k in PARTIES}
    return commitment, shares


def receive(
    identifier: int,
    old_public: PublicKeyPackage,
    *,
    quorum: Sequence[int],
    session_id: bytes,
    commitments: Mapping[int, ReshareCommitment],
    shares: Mapping[int, ReshareShare],
) -> tuple[KeyPackage, ReshareConfirmation]:
    """Check each dealer's commitment and share, then build our new share and the new public
    package (same group key). `old_public` is the wallet's current public package, which a
    replacement device gets from the wallet record; `commitments` and `shares` map each dealer,
    as the authenticated channel established it, to what it sent.

    The KeyPackage is inert until `finish` accepts all three confirmations.
    """
    suite = old_public.suite
    if identifier not in PARTIES:
        raise FrostError(f"identifier {identifier!r} is not one of the participants {PARTIES}")
    q = _check_quorum(quorum, kind=COMMIT, culprit=None)
    for name, received in (("commitment", commitments), ("share", shares)):
        if extra := sorted(set(received) - set(q)):
            # A participant outside the quorum has no business dealing in this session.
            raise FrostError(
                f"reshare {name} from {extra[0]!r}, which is not a dealer",
                culprit=extra[0] if extra[0] in PARTIES else None,
            )
    for i in q:
        _check_deal(i, q, identifier, old_public, session_id, commitments, shares)
    if suite.sum([commitments[i].commitments[0] for i in q]) != old_public.group_public_key:
        # Implied by the per-dealer checks when the old verifying shares are consistent;
        # checked anyway because `old_public` comes from storage, not from this protocol.
        raise FrostError("the dealt constant terms do not add up to the group key")
    key = _new_key(identifier, old_public, [commitments[i] for i in q], [shares[i] for i in q])
    echo = {i: echo_digest(COMMIT, commitments[i].to_bytes()) for i in q}
    digest = key.public.digest(session_id)
    return key, ReshareConfirmation(suite, session_id, identifier, echo, digest)


def _check_deal(
    dealer: int,
    quorum: tuple[int, int],
    identifier: int,
    old_public: PublicKeyPackage,
    session_id: bytes,
    commitments: Mapping[int, ReshareCommitment],
    shares: Mapping[int, ReshareShare],
) -> None:
    """`dealer` sent a commitment and a share for this session and quorum, the share is ours
    and matches the commitment, and the dealer re-dealt its real share: D_i0 == λ_i^Q·X_i."""
    i, suite = dealer, old_public.suite
    if i not in commitments:
        fail(COMMIT, f"no commitment from dealer {i}", i)
    if i not in shares:
        fail(SHARE, f"no share from dealer {i}", i)
    c, s = commitments[i], shares[i]
    c.expect(suite=suite, session_id=session_id, sender=i)
    s.expect(suite=suite, session_id=session_id, sender=i)
    if c.quorum != quorum:
        fail(COMMIT, f"dealt for quorum {c.quorum}, this session's is {quorum}", i)
    if s.receiver != identifier:
        fail(SHARE, f"addressed to {s.receiver}, delivered to {identifier}", i)
    if c.commitments[0] != suite.mul(lagrange(suite, i, quorum), old_public.verifying_shares[i]):
        fail(COMMIT, f"dealer {i} did not re-deal its own share (D_{i}0 != λ_{i}·X_{i})", i)
    if suite.base_mul(s.share) != commitment_at(suite, c.commitments, identifier):
        fail(SHARE, f"share g_{i}({identifier}) does not match its commitment", i)


def _new_key(
    identifier: int,
    old_public: PublicKeyPackage,
    commitments: Sequence[ReshareCommitment],
    shares: Sequence[ReshareShare],
) -> KeyPackage:
    """Our new share x'_k = Σ g_i(k) and the new verifying shares X'_j = Σ (D_i0 + j·D_i1),
    under the same group key, from the checked deals of the quorum."""
    suite = old_public.suite
    share = sum(s.share for s in shares) % suite.order
    verifying = {
        k: suite.sum([commitment_at(suite, c.commitments, k) for c in commitments]) for k in PARTIES
    }
    if suite.identity in verifying.values():
        raise FrostError("a new verifying share is the identity")
    if suite.base_mul(share) != verifying[identifier]:
        raise FrostError("our new share does not match our new verifying share")
    return KeyPackage(
        identifier, share, PublicKeyPackage(suite, old_public.group_public_key, verifying)
    )


def finish(
    new_key: KeyPackage,
    confirmations: Mapping[int, ReshareConfirmation],
    *,
    session_id: bytes | None = None,
) -> KeyPackage:
    """Activate the new share once all three holders saw the same commitments and computed
    the same public package. Only after this returns may the old share be deleted."""
    me = new_key.identifier
    sid = check_confirmation_headers(new_key, confirmations, kind=CONFIRM, session_id=session_id)
    for j in PARTIES:
        if j != me:
            compare_echoes(CONFIRM, confirmations[me].echo, confirmations[j].echo, me=me, peer=j)
    # Same commitments but a different result: the confirming party itself is at fault.
    check_confirmation_digests(new_key, confirmations, kind=CONFIRM, sid=sid)
    logger.info("frost reshare confirmed by all participants (%s)", new_key.suite.name)
    return new_key


# -- repairable threshold scheme (Laing–Stinson; ZF keys::repairable) ---------------------------


def _lagrange_at(suite: Suite, i: int, xs: Sequence[int], x: int) -> int:
    num, den = 1, 1
    for j in xs:
        if j != i:
            num = num * (x - j) % suite.order
            den = den * (i - j) % suite.order
    return num * pow(den, -1, suite.order) % suite.order


def repair_step1(
    key_package: KeyPackage,
    *,
    helpers: Sequence[int],
    lost: int,
    rng: Rng = secrets.token_bytes,
) -> dict[int, int]:
    """Helper i splits ζ_i·x_i (ζ_i = Lagrange coefficient of i at the lost identifier) into
    one random δ per helper, ours included; δ_j goes privately to helper j.

    As in ZF, the helpers in ascending order get random values and the last gets the
    remainder, so `rng` is read len(helpers) − 1 times.
    """
    suite, me = key_package.suite, key_package.identifier
    hs = sorted(helpers)
    if len(hs) < MIN_SIGNERS or len(set(hs)) != len(hs) or any(h not in PARTIES for h in hs):
        raise FrostError(f"helpers {list(helpers)!r}: need {MIN_SIGNERS} distinct participants")
    if me not in hs or lost in hs or lost not in PARTIES:
        raise FrostError(f"participant {me} cannot help repair {lost!r} with helpers {hs}")
    total = _lagrange_at(suite, me, hs, lost) * key_package.signing_share % suite.order
    deltas = {h: random_scalar(suite, rng) for h in hs[:-1]}
    deltas[hs[-1]] = (total - sum(deltas.values())) % suite.order
    return deltas


def repair_step2(suite: Suite, deltas: Sequence[int]) -> int:
    """Helper j's σ_j: the sum of the δ it received (its own included); σ_j goes to the
    repairing participant."""
    for d in deltas:
        check_scalar(suite, d, "repair", "delta", None)
    return sum(deltas) % suite.order


def repair_step3(
    suite: Suite, sigmas: Sequence[int], *, identifier: int, public: PublicKeyPackage
) -> KeyPackage:
    """The repairing participant adds the σ; the result must match its verifying share (the
    check ZF leaves out), else some helper lied and the repair is refused."""
    if public.suite is not suite:
        raise FrostError(f"public key package is for {public.suite.name}, not {suite.name}")
    for s in sigmas:
        check_scalar(suite, s, "repair", "sigma", None)
    share = sum(sigmas) % suite.order
    if identifier not in public.verifying_shares:
        raise FrostError(f"no verifying share for participant {identifier!r}")
    if suite.base_mul(share) != public.verifying_shares[identifier]:
        raise FrostError("the repaired share does not match its verifying share")
    return KeyPackage(identifier, share, public)
