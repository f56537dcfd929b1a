"""DKLs23 two-party signing (ePrint 2023/765, Protocol 3.6 with two parties) over keysafe's
2-of-3 Shamir sharing: three rounds between parties i and j, each holding its `KeyPackage`
(secp256k1) and its `PairState` for the other.

    round 1  i → j  com_i = H(sid, i, R_i, salt_i); OT-extension message for the multiplication
                    in which i receives χ_ij                          (r_i, φ_i fresh; R_i = r_i·G)
    round 2  i → j  sk_i = λ_i·x_i + ζ_i (ζ from the pair's zero seed, ζ_i + ζ_j = 0),
                    pk_i = sk_i·G; multiply (r_i, sk_i) against j's χ_ji → c^u, c^v;
                    Γ^u_i = c^u·G, Γ^v_i = c^v·G, ψ_i = φ_i − χ_ij, pk_i, R_i, salt_i, the answer
    round 3  i → j  check com_j opens, finish the multiplication (d^u, d^v), then the Γ checks
                    χ_ij·R_j = d^u·G + Γ^u_j and χ_ij·pk_j = d^v·G + Γ^v_j, and pk_i + pk_j = PK;
                    R = R_i + R_j, r = R.x;  u_i = r_i(φ_i+ψ_j) + c^u + d^u,
                    v_i = sk_i(φ_i+ψ_j) + c^v + d^v,  w_i = m·φ_i + r·v_i             → (u_i, w_i)
    finish          s = (w_i + w_j)/(u_i + u_j), low-s, recovery id from R's parity; the
                    signature must recover PK for m (coincurve), else abort and ban j

Sums: u = (r_i + r_j)·φ = k·φ and w = φ·(m + r·x), so s = (m + r·x)/k with R = k·G.

The message hash m is an input each party computes itself from the transaction it checked
against its policy, and the session id binds it: parties given different messages never reach
a secret-dependent step together (cf. CVE-2025-66017, signing a hash someone else supplied).
Every state is single-use: a round run twice, or a message from another session, is refused.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from coincurve import PublicKey

from keysafe.mpc.dkls import multiply, ote
from keysafe.mpc.dkls.errors import DklsAbort
from keysafe.mpc.dkls.setup import PairState
from keysafe.mpc.dkls.wire import (
    POINT_LEN,
    SCALAR_LEN,
    G,
    Kind,
    N,
    Reader,
    hash_to_scalar,
    pack,
    party_byte,
    read_from_peer,
    scalar_bytes,
)
from keysafe.mpc.frost.dkg import Rng, random_scalar
from keysafe.mpc.frost.groups import SECP256K1
from keysafe.mpc.frost.keys import KeyPackage, lagrange, transcript_hash

ROUND1_LEN: Final = 32 + ote.MESSAGE_LEN
ROUND2_LEN: Final = 4 * POINT_LEN + SCALAR_LEN + 32 + multiply.MESSAGE_LEN
ROUND3_LEN: Final = 2 * SCALAR_LEN
_SPENT: Final = multiply.ReceiverState(b"", 0, (), 0)  # what a forgotten state holds instead


@dataclass(frozen=True, slots=True)
class Signature:
    """A recoverable ECDSA signature with low s; `recovery_id` is 0 or 1 (Ethereum's y-parity)."""

    r: int
    s: int
    recovery_id: int

    def to_bytes(self) -> bytes:
        """r ‖ s ‖ recovery id: the 65 bytes coincurve and Ethereum's ecrecover take."""
        return scalar_bytes(self.r) + scalar_bytes(self.s) + bytes([self.recovery_id])


def session_id(
    public_key: bytes, message_hash: bytes, parties: tuple[int, int], nonce: bytes
) -> bytes:
    """The signing session: the key, the message, the two parties and a fresh nonce."""
    lo, hi = sorted(parties)
    return transcript_hash(
        b"keysafe/dkls23/sign", public_key, message_hash, party_byte(lo), party_byte(hi), nonce
    )


def _mul_session(sid: bytes, sender: int, receiver: int) -> bytes:
    return transcript_hash(
        b"keysafe/dkls23/sign/mul", sid, party_byte(sender), party_byte(receiver)
    )


def _commit(sid: bytes, who: int, point: bytes, salt: bytes) -> bytes:
    return transcript_hash(b"keysafe/dkls23/sign/com", sid, party_byte(who), point, salt)


@dataclass(slots=True)
class SigningState:
    """One party's secrets for one signing session. Secret; each round consumes it once."""

    key: KeyPackage
    pair: PairState
    session_id: bytes
    m: int
    message_hash: bytes
    r_i: int
    phi: int
    big_r: bytes
    salt: bytes
    mul: multiply.ReceiverState
    step: int = 1
    peer_commitment: bytes = b""
    sk: int = 0
    pk: bytes = b""
    c: tuple[int, ...] = ()
    big_r_total: bytes = b""
    u: int = 0
    w: int = 0

    def __repr__(self) -> str:
        return f"SigningState(me={self.pair.me}, peer={self.pair.peer}, step={self.step})"

    @property
    def me(self) -> int:
        return self.pair.me

    @property
    def peer(self) -> int:
        return self.pair.peer

    def advance(self, step: int) -> None:
        if self.step != step:
            raise DklsAbort(
                "this signing state was already used for that round, or aborted (replay refused)"
            )
        self.step += 1

    @contextmanager
    def running(self, step: int) -> Iterator[None]:
        """One round: refused unless it is the next one; an abort kills the state for good."""
        self.advance(step)
        try:
            yield
        except BaseException:
            self.forget()
            raise

    def forget(self) -> None:
        """Drop the session's secrets (best effort in Python: the ints are immutable) and make
        every later round refuse; threshold.md: r_i, φ_i and χ die with the session."""
        self.step = -1
        self.r_i = self.phi = self.sk = self.u = self.w = 0
        self.c = ()
        self.mul = _SPENT

    def reader(self, message: bytes, kind: Kind, body_len: int) -> Reader:
        return read_from_peer(message, kind, body_len, self.session_id, self.peer, self.me)


def round1(
    key: KeyPackage,
    pair: PairState,
    message_hash: bytes,
    nonce: bytes,
    rng: Rng = secrets.token_bytes,
) -> tuple[SigningState, bytes]:
    """Start signing `message_hash` (32 bytes, computed by this party) with `pair.peer`.

    Args:
        key: this party's secp256k1 key package.
        pair: this party's setup state for the peer.
        message_hash: the 32-byte hash to sign (keccak256 of the unsigned transaction).
        nonce: the session nonce both parties were given (never reused).
        rng: the randomness source.

    Raises:
        DklsAbort: the pair is banned, or the key and the pair state do not belong together.
    """
    if key.suite is not SECP256K1:
        raise DklsAbort("DKLs23 signs with secp256k1 key packages only")
    if pair.banned:
        raise DklsAbort(
            f"party {pair.peer} failed a check with this party before; this pair is banned",
            culprit=pair.peer,
            ban=True,
        )
    if pair.me != key.identifier or pair.public_key != key.public.group_public_key:
        raise DklsAbort("the pair state was set up for another key or party")
    if len(message_hash) != 32 or len(nonce) != 32:
        raise ValueError("the message hash and the session nonce are 32 bytes each")
    sid = session_id(pair.public_key, message_hash, (pair.me, pair.peer), nonce)
    r_i, phi = random_scalar(G, rng), random_scalar(G, rng)
    big_r = G.base_mul(r_i)
    salt = rng(32)
    mul_state, ote_message = multiply.receiver_start(
        pair.receiver, _mul_session(sid, pair.peer, pair.me), rng
    )
    state = SigningState(
        key,
        pair,
        sid,
        int.from_bytes(message_hash, "big") % N,
        message_hash,
        r_i,
        phi,
        big_r,
        salt,
        mul_state,
    )
    commitment = _commit(sid, pair.me, big_r, salt)
    return state, pack(Kind.SIGN1, sid, pair.me, pair.peer, commitment, ote_message)


def round2(state: SigningState, message: bytes, rng: Rng = secrets.token_bytes) -> bytes:
    """Answer the peer's round 1.

    Raises:
        DklsAbort: the message is malformed or from another session, or the OT-extension check
            failed (ban=True).
    """
    with state.running(1):
        return _round2(state, message, rng)


def _round2(state: SigningState, message: bytes, rng: Rng) -> bytes:
    reader = state.reader(message, Kind.SIGN1, ROUND1_LEN)
    state.peer_commitment = reader.take(32)
    zeta = hash_to_scalar(b"keysafe/dkls23/sign/zero", state.pair.zero_seed, state.session_id)
    if state.me > state.peer:
        zeta = -zeta
    lam = lagrange(SECP256K1, state.me, (state.me, state.peer))
    state.sk = (lam * state.key.signing_share + zeta) % N
    state.pk = G.base_mul(state.sk)
    c, answer = multiply.sender_respond(
        state.pair.sender,
        _mul_session(state.session_id, state.me, state.peer),
        [state.r_i, state.sk],
        reader,
        rng,
    )
    state.c = tuple(c)
    gamma_u, gamma_v = G.base_mul(c[0]), G.base_mul(c[1])
    if G.identity in (gamma_u, gamma_v, state.pk):
        raise DklsAbort("a zero value came up (probability 2^-256); start a new session")
    psi = (state.phi - state.mul.b) % N
    return pack(
        Kind.SIGN2,
        state.session_id,
        state.me,
        state.peer,
        gamma_u,
        gamma_v,
        state.pk,
        state.big_r,
        scalar_bytes(psi),
        state.salt,
        answer,
    )


def round3(state: SigningState, message: bytes) -> bytes:
    """Check the peer's round 2 and send this party's (u_i, w_i).

    Raises:
        DklsAbort: naming the peer: the commitment does not open, the multiplication or a Γ
            check failed (ban=True), or the public key shares do not add up (ban=True).
    """
    with state.running(2):
        return _round3(state, message)


def _round3(state: SigningState, message: bytes) -> bytes:
    reader = state.reader(message, Kind.SIGN2, ROUND2_LEN)
    gamma_u = reader.point("Γ^u")
    gamma_v = reader.point("Γ^v")
    pk_peer = reader.point("pk")
    r_peer = reader.point("R")
    psi_peer = reader.scalar("ψ")
    salt_peer = reader.take(32)
    opened = _commit(state.session_id, state.peer, r_peer, salt_peer)
    if not hmac.compare_digest(opened, state.peer_commitment):
        reader.fail("R does not open the round-1 commitment")
    d = multiply.receiver_finish(state.mul, reader)
    chi = state.mul.b
    if G.mul(chi, r_peer) != G.add(G.base_mul(d[0]), gamma_u):
        reader.fail("the Γ^u check failed (the multiplication did not use R's nonce)", ban=True)
    if G.mul(chi, pk_peer) != G.add(G.base_mul(d[1]), gamma_v):
        reader.fail("the Γ^v check failed (the multiplication did not use pk's share)", ban=True)
    if G.add(state.pk, pk_peer) != state.pair.public_key:
        reader.fail("the public key shares do not add up to the wallet's key", ban=True)
    big_r = G.add(state.big_r, r_peer)
    if big_r == G.identity:
        reader.fail("R is the identity")
    r = int.from_bytes(big_r[1:], "big") % N
    if r == 0:
        raise DklsAbort("r = 0 (probability 2^-256); start a new session")
    phi_sum = state.phi + psi_peer
    state.big_r_total = big_r
    state.u = (state.r_i * phi_sum + state.c[0] + d[0]) % N
    v = (state.sk * phi_sum + state.c[1] + d[1]) % N
    state.w = (state.m * state.phi + r * v) % N
    return pack(
        Kind.SIGN3,
        state.session_id,
        state.me,
        state.peer,
        scalar_bytes(state.u),
        scalar_bytes(state.w),
    )


def finish(state: SigningState, message: bytes) -> Signature:
    """Combine the peer's (u_j, w_j) into the signature and verify it before returning it.

    Raises:
        DklsAbort: naming the peer and banning the pair if the result is not a valid signature
            by the wallet's key on this message.
    """
    with state.running(3):
        signature = _finish(state, message)
    state.forget()  # done: nothing of the session is needed again
    return signature


def _finish(state: SigningState, message: bytes) -> Signature:
    reader = state.reader(message, Kind.SIGN3, ROUND3_LEN)
    u = (state.u + reader.scalar("u")) % N
    w = (state.w + reader.scalar("w")) % N
    if u == 0:
        reader.fail("u = 0: the final values do not combine", ban=True)
    x = int.from_bytes(state.big_r_total[1:], "big")
    if x >= N:
        # R.x ≥ n (probability ~2^-128): Ethereum cannot express that recovery id
        raise DklsAbort("R.x is not below the group order; start a new session")
    s = w * pow(u, -1, N) % N
    parity = state.big_r_total[0] & 1
    if s > N // 2:
        s, parity = N - s, parity ^ 1
    signature = Signature(x, s, parity)
    if s == 0 or not _recovers(signature, state.message_hash, state.pair.public_key):
        reader.fail("the combined signature does not verify under the wallet's key", ban=True)
    return signature


def _recovers(signature: Signature, message_hash: bytes, public_key: bytes) -> bool:
    try:
        recovered = PublicKey.from_signature_and_message(
            signature.to_bytes(), message_hash, hasher=None
        )
    except Exception:  # coincurve raises plain Exception for unrecoverable input
        return False
    return bool(recovered.format(compressed=True) == public_key)
