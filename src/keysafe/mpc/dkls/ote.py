"""Correlated OT extension: KOS15 (Keller, Orsini, Scholl, CRYPTO 2015) with its consistency
check, turning the pair's 256 base OTs into the 752 fresh OTs one multiplication needs.

Roles. The OT-extension *sender* holds Δ ∈ {0,1}^256 and, from the base OTs where it was the
receiver with choices Δ, one seed k_i^{Δ_i} per column. The OT-extension *receiver* holds both
seeds (k_i^0, k_i^1) of every column. Per session (a fresh nonce chosen by the receiver keeps
its u from repeating; the sender's own freshness is the salt `multiply` hashes into the pads,
since a cheating receiver can repeat its nonce):

    receiver: choices x ∈ {0,1}^752 (416 used + 336 random padding bits)
              t_i = PRG(k_i^0), u_i = t_i ⊕ PRG(k_i^1) ⊕ x           for each column i
              χ = H(sid, nonce, u); x̃ = Σ χ^k·x_k, t̃ = Σ χ^k·t_k   in GF(2^256)   → message
    sender:   q_i = PRG(k_i^{Δ_i}) ⊕ Δ_i·u_i, so row q_k = t_k ⊕ x_k·Δ
              check Σ χ^k·q_k == t̃ ⊕ x̃·Δ, else abort and ban the receiver

The check stops a receiver from using different choice bits in different columns, which would
let it learn bits of Δ (and with them the sender's other pads). It is the linear universal hash
of KOS15; the hash is polynomial evaluation at one Fiat–Shamir point χ (ε = 752/2^256), and the
κ + s = 336 random padding rows keep x̃ and t̃ from revealing the real choices. A receiver can
still learn a few bits of Δ by cheating in one column and watching whether the sender aborts;
that is why an abort here bans the pair (its Δ is spent) rather than allowing a retry.

Rows and columns are Python ints: column i has bit k = row k; row k has bit i = column i.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from keysafe.mpc.dkls import gf2
from keysafe.mpc.dkls.wire import Reader
from keysafe.mpc.frost.dkg import Rng
from keysafe.mpc.frost.keys import transcript_hash

KAPPA: Final = 256
"""Base OTs per direction: the bits of Δ, the computational security of the extension."""
STAT: Final = 80
"""Statistical security parameter s."""
BATCH: Final = 256 + 2 * STAT
"""OTs one multiplication consumes: |q| + 2s, so the receiver's random input is uniform."""
PAD: Final = KAPPA + STAT
ROWS: Final = BATCH + PAD
ROW_BYTES: Final = ROWS // 8
NONCE_LEN: Final = 32
MESSAGE_LEN: Final = NONCE_LEN + KAPPA * ROW_BYTES + 2 * (gf2.BITS // 8)


@dataclass(frozen=True, slots=True)
class SenderSeeds:
    """The OT-extension sender's long-term state for one pair. Secret."""

    delta: int
    seeds: tuple[bytes, ...]

    def __repr__(self) -> str:
        return "SenderSeeds(...)"


@dataclass(frozen=True, slots=True)
class ReceiverSeeds:
    """The OT-extension receiver's long-term state for one pair. Secret."""

    seeds: tuple[tuple[bytes, bytes], ...]

    def __repr__(self) -> str:
        return "ReceiverSeeds(...)"


def delta_bits(delta: int) -> list[int]:
    return [(delta >> i) & 1 for i in range(KAPPA)]


def _prg(seed: bytes, session_id: bytes, nonce: bytes, column: int) -> int:
    stream = hashlib.shake_256(
        transcript_hash(
            b"keysafe/dkls23/ote/prg", seed, session_id, nonce, column.to_bytes(2, "big")
        )
    ).digest(ROW_BYTES)
    return int.from_bytes(stream, "little")


def _swap_masks() -> tuple[tuple[int, int], ...]:
    """For each j in 128, 64, ..., 1: the bits (r, c) of a 256×256 bit matrix stored row-major
    in one int (bit r·256 + c) with r & j = 0 and c & j ≠ 0, and the distance j·255 to the bit
    (r + j, c − j) they trade places with."""
    out = []
    j = KAPPA // 2
    while j:
        row = sum(1 << c for c in range(KAPPA) if c & j)
        mask = sum(row << (KAPPA * r) for r in range(KAPPA) if not r & j)
        out.append((j * (KAPPA - 1), mask))
        j >>= 1
    return tuple(out)


_SWAPS: Final = _swap_masks()
_BLOCKS: Final = -(-ROWS // KAPPA)
_SLICE: Final = (1 << KAPPA) - 1


def transpose(columns: list[int]) -> list[int]:
    """KAPPA columns of ROWS bits → ROWS rows of KAPPA bits. Each 256-row block is one
    256×256 bit matrix in a single Python int, transposed by 8 masked delta swaps (each a few
    big-int operations, so the whole transpose costs well under a millisecond, no numpy)."""
    rows: list[int] = []
    for block in range(_BLOCKS):
        x = int.from_bytes(
            b"".join(((c >> (KAPPA * block)) & _SLICE).to_bytes(32, "little") for c in columns),
            "little",
        )
        for shift, mask in _SWAPS:
            t = (x ^ (x >> shift)) & mask
            x ^= t ^ (t << shift)
        data = x.to_bytes(KAPPA * 32, "little")
        rows.extend(int.from_bytes(data[32 * k : 32 * k + 32], "little") for k in range(KAPPA))
    return rows[:ROWS]


def _challenge(session_id: bytes, nonce: bytes, u: bytes) -> gf2.Multiplier:
    chi = int.from_bytes(
        transcript_hash(b"keysafe/dkls23/ote/check", session_id, nonce, u), "little"
    )
    return gf2.Multiplier(chi)


def extend_receiver(
    seeds: ReceiverSeeds, session_id: bytes, choices: int, rng: Rng
) -> tuple[list[int], bytes]:
    """The receiver's rows t_k (one per choice bit) and its message to the sender."""
    if not 0 <= choices < 1 << ROWS:
        raise ValueError("choices must be ROWS bits")
    nonce = rng(NONCE_LEN)
    columns: list[int] = []
    u_parts: list[bytes] = []
    for i, (k0, k1) in enumerate(seeds.seeds):
        t = _prg(k0, session_id, nonce, i)
        columns.append(t)
        u_parts.append((t ^ _prg(k1, session_id, nonce, i) ^ choices).to_bytes(ROW_BYTES, "little"))
    u = b"".join(u_parts)
    rows = transpose(columns)
    chi = _challenge(session_id, nonce, u)
    x_tilde = gf2.horner_bits(chi, choices, ROWS)
    t_tilde = chi.horner(rows)
    return rows, nonce + u + x_tilde.to_bytes(32, "little") + t_tilde.to_bytes(32, "little")


def extend_sender(seeds: SenderSeeds, session_id: bytes, reader: Reader) -> list[int]:
    """The sender's rows q_k = t_k ⊕ x_k·Δ, after the consistency check (abort + ban)."""
    nonce = reader.take(NONCE_LEN)
    u = reader.take(KAPPA * ROW_BYTES)
    x_tilde = int.from_bytes(reader.take(32), "little")
    t_tilde = int.from_bytes(reader.take(32), "little")
    columns: list[int] = []
    for i, seed in enumerate(seeds.seeds):
        q = _prg(seed, session_id, nonce, i)
        if (seeds.delta >> i) & 1:
            q ^= int.from_bytes(u[i * ROW_BYTES : (i + 1) * ROW_BYTES], "little")
        columns.append(q)
    rows = transpose(columns)
    chi = _challenge(session_id, nonce, u)
    if chi.horner(rows) != t_tilde ^ gf2.multiply(x_tilde, seeds.delta):
        reader.fail("the OT extension consistency check failed", ban=True)
    return rows
