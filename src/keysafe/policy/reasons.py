"""Why the engine decided as it did: the reason code a decision carries (`Decision.code`).

A reason code is finer than the error code a surface shows: the gate reports most denies as
POLICY_DENIED and the two budget reasons as BUDGET_EXCEEDED (`ErrorCode`), with the reason code
beside them as the `reason_code` fact. The values are stored in audit rows and returned in JSON,
so a member's value never changes; being a `StrEnum`, a member equals its old string.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """The engine's reason codes, in the order `decide` can reach them."""

    AGENT_REVOKED = "AGENT_REVOKED"  # the owner revoked the agent
    AGENT_PAUSED = "AGENT_PAUSED"  # the owner paused the agent
    PAUSED_ALL = "PAUSED_ALL"  # the owner paused every agent
    NO_POLICY = "NO_POLICY"  # the agent has no policy
    POLICY_EXPIRED = "POLICY_EXPIRED"  # the agent's policy is past its `expires`
    UNKNOWN_ACTION = "UNKNOWN_ACTION"  # not an action keysafe knows
    UNKNOWN_CHAIN = "UNKNOWN_CHAIN"  # the request's chain is not in the registry
    UNKNOWN_ASSET = "UNKNOWN_ASSET"  # the request's asset is not known on its chain
    UNEVALUABLE = "UNEVALUABLE"  # a rule or an amount cannot be judged for this request
    FEE_TOO_HIGH = "FEE_TOO_HIGH"  # the network fee is over the chain's ceiling
    POLICY_DENIED = "POLICY_DENIED"  # a deny rule covers the request
    TYPED_DATA_ON_ASSET = "TYPED_DATA_ON_ASSET"  # token typed data no rule names
    OVER_PER_TX_LIMIT = "OVER_PER_TX_LIMIT"  # over a rule's `max_per_tx`
    # Over a window's `max_count`. Not RATE_LIMITED: that is the HTTP 429 error code (too many
    # requests too fast), a different thing from a policy's count of actions per window.
    COUNT_LIMIT_EXCEEDED = "COUNT_LIMIT_EXCEEDED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"  # over a window's `max` amount
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"  # an ask: the owner must approve
    NO_MATCHING_RULE = "NO_MATCHING_RULE"  # no rule allows the request
