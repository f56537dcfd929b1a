"""One party's side of a 2-of-3 key generation, as rounds of messages: the DKG of
`mpc/frost/dkg.py` and, for a secp256k1 (EVM) wallet, the DKLs23 setup of this party's two
pairs. Each of the three parties runs one `KeygenParty` in its own process (the agent's host,
the server, the owner's CLI); only messages cross, so no process ever holds two shares.

    round 1   DKG round-1 package          the same bytes to both peers (the DKG echoes them)
    round 2   DKG round-2 package          to each peer its own secret evaluation
    round 3   DKG confirmation             to both peers; after it the key package is final
    round 4   DKLs23 setup round 1         (secp256k1 only) to each peer
    round 5   DKLs23 setup round 2         (secp256k1 only) to each peer

`start()` gives round 1's messages; `step(r, inbox)` takes every peer's round-r message and
gives round r+1's, or `{}` after the last round, when `share` is ready. Transport and the
end-to-end channel (`mpc/channel.py`) are the caller's; payloads here are plaintext.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from keysafe.mpc.dkls import setup as dkls_setup
from keysafe.mpc.frost import dkg
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import SECP256K1, Suite
from keysafe.mpc.frost.keys import PARTIES, KeyPackage, PublicKeyPackage
from keysafe.mpc.share_file import Share

__all__ = ["KeygenParty", "public_digest", "rounds_for"]

SESSION_ID_LEN: Final = dkg.SESSION_ID_LEN


def rounds_for(suite: Suite) -> int:
    """How many message rounds a keygen has: the DKG's three, and the pair setup's two on
    secp256k1."""
    return 5 if suite is SECP256K1 else 3


def public_digest(public: PublicKeyPackage, session_id: bytes) -> bytes:
    """What each party confirms to the vault at the end, once it keeps its share: the public
    package it derived (the DKG's confirmation digest, H(sid, PK, X_1, X_2, X_3))."""
    return public.digest(session_id)


class KeygenParty:
    """Party `me`'s state for one keygen with session id `session_id`."""

    def __init__(self, suite: Suite, me: int, session_id: bytes) -> None:
        if me not in PARTIES or len(session_id) != SESSION_ID_LEN:
            raise ValueError("a keygen party is 1, 2 or 3, with a 32-byte session id")
        self.suite, self.me, self.session_id = suite, me, session_id
        self.rounds = rounds_for(suite)
        self.peers = tuple(j for j in PARTIES if j != me)
        self._round = 0
        self._r1_secret: dkg.Round1Secret | None = None
        self._r2_secret: dkg.Round2Secret | None = None
        self._round1: dict[int, dkg.Round1Package] = {}
        self._own_confirmation: dkg.Confirmation | None = None
        self._key: KeyPackage | None = None
        self._setups: dict[int, dkls_setup.SetupState] = {}
        self._pairs: dict[int, dkls_setup.PairState] = {}
        self.share: Share | None = None

    def __repr__(self) -> str:
        return f"KeygenParty(me={self.me}, round={self._round}/{self.rounds})"

    def start(self) -> dict[int, bytes]:
        """Round 1's messages, by receiver."""
        self._advance(0)
        self._r1_secret, package = dkg.part1(self.suite, self.me, self.session_id)
        wire = package.to_bytes()
        return dict.fromkeys(self.peers, wire)

    def step(self, round_: int, inbox: Mapping[int, bytes]) -> dict[int, bytes]:
        """Take every peer's round-`round_` message; give round `round_ + 1`'s (by receiver),
        or `{}` when the keygen is over and `share` is set.

        Raises:
            FrostError: a message fails a check (`culprit` names the sender); the state is
                dropped, and nothing of this run may be used.
            ValueError: called out of order.
        """
        self._advance(round_)
        if set(inbox) != set(self.peers):
            raise ValueError(f"round {round_} needs one message from each of {self.peers}")
        try:
            return self._step(round_, inbox)
        except BaseException:
            self._forget()
            raise

    def _advance(self, round_: int) -> None:
        if self._round != round_ or self._round > self.rounds:
            raise ValueError(f"keygen party at round {self._round} was given round {round_}")
        self._round += 1

    def _step(self, round_: int, inbox: Mapping[int, bytes]) -> dict[int, bytes]:
        suite, sid = self.suite, self.session_id
        if round_ == 1:
            assert self._r1_secret is not None
            self._round1 = {
                j: dkg.Round1Package.from_bytes(m, suite=suite, session_id=sid, sender=j)
                for j, m in inbox.items()
            }
            self._r2_secret, sent = dkg.part2(self._r1_secret, self._round1)
            self._r1_secret = None
            return {j: p.to_bytes() for j, p in sent.items()}
        if round_ == 2:
            assert self._r2_secret is not None
            received = {
                j: dkg.Round2Package.from_bytes(
                    m, suite=suite, session_id=sid, sender=j, receiver=self.me
                )
                for j, m in inbox.items()
            }
            self._key, confirmation = dkg.part3(self._r2_secret, self._round1, received)
            self._r2_secret = None
            self._own_confirmation = confirmation
            return dict.fromkeys(self.peers, confirmation.to_bytes())
        if round_ == 3:
            assert self._key is not None and self._own_confirmation is not None
            confirmations = {
                j: dkg.Confirmation.from_bytes(m, suite=suite, session_id=sid, sender=j)
                for j, m in inbox.items()
            } | {self.me: self._own_confirmation}
            key = dkg.finish(self._key, confirmations)
            if suite is not SECP256K1:
                self.share = Share(key)
                return {}
            pk = key.public.group_public_key
            out = {}
            for j in self.peers:
                self._setups[j], out[j] = dkls_setup.round1(pk, sid, self.me, j)
            return out
        if round_ == 4:
            return {j: dkls_setup.round2(self._setups[j], m) for j, m in inbox.items()}
        if round_ == 5:
            assert self._key is not None
            self._pairs = {j: dkls_setup.finish(self._setups[j], m) for j, m in inbox.items()}
            self._setups.clear()
            self.share = Share(self._key, self._pairs)
            return {}
        raise FrostError(f"keygen has no round {round_}")

    def _forget(self) -> None:
        self._r1_secret = self._r2_secret = None
        self._key = None
        self._setups.clear()
        self._pairs = {}
        self.share = None
        self._round = self.rounds + 1  # nothing more runs on this state
