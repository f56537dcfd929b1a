"""FROST 2-of-3 signing end to end: every pair signs, a Solana v0 transfer verifies in solders,
and every tampered field of every message aborts the session without a signature.

Key shares come from a test-only polynomial f(x) = s + a·x built here; keysafe itself never
deals shares (its keys come from the DKG).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import random
import re
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import nacl.bindings as sodium
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey
from solders.message import MessageV0, from_bytes_versioned, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from keysafe.chains.solana.tx import parse_transaction
from keysafe.crypto import jcs
from keysafe.errors import PolicyDeniedError, UnsafePermissionsError
from keysafe.mpc.frost import signing
from keysafe.mpc.frost.errors import FrostError, InvalidElement, InvalidScalar
from keysafe.mpc.frost.groups import ED25519, SECP256K1, Suite
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER, KeyPackage, PublicKeyPackage
from keysafe.mpc.frost.session import (
    Commitments,
    Coordinator,
    CoordinatorState,
    FileNonceStore,
    SignatureShare,
    Signer,
    SigningPackage,
    SignRequest,
)
from keysafe.mpc.frost.signing import SigningCommitment, SigningNonces
from tests.unit.chains.solana import BLOCKHASH, BOB, SOL

SUITES: Final = (ED25519, SECP256K1)
PAIRS: Final = ((AGENT, USER), (AGENT, RECOVERY), (USER, RECOVERY))
MESSAGE: Final = b"send 0.5 SOL to bob"


# -- keys and parties ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    suite: Suite
    secret: int
    public: PublicKeyPackage
    packages: dict[int, KeyPackage]


def deal(suite: Suite, seed: int) -> Keys:
    """Test-only dealer: f(x) = s + a·x, share i = f(i). Never done in keysafe itself."""
    rnd = random.Random(seed)
    s, a = rnd.randrange(1, suite.order), rnd.randrange(1, suite.order)
    shares = {i: (s + a * i) % suite.order for i in (AGENT, USER, RECOVERY)}
    public = PublicKeyPackage(
        suite, suite.base_mul(s), {i: suite.base_mul(x) for i, x in shares.items()}
    )
    return Keys(suite, s, public, {i: KeyPackage(i, x, public) for i, x in shares.items()})


KEYS: Final = {suite.name: deal(suite, seed) for seed, suite in enumerate(SUITES, start=7)}


def approve_all(request: SignRequest) -> bool:
    return True


def make_signers(
    keys: Keys, root: Path, check: Callable[[SignRequest], bool] = approve_all
) -> dict[int, Signer]:
    return {
        i: Signer(kp, FileNonceStore(root / f"nonces-{i}"), check_message=check)
        for i, kp in keys.packages.items()
    }


def by_suite(name: str) -> Keys:
    return KEYS[name]


@pytest.fixture(params=[s.name for s in SUITES])
def keys(request: pytest.FixtureRequest) -> Keys:
    return by_suite(request.param)


def assert_verifies(keys: Keys, message: bytes, sig: bytes) -> None:
    assert signing.verify(keys.suite, keys.public.group_public_key, message, sig)
    if keys.suite is ED25519:
        VerifyKey(keys.public.group_public_key).verify(message, sig)  # libsodium, independent


# -- end to end -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}+{p[1]}")
def test_frost_every_pair_signs_and_the_signature_verifies(
    keys: Keys, pair: tuple[int, int], tmp_path: Path
) -> None:
    signers = make_signers(keys, tmp_path)
    coordinator = Coordinator(keys.public, pair, MESSAGE)
    sig = coordinator.run(signers)
    assert coordinator.state is CoordinatorState.DONE
    assert len(sig) == signing.signature_size(keys.suite)
    assert_verifies(keys, MESSAGE, sig)
    assert not signing.verify(keys.suite, keys.public.group_public_key, MESSAGE + b"x", sig)


def test_frost_all_three_parties_can_sign_together(keys: Keys, tmp_path: Path) -> None:
    sig = Coordinator(keys.public, (AGENT, USER, RECOVERY), MESSAGE).run(
        make_signers(keys, tmp_path)
    )
    assert_verifies(keys, MESSAGE, sig)


def test_frost_stepwise_typed_messages_round_trip_through_bytes(keys: Keys, tmp_path: Path) -> None:
    signers = make_signers(keys, tmp_path)
    coordinator = Coordinator(keys.public, (USER, AGENT), MESSAGE)
    assert coordinator.participants == (AGENT, USER)  # always sent sorted
    request = coordinator.request()
    assert SignRequest.from_bytes(request.to_bytes()) == request
    for i in coordinator.participants:
        c = signers[i].round1(request)
        assert Commitments.from_bytes(c.to_bytes(), keys.suite, sender=i) == c
        coordinator.add_commitments(c, sender=i)
    package = coordinator.signing_package()
    assert SigningPackage.from_bytes(package.to_bytes(), keys.suite) == package
    for i in coordinator.participants:
        share = signers[i].round2(package)
        assert SignatureShare.from_bytes(share.to_bytes(), keys.suite, sender=i) == share
        coordinator.add_share(share, sender=i)
    assert_verifies(keys, MESSAGE, coordinator.signature())


def _solana_transfer(payer: Pubkey) -> MessageV0:
    ix = transfer(TransferParams(from_pubkey=payer, to_pubkey=BOB, lamports=SOL // 2))
    return MessageV0.try_compile(payer, [ix], [], BLOCKHASH)


def test_frost_solana_v0_transfer_signed_2_of_3_passes_solders_verification(tmp_path: Path) -> None:
    keys = by_suite("ed25519")
    wallet = Pubkey.from_bytes(keys.public.group_public_key)
    message = _solana_transfer(wallet)
    seen: list[int] = []

    def policy(request: SignRequest) -> bool:
        # each signer decodes what it signs: a v0 system transfer paid by this wallet, to BOB
        decoded = from_bytes_versioned(request.message)
        assert isinstance(decoded, MessageV0)
        ix = decoded.instructions[0]
        keys_ = decoded.account_keys
        seen.append(len(request.message))
        return (
            keys_[0] == wallet
            and keys_[ix.program_id_index] == SYSTEM_PROGRAM
            and keys_[ix.accounts[1]] == BOB
        )

    signers = make_signers(keys, tmp_path, policy)
    sig = Coordinator(keys.public, (AGENT, USER), to_bytes_versioned(message)).run(signers)
    assert len(seen) == 2
    tx = VersionedTransaction.populate(message, [Signature.from_bytes(sig)])
    assert tx.verify_with_results() == [True]
    parsed = parse_transaction(base64.b64encode(bytes(tx)).decode())
    assert parsed.fee_payer == str(wallet)
    assert parsed.signatures[0] == Signature.from_bytes(sig)
    VerifyKey(bytes(wallet)).verify(parsed.message_bytes, sig)


# -- the policy hook -------------------------------------------------------------------------------


def test_frost_policy_refusal_stops_round_one_before_any_nonce(tmp_path: Path) -> None:
    keys = by_suite("ed25519")
    signers = make_signers(keys, tmp_path, lambda request: request.message != b"drain")
    coordinator = Coordinator(keys.public, (AGENT, USER), b"drain")
    with pytest.raises(PolicyDeniedError, match="policy did not approve"):
        coordinator.run(signers)
    assert coordinator.state is CoordinatorState.ABORTED
    assert list((tmp_path / "nonces-1").glob("*.json")) == []


def test_frost_policy_hook_must_return_true_not_just_truthy(tmp_path: Path) -> None:
    keys = by_suite("ed25519")
    signer = make_signers(keys, tmp_path, lambda request: "yes")  # type: ignore[arg-type,return-value]
    with pytest.raises(PolicyDeniedError):
        signer[AGENT].round1(Coordinator(keys.public, (AGENT, USER), MESSAGE).request())


def test_frost_signer_signs_only_the_message_it_approved(keys: Keys, tmp_path: Path) -> None:
    signers = make_signers(keys, tmp_path)
    coordinator = Coordinator(keys.public, (AGENT, USER), MESSAGE)
    for i in (AGENT, USER):
        coordinator.add_commitments(signers[i].round1(coordinator.request()), sender=i)
    package = dataclasses.replace(coordinator.signing_package(), message=b"send 500 SOL to mallory")
    with pytest.raises(FrostError, match="differs from the message approved") as e:
        signers[AGENT].round2(package)
    assert e.value.culprit is None


# -- nonce single use ------------------------------------------------------------------------------


def _round_one(
    keys: Keys, signers: dict[int, Signer], pair: tuple[int, int] = (AGENT, USER)
) -> Coordinator:
    coordinator = Coordinator(keys.public, pair, MESSAGE)
    for i in pair:
        coordinator.add_commitments(signers[i].round1(coordinator.request()), sender=i)
    coordinator.signing_package()
    return coordinator


def _package(coordinator: Coordinator) -> SigningPackage:
    package = coordinator._package
    assert package is not None
    return package


def test_frost_second_round_two_for_a_session_is_refused(keys: Keys, tmp_path: Path) -> None:
    signers = make_signers(keys, tmp_path)
    coordinator = _round_one(keys, signers)
    package = _package(coordinator)
    signers[AGENT].round2(package)
    with pytest.raises(FrostError, match="already used"):
        signers[AGENT].round2(package)
    other_message = dataclasses.replace(package, message=b"another message")
    with pytest.raises(FrostError, match="already used"):
        signers[AGENT].round2(other_message)


def test_frost_round_two_refused_after_crash_and_restart(keys: Keys, tmp_path: Path) -> None:
    signers = make_signers(keys, tmp_path)
    package = _package(_round_one(keys, signers))
    signers[AGENT].round2(package)
    # the process dies; a new one loads the store from the same directory
    reborn = Signer(
        keys.packages[AGENT], FileNonceStore(tmp_path / "nonces-1"), check_message=approve_all
    )
    with pytest.raises(FrostError, match="already used"):
        reborn.round2(package)


def test_frost_round_one_state_survives_a_crash_and_completes_once(
    keys: Keys, tmp_path: Path
) -> None:
    signers = make_signers(keys, tmp_path)
    coordinator = _round_one(keys, signers)
    package = _package(coordinator)
    reborn = {
        i: Signer(
            keys.packages[i], FileNonceStore(tmp_path / f"nonces-{i}"), check_message=approve_all
        )
        for i in (AGENT, USER)
    }
    for i in (AGENT, USER):
        coordinator.add_share(reborn[i].round2(package), sender=i)
    assert_verifies(keys, MESSAGE, coordinator.signature())
    for signer in (*reborn.values(), signers[AGENT], signers[USER]):
        with pytest.raises(FrostError, match="already used"):
            signer.round2(package)


def test_frost_nonces_are_gone_from_the_store_after_use(keys: Keys, tmp_path: Path) -> None:
    signers = make_signers(keys, tmp_path)
    coordinator = _round_one(keys, signers)
    directory = tmp_path / "nonces-1"
    (entry,) = directory.glob("*.json")
    assert entry.name == f"{coordinator.session_id.hex()}.json"
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    stored = json.loads(entry.read_bytes())
    nonce_hex = [stored["hiding_nonce"], stored["binding_nonce"]]
    nonce_raw = [bytes.fromhex(h) for h in nonce_hex]
    signers[AGENT].round2(_package(coordinator))
    for path in directory.iterdir():
        content = path.read_bytes()
        for h, raw in zip(nonce_hex, nonce_raw, strict=True):
            assert h.encode() not in content
            assert raw not in content
    assert json.loads(entry.read_bytes())["state"] == "used"
    assert not list(directory.glob(".*.tmp"))


def test_frost_failed_round_two_burns_the_nonces(keys: Keys, tmp_path: Path) -> None:
    signers = make_signers(keys, tmp_path)
    package = _package(_round_one(keys, signers))
    with pytest.raises(FrostError, match="differs"):
        signers[AGENT].round2(dataclasses.replace(package, message=b"tampered"))
    with pytest.raises(FrostError, match="already used"):
        signers[AGENT].round2(package)  # the honest retry is refused too: aborts are final


def test_frost_abort_burns_the_nonces_of_a_session(keys: Keys, tmp_path: Path) -> None:
    signers = make_signers(keys, tmp_path)
    coordinator = _round_one(keys, signers)
    signers[AGENT].abort(coordinator.session_id)
    signers[AGENT].abort(coordinator.session_id)  # idempotent
    with pytest.raises(FrostError, match="already used"):
        signers[AGENT].round2(_package(coordinator))


def test_frost_replayed_session_id_is_refused_before_the_policy_runs(tmp_path: Path) -> None:
    keys = by_suite("ed25519")
    calls: list[bytes] = []

    def policy(request: SignRequest) -> bool:
        calls.append(request.session_id)
        return True

    signer = make_signers(keys, tmp_path, policy)[AGENT]
    request = Coordinator(keys.public, (AGENT, USER), MESSAGE).request()
    signer.round1(request)
    with pytest.raises(FrostError, match="seen before"):
        signer.round1(request)
    assert len(calls) == 1


def test_frost_round_two_for_an_unknown_session_is_refused(tmp_path: Path) -> None:
    keys = by_suite("ed25519")
    signers = make_signers(keys, tmp_path)
    package = dataclasses.replace(_package(_round_one(keys, signers)), session_id=os.urandom(32))
    with pytest.raises(FrostError, match="no round-one state"):
        signers[AGENT].round2(package)


def test_frost_nonce_store_refuses_a_directory_others_can_read(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with pytest.raises(UnsafePermissionsError, match="chmod 700"):
        FileNonceStore(directory)


def test_frost_corrupt_store_entry_counts_as_used(tmp_path: Path) -> None:
    keys = by_suite("ed25519")
    signers = make_signers(keys, tmp_path)
    coordinator = _round_one(keys, signers)
    (entry,) = (tmp_path / "nonces-1").glob("*.json")
    entry.write_bytes(bytes(entry.stat().st_size))  # as left by a crash mid-wipe
    with pytest.raises(FrostError, match="already used"):
        signers[AGENT].round2(_package(coordinator))


def test_frost_secrets_never_show_in_reprs(tmp_path: Path) -> None:
    keys = by_suite("ed25519")
    nonces, _ = signing.commit(keys.packages[AGENT])
    signer = make_signers(keys, tmp_path)[AGENT]
    for text in (repr(nonces), str(nonces), repr(signer), repr(keys.packages[AGENT])):
        assert (
            str(nonces.hiding) not in text and str(keys.packages[AGENT].signing_share) not in text
        )
        assert "redacted" in text or "identifier" in text


# -- encodings that are not points of the group --------------------------------------------------

_P25519 = 2**255 - 19
_D = -121665 * pow(121666, -1, _P25519) % _P25519
_PK1 = 2**256 - 2**32 - 977


def _ed_off_curve() -> bytes:
    """The encoding of a y with no x on the curve: (y²−1)/(d·y²+1) is not a square mod p."""
    for y in range(2, 100):
        u, v = (y * y - 1) % _P25519, (_D * y * y + 1) % _P25519
        if pow(u * pow(v, -1, _P25519), (_P25519 - 1) // 2, _P25519) == _P25519 - 1:
            return y.to_bytes(32, "little")
    raise AssertionError


def _k1_off_curve() -> bytes:
    for x in range(1, 100):
        if pow((x**3 + 7) % _PK1, (_PK1 - 1) // 2, _PK1) == _PK1 - 1:
            return b"\x02" + x.to_bytes(32, "big")
    raise AssertionError


# -- tampering: every field of every message -------------------------------------------------------

ANY: Final = object()  # any culprit (or none) may be named


@dataclass(frozen=True)
class Case:
    stage: str  # "request" | "commitments" | "package" | "share"
    target: int  # which participant's copy (request, package) or message (commitments, share)
    edit: Callable[[Suite, dict[str, Any]], None] | Callable[[Suite, bytes], bytes]
    culprit: object  # expected FrostError.culprit: an id, None, or ANY
    match: str
    raw: bool = False  # edit works on the bytes, not on the parsed JSON


def _set(field: str, value: object) -> Callable[[Suite, dict[str, Any]], None]:
    def edit(suite: Suite, obj: dict[str, Any]) -> None:
        obj[field] = value

    return edit


def _del(field: str) -> Callable[[Suite, dict[str, Any]], None]:
    def edit(suite: Suite, obj: dict[str, Any]) -> None:
        del obj[field]

    return edit


def _point(k: int) -> Callable[[Suite], str]:
    return lambda suite: suite.base_mul(k).hex()


def _set_point(field: str, k: int) -> Callable[[Suite, dict[str, Any]], None]:
    def edit(suite: Suite, obj: dict[str, Any]) -> None:
        obj[field] = _point(k)(suite)

    return edit


def _off_curve(field: str) -> Callable[[Suite, dict[str, Any]], None]:
    def edit(suite: Suite, obj: dict[str, Any]) -> None:
        obj[field] = (_ed_off_curve() if suite is ED25519 else _k1_off_curve()).hex()

    return edit


def _share_plus_one(suite: Suite, obj: dict[str, Any]) -> None:
    obj["share"] = suite.serialize_scalar(
        suite.deserialize_scalar(bytes.fromhex(obj["share"])) + 1
    ).hex()


def _share_order(suite: Suite, obj: dict[str, Any]) -> None:
    obj["share"] = suite.order.to_bytes(32, "little" if suite is ED25519 else "big").hex()


def _entries(
    edit: Callable[[Suite, list[dict[str, Any]]], object],
) -> Callable[[Suite, dict[str, Any]], None]:
    def outer(suite: Suite, obj: dict[str, Any]) -> None:
        edit(suite, obj["commitments"])

    return outer


def _entry_point(index: int, field: str, k: int) -> Callable[[Suite, list[dict[str, Any]]], None]:
    def edit(suite: Suite, entries: list[dict[str, Any]]) -> None:
        entries[index][field] = suite.base_mul(k).hex()

    return edit


def _entry_identity(suite: Suite, entries: list[dict[str, Any]]) -> None:
    entries[1]["binding"] = suite.identity.hex()


def _add_third(suite: Suite, entries: list[dict[str, Any]]) -> None:
    entries.append(
        {"identifier": 3, "hiding": suite.base_mul(5).hex(), "binding": suite.base_mul(6).hex()}
    )


def _entry_extra_field(suite: Suite, entries: list[dict[str, Any]]) -> None:
    entries[0]["note"] = "x"


OTHER_SID: Final = "ab" * 32

CASES: Final[dict[str, Case]] = {
    # S0 SignRequest, as one signer receives it
    "request version 2": Case("request", 1, _set("version", 2), None, "field 'version'"),
    "request version true": Case("request", 1, _set("version", True), None, "not an integer"),
    "request unknown field": Case(
        "request", 1, _set("memo", "hi"), None, "field 'memo' is not a field"
    ),
    "request wrong type tag": Case(
        "request", 1, _set("type", "frost.signing_package"), None, "field 'type'"
    ),
    "request missing message": Case(
        "request", 2, _del("message"), None, "field 'message' is missing"
    ),
    "request session id changed": Case(
        "request", 2, _set("session_id", OTHER_SID), 2, "another session"
    ),
    "request session id short": Case(
        "request", 1, _set("session_id", "ab" * 31), None, "field 'session_id'"
    ),
    "request participants without signer": Case(
        "request", 1, _set("participants", [2, 3]), None, "does not include this signer"
    ),
    "request participants another set": Case(
        "request", 2, _set("participants", [2, 3]), None, "agreed set"
    ),
    "request participants unsorted": Case(
        "request", 1, _set("participants", [2, 1]), None, "ascending"
    ),
    "request participants duplicate": Case(
        "request", 1, _set("participants", [1, 1]), None, "ascending"
    ),
    "request participants unknown id": Case(
        "request", 1, _set("participants", [1, 4]), None, "not one of"
    ),
    "request participants single": Case(
        "request", 1, _set("participants", [1]), None, "has 1 entries"
    ),
    "request message changed": Case(
        "request", 2, _set("message", b"other".hex()), None, "differs from the message approved"
    ),
    "request message uppercase hex": Case(
        "request", 1, _set("message", MESSAGE.hex().upper()), None, "lowercase hex"
    ),
    "request not canonical": Case(
        "request", 1, lambda s, b: b.replace(b",", b", ", 1), None, "not canonical", raw=True
    ),
    "request not json": Case("request", 1, lambda s, b: b[:-1], None, "not valid JSON", raw=True),
    "request duplicate key": Case(
        "request", 1, lambda s, b: b[:-1] + b',"version":1}', None, "appears twice", raw=True
    ),
    # S1 Commitments, as the coordinator receives them from `target`
    "commitments version 2": Case("commitments", 2, _set("version", 2), 2, "field 'version'"),
    "commitments session id": Case(
        "commitments", 2, _set("session_id", OTHER_SID), 2, "another session"
    ),
    "commitments sender claims another": Case(
        "commitments", 1, _set("sender", 2), 1, "claims participant 2"
    ),
    "commitments sender not a participant": Case(
        "commitments", 1, _set("sender", 3), 1, "claims participant 3"
    ),
    "commitments sender out of range": Case("commitments", 1, _set("sender", 9), 1, "not one of"),
    "commitments hiding replaced": Case(
        "commitments", 1, _set_point("hiding", 5), None, "changed this signer"
    ),
    "commitments binding replaced": Case(
        "commitments", 2, _set_point("binding", 5), None, "changed this signer"
    ),
    "commitments hiding identity": Case(
        "commitments", 1, lambda s, o: o.update(hiding=s.identity.hex()), 1, "field 'hiding'"
    ),
    "commitments binding off the curve": Case(
        "commitments", 2, _off_curve("binding"), 2, "field 'binding'"
    ),
    "commitments hiding short": Case(
        "commitments", 1, lambda s, o: o.update(hiding=o["hiding"][:-2]), 1, "field 'hiding' has"
    ),
    "commitments hiding uppercase": Case(
        "commitments", 1, lambda s, o: o.update(hiding=o["hiding"].upper()), 1, "lowercase hex"
    ),
    "commitments unknown field": Case(
        "commitments", 2, _set("proof", "00"), 2, "field 'proof' is not a field"
    ),
    "commitments missing binding": Case(
        "commitments", 2, _del("binding"), 2, "field 'binding' is missing"
    ),
    "commitments not canonical": Case(
        "commitments", 2, lambda s, b: b" " + b, 2, "not canonical", raw=True
    ),
    # S2 SigningPackage, as one signer receives it
    "package version 2": Case("package", 1, _set("version", 2), None, "field 'version'"),
    "package session id": Case(
        "package", 1, _set("session_id", OTHER_SID), None, "no round-one state"
    ),
    "package message changed": Case(
        "package",
        2,
        _set("message", b"pay mallory".hex()),
        None,
        "differs from the message approved",
    ),
    "package unknown field": Case(
        "package", 1, _set("participants", [1, 2]), None, "field 'participants' is not a field"
    ),
    "package commitments reversed": Case(
        "package", 1, _entries(lambda s, e: e.reverse()), None, "commitments"
    ),
    "package commitments duplicated": Case(
        "package", 1, _entries(lambda s, e: e.__setitem__(1, dict(e[0]))), None, "agreed set"
    ),
    "package commitments one dropped": Case(
        "package", 2, _entries(lambda s, e: e.pop(0)), None, "agreed set"
    ),
    "package commitments third added": Case("package", 1, _entries(_add_third), None, "agreed set"),
    "package own hiding changed": Case(
        "package", 1, _entries(_entry_point(0, "hiding", 9)), None, "changed this signer"
    ),
    "package own binding changed": Case(
        "package", 2, _entries(_entry_point(1, "binding", 9)), None, "changed this signer"
    ),
    "package other's hiding changed": Case(
        "package", 1, _entries(_entry_point(1, "hiding", 9)), ANY, "does not verify"
    ),
    "package other's binding identity": Case(
        "package", 1, _entries(_entry_identity), None, "commitments[1].binding"
    ),
    "package commitment extra field": Case(
        "package", 1, _entries(_entry_extra_field), None, "commitments[0]"
    ),
    "package commitment id bool": Case(
        "package", 1, _entries(lambda s, e: e[0].update(identifier=True)), None, "not an integer"
    ),
    # S3 SignatureShare, as the coordinator receives it from `target`
    "share plus one": Case("share", 2, _share_plus_one, 2, "does not verify"),
    "share zero": Case("share", 1, lambda s, o: o.update(share="00" * 32), 1, "does not verify"),
    "share equal to the group order": Case(
        "share", 2, _share_order, 2, "not below the group order"
    ),
    "share all ones": Case("share", 1, _set("share", "ff" * 32), 1, "field 'share'"),
    "share short": Case(
        "share", 1, lambda s, o: o.update(share=o["share"][:-2]), 1, "field 'share' has"
    ),
    "share session id": Case("share", 2, _set("session_id", OTHER_SID), 2, "another session"),
    "share sender claims another": Case("share", 2, _set("sender", 1), 2, "claims participant 1"),
    "share version 2": Case("share", 1, _set("version", 2), 1, "field 'version'"),
    "share wrong type tag": Case("share", 1, _set("type", "frost.commitments"), 1, "field 'type'"),
    "share extra field": Case("share", 2, _set("z", "00"), 2, "field 'z' is not a field"),
}


class TamperingEndpoint:
    """A signer whose incoming or outgoing messages an attacker rewrites."""

    def __init__(self, signer: Signer, suite: Suite, case: Case | None) -> None:
        self.signer, self.suite, self.case = signer, suite, case

    def _maybe(self, stage: str, data: bytes) -> bytes:
        case = self.case
        if case is None or case.stage != stage or case.target != self.signer.identifier:
            return data
        edit: Any = case.edit  # bytes -> bytes when raw, else it edits the parsed object
        if case.raw:
            out: bytes = edit(self.suite, data)
            return out
        obj = json.loads(data)
        edit(self.suite, obj)
        return jcs.dumps(obj)

    def handle_round1(self, data: bytes) -> bytes:
        out = self.signer.handle_round1(self._maybe("request", data))
        return self._maybe("commitments", out)

    def handle_round2(self, data: bytes) -> bytes:
        out = self.signer.handle_round2(self._maybe("package", data))
        return self._maybe("share", out)


@pytest.mark.parametrize("name", list(CASES))
def test_frost_tampered_field_aborts_without_a_signature(
    keys: Keys, name: str, tmp_path: Path
) -> None:
    case = CASES[name]
    signers = make_signers(keys, tmp_path)
    endpoints = {i: TamperingEndpoint(signers[i], keys.suite, case) for i in (AGENT, USER)}
    coordinator = Coordinator(keys.public, (AGENT, USER), MESSAGE)
    with pytest.raises(FrostError) as e:
        coordinator.run(endpoints)
    assert case.match in str(e.value)
    if case.culprit is not ANY:
        assert e.value.culprit == case.culprit
    assert coordinator.state is CoordinatorState.ABORTED
    with pytest.raises(FrostError, match="aborted"):
        coordinator.signature()


def test_frost_untampered_harness_signs(keys: Keys, tmp_path: Path) -> None:
    signers = make_signers(keys, tmp_path)
    endpoints = {i: TamperingEndpoint(signers[i], keys.suite, None) for i in (AGENT, USER)}
    assert_verifies(keys, MESSAGE, Coordinator(keys.public, (AGENT, USER), MESSAGE).run(endpoints))


def test_frost_duplicate_commitments_name_the_sender(keys: Keys, tmp_path: Path) -> None:
    signers = make_signers(keys, tmp_path)
    coordinator = Coordinator(keys.public, (AGENT, USER), MESSAGE)
    c = signers[USER].round1(coordinator.request())
    coordinator.add_commitments(c.to_bytes(), sender=USER)
    with pytest.raises(FrostError, match="twice") as e:
        coordinator.add_commitments(c.to_bytes(), sender=USER)
    assert e.value.culprit == USER
    assert coordinator.state is CoordinatorState.ABORTED


def test_frost_outsider_messages_name_the_outsider(keys: Keys, tmp_path: Path) -> None:
    signers = make_signers(keys, tmp_path)
    coordinator = Coordinator(keys.public, (AGENT, USER), MESSAGE)
    request = dataclasses.replace(coordinator.request(), participants=(AGENT, RECOVERY))
    c = signers[RECOVERY].round1(request)
    with pytest.raises(FrostError, match="outside this session") as e:
        coordinator.add_commitments(c, sender=RECOVERY)
    assert e.value.culprit == RECOVERY


def test_frost_duplicate_share_names_the_sender(keys: Keys, tmp_path: Path) -> None:
    signers = make_signers(keys, tmp_path)
    coordinator = _round_one(keys, signers)
    share = signers[AGENT].round2(_package(coordinator))
    coordinator.add_share(share, sender=AGENT)
    with pytest.raises(FrostError, match="twice") as e:
        coordinator.add_share(share, sender=AGENT)
    assert e.value.culprit == AGENT


# -- typed messages are validated when built -------------------------------------------------------

SID: Final = bytes(range(32))


def _any(value: object) -> Any:
    """A value of the wrong type, smuggled past the type checker on purpose."""
    return value


POINT: Final = ED25519.base_mul(3)

TYPED: Final[dict[str, tuple[Callable[[], object], str]]] = {
    "request version": (
        lambda: SignRequest(version=2, session_id=SID, participants=(1, 2), message=b""),
        "field 'version'",
    ),
    "request session id": (
        lambda: SignRequest(session_id=SID[:8], participants=(1, 2), message=b""),
        "field 'session_id'",
    ),
    "request participants list": (
        lambda: SignRequest(session_id=SID, participants=_any([1, 2]), message=b""),
        "field 'participants'",
    ),
    "request message str": (
        lambda: SignRequest(session_id=SID, participants=(1, 2), message=_any("hi")),
        "field 'message'",
    ),
    "request message huge": (
        lambda: SignRequest(session_id=SID, participants=(1, 2), message=bytes(70_000)),
        "field 'message'",
    ),
    "commitments sender": (
        lambda: Commitments(session_id=SID, sender=0, hiding=POINT, binding=POINT),
        "field 'sender'",
    ),
    "commitments hiding": (
        lambda: Commitments(session_id=SID, sender=1, hiding=POINT[:5], binding=POINT),
        "field 'hiding'",
    ),
    "package commitments": (
        lambda: SigningPackage(session_id=SID, message=b"", commitments=()),
        "field 'commitments'",
    ),
    "package entry id": (
        lambda: SigningPackage(
            session_id=SID, message=b"", commitments=(SigningCommitment(7, POINT, POINT),)
        ),
        "commitments[0].identifier",
    ),
    "share sender bool": (
        lambda: SignatureShare(session_id=SID, sender=True, share=bytes(32)),
        "field 'sender'",
    ),
    "share length": (
        lambda: SignatureShare(session_id=SID, sender=2, share=bytes(31)),
        "field 'share'",
    ),
}


@pytest.mark.parametrize("name", list(TYPED))
def test_frost_typed_message_with_bad_field_is_refused_when_built(name: str) -> None:
    build, match = TYPED[name]
    with pytest.raises(FrostError, match=re.escape(match)):
        build()


# -- invalid points and scalars --------------------------------------------------------------------

_ED_ORDER_2 = bytes.fromhex("ec" + "ff" * 30 + "7f")  # (0, −1)
INVALID_POINTS: Final = {
    "ed25519": {
        "identity": ED25519.identity,
        "small order (0,-1)": _ED_ORDER_2,
        "mixed order G+(0,-1)": bytes(
            sodium.crypto_core_ed25519_add(ED25519.base_mul(1), _ED_ORDER_2)
        ),
        "non-canonical y = p": (_P25519).to_bytes(32, "little"),
        "non-canonical identity with sign bit": bytes([1]) + bytes(30) + bytes([0x80]),
        "off curve": _ed_off_curve(),
        "short": ED25519.base_mul(2)[:31],
    },
    "secp256k1": {
        "identity": SECP256K1.identity,
        "off curve": _k1_off_curve(),
        "x not below p": b"\x02" + b"\xff" * 32,
        "uncompressed prefix": b"\x04" + SECP256K1.base_mul(2)[1:],
        "bad prefix": b"\x05" + SECP256K1.base_mul(2)[1:],
        "short": SECP256K1.base_mul(2)[:32],
    },
}
POINT_CASES: Final = [(s, n) for s, cases in INVALID_POINTS.items() for n in cases]


@pytest.mark.parametrize(
    ("suite_name", "case"), POINT_CASES, ids=[f"{s}-{n}" for s, n in POINT_CASES]
)
def test_frost_invalid_point_is_refused_everywhere(
    suite_name: str, case: str, tmp_path: Path
) -> None:
    keys = by_suite(suite_name)
    suite, bad = keys.suite, INVALID_POINTS[suite_name][case]
    good = [signing.commit(keys.packages[i])[1] for i in (AGENT, USER)]
    # in a commitment list: blamed on its owner
    for field in ("hiding", "binding"):
        replaced = SigningCommitment(
            USER,
            bad if field == "hiding" else good[1].hiding,
            bad if field == "binding" else good[1].binding,
        )
        tampered = [good[0], replaced]
        with pytest.raises(InvalidElement) as e:
            signing.validate_commitments(suite, tampered)
        assert e.value.culprit == USER
    # on the wire, as the coordinator receives it
    coordinator = Coordinator(keys.public, (AGENT, USER), MESSAGE)
    if len(bad) == suite.element_len:
        message = Commitments(
            session_id=coordinator.session_id, sender=USER, hiding=bad, binding=good[1].binding
        )
        with pytest.raises(FrostError, match="hiding") as e2:
            coordinator.add_commitments(message.to_bytes(), sender=USER)
        assert e2.value.culprit == USER
    # as a signature's R or as the group key
    sig = bad + bytes(suite.scalar_len)
    assert not signing.verify(suite, keys.public.group_public_key, MESSAGE, sig)
    assert not signing.verify(suite, bad, MESSAGE, suite.base_mul(1) + bytes(suite.scalar_len))


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("value", ["order", "order+1", "all ones"])
def test_frost_scalar_not_below_the_order_is_refused(
    suite: Suite, value: str, tmp_path: Path
) -> None:
    keys = by_suite(suite.name)
    n = {"order": suite.order, "order+1": suite.order + 1, "all ones": 2**256 - 1}[value]
    raw = n.to_bytes(32, "little" if suite is ED25519 else "big")
    signers = make_signers(keys, tmp_path)
    coordinator = _round_one(keys, signers)
    package = _package(coordinator)
    good = signers[USER].round2(package).share
    with pytest.raises(InvalidScalar) as e:
        signing.aggregate(keys.public, package.commitments, MESSAGE, {AGENT: raw, USER: good})
    assert e.value.culprit == AGENT
    # z ≥ order in a signature: malleability, refused by both verifiers
    valid = Coordinator(keys.public, (AGENT, USER), MESSAGE).run(make_signers(keys, tmp_path / "b"))
    z = int.from_bytes(valid[suite.element_len :], "little" if suite is ED25519 else "big")
    high = (
        (z + suite.order).to_bytes(32, "little" if suite is ED25519 else "big")
        if z + suite.order < 2**256
        else None
    )
    assert not signing.verify(
        suite, keys.public.group_public_key, MESSAGE, valid[: suite.element_len] + raw
    )
    if high is not None:
        assert not signing.verify(
            suite, keys.public.group_public_key, MESSAGE, valid[: suite.element_len] + high
        )


def test_frost_group_commitment_identity_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = by_suite("ed25519")
    commitments = [signing.commit(keys.packages[i])[1] for i in (AGENT, USER)]
    monkeypatch.setattr(signing, "compute_group_commitment", lambda *a: ED25519.identity)
    with pytest.raises(FrostError, match="identity"):
        signing.aggregate(keys.public, commitments, MESSAGE, {AGENT: bytes(32), USER: bytes(32)})


def test_frost_sign_refuses_lists_it_cannot_trust(keys: Keys) -> None:
    kp = keys.packages[AGENT]
    nonces, mine = signing.commit(kp)
    _, theirs = signing.commit(keys.packages[USER])
    _, third = signing.commit(keys.packages[RECOVERY])
    cases = {
        "not sorted": ([theirs, mine], "not sorted"),
        "duplicate": ([mine, mine], "twice"),
        "alone": ([mine], "2 to 3 commitments"),
        "missing self": ([theirs, third], "does not include this signer"),
        "changed self": (
            [dataclasses.replace(mine, hiding=keys.suite.base_mul(4)), theirs],
            "changed commitment",
        ),
        "unknown id": ([mine, dataclasses.replace(theirs, identifier=4)], "not one of"),
    }
    for name, (commitments, match) in cases.items():
        with pytest.raises(FrostError, match=match):
            signing.sign(kp, nonces, MESSAGE, commitments)
        assert name


def test_frost_nonces_reject_zero() -> None:
    with pytest.raises(ValueError, match="non-zero"):
        SigningNonces(0, 1)


def test_frost_nonce_generate_needs_32_random_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        signing.nonce_generate(ED25519, 1, bytes(31))


# -- property: random messages, random pairs -------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    suite_name=st.sampled_from([s.name for s in SUITES]),
    pair=st.sampled_from(PAIRS),
    message=st.binary(max_size=300),
)
def test_frost_property_random_messages_sign_and_verify_for_random_pairs(
    suite_name: str, pair: tuple[int, int], message: bytes
) -> None:
    keys = by_suite(suite_name)
    with tempfile.TemporaryDirectory() as root:
        sig = Coordinator(keys.public, pair, message).run(make_signers(keys, Path(root)))
    assert_verifies(keys, message, sig)
