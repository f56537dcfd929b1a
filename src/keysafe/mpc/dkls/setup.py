"""The one-time setup of a signing pair, run after the DKG (or a reshare) by each pair of
parties that may sign together: base OTs in both directions and a shared zero-share seed.

    round 1  i → j   base-OT sender message (z, DLog proof) for the direction where j is the
                     OT-extension sender; a commitment to i's half of the zero-share seed
    round 2  i → j   base-OT receiver message for the direction where i is the OT-extension
                     sender (choices Δ_i, with OR proofs); the opening of i's seed half
    finish           verify j's proofs and opening; derive the `PairState`

Each party ends holding, for that pair: Δ and one seed per column as OT-extension sender (it
multiplies its own inputs), both seeds per column as OT-extension receiver (it receives χ), and
the zero-share seed. A mismatch the proofs cannot see (a sender deriving its keys wrongly)
shows up at the first signature as a failed OT-extension check, which bans the pair.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, replace
from typing import Final

from keysafe.mpc.dkls import base_ot, ote
from keysafe.mpc.dkls.errors import DklsAbort
from keysafe.mpc.dkls.wire import (
    POINT_LEN,
    SESSION_ID_LEN,
    G,
    Kind,
    pack,
    party_byte,
    read_from_peer,
)
from keysafe.mpc.frost.dkg import Rng
from keysafe.mpc.frost.errors import InvalidElement
from keysafe.mpc.frost.keys import PARTIES, transcript_hash

STATE_MAGIC: Final = b"KSDKLSPAIR\x01"
_SEED_LEN: Final = 32
ROUND1_LEN: Final = base_ot.FIRST_LEN + _SEED_LEN
ROUND2_LEN: Final = base_ot.second_len(ote.KAPPA) + _SEED_LEN
PAIR_STATE_LEN: Final = (
    len(STATE_MAGIC) + 3 + POINT_LEN + 32 + ote.KAPPA * 32 + ote.KAPPA * 64 + _SEED_LEN
)


@dataclass(frozen=True, slots=True)
class PairState:
    """Party `me`'s long-term DKLs23 state for signing with `peer` under `public_key`. Secret:
    it lives in the party's encrypted share file, never in a log."""

    me: int
    peer: int
    public_key: bytes
    sender: ote.SenderSeeds
    receiver: ote.ReceiverSeeds
    zero_seed: bytes
    banned: bool = False

    def __repr__(self) -> str:
        return f"PairState(me={self.me}, peer={self.peer}, banned={self.banned})"

    def ban(self) -> PairState:
        return replace(self, banned=True)

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                STATE_MAGIC,
                bytes([self.me, self.peer, int(self.banned)]),
                self.public_key,
                self.sender.delta.to_bytes(32, "little"),
                *self.sender.seeds,
                *(k0 + k1 for k0, k1 in self.receiver.seeds),
                self.zero_seed,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PairState:
        if len(data) != PAIR_STATE_LEN or not data.startswith(STATE_MAGIC):
            raise DklsAbort("not a keysafe DKLs23 pair state (wrong length or version)")
        at = len(STATE_MAGIC)
        me, peer, banned = data[at], data[at + 1], data[at + 2]
        at += 3
        if me not in PARTIES or peer not in PARTIES:
            raise DklsAbort("corrupt DKLs23 pair state (not a pair of parties)")
        try:
            public_key = G.deserialize_element(data[at : at + POINT_LEN], what="pair public key")
        except InvalidElement:
            raise DklsAbort("corrupt DKLs23 pair state (public key)") from None
        at += POINT_LEN
        delta = int.from_bytes(data[at : at + 32], "little")
        at += 32
        sender = tuple(data[at + 32 * i : at + 32 * i + 32] for i in range(ote.KAPPA))
        at += 32 * ote.KAPPA
        receiver = tuple(
            (data[at + 64 * i : at + 64 * i + 32], data[at + 64 * i + 32 : at + 64 * i + 64])
            for i in range(ote.KAPPA)
        )
        at += 64 * ote.KAPPA
        if me == peer or banned not in (0, 1):
            raise DklsAbort("corrupt DKLs23 pair state")
        return cls(
            me,
            peer,
            public_key,
            ote.SenderSeeds(delta, sender),
            ote.ReceiverSeeds(receiver),
            data[at:],
            bool(banned),
        )


def setup_session_id(public_key: bytes, session_id: bytes, a: int, b: int) -> bytes:
    """The pair's setup session: bound to the key, the DKG or reshare run, and the two parties."""
    lo, hi = sorted((a, b))
    return transcript_hash(
        b"keysafe/dkls23/setup", public_key, session_id, party_byte(lo), party_byte(hi)
    )


@dataclass(slots=True)
class SetupState:
    """One party's secrets during the setup. Secret; each step consumes it once."""

    session_id: bytes
    public_key: bytes
    me: int
    peer: int
    base_secret: base_ot.SenderSecret
    seed: bytes
    delta: int = 0
    sender_seeds: tuple[bytes, ...] = ()
    peer_commitment: bytes = b""
    peer_z: bytes = b""
    step: int = 1

    def __repr__(self) -> str:
        return f"SetupState(me={self.me}, peer={self.peer}, step={self.step})"

    def advance(self, step: int) -> None:
        if self.step != step:
            raise DklsAbort("this setup state was already used for that step (replay refused)")
        self.step += 1


def _commit(session_id: bytes, who: int, seed: bytes) -> bytes:
    return transcript_hash(b"keysafe/dkls23/setup/zero-seed", session_id, party_byte(who), seed)


def round1(
    public_key: bytes, session_id: bytes, me: int, peer: int, rng: Rng = secrets.token_bytes
) -> tuple[SetupState, bytes]:
    """Start the setup of the pair (me, peer) for the key `public_key` (33 bytes)."""
    if len(session_id) != SESSION_ID_LEN or me == peer:
        raise ValueError("a 32-byte session id and two different parties are needed")
    sid = setup_session_id(public_key, session_id, me, peer)
    secret, first = base_ot.first(base_ot.Context(sid, me, peer), rng)
    seed = rng(_SEED_LEN)
    state = SetupState(sid, public_key, me, peer, secret, seed)
    return state, pack(Kind.SETUP1, sid, me, peer, first, _commit(sid, me, seed))


def round2(state: SetupState, message: bytes, rng: Rng = secrets.token_bytes) -> bytes:
    """Answer the peer's round 1: base-OT receiver with choices Δ; open the seed half."""
    state.advance(1)
    reader = read_from_peer(
        message, Kind.SETUP1, ROUND1_LEN, state.session_id, state.peer, state.me
    )
    ctx = base_ot.Context(state.session_id, state.peer, state.me)
    state.peer_z = base_ot.read_first(ctx, reader)
    state.peer_commitment = reader.take(_SEED_LEN)
    state.delta = int.from_bytes(rng(ote.KAPPA // 8), "little")
    keys, second = base_ot.second(ctx, state.peer_z, ote.delta_bits(state.delta), rng)
    state.sender_seeds = tuple(keys)
    return pack(Kind.SETUP2, state.session_id, state.me, state.peer, second, state.seed)


def finish(state: SetupState, message: bytes) -> PairState:
    """Verify the peer's round 2 and derive this party's `PairState`."""
    state.advance(2)
    reader = read_from_peer(
        message, Kind.SETUP2, ROUND2_LEN, state.session_id, state.peer, state.me
    )
    ctx = base_ot.Context(state.session_id, state.me, state.peer)
    pairs = base_ot.read_second(ctx, state.base_secret, reader, ote.KAPPA)
    peer_seed = reader.take(_SEED_LEN)
    if not hmac.compare_digest(
        _commit(state.session_id, state.peer, peer_seed), state.peer_commitment
    ):
        reader.fail("the zero-share seed does not open its commitment")
    seeds = {state.me: state.seed, state.peer: peer_seed}
    zero_seed = transcript_hash(
        b"keysafe/dkls23/zero-seed", state.session_id, *(seeds[i] for i in sorted(seeds))
    )
    return PairState(
        state.me,
        state.peer,
        state.public_key,
        ote.SenderSeeds(state.delta, state.sender_seeds),
        ote.ReceiverSeeds(tuple(pairs)),
        zero_seed,
    )
