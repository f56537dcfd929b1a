"""The two FROST ciphersuites of RFC 9591 keysafe uses: group arithmetic and hash functions.

- FROST(Ed25519, SHA-512) (§6.1): points via PyNaCl's libsodium `crypto_core_ed25519_*` and
  `crypto_scalarmult_ed25519_*noclamp`; scalars little-endian mod L.
- FROST(secp256k1, SHA-256) (§6.5): points via coincurve (libsecp256k1); scalars big-endian mod n;
  H1/H2/H3/HDKG are `hash_to_field` (RFC 9380 expand_message_xmd, SHA-256, L = 48).

Points travel as their canonical encodings (`bytes`). The identity element has an internal
encoding (`Suite.identity`) that `deserialize_element` never accepts: every point received from
another party must be canonical, not the identity, and in the prime-order subgroup. Scalars are
Python ints; `deserialize_scalar` refuses anything ≥ the group order.

Nothing here is a new primitive: curve arithmetic comes from the libraries; this module only
fixes the encodings and the RFC's hash-to-scalar rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

import nacl.bindings as sodium
from coincurve import PublicKey

from keysafe.mpc.frost.errors import InvalidElement, InvalidScalar

ED25519_L: Final = 2**252 + 27742317777372353535851937790883648493
SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass(frozen=True, slots=True, kw_only=True)
class Suite:
    """One ciphersuite. Use the module constants `ED25519` and `SECP256K1`."""

    name: str
    context: bytes
    order: int
    scalar_len: int
    element_len: int
    identity: bytes

    # -- scalars ----------------------------------------------------------------------------

    def serialize_scalar(self, s: int) -> bytes:
        s %= self.order
        return s.to_bytes(self.scalar_len, "little" if self is ED25519 else "big")

    def deserialize_scalar(self, data: bytes, *, what: str = "scalar") -> int:
        if len(data) != self.scalar_len:
            raise InvalidScalar(
                f"{what}: {len(data)} bytes, a {self.name} scalar has {self.scalar_len}"
            )
        value = int.from_bytes(data, "little" if self is ED25519 else "big")
        if value >= self.order:
            raise InvalidScalar(f"{what} is not below the group order")
        return value

    # -- elements ---------------------------------------------------------------------------

    def base_mul(self, k: int) -> bytes:
        k %= self.order
        if k == 0:
            return self.identity
        if self is ED25519:
            return bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(self.serialize_scalar(k)))
        return bytes(PublicKey.from_secret(self.serialize_scalar(k)).format(compressed=True))

    def mul(self, k: int, point: bytes) -> bytes:
        k %= self.order
        if k == 0 or point == self.identity:
            return self.identity
        if self is ED25519:
            return bytes(sodium.crypto_scalarmult_ed25519_noclamp(self.serialize_scalar(k), point))
        return bytes(PublicKey(point).multiply(self.serialize_scalar(k)).format(compressed=True))

    def add(self, p: bytes, q: bytes) -> bytes:
        if p == self.identity:
            return q
        if q == self.identity:
            return p
        if self is ED25519:
            out = bytes(sodium.crypto_core_ed25519_add(p, q))
            return self.identity if out == _ED_IDENTITY else out
        if p == self.negate(q):
            return self.identity
        return bytes(PublicKey.combine_keys([PublicKey(p), PublicKey(q)]).format(compressed=True))

    def negate(self, p: bytes) -> bytes:
        if p == self.identity:
            return p
        if self is ED25519:
            return bytes(sodium.crypto_core_ed25519_sub(_ED_IDENTITY, p))
        return bytes([p[0] ^ 1]) + p[1:]  # flip the parity of y (02 <-> 03)

    def sub(self, p: bytes, q: bytes) -> bytes:
        return self.add(p, self.negate(q))

    def sum(self, points: list[bytes]) -> bytes:
        total = self.identity
        for p in points:
            total = self.add(total, p)
        return total

    def serialize_element(self, p: bytes) -> bytes:
        """RFC 9591 SerializeElement: fails for the identity."""
        if p == self.identity:
            raise InvalidElement("the identity element cannot be serialized")
        return p

    def deserialize_element(self, data: bytes, *, what: str = "element") -> bytes:
        """RFC 9591 DeserializeElement plus the subgroup check: canonical, on the curve, not the
        identity, of prime order."""
        if len(data) != self.element_len:
            raise InvalidElement(
                f"{what}: {len(data)} bytes, a {self.name} element has {self.element_len}"
            )
        if self is ED25519:
            # libsodium: canonical encoding, on the curve, not of small order, in the main subgroup
            if not sodium.crypto_core_ed25519_is_valid_point(data):
                raise InvalidElement(f"{what} is not a valid point of the prime-order group")
            return bytes(data)
        if data[0] not in (2, 3):
            raise InvalidElement(f"{what} is not a compressed secp256k1 point")
        try:
            point = PublicKey(data)  # libsecp256k1 parses and checks it is on the curve
        except Exception:
            raise InvalidElement(f"{what} is not a point on secp256k1") from None
        if point.format(compressed=True) != data:
            raise InvalidElement(f"{what} is not canonically encoded")
        return bytes(data)

    # -- hashes (RFC 9591 §6.1 / §6.5, HDKG as in the FROST DKG) ----------------------------

    def _to_scalar(self, tag: bytes, m: bytes, *, with_context: bool = True) -> int:
        if self is ED25519:
            prefix = self.context + tag if with_context else b""
            return int.from_bytes(hashlib.sha512(prefix + m).digest(), "little") % self.order
        return _hash_to_field(m, self.context + tag, self.order)

    def h1(self, m: bytes) -> int:
        return self._to_scalar(b"rho", m)

    def h2(self, m: bytes) -> int:
        # Ed25519's challenge is plain SHA-512 (RFC 8032 compatible), without the context string.
        if self is ED25519:
            return self._to_scalar(b"", m, with_context=False)
        return self._to_scalar(b"chal", m)

    def h3(self, m: bytes) -> int:
        return self._to_scalar(b"nonce", m)

    def h4(self, m: bytes) -> bytes:
        return self._digest(b"msg", m)

    def h5(self, m: bytes) -> bytes:
        return self._digest(b"com", m)

    def hdkg(self, m: bytes) -> int:
        return self._to_scalar(b"dkg", m)

    def _digest(self, tag: bytes, m: bytes) -> bytes:
        h = hashlib.sha512 if self is ED25519 else hashlib.sha256
        return h(self.context + tag + m).digest()


def _expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 §5.3.1 with SHA-256."""
    b_in_bytes, s_in_bytes = 32, 64
    ell = -(-length // b_in_bytes)
    if ell > 255 or len(dst) > 255:
        raise ValueError("expand_message_xmd: length or DST too long")
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(s_in_bytes) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha256(msg_prime).digest()
    b = [hashlib.sha256(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        b.append(
            hashlib.sha256(
                bytes(x ^ y for x, y in zip(b0, b[-1], strict=True)) + bytes([i]) + dst_prime
            ).digest()
        )
    return b"".join(b)[:length]


def _hash_to_field(msg: bytes, dst: bytes, order: int) -> int:
    """RFC 9380 hash_to_field with count 1, m 1, L = 48 (secp256k1's k = 128)."""
    return int.from_bytes(_expand_message_xmd(msg, dst, 48), "big") % order


_ED_IDENTITY: Final = b"\x01" + bytes(31)

# The two suites' parameters (RFC 9591 §6.1 and §6.5).
ED25519: Final = Suite(
    name="ed25519",
    context=b"FROST-ED25519-SHA512-v1",
    order=ED25519_L,
    scalar_len=32,
    element_len=32,
    identity=_ED_IDENTITY,
)
SECP256K1: Final = Suite(
    name="secp256k1",
    context=b"FROST-secp256k1-SHA256-v1",
    order=SECP256K1_N,
    scalar_len=32,
    element_len=33,
    identity=bytes(33),
)
SUITES: Final = {s.name: s for s in (ED25519, SECP256K1)}
