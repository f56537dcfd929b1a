"""What an audit row may hold in plaintext, and the HMAC for everything else.

As Vault/OpenBao's audit devices do, values outside a short allow-list are replaced by
`hmac-sha256:<hex>` under an audit key derived from the master key: the owner can check whether
two rows name the same value, a reader of a stolen database learns nothing. Secret values are
never passed in at all; this is the second line of defence for identifiers and free text.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

from keysafe.crypto import jcs
from keysafe.errors import AuditWriteError

PLAINTEXT_KEYS: Final = frozenset(
    {
        # DESIGN.md's allow-list
        "agent",
        "rule",
        "chain",
        "amount",
        "recipient",
        # structure of the vault itself: names, classes and public addresses, never values
        "kind",
        "name",
        "class",
        "hosts",
        "attach",
        "address",
        "index",
        "source",
        "format",
        "version",
        "epoch",
        "vault_id",
        "reason",
        "code",
        "count",
        "fields",
        "replaced",
        "failures",
        "blocked_seconds",
        "records",
        "entries",
        "from_empty_home",
        "objects_deleted",  # object versions an epoch destroy deleted from the S3 blob store
        # decisions and policy changes: hashes and ids, not values
        "request_id",
        "intent",
        "policy_hash",
        "previous_hash",
        "diff",
        "seconds",
        "state",
        "fee",
        # signing: public results only
        "action",
        "asset",
        "tx_hash",
        "summary",
        "status",
        "wallet",
        "signer",
        "broadcast",
        "culprit",  # a threshold party's number (1 agent, 2 vault, 3 recovery) that was refused
        # credential use: where and how big, never the secret or the bodies
        "method",
        "host",
        "path",
        "bytes",
        "redirects",
        "ended",
    }
)


def hmac_value(key: bytes | bytearray, value: Any) -> str:
    digest = hmac.new(bytes(key), jcs.dumps(value), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest}"


def redact(details: Mapping[str, Any], audit_key: bytes | bytearray | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        if key in PLAINTEXT_KEYS:
            # An enum member (a reason code, a kind) as its plain string: the same JSON, and
            # canonical JSON's fast path, which takes exact types only (crypto/jcs.py).
            out[key] = str(value) if isinstance(value, StrEnum) else value
        elif audit_key is None:
            # Fail closed: better no action than a row holding an unkeyed value.
            raise AuditWriteError(
                f"Audit detail '{key}' needs the audit key, which is only there when unlocked.",
                next_step="this is a keysafe bug; please report it with the command you ran.",
            )
        else:
            out[key] = hmac_value(audit_key, value)
    return out
