"""keysafe's FROST beside an independent implementation: `frost_rs`, Python bindings to the Zcash
Foundation's frost crates (frost-ed25519, frost-secp256k1), a test-only dependency.

Both directions, both suites, with the same shares and nonces on each side:
- keysafe's shares and round-one nonces, written in frost-core's serialization, signed by
  frost_rs: every signature share and the aggregate signature are byte for byte keysafe's;
- frost_rs's trusted-dealer shares and its own nonces, read back into keysafe's types, signed by
  keysafe: the same, and keysafe's aggregate verifies under frost_rs's verifier.

frost-core's serialization (postcard): a header of a version byte and the ciphersuite's 4-byte
ID, then fixed-size scalars and elements (the ciphersuite's own encodings), lengths as varints.
The header is read from frost_rs's own output rather than written down here.
"""

from __future__ import annotations

import base64
import os
from types import ModuleType

import frost_rs
import pytest

from keysafe.mpc.frost import signing
from keysafe.mpc.frost.groups import ED25519, SECP256K1, Suite
from keysafe.mpc.frost.keys import KeyPackage, PublicKeyPackage
from keysafe.mpc.frost.signing import SigningCommitment, SigningNonces

MESSAGE = b"keysafe cross-check: send 1 SOL to the treasury"


def _library(suite: Suite) -> ModuleType:
    module: ModuleType = getattr(frost_rs, f"utility_{suite.name}")
    return module


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Codec:
    """frost-core's byte layouts for one suite, as frost_rs reads and writes them."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.lib = _library(suite)
        dealt = self.lib.get_key(2, 3)
        self.header = _unb64(next(iter(dealt.values())))[:5]  # version byte + ciphersuite ID
        assert self.header[0] == 0 and len(self.header) == 5

    def identifier(self, i: int) -> bytes:
        return self.suite.serialize_scalar(i)

    def id_text(self, i: int) -> str:
        return _b64(self.identifier(i))

    def key_package(self, kp: KeyPackage) -> str:
        s = self.suite
        return _b64(
            self.header
            + self.identifier(kp.identifier)
            + s.serialize_scalar(kp.signing_share)
            + kp.public.verifying_shares[kp.identifier]
            + kp.public.group_public_key
            + bytes([2])  # min_signers, a one-byte varint
        )

    def public_key_package(self, public: PublicKeyPackage) -> str:
        shares = sorted(public.verifying_shares.items())  # the map's order: by identifier
        body = bytes([len(shares)]) + b"".join(self.identifier(i) + x for i, x in shares)
        return _b64(self.header + body + public.group_public_key)

    def commitments(self, c: SigningCommitment) -> str:
        return _b64(self.header + c.hiding + c.binding)

    def nonces(self, n: SigningNonces, c: SigningCommitment) -> str:
        s = self.suite
        scalars = s.serialize_scalar(n.hiding) + s.serialize_scalar(n.binding)
        return _b64(self.header + scalars + self.header + c.hiding + c.binding)

    def read_secret_share(self, text: str) -> tuple[int, int]:
        """frost_rs's dealt SecretShare: (identifier, signing share)."""
        raw = _unb64(text)
        assert raw[:5] == self.header
        n = self.suite.scalar_len
        return (
            self.suite.deserialize_scalar(raw[5 : 5 + n]),
            self.suite.deserialize_scalar(raw[5 + n : 5 + 2 * n]),
        )

    def read_nonces(self, text: str) -> SigningNonces:
        raw = _unb64(text)
        assert raw[:5] == self.header
        n = self.suite.scalar_len
        return SigningNonces(
            self.suite.deserialize_scalar(raw[5 : 5 + n]),
            self.suite.deserialize_scalar(raw[5 + n : 5 + 2 * n]),
        )


def _dealt(suite: Suite) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    """A random 2-of-3 sharing (participants 1, 2, 3), as keysafe's types."""
    secret = suite.h3(os.urandom(32)) or 1
    a1 = suite.h3(os.urandom(32)) or 1
    shares = {i: (secret + a1 * i) % suite.order for i in (1, 2, 3)}
    public = PublicKeyPackage(
        suite, suite.base_mul(secret), {i: suite.base_mul(x) for i, x in shares.items()}
    )
    return {i: KeyPackage(i, x, public) for i, x in shares.items()}, public


SUITES = [pytest.param(ED25519, id="ed25519"), pytest.param(SECP256K1, id="secp256k1")]
PAIRS = [(1, 2), (1, 3), (2, 3)]


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("signers", PAIRS, ids=lambda p: f"{p[0]}+{p[1]}")
def test_frost_rs_signs_keysafes_shares_and_nonces_byte_for_byte(
    suite: Suite, signers: tuple[int, int]
) -> None:
    codec = Codec(suite)
    packages, public = _dealt(suite)
    committed = {i: signing.commit(packages[i]) for i in signers}
    commitments = [committed[i][1] for i in signers]
    theirs_comms = {codec.id_text(i): codec.commitments(committed[i][1]) for i in signers}

    ours: dict[int, bytes] = {}
    theirs: dict[str, str] = {}
    for i in signers:
        nonces, commitment = committed[i]
        ours[i] = signing.sign(packages[i], nonces, MESSAGE, commitments)
        theirs[codec.id_text(i)] = codec.lib.sign(
            MESSAGE,
            theirs_comms,
            codec.nonces(nonces, commitment),
            codec.key_package(packages[i]),
        )
        assert _unb64(theirs[codec.id_text(i)]) == ours[i], f"participant {i}'s share"

    our_sig = signing.aggregate(public, commitments, MESSAGE, ours)
    their_sig = codec.lib.aggregate(MESSAGE, theirs_comms, theirs, codec.public_key_package(public))
    assert _unb64(their_sig) == our_sig
    assert codec.lib.verify(MESSAGE, codec.public_key_package(public), their_sig)


@pytest.mark.parametrize("suite", SUITES)
def test_keysafe_signs_frost_rs_dealt_shares_and_nonces_byte_for_byte(suite: Suite) -> None:
    codec = Codec(suite)
    dealt = codec.lib.get_key(2, 3)
    shares = dict(codec.read_secret_share(text) for text in dealt.values())
    assert sorted(shares) == [1, 2, 3]  # the dealer numbers participants as keysafe does
    verifying = {i: suite.base_mul(x) for i, x in shares.items()}
    # The group key from any two shares (x(0) by interpolation) equals frost_rs's.
    group = suite.add(
        suite.mul(2, verifying[1]), suite.mul(suite.order - 1, verifying[2])
    )  # 2·X1 − X2 = x(0)·G for a degree-one polynomial
    public = PublicKeyPackage(suite, group, verifying)
    their_packages = {i: codec.lib.gen_key_package(dealt[codec.id_text(i)]) for i in shares}
    assert _unb64(their_packages[1]) == _unb64(codec.key_package(KeyPackage(1, shares[1], public)))

    signers = (1, 3)
    pre = {i: codec.lib.preprocess(their_packages[i]) for i in signers}
    theirs_comms = {codec.id_text(i): pre[i][1] for i in signers}
    commitments = []
    for i in signers:
        raw = _unb64(pre[i][1])
        n = suite.element_len
        commitments.append(SigningCommitment(i, raw[5 : 5 + n], raw[5 + n : 5 + 2 * n]))

    ours: dict[int, bytes] = {}
    theirs: dict[str, str] = {}
    for i in signers:
        nonces = codec.read_nonces(pre[i][0])
        ours[i] = signing.sign(KeyPackage(i, shares[i], public), nonces, MESSAGE, commitments)
        theirs[codec.id_text(i)] = codec.lib.sign(
            MESSAGE, theirs_comms, pre[i][0], their_packages[i]
        )
        assert _unb64(theirs[codec.id_text(i)]) == ours[i], f"participant {i}'s share"

    our_sig = signing.aggregate(public, commitments, MESSAGE, ours)
    pub_text = codec.public_key_package(public)
    assert _unb64(codec.lib.aggregate(MESSAGE, theirs_comms, theirs, pub_text)) == our_sig
    assert codec.lib.verify(MESSAGE, pub_text, _b64(our_sig))
    assert not codec.lib.verify(MESSAGE + b"!", pub_text, _b64(our_sig))
