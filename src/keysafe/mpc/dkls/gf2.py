"""GF(2^256) = GF(2)[x] / (x^256 + x^10 + x^5 + x^2 + 1), elements as Python ints (bit i is
the coefficient of x^i), for the universal hash of the OT-extension consistency check.

The check multiplies hundreds of rows by one Fiat–Shamir element, so `Multiplier` precomputes
tables for that element (32 byte positions × 256 values, already reduced) and a product costs
32 lookups instead of 256 shift-and-reduce steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

BITS: Final = 256
MODULUS: Final = (1 << 256) | (1 << 10) | (1 << 5) | (1 << 2) | 1
"""A low-weight irreducible pentanomial of degree 256 (Seroussi's table); a test checks it."""


def _times_x(a: int) -> int:
    a <<= 1
    return a ^ MODULUS if a >> BITS else a


def multiply(a: int, b: int) -> int:
    """a·b in the field; for one-off products (the receiver's x̃·Δ)."""
    result = 0
    while b:
        if b & 1:
            result ^= a
        a = _times_x(a)
        b >>= 1
    return result


class Multiplier:
    """c·a for one fixed c and many a."""

    __slots__ = ("_tables",)

    def __init__(self, c: int) -> None:
        if not 0 <= c < 1 << BITS:
            raise ValueError("not an element of GF(2^256)")
        basis = []  # c·x^i for i in 0..255
        for _ in range(BITS):
            basis.append(c)
            c = _times_x(c)
        self._tables: list[list[int]] = []
        for position in range(BITS // 8):
            table = [0]  # entry b is the XOR of the basis elements of b's set bits
            for element in basis[8 * position : 8 * position + 8]:
                table += [t ^ element for t in table]
            self._tables.append(table)

    def __call__(self, a: int) -> int:
        result = 0
        for table, byte in zip(self._tables, a.to_bytes(BITS // 8, "little"), strict=True):
            result ^= table[byte]
        return result

    def horner(self, values: Iterable[int]) -> int:
        """Σ c^(n-1-k)·v_k over the n values: the polynomial hash at c (Horner's rule)."""
        acc = 0
        for v in values:
            acc = self(acc) ^ v
        return acc


def horner_bits(c: Multiplier, bits: int, count: int) -> int:
    """`c.horner` over `count` single bits (bit k of `bits` is value k), a byte per step: the
    same polynomial hash, with c^8 tables instead of one multiplication per bit."""
    if count % 8:
        raise ValueError("count must be a multiple of 8")
    powers = [1]  # c^0 .. c^8
    for _ in range(8):
        powers.append(c(powers[-1]))
    by_byte = [0]  # entry b: Σ_j bit_j(b)·c^(7-j)
    for j in range(8):
        by_byte += [t ^ powers[7 - j] for t in by_byte]
    step = Multiplier(powers[8])
    acc = 0
    for byte in bits.to_bytes(count // 8, "little"):
        acc = step(acc) ^ by_byte[byte]
    return acc
