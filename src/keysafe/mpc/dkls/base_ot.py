"""Base oblivious transfer: a batch of random 1-of-2 OTs from Diffie–Hellman, the "endemic"
style of Zhou et al. with both parties proving what they send (threshold.md §2.3, and the
"Devious Transfer" bugs it guards against).

    sender:   s random, z = s·G, Schnorr proof of knowledge of s            → `first`
    receiver: per index i, choice b_i, r_i random, h_i = r_i·G + b_i·z,
              OR proof "I know log(h_i) or log(h_i − z)"                  → `second`
              key_i = H(sid, i, r_i·z)
    sender:   k0_i = H(sid, i, s·h_i), k1_i = H(sid, i, s·(h_i − z))      (key_i = k{b_i}_i)

The sender's proof stops a z whose logarithm nobody knows (the receiver's keys would then be
unpredictable to everyone, or chosen by the sender); the receiver's proof stops an h_i for which
it knows neither key's logarithm. Every point is validated, every secret sampled uniformly,
every hash bound to the session, the direction and the index.

In keysafe the base-OT *receiver* is the OT-extension *sender* (its choice bits are Δ) and
vice versa; see `ote`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from keysafe.mpc.dkls.wire import (
    POINT_LEN,
    SCALAR_LEN,
    G,
    Reader,
    hash_to_scalar,
    party_byte,
    scalar_bytes,
)
from keysafe.mpc.frost.dkg import Rng, random_scalar
from keysafe.mpc.frost.keys import transcript_hash

FIRST_LEN: Final = 2 * POINT_LEN + SCALAR_LEN
ITEM_LEN: Final = POINT_LEN + 4 * SCALAR_LEN
KEY_LEN: Final = 32


def second_len(count: int) -> int:
    return count * ITEM_LEN


@dataclass(frozen=True, slots=True)
class Context:
    """Who runs this batch: session id, base-OT sender, base-OT receiver."""

    session_id: bytes
    sender: int
    receiver: int

    def bind(self) -> tuple[bytes, bytes, bytes]:
        return self.session_id, party_byte(self.sender), party_byte(self.receiver)


@dataclass(frozen=True, slots=True)
class SenderSecret:
    s: int
    z: bytes

    def __repr__(self) -> str:
        return "SenderSecret(...)"


def _dlog_challenge(ctx: Context, z: bytes, a: bytes) -> int:
    return hash_to_scalar(b"keysafe/dkls23/base-ot/dlog", *ctx.bind(), z, a)


def _or_challenge(ctx: Context, i: int, z: bytes, h: bytes, a0: bytes, a1: bytes) -> int:
    return hash_to_scalar(
        b"keysafe/dkls23/base-ot/or", *ctx.bind(), i.to_bytes(2, "big"), z, h, a0, a1
    )


def _key(ctx: Context, i: int, point: bytes) -> bytes:
    return transcript_hash(b"keysafe/dkls23/base-ot/key", *ctx.bind(), i.to_bytes(2, "big"), point)


def first(ctx: Context, rng: Rng) -> tuple[SenderSecret, bytes]:
    """The sender's message: z and a Schnorr proof of knowledge of its logarithm."""
    s = random_scalar(G, rng)
    z = G.base_mul(s)
    k = random_scalar(G, rng)
    a = G.base_mul(k)
    e = (k + _dlog_challenge(ctx, z, a) * s) % G.order
    return SenderSecret(s, z), z + a + scalar_bytes(e)


def read_first(ctx: Context, reader: Reader) -> bytes:
    """Parse and verify the sender's message; returns z. Aborts naming the sender."""
    z = reader.point("base OT z")
    a = reader.point("base OT proof commitment")
    e = reader.scalar("base OT proof response")
    if G.base_mul(e) != G.add(a, G.mul(_dlog_challenge(ctx, z, a), z)):
        reader.fail("the base OT sender's proof of knowledge does not verify")
    return z


def second(ctx: Context, z: bytes, choices: list[int], rng: Rng) -> tuple[list[bytes], bytes]:
    """The receiver's message for `choices` (bits), and the receiver's keys."""
    keys: list[bytes] = []
    out: list[bytes] = []
    for i, bit in enumerate(choices):
        r = random_scalar(G, rng)
        h = G.add(G.base_mul(r), z) if bit else G.base_mul(r)
        ys = (h, G.sub(h, z))
        fake = 1 - bit
        c_fake, z_fake = random_scalar(G, rng), random_scalar(G, rng)
        a_fake = G.sub(G.base_mul(z_fake), G.mul(c_fake, ys[fake]))
        k = random_scalar(G, rng)
        a_real = G.base_mul(k)
        a0, a1 = (a_real, a_fake) if bit == 0 else (a_fake, a_real)
        c = _or_challenge(ctx, i, z, h, a0, a1)
        c_real = (c - c_fake) % G.order
        z_real = (k + c_real * r) % G.order
        cs = (c_real, c_fake) if bit == 0 else (c_fake, c_real)
        zs = (z_real, z_fake) if bit == 0 else (z_fake, z_real)
        out.append(h + b"".join(scalar_bytes(v) for v in (*cs, *zs)))
        keys.append(_key(ctx, i, G.mul(r, z)))
    return keys, b"".join(out)


def read_second(
    ctx: Context, secret: SenderSecret, reader: Reader, count: int
) -> list[tuple[bytes, bytes]]:
    """Parse and verify the receiver's message; returns the sender's key pairs. Aborts naming
    the receiver."""
    pairs: list[tuple[bytes, bytes]] = []
    z = secret.z  # public: the sender's first message
    for i in range(count):
        h = reader.point(f"base OT h[{i}]")
        c0, c1 = reader.scalar(f"base OT c0[{i}]"), reader.scalar(f"base OT c1[{i}]")
        z0, z1 = reader.scalar(f"base OT z0[{i}]"), reader.scalar(f"base OT z1[{i}]")
        if h == z:
            reader.fail(f"base OT h[{i}] equals z (a key everyone knows)")
        y1 = G.sub(h, z)
        a0 = G.sub(G.base_mul(z0), G.mul(c0, h))
        a1 = G.sub(G.base_mul(z1), G.mul(c1, y1))
        if (c0 + c1) % G.order != _or_challenge(ctx, i, z, h, a0, a1):
            reader.fail(f"the base OT receiver's proof for index {i} does not verify")
        pairs.append((_key(ctx, i, G.mul(secret.s, h)), _key(ctx, i, G.mul(secret.s, y1))))
    return pairs
