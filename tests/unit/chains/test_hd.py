"""BIP-32 and SLIP-10 derivation against the published vectors in tests/vectors."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

import pytest
from coincurve.utils import GROUP_ORDER

from keysafe.chains import hd
from keysafe.chains.base58 import (
    base58_decode,
    base58_encode,
    base58check_decode,
    base58check_encode,
)
from keysafe.chains.extended_keys import (
    bip32_parse_extended_key,
    bip32_serialize_private,
    bip32_serialize_public,
)
from keysafe.chains.hd import (
    HARDENED,
    ExtendedPrivateKey,
    ExtendedPublicKey,
    bip32_ckd_priv,
    bip32_ckd_pub,
    bip32_derive,
    bip32_derive_public,
    bip32_fingerprint,
    bip32_master,
    bip32_neuter,
    bip32_public_key,
    format_path,
    parse_path,
    slip10_ed25519_derive,
    slip10_ed25519_master,
    slip10_ed25519_public,
)
from keysafe.crypto.secret import SecretBytes
from tests.vectors import VECTORS, load_json

BIP32 = load_json("bip32/bip32_vectors.json")
SLIP10 = load_json("slip10/slip10_vectors.json")
KEYSAFE_CURVES = {"secp256k1", "ed25519"}


def test_vectors_folder_is_the_repositorys_own() -> None:
    expected = Path(__file__).resolve().parents[3] / "tests" / "vectors"
    assert expected.resolve() == VECTORS
    assert len(BIP32["vectors"]) == 4
    assert len(BIP32["invalid_extended_keys"]) == 16
    assert sum(len(v["chains"]) for v in BIP32["vectors"]) == 17
    assert sum(len(v["chains"]) for v in SLIP10["vectors"]) == 52


# --------------------------------------------------------------------------------------------
# Parameter helpers


def _bip32_chains() -> list[Any]:
    return [
        pytest.param(vector["seed"], chain, id=f"v{n}:{chain['path']}")
        for n, vector in enumerate(BIP32["vectors"], start=1)
        for chain in vector["chains"]
    ]


def _bip32_public_steps() -> list[Any]:
    """(parent chain, child chain) pairs whose last step is non-hardened."""
    params = []
    for n, vector in enumerate(BIP32["vectors"], start=1):
        chains = vector["chains"]
        for parent, child in itertools.pairwise(chains):
            assert child["path_indices"][:-1] == parent["path_indices"]
            if child["path_indices"][-1] < HARDENED:
                params.append(pytest.param(parent, child, id=f"v{n}:{child['path']}"))
    return params


def _slip10_chains() -> list[Any]:
    params = []
    for vector in SLIP10["vectors"]:
        curve = vector["curve"]
        for chain in vector["chains"]:
            ident = f"{vector['name']}:{chain['path']}"
            if curve in KEYSAFE_CURVES:
                params.append(pytest.param(curve, vector["seed"], chain, id=ident))
            else:
                reason = f"skip-{curve}-unused-by-keysafe"
                params.append(
                    pytest.param(
                        curve,
                        vector["seed"],
                        chain,
                        id=f"{reason}:{ident}",
                        marks=pytest.mark.skip(
                            reason=f"keysafe does not use {curve} (only secp256k1 and ed25519)"
                        ),
                    )
                )
    return params


# --------------------------------------------------------------------------------------------
# Paths


@pytest.mark.parametrize(
    ("path", "indices"),
    [
        ("m", []),
        ("m/0", [0]),
        ("m/0'", [HARDENED]),
        ("m/0h", [HARDENED]),
        ("m/0H", [HARDENED]),
        ("m/44'/60'/0'/0/0", [HARDENED + 44, HARDENED + 60, HARDENED, 0, 0]),
        ("m/44h/501h/3h/0h", [HARDENED + 44, HARDENED + 501, HARDENED + 3, HARDENED]),
        ("m/2147483647'/2147483647", [0xFFFFFFFF, 0x7FFFFFFF]),
    ],
)
def test_parse_path_valid(path: str, indices: list[int]) -> None:
    assert parse_path(path) == indices
    assert parse_path(format_path(indices)) == indices


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "empty"),
        ("44'/60'", "start with 'm'"),
        ("M/0", "start with 'm'"),
        ("m/", "component 1 is empty"),
        ("m//0", "component 1 is empty"),
        ("m/0/", "component 2 is empty"),
        ("m/x", r"component 1 \('x'\) is not a decimal index"),
        ("m/-1", "not a decimal index"),
        ("m/+1", "not a decimal index"),
        ("m/ 1", "not a decimal index"),
        ("m/01", "not a decimal index"),
        ("m/1''", "not a decimal index"),
        ("m/1'h", "not a decimal index"),
        ("m/\u0661", "not a decimal index"),  # ARABIC-INDIC DIGIT ONE
        ("m/2147483648", "out of range"),
        ("m/2147483648'", "out of range"),
        ("m" + "/0" * 256, "deeper than 255"),
    ],
)
def test_parse_path_invalid(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_path(path)


def test_bip32_vector_paths_parse_to_their_indices() -> None:
    for vector in [*BIP32["vectors"], *SLIP10["vectors"]]:
        for chain in vector["chains"]:
            assert parse_path(chain["path"]) == chain["path_indices"]


# --------------------------------------------------------------------------------------------
# BIP-32 vectors


@pytest.mark.parametrize("vector", BIP32["vectors"], ids=lambda v: v["name"])
def test_bip32_master(vector: dict[str, Any]) -> None:
    master_chain = vector["chains"][0]
    assert master_chain["path"] == "m"
    xk = bip32_master(bytes.fromhex(vector["seed"]))
    expected = master_chain["decoded"]
    assert xk.key.reveal().hex() == expected["private_key"]
    assert xk.chain_code.hex() == expected["chain_code"]
    assert bip32_public_key(xk).hex() == expected["public_key"]
    assert (xk.depth, xk.child_number, xk.parent_fingerprint) == (0, 0, b"\0\0\0\0")
    assert bip32_serialize_private(xk) == master_chain["ext_prv"]


@pytest.mark.parametrize(("seed", "chain"), _bip32_chains())
def test_bip32_private_derivation(seed: str, chain: dict[str, Any]) -> None:
    expected = chain["decoded"]
    for path in (chain["path"], chain["path_indices"]):
        xk = bip32_derive(bytes.fromhex(seed), path)
        assert xk.key.reveal().hex() == expected["private_key"]
        assert xk.chain_code.hex() == expected["chain_code"]
        assert bip32_public_key(xk).hex() == expected["public_key"]
        assert xk.parent_fingerprint.hex() == expected["parent_fingerprint"]
        assert xk.depth == expected["depth"] == len(chain["path_indices"])
        assert xk.child_number == expected["child_number"]


@pytest.mark.parametrize(("seed", "chain"), _bip32_chains())
def test_bip32_serialization(seed: str, chain: dict[str, Any]) -> None:
    xk = bip32_derive(bytes.fromhex(seed), chain["path"])
    assert bip32_serialize_private(xk) == chain["ext_prv"]
    assert bip32_serialize_public(xk) == chain["ext_pub"]
    assert bip32_serialize_public(bip32_neuter(xk)) == chain["ext_pub"]


@pytest.mark.parametrize(("seed", "chain"), _bip32_chains())
def test_bip32_parse_round_trip(seed: str, chain: dict[str, Any]) -> None:
    expected = chain["decoded"]
    xprv = bip32_parse_extended_key(chain["ext_prv"])
    assert isinstance(xprv, ExtendedPrivateKey)
    assert xprv.key.reveal().hex() == expected["private_key"]
    assert xprv.chain_code.hex() == expected["chain_code"]
    assert xprv.parent_fingerprint.hex() == expected["parent_fingerprint"]
    assert (xprv.depth, xprv.child_number) == (expected["depth"], expected["child_number"])
    assert bip32_serialize_private(xprv) == chain["ext_prv"]

    xpub = bip32_parse_extended_key(chain["ext_pub"])
    assert isinstance(xpub, ExtendedPublicKey)
    assert xpub.key.hex() == expected["public_key"]
    assert xpub == bip32_neuter(xprv)
    assert bip32_serialize_public(xpub) == chain["ext_pub"]


@pytest.mark.parametrize(("parent", "child"), _bip32_public_steps())
def test_bip32_public_only_derivation(parent: dict[str, Any], child: dict[str, Any]) -> None:
    index = child["path_indices"][-1]
    parent_pub = bip32_parse_extended_key(parent["ext_pub"])
    assert isinstance(parent_pub, ExtendedPublicKey)

    step = bip32_derive_public(parent_pub.key, parent_pub.chain_code, index)
    assert step.key.hex() == child["decoded"]["public_key"]
    assert step.chain_code.hex() == child["decoded"]["chain_code"]
    assert step.child_number == index

    child_pub = bip32_ckd_pub(parent_pub, index)
    assert child_pub.parent_fingerprint.hex() == child["decoded"]["parent_fingerprint"]
    assert bip32_serialize_public(child_pub) == child["ext_pub"]


def test_bip32_public_steps_cover_every_non_hardened_vector_step() -> None:
    steps = _bip32_public_steps()
    assert len(steps) == 6  # v1: .../1, .../2, .../1000000000; v2: m/0, .../1, .../2
    assert {p.id for p in steps} >= {"v1:m/0'/1", "v2:m/0"}


def test_bip32_public_derivation_refuses_hardened() -> None:
    vector = BIP32["vectors"][0]["chains"][0]
    xpub = bip32_parse_extended_key(vector["ext_pub"])
    assert isinstance(xpub, ExtendedPublicKey)
    with pytest.raises(ValueError, match="hardened"):
        bip32_derive_public(xpub.key, xpub.chain_code, HARDENED)
    with pytest.raises(ValueError, match="hardened"):
        bip32_ckd_pub(xpub, HARDENED + 5)


@pytest.mark.parametrize(
    "case", BIP32["invalid_extended_keys"], ids=lambda c: f"{c['reason']}:{c['key'][-6:]}"
)
def test_bip32_invalid_extended_keys_rejected(case: dict[str, str]) -> None:
    with pytest.raises(ValueError) as info:
        bip32_parse_extended_key(case["key"])
    assert case["key"] not in str(info.value)
    assert case["key"][4:20] not in str(info.value)


def test_bip32_parse_rejects_non_key_text() -> None:
    for text in ["", "xprv", "0" * 111, "x" * 500]:
        with pytest.raises(ValueError):
            bip32_parse_extended_key(text)


def test_bip32_testnet_serialization_round_trips() -> None:
    vector = BIP32["vectors"][0]
    xk = bip32_derive(bytes.fromhex(vector["seed"]), "m/0'/1")
    tprv = bip32_serialize_private(xk, mainnet=False)
    tpub = bip32_serialize_public(xk, mainnet=False)
    assert tprv.startswith("tprv") and tpub.startswith("tpub")
    parsed = bip32_parse_extended_key(tprv)
    assert isinstance(parsed, ExtendedPrivateKey) and parsed == xk
    assert bip32_parse_extended_key(tpub) == bip32_neuter(xk)


def test_bip39_vector_seeds_give_their_master_xprv() -> None:
    english = load_json("bip39/vectors.json")["english"]
    assert len(english) == 24
    for _entropy, _words, seed, xprv in english:
        assert bip32_serialize_private(bip32_master(bytes.fromhex(seed))) == xprv


# --------------------------------------------------------------------------------------------
# BIP-32 invalid-child handling (probability < 2^-127, so forced by patching the HMAC)


def _patch_hmac_to_invalidate(
    monkeypatch: pytest.MonkeyPatch, bad_index: int, left: bytes
) -> list[int]:
    """Make the HMAC for child `bad_index` return IL = `left` (an invalid tweak)."""
    real = hd._hmac_sha512
    hits: list[int] = []

    def fake(key: bytes | bytearray, data: bytes | bytearray) -> bytearray:
        out = real(key, data)
        if key != b"Bitcoin seed" and bytes(data[-4:]) == bad_index.to_bytes(4, "big"):
            hits.append(bad_index)
            out[:32] = left
        return out

    monkeypatch.setattr(hd, "_hmac_sha512", fake)
    return hits


@pytest.mark.parametrize("bad_index", [7, HARDENED + 7])
def test_bip32_invalid_child_skips_to_next_index(
    monkeypatch: pytest.MonkeyPatch, bad_index: int
) -> None:
    seed = bytes.fromhex(BIP32["vectors"][0]["seed"])
    master = bip32_master(seed)
    expected = bip32_ckd_priv(master, bad_index + 1)
    hits = _patch_hmac_to_invalidate(monkeypatch, bad_index, GROUP_ORDER)  # IL = n
    child = bip32_ckd_priv(master, bad_index)
    assert hits == [bad_index]
    assert child == expected
    assert child.child_number == bad_index + 1


def test_bip32_public_invalid_child_skips_to_next_index(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = bytes.fromhex(BIP32["vectors"][0]["seed"])
    xpub = bip32_neuter(bip32_master(seed))
    expected = bip32_ckd_pub(xpub, 8)
    hits = _patch_hmac_to_invalidate(monkeypatch, 7, b"\xff" * 32)  # IL > n
    child = bip32_ckd_pub(xpub, 7)
    assert hits == [7]
    assert child == expected and child.child_number == 8


def test_bip32_invalid_child_at_end_of_range_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = bytes.fromhex(BIP32["vectors"][0]["seed"])
    master = bip32_master(seed)
    _patch_hmac_to_invalidate(monkeypatch, HARDENED - 1, GROUP_ORDER)
    with pytest.raises(ValueError, match="no valid child key"):
        bip32_ckd_priv(master, HARDENED - 1)  # the next index would be hardened


def test_bip32_invalid_master_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hd, "_hmac_sha512", lambda key, data: bytearray(64))  # IL = 0
    with pytest.raises(ValueError, match="invalid BIP-32 master key"):
        bip32_master(bytes(32))


# --------------------------------------------------------------------------------------------
# SLIP-10


@pytest.mark.parametrize(("curve", "seed", "chain"), _slip10_chains())
def test_slip10_chain(curve: str, seed: str, chain: dict[str, Any]) -> None:
    if curve == "secp256k1":
        xk = bip32_derive(bytes.fromhex(seed), chain["path"])
        public = bip32_public_key(xk)
    else:
        xk = slip10_ed25519_derive(bytes.fromhex(seed), chain["path"])
        public = b"\0" + slip10_ed25519_public(xk.key)
    assert xk.parent_fingerprint.hex() == chain["fingerprint"]
    assert xk.chain_code.hex() == chain["chain_code"]
    assert xk.key.reveal().hex() == chain["private"]
    assert public.hex() == chain["public"]
    assert xk.depth == len(chain["path_indices"])


def test_slip10_skips_are_only_the_unused_curves() -> None:
    params = _slip10_chains()
    ran = [p for p in params if not p.marks]
    assert len(ran) == 24  # 2 vectors x 6 chains x {secp256k1, ed25519}
    assert all("unused-by-keysafe" in p.id for p in params if p.marks)


@pytest.mark.parametrize("path", ["m/0", "m/44'/501'/0'/0", "m/0'/1/2'", [HARDENED, 1]])
def test_slip10_ed25519_refuses_non_hardened(path: str | list[int]) -> None:
    seed = bytes.fromhex(SLIP10["vectors"][2]["seed"])
    with pytest.raises(ValueError, match="hardened derivation only"):
        slip10_ed25519_derive(seed, path)


def test_slip10_ed25519_master_equals_path_m() -> None:
    seed = bytes.fromhex(SLIP10["vectors"][2]["seed"])
    assert slip10_ed25519_master(seed) == slip10_ed25519_derive(seed, "m")


# --------------------------------------------------------------------------------------------
# Key hygiene and helpers


def test_extended_private_key_repr_hides_key() -> None:
    chain = BIP32["vectors"][0]["chains"][2]
    xk = bip32_derive(bytes.fromhex(BIP32["vectors"][0]["seed"]), chain["path"])
    secret_hex = chain["decoded"]["private_key"]
    for text in (repr(xk), str(xk), f"{xk}"):
        assert secret_hex not in text
        assert "<redacted>" in text
    xk.wipe()
    assert xk.key.reveal() == bytearray(32)


def test_extended_key_field_validation() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        ExtendedPrivateKey(SecretBytes(bytes(31)), bytes(32), 0, bytes(4), 0)
    with pytest.raises(ValueError, match="chain code"):
        ExtendedPrivateKey(SecretBytes(bytes(32)), bytes(31), 0, bytes(4), 0)
    with pytest.raises(ValueError, match="depth"):
        ExtendedPublicKey(b"\x02" * 33, bytes(32), 256, bytes(4), 0)
    with pytest.raises(ValueError, match="fingerprint"):
        ExtendedPublicKey(b"\x02" * 33, bytes(32), 1, bytes(3), 0)


@pytest.mark.parametrize("length", [0, 15, 65])
def test_seed_length_checked(length: int) -> None:
    with pytest.raises(ValueError, match="seed must be"):
        bip32_master(bytes(length))
    with pytest.raises(ValueError, match="seed must be"):
        slip10_ed25519_master(bytes(length))


def test_fingerprint_is_hash160_prefix() -> None:
    chain = BIP32["vectors"][0]["chains"][1]
    master_pub = bytes.fromhex(BIP32["vectors"][0]["chains"][0]["decoded"]["public_key"])
    assert bip32_fingerprint(master_pub).hex() == chain["decoded"]["parent_fingerprint"]
    with pytest.raises(ValueError):
        bip32_fingerprint(master_pub[:32])


def test_ripemd160_backends_agree() -> None:
    if "ripemd160" not in hashlib.algorithms_available:
        pytest.skip("hashlib has no RIPEMD-160 here; only the pycryptodome backend is in use")
    for data in (b"", b"abc", bytes(range(256))):
        assert hd._ripemd160_hashlib(data) == hd._ripemd160_pycryptodome(data)


@pytest.mark.parametrize(
    "data", [b"", b"\0", b"\0\0\x01", b"\x01\x02", bytes(range(256)), b"\xff" * 40]
)
def test_base58_round_trip(data: bytes) -> None:
    assert base58_decode(base58_encode(data)) == data
    assert base58check_decode(base58check_encode(data)) == data


def test_base58_rejects_bad_input() -> None:
    for text in ["0", "O", "I", "l", "abc!", "x" * 2000]:
        with pytest.raises(ValueError):
            base58_decode(text)
    good = base58check_encode(b"hello")
    bad = good[:-1] + ("2" if good[-1] != "2" else "3")
    with pytest.raises(ValueError, match="checksum"):
        base58check_decode(bad)
