"""RFC 8785 canonical JSON against cyberphone/json-canonicalization testdata."""

from __future__ import annotations

import json
import math
import struct
from enum import IntEnum, StrEnum
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysafe.crypto.jcs import dumps
from tests.vectors import load_json, read_bytes

PAIRS = ["arrays", "french", "structures", "unicode", "values", "weird"]


@pytest.mark.parametrize("name", PAIRS)
def test_input_canonicalizes_to_expected_bytes(name: str) -> None:
    value = json.loads(read_bytes(f"jcs/input/{name}.json"))
    expected = read_bytes(f"jcs/output/{name}.json")
    assert dumps(value) == expected


@pytest.mark.parametrize("name", PAIRS)
def test_output_is_a_fixed_point(name: str) -> None:
    expected = read_bytes(f"jcs/output/{name}.json")
    assert dumps(json.loads(expected)) == expected


@pytest.mark.parametrize("name", PAIRS)
def test_outhex_equals_output(name: str) -> None:
    outhex = read_bytes(f"jcs/outhex/{name}.txt").decode("ascii")
    assert bytes.fromhex(outhex) == read_bytes(f"jcs/output/{name}.json")


def test_weird_sorts_keys_by_utf16_code_units() -> None:
    # U+1F602 is the surrogate pair D83D DE02, which sorts before U+FB33 in UTF-16 order
    # (but after it in code point order).
    out = dumps(json.loads(read_bytes("jcs/input/weird.json"))).decode("utf-8")
    assert out.index("\U0001f602") < out.index("\ufb33")
    assert "\u0080" in out  # raw, not \u0080-escaped
    assert "</script>" in out


def _samples() -> list[Any]:
    samples = load_json("jcs/es6_number_samples.json")["samples"]
    assert len(samples) == 7
    return [pytest.param(s["ieee754_hex"], s["expected"], id=s["ieee754_hex"]) for s in samples]


@pytest.mark.parametrize(("ieee754_hex", "expected"), _samples())
def test_es6_number_samples(ieee754_hex: str, expected: str) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(ieee754_hex.rjust(16, "0")))
    assert math.isfinite(number)
    assert dumps(number) == expected.encode("ascii")


# -- the standard-library fast path gives rfc8785's bytes, or rfc8785 decides ----------------------

_KEYS = st.one_of(
    st.text(max_size=6),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=4),
    st.sampled_from(["", "a", "B", "_", "\x7f", "é", "\ufb33", "\U0001f602", "\u2028"]),
)
_STRINGS = st.one_of(
    st.text(max_size=12),
    # every control character, the escapes, U+2028/9, DEL, and lone surrogates
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2030), max_size=8),
    st.text(alphabet=st.characters(min_codepoint=0xD7FF, max_codepoint=0xE001), max_size=3),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    _STRINGS,
    st.integers(min_value=-(2**54), max_value=2**54),
    st.sampled_from([2**53 - 1, -(2**53 - 1), 2**53, -(2**53)]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(_KEYS, inner, max_size=4),
    ),
    max_leaves=12,
)


def _assert_like_rfc8785(value: Any) -> None:
    """keysafe's bytes are rfc8785's, or keysafe raises the error rfc8785 raises."""
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        with pytest.raises(type(exc)):
            dumps(value)
        return
    assert dumps(value) == expected


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_VALUES)
def test_fast_path_gives_rfc8785_bytes_or_its_error(value: Any) -> None:
    _assert_like_rfc8785(value)


class _Tag(StrEnum):
    A = "b"


class _Level(IntEnum):
    HIGH = 7


@pytest.mark.parametrize(
    "value",
    [
        {"k": _Tag.A},
        [_Level.HIGH],
        {"z": 1, "a": [True, None, 'x\u0000\u001f"\\/']},
        {"\ufb33": 1, "\U0001f602": 2},
        {"n": 2**53},
        {"f": 1.0},
        "\ud800",
        {1: "int key"},
    ],
)
def test_fast_path_edges_match_rfc8785(value: Any) -> None:
    _assert_like_rfc8785(value)
