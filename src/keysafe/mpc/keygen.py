"""One party's side of a 2-of-3 key ceremony, as rounds of messages: a key generation (the DKG
of `mpc/frost/dkg.py`) or a reshare (`mpc/frost/reshare.py`: any two holders re-deal the same
key to fresh shares for all three), each followed, for a secp256k1 (EVM) wallet, by the DKLs23
setup of this party's two pairs. Each of the three parties runs one party object in its own
process (the agent's host, the server, the owner's CLI); only messages cross, so no process
ever holds two shares.

    keygen                                     reshare (quorum Q of two dealers)
    round 1  DKG round-1 package (both peers)  dealers: commitment ‖ share for that peer;
                                               the one outside Q sends nothing (empty)
    round 2  DKG round-2 package (each peer)   reshare confirmation (both peers)
    round 3  DKG confirmation (both peers)     -
    then, secp256k1 only: DKLs23 setup round 1, then round 2, to each peer

`start()` gives round 1's messages by receiver; `step(r, inbox)` takes every peer's round-r
message and gives round r+1's, or `{}` after the last round, when `share` is ready. A failed
check raises `FrostError` naming the sender and the state is dropped. Transport and the
end-to-end channel (`mpc/channel.py`) are the caller's; payloads here are plaintext.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeVar

from keysafe.mpc.dkls import setup as dkls_setup
from keysafe.mpc.frost import dkg, key_messages, reshare
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import SECP256K1, Suite
from keysafe.mpc.frost.keys import PARTIES, KeyPackage, PublicKeyPackage
from keysafe.mpc.share_file import Share

__all__ = ["SESSION_ID_LEN", "KeygenParty", "ReshareParty", "public_digest"]

SESSION_ID_LEN: Final = key_messages.SESSION_ID_LEN
_SETUP_ROUNDS: Final = 2
_LEN: Final = 4  # the length prefix of a dealer's commitment in its round-1 message
# The message of a ceremony's last core round.
_Confirmation = TypeVar("_Confirmation", dkg.Confirmation, reshare.ReshareConfirmation)


def public_digest(public: PublicKeyPackage, session_id: bytes) -> bytes:
    """What each party confirms to the vault at the end, once it keeps its share: the public
    package it derived (the DKG's confirmation digest, H(sid, PK, X_1, X_2, X_3))."""
    return public.digest(session_id)


class _Party:
    """Rounds, order and forgetting; the DKLs23 pair setup that ends a secp256k1 ceremony."""

    core_rounds: int = 0

    def __init__(self, suite: Suite, me: int, session_id: bytes) -> None:
        if me not in PARTIES or len(session_id) != SESSION_ID_LEN:
            raise ValueError("a ceremony party is 1, 2 or 3, with a 32-byte session id")
        self.suite, self.me, self.session_id = suite, me, session_id
        self.rounds = self.core_rounds + (_SETUP_ROUNDS if suite is SECP256K1 else 0)
        self.peers = tuple(j for j in PARTIES if j != me)
        self._round = 0
        self._key: KeyPackage | None = None
        self._setups: dict[int, dkls_setup.SetupState] = {}
        self.share: Share | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(me={self.me}, round={self._round}/{self.rounds})"

    def start(self) -> dict[int, bytes]:
        """Round 1's messages, by receiver."""
        self._advance(0)
        try:
            return self._start()
        except BaseException:
            self._forget()
            raise

    def step(self, round_: int, inbox: Mapping[int, bytes]) -> dict[int, bytes]:
        """Take every peer's round-`round_` message; give round `round_ + 1`'s (by receiver),
        or `{}` when the ceremony is over and `share` is set.

        Raises:
            FrostError: a message fails a check (`culprit` names the sender); the state is
                dropped, and nothing of this run may be used.
            ValueError: called out of order.
        """
        self._advance(round_)
        if set(inbox) != set(self.peers):
            raise ValueError(f"round {round_} needs one message from each of {self.peers}")
        try:
            if round_ <= self.core_rounds:
                return self._core(round_, inbox)
            return self._setup(round_ - self.core_rounds, inbox)
        except BaseException:
            self._forget()
            raise

    def _start(self) -> dict[int, bytes]:
        raise NotImplementedError

    def _core(self, round_: int, inbox: Mapping[int, bytes]) -> dict[int, bytes]:
        raise NotImplementedError

    def _advance(self, round_: int) -> None:
        if self._round != round_ or self._round > self.rounds:
            raise ValueError(f"ceremony party at round {self._round} was given round {round_}")
        self._round += 1

    def _confirmed(
        self,
        kind: type[_Confirmation],
        finish: Callable[[KeyPackage, Mapping[int, _Confirmation]], KeyPackage],
        own: _Confirmation | None,
        inbox: Mapping[int, bytes],
    ) -> dict[int, bytes]:
        """The last core round: every peer's confirmation of `kind` and `own` go to `finish`,
        which activates this party's key."""
        assert self._key is not None and own is not None
        confirmations = {
            j: kind.from_bytes(m, suite=self.suite, session_id=self.session_id, sender=j)
            for j, m in inbox.items()
        } | {self.me: own}
        return self._done(finish(self._key, confirmations))

    def _done(self, key: KeyPackage) -> dict[int, bytes]:
        """The core protocol gave this party its key: done, or on to the pair setup."""
        self._key = key
        if self.suite is not SECP256K1:
            self.share = Share(key)
            return {}
        pk = key.public.group_public_key
        out = {}
        for j in self.peers:
            self._setups[j], out[j] = dkls_setup.round1(pk, self.session_id, self.me, j)
        return out

    def _setup(self, step: int, inbox: Mapping[int, bytes]) -> dict[int, bytes]:
        if step == 1:
            return {j: dkls_setup.round2(self._setups[j], m) for j, m in inbox.items()}
        assert self._key is not None
        pairs = {j: dkls_setup.finish(self._setups[j], m) for j, m in inbox.items()}
        self._setups.clear()
        self.share = Share(self._key, pairs)
        return {}

    def forget(self) -> None:
        """Drop every secret this party holds (its share too); nothing more runs on it."""
        self._forget()

    def _forget(self) -> None:
        self._key = None
        self._setups.clear()
        self.share = None
        self._round = self.rounds + 1  # nothing more runs on this state


class KeygenParty(_Party):
    """Party `me`'s state for one key generation with session id `session_id`."""

    core_rounds = 3

    def __init__(self, suite: Suite, me: int, session_id: bytes) -> None:
        super().__init__(suite, me, session_id)
        self._r1_secret: dkg.Round1Secret | None = None
        self._r2_secret: dkg.Round2Secret | None = None
        self._round1: dict[int, dkg.Round1Package] = {}
        self._confirmation: dkg.Confirmation | None = None

    def _start(self) -> dict[int, bytes]:
        self._r1_secret, package = dkg.part1(self.suite, self.me, self.session_id)
        return dict.fromkeys(self.peers, package.to_bytes())

    def _core(self, round_: int, inbox: Mapping[int, bytes]) -> dict[int, bytes]:
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
            self._key, self._confirmation = dkg.part3(self._r2_secret, self._round1, received)
            self._r2_secret = None
            return dict.fromkeys(self.peers, self._confirmation.to_bytes())
        return self._confirmed(dkg.Confirmation, dkg.finish, self._confirmation, inbox)

    def _forget(self) -> None:
        super()._forget()
        self._r1_secret = self._r2_secret = None


class ReshareParty(_Party):
    """Party `me`'s state for one reshare of the wallet whose current public package is
    `old_public`, dealt by the two parties of `quorum`; `old_key` is this party's current key
    when it deals (None when it only receives: a lost share is being replaced)."""

    core_rounds = 2

    def __init__(
        self,
        me: int,
        session_id: bytes,
        old_public: PublicKeyPackage,
        quorum: Sequence[int],
        old_key: KeyPackage | None,
    ) -> None:
        super().__init__(old_public.suite, me, session_id)
        self.quorum = tuple(sorted(quorum))
        if (me in self.quorum) != (old_key is not None):
            raise ValueError("a dealer reshares its current key; the party outside deals none")
        if old_key is not None and (
            old_key.identifier != me
            or old_key.public.group_public_key != old_public.group_public_key
        ):
            raise ValueError("that key is not this party's share of this wallet")
        self.old_public, self._old_key = old_public, old_key
        self._own: tuple[reshare.ReshareCommitment, reshare.ReshareShare] | None = None
        self._confirmation: reshare.ReshareConfirmation | None = None

    def _start(self) -> dict[int, bytes]:
        if self._old_key is None:
            return dict.fromkeys(self.peers, b"")
        commitment, shares = reshare.deal(
            self._old_key, quorum=self.quorum, session_id=self.session_id
        )
        self._old_key = None  # dealt: this object needs it no more
        self._own = (commitment, shares[self.me])
        c = commitment.to_bytes()
        return {j: len(c).to_bytes(_LEN, "big") + c + shares[j].to_bytes() for j in self.peers}

    def _dealt(self, j: int, m: bytes) -> tuple[reshare.ReshareCommitment, reshare.ReshareShare]:
        suite, sid = self.suite, self.session_id
        n = int.from_bytes(m[:_LEN], "big")
        if len(m) < _LEN + n:
            raise FrostError("a reshare deal cut short", culprit=j)
        commitment = reshare.ReshareCommitment.from_bytes(
            m[_LEN : _LEN + n], suite=suite, session_id=sid, sender=j
        )
        share = reshare.ReshareShare.from_bytes(
            m[_LEN + n :], suite=suite, session_id=sid, sender=j, receiver=self.me
        )
        return commitment, share

    def _core(self, round_: int, inbox: Mapping[int, bytes]) -> dict[int, bytes]:
        sid = self.session_id
        if round_ == 1:
            dealt = {}
            for j, m in inbox.items():
                if j not in self.quorum:
                    if m:
                        raise FrostError("dealt though it is not in the quorum", culprit=j)
                    continue
                dealt[j] = self._dealt(j, m)
            if self._own is not None:
                dealt[self.me] = self._own
            self._key, self._confirmation = reshare.receive(
                self.me,
                self.old_public,
                quorum=self.quorum,
                session_id=sid,
                commitments={i: d[0] for i, d in dealt.items()},
                shares={i: d[1] for i, d in dealt.items()},
            )
            self._own = None
            return dict.fromkeys(self.peers, self._confirmation.to_bytes())
        return self._confirmed(
            reshare.ReshareConfirmation, reshare.finish, self._confirmation, inbox
        )

    def _forget(self) -> None:
        super()._forget()
        self._old_key = None
        self._own = None
