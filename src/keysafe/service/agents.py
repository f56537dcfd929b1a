"""Agents: who may ask the vault for anything (service/agent_auth.py: how they prove it).

- An agent holds a bearer token `ks_agent_…` (shown once; only its SHA-256 is stored), an
  Ed25519 public key, or both; its row is sealed with the owner's key.
- Revoke is immediate and final; pause/resume and pause-all are the owner's brakes.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, insert, select, update

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    AlreadyExistsError,
    MalformedRequestError,
    NotFoundError,
)
from keysafe.notify.notice import Event, alert
from keysafe.service import notify, owner_audit, sealed_state
from keysafe.service.models import check_name
from keysafe.store import hot
from keysafe.store import tables as t
from keysafe.vault.seals import PAUSED_ALL, Seal
from keysafe.vault.vault import Vault, iso

logger = logging.getLogger(__name__)

TOKEN_PREFIX: Final = "ks_agent_"  # noqa: S105 - a prefix, not a token
Status = Literal["active", "paused", "revoked"]


class AgentView(BaseModel):
    """An agent as the owner sees it (never its token). Its policy's digest is `policy_hash` on
    every surface: the agent list, `keysafe agent … --json` and `/v1/owner/ops` answers."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    name: str
    status: Status
    created_at: str
    last_seen: str | None
    policy_digest: str | None = Field(alias="policy_hash")
    auth: str  # token | ed25519 | token+ed25519


def _audit_change(vault: Vault, conn: Connection, action: str, name: str, **more: str) -> None:
    """Audit the owner's change to agent `name`: each entry is about the agent and names it, so
    `keysafe audit --agent NAME` finds it."""
    owner_audit.changed(vault, conn, action, f"agent:{name}", {"agent": name, **more})


def hash_token(token: str) -> str:
    """The SHA-256 of an agent token, as stored (the token itself never is)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> SecretBytes:
    return SecretBytes(bytearray((TOKEN_PREFIX + secrets.token_urlsafe(32)).encode()))


def _parse_public_key(text: str) -> str:
    raw: bytes | None = None
    s = text.strip()
    try:
        raw = bytes.fromhex(s.removeprefix("0x"))
    except ValueError:
        try:
            raw = base64.b64decode(s, validate=True)
        except ValueError:
            raw = None
    if raw is None or len(raw) != 32:
        raise MalformedRequestError(
            "An agent public key is 32 bytes of Ed25519, as hex or base64.",
            next_step="pass the raw public key, e.g. from `nacl.signing.SigningKey.verify_key`.",
        )
    return raw.hex()


def _views(conn: Connection) -> list[AgentView]:
    digests = dict(conn.execute(select(t.policies.c.agent, t.policies.c.digest)).all())
    out = []
    for r in conn.execute(select(t.agents).order_by(t.agents.c.name)):
        auth = "+".join(x for x, v in (("token", r.token_hash), ("ed25519", r.public_key)) if v)
        out.append(
            AgentView(
                name=r.name,
                status=r.status,
                created_at=r.created_at,
                last_seen=r.last_seen,
                policy_digest=digests.get(r.name),
                auth=auth or "none",
            )
        )
    return out


# Every agent request reads its row: on the driver (store/hot.py), the columns of `t.agents`.
_AGENT_ROW: Final = (
    "SELECT name, token_hash, public_key, status, created_at, last_seen, revoked_at, mac "
    "FROM agents WHERE name = :name"
)


def get_agent(conn: Connection, name: str) -> Any:
    """The agent's row, read in the caller's transaction.

    Raises:
        NotFoundError: no agent has that name.
    """
    found = hot.named(conn, _AGENT_ROW, {"name": name})
    row = found[0] if found else None
    if row is None:
        raise NotFoundError(
            f"No agent named '{name}'.",
            next_step="see `keysafe agent list`, or add it with `keysafe agent add NAME`.",
            agent=name,
        )
    return row


def add_agent(
    vault: Vault, name: str, *, public_key: str | None = None, with_token: bool = True
) -> tuple[AgentView, SecretBytes | None]:
    """Register an agent; returns its view and its token (shown once), if it has one."""
    check_name(name, "agent")
    vault.require_unlocked()  # an active agent is honoured only with the owner's seal
    pub = _parse_public_key(public_key) if public_key else None
    token = _new_token() if with_token or pub is None else None
    with vault.db.write() as conn:
        if conn.execute(select(t.agents.c.name).where(t.agents.c.name == name)).first():
            raise AlreadyExistsError(
                f"An agent named '{name}' already exists.",
                next_step=f"pick another name, or `keysafe agent rotate-token {name}` "
                "for a new token.",
                agent=name,
            )
        row = _NewAgent(
            name=name,
            status="active",
            public_key=pub,
            created_at=iso(vault.clock()),
            token_hash=hash_token(bytes(token.reveal()).decode()) if token else None,
        )
        conn.execute(
            insert(t.agents).values(
                name=row.name,
                token_hash=row.token_hash,
                public_key=row.public_key,
                status=row.status,
                created_at=row.created_at,
                mac=sealed_state.agent_seal(vault, row),
            )
        )
        _audit_change(vault, conn, "agent.add", name, kind="ed25519" if pub else "token")
        view = next(v for v in _views(conn) if v.name == name)
    logger.info("agent %s added", name)
    return view, token


def list_agents(vault: Vault) -> list[AgentView]:
    """Every agent, in name order, with its status and how it authenticates (never a secret)."""
    with vault.db.read() as conn:
        return _views(conn)


def set_status(vault: Vault, name: str, status: Status) -> AgentView:
    """Pause, resume or revoke an agent.

    Pausing and revoking work while the vault is locked (the owner's brakes must), and are
    sealed when it is unlocked; resuming grants, so it needs the owner's key and a row whose
    seal verifies.

    Raises:
        VaultLockedError: resuming while locked.
        IntegrityError: resuming an agent whose row was edited or never sealed.
    """
    if status == "active":
        vault.require_unlocked()
    with vault.db.write() as conn:
        row = get_agent(conn, name)
        if row.status == "revoked":
            raise MalformedRequestError(
                f"Agent '{name}' is revoked, and revoking is final.",
                next_step=f"add a new agent instead (`keysafe agent add {name}-2`).",
                agent=name,
            )
        values: dict[str, Any] = {"status": status}
        if status == "active":
            sealed_state.require_sealed_agent(vault, row)
            values["mac"] = sealed_state.agent_seal(vault, row, status)
        elif (
            status == "paused"
            and vault.is_unlocked
            and sealed_state.agent_seal_state(vault, row) is Seal.SEALED
        ):
            # Seal the pause, so an edit of the file cannot undo it. An unsealed or broken row
            # keeps what it had: the pause applies, and nothing the owner did not see is sealed.
            values["mac"] = sealed_state.agent_seal(vault, row, status)
        if status == "revoked":
            # Drop the credentials too: nothing can bring a revoked agent back.
            values |= {"token_hash": None, "revoked_at": iso(vault.clock())}
        conn.execute(update(t.agents).where(t.agents.c.name == name).values(**values))
        action = {"active": "agent.resume", "paused": "agent.pause", "revoked": "agent.revoke"}
        _audit_change(vault, conn, action[status], name)
        view = next(v for v in _views(conn) if v.name == name)
    logger.info("agent %s is now %s", name, status)
    return view


def rotate_token(vault: Vault, name: str) -> SecretBytes:
    """A new token for `name`; the old one stops working at once. The token is shown once.

    Raises:
        VaultLockedError: the vault is locked (the new token's row is sealed).
        NotFoundError: no agent has that name.
        MalformedRequestError: the agent is revoked.
        IntegrityError: the agent's row does not carry a seal that verifies.
    """
    vault.require_unlocked()  # the new token is sealed into the row
    token = _new_token()
    with vault.db.write() as conn:
        row = get_agent(conn, name)
        if row.status == "revoked":
            raise MalformedRequestError(
                f"Agent '{name}' is revoked; it cannot get a new token.",
                next_step="add a new agent instead.",
                agent=name,
            )
        sealed_state.require_sealed_agent(vault, row)
        new = _NewAgent(
            name=row.name,
            status=row.status,
            public_key=row.public_key,
            created_at=row.created_at,
            token_hash=hash_token(bytes(token.reveal()).decode()),
        )
        conn.execute(
            update(t.agents)
            .where(t.agents.c.name == name)
            .values(token_hash=new.token_hash, mac=sealed_state.agent_seal(vault, new))
        )
        _audit_change(vault, conn, "agent.rotate_token", name)
    logger.info("agent %s token rotated", name)
    return token


def set_paused_all(vault: Vault, paused: bool) -> None:
    """Switch pause-all on (works while locked) or off (needs the owner's key: it grants).

    Raises:
        VaultLockedError: switching off while locked.
    """
    if not paused:
        vault.require_unlocked()
    with vault.db.write() as conn:
        sealed_state.write_setting(vault, conn, PAUSED_ALL, "1" if paused else "0")
        owner_audit.vault_changed(
            vault, conn, "agents.pause_all" if paused else "agents.resume_all"
        )
        notify.emit(
            vault,
            conn,
            alert(
                Event.PAUSE_ALL,
                "every agent is paused: nothing is signed or sent until resume-all"
                if paused
                else "pause-all was switched off: agents act under their policies again",
            ),
        )
    logger.info("pause-all %s", "on" if paused else "off")


@dataclass(frozen=True, slots=True)
class _NewAgent:
    """An agent row about to be written, for its seal."""

    name: str
    status: str
    token_hash: str | None
    public_key: str | None
    created_at: str
