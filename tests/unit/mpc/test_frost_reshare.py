"""FROST resharing and repair (keysafe.mpc.frost.reshare): refresh and eviction keep the group
key and retire the old shares; cheating dealers are named; ZF `repair-share.json` reproduces."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from keysafe.mpc.frost import reshare
from keysafe.mpc.frost.confirmations import EchoMismatch
from keysafe.mpc.frost.errors import FrostError, InvalidElement
from keysafe.mpc.frost.groups import ED25519, SECP256K1, Suite
from keysafe.mpc.frost.keys import AGENT, PARTIES, RECOVERY, USER, KeyPackage, PublicKeyPackage
from tests.unit.mpc.test_frost_dkg import (
    RESHARE_SID,
    SUITES,
    ReshareRun,
    ScriptedRng,
    abort_of,
    assert_not_in_wire,
    edit,
    identity_hex,
    invalid_point_hex,
    other_point,
    run_dkg,
    run_reshare,
    schnorr_valid,
    seeded,
    sign_with,
)
from tests.vectors import load_json

QUORUMS = [(AGENT, USER), (AGENT, RECOVERY), (USER, RECOVERY)]
PAIRS = QUORUMS
MSG = b"reshare: same key, new shares"


def keys_of(suite: Suite) -> dict[int, KeyPackage]:
    return run_dkg(suite).keys


def signs(suite: Suite, pk: bytes, shares: dict[int, int]) -> bool:
    sig = sign_with(suite, pk, shares, MSG, seeded(sorted(shares.items())))
    return schnorr_valid(suite, pk, MSG, sig)


# -- honest runs ------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("quorum", QUORUMS)
def test_frost_reshare_refresh_keeps_the_key_and_changes_every_share(
    suite: Suite, quorum: tuple[int, int]
) -> None:
    old = keys_of(suite)
    pk = old[AGENT].public.group_public_key
    run = run_reshare({i: old[i] for i in quorum}, quorum)
    new = run.keys
    public = new[AGENT].public
    assert all(k.public == public for k in new.values())
    assert public.group_public_key == pk
    for i in PARTIES:
        assert new[i].signing_share != old[i].signing_share
        assert public.verifying_shares[i] != old[i].public.verifying_shares[i]
        assert suite.base_mul(new[i].signing_share) == public.verifying_shares[i]
    for pair in PAIRS:
        assert signs(suite, pk, {i: new[i].signing_share for i in pair})


@pytest.mark.parametrize("suite", SUITES)
def test_frost_reshare_evicting_the_agent_makes_its_old_share_useless(suite: Suite) -> None:
    """User + recovery reshare to a fresh agent device that holds nothing but the public
    package. The old agent share then signs with no new share."""
    old = keys_of(suite)
    pk = old[AGENT].public.group_public_key
    assert signs(suite, pk, {AGENT: old[AGENT].signing_share, USER: old[USER].signing_share})
    run = run_reshare({USER: old[USER], RECOVERY: old[RECOVERY]}, (USER, RECOVERY))
    new = run.keys
    for other in (USER, RECOVERY):
        mixed = {AGENT: old[AGENT].signing_share, other: new[other].signing_share}
        assert not signs(suite, pk, mixed)
    assert signs(suite, pk, {AGENT: new[AGENT].signing_share, USER: new[USER].signing_share})
    assert signs(
        suite, pk, {AGENT: new[AGENT].signing_share, RECOVERY: new[RECOVERY].signing_share}
    )


@pytest.mark.parametrize("suite", SUITES)
def test_frost_reshare_old_and_new_shares_fail_through_the_signing_module(suite: Suite) -> None:
    signing = pytest.importorskip("keysafe.mpc.frost.signing")
    old = keys_of(suite)
    new = run_reshare({USER: old[USER], RECOVERY: old[RECOVERY]}, (USER, RECOVERY)).keys
    public = new[USER].public

    def shares_sum(keys: dict[int, KeyPackage]) -> tuple[bytes, bool]:
        commits = {i: signing.commit(k, seeded(("nonce", i))) for i, k in keys.items()}
        commitments = [commits[i][1] for i in sorted(keys)]
        z = {i: signing.sign(k, commits[i][0], MSG, commitments) for i, k in keys.items()}
        r = signing.compute_group_commitment(
            suite,
            commitments,
            signing.compute_binding_factors(suite, public.group_public_key, commitments, MSG),
        )
        total = sum(suite.deserialize_scalar(v) for v in z.values()) % suite.order
        sig = r + suite.serialize_scalar(total)
        return sig, signing.verify(suite, public.group_public_key, MSG, sig)

    assert shares_sum({AGENT: new[AGENT], USER: new[USER]})[1]
    assert not shares_sum({AGENT: old[AGENT], USER: new[USER]})[1]
    # The coordinator's share check already names the stale share before any summing.
    commits = {
        i: signing.commit(k, seeded(("agg", i)))
        for i, k in ((AGENT, old[AGENT]), (USER, new[USER]))
    }
    commitments = [commits[AGENT][1], commits[USER][1]]
    z = {
        AGENT: signing.sign(old[AGENT], commits[AGENT][0], MSG, commitments),
        USER: signing.sign(new[USER], commits[USER][0], MSG, commitments),
    }
    with pytest.raises(FrostError) as info:
        signing.aggregate(public, commitments, MSG, z)
    assert info.value.culprit == AGENT


@pytest.mark.parametrize("suite", SUITES)
def test_frost_reshare_group_secret_never_appears_in_any_message(suite: Suite) -> None:
    dkg_run = run_dkg(suite)
    group_secret = dkg_run.group_secret()
    old = dkg_run.keys
    rnd = random.Random(suite.name)
    b = {i: rnd.randrange(1, suite.order) for i in PARTIES}
    run = run_reshare(old, (AGENT, RECOVERY), rng_for=lambda i: ScriptedRng([b[i]]))
    wire = run.wire + [c.to_bytes() for c in run.commitments.values()]
    wire += [s.to_bytes() for s in run.shares.values()]
    wire += [c.to_bytes() for c in run.confirmations.values()]
    assert_not_in_wire(suite, group_secret, wire)
    for i in PARTIES:
        assert_not_in_wire(suite, old[i].signing_share, wire)
        assert_not_in_wire(suite, run.keys[i].signing_share, wire)
    for s in run.shares.values():
        assert str(s.share) not in repr(s) and str(s.share) not in str(s)


@pytest.mark.parametrize("suite", SUITES)
def test_frost_reshare_twice_in_a_row_still_signs(suite: Suite) -> None:
    keys = keys_of(suite)
    pk = keys[AGENT].public.group_public_key
    for n, quorum in enumerate([(AGENT, USER), (USER, RECOVERY), (AGENT, RECOVERY)]):
        sid = bytes([n]) * 32
        keys = run_reshare({i: keys[i] for i in quorum}, quorum, sid=sid).keys
    assert keys[AGENT].public.group_public_key == pk
    assert signs(
        suite, pk, {USER: keys[USER].signing_share, RECOVERY: keys[RECOVERY].signing_share}
    )


# -- adversarial ------------------------------------------------------------------------------


def dealt(suite: Suite, quorum: tuple[int, int] = (AGENT, USER)) -> ReshareRun:
    old = keys_of(suite)
    run = ReshareRun(suite, RESHARE_SID, quorum, old[AGENT].public)
    run.do_deal(old, lambda i: seeded(("deal", suite.name, i)))
    return run


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("cheat", [AGENT, USER])
def test_frost_reshare_dealer_that_deals_another_secret_is_named(suite: Suite, cheat: int) -> None:
    """A dealer re-deals a value other than λ_i·x_i (here: a share it made up, with a matching
    fake verifying share so its own pre-check passes): D_i0 != λ_i·X_i gives it away."""
    run = dealt(suite)
    real = run.old_public
    fake_share = 12345
    fake_public = PublicKeyPackage(
        suite,
        real.group_public_key,
        {**real.verifying_shares, cheat: suite.base_mul(fake_share)},
    )
    run.commitments[cheat], out = reshare.deal(
        KeyPackage(cheat, fake_share, fake_public),
        quorum=run.quorum,
        session_id=run.sid,
        rng=seeded("cheat"),
    )
    run.shares.update({(cheat, k): s for k, s in out.items()})
    for k in PARTIES:
        if k == cheat:
            continue
        err = abort_of(run.do_receive, k)
        assert err.culprit == cheat and "did not re-deal its own share" in str(err)


Change = Callable[[dict[str, Any], Suite], object]


COMMIT_TAMPERS: dict[str, tuple[Change, type[FrostError]]] = {
    "D_i0 replaced": (lambda o, s: o["commitments"].__setitem__(0, other_point(s)), FrostError),
    "D_i1 replaced": (lambda o, s: o["commitments"].__setitem__(1, other_point(s)), FrostError),
    "D_i0 identity": (
        lambda o, s: o["commitments"].__setitem__(0, identity_hex(s)),
        InvalidElement,
    ),
    "D_i1 identity (b_i = 0 would hand out a_i)": (
        lambda o, s: o["commitments"].__setitem__(1, identity_hex(s)),
        InvalidElement,
    ),
    "D_i1 invalid": (
        lambda o, s: o["commitments"].__setitem__(1, invalid_point_hex(s)),
        InvalidElement,
    ),
    "three points (threshold 3)": (
        lambda o, s: o["commitments"].append(other_point(s)),
        FrostError,
    ),
    "threshold field 3": (lambda o, s: o.update(threshold=3), FrostError),
    "threshold field 1": (lambda o, s: o.update(threshold=1), FrostError),
    "quorum of another session": (
        lambda o, s: o.update(quorum=[1, 3] if o["sender"] == 1 else [2, 3]),
        FrostError,
    ),
    "quorum of three": (lambda o, s: o.update(quorum=[1, 2, 3]), FrostError),
    "quorum unsorted": (lambda o, s: o.update(quorum=[2, 1]), FrostError),
    "session id": (lambda o, s: o.update(session_id="00" * 32), FrostError),
    "sender": (lambda o, s: o.update(sender=3), FrostError),
    "version": (lambda o, s: o.update(version=2), FrostError),
    "unknown field": (lambda o, s: o.update(extra=[]), FrostError),
}


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("dealer", [AGENT, USER])
@pytest.mark.parametrize("case", list(COMMIT_TAMPERS))
def test_frost_reshare_tampered_commitment_aborts_naming_the_dealer(
    suite: Suite, dealer: int, case: str
) -> None:
    change, error = COMMIT_TAMPERS[case]
    run = dealt(suite)
    bad = edit(run.commitments[dealer].to_bytes(), lambda o: change(o, suite))
    for k in PARTIES:
        err = abort_of(run.do_receive, k, commitment_wire={dealer: bad})
        assert isinstance(err, error), (case, err)
        assert err.culprit == dealer, (case, err)


SHARE_TAMPERS: dict[
    str, Callable[[Suite, int, dict[str, Any]], object]
] = {  # (suite, receiver, msg)
    "share changed": lambda s, k, o: o.update(
        share=s.serialize_scalar(s.deserialize_scalar(bytes.fromhex(o["share"])) + 1).hex()
    ),
    "receiver": lambda s, k, o: o.update(receiver=k % 3 + 1),
    "session id": lambda s, k, o: o.update(session_id="11" * 32),
    "sender": lambda s, k, o: o.update(sender=3),
    "share too long": lambda s, k, o: o.update(share=o["share"] + "00"),
    "missing share": lambda s, k, o: o.pop("share"),
}


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("dealer", [AGENT, USER])
@pytest.mark.parametrize("case", list(SHARE_TAMPERS))
def test_frost_reshare_tampered_share_aborts_naming_the_dealer(
    suite: Suite, dealer: int, case: str
) -> None:
    run = dealt(suite)
    for k in PARTIES:
        bad = edit(run.shares[(dealer, k)].to_bytes(), partial(SHARE_TAMPERS[case], suite, k))
        err = abort_of(run.do_receive, k, share_wire={dealer: bad})
        assert err.culprit == dealer, (case, err)


@pytest.mark.parametrize("suite", SUITES)
def test_frost_reshare_receive_checks_objects_built_in_memory(suite: Suite) -> None:
    run = dealt(suite)
    commitments = dict(run.commitments)
    shares = {i: run.shares[(i, RECOVERY)] for i in run.quorum}

    def receive(c: dict[int, Any], s: dict[int, Any], quorum: tuple[int, int] = run.quorum) -> None:
        reshare.receive(
            RECOVERY,
            run.old_public,
            quorum=quorum,
            session_id=run.sid,
            commitments=c,
            shares=s,
        )

    err = abort_of(lambda: receive({AGENT: commitments[AGENT]}, shares))
    assert err.culprit == USER and "no commitment" in str(err)
    err = abort_of(lambda: receive({**commitments, RECOVERY: commitments[USER]}, shares))
    assert err.culprit == RECOVERY and "not a dealer" in str(err)
    err = abort_of(lambda: receive({AGENT: commitments[USER], USER: commitments[USER]}, shares))
    assert err.culprit == AGENT
    wrong_receiver = {**shares, USER: run.shares[(USER, AGENT)]}
    err = abort_of(lambda: receive(commitments, wrong_receiver))
    assert err.culprit == USER and "addressed to" in str(err)
    err = abort_of(lambda: receive(commitments, shares, quorum=(AGENT, RECOVERY)))
    assert err.culprit == USER
    three_points: Any = (*commitments[AGENT].commitments, bytes.fromhex(other_point(suite)))
    with pytest.raises(FrostError, match="threshold-2 commitment"):
        dataclasses.replace(commitments[AGENT], commitments=three_points)
    with pytest.raises(FrostError):
        dataclasses.replace(commitments[AGENT], sender=RECOVERY)  # not in its own quorum


@pytest.mark.parametrize("suite", SUITES)
def test_frost_reshare_deal_refuses_outsiders_and_inconsistent_keys(suite: Suite) -> None:
    old = keys_of(suite)
    with pytest.raises(FrostError, match="not in the quorum"):
        reshare.deal(old[RECOVERY], quorum=(AGENT, USER), session_id=RESHARE_SID)
    with pytest.raises(FrostError):
        reshare.deal(old[AGENT], quorum=(AGENT, AGENT), session_id=RESHARE_SID)
    with pytest.raises(FrostError):
        reshare.deal(old[AGENT], quorum=(AGENT, USER, RECOVERY), session_id=RESHARE_SID)
    broken = KeyPackage(AGENT, old[AGENT].signing_share + 1, old[AGENT].public)
    with pytest.raises(FrostError, match="does not match"):
        reshare.deal(broken, quorum=(AGENT, USER), session_id=RESHARE_SID)


@pytest.mark.parametrize("suite", SUITES)
def test_frost_reshare_threshold_cannot_be_changed(suite: Suite) -> None:
    """A dealer cannot hand out a degree-2 polynomial (threshold 3) or claim another threshold,
    neither on the wire nor in memory."""
    run = dealt(suite)
    c = run.commitments[AGENT]
    three = edit(c.to_bytes(), lambda o: o["commitments"].append(other_point(suite)))
    err = abort_of(
        lambda: reshare.ReshareCommitment.from_bytes(
            three, suite=suite, session_id=run.sid, sender=AGENT
        )
    )
    assert err.culprit == AGENT and "commitments" in str(err)
    with pytest.raises(FrostError, match="threshold"):
        dataclasses.replace(c, threshold=3)
    with pytest.raises(FrostError):
        reshare.ReshareCommitment(suite, run.sid, AGENT, (AGENT, USER), (c.commitments[0],))  # type: ignore[arg-type]


# -- confirmations ----------------------------------------------------------------------------


def received_all(suite: Suite, quorum: tuple[int, int] = (AGENT, USER)) -> ReshareRun:
    run = dealt(suite, quorum)
    for k in PARTIES:
        run.do_receive(k)
    return run


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("liar", PARTIES)
def test_frost_reshare_differing_confirmation_keeps_old_shares(suite: Suite, liar: int) -> None:
    run = received_all(suite)
    run.confirmations[liar] = dataclasses.replace(run.confirmations[liar], digest=b"\x07" * 32)
    for me in PARTIES:
        if me != liar:
            err = abort_of(reshare.finish, run.keys[me], run.received_confirmations(me))
            assert err.culprit == liar


@pytest.mark.parametrize("suite", SUITES)
def test_frost_reshare_dealer_equivocating_commitments_is_caught_by_the_echo(suite: Suite) -> None:
    """Dealer 1 deals two polynomials with the same a_1 and shows one to holders 1 and 2, the
    other to holder 3; each holder's own checks pass, the echo does not."""
    run = dealt(suite)
    second, second_shares = reshare.deal(
        run.dealers[AGENT], quorum=run.quorum, session_id=run.sid, rng=seeded("second face")
    )
    run.do_receive(AGENT)
    run.do_receive(USER)
    run.do_receive(
        RECOVERY,
        commitment_wire={AGENT: second.to_bytes()},
        share_wire={AGENT: second_shares[RECOVERY].to_bytes()},
    )
    err3 = abort_of(
        lambda: reshare.finish(run.keys[RECOVERY], run.received_confirmations(RECOVERY))
    )
    assert err3.culprit == AGENT
    err2 = abort_of(lambda: reshare.finish(run.keys[USER], run.received_confirmations(USER)))
    assert isinstance(err2, EchoMismatch) and AGENT in err2.suspects


@pytest.mark.parametrize("suite", SUITES)
def test_frost_reshare_confirmation_wire_rules(suite: Suite) -> None:
    run = received_all(suite)
    data = run.confirmations[USER].to_bytes()
    for change in (
        lambda o: o["echo"].pop("1"),
        lambda o: o["echo"].update({"3": "00" * 32}),
        lambda o: o.update(digest="00" * 31),
        lambda o: o.update(session_id="22" * 32),
    ):
        bad = edit(data, change)
        err = abort_of(
            reshare.ReshareConfirmation.from_bytes,
            bad,
            suite=suite,
            session_id=run.sid,
            sender=USER,
        )
        assert err.culprit == USER
    parsed = reshare.ReshareConfirmation.from_bytes(
        data, suite=suite, session_id=run.sid, sender=USER
    )
    assert parsed == run.confirmations[USER]
    missing = {AGENT: run.confirmations[AGENT], USER: run.confirmations[USER]}
    err = abort_of(lambda: reshare.finish(run.keys[AGENT], missing))
    assert err.culprit == RECOVERY


# -- repairable threshold scheme ----------------------------------------------------------------

ZF_REPAIR = {
    "ed25519": "frost/zf-frost-ed25519-repair-share.json",
    "secp256k1": "frost/zf-frost-secp256k1-repair-share.json",
}


def hex_scalar(suite: Suite, value: str) -> int:
    return suite.deserialize_scalar(bytes.fromhex(value))


@pytest.mark.parametrize("suite", SUITES)
def test_frost_repair_zf_vectors_step2_sums_the_random_scalars(suite: Suite) -> None:
    values = load_json(ZF_REPAIR[suite.name])["scalar_generation"]
    deltas = [hex_scalar(suite, values[f"random_scalar_{n}"]) for n in (1, 2, 3)]
    sigma = reshare.repair_step2(suite, deltas)
    assert suite.serialize_scalar(sigma).hex() == values["random_scalar_sum"]


@pytest.mark.parametrize("suite", SUITES)
def test_frost_repair_zf_vectors_step3_sums_the_sigmas_and_checks_the_share(suite: Suite) -> None:
    values = load_json(ZF_REPAIR[suite.name])["sigma_generation"]
    sigmas = [hex_scalar(suite, values[f"sigma_{n}"]) for n in (1, 2, 3, 4)]
    expected = hex_scalar(suite, values["sigma_sum"])
    # A public package whose verifying share for 2 is what the vectors' sum should give.
    public = PublicKeyPackage(
        suite,
        suite.base_mul(99),
        {1: suite.base_mul(1), 2: suite.base_mul(expected), 3: suite.base_mul(3)},
    )
    key = reshare.repair_step3(suite, sigmas, identifier=USER, public=public)
    assert suite.serialize_scalar(key.signing_share).hex() == values["sigma_sum"]
    assert key.identifier == USER
    # ZF's step 3 would return the wrong sum silently; ours refuses it.
    with pytest.raises(FrostError, match="verifying share"):
        reshare.repair_step3(suite, sigmas[:3], identifier=USER, public=public)


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("lost", PARTIES)
def test_frost_repair_rebuilds_the_lost_share_from_two_helpers(suite: Suite, lost: int) -> None:
    keys = keys_of(suite)
    helpers = [i for i in PARTIES if i != lost]
    deltas = {
        h: reshare.repair_step1(keys[h], helpers=helpers, lost=lost, rng=seeded(("repair", h)))
        for h in helpers
    }
    for h, out in deltas.items():
        # ZF step-1 property: the pieces add up to ζ_h·x_h, ζ_h the Lagrange value at `lost`.
        (other,) = [j for j in helpers if j != h]
        zeta = (lost - other) * pow(h - other, -1, suite.order) % suite.order
        assert sum(out.values()) % suite.order == zeta * keys[h].signing_share % suite.order
        assert sorted(out) == helpers
    sigmas = [reshare.repair_step2(suite, [deltas[h][j] for h in helpers]) for j in helpers]
    repaired = reshare.repair_step3(suite, sigmas, identifier=lost, public=keys[helpers[0]].public)
    assert repaired.signing_share == keys[lost].signing_share
    lying = [sigmas[0] + 1, sigmas[1]]
    with pytest.raises(FrostError):
        reshare.repair_step3(suite, lying, identifier=lost, public=keys[helpers[0]].public)


def test_frost_repair_step1_reads_the_rng_like_zf_and_validates_helpers() -> None:
    keys = keys_of(ED25519)
    rng = ScriptedRng([5])
    out = reshare.repair_step1(keys[AGENT], helpers=[USER, AGENT], lost=RECOVERY, rng=rng)
    assert out[AGENT] == 5 and not rng.queue  # the lowest helper gets the random value
    for helpers, lost in [
        ([AGENT], RECOVERY),
        ([AGENT, AGENT], RECOVERY),
        ([AGENT, USER], USER),
        ([USER, RECOVERY], AGENT),
    ]:
        with pytest.raises(FrostError):
            reshare.repair_step1(keys[AGENT], helpers=helpers, lost=lost, rng=seeded(0))
    with pytest.raises(FrostError):
        reshare.repair_step2(ED25519, [ED25519.order])
    with pytest.raises(FrostError):
        reshare.repair_step3(SECP256K1, [1], identifier=AGENT, public=keys[AGENT].public)
