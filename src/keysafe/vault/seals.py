"""Seals on the vault's state rows: agents, policies and settings.

Records are AEAD-encrypted and the audit log is hash-chained, but the rows that decide what an
agent may do (its status and keys, its policy, the pause-all switch) are plain text: without a
seal, anyone who can write the database file could raise a cap or un-pause an agent, and the
vault would apply it. Each such row carries an HMAC-SHA256 under a subkey of the master key
(`state-mac`), over the RFC 8785 canonical JSON of {vault, table, row}: the row's decisive
columns, bound to its table and to this vault, so a sealed row copied to another row, table or
vault does not verify.

A seal needs the master key, so rows written while the vault is locked have none; which of them
are still honoured (the restrictive ones: a pause) is the service's rule (service/state.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from keysafe.crypto import jcs

Fields = Mapping[str, str | int | None]
PAUSED_ALL: Final = "paused_all"  # the settings row of the pause-all switch: "1" on, "0" off


class Seal(StrEnum):
    SEALED = "sealed"  # the seal verifies
    UNSEALED = "unsealed"  # no seal: written while locked, by an older keysafe, or by an editor
    BROKEN = "broken"  # a seal that does not verify: the row was edited


def mac(key: bytes | bytearray, vault_id: str, table: str, fields: Fields) -> str:
    message = jcs.dumps({"vault": vault_id, "table": table, "row": dict(fields)})
    return hmac.new(bytes(key), message, hashlib.sha256).hexdigest()


def check(
    key: bytes | bytearray, vault_id: str, table: str, fields: Fields, seal: str | None
) -> Seal:
    if seal is None:
        return Seal.UNSEALED
    ok = hmac.compare_digest(mac(key, vault_id, table, fields), seal)
    return Seal.SEALED if ok else Seal.BROKEN


class VerifiedSeals:
    """The rows whose seal verified under one unlock, exactly as they were: every request checks
    its agent's row, policy row and the pause-all switch, and they rarely change, so each is
    checked once. Bounded (many agents, many policy versions); cleared at lock."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._seen: set[tuple[str, tuple[tuple[str, str | int | None], ...], str]] = set()

    def check(
        self, key: bytes | bytearray, vault_id: str, table: str, fields: Fields, seal: str | None
    ) -> Seal:
        """Whether the row's seal verifies under `key` (`check`), remembered when it does."""
        if seal is None:
            return Seal.UNSEALED
        seen = (table, tuple(sorted(fields.items())), seal)
        if seen in self._seen:
            return Seal.SEALED
        state = check(key, vault_id, table, fields, seal)
        if state is Seal.SEALED:
            if len(self._seen) >= self._limit:
                self._seen.clear()
            self._seen.add(seen)
        return state

    def clear(self) -> None:
        self._seen.clear()


def agent_fields(
    *, name: str, status: str, token_hash: str | None, public_key: str | None, created_at: str
) -> dict[str, str | int | None]:
    """What an agent's seal covers: who it is, how it proves it, and its status.

    `last_seen` is left out on purpose: it is bookkeeping written on every request.
    """
    return {
        "name": name,
        "status": status,
        "token_hash": token_hash,
        "public_key": public_key,
        "created_at": created_at,
    }


def policy_fields(agent: str, source: str, digest: str, set_at: str) -> dict[str, str | None]:
    return {"agent": agent, "source": source, "digest": digest, "set_at": set_at}


def setting_fields(key: str, value: str) -> dict[str, str | None]:
    return {"key": key, "value": value}
