"""RFC 8785 canonical JSON (via the `rfc8785` library): the bytes every hash and AAD is built on.

Every signature hashes two audit entries and a request fingerprint, and `rfc8785` is pure Python
(about 0.2 ms per entry). For the values keysafe writes almost always (strings, safe integers,
booleans, null, lists, objects with ASCII keys) the standard library's C encoder with sorted keys
and no spaces produces the same bytes: its string escapes are RFC 8785's (`\\b \\f \\n \\r \\t`,
`\\"`, `\\\\`, other controls as lowercase `\\u00xx`, everything else raw UTF-8), and ASCII keys
sort the same by code point as by UTF-16 code unit. Anything else (a float, an integer beyond 2^53,
a non-ASCII key, a subclass of a JSON type, a lone surrogate) goes to `rfc8785`, which decides.
tests/unit/crypto/test_jcs.py holds the two to the same bytes on generated values.
"""

from __future__ import annotations

import json
from typing import Any, Final

import rfc8785

_SAFE_INT: Final = 2**53 - 1  # RFC 8785 numbers are IEEE 754 doubles
_encode: Final = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    sort_keys=True,
    separators=(",", ":"),
    check_circular=False,
).encode


def dumps(value: Any) -> bytes:
    """Canonical UTF-8 bytes. Floats are refused by callers' types: money is never a float.

    Raises:
        rfc8785.CanonicalizationError: a value RFC 8785 cannot represent.
    """
    if _plain(value):
        try:
            return _encode(value).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: rfc8785 raises its own error for it
    return rfc8785.dumps(value)


def _plain(value: Any) -> bool:
    """Whether the standard encoder's bytes are RFC 8785's for `value` (exact types only)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if kind is dict:
        return all(type(k) is str and k.isascii() and _plain(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_plain(v) for v in value)
    return False
