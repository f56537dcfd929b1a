"""FROST signing against the published vectors: RFC 9591 App. E.1 (Ed25519) and E.5 (secp256k1)
from cfrg/draft-irtf-cfrg-frost, and the ZF frost crates' vectors.json for both suites.

Every intermediate value is reproduced byte for byte from the given randomness and shares; the
final signature must also verify under a verifier that shares no code with ours (libsodium).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from coincurve import PublicKey
from nacl.signing import VerifyKey

from keysafe.mpc.frost import signing
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import ED25519, SUITES, Suite
from keysafe.mpc.frost.keys import KeyPackage, PublicKeyPackage, lagrange
from keysafe.mpc.frost.signing import SigningCommitment, SigningNonces
from tests.vectors import load_json

FILES = (
    "cfrg-frost-ed25519-sha512.json",
    "cfrg-frost-secp256k1-sha256.json",
    "zf-frost-ed25519-vectors.json",
    "zf-frost-secp256k1-vectors.json",
)


def _replay(*chunks: bytes) -> Callable[[int], bytes]:
    """An RNG that hands out the vector's randomness, in order, and checks the size asked for."""
    queue = list(chunks)

    def rng(size: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == size
        return chunk

    return rng


@dataclass(frozen=True)
class Vector:
    name: str
    data: dict[str, Any]

    @property
    def suite(self) -> Suite:
        return SUITES[self.data["config"]["group"]]

    @property
    def inputs(self) -> dict[str, Any]:
        inputs: dict[str, Any] = self.data["inputs"]
        return inputs

    @property
    def group_public_key(self) -> bytes:
        # cfrg names it group_public_key, ZF verifying_key_key.
        return bytes.fromhex(
            self.inputs.get("group_public_key") or self.inputs["verifying_key_key"]
        )

    @property
    def message(self) -> bytes:
        return bytes.fromhex(self.inputs["message"])

    @property
    def shares(self) -> dict[int, int]:
        return {
            p["identifier"]: self.suite.deserialize_scalar(bytes.fromhex(p["participant_share"]))
            for p in self.inputs["participant_shares"]
        }

    @property
    def public(self) -> PublicKeyPackage:
        verifying = {i: self.suite.base_mul(x) for i, x in self.shares.items()}
        return PublicKeyPackage(self.suite, self.group_public_key, verifying)

    def key_package(self, identifier: int) -> KeyPackage:
        return KeyPackage(identifier, self.shares[identifier], self.public)

    @property
    def round_one(self) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = self.data["round_one_outputs"]["outputs"]
        return outputs

    @property
    def round_two(self) -> dict[int, str]:
        return {o["identifier"]: o["sig_share"] for o in self.data["round_two_outputs"]["outputs"]}

    def committed(self) -> tuple[dict[int, SigningNonces], list[SigningCommitment]]:
        """Round one run through `commit` with the vector's randomness in place of the RNG."""
        nonces: dict[int, SigningNonces] = {}
        commitments: list[SigningCommitment] = []
        for o in self.round_one:
            rng = _replay(
                bytes.fromhex(o["hiding_nonce_randomness"]),
                bytes.fromhex(o["binding_nonce_randomness"]),
            )
            n, c = signing.commit(self.key_package(o["identifier"]), rng)
            nonces[o["identifier"]] = n
            commitments.append(c)
        return nonces, commitments


VECTORS = [Vector(name, load_json(f"frost/{name}")) for name in FILES]


def _ids(v: Vector) -> str:
    return v.name.removesuffix(".json")


@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_frost_vector_nonces_come_from_randomness_and_share(v: Vector) -> None:
    for o in v.round_one:
        secret = v.shares[o["identifier"]]
        for kind in ("hiding", "binding"):
            nonce = signing.nonce_generate(
                v.suite, secret, bytes.fromhex(o[f"{kind}_nonce_randomness"])
            )
            assert v.suite.serialize_scalar(nonce).hex() == o[f"{kind}_nonce"]


@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_frost_vector_commitments_match(v: Vector) -> None:
    nonces, commitments = v.committed()
    assert [c.identifier for c in commitments] == v.inputs["participant_list"]
    for o, c in zip(v.round_one, commitments, strict=True):
        assert c.identifier == o["identifier"]
        assert c.hiding.hex() == o["hiding_nonce_commitment"]
        assert c.binding.hex() == o["binding_nonce_commitment"]
        assert v.suite.serialize_scalar(nonces[c.identifier].hiding).hex() == o["hiding_nonce"]
        assert v.suite.serialize_scalar(nonces[c.identifier].binding).hex() == o["binding_nonce"]


@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_frost_vector_binding_factor_inputs_and_factors_match(v: Vector) -> None:
    _, commitments = v.committed()
    inputs = signing.binding_factor_inputs(v.suite, v.group_public_key, commitments, v.message)
    factors = signing.compute_binding_factors(v.suite, v.group_public_key, commitments, v.message)
    for o in v.round_one:
        assert inputs[o["identifier"]].hex() == o["binding_factor_input"]
        assert v.suite.serialize_scalar(factors[o["identifier"]]).hex() == o["binding_factor"]


@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_frost_vector_signature_shares_match_and_verify(v: Vector) -> None:
    nonces, commitments = v.committed()
    for i, expected in v.round_two.items():
        z = signing.sign(v.key_package(i), nonces[i], v.message, commitments)
        assert z.hex() == expected
        own = next(c for c in commitments if c.identifier == i)
        signing.verify_signature_share(v.public, i, own, z, commitments, v.message)


@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_frost_vector_aggregate_signature_matches(v: Vector) -> None:
    _, commitments = v.committed()
    shares = {i: bytes.fromhex(z) for i, z in v.round_two.items()}
    sig = signing.aggregate(v.public, commitments, v.message, shares)
    assert sig.hex() == v.data["final_output"]["sig"]
    r = signing.compute_group_commitment(
        v.suite,
        commitments,
        signing.compute_binding_factors(v.suite, v.group_public_key, commitments, v.message),
    )
    assert sig[: v.suite.element_len] == r


@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_frost_vector_final_signature_verifies_independently(v: Vector) -> None:
    sig = bytes.fromhex(v.data["final_output"]["sig"])
    assert signing.verify(v.suite, v.group_public_key, v.message, sig)
    assert not signing.verify(v.suite, v.group_public_key, v.message + b"!", sig)
    if v.suite is ED25519:
        # libsodium: a verifier with no code in common with keysafe's FROST
        VerifyKey(v.group_public_key).verify(v.message, sig)
    else:
        # the same Schnorr equation, computed from the raw RFC formulas with plain integers
        c = signing.compute_challenge(v.suite, sig[:33], v.group_public_key, v.message)
        z = int.from_bytes(sig[33:], "big")
        x = v.suite.deserialize_scalar(bytes.fromhex(v.inputs["group_secret_key"]))
        k = (z - c * x) % v.suite.order  # the implied nonce must open R
        assert PublicKey.from_secret(k.to_bytes(32, "big")).format(compressed=True) == sig[:33]


@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_frost_vector_shares_interpolate_to_group_secret(v: Vector) -> None:
    suite = v.suite
    secret = suite.deserialize_scalar(bytes.fromhex(v.inputs["group_secret_key"]))
    assert suite.base_mul(secret) == v.group_public_key
    (a1,) = [
        suite.deserialize_scalar(bytes.fromhex(a))
        for a in v.inputs["share_polynomial_coefficients"]
    ]
    shares = v.shares
    for i, x in shares.items():
        assert x == (secret + a1 * i) % suite.order
    for pair in ((1, 2), (1, 3), (2, 3), (1, 2, 3)):
        total = sum(lagrange(suite, i, pair) * shares[i] for i in pair) % suite.order
        assert total == secret


@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_frost_vector_tampered_share_is_refused_naming_its_sender(v: Vector) -> None:
    _, commitments = v.committed()
    shares = {i: bytes.fromhex(z) for i, z in v.round_two.items()}
    second = max(shares)
    bad = v.suite.serialize_scalar(v.suite.deserialize_scalar(shares[second]) + 1)
    with pytest.raises(FrostError, match="does not verify") as e:
        signing.aggregate(v.public, commitments, v.message, {**shares, second: bad})
    assert e.value.culprit == second
