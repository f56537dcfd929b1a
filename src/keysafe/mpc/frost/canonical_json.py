"""The one reader of canonical JSON (RFC 8785) for FROST: the signing messages (S0–S3), the DKG
and reshare messages, and the signer's nonce files all go through `read_object`.

    >>> read_object(b'{"type":"frost.commitments","version":1}', max_size=4096)
    {'type': 'frost.commitments', 'version': 1}

What it refuses, each with its own `Problem` so that every protocol keeps its own words:

* more than `max_size` bytes (checked before any parsing);
* bytes that are not UTF-8 JSON, or carry anything after the value (`json` refuses other
  characters; trailing white space is caught by the canonical check);
* a key twice in one object (`json.loads` would silently keep the last one, so two readers of
  one message could see two different messages);
* a float, NaN or ±Infinity (no message of these protocols carries one);
* nesting past Python's recursion limit (no message of ours nests; every keysafe surface pins
  the limit to CPython's default, `wire.pin_recursion_limit`, so this raises, not crashes);
* a top-level value that is not an object;
* bytes other than `jcs.dumps` of what they parse to: one byte string per message, so nothing
  rides along in white space, key order or escapes, and a digest of a message (the DKG echo)
  has one preimage.

A non-`bytes` argument is a bug of the caller, not a peer's fault: `TypeError`.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from keysafe.crypto import jcs

__all__ = ["CanonicalJsonError", "Problem", "read_object"]


class Problem(Enum):
    """Why bytes are not one canonical JSON object."""

    TOO_LARGE = "too large"  # more than the caller's size limit
    INVALID = "invalid"  # not UTF-8 JSON, trailing data, or a float/NaN/Infinity
    DUPLICATE_KEY = "duplicate key"  # one object names a key twice (`CanonicalJsonError.key`)
    TOO_DEEP = "too deep"  # nested past the recursion limit
    NOT_OBJECT = "not an object"  # valid JSON, but the top level is not an object
    NOT_CANONICAL = "not canonical"  # a JSON object, but not in its RFC 8785 encoding


class CanonicalJsonError(ValueError):
    """Bytes refused by `read_object`.

    `key` is the repeated key (DUPLICATE_KEY only). `parsed` is the object the bytes parse to
    when the only fault is the encoding (NOT_CANONICAL), so a caller can still say who the
    message claims to be from.
    """

    def __init__(
        self, problem: Problem, *, key: str | None = None, parsed: dict[str, Any] | None = None
    ) -> None:
        super().__init__(problem.value if key is None else f"{problem.value} {key!r}")
        self.problem, self.key, self.parsed = problem, key, parsed


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise ValueError(f"{text}: floats are not part of these protocols")


def _is_canonical(obj: dict[str, Any], data: bytes) -> bool:
    try:
        return jcs.dumps(obj) == data
    except ValueError:  # an integer past 2^53 or a lone surrogate: RFC 8785 has no encoding
        return False


def read_object(data: bytes | bytearray, *, max_size: int) -> dict[str, Any]:
    """The JSON object `data` is the canonical encoding of.

    Args:
        data: the received (or stored) bytes.
        max_size: the most bytes a well-formed message of the caller's kind can have.

    Raises:
        CanonicalJsonError: `data` is not exactly one canonical JSON object; `problem` says why.
        TypeError: `data` is not bytes.
    """
    if not isinstance(data, bytes | bytearray):
        raise TypeError("a wire message is bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise CanonicalJsonError(Problem.TOO_LARGE)
    try:
        obj = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_float,
        )
    except _DuplicateKey as exc:
        raise CanonicalJsonError(Problem.DUPLICATE_KEY, key=exc.key) from None
    except RecursionError:
        raise CanonicalJsonError(Problem.TOO_DEEP) from None
    except ValueError:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
        raise CanonicalJsonError(Problem.INVALID) from None
    if not isinstance(obj, dict):
        raise CanonicalJsonError(Problem.NOT_OBJECT)
    try:
        canonical = _is_canonical(obj, data)
    except RecursionError:  # the pure-Python encoder spends more frames per level than json
        raise CanonicalJsonError(Problem.TOO_DEEP) from None
    if not canonical:
        raise CanonicalJsonError(Problem.NOT_CANONICAL, parsed=obj)
    return obj
