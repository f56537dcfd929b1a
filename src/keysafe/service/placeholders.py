"""Placeholders: opaque `ksp_…` tokens an unmodified SDK carries where its API key would go.

Rules this module enforces:
- A placeholder stands for one credential and works for one agent; only its SHA-256 is stored and
  the token is shown once. It is useless anywhere but keysafe's proxy: it is not the secret.
- Presented to the vault, it authenticates its agent for `http_request` with its own credential,
  nothing else; any other use is refused and audited (`placeholder.refused`).
- Revoking the agent or removing the credential ends the placeholder with it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, delete, insert, select

from keysafe.audit.outcome import Outcome
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import NotAuthenticatedError, PolicyDeniedError
from keysafe.service.agents import get_agent
from keysafe.service.models import RecordKind, check_name
from keysafe.store import tables as t
from keysafe.vault.vault import Vault, iso

logger = logging.getLogger(__name__)

PREFIX: Final = "ksp_"


@dataclass(frozen=True, slots=True)
class Holder:
    """Who a presented placeholder speaks for."""

    agent: str
    credential: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(vault: Vault, credential: str, agent: str, *, replace: bool = False) -> SecretBytes:
    """A new placeholder for `credential`, usable only by `agent` (returned once). With
    `replace`, the agent's other placeholders for it stop working in the same transaction (a
    rotation: service/rotation_due.py lists when one is due)."""
    check_name(credential, "credential")
    token = SecretBytes(bytearray((PREFIX + secrets.token_urlsafe(32)).encode()))
    with vault.db.write() as conn:
        vault.get_record(conn, RecordKind.CREDENTIAL, credential)  # NOT_FOUND names the fix
        row = get_agent(conn, agent)
        if row.status == "revoked":
            raise PolicyDeniedError(
                f"Agent '{agent}' is revoked.", next_step="issue placeholders to an active agent."
            )
        if replace:
            mine = (t.placeholders.c.credential == credential) & (t.placeholders.c.agent == agent)
            n = conn.execute(delete(t.placeholders).where(mine)).rowcount
            _audit_revoke(vault, conn, credential, agent, int(n))
        conn.execute(
            insert(t.placeholders).values(
                token_hash=_digest(bytes(token.reveal()).decode()),
                agent=agent,
                credential=credential,
                created_at=iso(vault.clock()),
            )
        )
        _audit(vault, conn, "owner", "placeholder.issue", credential, agent)
    logger.info("placeholder issued for credential %s to agent %s", credential, agent)
    return token


def revoke_all(vault: Vault, credential: str, agent: str | None = None) -> int:
    """Withdraw a credential's placeholders (one agent's, or everyone's); returns how many."""
    cond = t.placeholders.c.credential == credential
    if agent is not None:
        cond = cond & (t.placeholders.c.agent == agent)
    with vault.db.write() as conn:
        n = conn.execute(delete(t.placeholders).where(cond)).rowcount
        if not n:
            return 0
        _audit_revoke(vault, conn, credential, agent, n)
    return int(n)


def authenticate(vault: Vault, token: str) -> Holder:
    """The agent and credential a placeholder stands for; NOT_AUTHENTICATED for anything else."""
    refused = NotAuthenticatedError(
        "The placeholder is not valid.",
        next_step="use the placeholder from `keysafe credential placeholder NAME --agent AGENT`.",
    )
    if not token.startswith(PREFIX) or len(token) > 200:
        raise refused
    digest = _digest(token)
    with vault.db.write() as conn:
        row = conn.execute(
            select(t.placeholders).where(t.placeholders.c.token_hash == digest)
        ).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            raise refused
        agent = conn.execute(select(t.agents).where(t.agents.c.name == row.agent)).first()
        if agent is None or agent.status == "revoked":
            raise refused
    return Holder(str(row.agent), str(row.credential))


def refuse_use(vault: Vault, holder: Holder, *, wanted: str, why: str) -> PolicyDeniedError:
    """Audit a placeholder presented for something it does not stand for; returns the error."""
    with vault.db.write() as conn:
        _audit(
            vault,
            conn,
            f"agent:{holder.agent}",
            "placeholder.refused",
            holder.credential,
            holder.agent,
            outcome=Outcome.DENIED,
            more={"wanted": wanted[:64], "reason": why},
        )
    return PolicyDeniedError(
        f"This placeholder stands for credential '{holder.credential}' only; it was sent for "
        f"{wanted[:64]}. Nothing was sent.",
        next_step=f"send it only to the proxy route /{holder.credential}/….",
        reason_code="PLACEHOLDER_MISUSED",
    )


def _audit_revoke(
    vault: Vault, conn: Connection, credential: str, agent: str | None, count: int
) -> None:
    """Audit withdrawn placeholders: `count` of `credential`'s, one agent's or everyone's."""
    _audit(vault, conn, "owner", "placeholder.revoke", credential, agent, more={"count": count})


def _audit(
    vault: Vault,
    conn: Connection,
    actor: str,
    action: str,
    credential: str,
    agent: str | None,
    *,
    outcome: Outcome = Outcome.SUCCESS,
    more: Mapping[str, str | int] | None = None,
) -> None:
    """Audit a step in the life of `credential`'s placeholders (issued, refused, withdrawn):
    about the credential, naming it and the agent (None: every agent's)."""
    vault.audit(
        conn,
        actor=actor,
        action=action,
        target=f"credential:{credential}",
        outcome=outcome,
        details={"agent": agent, "name": credential, **(more or {})},
    )
