"""FROST signing (RFC 9591 §4–5) for one `Suite`: nonces, commitments, binding factors, shares,
share verification, aggregation and verification.

    >>> nonces, commitment = commit(key_package)                        # doctest: +SKIP
    >>> z = sign(key_package, nonces, msg, [commitment, peer_commitment])  # doctest: +SKIP
    >>> sig = aggregate(public, [commitment, peer_commitment], msg, {1: z, 2: z2})  # doctest: +SKIP
    >>> verify(public.suite, public.group_public_key, msg, sig)          # doctest: +SKIP
    True

What every function here enforces on what it is given (all failures are `FrostError`; a culprit is
named where the fault can be pinned on one participant):

* a commitment list has 2 or 3 entries, identifiers in {1, 2, 3}, strictly ascending (so sorted
  and without duplicates, RFC 9591 §4.3), and every element passes `deserialize_element`
  (canonical, on the curve, not the identity, prime-order subgroup);
* `sign` finds the signer's own commitment in the list and checks it is exactly the one its
  nonces produce, so a coordinator cannot make it sign under commitments it never made;
* every share is decoded with `deserialize_scalar` (refused if ≥ the group order) and checked
  with `verify_signature_share` before aggregation: one bad share aborts and names its sender;
* the group commitment R is never the identity, and the aggregate signature is verified before
  it is returned: for Ed25519 by the suite equation *and* by libsodium (PyNaCl `VerifyKey`), an
  implementation that shares no code with this module.

Nonces are single use. This module cannot enforce that; `session.Signer` and its `NonceStore`
do. Python ints cannot be wiped: dropping the references is the best this layer can do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from keysafe.crypto.signatures import verify_ed25519
from keysafe.mpc.frost.errors import FrostError, InvalidElement, InvalidScalar
from keysafe.mpc.frost.groups import ED25519, Suite
from keysafe.mpc.frost.keys import (
    MAX_SIGNERS,
    MIN_SIGNERS,
    PARTIES,
    KeyPackage,
    PublicKeyPackage,
    lagrange,
)

__all__ = [
    "NONCE_RANDOMNESS_SIZE",
    "SigningCommitment",
    "SigningNonces",
    "aggregate",
    "binding_factor_inputs",
    "commit",
    "compute_binding_factors",
    "compute_challenge",
    "compute_group_commitment",
    "encode_group_commitment_list",
    "nonce_generate",
    "sign",
    "signature_size",
    "validate_commitments",
    "verify",
    "verify_signature_share",
]

logger = logging.getLogger(__name__)

NONCE_RANDOMNESS_SIZE: Final = 32  # RFC 9591 §4.1: random_bytes = random(32)


@dataclass(frozen=True, slots=True)
class SigningNonces:
    """One signer's secret nonce pair (d, e) for exactly one signing session."""

    hiding: int
    binding: int

    def __post_init__(self) -> None:
        # Zero would make the commitment the identity, which SerializeElement refuses anyway.
        if not (isinstance(self.hiding, int) and isinstance(self.binding, int)):
            raise TypeError("signing nonces are integers")
        if self.hiding <= 0 or self.binding <= 0:
            raise ValueError("signing nonces must be non-zero scalars")

    def __repr__(self) -> str:
        return "SigningNonces(<redacted>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class SigningCommitment:
    """A participant's public commitment (D_i, E_i) = (d_i·G, e_i·G), serialized elements."""

    identifier: int
    hiding: bytes
    binding: bytes


def nonce_generate(suite: Suite, secret: int, random_bytes: bytes) -> int:
    """RFC 9591 §4.1: H3(random_bytes ‖ SerializeScalar(secret)).

    Mixing in the secret share keeps the nonce unpredictable even if the RNG is weak, as long as
    the share is secret; fresh randomness keeps it from repeating for the same message.
    """
    if len(random_bytes) != NONCE_RANDOMNESS_SIZE:
        raise ValueError(f"nonce randomness must be {NONCE_RANDOMNESS_SIZE} bytes")
    return suite.h3(bytes(random_bytes) + suite.serialize_scalar(secret))


def commit(
    key_package: KeyPackage, rng: Callable[[int], bytes] = os.urandom
) -> tuple[SigningNonces, SigningCommitment]:
    """Round one (RFC 9591 §5.1): fresh nonces and their public commitment.

    `rng` is called twice, for the hiding then the binding nonce; only tests replace it.
    """
    suite = key_package.suite
    hiding = nonce_generate(suite, key_package.signing_share, rng(NONCE_RANDOMNESS_SIZE))
    binding = nonce_generate(suite, key_package.signing_share, rng(NONCE_RANDOMNESS_SIZE))
    nonces = SigningNonces(hiding, binding)
    commitment = SigningCommitment(
        key_package.identifier,
        suite.serialize_element(suite.base_mul(hiding)),
        suite.serialize_element(suite.base_mul(binding)),
    )
    return nonces, commitment


def _element(suite: Suite, data: bytes, *, what: str, culprit: int | None) -> bytes:
    try:
        return suite.deserialize_element(data, what=what)
    except InvalidElement as e:
        raise InvalidElement(e.what, culprit=culprit) from None


def _scalar(suite: Suite, data: bytes, *, what: str, culprit: int | None) -> int:
    try:
        return suite.deserialize_scalar(data, what=what)
    except InvalidScalar as e:
        raise InvalidScalar(e.what, culprit=culprit) from None


def validate_commitments(
    suite: Suite, commitments: Sequence[SigningCommitment]
) -> tuple[SigningCommitment, ...]:
    """The list, checked as the module docstring says; elements are blamed on their owner."""
    if not MIN_SIGNERS <= len(commitments) <= MAX_SIGNERS:
        raise FrostError(
            f"a signing session needs {MIN_SIGNERS} to {MAX_SIGNERS} commitments, "
            f"got {len(commitments)}"
        )
    previous = 0
    for c in commitments:
        i = c.identifier
        if type(i) is not int or i not in PARTIES:
            raise FrostError(f"commitment identifier {i!r} is not one of {PARTIES}")
        if i == previous:
            raise FrostError(f"participant {i} appears twice in the commitment list")
        if i < previous:
            # RFC 9591 §4.3: the binding factors hash the list, so every party must see one order.
            raise FrostError("the commitment list is not sorted by identifier")
        previous = i
        _element(suite, c.hiding, what=f"hiding commitment of participant {i}", culprit=i)
        _element(suite, c.binding, what=f"binding commitment of participant {i}", culprit=i)
    return tuple(commitments)


def encode_group_commitment_list(suite: Suite, commitments: Sequence[SigningCommitment]) -> bytes:
    """RFC 9591 §4.3: SerializeScalar(id) ‖ SerializeElement(D) ‖ SerializeElement(E), in order."""
    return b"".join(
        suite.serialize_scalar(c.identifier)
        + suite.serialize_element(c.hiding)
        + suite.serialize_element(c.binding)
        for c in commitments
    )


def binding_factor_inputs(
    suite: Suite, group_public_key: bytes, commitments: Sequence[SigningCommitment], msg: bytes
) -> dict[int, bytes]:
    """RFC 9591 §4.4 rho_input per participant: PK ‖ H4(msg) ‖ H5(commitment list) ‖ id."""
    prefix = (
        suite.serialize_element(group_public_key)
        + suite.h4(msg)
        + suite.h5(encode_group_commitment_list(suite, commitments))
    )
    return {c.identifier: prefix + suite.serialize_scalar(c.identifier) for c in commitments}


def compute_binding_factors(
    suite: Suite, group_public_key: bytes, commitments: Sequence[SigningCommitment], msg: bytes
) -> dict[int, int]:
    """RFC 9591 §4.4: rho_i = H1(rho_input_i)."""
    inputs = binding_factor_inputs(suite, group_public_key, commitments, msg)
    return {i: suite.h1(rho_input) for i, rho_input in inputs.items()}


def compute_group_commitment(
    suite: Suite, commitments: Sequence[SigningCommitment], binding_factors: Mapping[int, int]
) -> bytes:
    """RFC 9591 §4.5: R = Σ D_i + rho_i·E_i (may be the identity; callers refuse that)."""
    return suite.sum(
        [
            suite.add(c.hiding, suite.mul(binding_factors[c.identifier], c.binding))
            for c in commitments
        ]
    )


def compute_challenge(
    suite: Suite, group_commitment: bytes, group_public_key: bytes, msg: bytes
) -> int:
    """RFC 9591 §4.6: c = H2(SerializeElement(R) ‖ SerializeElement(PK) ‖ msg)."""
    return suite.h2(
        suite.serialize_element(group_commitment) + suite.serialize_element(group_public_key) + msg
    )


@dataclass(frozen=True, slots=True)
class _Context:
    """What every signer and the coordinator derive identically from (PK, list, msg)."""

    commitments: tuple[SigningCommitment, ...]
    identifiers: tuple[int, ...]
    binding_factors: dict[int, int]
    group_commitment: bytes
    challenge: int


def _context(
    suite: Suite, group_public_key: bytes, commitments: Sequence[SigningCommitment], msg: bytes
) -> _Context:
    checked = validate_commitments(suite, commitments)
    rho = compute_binding_factors(suite, group_public_key, checked, msg)
    group_commitment = compute_group_commitment(suite, checked, rho)
    if group_commitment == suite.identity:
        # Cannot happen with honest random nonces; the combination of commitments is to blame,
        # not one participant.
        raise FrostError("the group commitment is the identity element")
    challenge = compute_challenge(suite, group_commitment, group_public_key, msg)
    return _Context(checked, tuple(c.identifier for c in checked), rho, group_commitment, challenge)


def sign(
    key_package: KeyPackage,
    nonces: SigningNonces,
    msg: bytes,
    commitments: Sequence[SigningCommitment],
) -> bytes:
    """Round two (RFC 9591 §5.2): this participant's share z_i, serialized.

    Raises FrostError when the list is malformed or this signer's own commitment is missing or
    is not the one `nonces` produce. The caller must never call this twice with one `nonces`.
    """
    suite = key_package.suite
    me = key_package.identifier
    ctx = _context(suite, key_package.public.group_public_key, commitments, msg)
    own = next((c for c in ctx.commitments if c.identifier == me), None)
    if own is None:
        raise FrostError(f"the commitment list does not include this signer (participant {me})")
    expected = SigningCommitment(me, suite.base_mul(nonces.hiding), suite.base_mul(nonces.binding))
    if own != expected:
        raise FrostError(f"the commitment list carries a changed commitment for participant {me}")
    lam = lagrange(suite, me, ctx.identifiers)
    z = (
        nonces.hiding
        + nonces.binding * ctx.binding_factors[me]
        + lam * key_package.signing_share * ctx.challenge
    ) % suite.order
    return suite.serialize_scalar(z)


def _check_share(public: PublicKeyPackage, ctx: _Context, identifier: int, z_i: bytes) -> int:
    suite = public.suite
    z = _scalar(suite, z_i, what=f"signature share of participant {identifier}", culprit=identifier)
    verifying_share = public.verifying_shares.get(identifier)
    if verifying_share is None:
        raise FrostError(f"no verifying share for participant {identifier}")
    commitment = next(c for c in ctx.commitments if c.identifier == identifier)
    # RFC 9591 §5.4: z_i·G == D_i + rho_i·E_i + (c·λ_i)·X_i
    comm_share = suite.add(
        commitment.hiding, suite.mul(ctx.binding_factors[identifier], commitment.binding)
    )
    lam = lagrange(suite, identifier, ctx.identifiers)
    right = suite.add(comm_share, suite.mul(ctx.challenge * lam, verifying_share))
    if suite.base_mul(z) != right:
        raise FrostError("signature share does not verify", culprit=identifier)
    return z


def verify_signature_share(
    public: PublicKeyPackage,
    identifier: int,
    commitment: SigningCommitment,
    z_i: bytes,
    commitments: Sequence[SigningCommitment],
    msg: bytes,
) -> None:
    """RFC 9591 §5.4. Returns nothing; raises FrostError(culprit=identifier) on a bad share."""
    ctx = _context(public.suite, public.group_public_key, commitments, msg)
    listed = next((c for c in ctx.commitments if c.identifier == identifier), None)
    if listed is None or listed != commitment:
        raise FrostError(f"participant {identifier}'s commitment is not the one in the list")
    _check_share(public, ctx, identifier, z_i)


def signature_size(suite: Suite) -> int:
    return suite.element_len + suite.scalar_len


def aggregate(
    public: PublicKeyPackage,
    commitments: Sequence[SigningCommitment],
    msg: bytes,
    shares: Mapping[int, bytes],
) -> bytes:
    """RFC 9591 §5.3: verify every share (identifiable abort), sum them, and return R ‖ z only
    after the signature verifies."""
    suite = public.suite
    ctx = _context(suite, public.group_public_key, commitments, msg)
    for i in sorted(shares):
        if i not in ctx.identifiers:
            raise FrostError("a signature share from outside the signing set", culprit=i)
    z = 0
    for i in ctx.identifiers:
        if i not in shares:
            raise FrostError("no signature share", culprit=i)
        z = (z + _check_share(public, ctx, i, shares[i])) % suite.order
    sig = suite.serialize_element(ctx.group_commitment) + suite.serialize_scalar(z)
    if not verify(suite, public.group_public_key, msg, sig):
        # Every share verified, so the public key package itself is inconsistent.
        raise FrostError(
            "the aggregate signature does not verify although every share did",
            next_step="check that the public key package matches the group key; nothing was signed",
        )
    return sig


def verify(suite: Suite, group_public_key: bytes, msg: bytes, sig: bytes) -> bool:
    """The ciphersuite's Schnorr verification: z·G == R + c·PK with c = H2(R ‖ PK ‖ msg).

    R and PK must be valid prime-order elements, so for Ed25519 the cofactored equation RFC 9591
    §6.1 asks for and this one agree; Ed25519 signatures must also pass libsodium's strict
    verifier. secp256k1 (§6.5) uses libsecp256k1 arithmetic through the suite.
    """
    if len(sig) != signature_size(suite):
        return False
    try:
        pk = suite.deserialize_element(group_public_key, what="group public key")
        r = suite.deserialize_element(sig[: suite.element_len], what="signature R")
        z = suite.deserialize_scalar(sig[suite.element_len :], what="signature z")
    except FrostError:
        return False
    c = compute_challenge(suite, r, pk, msg)
    if suite.base_mul(z) != suite.add(r, suite.mul(c, pk)):
        return False
    if suite is ED25519:
        return verify_ed25519(pk, msg, sig)
    return True
