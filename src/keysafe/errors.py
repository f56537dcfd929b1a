"""One exception tree for keysafe, each class with a stable machine code.

    KeysafeError
    ├── UserError                 (the caller can fix it: bad input, wrong state)
    │   ├── MalformedRequestError     MALFORMED_REQUEST
    │   ├── NotFoundError             NOT_FOUND
    │   ├── AlreadyExistsError        ALREADY_EXISTS
    │   ├── NotInitializedError       NOT_INITIALIZED
    │   └── UnsafePermissionsError    UNSAFE_PERMISSIONS
    │   ├── IdempotencyConflictError  IDEMPOTENCY_CONFLICT
    │   ├── RequestInProgressError    REQUEST_IN_PROGRESS (same key, first request still running)
    │   ├── PayloadTooLargeError      PAYLOAD_TOO_LARGE
    │   ├── MethodNotAllowedError     METHOD_NOT_ALLOWED  (a route asked with the wrong method)
    │   └── MisdirectedRequestError   MISDIRECTED_REQUEST (wrong Host name, or sent by a web page)
    ├── RateLimitedError              RATE_LIMITED
    ├── AuthError
    │   ├── NotAuthenticatedError     NOT_AUTHENTICATED  (unknown, revoked or badly signed agent)
    │   ├── ReplayError               REPLAY
    │   ├── WrongPassphraseError      WRONG_PASSPHRASE
    │   ├── UnlockThrottledError      UNLOCK_THROTTLED
    │   └── WrongRecoveryPhraseError  WRONG_RECOVERY_PHRASE
    ├── PolicyDeniedError             POLICY_DENIED     (the decision was deny)
    │   └── BudgetExceededError       BUDGET_EXCEEDED
    ├── ApprovalRequiredError         APPROVAL_REQUIRED (the decision was ask)
    ├── VaultLockedError              VAULT_LOCKED
    ├── IntegrityError                INTEGRITY_ERROR   (ciphertext, backup or audit chain tampered)
    ├── StoreError                    STORE_ERROR       (database unreadable, foreign or newer)
    ├── ChainUnavailableError         CHAIN_UNAVAILABLE (a chain's RPC is unreachable or answers
                                                         wrong)
    ├── KmsUnavailableError           KMS_UNAVAILABLE   (the vault's KMS is unreachable or refuses)
    ├── UpstreamUnavailableError      UPSTREAM_UNAVAILABLE (a proxied API call failed on the way)
    ├── MailboxFullError              MAILBOX_FULL      (the relay holds all it may for a recipient)
    ├── RelayUnavailableError         RELAY_UNAVAILABLE (the relay's mailbox store is down)
    ├── AuditWriteError               AUDIT_FAILED      (fail closed: the action did not happen)
    ├── VaultUnreachableError         VAULT_UNREACHABLE (a surface cannot reach `keysafe serve`)
    └── InternalError                 INTERNAL          (a bug; reported with an incident id)

Every error says what happened and what to do next (`next_step`). `facts` carry ids, names and
amounts, never a secret value. `STATUS` maps each code to its HTTP status and CLI exit code and is
the only place those numbers live; api/, mcp/, cli/, the local proxy and the sidecar read it.
Every code any surface puts in an error body is an `ErrorCode` (tests/unit/test_error_codes.py).

An exception from elsewhere (a database driver, an HTTP client) becomes a KeysafeError at the
boundary that knows what it means, through `map_exceptions` (as httpx maps httpcore's); whatever
is left is a bug, and a bug is INTERNAL, never a user error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from typing import ClassVar, Final


class ErrorCode(StrEnum):
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    NOT_INITIALIZED = "NOT_INITIALIZED"
    UNSAFE_PERMISSIONS = "UNSAFE_PERMISSIONS"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    REQUEST_IN_PROGRESS = "REQUEST_IN_PROGRESS"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    MISDIRECTED_REQUEST = "MISDIRECTED_REQUEST"
    RATE_LIMITED = "RATE_LIMITED"
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    REPLAY = "REPLAY"
    POLICY_DENIED = "POLICY_DENIED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    WRONG_PASSPHRASE = "WRONG_PASSPHRASE"  # noqa: S105 - a code name, not a secret
    UNLOCK_THROTTLED = "UNLOCK_THROTTLED"
    WRONG_RECOVERY_PHRASE = "WRONG_RECOVERY_PHRASE"
    VAULT_LOCKED = "VAULT_LOCKED"
    INTEGRITY_ERROR = "INTEGRITY_ERROR"
    STORE_ERROR = "STORE_ERROR"
    CHAIN_UNAVAILABLE = "CHAIN_UNAVAILABLE"
    KMS_UNAVAILABLE = "KMS_UNAVAILABLE"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    MAILBOX_FULL = "MAILBOX_FULL"
    RELAY_UNAVAILABLE = "RELAY_UNAVAILABLE"
    AUDIT_FAILED = "AUDIT_FAILED"
    VAULT_UNREACHABLE = "VAULT_UNREACHABLE"
    INTERNAL = "INTERNAL"


# (HTTP status, CLI exit code). CLI: 0 ok, 1 user-facing error, 2 usage (click's own),
# 3 the request needs approval, 4 the request is denied.
STATUS: Final[dict[ErrorCode, tuple[int, int]]] = {
    ErrorCode.MALFORMED_REQUEST: (400, 1),
    ErrorCode.NOT_FOUND: (404, 1),
    ErrorCode.ALREADY_EXISTS: (409, 1),
    ErrorCode.NOT_INITIALIZED: (409, 1),
    ErrorCode.UNSAFE_PERMISSIONS: (500, 1),
    ErrorCode.IDEMPOTENCY_CONFLICT: (409, 1),
    ErrorCode.REQUEST_IN_PROGRESS: (409, 1),
    ErrorCode.PAYLOAD_TOO_LARGE: (413, 1),
    ErrorCode.METHOD_NOT_ALLOWED: (405, 1),
    ErrorCode.MISDIRECTED_REQUEST: (421, 1),
    ErrorCode.RATE_LIMITED: (429, 1),
    ErrorCode.NOT_AUTHENTICATED: (401, 1),
    ErrorCode.REPLAY: (401, 1),
    ErrorCode.POLICY_DENIED: (403, 4),
    ErrorCode.BUDGET_EXCEEDED: (403, 4),
    ErrorCode.APPROVAL_REQUIRED: (202, 3),
    ErrorCode.WRONG_PASSPHRASE: (401, 1),
    ErrorCode.UNLOCK_THROTTLED: (429, 1),
    ErrorCode.WRONG_RECOVERY_PHRASE: (401, 1),
    ErrorCode.VAULT_LOCKED: (423, 1),
    ErrorCode.INTEGRITY_ERROR: (500, 1),
    ErrorCode.STORE_ERROR: (500, 1),
    ErrorCode.CHAIN_UNAVAILABLE: (503, 1),
    ErrorCode.KMS_UNAVAILABLE: (503, 1),
    ErrorCode.UPSTREAM_UNAVAILABLE: (502, 1),
    ErrorCode.MAILBOX_FULL: (507, 1),
    ErrorCode.RELAY_UNAVAILABLE: (503, 1),
    ErrorCode.AUDIT_FAILED: (503, 1),
    ErrorCode.VAULT_UNREACHABLE: (502, 1),
    ErrorCode.INTERNAL: (500, 1),
}


class KeysafeError(Exception):
    """Base of every error keysafe reports to a person or an agent."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, what: str, *, next_step: str, **facts: str | int) -> None:
        super().__init__(what)
        self.what = what
        self.next_step = next_step
        self.facts = facts

    def __str__(self) -> str:
        return f"{self.what} Next: {self.next_step}" if self.next_step else self.what

    @property
    def http_status(self) -> int:
        return STATUS[self.code][0]

    @property
    def exit_code(self) -> int:
        return STATUS[self.code][1]

    def to_dict(self) -> dict[str, object]:
        # Facts first: a fact can never overwrite the stable code, message or next step.
        return {**self.facts, "code": str(self.code), "message": self.what, "next": self.next_step}


class UserError(KeysafeError):
    code = ErrorCode.MALFORMED_REQUEST


class MalformedRequestError(UserError):
    code = ErrorCode.MALFORMED_REQUEST


class NotFoundError(UserError):
    code = ErrorCode.NOT_FOUND


class AlreadyExistsError(UserError):
    code = ErrorCode.ALREADY_EXISTS


class NotInitializedError(UserError):
    code = ErrorCode.NOT_INITIALIZED


class UnsafePermissionsError(UserError):
    code = ErrorCode.UNSAFE_PERMISSIONS


class IdempotencyConflictError(UserError):
    code = ErrorCode.IDEMPOTENCY_CONFLICT


class RequestInProgressError(UserError):
    code = ErrorCode.REQUEST_IN_PROGRESS


class PayloadTooLargeError(UserError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class MethodNotAllowedError(UserError):
    code = ErrorCode.METHOD_NOT_ALLOWED


class MisdirectedRequestError(UserError):
    """The request was not meant for this server: another Host name (DNS rebinding), or a web
    page in a browser driving a loopback service."""

    code = ErrorCode.MISDIRECTED_REQUEST


class RateLimitedError(KeysafeError):
    code = ErrorCode.RATE_LIMITED


class AuthError(KeysafeError):
    code = ErrorCode.NOT_AUTHENTICATED


class NotAuthenticatedError(AuthError):
    code = ErrorCode.NOT_AUTHENTICATED


class ReplayError(AuthError):
    code = ErrorCode.REPLAY


class PolicyDeniedError(KeysafeError):
    code = ErrorCode.POLICY_DENIED


class BudgetExceededError(PolicyDeniedError):
    code = ErrorCode.BUDGET_EXCEEDED


class ApprovalRequiredError(KeysafeError):
    code = ErrorCode.APPROVAL_REQUIRED


class WrongPassphraseError(AuthError):
    code = ErrorCode.WRONG_PASSPHRASE


class UnlockThrottledError(AuthError):
    code = ErrorCode.UNLOCK_THROTTLED


class WrongRecoveryPhraseError(AuthError):
    code = ErrorCode.WRONG_RECOVERY_PHRASE


class VaultLockedError(KeysafeError):
    code = ErrorCode.VAULT_LOCKED


class IntegrityError(KeysafeError):
    code = ErrorCode.INTEGRITY_ERROR


class StoreError(KeysafeError):
    code = ErrorCode.STORE_ERROR


class ChainUnavailableError(KeysafeError):
    code = ErrorCode.CHAIN_UNAVAILABLE


class KmsUnavailableError(KeysafeError):
    """The key provider that wraps the vault's key (vault/kms.py) cannot be reached, or refuses
    this caller; the `reason` fact says which ("unreachable" or "refused")."""

    code = ErrorCode.KMS_UNAVAILABLE


class UpstreamUnavailableError(KeysafeError):
    """A call the vault makes for an agent (`keysafe run`, the local proxy) could not reach the
    API it is meant for, or the answer broke off on the way."""

    code = ErrorCode.UPSTREAM_UNAVAILABLE


class MailboxFullError(KeysafeError):
    """The relay (`keysafe relay`) holds as many messages for the recipient as it may; the
    sender tries again after `retry_after`."""

    code = ErrorCode.MAILBOX_FULL


class RelayUnavailableError(KeysafeError):
    """The relay's mailbox store (Redis) did not answer; nothing was stored."""

    code = ErrorCode.RELAY_UNAVAILABLE


class AuditWriteError(KeysafeError):
    code = ErrorCode.AUDIT_FAILED


class VaultUnreachableError(KeysafeError):
    code = ErrorCode.VAULT_UNREACHABLE


class InternalError(KeysafeError):
    code = ErrorCode.INTERNAL


def _classes() -> dict[str, type[KeysafeError]]:
    found: dict[str, type[KeysafeError]] = {}
    todo: list[type[KeysafeError]] = [KeysafeError]
    while todo:
        cls = todo.pop(0)
        found[str(cls.code)] = cls  # a subclass defined later (MalformedRequestError) wins
        # Only this module's: elsewhere a subclass may take other constructor arguments.
        todo += [c for c in cls.__subclasses__() if c.__module__ == __name__]
    return found


def from_dict(data: Mapping[str, object]) -> KeysafeError:
    """The error a `KeysafeError.to_dict()` describes, for one that crossed a process boundary
    (an unknown code becomes INTERNAL; the facts come back as they were)."""
    cls = _classes().get(str(data.get("code")), InternalError)
    facts = {
        k: v
        for k, v in data.items()
        if k not in ("code", "message", "next") and isinstance(v, (str, int))
    }
    return cls(str(data.get("message", "")), next_step=str(data.get("next", "")), **facts)


# For an HTTP status that comes from outside keysafe's own errors (Starlette's 404 and 405, a
# status passed through from the vault): the code a body with that status carries.
_CODE_FOR_STATUS: Final[dict[int, ErrorCode]] = {
    400: ErrorCode.MALFORMED_REQUEST,
    401: ErrorCode.NOT_AUTHENTICATED,
    403: ErrorCode.POLICY_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.ALREADY_EXISTS,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    421: ErrorCode.MISDIRECTED_REQUEST,
    423: ErrorCode.VAULT_LOCKED,
    429: ErrorCode.RATE_LIMITED,
    502: ErrorCode.VAULT_UNREACHABLE,
    507: ErrorCode.MAILBOX_FULL,
}


def code_for_status(status: int) -> ErrorCode:
    """The code for an HTTP error status keysafe did not raise itself: the usual one for that
    status, else MALFORMED_REQUEST for any other 4xx and INTERNAL for anything else."""
    fallback = ErrorCode.MALFORMED_REQUEST if 400 <= status < 500 else ErrorCode.INTERNAL
    return _CODE_FOR_STATUS.get(status, fallback)


def codes_by_status() -> dict[int, list[ErrorCode]]:
    """Every HTTP status an error can have, with the codes that answer with it (from STATUS)."""
    out: dict[int, list[ErrorCode]] = {}
    for code, (status, _) in STATUS.items():
        out.setdefault(status, []).append(code)
    return dict(sorted(out.items()))


Translate = Mapping[type[BaseException], Callable[[BaseException], KeysafeError]]


@contextmanager
def map_exceptions(mapping: Translate) -> Iterator[None]:
    """Re-raise a foreign exception as the KeysafeError `mapping` makes of it (the first entry
    whose type matches, in order); a KeysafeError and anything unmapped pass through unchanged.

    The original is dropped from the chain (`from None`): a driver's message may quote a URL,
    a token or a row, and the KeysafeError already says what it means.
    """
    try:
        yield
    except KeysafeError:
        raise
    except BaseException as exc:
        for kind, make in mapping.items():
            if isinstance(exc, kind):
                raise make(exc) from None
        raise
