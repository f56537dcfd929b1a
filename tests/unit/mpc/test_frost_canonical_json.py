"""The one strict canonical-JSON reader (keysafe.mpc.frost.canonical_json) and the three
protocols that read through it: signing (session), DKG and reshare. Each property is checked on
the reader, then on one message of each protocol, which must refuse it with a FrostError."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable
from typing import Final

import pytest

from keysafe import wire
from keysafe.crypto import jcs
from keysafe.mpc.frost import dkg, reshare
from keysafe.mpc.frost.canonical_json import CanonicalJsonError, Problem, read_object
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import ED25519
from keysafe.mpc.frost.keys import AGENT, USER
from keysafe.mpc.frost.session import SignRequest

SID: Final = bytes(range(32))
GOOD: Final = b'{"a":[1,"x"],"b":{"c":null}}'

# -- the reader ------------------------------------------------------------------------------


def test_canonical_json_reads_a_canonical_object() -> None:
    assert read_object(GOOD, max_size=100) == {"a": [1, "x"], "b": {"c": None}}
    assert read_object(bytearray(GOOD), max_size=100) == read_object(GOOD, max_size=100)


def refusal(data: bytes, max_size: int = 4096) -> CanonicalJsonError:
    with pytest.raises(CanonicalJsonError) as info:
        read_object(data, max_size=max_size)
    return info.value


def test_canonical_json_refuses_a_duplicate_key_naming_it() -> None:
    err = refusal(b'{"a":1,"a":2}')
    assert err.problem is Problem.DUPLICATE_KEY and err.key == "a"
    nested = refusal(b'{"a":{"b":1,"b":1}}')  # the same value twice is still two keys
    assert nested.problem is Problem.DUPLICATE_KEY and nested.key == "b"


@pytest.mark.parametrize(
    "data",
    [
        b'{"b":1,"a":2}',  # keys out of order
        b'{"a": 1}',  # white space
        b'{"a":"\\u0078"}',  # an escape where the character itself is canonical
        b'{"a":1e0}',  # an exponent (refused as a float before the encoding is looked at)
        b'\xef\xbb\xbf{"a":1}',  # a byte order mark
    ],
    ids=["key order", "white space", "needless escape", "exponent", "BOM"],
)
def test_canonical_json_refuses_a_non_canonical_encoding(data: bytes) -> None:
    assert refusal(data).problem in (Problem.NOT_CANONICAL, Problem.INVALID)


def test_canonical_json_keeps_the_object_of_a_non_canonical_encoding() -> None:
    err = refusal(b'{"sender": 2}')
    assert err.problem is Problem.NOT_CANONICAL and err.parsed == {"sender": 2}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (GOOD + b" ", Problem.NOT_CANONICAL),
        (GOOD + b"\n", Problem.NOT_CANONICAL),
        (GOOD + b"{}", Problem.INVALID),
        (GOOD + b"\x00", Problem.INVALID),
    ],
    ids=["space", "newline", "second object", "NUL"],
)
def test_canonical_json_refuses_trailing_data(data: bytes, problem: Problem) -> None:
    assert refusal(data).problem is problem


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"a":1.5}', Problem.INVALID),
        (b'{"a":NaN}', Problem.INVALID),
        (b'{"a":-Infinity}', Problem.INVALID),
        (b'{"a":"\xff"}', Problem.INVALID),
        (b"[1]", Problem.NOT_OBJECT),
        (b'"a"', Problem.NOT_OBJECT),
        (b'{"a":18014398509481985}', Problem.NOT_CANONICAL),  # past 2^53: no RFC 8785 form
    ],
    ids=["float", "NaN", "Infinity", "not UTF-8", "array", "string", "big integer"],
)
def test_canonical_json_refuses_what_no_message_carries(data: bytes, problem: Problem) -> None:
    assert refusal(data, max_size=len(data)).problem is problem


def test_canonical_json_refuses_nesting_past_the_recursion_limit() -> None:
    # As every surface runs it (wire.pin_recursion_limit): py_ecc, imported by other tests in
    # this process, raises the limit to 100,000, where such a parse would overflow the C stack.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(wire.RECURSION_LIMIT)
    try:
        deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
        assert refusal(deep, max_size=len(deep)).problem is Problem.TOO_DEEP
    finally:
        sys.setrecursionlimit(limit)


def test_canonical_json_refuses_more_than_the_size_limit_before_parsing() -> None:
    assert refusal(GOOD, max_size=len(GOOD) - 1).problem is Problem.TOO_LARGE
    assert refusal(b"x" * 10, max_size=9).problem is Problem.TOO_LARGE


def test_canonical_json_takes_only_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        read_object(GOOD.decode(), max_size=100)  # type: ignore[arg-type]  # the bug tested


# -- every protocol reads through it ---------------------------------------------------------

Parse = Callable[[bytes], object]


def _sign_request() -> tuple[bytes, Parse]:
    message = SignRequest(session_id=SID, participants=(AGENT, USER), message=b"pay bob")
    return message.to_bytes(), SignRequest.from_bytes


def _dkg_round1() -> tuple[bytes, Parse]:
    _, package = dkg.part1(ED25519, USER, SID, secrets.token_bytes)

    def parse(data: bytes) -> object:
        return dkg.Round1Package.from_bytes(data, suite=ED25519, session_id=SID, sender=USER)

    return package.to_bytes(), parse


def _reshare_share() -> tuple[bytes, Parse]:
    share = reshare.ReshareShare(ED25519, SID, USER, AGENT, 12345)

    def parse(data: bytes) -> object:
        return reshare.ReshareShare.from_bytes(
            data, suite=ED25519, session_id=SID, sender=USER, receiver=AGENT
        )

    return share.to_bytes(), parse


PROTOCOLS: Final = {"session": _sign_request, "dkg": _dkg_round1, "reshare": _reshare_share}


def _duplicate_version(data: bytes) -> bytes:
    return data[:-1] + b',"version":1}'


def _spaced(data: bytes) -> bytes:
    return data.replace(b",", b", ", 1)


def _trailing(data: bytes) -> bytes:
    return data + b" "


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_duplicate_version, "twice|not valid JSON"),
        (_spaced, "not canonical"),
        (_trailing, "not canonical"),
    ],
    ids=["duplicate key", "non-canonical", "trailing data"],
)
def test_frost_messages_of_every_protocol_refuse_what_the_reader_refuses(
    protocol: str, change: Callable[[bytes], bytes], words: str
) -> None:
    data, parse = PROTOCOLS[protocol]()
    parse(data)  # the unchanged message reads
    assert jcs.dumps(read_object(data, max_size=len(data))) == data
    with pytest.raises(FrostError, match=words):
        parse(change(data))
