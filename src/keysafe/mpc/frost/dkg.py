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

import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn, Protocol, TypeAlias

from keysafe.crypto import jcs
from keysafe.mpc.frost.errors import FrostError, InvalidElement, InvalidScalar
from keysafe.mpc.frost.groups import SUITES, Suite
from keysafe.mpc.frost.keys import (
    MIN_SIGNERS,
    PARTIES,
    KeyPackage,
    PublicKeyPackage,
    transcript_hash,
)

__all__ = [
    "DIGEST_LEN",
    "SESSION_ID_LEN",
    "VERSION",
    "Confirmation",
    "EchoMismatch",
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

VERSION: Final = 1
SESSION_ID_LEN: Final = 32
DIGEST_LEN: Final = 32

Rng: TypeAlias = Callable[[int], bytes]
"""`rng(n)` returns n uniformly random bytes (`secrets.token_bytes`); tests inject their own."""

ROUND1: Final = "keysafe/frost/dkg/round1"
ROUND2: Final = "keysafe/frost/dkg/round2"
CONFIRM: Final = "keysafe/frost/dkg/confirm"

_HEADER: Final = ("type", "version", "suite", "session_id", "sender")
_LOWER_HEX: Final = re.compile(r"(?:[0-9a-f]{2})*")
_FIELD: Final = object()  # "read the value from the named field"


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


# -- wire format shared by the DKG and reshare messages ---------------------------------------


def _fail(kind: str, what: str, culprit: int | None) -> NoReturn:
    raise FrostError(f"{kind}: {what}", culprit=culprit)


def _shown(value: object) -> str:
    """A peer-supplied value for an error message, cut short: errors reach logs and people."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_culprit(i: object) -> int | None:
    return i if type(i) is int and i in PARTIES else None


def _check_header(kind: str, suite: Suite, session_id: bytes, sender: int) -> None:
    culprit = _as_culprit(sender)
    if not isinstance(suite, Suite) or SUITES.get(suite.name) is not suite:
        _fail(kind, "unknown ciphersuite", culprit)
    if not isinstance(session_id, bytes) or len(session_id) != SESSION_ID_LEN:
        _fail(kind, f"session_id must be {SESSION_ID_LEN} bytes", culprit)
    if culprit is None:
        _fail(kind, f"sender {sender!r} is not one of the participants {PARTIES}", None)


def _check_element(suite: Suite, point: bytes, kind: str, what: str, culprit: int | None) -> None:
    if not isinstance(point, bytes):
        _fail(kind, f"{what} is not bytes", culprit)
    try:
        suite.deserialize_element(point, what=f"{kind}: {what}")
    except InvalidElement as exc:
        raise InvalidElement(exc.what, culprit=culprit) from None


def _check_scalar(suite: Suite, s: int, kind: str, what: str, culprit: int | None) -> None:
    if type(s) is not int or not 0 <= s < suite.order:
        raise InvalidScalar(
            f"{kind}: {what} is not a scalar below the group order", culprit=culprit
        )


def _check_digest(d: bytes, kind: str, what: str, culprit: int | None) -> None:
    if not isinstance(d, bytes) or len(d) != DIGEST_LEN:
        _fail(kind, f"{what} must be a {DIGEST_LEN}-byte digest", culprit)


def _header_json(kind: str, suite: Suite, session_id: bytes, sender: int) -> dict[str, Any]:
    return {
        "type": kind,
        "version": VERSION,
        "suite": suite.name,
        "session_id": session_id.hex(),
        "sender": sender,
    }


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate field {key!r}")
        out[key] = value
    return out


class _Reader:
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
    ) -> None:
        self.kind = kind
        self.suite = suite
        self.culprit = sender
        try:
            obj = json.loads(data, object_pairs_hook=_reject_duplicates)
        except (ValueError, UnicodeDecodeError, TypeError):
            self.fail("not valid JSON")
        except RecursionError:  # nested past the recursion limit: no message of ours nests
            self.fail("nested too deep")
        if not isinstance(obj, dict):
            self.fail("not a JSON object")
        self.obj: dict[str, Any] = obj
        if self.culprit is None:
            self.culprit = _as_culprit(obj.get("sender"))
        try:
            canonical = jcs.dumps(obj) == data
        except Exception:
            canonical = False
        if not canonical:
            # One encoding per message: echoes hash the bytes, so the same content must not
            # have two spellings.
            self.fail("not canonical JSON (RFC 8785)")
        if unknown := sorted(set(obj) - {*_HEADER, *fields}):
            self.fail(f"unknown field {_shown(unknown[0])}")
        if missing := [f for f in (*_HEADER, *fields) if f not in obj]:
            self.fail(f"missing field {missing[0]!r}")
        if obj["type"] != kind:
            self.fail(f"field 'type' is {_shown(obj['type'])}, expected {kind!r}")
        if self.integer("version") != VERSION:
            self.fail(f"field 'version' is {_shown(obj['version'])}, this code speaks {VERSION}")
        if obj["suite"] != suite.name:
            self.fail(f"field 'suite' is {_shown(obj['suite'])}, this session uses {suite.name!r}")
        if self.hexbytes("session_id", SESSION_ID_LEN) != session_id:
            self.fail("field 'session_id' is not this session's")
        claimed = self.integer("sender")
        if claimed not in PARTIES:
            self.fail(f"field 'sender' {claimed} is not one of the participants {PARTIES}")
        if sender is not None and claimed != sender:
            self.fail(f"field 'sender' says {claimed} but the message came from {sender}")
        self.sender: int = claimed

    def fail(self, what: str) -> NoReturn:
        _fail(self.kind, what, self.culprit)

    def integer(self, name: str) -> int:
        return self._int(name, self.obj[name])

    def _int(self, name: str, value: object) -> int:
        if type(value) is not int:
            self.fail(f"field {name!r} must be an integer")
        return value

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
                self.fail(f"field {name!r} has an entry for {_shown(key)}, not a participant")
            out[names[key]] = self.hexbytes(name, DIGEST_LEN, digest)
        return out


class _Message(Protocol):
    @property
    def suite(self) -> Suite: ...
    @property
    def session_id(self) -> bytes: ...
    @property
    def sender(self) -> int: ...


class _Confirmed(_Message, Protocol):
    @property
    def digest(self) -> bytes: ...


def _expect(
    msg: _Message,
    *,
    kind: str,
    suite: Suite,
    session_id: bytes,
    sender: int,
) -> None:
    """The checks `from_bytes` does against this session, repeated for objects built in memory."""
    if msg.suite is not suite:
        _fail(kind, f"for suite {msg.suite.name}, this session uses {suite.name}", sender)
    if msg.session_id != session_id:
        _fail(kind, "bound to another session", sender)
    if msg.sender != sender:
        _fail(kind, f"claims sender {msg.sender} but came from {sender}", sender)


def _echo_digest(kind: str, message: bytes) -> bytes:
    return transcript_hash(b"keysafe/frost/echo", kind.encode(), message)


def _compare_echoes(
    kind: str, mine: Mapping[int, bytes], theirs: Mapping[int, bytes], *, me: int, peer: int
) -> None:
    """Compare `peer`'s echo with ours (entries are keyed by the broadcaster). Blame is certain
    when the dispute is about our own broadcast (we know what we sent) or the peer's own (it
    contradicts what it sent us). A dispute about a third party's broadcast cannot tell an
    equivocating sender from a lying echoer, so both become suspects and none the culprit."""
    if set(theirs) != set(mine):
        _fail(kind, f"echo covers {sorted(theirs)}, expected {sorted(mine)}", peer)
    if me in mine and theirs[me] != mine[me]:
        _fail(kind, f"echo does not match the message participant {me} sent", peer)
    if peer in mine and theirs[peer] != mine[peer]:
        _fail(kind, f"echo of its own message differs from the one it sent to {me}", peer)
    for j in sorted(mine):
        if theirs[j] != mine[j]:
            raise EchoMismatch(
                f"{kind}: participants {me} and {peer} saw different messages from participant "
                f"{j}; {j} sent inconsistent messages or {peer} misreports them",
                suspects=(j, peer),
            )


class EchoMismatch(FrostError):
    """Two parties saw different broadcasts from a third. With authenticated but unsigned
    channels the equivocator and a lying echoer look alike, so `suspects` names both and
    `culprit` is None."""

    def __init__(self, what: str, *, suspects: tuple[int, ...]) -> None:
        super().__init__(what)
        self.suspects = suspects


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Round1Package:
    """K1, broadcast: the Feldman commitment to f_i and the proof of knowledge of a_i0."""

    suite: Suite
    session_id: bytes
    sender: int
    commitments: tuple[bytes, bytes]
    proof_r: bytes
    proof_mu: int
    participants: tuple[int, ...] = PARTIES
    threshold: int = MIN_SIGNERS

    def __post_init__(self) -> None:
        _check_header(ROUND1, self.suite, self.session_id, self.sender)
        c = self.sender
        if tuple(self.participants) != PARTIES:
            _fail(ROUND1, f"participants {_shown(self.participants)}, this wallet has {PARTIES}", c)
        if self.threshold != MIN_SIGNERS:
            _fail(ROUND1, f"threshold {_shown(self.threshold)}, this wallet needs {MIN_SIGNERS}", c)
        if not isinstance(self.commitments, tuple) or len(self.commitments) != MIN_SIGNERS:
            _fail(ROUND1, f"a degree-{MIN_SIGNERS - 1} commitment has {MIN_SIGNERS} points", c)
        for k, point in enumerate(self.commitments):
            _check_element(self.suite, point, ROUND1, f"commitment C_{c}{k}", c)
        _check_element(self.suite, self.proof_r, ROUND1, "proof R", c)
        _check_scalar(self.suite, self.proof_mu, ROUND1, "proof mu", c)

    @property
    def proof(self) -> bytes:
        """R ‖ μ, ZF's serialization of the proof of knowledge."""
        return self.proof_r + self.suite.serialize_scalar(self.proof_mu)

    def to_bytes(self) -> bytes:
        return jcs.dumps(
            {
                **_header_json(ROUND1, self.suite, self.session_id, self.sender),
                "participants": list(self.participants),
                "threshold": self.threshold,
                "commitments": [p.hex() for p in self.commitments],
                "proof_r": self.proof_r.hex(),
                "proof_mu": self.suite.serialize_scalar(self.proof_mu).hex(),
            }
        )

    @classmethod
    def from_bytes(
        cls, data: bytes, *, suite: Suite, session_id: bytes, sender: int | None = None
    ) -> Round1Package:
        """Parse a received package; `sender` is who the authenticated channel says sent it."""
        r = _Reader(
            data,
            kind=ROUND1,
            fields=("participants", "threshold", "commitments", "proof_r", "proof_mu"),
            suite=suite,
            session_id=session_id,
            sender=sender,
        )
        commitments = r.array("commitments", MIN_SIGNERS)
        return cls(
            suite=suite,
            session_id=session_id,
            sender=r.sender,
            commitments=(r.element("commitments", commitments[0]),
                         r.element("commitments", commitments[1])),
            proof_r=r.element("proof_r"),
            proof_mu=r.scalar("proof_mu"),
            participants=r.ids("participants"),
            threshold=r.integer("threshold"),
        )  # fmt: skip


@dataclass(frozen=True, slots=True, repr=False)
class Round2Package:
    """K2, peer to peer over a confidential channel: f_sender(receiver) and the echo."""

    suite: Suite
    session_id: bytes
    sender: int
    receiver: int
    share: int
    echo: dict[int, bytes]

    def __post_init__(self) -> None:
        _check_header(ROUND2, self.suite, self.session_id, self.sender)
        c = self.sender
        if self.receiver not in PARTIES or self.receiver == self.sender:
            _fail(ROUND2, f"receiver {self.receiver!r} is not another participant", c)
        _check_scalar(self.suite, self.share, ROUND2, "share", c)
        if not isinstance(self.echo, dict) or set(self.echo) != set(PARTIES):
            _fail(ROUND2, f"the echo must cover every participant {PARTIES}", c)
        for i, d in self.echo.items():
            _check_digest(d, ROUND2, f"echo[{i}]", c)

    def __repr__(self) -> str:  # the share is secret
        return f"Round2Package(sender={self.sender}, receiver={self.receiver}, share=<redacted>)"

    def to_bytes(self) -> bytes:
        return jcs.dumps(
            {
                **_header_json(ROUND2, self.suite, self.session_id, self.sender),
                "receiver": self.receiver,
                "share": self.suite.serialize_scalar(self.share).hex(),
                "echo": {str(i): d.hex() for i, d in sorted(self.echo.items())},
            }
        )

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        suite: Suite,
        session_id: bytes,
        sender: int | None = None,
        receiver: int | None = None,
    ) -> Round2Package:
        """Parse a received share; `receiver` is us, `sender` the authenticated peer."""
        r = _Reader(
            data,
            kind=ROUND2,
            fields=("receiver", "share", "echo"),
            suite=suite,
            session_id=session_id,
            sender=sender,
        )
        to = r.integer("receiver")
        if receiver is not None and to != receiver:
            r.fail(f"field 'receiver' is {to}, but it was delivered to {receiver}")
        return cls(suite, session_id, r.sender, to, r.scalar("share"), r.digests("echo"))


@dataclass(frozen=True, slots=True)
class Confirmation:
    """K3, broadcast: the digest of the public key package this party computed."""

    suite: Suite
    session_id: bytes
    sender: int
    digest: bytes

    def __post_init__(self) -> None:
        _check_header(CONFIRM, self.suite, self.session_id, self.sender)
        _check_digest(self.digest, CONFIRM, "digest", self.sender)

    def to_bytes(self) -> bytes:
        return jcs.dumps(
            {
                **_header_json(CONFIRM, self.suite, self.session_id, self.sender),
                "digest": self.digest.hex(),
            }
        )

    @classmethod
    def from_bytes(
        cls, data: bytes, *, suite: Suite, session_id: bytes, sender: int | None = None
    ) -> Confirmation:
        r = _Reader(
            data,
            kind=CONFIRM,
            fields=("digest",),
            suite=suite,
            session_id=session_id,
            sender=sender,
        )
        return cls(suite, session_id, r.sender, r.hexbytes("digest", DIGEST_LEN))


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


def _commitment_at(suite: Suite, commitments: tuple[bytes, bytes], x: int) -> bytes:
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
        _expect(pkg, kind=ROUND1, suite=suite, session_id=sid, sender=j)
        c0 = pkg.commitments[0]
        lhs = suite.sub(
            suite.base_mul(pkg.proof_mu), suite.mul(_challenge(suite, j, c0, pkg.proof_r), c0)
        )
        if lhs != pkg.proof_r:
            _fail(ROUND1, "the proof of knowledge of a_0 does not verify", j)
        out[j] = pkg
    return out


def _round1_echo(packages: Mapping[int, Round1Package]) -> dict[int, bytes]:
    return {i: _echo_digest(ROUND1, p.to_bytes()) for i, p in sorted(packages.items())}


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
            _fail(ROUND2, f"no share from participant {j}", j)
        pkg = round2_packages[j]
        _expect(pkg, kind=ROUND2, suite=suite, session_id=sid, sender=j)
        if pkg.receiver != me:
            _fail(ROUND2, f"addressed to {pkg.receiver}, delivered to {me}", j)
    # All echoes first: an inconsistent broadcast must be reported as such, not as the bad
    # share it usually also causes.
    for j in peers:
        _compare_echoes(ROUND2, secret.echo, round2_packages[j].echo, me=me, peer=j)
    share = secret.own_share
    for j in peers:
        f_j = round2_packages[j].share
        if suite.base_mul(f_j) != _commitment_at(suite, packages[j].commitments, me):
            _fail(ROUND2, f"share f_{j}({me}) does not match its commitment", j)
        share = (share + f_j) % suite.order

    group_key = suite.sum([packages[j].commitments[0] for j in PARTIES])
    verifying = {
        k: suite.sum([_commitment_at(suite, packages[j].commitments, k) for j in PARTIES])
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


def _confirmation_headers(
    key_package: KeyPackage,
    confirmations: Mapping[int, _Confirmed],
    *,
    kind: str,
    session_id: bytes | None,
) -> bytes:
    """Every party's confirmation is present and for this session; ours is for this key
    package. Returns the session id (by default, the one in our own confirmation)."""
    me = key_package.identifier
    if missing := sorted(set(PARTIES) - set(confirmations)):
        _fail(kind, f"no confirmation from participant {missing[0]}", missing[0])
    if extra := sorted(set(confirmations) - set(PARTIES)):
        raise FrostError(f"{kind}: confirmation from {extra[0]!r}, not a participant")
    own = confirmations[me]
    sid = own.session_id if session_id is None else session_id
    if own.sender != me or own.session_id != sid or own.digest != key_package.public.digest(sid):
        raise FrostError(f"{kind}: our own confirmation is not for this key package")
    for j in PARTIES:
        _expect(confirmations[j], kind=kind, suite=key_package.suite, session_id=sid, sender=j)
    return sid


def _confirmation_digests(
    key_package: KeyPackage, confirmations: Mapping[int, _Confirmed], *, kind: str, sid: bytes
) -> None:
    expected = key_package.public.digest(sid)
    for j in PARTIES:
        if confirmations[j].digest != expected:
            _fail(kind, f"participant {j} computed a different public key package", j)


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
    sid = _confirmation_headers(key_package, confirmations, kind=CONFIRM, session_id=session_id)
    _confirmation_digests(key_package, confirmations, kind=CONFIRM, sid=sid)
    logger.info("frost dkg confirmed by all participants (%s)", key_package.suite.name)
    return key_package
