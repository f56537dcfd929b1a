"""Argon2 against RFC 9106 section 5, our Argon2id wrapper against an independent library, HKDF."""

from __future__ import annotations

from typing import Any

import argon2.low_level
import pytest
from argon2.low_level import ARGON2_VERSION, Type, core, error_to_str, ffi
from cryptography.hazmat.primitives.kdf.argon2 import Argon2d, Argon2i, Argon2id

from keysafe.crypto.kdf import DEFAULT_ARGON2, Argon2Params, argon2id, hkdf_sha256
from tests.vectors import load_json

RFC9106 = load_json("argon2/rfc9106_argon2.json")["vectors"]
_CRYPTOGRAPHY: dict[str, type[Argon2d | Argon2i | Argon2id]] = {
    "argon2d": Argon2d,
    "argon2i": Argon2i,
    "argon2id": Argon2id,
}
# argon2-cffi documents `argon2.low_level.lib` for use with core() but does not re-export it.
_LIB: Any = argon2.low_level.lib  # type: ignore[attr-defined]
_CFFI_TYPE = {"argon2d": Type.D, "argon2i": Type.I, "argon2id": Type.ID}


def _rfc_params() -> list[Any]:
    assert [v["type"] for v in RFC9106] == ["argon2d", "argon2i", "argon2id"]
    return [pytest.param(v, id=f"{v['type']}-rfc9106-{v['rfc9106_section']}") for v in RFC9106]


def _b(vec: dict[str, Any], field: str) -> bytes:
    return bytes.fromhex(vec[field])


@pytest.mark.parametrize("vec", _rfc_params())
def test_rfc9106_with_cryptography(vec: dict[str, Any]) -> None:
    """`cryptography` takes secret (K) and associated data (X), so it can run the RFC vector."""
    kdf = _CRYPTOGRAPHY[vec["type"]](
        salt=_b(vec, "salt"),
        length=vec["tag_length"],
        iterations=vec["passes"],
        lanes=vec["parallelism"],
        memory_cost=vec["memory_kib"],
        ad=_b(vec, "associated_data"),
        secret=_b(vec, "secret"),
    )
    assert kdf.derive(_b(vec, "password")) == _b(vec, "tag")


@pytest.mark.parametrize("vec", _rfc_params())
def test_rfc9106_with_argon2_cffi_core(vec: dict[str, Any]) -> None:
    """argon2-cffi, the library our wrapper calls, reproduces the RFC tag through argon2_ctx."""
    assert vec["version"] == ARGON2_VERSION == 0x13
    password, salt = _b(vec, "password"), _b(vec, "salt")
    secret, ad = _b(vec, "secret"), _b(vec, "associated_data")
    out = ffi.new("uint8_t[]", vec["tag_length"])
    c_pwd, c_salt = ffi.new("uint8_t[]", password), ffi.new("uint8_t[]", salt)
    c_secret, c_ad = ffi.new("uint8_t[]", secret), ffi.new("uint8_t[]", ad)
    ctx = ffi.new(
        "argon2_context *",
        {
            "out": out,
            "outlen": vec["tag_length"],
            "pwd": c_pwd,
            "pwdlen": len(password),
            "salt": c_salt,
            "saltlen": len(salt),
            "secret": c_secret,
            "secretlen": len(secret),
            "ad": c_ad,
            "adlen": len(ad),
            "t_cost": vec["passes"],
            "m_cost": vec["memory_kib"],
            "lanes": vec["parallelism"],
            "threads": vec["parallelism"],
            "version": vec["version"],
            "allocate_cbk": ffi.NULL,
            "free_cbk": ffi.NULL,
            "flags": _LIB.ARGON2_DEFAULT_FLAGS,
        },
    )
    rc = core(ctx, _CFFI_TYPE[vec["type"]].value)
    assert rc == _LIB.ARGON2_OK, error_to_str(rc)
    assert bytes(ffi.buffer(out, vec["tag_length"])) == _b(vec, "tag")


# Each parameter differs between at least two rows, so a wrapper that dropped or swapped one
# would disagree with the independent implementation somewhere.
SMALL_PARAMS = [
    Argon2Params(memory_kib=64, time_cost=1, parallelism=1, length=32),
    Argon2Params(memory_kib=64, time_cost=2, parallelism=1, length=32),
    Argon2Params(memory_kib=128, time_cost=2, parallelism=1, length=32),
    Argon2Params(memory_kib=128, time_cost=2, parallelism=4, length=32),
    Argon2Params(memory_kib=256, time_cost=3, parallelism=2, length=64),
    Argon2Params(memory_kib=32, time_cost=1, parallelism=4, length=16),
]


@pytest.mark.parametrize(
    "params",
    SMALL_PARAMS,
    ids=lambda p: f"m{p.memory_kib}-t{p.time_cost}-p{p.parallelism}-len{p.length}",
)
def test_wrapper_matches_independent_argon2id(params: Argon2Params) -> None:
    passphrase = bytearray("correct horse battery staple ✓".encode())
    salt = bytes(range(16, 48))
    ours = argon2id(passphrase, salt, params)
    theirs = Argon2id(
        salt=salt,
        length=params.length,
        iterations=params.time_cost,
        lanes=params.parallelism,
        memory_cost=params.memory_kib,
    ).derive(bytes(passphrase))
    assert isinstance(ours, bytearray)
    assert len(ours) == params.length
    assert ours == theirs


def test_wrapper_outputs_differ_across_parameter_rows() -> None:
    outputs = {bytes(argon2id(b"pw", bytes(16), p)) for p in SMALL_PARAMS}
    assert len(outputs) == len(SMALL_PARAMS)


def test_wrapper_depends_on_passphrase_and_salt() -> None:
    p = SMALL_PARAMS[0]
    base = argon2id(b"passphrase", bytes(16), p)
    assert argon2id(b"passphrasf", bytes(16), p) != base
    assert argon2id(b"passphrase", bytes(15) + b"\x01", p) != base
    assert argon2id(bytearray(b"passphrase"), bytes(16), p) == base


@pytest.mark.parametrize("salt_len", [0, 8, 15])
def test_wrapper_rejects_short_salt(salt_len: int) -> None:
    with pytest.raises(ValueError, match="salt"):
        argon2id(b"pw", bytes(salt_len), SMALL_PARAMS[0])


def test_params_dict_round_trip_and_defaults() -> None:
    assert Argon2Params.from_dict(SMALL_PARAMS[4].to_dict()) == SMALL_PARAMS[4]
    assert DEFAULT_ARGON2.to_dict() == {
        "memory_kib": 65536,
        "time_cost": 3,
        "parallelism": 4,
        "length": 32,
    }


# RFC 5869, Appendix A.1 "Test Case 1" (basic test case with SHA-256).
A1_IKM = bytes.fromhex("0b" * 22)
A1_SALT = bytes.fromhex("000102030405060708090a0b0c")
A1_INFO = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
A1_OKM = bytes.fromhex(
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
)
# RFC 5869, Appendix A.3 "Test Case 3" (SHA-256, zero-length salt and info).
A3_OKM = bytes.fromhex(
    "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
)


def test_hkdf_rfc5869_a1() -> None:
    okm = hkdf_sha256(A1_IKM, info=A1_INFO, salt=A1_SALT, length=42)
    assert isinstance(okm, bytearray)
    assert okm == A1_OKM
    assert hkdf_sha256(bytearray(A1_IKM), info=A1_INFO, salt=A1_SALT, length=42) == A1_OKM


def test_hkdf_rfc5869_a3_no_salt() -> None:
    # A missing salt means HashLen zero bytes (RFC 5869 section 2.2), same as an empty one.
    assert hkdf_sha256(A1_IKM, info=b"", salt=None, length=42) == A3_OKM
    assert hkdf_sha256(A1_IKM, info=b"", salt=b"", length=42) == A3_OKM


def test_hkdf_default_length_is_prefix_and_info_separates() -> None:
    okm32 = hkdf_sha256(A1_IKM, info=A1_INFO, salt=A1_SALT)
    assert okm32 == A1_OKM[:32]
    assert hkdf_sha256(A1_IKM, info=A1_INFO + b"x", salt=A1_SALT) != okm32
