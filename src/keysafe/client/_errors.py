"""What keysafe.client raises: one class per stable error code, mapped once (`ERRORS`).

    ApiError                      (base: the vault's answer, or no answer at all)
    ├── MalformedRequestError         MALFORMED_REQUEST   ─┐
    ├── NotFoundError                 NOT_FOUND            │ each also subclasses the
    ├── …                             …                    │ keysafe.errors class of the
    ├── PolicyDeniedError             POLICY_DENIED        │ same name, so `except
    │   └── BudgetExceededError       BUDGET_EXCEEDED      │ keysafe.errors.PolicyDeniedError`
    ├── ApprovalRequiredError         APPROVAL_REQUIRED    │ works in-process and remotely
    ├── VaultUnreachableError         VAULT_UNREACHABLE   ─┘ (also: no answer came)
    └── (ApiError itself)             a code this client does not know (kept in `server_code`)

The message, next step and facts are the server's own words (keysafe.errors); `status` is the
HTTP status (0 when no answer came). Nothing here holds the agent's token, so no str() or repr()
of an error can show it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from keysafe import errors
from keysafe.agent_models import PendingApproval
from keysafe.errors import ErrorCode, KeysafeError


class ApiError(KeysafeError):
    """An error from the agent API: its stable `code`, `what` happened, `next_step`, `facts`
    (ids, names, amounts; never a secret) and the HTTP `status`."""

    def __init__(
        self, what: str, *, next_step: str, status: int, server_code: str = "", **facts: str | int
    ) -> None:
        super().__init__(what, next_step=next_step, **facts)
        self.status = status
        self.server_code = server_code or str(self.code)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(code={self.server_code!r}, status={self.status}, what={self.what!r})"

    def to_dict(self) -> dict[str, object]:
        # A code this client does not know is passed on as the server gave it.
        return super().to_dict() | {"code": self.server_code}


class MalformedRequestError(ApiError, errors.MalformedRequestError):
    code = ErrorCode.MALFORMED_REQUEST


class NotFoundError(ApiError, errors.NotFoundError):
    code = ErrorCode.NOT_FOUND


class AlreadyExistsError(ApiError, errors.AlreadyExistsError):
    code = ErrorCode.ALREADY_EXISTS


class NotInitializedError(ApiError, errors.NotInitializedError):
    code = ErrorCode.NOT_INITIALIZED


class UnsafePermissionsError(ApiError, errors.UnsafePermissionsError):
    code = ErrorCode.UNSAFE_PERMISSIONS


class IdempotencyConflictError(ApiError, errors.IdempotencyConflictError):
    code = ErrorCode.IDEMPOTENCY_CONFLICT


class RequestInProgressError(ApiError, errors.RequestInProgressError):
    code = ErrorCode.REQUEST_IN_PROGRESS


class PayloadTooLargeError(ApiError, errors.PayloadTooLargeError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class MethodNotAllowedError(ApiError, errors.MethodNotAllowedError):
    code = ErrorCode.METHOD_NOT_ALLOWED


class MisdirectedRequestError(ApiError, errors.MisdirectedRequestError):
    code = ErrorCode.MISDIRECTED_REQUEST


class RateLimitedError(ApiError, errors.RateLimitedError):
    code = ErrorCode.RATE_LIMITED


class NotAuthenticatedError(ApiError, errors.NotAuthenticatedError):
    code = ErrorCode.NOT_AUTHENTICATED


class ReplayError(ApiError, errors.ReplayError):
    code = ErrorCode.REPLAY


class PolicyDeniedError(ApiError, errors.PolicyDeniedError):
    code = ErrorCode.POLICY_DENIED


class BudgetExceededError(PolicyDeniedError, errors.BudgetExceededError):
    code = ErrorCode.BUDGET_EXCEEDED


class ApprovalRequiredError(ApiError, errors.ApprovalRequiredError):
    """The owner must approve first (HTTP 202). `approval_id` is what to wait on:
    `client.wait_for_approval(exc.approval_id)`, or pass `wait=` to the call itself."""

    code = ErrorCode.APPROVAL_REQUIRED

    def __init__(
        self, pending: PendingApproval, *, what: str = "", next_step: str = "", status: int = 202
    ) -> None:
        super().__init__(
            what or f"The owner must approve this request first: {pending.summary}",
            next_step=next_step
            or f"wait for the owner's decision on approval {pending.approval_id} "
            "(client.wait_for_approval), then use its result; do not resend the request.",
            status=status,
            approval_id=pending.approval_id,
            expires_at=pending.expires_at or "",
        )
        self.pending = pending
        self.approval_id = pending.approval_id
        self.expires_at = pending.expires_at
        self.summary = pending.summary


class WrongPassphraseError(ApiError, errors.WrongPassphraseError):
    code = ErrorCode.WRONG_PASSPHRASE


class UnlockThrottledError(ApiError, errors.UnlockThrottledError):
    code = ErrorCode.UNLOCK_THROTTLED


class WrongRecoveryPhraseError(ApiError, errors.WrongRecoveryPhraseError):
    code = ErrorCode.WRONG_RECOVERY_PHRASE


class VaultLockedError(ApiError, errors.VaultLockedError):
    code = ErrorCode.VAULT_LOCKED


class IntegrityError(ApiError, errors.IntegrityError):
    code = ErrorCode.INTEGRITY_ERROR


class StoreError(ApiError, errors.StoreError):
    code = ErrorCode.STORE_ERROR


class ChainUnavailableError(ApiError, errors.ChainUnavailableError):
    code = ErrorCode.CHAIN_UNAVAILABLE


class KmsUnavailableError(ApiError, errors.KmsUnavailableError):
    code = ErrorCode.KMS_UNAVAILABLE


class UpstreamUnavailableError(ApiError, errors.UpstreamUnavailableError):
    code = ErrorCode.UPSTREAM_UNAVAILABLE


class MailboxFullError(ApiError, errors.MailboxFullError):
    code = ErrorCode.MAILBOX_FULL


class RelayUnavailableError(ApiError, errors.RelayUnavailableError):
    code = ErrorCode.RELAY_UNAVAILABLE


class AuditWriteError(ApiError, errors.AuditWriteError):
    code = ErrorCode.AUDIT_FAILED


class VaultUnreachableError(ApiError, errors.VaultUnreachableError):
    code = ErrorCode.VAULT_UNREACHABLE


class InternalError(ApiError, errors.InternalError):
    code = ErrorCode.INTERNAL


# The one map from a stable code to its class; a test checks it covers every ErrorCode.
# APPROVAL_REQUIRED is absent: it is never an error body (a 202 answer carries the approval).
ERRORS: Final[Mapping[str, type[ApiError]]] = {
    cls.code: cls
    for cls in (
        MalformedRequestError,
        NotFoundError,
        AlreadyExistsError,
        NotInitializedError,
        UnsafePermissionsError,
        IdempotencyConflictError,
        RequestInProgressError,
        PayloadTooLargeError,
        MethodNotAllowedError,
        MisdirectedRequestError,
        RateLimitedError,
        NotAuthenticatedError,
        ReplayError,
        PolicyDeniedError,
        BudgetExceededError,
        WrongPassphraseError,
        UnlockThrottledError,
        WrongRecoveryPhraseError,
        VaultLockedError,
        IntegrityError,
        StoreError,
        ChainUnavailableError,
        KmsUnavailableError,
        UpstreamUnavailableError,
        MailboxFullError,
        RelayUnavailableError,
        AuditWriteError,
        VaultUnreachableError,
        InternalError,
    )
}


def error_from_answer(body: Any, status: int) -> ApiError:
    """The exception for an error answer `{"error": {code, message, next, …facts}}`.

    A body that is not that shape (a proxy in between, a crash) still gives an ApiError, with
    the HTTP status in its message. Only string and integer facts are kept.
    """
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    code = str(err.get("code") or ("INTERNAL" if status >= 500 else ""))
    facts = {
        str(k): v
        for k, v in err.items()
        if k not in ("code", "message", "next", "status", "server_code", "what", "next_step")
        and isinstance(v, str | int)
        and not isinstance(v, bool)
    }
    if code == ErrorCode.APPROVAL_REQUIRED and isinstance(err.get("approval_id"), str):
        # The credential proxy's form of a pending approval (an error body, not a 202).
        pending = PendingApproval(
            status="pending_approval", approval_id=err["approval_id"], summary=""
        )
        return ApprovalRequiredError(
            pending,
            what=str(err.get("message") or ""),
            next_step=str(err.get("next") or ""),
            status=status,
        )
    cls = ERRORS.get(code, ApiError)
    return cls(
        str(err.get("message") or f"The vault answered HTTP {status}."),
        next_step=str(err.get("next") or "check the vault server's log."),
        status=status,
        server_code=code or f"HTTP_{status}",
        **facts,
    )


def unreachable(url: str, exc: Exception) -> VaultUnreachableError:
    """No answer came: the server is down, or KEYSAFE_URL points elsewhere."""
    return VaultUnreachableError(
        f"The keysafe vault server at {url} is not reachable ({type(exc).__name__}).",
        next_step="start it with `keysafe serve --unlock` (or set KEYSAFE_URL to where it runs).",
        status=0,
    )
