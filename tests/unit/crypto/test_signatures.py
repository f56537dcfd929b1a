"""Signature helpers against Wycheproof (C2SP/wycheproof testvectors_v1) and RFC 8032."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from coincurve import PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from keysafe.crypto.signatures import (
    SECP256K1_N,
    sign_ed25519,
    verify_ed25519,
    verify_secp256k1_ecdsa_der,
    verify_secp256k1_ecdsa_p1363,
)
from tests.vectors import load_json

ED25519_L = 2**252 + 27742317777372353535851937790883648493


def _cases(relpath: str) -> list[Any]:
    """One pytest.param per Wycheproof test: (group public key, test), id `tc<N>-<result>`."""
    data = load_json(relpath)
    params = [
        pytest.param(group["publicKey"], test, id=f"tc{test['tcId']}-{test['result']}")
        for group in data["testGroups"]
        for test in group["tests"]
    ]
    assert len(params) == data["numberOfTests"]
    return params


def _check(result: bool, test: dict[str, Any]) -> None:
    assert isinstance(result, bool)
    if test["result"] == "valid":
        assert result is True, test["comment"]
    elif test["result"] == "invalid":
        assert result is False, test["comment"]
    else:
        assert test["result"] == "acceptable"  # either answer, as long as nothing raised


# --- Ed25519 -------------------------------------------------------------------------------


@pytest.mark.parametrize(("public_key", "test"), _cases("wycheproof/ed25519_test.json"))
def test_wycheproof_ed25519(public_key: dict[str, Any], test: dict[str, Any]) -> None:
    result = verify_ed25519(
        bytes.fromhex(public_key["pk"]), bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
    )
    _check(result, test)


# RFC 8032, section 7.1, "TEST 1" (empty message).
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_sign_ed25519_rfc8032_test1() -> None:
    seed = bytearray(RFC8032_SEED)
    assert sign_ed25519(seed, b"") == RFC8032_SIG
    assert verify_ed25519(RFC8032_PUBLIC, b"", RFC8032_SIG)
    assert seed == RFC8032_SEED  # signing does not consume or alter the caller's seed


def test_sign_ed25519_round_trip_and_message_binding() -> None:
    sig = sign_ed25519(bytearray(RFC8032_SEED), b"transfer 1 ETH")
    assert len(sig) == 64
    assert verify_ed25519(RFC8032_PUBLIC, b"transfer 1 ETH", sig)
    assert not verify_ed25519(RFC8032_PUBLIC, b"transfer 2 ETH", sig)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_sign_ed25519_rejects_wrong_seed_size(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        sign_ed25519(bytearray(size), b"msg")


def test_verify_ed25519_rejects_non_canonical_s() -> None:
    # S + L is the same scalar mod L and still fits in 32 bytes: the classic malleation.
    s = int.from_bytes(RFC8032_SIG[32:], "little")
    malleated = RFC8032_SIG[:32] + (s + ED25519_L).to_bytes(32, "little")
    assert not verify_ed25519(RFC8032_PUBLIC, b"", malleated)


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [
        pytest.param(RFC8032_PUBLIC[:31], RFC8032_SIG, id="short-key"),
        pytest.param(RFC8032_PUBLIC + b"\x00", RFC8032_SIG, id="long-key"),
        pytest.param(RFC8032_PUBLIC, RFC8032_SIG[:63], id="short-sig"),
        pytest.param(RFC8032_PUBLIC, RFC8032_SIG + b"\x00", id="long-sig"),
        pytest.param(b"", b"", id="empty"),
        pytest.param(bytes(32), RFC8032_SIG, id="zero-key"),
    ],
)
def test_verify_ed25519_bad_sizes_return_false(public_key: bytes, signature: bytes) -> None:
    assert verify_ed25519(public_key, b"", signature) is False


# --- secp256k1 ECDSA -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("public_key", "test"), _cases("wycheproof/ecdsa_secp256k1_sha256_test.json")
)
def test_wycheproof_secp256k1_der(public_key: dict[str, Any], test: dict[str, Any]) -> None:
    result = verify_secp256k1_ecdsa_der(
        bytes.fromhex(public_key["uncompressed"]),
        bytes.fromhex(test["msg"]),
        bytes.fromhex(test["sig"]),
    )
    _check(result, test)


@pytest.mark.parametrize(
    ("public_key", "test"), _cases("wycheproof/ecdsa_secp256k1_sha256_p1363_test.json")
)
def test_wycheproof_secp256k1_p1363(public_key: dict[str, Any], test: dict[str, Any]) -> None:
    result = verify_secp256k1_ecdsa_p1363(
        bytes.fromhex(public_key["uncompressed"]),
        bytes.fromhex(test["msg"]),
        bytes.fromhex(test["sig"]),
    )
    _check(result, test)


@pytest.mark.parametrize(
    ("public_key", "test"), _cases("wycheproof/ecdsa_secp256k1_sha256_bitcoin_test.json")
)
def test_wycheproof_secp256k1_bitcoin_low_s(
    public_key: dict[str, Any], test: dict[str, Any]
) -> None:
    result = verify_secp256k1_ecdsa_der(
        bytes.fromhex(public_key["uncompressed"]),
        bytes.fromhex(test["msg"]),
        bytes.fromhex(test["sig"]),
        low_s_only=True,
    )
    _check(result, test)


MESSAGE = b"keysafe secp256k1 test message"
_PRIVATE = PrivateKey(hashlib.sha256(b"keysafe test key").digest())
UNCOMPRESSED = _PRIVATE.public_key.format(compressed=False)
COMPRESSED = _PRIVATE.public_key.format(compressed=True)
LOW_S_DER = _PRIVATE.sign(MESSAGE)  # libsecp256k1 signs SHA-256(msg) and always emits low S
R, LOW_S = decode_dss_signature(LOW_S_DER)
HIGH_S_DER = encode_dss_signature(R, SECP256K1_N - LOW_S)
LOW_S_RS = R.to_bytes(32, "big") + LOW_S.to_bytes(32, "big")
HIGH_S_RS = R.to_bytes(32, "big") + (SECP256K1_N - LOW_S).to_bytes(32, "big")


def test_fixture_signature_is_low_s() -> None:
    assert 0 < LOW_S <= SECP256K1_N // 2


@pytest.mark.parametrize(
    "public_key", [UNCOMPRESSED, COMPRESSED], ids=["uncompressed", "compressed"]
)
def test_secp256k1_high_s_accepted_unless_low_s_only(public_key: bytes) -> None:
    assert verify_secp256k1_ecdsa_der(public_key, MESSAGE, LOW_S_DER)
    assert verify_secp256k1_ecdsa_der(public_key, MESSAGE, LOW_S_DER, low_s_only=True)
    assert verify_secp256k1_ecdsa_der(public_key, MESSAGE, HIGH_S_DER)
    assert not verify_secp256k1_ecdsa_der(public_key, MESSAGE, HIGH_S_DER, low_s_only=True)
    assert verify_secp256k1_ecdsa_p1363(public_key, MESSAGE, LOW_S_RS)
    assert verify_secp256k1_ecdsa_p1363(public_key, MESSAGE, HIGH_S_RS)
    assert not verify_secp256k1_ecdsa_p1363(public_key, MESSAGE, HIGH_S_RS, low_s_only=True)


def test_secp256k1_message_and_key_binding() -> None:
    other = PrivateKey(hashlib.sha256(b"another key").digest()).public_key.format()
    assert not verify_secp256k1_ecdsa_der(UNCOMPRESSED, MESSAGE + b"!", LOW_S_DER)
    assert not verify_secp256k1_ecdsa_der(other, MESSAGE, LOW_S_DER)
    assert not verify_secp256k1_ecdsa_p1363(UNCOMPRESSED, MESSAGE + b"!", LOW_S_RS)
    assert not verify_secp256k1_ecdsa_p1363(other, MESSAGE, LOW_S_RS)


def test_secp256k1_hybrid_public_key_refused() -> None:
    # "Hybrid" 06/07 keys are accepted by libsecp256k1's parser; this module refuses them.
    y_is_odd = UNCOMPRESSED[-1] & 1
    hybrid = bytes([6 + y_is_odd]) + UNCOMPRESSED[1:]
    assert not verify_secp256k1_ecdsa_der(hybrid, MESSAGE, LOW_S_DER)
    assert not verify_secp256k1_ecdsa_p1363(hybrid, MESSAGE, LOW_S_RS)


def test_secp256k1_non_minimal_der_refused() -> None:
    # Same (r, s), but the outer SEQUENCE length in long form (0x81 nn): valid BER, not DER.
    body = LOW_S_DER[2:]
    ber = b"\x30\x81" + bytes([len(body)]) + body
    assert not verify_secp256k1_ecdsa_der(UNCOMPRESSED, MESSAGE, ber)
    assert not verify_secp256k1_ecdsa_der(UNCOMPRESSED, MESSAGE, LOW_S_DER + b"\x00")


@pytest.mark.parametrize(
    ("r", "s"),
    [
        pytest.param(0, 1, id="r=0"),
        pytest.param(1, 0, id="s=0"),
        pytest.param(SECP256K1_N, 1, id="r=n"),
        pytest.param(1, SECP256K1_N, id="s=n"),
        pytest.param(R + SECP256K1_N, LOW_S, id="r+n"),
    ],
)
def test_secp256k1_out_of_range_scalars_refused(r: int, s: int) -> None:
    assert not verify_secp256k1_ecdsa_der(UNCOMPRESSED, MESSAGE, encode_dss_signature(r, s))
    if r < 2**256 and s < 2**256:
        rs = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert not verify_secp256k1_ecdsa_p1363(UNCOMPRESSED, MESSAGE, rs)


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [
        pytest.param(b"", LOW_S_RS, id="empty-key"),
        pytest.param(UNCOMPRESSED[:-1], LOW_S_RS, id="short-key"),
        pytest.param(b"\x04" + bytes(64), LOW_S_RS, id="not-on-curve"),
        pytest.param(UNCOMPRESSED, b"", id="empty-sig"),
        pytest.param(UNCOMPRESSED, LOW_S_RS[:63], id="short-sig"),
        pytest.param(UNCOMPRESSED, LOW_S_RS + b"\x00", id="long-sig"),
    ],
)
def test_secp256k1_garbage_returns_false(public_key: bytes, signature: bytes) -> None:
    assert verify_secp256k1_ecdsa_p1363(public_key, MESSAGE, signature) is False
    assert verify_secp256k1_ecdsa_der(public_key, MESSAGE, signature) is False
