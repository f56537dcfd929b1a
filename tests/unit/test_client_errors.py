"""keysafe.client's one error map: every stable code has its class, each class is also the
keysafe.errors class of the same name, and an error body becomes exactly that class with the
server's words and facts (and nothing that is not a string or an integer)."""

from __future__ import annotations

import pytest

import keysafe.client
from keysafe import errors
from keysafe.client import (
    ERRORS,
    ApiError,
    ApprovalRequiredError,
    BudgetExceededError,
    PolicyDeniedError,
    error_from_answer,
)
from keysafe.errors import ErrorCode


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_maps_to_a_class_of_that_code_and_of_keysafe_errors(
    code: ErrorCode,
) -> None:
    cls = ApprovalRequiredError if code is ErrorCode.APPROVAL_REQUIRED else ERRORS[code]
    assert cls.code == code
    assert issubclass(cls, ApiError)
    same_name = getattr(errors, cls.__name__)
    assert issubclass(cls, same_name) and same_name.code == code
    assert getattr(keysafe.client, cls.__name__) is cls  # exported under its name


def test_error_body_becomes_its_class_with_words_facts_and_status() -> None:
    body = {
        "error": {
            "code": "BUDGET_EXCEEDED",
            "message": "Over the 24h budget.",
            "next": "wait.",
            "rule": "tiny",
            "wait_seconds": 3,
            "flag": True,
            "nested": {"x": 1},
        }
    }
    exc = error_from_answer(body, 403)
    assert type(exc) is BudgetExceededError
    assert isinstance(exc, PolicyDeniedError) and isinstance(exc, errors.PolicyDeniedError)
    assert (exc.code, exc.status, exc.exit_code) == ("BUDGET_EXCEEDED", 403, 4)
    assert str(exc) == "Over the 24h budget. Next: wait."
    assert exc.facts == {"rule": "tiny", "wait_seconds": 3}
    assert exc.to_dict()["code"] == "BUDGET_EXCEEDED"


def test_unknown_code_or_shape_is_a_plain_api_error_keeping_the_servers_code() -> None:
    unknown = error_from_answer({"error": {"code": "FROM_A_NEWER_SERVER", "message": "No."}}, 418)
    assert type(unknown) is ApiError
    assert (unknown.server_code, unknown.status) == ("FROM_A_NEWER_SERVER", 418)
    assert unknown.to_dict()["code"] == "FROM_A_NEWER_SERVER"
    crashed = error_from_answer(None, 502)
    assert type(crashed) is keysafe.client.InternalError
    assert "HTTP 502" in str(crashed)


def test_proxy_form_of_a_pending_approval_is_approval_required() -> None:
    body = {
        "error": {
            "code": "APPROVAL_REQUIRED",
            "message": "Approve first.",
            "next": "ask the owner.",
            "approval_id": "ap_1",
        }
    }
    exc = error_from_answer(body, 403)
    assert isinstance(exc, ApprovalRequiredError)
    assert (exc.approval_id, exc.status, exc.exit_code) == ("ap_1", 403, 3)
