"""RFC 8785 canonical JSON against cyberphone/json-canonicalization testdata."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import pytest

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
