"""Key generation for a 2-of-3 FROST wallet without a trusted dealer: the Pedersen DKG with
proofs of knowledge (FROST paper, Figure 1; the design of ZF `frost-core` `keys::dkg`), plus an
echo of round one and a confirmation round (threshold.md §1.4, K1–K3).

    part1  → Round1Package  broadcast       C_i = [a_i0·G, a_i1·G], PoK (R_i, μ_i)
    part2  → Round2Package  p2p, secret     f_i(j), echo = digests of the three round-1 packages
    part3  → Confirmation   broadcast       H(sid, PK, X_1, X_2, X_3)
    finish                  the KeyPackage may be used only when all three confirmations match

Rules every party enforces (any failure is a `FrostError`, final for the session, naming the
participant to blame whenever the evidence allows it):

- Each message is typed, versioned, and bound to the suite and the 32-byte session id; the
  wire form is canonical JSON (RFC 8785) and parsing refuses unknown or missing fields, other
  versions, other sessions, wrong lengths, and a `sender` that is not the authenticated channel.
- Every received point is canonical, in the prime-order group and not the identity (so no
  C_j0 = O, no rogue zero coefficient); every scalar is below the group order.
- The PoK challenge is c = HDKG(ser(i) ‖ ser(C_i0) ‖ ser(R_i)) exactly as ZF computes it, so
  ZF's `vectors_dkg.json` reproduce byte for byte; the session binding comes from the echo and
  the confirmation, which cover the session id.
- The echo stops a party from showing different round-one packages to different peers; the
  confirmation stops one from making honest parties finish with different keys ("key
  destruction"). A KeyPackage from `part3` is inert until `finish` accepts it.
- Nobody ever computes the group secret: only shares, verifying shares and the group key.

Example (a test drives the three parties in one process; real parties exchange `to_bytes()`):

    s1, p1 = part1(ED25519, AGENT, sid, secrets.token_bytes)           # each party
    s2, shares = part2(s1, {USER: p_user, RECOVERY: p_recovery})       # shares[j] → party j
    key, confirmation = part3(s2, {USER: p_user, RECOVERY: p_recovery}, received_shares)
    key = finish(key, {AGENT: confirmation, USER: c_user, RECOVERY: c_recovery})
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, Self, TypeAlias

from keysafe.mpc.frost.confirmations import (
    check_confirmation_digests,
    check_confirmation_headers,
    compare_echoes,
    echo_digest,
)
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import Suite
from keysafe.mpc.frost.key_messages import DIGEST_LEN, KeyMessage, Reader, fail, shown
from keysafe.mpc.frost.keys import MIN_SIGNERS, PARTIES, KeyPackage, PublicKeyPackage

__all__ = [
    "Confirmation",
    "Rng",
    "Round1Package",
    "Round1Secret",
    "Round2Package",
    "Round2Secret",
    "finish",
    "part1",
    "part2",
    "part3",
    "random_scalar",
]

logger = logging.getLogger(__name__)

Rng: TypeAlias = Callable[[int], bytes]
"""`rng(n)` returns n uniformly random bytes (`secrets.token_bytes`); tests inject their own."""

ROUND1: Final = "keysafe/frost/dkg/round1"
ROUND2: Final = "keysafe/frost/dkg/round2"
CONFIRM: Final = "keysafe/frost/dkg/confirm"


def random_scalar(suite: Suite, rng: Rng) -> int:
    """A uniform non-zero scalar: 64 bytes from `rng`, big-endian, reduced mod the order.

    64 bytes, not 32, keep the modular bias below 2^-250 for both orders; a test that wants a
    given scalar s feeds `s.to_bytes(64, "big")`.
    """
    while True:
        data = rng(64)
        if len(data) != 64:
            raise ValueError("the random source returned the wrong number of bytes")
        k = int.from_bytes(data, "big") % suite.order
        if k:
            return k


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Round1Package(KeyMessage):
    """K1, broadcast: the Feldman commitment to f_i and the proof of knowledge of a_i0."""

    KIND: ClassVar[str] = ROUND1
    FIELDS: ClassVar[tuple[str, ...]] = (
        "participants",
        "threshold",
        "commitments",
        "proof_r",
        "proof_mu",
    )

    commitments: tuple[bytes, bytes]
    proof_r: bytes
    proof_mu: int
    participants: tuple[int, ...] = PARTIES
    threshold: int = MIN_SIGNERS

    def _check_fields(self) -> None:
        if tuple(self.participants) != PARTIES:
            self._refuse(f"participants {shown(self.participants)}, this wallet has {PARTIES}")
        if self.threshold != MIN_SIGNERS:
            self._refuse(f"threshold {shown(self.threshold)}, this wallet needs {MIN_SIGNERS}")
        self._check_commitment(
            self.commitments, "C", f"a degree-{MIN_SIGNERS - 1} commitment has {MIN_SIGNERS} points"
        )
        self._check_element(self.proof_r, "proof R")
        self._check_scalar(self.proof_mu, "proof mu")

    @property
    def proof(self) -> bytes:
        """R ‖ μ, ZF's serialization of the proof of knowledge."""
        return self.proof_r + self.suite.serialize_scalar(self.proof_mu)

    def to_bytes(self) -> bytes:
        return self._wire(
            participants=list(self.participants),
            threshold=self.threshold,
            commitments=[p.hex() for p in self.commitments],
            proof_r=self.proof_r.hex(),
            proof_mu=self.suite.serialize_scalar(self.proof_mu).hex(),
        )

    @classmethod
    def _read(cls, r: Reader) -> Self:
        c0, c1 = r.elements("commitments", MIN_SIGNERS)
        return cls(
            suite=r.suite,
            session_id=r.session_id,
            sender=r.sender,
            commitments=(c0, c1),
            proof_r=r.element("proof_r"),
            proof_mu=r.scalar("proof_mu"),
            participants=r.ids("participants"),
            threshold=r.integer("threshold"),
        )


@dataclass(frozen=True, slots=True, repr=False)
class Round2Package(KeyMessage):
    """K2, peer to peer over a confidential channel: f_sender(receiver) and the echo."""

    KIND: ClassVar[str] = ROUND2
    FIELDS: ClassVar[tuple[str, ...]] = ("receiver", "share", "echo")

    receiver: int
    share: int
    echo: dict[int, bytes]

    def _check_fields(self) -> None:
        if self.receiver not in PARTIES or self.receiver == self.sender:
            self._refuse(f"receiver {self.receiver!r} is not another participant")
        self._check_scalar(self.share, "share")
        if not isinstance(self.echo, dict) or set(self.echo) != set(PARTIES):
            self._refuse(f"the echo must cover every participant {PARTIES}")
        for i, d in self.echo.items():
            self._check_digest(d, f"echo[{i}]")

    def __repr__(self) -> str:  # the share is secret
        return f"Round2Package(sender={self.sender}, receiver={self.receiver}, share=<redacted>)"

    def to_bytes(self) -> bytes:
        return self._wire(
            receiver=self.receiver,
            share=self.suite.serialize_scalar(self.share).hex(),
            echo={str(i): d.hex() for i, d in sorted(self.echo.items())},
        )

    @classmethod
    def _read(cls, r: Reader) -> Self:
        to = r.receiver()
        return cls(r.suite, r.session_id, r.sender, to, r.scalar("share"), r.digests("echo"))


@dataclass(frozen=True, slots=True)
class Confirmation(KeyMessage):
    """K3, broadcast: the digest of the public key package this party computed."""

    KIND: ClassVar[str] = CONFIRM
    FIELDS: ClassVar[tuple[str, ...]] = ("digest",)

    digest: bytes

    def _check_fields(self) -> None:
        self._check_digest(self.digest, "digest")

    def to_bytes(self) -> bytes:
        return self._wire(digest=self.digest.hex())

    @classmethod
    def _read(cls, r: Reader) -> Self:
        return cls(r.suite, r.session_id, r.sender, r.hexbytes("digest", DIGEST_LEN))


# -- party state --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Round1Secret:
    """What a party keeps between part1 and part2. Secret: f_i's coefficients."""

    suite: Suite
    identifier: int
    session_id: bytes
    coefficients: tuple[int, int]
    package: Round1Package

    def __repr__(self) -> str:
        return f"Round1Secret(identifier={self.identifier}, suite={self.suite.name}, <redacted>)"


@dataclass(frozen=True, slots=True, repr=False)
class Round2Secret:
    """What a party keeps between part2 and part3. Secret: its own evaluation f_i(i)."""

    suite: Suite
    identifier: int
    session_id: bytes
    own_share: int
    round1: dict[int, Round1Package]
    echo: dict[int, bytes]

    def __repr__(self) -> str:
        return f"Round2Secret(identifier={self.identifier}, suite={self.suite.name}, <redacted>)"


# -- the protocol -------------------------------------------------------------------------------


def _challenge(suite: Suite, identifier: int, c0: bytes, r: bytes) -> int:
    # ZF's preimage: the identifier as a serialized scalar, then the two elements, no context.
    return suite.hdkg(suite.serialize_scalar(identifier) + c0 + r)


def _evaluate(suite: Suite, coefficients: tuple[int, int], x: int) -> int:
    return (coefficients[0] + coefficients[1] * x) % suite.order


def commitment_at(suite: Suite, commitments: tuple[bytes, bytes], x: int) -> bytes:
    """The commitment to a degree-1 polynomial evaluated at x: C_0 + x·C_1."""
    return suite.add(commitments[0], suite.mul(x, commitments[1]))


def part1(
    suite: Suite, identifier: int, session_id: bytes, rng: Rng = secrets.token_bytes
) -> tuple[Round1Secret, Round1Package]:
    """K1: sample f_i(z) = a_i0 + a_i1·z, commit to it and prove knowledge of a_i0.

    `rng` is read three times, in this order: a_i0, a_i1, the proof nonce k.
    """
    if identifier not in PARTIES:
        raise FrostError(f"identifier {identifier!r} is not one of the participants {PARTIES}")
    a0 = random_scalar(suite, rng)
    a1 = random_scalar(suite, rng)
    k = random_scalar(suite, rng)
    commitments = (suite.base_mul(a0), suite.base_mul(a1))
    r = suite.base_mul(k)
    mu = (k + a0 * _challenge(suite, identifier, commitments[0], r)) % suite.order
    package = Round1Package(suite, session_id, identifier, commitments, r, mu)
    return Round1Secret(suite, identifier, session_id, (a0, a1), package), package


def _collect_round1(
    secret: Round1Secret | Round2Secret, packages: Mapping[int, Round1Package], own: Round1Package
) -> dict[int, Round1Package]:
    """All three round-1 packages, each checked against this session and the channel it came
    from, with a valid proof of knowledge."""
    me, suite, sid = secret.identifier, secret.suite, secret.session_id
    if unknown := sorted(set(packages) - set(PARTIES)):
        raise FrostError(f"round-1 package from {unknown[0]!r}, not a participant")
    if me in packages and packages[me] != own:
        raise FrostError("the round-1 packages list a package for us that we did not send")
    out: dict[int, Round1Package] = {me: own}
    for j in PARTIES:
        if j == me:
            continue
        if j not in packages:
            raise FrostError(f"{ROUND1}: no package from participant {j}", culprit=j)
        pkg = packages[j]
        pkg.expect(suite=suite, session_id=sid, sender=j)
        c0 = pkg.commitments[0]
        lhs = suite.sub(
            suite.base_mul(pkg.proof_mu), suite.mul(_challenge(suite, j, c0, pkg.proof_r), c0)
        )
        if lhs != pkg.proof_r:
            fail(ROUND1, "the proof of knowledge of a_0 does not verify", j)
        out[j] = pkg
    return out


def _round1_echo(packages: Mapping[int, Round1Package]) -> dict[int, bytes]:
    return {i: echo_digest(ROUND1, p.to_bytes()) for i, p in sorted(packages.items())}


def part2(
    secret: Round1Secret, round1_packages: Mapping[int, Round1Package]
) -> tuple[Round2Secret, dict[int, Round2Package]]:
    """K2: verify every peer's round-1 package and proof, then deal f_i(j) to each peer j.

    `round1_packages` maps each peer's identifier, as the authenticated channel established it,
    to the package received from it (our own may be included if unchanged). The returned
    Round2Packages go to their `receiver` over a confidential, authenticated channel.
    """
    packages = _collect_round1(secret, round1_packages, secret.package)
    echo = _round1_echo(packages)
    me, suite = secret.identifier, secret.suite
    out = {
        j: Round2Package(
            suite, secret.session_id, me, j, _evaluate(suite, secret.coefficients, j), echo
        )
        for j in PARTIES
        if j != me
    }
    own = _evaluate(suite, secret.coefficients, me)
    return Round2Secret(suite, me, secret.session_id, own, packages, echo), out


def part3(
    secret: Round2Secret,
    round1_packages: Mapping[int, Round1Package],
    round2_packages: Mapping[int, Round2Package],
) -> tuple[KeyPackage, Confirmation]:
    """K3: check the echoes and each share against its sender's commitment, then derive the
    share, the verifying shares and the group key.

    The KeyPackage is not yet usable: broadcast the Confirmation and call `finish` with all
    three before storing the key as active.
    """
    me, suite, sid = secret.identifier, secret.suite, secret.session_id
    own = secret.round1[me]
    packages = _collect_round1(secret, round1_packages, own)
    if _round1_echo(packages) != secret.echo:
        raise FrostError("the round-1 packages differ from the ones part2 was given")
    peers = [j for j in PARTIES if j != me]
    if unknown := sorted(set(round2_packages) - set(peers)):
        raise FrostError(f"round-2 package from {unknown[0]!r}, not a peer")
    for j in peers:
        if j not in round2_packages:
            fail(ROUND2, f"no share from participant {j}", j)
        pkg = round2_packages[j]
        pkg.expect(suite=suite, session_id=sid, sender=j)
        if pkg.receiver != me:
            fail(ROUND2, f"addressed to {pkg.receiver}, delivered to {me}", j)
    # All echoes first: an inconsistent broadcast must be reported as such, not as the bad
    # share it usually also causes.
    for j in peers:
        compare_echoes(ROUND2, secret.echo, round2_packages[j].echo, me=me, peer=j)
    share = secret.own_share
    for j in peers:
        f_j = round2_packages[j].share
        if suite.base_mul(f_j) != commitment_at(suite, packages[j].commitments, me):
            fail(ROUND2, f"share f_{j}({me}) does not match its commitment", j)
        share = (share + f_j) % suite.order

    group_key = suite.sum([packages[j].commitments[0] for j in PARTIES])
    verifying = {
        k: suite.sum([commitment_at(suite, packages[j].commitments, k) for j in PARTIES])
        for k in PARTIES
    }
    if group_key == suite.identity or suite.identity in verifying.values():
        # Unreachable without breaking the PoKs; refuse rather than store a degenerate key.
        raise FrostError("the group key or a verifying share is the identity")
    if suite.base_mul(share) != verifying[me]:
        raise FrostError("our share does not match our verifying share")
    public = PublicKeyPackage(suite, group_key, verifying)
    confirmation = Confirmation(suite, sid, me, public.digest(sid))
    return KeyPackage(me, share, public), confirmation


def finish(
    key_package: KeyPackage,
    confirmations: Mapping[int, Confirmation],
    *,
    session_id: bytes | None = None,
) -> KeyPackage:
    """Activate a key from `part3` once all three confirmations (ours included) equal
    `key_package.public.digest(session_id)`; until this returns, the key must not sign.

    `session_id` defaults to the one in our own confirmation.
    """
    sid = check_confirmation_headers(
        key_package, confirmations, kind=CONFIRM, session_id=session_id
    )
    check_confirmation_digests(key_package, confirmations, kind=CONFIRM, sid=sid)
    logger.info("frost dkg confirmed by all participants (%s)", key_package.suite.name)
    return key_package
