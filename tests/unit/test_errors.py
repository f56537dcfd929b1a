"""The error tree: every code is mapped once, every class has a known code, messages say what
next."""

from __future__ import annotations

import pytest

from keysafe import errors
from keysafe.errors import STATUS, ErrorCode, KeysafeError


def _all_error_classes() -> list[type[KeysafeError]]:
    found: list[type[KeysafeError]] = []
    todo: list[type[KeysafeError]] = [KeysafeError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    # Only the product's own tree: other test modules may subclass KeysafeError.
    return sorted(
        (c for c in found if c.__module__ == errors.__name__), key=lambda c: c.__qualname__
    )


ERROR_CLASSES = _all_error_classes()


def test_error_tree_is_discovered() -> None:
    assert len(ERROR_CLASSES) >= len(ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_status_every_error_code_has_http_and_exit_code(code: ErrorCode) -> None:
    http, exit_code = STATUS[code]
    assert 200 < http <= 599  # not a plain 200 OK (APPROVAL_REQUIRED is 202: pending)
    assert exit_code > 0 and exit_code != 2  # 0 is success, 2 is click's usage error


def test_status_has_no_entry_without_error_code() -> None:
    assert set(STATUS) == set(ErrorCode)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_error_class_code_is_an_error_code(cls: type[KeysafeError]) -> None:
    assert isinstance(cls.code, ErrorCode)
    assert cls.code in STATUS


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_error_code_is_raised_by_some_class(code: ErrorCode) -> None:
    assert any(cls.code is code for cls in ERROR_CLASSES)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_error_str_states_what_happened_and_next_step(cls: type[KeysafeError]) -> None:
    err = cls("The thing failed.", next_step="run `keysafe fix` and retry.", name="github")
    text = str(err)
    assert text.startswith("The thing failed.")
    assert "Next: run `keysafe fix` and retry." in text


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_error_to_dict_has_code_message_next_and_facts(cls: type[KeysafeError]) -> None:
    err = cls("The thing failed.", next_step="retry.", name="github", count=3)
    d = err.to_dict()
    assert d["code"] == str(cls.code)
    assert d["message"] == "The thing failed."
    assert d["next"] == "retry."
    assert d["name"] == "github"
    assert d["count"] == 3


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_error_http_status_and_exit_code_come_from_status(cls: type[KeysafeError]) -> None:
    err = cls("x", next_step="y")
    assert (err.http_status, err.exit_code) == STATUS[cls.code]


@pytest.mark.parametrize("reserved", ["code", "message", "next"])
def test_error_to_dict_facts_cannot_override_reserved_keys(reserved: str) -> None:
    facts: dict[str, str | int] = {reserved: "FORGED"}
    err = errors.NotFoundError("No credential named 'x'.", next_step="list them.", **facts)
    d = err.to_dict()
    assert (d["code"], d["message"], d["next"]) == (
        "NOT_FOUND",
        "No credential named 'x'.",
        "list them.",
    )


@pytest.mark.parametrize(
    "error",
    [
        errors.WrongPassphraseError("That passphrase is wrong.", next_step="try again."),
        errors.MalformedRequestError("Bad share.", next_step="check the file.", culprit=3),
        errors.IntegrityError("Altered.", next_step="restore.", record="ab12"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_error_crosses_a_process_boundary_as_itself(error: errors.KeysafeError) -> None:
    back = errors.from_dict(error.to_dict())
    assert type(back) is type(error)
    assert (back.what, back.next_step, back.facts) == (error.what, error.next_step, error.facts)


def test_an_unknown_code_comes_back_internal_and_facts_never_replace_the_message() -> None:
    back = errors.from_dict({"code": "NO_SUCH_CODE", "message": "m", "next": "n", "x": [1]})
    assert isinstance(back, errors.InternalError) and back.what == "m" and back.facts == {}
