"""FROST key generation (keysafe.mpc.frost.dkg): ZF `vectors_dkg.json` byte for byte, full runs
on both curves, and an adversary who tampers with every field of every message.

The first section holds the drivers test_frost_reshare.py shares: three parties in one process,
every message passed through its wire form (`to_bytes` → `from_bytes`) so the parser is always in
the loop. The group secret appears only in these tests, computed from outside the protocol, to
check that the protocol never needs it and never leaks it.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import coincurve
import nacl.bindings
import nacl.exceptions
import nacl.signing
import pytest

from keysafe.crypto import jcs
from keysafe.mpc.frost import dkg, reshare
from keysafe.mpc.frost.confirmations import EchoMismatch
from keysafe.mpc.frost.errors import FrostError, InvalidElement, InvalidScalar
from keysafe.mpc.frost.groups import ED25519, SECP256K1, Suite
from keysafe.mpc.frost.keys import (
    AGENT,
    PARTIES,
    RECOVERY,
    USER,
    KeyPackage,
    PublicKeyPackage,
    lagrange,
)
from tests.vectors import load_json

# -- drivers (shared with test_frost_reshare.py) ------------------------------------------------

SID = bytes(range(32))
RESHARE_SID = bytes(range(32, 64))


class ScriptedRng:
    """Hands out the given scalars, each as the 64 big-endian bytes `random_scalar` reads."""

    def __init__(self, scalars: Iterable[int]) -> None:
        self.queue = list(scalars)

    def __call__(self, n: int) -> bytes:
        assert n == 64, n
        return self.queue.pop(0).to_bytes(64, "big")


def seeded(seed: object) -> dkg.Rng:
    return random.Random(repr(seed)).randbytes


def edit(data: bytes, change: Callable[[dict[str, Any]], object]) -> bytes:
    """A message re-encoded canonically after `change` edited its JSON object."""
    obj = json.loads(data)
    change(obj)
    return jcs.dumps(obj)


@dataclass
class DkgRun:
    suite: Suite
    sid: bytes
    secrets1: dict[int, dkg.Round1Secret] = field(default_factory=dict)
    round1: dict[int, dkg.Round1Package] = field(default_factory=dict)
    secrets2: dict[int, dkg.Round2Secret] = field(default_factory=dict)
    round2: dict[tuple[int, int], dkg.Round2Package] = field(default_factory=dict)  # (from, to)
    keys: dict[int, KeyPackage] = field(default_factory=dict)
    confirmations: dict[int, dkg.Confirmation] = field(default_factory=dict)
    wire: list[bytes] = field(default_factory=list)

    def group_secret(self) -> int:
        """Σ a_i0, known only to this test harness."""
        return sum(s.coefficients[0] for s in self.secrets1.values()) % self.suite.order

    # -- one step at a time, so tests can tamper between steps ----------------------------

    def do_part1(self, rng_for: Callable[[int], dkg.Rng]) -> None:
        for i in PARTIES:
            self.secrets1[i], self.round1[i] = dkg.part1(self.suite, i, self.sid, rng_for(i))

    def received_round1(
        self, me: int, wire: dict[int, bytes] | None = None
    ) -> dict[int, dkg.Round1Package]:
        """What party `me` parses from the others' round-1 bytes (overridable per sender)."""
        out = {}
        for j in PARTIES:
            if j == me:
                continue
            data = (wire or {}).get(j, self.round1[j].to_bytes())
            self.wire.append(data)
            out[j] = dkg.Round1Package.from_bytes(
                data, suite=self.suite, session_id=self.sid, sender=j
            )
        return out

    def do_part2(self, me: int, wire: dict[int, bytes] | None = None) -> None:
        self.secrets2[me], out = dkg.part2(self.secrets1[me], self.received_round1(me, wire))
        for j, pkg in out.items():
            self.round2[(me, j)] = pkg

    def received_round2(
        self, me: int, wire: dict[int, bytes] | None = None
    ) -> dict[int, dkg.Round2Package]:
        out = {}
        for j in PARTIES:
            if j == me:
                continue
            data = (wire or {}).get(j, self.round2[(j, me)].to_bytes())
            self.wire.append(data)
            out[j] = dkg.Round2Package.from_bytes(
                data, suite=self.suite, session_id=self.sid, sender=j, receiver=me
            )
        return out

    def do_part3(self, me: int, wire: dict[int, bytes] | None = None) -> None:
        received1 = {j: p for j, p in self.secrets2[me].round1.items() if j != me}
        self.keys[me], self.confirmations[me] = dkg.part3(
            self.secrets2[me], received1, self.received_round2(me, wire)
        )

    def received_confirmations(self, me: int) -> dict[int, dkg.Confirmation]:
        out = {me: self.confirmations[me]}
        for j in PARTIES:
            if j != me:
                data = self.confirmations[j].to_bytes()
                self.wire.append(data)
                out[j] = dkg.Confirmation.from_bytes(
                    data, suite=self.suite, session_id=self.sid, sender=j
                )
        return out


def run_dkg(
    suite: Suite, *, sid: bytes = SID, rng_for: Callable[[int], dkg.Rng] | None = None
) -> DkgRun:
    run = DkgRun(suite, sid)
    run.do_part1(rng_for or (lambda i: seeded((suite.name, sid, i))))
    for i in PARTIES:
        run.do_part2(i)
    for i in PARTIES:
        run.do_part3(i)
    for i in PARTIES:
        run.keys[i] = dkg.finish(run.keys[i], run.received_confirmations(i))
    return run


@dataclass
class ReshareRun:
    suite: Suite
    sid: bytes
    quorum: tuple[int, int]
    old_public: PublicKeyPackage
    commitments: dict[int, reshare.ReshareCommitment] = field(default_factory=dict)
    shares: dict[tuple[int, int], reshare.ReshareShare] = field(default_factory=dict)  # (from, to)
    keys: dict[int, KeyPackage] = field(default_factory=dict)
    confirmations: dict[int, reshare.ReshareConfirmation] = field(default_factory=dict)
    wire: list[bytes] = field(default_factory=list)
    dealers: dict[int, KeyPackage] = field(default_factory=dict)  # old key packages

    def do_deal(self, dealers: dict[int, KeyPackage], rng_for: Callable[[int], dkg.Rng]) -> None:
        self.dealers = dealers
        for i in self.quorum:
            self.commitments[i], out = reshare.deal(
                dealers[i], quorum=self.quorum, session_id=self.sid, rng=rng_for(i)
            )
            for k, s in out.items():
                self.shares[(i, k)] = s

    def do_receive(
        self,
        k: int,
        commitment_wire: dict[int, bytes] | None = None,
        share_wire: dict[int, bytes] | None = None,
    ) -> None:
        commitments, shares = {}, {}
        for i in self.quorum:
            c = (commitment_wire or {}).get(i, self.commitments[i].to_bytes())
            s = (share_wire or {}).get(i, self.shares[(i, k)].to_bytes())
            self.wire += [c, s]
            commitments[i] = reshare.ReshareCommitment.from_bytes(
                c, suite=self.suite, session_id=self.sid, sender=i
            )
            shares[i] = reshare.ReshareShare.from_bytes(
                s, suite=self.suite, session_id=self.sid, sender=i, receiver=k
            )
        self.keys[k], self.confirmations[k] = reshare.receive(
            k,
            self.old_public,
            quorum=self.quorum,
            session_id=self.sid,
            commitments=commitments,
            shares=shares,
        )

    def received_confirmations(self, me: int) -> dict[int, reshare.ReshareConfirmation]:
        out = {me: self.confirmations[me]}
        for j in PARTIES:
            if j != me:
                data = self.confirmations[j].to_bytes()
                self.wire.append(data)
                out[j] = reshare.ReshareConfirmation.from_bytes(
                    data, suite=self.suite, session_id=self.sid, sender=j
                )
        return out


def run_reshare(
    dealers: dict[int, KeyPackage],
    quorum: tuple[int, int],
    *,
    sid: bytes = RESHARE_SID,
    rng_for: Callable[[int], dkg.Rng] | None = None,
) -> ReshareRun:
    public = dealers[quorum[0]].public
    run = ReshareRun(public.suite, sid, quorum, public)
    run.do_deal(dealers, rng_for or (lambda i: seeded(("reshare", public.suite.name, sid, i))))
    for k in PARTIES:
        run.do_receive(k)
    for k in PARTIES:
        run.keys[k] = reshare.finish(run.keys[k], run.received_confirmations(k))
    return run


# -- a plain-math Schnorr check, independent of keysafe.mpc.frost.signing ----------------------


def sign_with(
    suite: Suite, group_key: bytes, shares: dict[int, int], msg: bytes, rng: dkg.Rng
) -> bytes:
    """A FROST-shaped two-party Schnorr signature (one nonce per signer, z = Σ k_i + c·λ_i·x_i)
    with the RFC 9591 challenge. Valid exactly when the shares lie on the group's polynomial."""
    ids = sorted(shares)
    nonces = {i: dkg.random_scalar(suite, rng) for i in ids}
    r = suite.sum([suite.base_mul(k) for k in nonces.values()])
    c = suite.h2(r + group_key + msg)
    z = sum(nonces[i] + c * lagrange(suite, i, ids) * shares[i] for i in ids) % suite.order
    return r + suite.serialize_scalar(z)


def schnorr_valid(suite: Suite, group_key: bytes, msg: bytes, sig: bytes) -> bool:
    r, z = sig[: suite.element_len], suite.deserialize_scalar(sig[suite.element_len :])
    ok = suite.base_mul(z) == suite.add(r, suite.mul(suite.h2(r + group_key + msg), group_key))
    if suite is ED25519:
        # An outside opinion: libsodium's Ed25519 verifier must agree with the equation.
        try:
            nacl.signing.VerifyKey(group_key).verify(msg, sig)
            assert ok, "libsodium accepts what the equation rejects"
        except nacl.exceptions.BadSignatureError:
            assert not ok, "the equation accepts what libsodium rejects"
    return ok


def leaked_forms(suite: Suite, secret: int) -> list[bytes]:
    """Every way the scalar could show up in a message: raw either endianness, or their hex."""
    forms = [secret.to_bytes(suite.scalar_len, "big"), secret.to_bytes(suite.scalar_len, "little")]
    return forms + [f.hex().encode() for f in forms]


def assert_not_in_wire(suite: Suite, secret: int, wire: list[bytes]) -> None:
    assert wire, "no messages were recorded"
    for form in leaked_forms(suite, secret):
        for data in wire:
            assert form not in data


# -- ZF vectors -------------------------------------------------------------------------------

SUITES = [pytest.param(ED25519, id="ed25519"), pytest.param(SECP256K1, id="secp256k1")]
ZF_DKG = {
    "ed25519": "frost/zf-frost-ed25519-vectors_dkg.json",
    "secp256k1": "frost/zf-frost-secp256k1-vectors_dkg.json",
}


def scalar_hex(suite: Suite, value: str) -> int:
    return suite.deserialize_scalar(bytes.fromhex(value))


def zf_rng_for(suite: Suite, inputs: dict[str, Any]) -> Callable[[int], dkg.Rng]:
    """Feeds part1 ZF's a_i0 ("signing_key"), a_i1 ("coefficient") and the PoK nonce k, which
    the vectors do not list but which follows from the proof: k = μ − c·a_i0."""

    def rng_for(i: int) -> dkg.Rng:
        p = inputs[str(i)]
        a0, a1 = scalar_hex(suite, p["signing_key"]), scalar_hex(suite, p["coefficient"])
        proof = bytes.fromhex(p["proof_of_knowledge"])
        r = proof[: suite.element_len]
        mu = suite.deserialize_scalar(proof[suite.element_len :])
        c = suite.hdkg(suite.serialize_scalar(i) + suite.base_mul(a0) + r)
        k = (mu - c * a0) % suite.order
        assert suite.base_mul(k) == r
        return ScriptedRng([a0, a1, k])

    return rng_for


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_zf_vectors_reproduce_byte_for_byte(suite: Suite) -> None:
    vectors = load_json(ZF_DKG[suite.name])
    assert (vectors["config"]["MIN_PARTICIPANTS"], vectors["config"]["MAX_PARTICIPANTS"]) == (2, 3)
    inputs = vectors["inputs"]
    run = DkgRun(suite, SID)
    run.do_part1(zf_rng_for(suite, inputs))
    for i in PARTIES:
        assert [c.hex() for c in run.round1[i].commitments] == inputs[str(i)]["vss_commitments"]
        assert run.round1[i].proof.hex() == inputs[str(i)]["proof_of_knowledge"]
    for i in PARTIES:
        run.do_part2(i)
    assert len(run.round2) == 6
    for (sender, receiver), pkg in run.round2.items():
        # ZF lists under each participant the shares it *received*, keyed by their sender.
        expected = inputs[str(receiver)]["signing_shares"][str(sender)]
        assert suite.serialize_scalar(pkg.share).hex() == expected
    for i in PARTIES:
        run.do_part3(i)
    for i in PARTIES:
        key = dkg.finish(run.keys[i], run.received_confirmations(i))
        assert suite.serialize_scalar(key.signing_share).hex() == inputs[str(i)]["signing_share"]
        assert key.public.group_public_key.hex() == inputs["verifying_key"]
        for k in PARTIES:
            assert key.public.verifying_shares[k].hex() == inputs[str(k)]["verifying_share"]


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_zf_proofs_verify_and_a_changed_identifier_breaks_them(suite: Suite) -> None:
    """The PoK challenge serializes the identifier as a scalar (ZF): the vectors' proofs verify
    for their own identifiers and for no other."""
    inputs = load_json(ZF_DKG[suite.name])["inputs"]
    for i in PARTIES:
        p = inputs[str(i)]
        proof = bytes.fromhex(p["proof_of_knowledge"])
        c0, r = bytes.fromhex(p["vss_commitments"][0]), proof[: suite.element_len]
        mu = suite.deserialize_scalar(proof[suite.element_len :])
        for claimed in PARTIES:
            c = suite.hdkg(suite.serialize_scalar(claimed) + c0 + r)
            assert (suite.sub(suite.base_mul(mu), suite.mul(c, c0)) == r) == (claimed == i)


# -- honest runs ------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_three_parties_agree_and_any_two_shares_interpolate(suite: Suite) -> None:
    run = run_dkg(suite, rng_for=lambda i: random.SystemRandom().randbytes)
    public = run.keys[AGENT].public
    pk = public.group_public_key
    assert all(k.public == public for k in run.keys.values())
    assert [k.identifier for k in run.keys.values()] == list(PARTIES)
    for i, key in run.keys.items():
        assert suite.base_mul(key.signing_share) == public.verifying_shares[i]
    for pair in [(AGENT, USER), (AGENT, RECOVERY), (USER, RECOVERY)]:
        in_exponent = [
            suite.mul(lagrange(suite, i, pair), public.verifying_shares[i]) for i in pair
        ]
        assert suite.sum(in_exponent) == pk
        # Only a test may put two shares together.
        combined = sum(lagrange(suite, i, pair) * run.keys[i].signing_share for i in pair)
        assert combined % suite.order == run.group_secret()
        shares = {i: run.keys[i].signing_share for i in pair}
        sig = sign_with(suite, pk, shares, b"any two sign", seeded(pair))
        assert schnorr_valid(suite, pk, b"any two sign", sig)
    assert suite.base_mul(run.group_secret()) == pk
    one = {AGENT: run.keys[AGENT].signing_share}
    sig = sign_with(suite, pk, one, b"one share alone", seeded("one"))
    assert not schnorr_valid(suite, pk, b"one share alone", sig)


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_keys_sign_through_the_frost_signing_module(suite: Suite) -> None:
    signing = pytest.importorskip("keysafe.mpc.frost.signing")
    run = run_dkg(suite)
    msg = b"keysafe dkg -> signing"
    for pair in [(AGENT, USER), (AGENT, RECOVERY), (USER, RECOVERY)]:
        commits = {i: signing.commit(run.keys[i], seeded(("nonce", pair, i))) for i in pair}
        commitments = [commits[i][1] for i in pair]
        shares = {i: signing.sign(run.keys[i], commits[i][0], msg, commitments) for i in pair}
        public = run.keys[pair[0]].public
        sig = signing.aggregate(public, commitments, msg, shares)
        assert signing.verify(suite, public.group_public_key, msg, sig)


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_group_secret_and_shares_never_appear_in_any_message(suite: Suite) -> None:
    """The key never exists: with every random value chosen by the test, the group secret, each
    party's constant term a_i0 and each final share x_i are absent from every message."""
    rnd = random.Random(f"never-{suite.name}")
    scripted = {i: [rnd.randrange(1, suite.order) for _ in range(3)] for i in PARTIES}
    run = run_dkg(suite, rng_for=lambda i: ScriptedRng(scripted[i]))
    group_secret = sum(scripted[i][0] for i in PARTIES) % suite.order  # from outside the run
    assert suite.base_mul(group_secret) == run.keys[AGENT].public.group_public_key
    wire = run.wire + [p.to_bytes() for p in run.round1.values()]
    wire += [p.to_bytes() for p in run.round2.values()]
    wire += [c.to_bytes() for c in run.confirmations.values()]
    assert_not_in_wire(suite, group_secret, wire)
    for i in PARTIES:
        assert_not_in_wire(suite, scripted[i][0], wire)
        assert_not_in_wire(suite, run.keys[i].signing_share, wire)


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_secrets_are_redacted_in_repr_and_str(suite: Suite) -> None:
    run = run_dkg(suite)
    secret_values = [run.group_secret()]
    secret_values += [c for s in run.secrets1.values() for c in s.coefficients]
    secret_values += [s.own_share for s in run.secrets2.values()]
    secret_values += [p.share for p in run.round2.values()]
    secret_values += [k.signing_share for k in run.keys.values()]
    objects: list[object] = [*run.secrets1.values(), *run.secrets2.values()]
    objects += [*run.round2.values(), *run.keys.values()]
    for obj in objects:
        shown = repr(obj) + str(obj) + f"{obj}"
        for value in secret_values:
            for form in (
                str(value),
                hex(value)[2:],
                *(f.decode() for f in leaked_forms(suite, value)[2:]),
            ):
                assert form not in shown, type(obj).__name__


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_messages_round_trip_through_canonical_bytes(suite: Suite) -> None:
    run = run_dkg(suite)
    for p in run.round1.values():
        assert dkg.Round1Package.from_bytes(p.to_bytes(), suite=suite, session_id=SID) == p
        assert p.to_bytes() == jcs.dumps(json.loads(p.to_bytes()))
    for (_, j), q in run.round2.items():
        parsed = dkg.Round2Package.from_bytes(q.to_bytes(), suite=suite, session_id=SID, receiver=j)
        assert parsed == q
    for c in run.confirmations.values():
        assert dkg.Confirmation.from_bytes(c.to_bytes(), suite=suite, session_id=SID) == c


# -- adversarial: round one -------------------------------------------------------------------


def other_point(suite: Suite) -> str:
    return suite.base_mul(0xC0FFEE).hex()


def identity_hex(suite: Suite) -> str:
    # Ed25519's identity is (0, 1); secp256k1 has no compressed encoding, so its stand-in is
    # the all-zero string a careless encoder would produce.
    return (b"\x01" + bytes(31)).hex() if suite is ED25519 else bytes(33).hex()


def invalid_point_hex(suite: Suite) -> str:
    if suite is ED25519:
        return "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"  # order 2
    return "02" + "00" * 32  # x = 0 is not on secp256k1 (7 is not a square mod p)


def odd_point_hex(suite: Suite) -> str:
    """A point on the curve that a careless parser might accept: for Ed25519 a prime-order
    point plus one of order 8 (outside the subgroup), for secp256k1 an uncompressed encoding."""
    if suite is ED25519:
        torsion = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
        return bytes(nacl.bindings.crypto_core_ed25519_add(suite.base_mul(7), torsion)).hex()
    return coincurve.PublicKey(suite.base_mul(7)).format(compressed=False).hex()


def unreduced_scalar_hex(suite: Suite) -> str:
    return suite.order.to_bytes(32, "little" if suite is ED25519 else "big").hex()


def other_scalar_hex(suite: Suite, value: str, delta: int = 1) -> str:
    return suite.serialize_scalar(scalar_hex(suite, value) + delta).hex()


Change = Callable[[dict[str, Any], Suite], None]


def _set(key: str, value: Callable[[Suite], Any]) -> Change:
    def change(obj: dict[str, Any], suite: Suite) -> None:
        obj[key] = value(suite)

    return change


def _set_item(key: str, index: Any, value: Callable[[Suite], Any]) -> Change:
    def change(obj: dict[str, Any], suite: Suite) -> None:
        obj[key][index] = value(suite)

    return change


def _bump(key: str) -> Change:
    def change(obj: dict[str, Any], suite: Suite) -> None:
        obj[key] = other_scalar_hex(suite, obj[key])

    return change


ROUND1_TAMPERS: dict[str, tuple[Change, type[FrostError]]] = {
    "C_j0 replaced by another point": (_set_item("commitments", 0, other_point), FrostError),
    "C_j1 replaced by another point": (_set_item("commitments", 1, other_point), FrostError),
    "C_j0 is the identity": (_set_item("commitments", 0, identity_hex), InvalidElement),
    "C_j1 is the identity": (_set_item("commitments", 1, identity_hex), InvalidElement),
    "C_j0 is not a valid point": (_set_item("commitments", 0, invalid_point_hex), InvalidElement),
    "C_j1 is not a valid point": (_set_item("commitments", 1, invalid_point_hex), InvalidElement),
    "C_j0 outside the subgroup or non-canonical": (
        _set_item("commitments", 0, odd_point_hex),
        FrostError,
    ),
    "C_j0 truncated": (_set_item("commitments", 0, lambda s: other_point(s)[:-2]), FrostError),
    "a third commitment (threshold 3)": (
        lambda o, s: o["commitments"].append(other_point(s)),
        FrostError,
    ),
    "proof R replaced": (_set("proof_r", other_point), FrostError),
    "proof R is the identity": (_set("proof_r", identity_hex), InvalidElement),
    "proof R is not a valid point": (_set("proof_r", invalid_point_hex), InvalidElement),
    "proof mu changed": (_bump("proof_mu"), FrostError),
    "proof mu not below the order": (_set("proof_mu", unreduced_scalar_hex), InvalidScalar),
    "session id": (_set("session_id", lambda s: bytes(32).hex()), FrostError),
    "sender": (lambda o, s: o.update(sender=o["sender"] % 3 + 1), FrostError),
    "participants dropped one": (_set("participants", lambda s: [1, 2]), FrostError),
    "participants added one": (_set("participants", lambda s: [1, 2, 3, 4]), FrostError),
    "threshold": (_set("threshold", lambda s: 3), FrostError),
    "version": (_set("version", lambda s: 2), FrostError),
    "type": (_set("type", lambda s: "keysafe/frost/dkg/round2"), FrostError),
    "suite": (
        _set("suite", lambda s: (SECP256K1 if s is ED25519 else ED25519).name),
        FrostError,
    ),
    "unknown field": (_set("note", lambda s: "hello"), FrostError),
    "missing field": (lambda o, s: o.pop("proof_mu"), FrostError),
    "upper-case hex": (lambda o, s: o.update(proof_r=o["proof_r"].upper()), FrostError),
    "boolean threshold": (_set("threshold", lambda s: True), FrostError),
}


def honest_run_to_round1(suite: Suite) -> DkgRun:
    run = DkgRun(suite, SID)
    run.do_part1(lambda i: seeded(("tamper", suite.name, i)))
    return run


def abort_of(step: Callable[..., object], *args: Any, **kwargs: Any) -> FrostError:
    """The FrostError `step(*args, **kwargs)` aborts with (it must abort)."""
    with pytest.raises(FrostError) as info:
        step(*args, **kwargs)
    return info.value


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("tamperer", PARTIES)
@pytest.mark.parametrize("case", list(ROUND1_TAMPERS))
def test_frost_dkg_tampered_round1_field_aborts_naming_the_sender(
    suite: Suite, tamperer: int, case: str
) -> None:
    change, error = ROUND1_TAMPERS[case]
    run = honest_run_to_round1(suite)
    bad = edit(run.round1[tamperer].to_bytes(), lambda o: change(o, suite))
    run.do_part2(tamperer)  # the tamperer itself computes from what it really holds
    for me in (i for i in PARTIES if i != tamperer):

        def step(me: int = me) -> None:
            run.do_part2(me, {tamperer: bad})
            other = next(i for i in PARTIES if i not in (me, tamperer))
            if other not in run.secrets2:
                run.do_part2(other, {tamperer: bad})
            run.do_part3(me)

        err = abort_of(step)
        assert isinstance(err, error), (case, err)
        assert err.culprit == tamperer, (case, err)
        assert f"participant {tamperer}" in str(err)
        assert me not in run.keys


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_identity_commitment_built_in_memory_is_rejected(suite: Suite) -> None:
    run = honest_run_to_round1(suite)
    pkg = run.round1[USER]
    for index in (0, 1):
        points = list(pkg.commitments)
        points[index] = suite.identity
        with pytest.raises(InvalidElement) as info:
            dataclasses.replace(pkg, commitments=(points[0], points[1]))
        assert info.value.culprit == USER
    with pytest.raises(InvalidElement):
        dataclasses.replace(pkg, proof_r=bytes.fromhex(invalid_point_hex(suite)))


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_package_under_the_wrong_channel_blames_that_channel(suite: Suite) -> None:
    run = honest_run_to_round1(suite)
    # Participant 3's channel delivers participant 2's (valid, signed-for-2) package.
    received = {USER: run.round1[USER], RECOVERY: run.round1[USER]}
    err = abort_of(lambda: dkg.part2(run.secrets1[AGENT], received))
    assert err.culprit == RECOVERY
    replay = dataclasses.replace(run.round1[USER], session_id=bytes(32))
    err = abort_of(
        lambda: dkg.part2(run.secrets1[AGENT], {USER: replay, RECOVERY: run.round1[RECOVERY]})
    )
    assert err.culprit == USER
    err = abort_of(lambda: dkg.part2(run.secrets1[AGENT], {USER: run.round1[USER]}))
    assert err.culprit == RECOVERY and "no package" in str(err)


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_parse_errors_blame_the_claimed_sender_without_a_channel_identity(
    suite: Suite,
) -> None:
    run = honest_run_to_round1(suite)
    bad = edit(run.round1[USER].to_bytes(), lambda o: o.update(threshold=3))
    err = abort_of(lambda: dkg.Round1Package.from_bytes(bad, suite=suite, session_id=SID))
    assert err.culprit == USER and "threshold" in str(err)
    for data in (b"not json", b"[]", run.round1[USER].to_bytes() + b" "):
        err = abort_of(dkg.Round1Package.from_bytes, data, suite=suite, session_id=SID, sender=USER)
        assert err.culprit == USER
    good = run.round1[USER].to_bytes().decode()
    duplicate = good.replace('{"commitments"', '{"commitments":[],"commitments"').encode()
    err = abort_of(
        lambda: dkg.Round1Package.from_bytes(duplicate, suite=suite, session_id=SID, sender=USER)
    )
    assert "JSON" in str(err)


# -- adversarial: round two -------------------------------------------------------------------


def _echo_entry(entry: Callable[[int, int], int]) -> Callable[[int, int], Change]:
    def for_pair(sender: int, receiver: int) -> Change:
        def change(obj: dict[str, Any], suite: Suite) -> None:
            obj["echo"][str(entry(sender, receiver))] = "ab" * 32

        return change

    return for_pair


def _fixed(change: Change) -> Callable[[int, int], Change]:
    return lambda sender, receiver: change


def _third(sender: int, receiver: int) -> int:
    return next(i for i in PARTIES if i not in (sender, receiver))


ROUND2_TAMPERS: dict[str, tuple[Callable[[int, int], Change], type[FrostError]]] = {
    "share changed": (_fixed(_bump("share")), FrostError),
    "share not below the order": (_fixed(_set("share", unreduced_scalar_hex)), InvalidScalar),
    "echo of the receiver's package": (_echo_entry(lambda s, r: r), FrostError),
    "echo of the sender's own package": (_echo_entry(lambda s, r: s), FrostError),
    "echo entry missing": (_fixed(lambda o, s: o["echo"].pop("1")), FrostError),
    "echo entry for a stranger": (
        _fixed(lambda o, s: o["echo"].update({"4": "ab" * 32})),
        FrostError,
    ),
    "echo digest short": (_fixed(lambda o, s: o["echo"].update({"1": "ab" * 31})), FrostError),
    "receiver": (lambda snd, rcv: _set("receiver", lambda s: _third(snd, rcv)), FrostError),
    "receiver is the sender": (lambda snd, rcv: _set("receiver", lambda s: snd), FrostError),
    "session id": (_fixed(_set("session_id", lambda s: bytes(32).hex())), FrostError),
    "sender": (lambda snd, rcv: _set("sender", lambda s: _third(snd, rcv)), FrostError),
    "version": (_fixed(_set("version", lambda s: 0)), FrostError),
    "unknown field": (_fixed(_set("extra", lambda s: 1)), FrostError),
}


def honest_run_to_round2(suite: Suite) -> DkgRun:
    run = honest_run_to_round1(suite)
    for i in PARTIES:
        run.do_part2(i)
    return run


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize(("sender", "receiver"), [(1, 2), (2, 3), (3, 1)])
@pytest.mark.parametrize("case", list(ROUND2_TAMPERS))
def test_frost_dkg_tampered_round2_field_aborts_naming_the_sender(
    suite: Suite, sender: int, receiver: int, case: str
) -> None:
    change_for, error = ROUND2_TAMPERS[case]
    run = honest_run_to_round2(suite)
    bad = edit(
        run.round2[(sender, receiver)].to_bytes(), lambda o: change_for(sender, receiver)(o, suite)
    )
    err = abort_of(lambda: run.do_part3(receiver, {sender: bad}))
    assert isinstance(err, error), (case, err)
    assert err.culprit == sender, (case, err)
    assert receiver not in run.keys


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_echo_disputing_a_third_party_names_both_suspects(suite: Suite) -> None:
    """Receiver 2 cannot tell whether 3 sent different packages or 1 misreports them."""
    run = honest_run_to_round2(suite)
    bad = edit(run.round2[(1, 2)].to_bytes(), lambda o: o["echo"].update({"3": "ab" * 32}))
    err = abort_of(lambda: run.do_part3(USER, {AGENT: bad}))
    assert isinstance(err, EchoMismatch)
    assert err.culprit is None and set(err.suspects) == {AGENT, RECOVERY}


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_equivocating_round1_is_caught_by_the_echo(suite: Suite) -> None:
    """Participant 1 shows package A to 2 and package B to 3 (both with valid proofs)."""
    run = honest_run_to_round1(suite)
    _, package_b = dkg.part1(suite, AGENT, SID, seeded("second face"))
    run.do_part2(AGENT)
    run.do_part2(USER)  # sees A
    run.do_part2(RECOVERY, {AGENT: package_b.to_bytes()})  # sees B; proofs all verify
    # 3 sees 1's own echo contradict what 1 sent it: certain.
    err3 = abort_of(lambda: run.do_part3(RECOVERY))
    assert err3.culprit == AGENT
    # 2 sees 3 report a different package from 1: 1 or 3 is lying, and 2 cannot tell which.
    err2 = abort_of(lambda: run.do_part3(USER))
    assert isinstance(err2, EchoMismatch) and AGENT in err2.suspects
    assert err2.culprit in (None, AGENT)
    assert not run.keys


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_equivocator_tailoring_its_echo_still_aborts_everyone(suite: Suite) -> None:
    run = honest_run_to_round1(suite)
    _, package_b = dkg.part1(suite, AGENT, SID, seeded("second face"))
    run.do_part2(AGENT)
    run.do_part2(USER)
    run.do_part2(RECOVERY, {AGENT: package_b.to_bytes()})
    # 1 echoes to 3 the package it showed 3, so 3's view of 1 looks self-consistent.
    tailored = dict(run.round2[(AGENT, RECOVERY)].echo)
    tailored[AGENT] = run.secrets2[RECOVERY].echo[AGENT]
    run.round2[(AGENT, RECOVERY)] = dataclasses.replace(
        run.round2[(AGENT, RECOVERY)], echo=tailored
    )
    for me in (USER, RECOVERY):
        err = abort_of(run.do_part3, me)
        assert isinstance(err, EchoMismatch) and AGENT in err.suspects, err
    assert not run.keys


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_part3_refuses_round1_packages_other_than_part2s(suite: Suite) -> None:
    run = honest_run_to_round2(suite)
    _, other = dkg.part1(suite, USER, SID, seeded("other"))
    received2 = {j: run.round2[(j, AGENT)] for j in (USER, RECOVERY)}
    err = abort_of(
        lambda: dkg.part3(
            run.secrets2[AGENT], {USER: other, RECOVERY: run.round1[RECOVERY]}, received2
        )
    )
    assert "part2" in str(err)


# -- adversarial: confirmation ----------------------------------------------------------------


def honest_run_to_confirmations(suite: Suite) -> DkgRun:
    run = honest_run_to_round2(suite)
    for i in PARTIES:
        run.do_part3(i)
    return run


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("liar", PARTIES)
def test_frost_dkg_differing_confirmation_keeps_the_key_inactive(suite: Suite, liar: int) -> None:
    run = honest_run_to_confirmations(suite)
    run.confirmations[liar] = dataclasses.replace(run.confirmations[liar], digest=bytes(32))
    for me in PARTIES:
        if me == liar:
            continue
        err = abort_of(dkg.finish, run.keys[me], run.received_confirmations(me))
        assert err.culprit == liar and "different public key package" in str(err)


@pytest.mark.parametrize("suite", SUITES)
def test_frost_dkg_finish_needs_every_confirmation_for_this_session(suite: Suite) -> None:
    run = honest_run_to_confirmations(suite)
    mine = {AGENT: run.confirmations[AGENT], USER: run.confirmations[USER]}
    err = abort_of(lambda: dkg.finish(run.keys[AGENT], mine))
    assert err.culprit == RECOVERY
    other_session = dict(run.received_confirmations(AGENT))
    data = edit(other_session[USER].to_bytes(), lambda o: o.update(session_id="cd" * 32))
    err = abort_of(
        lambda: dkg.Confirmation.from_bytes(data, suite=suite, session_id=SID, sender=USER)
    )
    assert err.culprit == USER and "session_id" in str(err)
    other_session[USER] = dataclasses.replace(other_session[USER], session_id=b"\xcd" * 32)
    err = abort_of(lambda: dkg.finish(run.keys[AGENT], other_session))
    assert err.culprit == USER
    err = abort_of(
        lambda: dkg.finish(
            run.keys[AGENT], run.received_confirmations(AGENT), session_id=b"\x00" * 32
        )
    )
    assert "our own confirmation" in str(err)
    # Our slot holding another party's confirmation is a local mix-up, not a peer's fault.
    swapped = {**run.received_confirmations(AGENT), USER: run.confirmations[AGENT]}
    err = abort_of(lambda: dkg.finish(run.keys[USER], swapped))
    assert err.culprit is None and "our own confirmation" in str(err)
    assert dkg.finish(run.keys[AGENT], run.received_confirmations(AGENT)) is run.keys[AGENT]


def test_frost_dkg_part1_refuses_a_stranger_and_a_bad_session_id() -> None:
    with pytest.raises(FrostError):
        dkg.part1(ED25519, 4, SID, seeded(0))
    with pytest.raises(FrostError, match="session_id"):
        dkg.part1(ED25519, AGENT, b"short", seeded(0))


def test_frost_dkg_random_scalar_is_nonzero_and_reduced() -> None:
    rng = ScriptedRng([0, ED25519.order, ED25519.order + 5])
    assert dkg.random_scalar(ED25519, rng) == 5
    with pytest.raises(ValueError):
        dkg.random_scalar(ED25519, lambda n: bytes(n - 1))
