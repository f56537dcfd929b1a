"""Two-party multiplication: the random vector OLE of DKLs23 (the OT-based multiplication of
DKLs19, Protocol 1, with L = 2 "forced reuse" inputs).

The receiver ends with a uniformly random b it did not choose (χ in the signing protocol), the
sender with its L chosen inputs a_j (r_i and sk_i); afterwards c_j + d_j = a_j·b, where the
sender holds c and the receiver d, and neither learns the other's input.

    receiver: random bits β ∈ {0,1}^416 and OT-extension choices (β, padding);  b = Σ g_k·β_k
              for a public random gadget g, so b is uniform (leftover hash lemma, 2s extra bits)
    sender:   α = (a_1..a_L, â_1..â_L) with fresh random masks â; a fresh salt of its own;
              per OT k: t^A_k = pad0_k, τ_k = pad1_k − pad0_k + α        (so t^A_k + t^B_k = β_k·α)
              check: challenges χ_j, χ̂_j = H(sid, τ); r_k = Σ_j χ_j·t^A_kj + χ̂_j·t^A_k(L+j);
              u_j = χ_j·a_j + χ̂_j·â_j;  c_j = Σ_k g_k·t^A_kj                      → τ, r, u
    receiver: t^B_k = β_k·τ_k − pad_k; check r_k + Σ_j χ_j·t^B_kj + χ̂_j·t^B_k(L+j) == β_k·Σ_j u_j
              for every k (else abort and ban the sender); d_j = Σ_k g_k·t^B_kj

The pads hash the sender's fresh salt with the row: were a session id ever run twice (a replay,
or a retry), a receiver that repeats its OT-extension message with flipped choices would
otherwise see the same pads with their roles swapped, and τ + τ' would give away 2·α, the
sender's share (found in review; the attack test replays exactly that).

The check forces the sender to use the same α in every OT: a sender that changes α in OT k is
caught unless it guesses β_k, and what a lucky guess reveals (a few bits of β) does not reveal
b, which is what the 2s extra bits of the gadget are for. A failure bans the pair.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from keysafe.mpc.dkls import ote
from keysafe.mpc.dkls.wire import SCALAR_LEN, N, Reader, hash_to_scalars, scalar_bytes
from keysafe.mpc.frost.dkg import Rng, random_scalar
from keysafe.mpc.frost.groups import SECP256K1
from keysafe.mpc.frost.keys import transcript_hash

L: Final = 2
WIDTH: Final = 2 * L
TAU_LEN: Final = ote.BATCH * WIDTH * SCALAR_LEN
SALT_LEN: Final = 32
MESSAGE_LEN: Final = SALT_LEN + TAU_LEN + ote.BATCH * SCALAR_LEN + L * SCALAR_LEN


def _gadget(session_id: bytes) -> list[int]:
    return hash_to_scalars(ote.BATCH, b"keysafe/dkls23/mul/gadget", session_id)


class _Pads:
    """The OTs' pads: a correlation-robust hash of (session, OT index, row) into WIDTH scalars,
    which breaks the Δ correlation between an OT's two pads. The hash state for the session's
    prefix is computed once; every input after it has a fixed length, so the encoding stays
    unambiguous."""

    __slots__ = ("_prefix",)

    def __init__(self, session_id: bytes, salt: bytes) -> None:
        self._prefix = hashlib.shake_256(
            transcript_hash(b"keysafe/dkls23/mul/pad", session_id, salt)
        )

    def __call__(self, k: int, row: int) -> list[int]:
        h = self._prefix.copy()
        h.update(k.to_bytes(2, "big") + row.to_bytes(32, "little"))
        stream = h.digest(48 * WIDTH)
        return [int.from_bytes(stream[i : i + 48], "big") % N for i in range(0, 48 * WIDTH, 48)]


def _challenges(session_id: bytes, salt: bytes, tau: bytes) -> list[int]:
    return hash_to_scalars(WIDTH, b"keysafe/dkls23/mul/check", session_id, salt, tau)


@dataclass(frozen=True, slots=True)
class ReceiverState:
    """The receiver's secrets between its two steps. Secret; used once."""

    session_id: bytes
    beta: int
    rows: tuple[int, ...]
    b: int

    def __repr__(self) -> str:
        return "ReceiverState(...)"


def receiver_start(
    seeds: ote.ReceiverSeeds, session_id: bytes, rng: Rng
) -> tuple[ReceiverState, bytes]:
    """Sample β, run the OT extension as receiver; returns the state (with b) and the message."""
    choices = int.from_bytes(rng(ote.ROW_BYTES), "little")
    beta = choices & ((1 << ote.BATCH) - 1)
    rows, message = ote.extend_receiver(seeds, session_id, choices, rng)
    b = sum(g for k, g in enumerate(_gadget(session_id)) if (beta >> k) & 1) % N
    return ReceiverState(session_id, beta, tuple(rows[: ote.BATCH]), b), message


def sender_respond(
    seeds: ote.SenderSeeds, session_id: bytes, inputs: list[int], reader: Reader, rng: Rng
) -> tuple[list[int], bytes]:
    """Check the receiver's OT-extension message and answer it; returns c and the message.

    Raises:
        DklsAbort: the OT-extension check failed (ban=True), or the message was malformed.
    """
    if len(inputs) != L:
        raise ValueError(f"the multiplication takes {L} inputs")
    rows = ote.extend_sender(seeds, session_id, reader)
    alpha = [*inputs, *(random_scalar(SECP256K1, rng) for _ in range(L))]
    gadget = _gadget(session_id)
    salt = rng(SALT_LEN)
    pads = _Pads(session_id, salt)
    t_a: list[list[int]] = []
    tau_parts: list[bytes] = []
    for k in range(ote.BATCH):
        pad0 = pads(k, rows[k])
        pad1 = pads(k, rows[k] ^ seeds.delta)
        t_a.append(pad0)
        tau_parts.extend(
            scalar_bytes(p1 - p0 + a) for p0, p1, a in zip(pad0, pad1, alpha, strict=True)
        )
    tau = b"".join(tau_parts)
    chi = _challenges(session_id, salt, tau)
    r = [sum(chi[j] * t[j] + chi[L + j] * t[L + j] for j in range(L)) % N for t in t_a]
    u = [(chi[j] * alpha[j] + chi[L + j] * alpha[L + j]) % N for j in range(L)]
    c = [sum(g * t[j] for g, t in zip(gadget, t_a, strict=True)) % N for j in range(L)]
    message = (
        salt + tau + b"".join(scalar_bytes(v) for v in r) + b"".join(scalar_bytes(v) for v in u)
    )
    return c, message


def receiver_finish(state: ReceiverState, reader: Reader) -> list[int]:
    """Check the sender's answer; returns d with c_j + d_j = a_j·b.

    Raises:
        DklsAbort: the multiplication check failed (ban=True), or the message was malformed.
    """
    salt = reader.take(SALT_LEN)
    tau_raw = reader.take(TAU_LEN)
    tau = [
        int.from_bytes(tau_raw[i : i + SCALAR_LEN], "big") for i in range(0, TAU_LEN, SCALAR_LEN)
    ]
    if any(v >= N for v in tau):
        reader.fail("sign2: a multiplication τ value is not below the group order")
    r = [reader.scalar(f"multiplication r[{k}]") for k in range(ote.BATCH)]
    u = [reader.scalar(f"multiplication u[{j}]") for j in range(L)]
    chi = _challenges(state.session_id, salt, tau_raw)
    u_sum = sum(u) % N
    gadget = _gadget(state.session_id)
    pads = _Pads(state.session_id, salt)
    d = [0] * L
    for k in range(ote.BATCH):
        pad = pads(k, state.rows[k])
        chosen = (state.beta >> k) & 1
        t_b = [(tau[k * WIDTH + w] - p) if chosen else -p for w, p in enumerate(pad)]
        lhs = r[k] + sum(chi[j] * t_b[j] + chi[L + j] * t_b[L + j] for j in range(L))
        if (lhs - (u_sum if chosen else 0)) % N:
            reader.fail("the multiplication consistency check failed", ban=True)
        for j in range(L):
            d[j] += gadget[k] * t_b[j]
    return [v % N for v in d]
