"""Approvals: requests the policy says a human must approve, parked until the owner decides, and
the owner's "approve for a while" grants.

Rules this package enforces (DESIGN.md step 5):
- A parked request is stored as the typed wire request the agent sent (its JSON), with the
  fingerprint of the exact bytes it would sign or send; approving runs *that* request again
  through the gate (service/approvals.py), with every limit re-checked at that moment.
- One pending approval per (agent, fingerprint): an identical request while one is pending gets
  the same approval back, not a second one.
- Approvals are single-use: only a pending, unexpired approval can be decided, once. They expire
  (default 5 minutes); an expiry is audited when it is first noticed.
- A grant covers only requests of the same *shape* the owner saw (action, chain, wallet, asset,
  contract, selector, recipient, spender, credential, host), for a bounded time, and can be
  listed and revoked. A request the owner decides every time (a credential's value) or one no
  rule asked about cannot be granted (`Approval.grantable`).
- Ids print whole; the owner may type a unique prefix (`resolve`): at least MIN_PREFIX hex
  digits, and an ambiguous one is refused with every candidate's whole id.
- A deny may carry the owner's reason for the agent: untrusted display text, control
  characters dropped and capped at MAX_REASON, stored with the decision and shown to the agent.

Every function takes the caller's connection where it writes, so the gate can park a request in
the same transaction that decided it.
"""

from __future__ import annotations

from keysafe.approvals._approval import (
    ALWAYS_ASK,
    DEFAULT_TTL_S,
    DELIVERED_ON_COLLECT,
    EVERY_TIME,
    MAX_GRANT_S,
    MAX_REASON,
    MIN_PREFIX,
    SIGNING_KINDS,
    TTL_SETTING,
    Approval,
    Kind,
    Status,
)
from keysafe.approvals._grants import (
    Grant,
    add_grant,
    granted_rules,
    list_grants,
    revoke_grant,
    shape_of,
)
from keysafe.approvals._parked import (
    clean_reason,
    decide,
    find_pending,
    get,
    jsonable,
    list_approvals,
    notice_expired,
    park,
    resolve,
    set_result,
)

__all__ = [
    "ALWAYS_ASK",
    "DEFAULT_TTL_S",
    "DELIVERED_ON_COLLECT",
    "EVERY_TIME",
    "MAX_GRANT_S",
    "MAX_REASON",
    "MIN_PREFIX",
    "SIGNING_KINDS",
    "TTL_SETTING",
    "Approval",
    "Grant",
    "Kind",
    "Status",
    "add_grant",
    "clean_reason",
    "decide",
    "find_pending",
    "get",
    "granted_rules",
    "jsonable",
    "list_approvals",
    "list_grants",
    "notice_expired",
    "park",
    "resolve",
    "revoke_grant",
    "set_result",
    "shape_of",
]
