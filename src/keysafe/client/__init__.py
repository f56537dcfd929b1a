"""The typed Python client for keysafe's agent API (sync and async).

    from keysafe.client import AgentClient, ApprovalRequiredError, PolicyDeniedError

    with AgentClient() as ks:  # KEYSAFE_AGENT_TOKEN, KEYSAFE_URL (default http://127.0.0.1:8420)
        caps = ks.capabilities()
        try:
            signed = ks.sign_message("main", "hello", wait=120)  # waits for the owner if asked
        except PolicyDeniedError as exc:
            print(exc.code, exc)  # POLICY_DENIED, the server's message and next step

Every agent route is one method returning a pydantic model (keysafe.agent_models, the same
models the server declares in /openapi.json). Errors are the `ApiError` subclass of the server's
stable code (`ERRORS` is the one map; each class also subclasses the keysafe.errors class of the
same name). A pending approval raises ApprovalRequiredError carrying `approval_id`, unless the
call passed `wait=SECONDS`. The client is agent-side: it holds a token, never a key, and imports
no vault code. The token never appears in a repr, str or error.

Not built: Ed25519-signed envelopes (use a bearer token) and the agent's part of 2-of-3 signing
(keysafe's MCP server does that with the agent's share file).
"""

from keysafe.agent_models import (
    Address,
    ApprovalView,
    BudgetWindow,
    Capabilities,
    CheckResult,
    CredentialInfo,
    DataInfo,
    DataValue,
    Health,
    HttpResult,
    PendingApproval,
    PolicyInfo,
    ReleasedCredential,
    SignResult,
    ThresholdCommitment,
    WalletInfo,
)
from keysafe.client._async import AsyncAgentClient
from keysafe.client._calls import DEFAULT_URL
from keysafe.client._client import AgentClient
from keysafe.client._errors import (
    ERRORS,
    AlreadyExistsError,
    ApiError,
    ApprovalRequiredError,
    AuditWriteError,
    BudgetExceededError,
    ChainUnavailableError,
    IdempotencyConflictError,
    IntegrityError,
    InternalError,
    KmsUnavailableError,
    MailboxFullError,
    MalformedRequestError,
    MethodNotAllowedError,
    MisdirectedRequestError,
    NotAuthenticatedError,
    NotFoundError,
    NotInitializedError,
    PayloadTooLargeError,
    PolicyDeniedError,
    RateLimitedError,
    RelayUnavailableError,
    ReplayError,
    RequestInProgressError,
    StoreError,
    UnlockThrottledError,
    UnsafePermissionsError,
    UpstreamUnavailableError,
    VaultLockedError,
    VaultUnreachableError,
    WrongPassphraseError,
    WrongRecoveryPhraseError,
    error_from_answer,
)

__all__ = [
    "DEFAULT_URL",
    "ERRORS",
    "Address",
    "AgentClient",
    "AlreadyExistsError",
    "ApiError",
    "ApprovalRequiredError",
    "ApprovalView",
    "AsyncAgentClient",
    "AuditWriteError",
    "BudgetExceededError",
    "BudgetWindow",
    "Capabilities",
    "ChainUnavailableError",
    "CheckResult",
    "CredentialInfo",
    "DataInfo",
    "DataValue",
    "Health",
    "HttpResult",
    "IdempotencyConflictError",
    "IntegrityError",
    "InternalError",
    "KmsUnavailableError",
    "MailboxFullError",
    "MalformedRequestError",
    "MethodNotAllowedError",
    "MisdirectedRequestError",
    "NotAuthenticatedError",
    "NotFoundError",
    "NotInitializedError",
    "PayloadTooLargeError",
    "PendingApproval",
    "PolicyDeniedError",
    "PolicyInfo",
    "RateLimitedError",
    "RelayUnavailableError",
    "ReleasedCredential",
    "ReplayError",
    "RequestInProgressError",
    "SignResult",
    "StoreError",
    "ThresholdCommitment",
    "UnlockThrottledError",
    "UnsafePermissionsError",
    "UpstreamUnavailableError",
    "VaultLockedError",
    "VaultUnreachableError",
    "WalletInfo",
    "WrongPassphraseError",
    "WrongRecoveryPhraseError",
    "error_from_answer",
]
