"""Shared set-up for the DKLs23 tests: one secp256k1 DKG, every pair set up, and a driver that
runs a two-party signing session with an optional edit to one party's messages."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from keysafe.mpc.dkls import setup, signing
from keysafe.mpc.dkls.errors import DklsAbort
from keysafe.mpc.frost.groups import SECP256K1
from keysafe.mpc.frost.keys import PARTIES, KeyPackage
from tests.unit.mpc.test_frost_dkg import run_dkg

Edit = Callable[[bytes], bytes]


@dataclass
class Wallet:
    keys: dict[int, KeyPackage]
    pairs: dict[tuple[int, int], setup.PairState]  # (me, peer) → me's state

    @property
    def public_key(self) -> bytes:
        return self.keys[1].public.group_public_key


def set_up_pair(
    public_key: bytes, sid: bytes, a: int, b: int
) -> tuple[setup.PairState, setup.PairState]:
    sa, ma = setup.round1(public_key, sid, a, b)
    sb, mb = setup.round1(public_key, sid, b, a)
    ra, rb = setup.round2(sa, mb), setup.round2(sb, ma)
    return setup.finish(sa, rb), setup.finish(sb, ra)


def make_wallet(seed: bytes = b"dkls-tests") -> Wallet:
    keys = run_dkg(SECP256K1, sid=seed.ljust(32, b"\0")).keys
    pk = keys[1].public.group_public_key
    pairs: dict[tuple[int, int], setup.PairState] = {}
    sid = secrets.token_bytes(32)
    for a in PARTIES:
        for b in PARTIES:
            if a < b:
                pairs[(a, b)], pairs[(b, a)] = set_up_pair(pk, sid, a, b)
    return Wallet(dict(keys), pairs)


@dataclass
class Outcome:
    """What the honest party ended with: a signature, or an abort."""

    signature: signing.Signature | None = None
    abort: DklsAbort | None = None


def run_session(
    wallet: Wallet,
    honest: int,
    other: int,
    message_hash: bytes,
    *,
    edit: dict[int, Edit] | None = None,
    nonce: bytes | None = None,
    wire: list[bytes] | None = None,
) -> tuple[Outcome, signing.SigningState]:
    """Sign with `honest` and `other`; `edit[round]` changes `other`'s message of that round
    before `honest` receives it (a malicious `other`). Returns the honest party's outcome and
    its state (for tests that look at its secrets). `wire` collects every message both ways."""
    tapped = wire if wire is not None else []
    edits = edit or {}

    def deliver(round_: int, message: bytes) -> bytes:
        tapped.append(message)
        change = edits.get(round_)
        return change(message) if change else message

    nonce = nonce or secrets.token_bytes(32)
    h_state, h1 = signing.round1(
        wallet.keys[honest], wallet.pairs[(honest, other)], message_hash, nonce
    )
    o_state, o1 = signing.round1(
        wallet.keys[other], wallet.pairs[(other, honest)], message_hash, nonce
    )
    o1 = deliver(1, o1)
    tapped.append(h1)
    # Only the honest party's own steps may abort here: the other side is the adversary.
    try:
        h2 = signing.round2(h_state, o1)
    except DklsAbort as exc:
        return Outcome(abort=exc), h_state
    o2 = deliver(2, signing.round2(o_state, h1))
    tapped.append(h2)
    try:
        tapped.append(signing.round3(h_state, o2))
    except DklsAbort as exc:
        return Outcome(abort=exc), h_state
    o3 = deliver(3, signing.round3(o_state, h2))
    try:
        return Outcome(signature=signing.finish(h_state, o3)), h_state
    except DklsAbort as exc:
        return Outcome(abort=exc), h_state
