"""One error vocabulary: every code a surface can put in an error body is an `ErrorCode` with a
STATUS row, and what maps statuses, codes and foreign exceptions reads that one table.

The scan below reads every module of src/keysafe for the places an error body is written by
hand — a dict with a "code" key beside "message"/"next" or under "error", or a call to one of the
surfaces' error helpers — and fails on any code that is a string literal outside ErrorCode (a
literal from ErrorCode is also refused: the enum is how a code is named). Answers the running
surfaces really give are checked in tests/e2e/test_error_codes.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import httpx
import pytest

import keysafe
from keysafe.api.errors import openapi_errors
from keysafe.errors import (
    STATUS,
    ChainUnavailableError,
    ErrorCode,
    InternalError,
    KeysafeError,
    NotFoundError,
    code_for_status,
    codes_by_status,
    from_dict,
    map_exceptions,
)

PACKAGE_DIR = Path(keysafe.__file__).parent
CODES = {str(c) for c in ErrorCode}
# Functions that build an error body from a code given as their first or second argument.
ERROR_HELPERS = {"error_body", "_error", "_refused"}
CODE_SHAPE = re.compile(r"[A-Z][A-Z0-9_]+")


def _literal_codes(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {
                k.value: v
                for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and isinstance(k.value, str)
            }
            error = keys.get("error")
            if isinstance(error, ast.Dict):
                continue  # its inner dict is visited on its own
            code = keys.get("code")
            if isinstance(code, ast.Constant) and {"message", "next"} & set(keys):
                found.append((node.lineno, repr(code.value)))
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in ERROR_HELPERS:
                found += [
                    (node.lineno, repr(a.value))
                    for a in node.args[:2]
                    if isinstance(a, ast.Constant)
                    and isinstance(a.value, str)
                    and CODE_SHAPE.fullmatch(a.value)
                ]
    return sorted(found)


def test_no_surface_writes_an_error_code_as_a_bare_string() -> None:
    bad = [
        f"{path.relative_to(PACKAGE_DIR)}:{line}: {code}"
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        for line, code in _literal_codes(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not bad, "name error codes through ErrorCode:\n" + "\n".join(bad)


def test_the_scan_finds_a_bare_code() -> None:
    """The scan is not vacuous: each form it looks for is caught."""
    sample = ast.parse(
        'a = {"error": {"code": "HTTP_ERROR", "message": "m", "next": "n"}}\n'
        'b = error_body("OOPS", "m", "n")\n'
        "c = _error(404, 'NOPE')\n"
        'd = {"code": ErrorCode.NOT_FOUND, "message": "fine"}\n'
    )
    assert [code for _, code in _literal_codes(sample)] == ["'HTTP_ERROR'", "'OOPS'", "'NOPE'"]


def test_every_code_has_a_status_row_and_a_class() -> None:
    assert set(STATUS) == set(ErrorCode)
    for code in ErrorCode:
        status, exit_code = STATUS[code]
        assert 200 <= status < 600 and exit_code in (1, 3, 4)
        # Each code crosses a process boundary as itself (from_dict finds its class).
        assert from_dict({"code": str(code), "message": "m", "next": "n"}).code == code


def test_the_new_codes_exist_with_their_statuses() -> None:
    assert STATUS[ErrorCode.UPSTREAM_UNAVAILABLE][0] == 502
    assert STATUS[ErrorCode.METHOD_NOT_ALLOWED][0] == 405
    assert STATUS[ErrorCode.MISDIRECTED_REQUEST][0] == 421


@pytest.mark.parametrize("status", [400, 401, 404, 405, 409, 413, 418, 421, 429, 500, 502, 503])
def test_a_foreign_status_gets_a_code_of_that_status_or_a_safe_fallback(status: int) -> None:
    code = code_for_status(status)
    assert code in set(ErrorCode)
    if STATUS[code][0] != status:
        # No code of its own: 4xx reads as the caller's mistake, anything else as a bug.
        assert code == (ErrorCode.MALFORMED_REQUEST if status < 500 else ErrorCode.INTERNAL)


def test_codes_by_status_is_statuses_read_off_the_table() -> None:
    table = codes_by_status()
    assert sorted(c for codes in table.values() for c in codes) == sorted(ErrorCode)
    assert ErrorCode.POLICY_DENIED in table[403] and ErrorCode.BUDGET_EXCEEDED in table[403]


def test_the_openapi_error_answers_are_the_status_table() -> None:
    schema, statuses = openapi_errors()
    error = schema["properties"]["error"]  # type: ignore[index]  # a JSON Schema literal
    assert set(error["properties"]["code"]["enum"]) == CODES
    expected = {
        str(s): {str(c) for c in codes} for s, codes in codes_by_status().items() if s >= 400
    }
    assert {s: set(t.split(", ")) for s, t in statuses.items()} == expected


def test_map_exceptions_turns_a_foreign_error_into_the_mapped_one() -> None:
    def unreachable(exc: BaseException) -> KeysafeError:
        return ChainUnavailableError(f"no answer ({type(exc).__name__})", next_step="retry.")

    with (
        pytest.raises(ChainUnavailableError) as caught,
        map_exceptions({httpx.HTTPError: unreachable}),
    ):
        raise httpx.ConnectError("connect to http://user:secret@host failed")
    assert caught.value.what == "no answer (ConnectError)"
    # The foreign message may quote a URL with a password: it is not chained.
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_map_exceptions_lets_keysafe_errors_and_unmapped_ones_through() -> None:
    mapping = {httpx.HTTPError: lambda e: InternalError("x", next_step="y")}
    with pytest.raises(NotFoundError), map_exceptions(mapping):
        raise NotFoundError("no such wallet", next_step="list them.")
    with pytest.raises(ZeroDivisionError), map_exceptions(mapping):
        _ = 1 / 0
