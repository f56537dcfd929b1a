"""Agents: who may ask the vault for anything, and how they prove it.

- A bearer token `ks_agent_…` is shown once; only its SHA-256 is stored, and the presented token's
  hash is compared in constant time.
- Alternatively an agent holds an Ed25519 key: each request is signed over the RFC 8785 canonical
  JSON of the envelope `{version: 2, agent, timestamp, nonce, method, path, body}`; the timestamp
  must be within ±5 minutes and the nonce is accepted once (a replay is refused with REPLAY).
  The envelope names the whole request (method, path with its query, body), so a signature made
  for one route (sign-transaction) does not work on another (send-transaction). Version 1 signed
  only the body and is refused.
- Revoke is immediate and final; pause/resume and pause-all are the owner's brakes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from keysafe.crypto import jcs, signatures
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    AlreadyExistsError,
    KeysafeError,
    MalformedRequestError,
    NotAuthenticatedError,
    NotFoundError,
    ReplayError,
)
from keysafe.notify.notice import Event, alert
from keysafe.service import notify, sealed_state
from keysafe.service.models import check_name
from keysafe.store import hot
from keysafe.store import tables as t
from keysafe.vault.seals import PAUSED_ALL, Seal
from keysafe.vault.vault import Vault, iso

logger = logging.getLogger(__name__)

TOKEN_PREFIX: Final = "ks_agent_"  # noqa: S105 - a prefix, not a token
CLOCK_SKEW: Final = timedelta(minutes=5)
ENVELOPE_VERSION: Final = 2
# Exactly these keys: a missing one leaves part of the request unsigned, an unknown one is a
# client speaking a format this vault does not know.
ENVELOPE_KEYS: Final = frozenset(
    {"version", "agent", "timestamp", "nonce", "method", "path", "body"}
)
Status = Literal["active", "paused", "revoked"]
# vault.volatile's key for the agent rows whose seal was verified under this unlock (forgotten
# on every lock with the rest of vault.volatile).
# The agent row as `authenticate_token_quick` reads it; the seal covers all but last_seen.
_QUICK_SQL: Final = (
    "SELECT name, token_hash, public_key, status, created_at, mac, last_seen "
    "FROM agents WHERE token_hash = ?"
)


@dataclass(frozen=True, slots=True)
class AgentView:
    name: str
    status: Status
    created_at: str
    last_seen: str | None
    policy_digest: str | None
    auth: str  # token | ed25519 | token+ed25519

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "created_at": self.created_at,
            "last_seen": self.last_seen, "policy_hash": self.policy_digest, "auth": self.auth,
        }  # fmt: skip


def _hash_token(token: str) -> str:
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
                r.name, r.status, r.created_at, r.last_seen, digests.get(r.name), auth or "none"
            )
        )
    return out


# Every agent request reads its row: on the driver (store/hot.py), the columns of `t.agents`.
_AGENT_ROW: Final = (
    "SELECT name, token_hash, public_key, status, created_at, last_seen, revoked_at, mac "
    "FROM agents WHERE name = :name"
)


def get_agent(conn: Connection, name: str) -> Any:
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
                next_step=f"pick another name, or `keysafe agent rotate-token {name}` for a new token.",
                agent=name,
            )
        row = _NewAgent(
            name=name, status="active", public_key=pub, created_at=iso(vault.clock()),
            token_hash=_hash_token(bytes(token.reveal()).decode()) if token else None,
        )  # fmt: skip
        conn.execute(
            insert(t.agents).values(
                name=row.name, token_hash=row.token_hash, public_key=row.public_key,
                status=row.status, created_at=row.created_at,
                mac=sealed_state.agent_seal(vault, row),
            )
        )  # fmt: skip
        vault.audit(
            conn, actor="owner", action="agent.add", target=f"agent:{name}", outcome="success",
            details={"agent": name, "kind": "ed25519" if pub else "token"},
        )  # fmt: skip
        view = next(v for v in _views(conn) if v.name == name)
    logger.info("agent %s added", name)
    return view, token


def list_agents(vault: Vault) -> list[AgentView]:
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
            status == "paused" and vault.is_unlocked
            and sealed_state.agent_seal_state(vault, row) is Seal.SEALED
        ):  # fmt: skip
            # Seal the pause, so an edit of the file cannot undo it. An unsealed or broken row
            # keeps what it had: the pause applies, and nothing the owner did not see is sealed.
            values["mac"] = sealed_state.agent_seal(vault, row, status)
        if status == "revoked":
            # Drop the credentials too: nothing can bring a revoked agent back.
            values |= {"token_hash": None, "revoked_at": iso(vault.clock())}
        conn.execute(update(t.agents).where(t.agents.c.name == name).values(**values))
        action = {"active": "agent.resume", "paused": "agent.pause", "revoked": "agent.revoke"}
        vault.audit(
            conn, actor="owner", action=action[status], target=f"agent:{name}",
            outcome="success", details={"agent": name},
        )  # fmt: skip
        view = next(v for v in _views(conn) if v.name == name)
    logger.info("agent %s is now %s", name, status)
    return view


def rotate_token(vault: Vault, name: str) -> SecretBytes:
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
            name=row.name, status=row.status, public_key=row.public_key,
            created_at=row.created_at, token_hash=_hash_token(bytes(token.reveal()).decode()),
        )  # fmt: skip
        conn.execute(
            update(t.agents)
            .where(t.agents.c.name == name)
            .values(token_hash=new.token_hash, mac=sealed_state.agent_seal(vault, new))
        )
        vault.audit(
            conn, actor="owner", action="agent.rotate_token", target=f"agent:{name}",
            outcome="success", details={"agent": name},
        )  # fmt: skip
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
        vault.audit(
            conn, actor="owner", action="agents.pause_all" if paused else "agents.resume_all",
            target=f"vault:{vault.vault_id}", outcome="success",
        )  # fmt: skip
        notify.emit(vault, conn, alert(
            Event.PAUSE_ALL,
            "every agent is paused: nothing is signed or sent until resume-all" if paused
            else "pause-all was switched off: agents act under their policies again",
        ))  # fmt: skip
    logger.info("pause-all %s", "on" if paused else "off")


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The HTTP request a signed envelope came with; the envelope must name exactly this one."""

    method: str  # as sent, upper case: "POST"
    path: str  # path and query as sent on the request line: "/v1/agent/approvals/apr_1?wait=5"
    body: Any  # the parsed JSON body; None when the request has none


def _refused() -> NotAuthenticatedError:
    # One fixed message for every failure: which part was wrong is an oracle (STYLE §4).
    return NotAuthenticatedError(
        "The agent could not be authenticated.",
        next_step="check the agent token (KEYSAFE_AGENT_TOKEN) or the request signature.",
    )


def authenticate_token(conn: Connection, token: str) -> Any:
    """Return the agent row for a bearer token, or raise NOT_AUTHENTICATED (revoked included)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise _refused()
    digest = _hash_token(token)
    # The SQL lookup is by hash (an index, not a secret comparison); the match is then
    # confirmed in constant time.
    row = conn.execute(select(t.agents).where(t.agents.c.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.status == "revoked":
        raise _refused()
    return row


def _old_envelope(version: object) -> NotAuthenticatedError:
    # Not an oracle: the format is public and checked before any key is looked at.
    if type(version) is int and version > ENVELOPE_VERSION:
        what = (
            f"This signed request uses envelope version {version}; this vault understands "
            f"version {ENVELOPE_VERSION} only."
        )
        next_step = "update keysafe on the vault's host, or sign envelope version 2."
    else:
        what = (
            "This signed request uses an old envelope format that does not sign the HTTP method "
            f"and path; this vault accepts envelope version {ENVELOPE_VERSION} only."
        )
        next_step = (
            "update the agent's client so it signs {version: 2, agent, timestamp, nonce, method, "
            'path, body} (docs/architecture.md, "Agents").'
        )
    return NotAuthenticatedError(what, next_step=next_step)


def _names_request(envelope: dict[str, Any], request: SignedRequest) -> bool:
    """Whether the envelope names this method, path (with query) and body, byte for byte."""
    try:
        signed_body = jcs.dumps(envelope["body"])
        sent_body = jcs.dumps(request.body)
    except (ValueError, RecursionError):  # not canonicalisable (NaN, 2**60, …): not the same
        return False
    return (
        envelope["method"] == request.method
        and envelope["path"] == request.path
        and hmac.compare_digest(signed_body, sent_body)
    )


def authenticate_signed(
    conn: Connection,
    envelope: dict[str, Any],
    signature: str,
    *,
    request: SignedRequest,
    now: datetime,
) -> Any:
    """Verify an Ed25519-signed envelope for `request`; burn its nonce.

    The envelope is `{version: 2, agent, timestamp, nonce, method, path, body}`, signed over its
    RFC 8785 form. Method, path and body must be the request's own: a signature covers one
    request to one route, never the same body sent elsewhere (sign-transaction's envelope on
    send-transaction, which also broadcasts). A refused envelope does not burn its nonce.

    Raises:
        NotAuthenticatedError: an old envelope version (saying so), or anything else wrong (one
            fixed message: which part was wrong is an oracle).
        ReplayError: the nonce was used before.
    """
    version = envelope.get("version")
    if version != ENVELOPE_VERSION or type(version) is not int:
        raise _old_envelope(version)
    if set(envelope) != ENVELOPE_KEYS or not _names_request(envelope, request):
        raise _refused()
    try:
        name = str(envelope["agent"])
        stamp = datetime.fromisoformat(str(envelope["timestamp"]).replace("Z", "+00:00"))
        nonce = str(envelope["nonce"])
        sig = base64.b64decode(signature, validate=True)
    except (KeyError, ValueError, TypeError):
        raise _refused() from None
    if not 16 <= len(nonce) <= 128 or stamp.tzinfo is None:
        raise _refused()
    row = conn.execute(select(t.agents).where(t.agents.c.name == name)).first()
    if row is None or row.public_key is None or row.status == "revoked":
        raise _refused()
    if not signatures.verify_ed25519(bytes.fromhex(row.public_key), jcs.dumps(envelope), sig):
        raise _refused()
    if abs(now - stamp) > CLOCK_SKEW:
        raise NotAuthenticatedError(
            "The signed request's timestamp is more than 5 minutes away from the vault's clock.",
            next_step="sync the agent's clock (NTP) and sign a fresh request.",
        )
    conn.execute(delete(t.nonces).where(t.nonces.c.expires < now.timestamp()))
    try:
        with conn.begin_nested():
            conn.execute(
                insert(t.nonces).values(
                    agent=name, nonce=nonce, expires=(stamp + CLOCK_SKEW).timestamp()
                )
            )
    except SqlIntegrityError:
        raise ReplayError(
            "This signed request was already used (its nonce was seen before).",
            next_step="sign every request with a fresh random nonce.",
        ) from None
    return row


def authenticate_token_quick(vault: Vault, bearer: str) -> str | None:
    """The bearer check of `authenticate`, answered without waiting and without SQLAlchemy, so
    a server can run it on its event loop: the agent's name, or None when the full
    `authenticate` must run (in a worker thread), which then gives the answer or the refusal.

    Nothing about the agent is trusted from memory: its row is read from the database on every
    call (committed state, whoever wrote it: this process or the owner's CLI in another one), so
    a rotated token, a revoked agent or an edited row is refused at once. The seal is checked as
    the full path checks it (`Vault.check_row` remembers, per unlock, only that an exact row and
    seal verified: a pure function of the row, so the answer cannot go stale). Answers None
    while locked (the full path has no key either), for a row whose seal does not verify as it
    is, and when `last_seen` is due to be written (a write may wait: the full path does it).
    """
    if not vault.is_unlocked or not bearer.startswith(TOKEN_PREFIX) or len(bearer) > 200:
        return None
    digest = _hash_token(bearer)
    rows = vault.db.quick_read(_QUICK_SQL, (digest,))
    if not rows or len(rows) != 1:
        return None
    row = _QuickRow(*rows[0])
    if not isinstance(row.token_hash, str) or not hmac.compare_digest(row.token_hash, digest):
        return None
    if row.status == "revoked" or _stale(row.last_seen, vault.clock()):
        return None
    try:
        if sealed_state.agent_seal_state(vault, row) is not Seal.SEALED:
            return None  # unsealed or broken: the full path decides, and says why
    except KeysafeError:
        return None  # locked in between: the full path refuses with the right error
    return str(row.name)


@dataclass(frozen=True, slots=True)
class _QuickRow:
    """The agents row as `_QUICK_SQL` reads it, with the attribute names the seal check reads."""

    name: str
    token_hash: str | None
    public_key: str | None
    status: str
    created_at: str
    mac: str | None
    last_seen: str | None


def authenticate(
    vault: Vault,
    *,
    bearer: str | None = None,
    envelope: dict[str, Any] | None = None,
    signature: str | None = None,
    request: SignedRequest | None = None,
) -> str:
    """Who is asking: a bearer token or an Ed25519-signed envelope; returns the agent's name.

    A paused agent authenticates (its requests are then denied by the policy check); a revoked
    or unknown one does not. Marks the agent as seen.
    """
    now = vault.clock()
    if bearer is not None:
        # A token check only reads; `last_seen` is written at most once a second per agent,
        # so the hot path does not pay a write transaction for bookkeeping.
        with vault.db.read() as conn:
            row = authenticate_token(conn, bearer)
        _check_sealed(vault, row)
        if _stale(row.last_seen, now):
            with vault.db.write() as conn:
                touch(conn, row.name, now)
        return str(row.name)
    with vault.db.write() as conn:  # a signed request burns its nonce: always a write
        if envelope is None or signature is None or request is None:
            raise _refused()
        row = authenticate_signed(conn, envelope, signature, request=request, now=now)
        _check_sealed(vault, row)
        touch(conn, row.name, now)
    return str(row.name)


def _check_sealed(vault: Vault, row: Any) -> None:
    # A token hash or key written into the file by someone else must not authenticate. While
    # locked there is no key to check with, and nothing an agent asks can be done either: every
    # act goes through the gate, which checks again with the key.
    if vault.is_unlocked:
        sealed_state.check_agent(vault, row)


@dataclass(frozen=True, slots=True)
class _NewAgent:
    """An agent row about to be written, for its seal."""

    name: str
    status: str
    token_hash: str | None
    public_key: str | None
    created_at: str


def _stale(last_seen: str | None, now: datetime) -> bool:
    if last_seen is None:
        return True
    try:
        return (now - datetime.fromisoformat(last_seen.replace("Z", "+00:00"))).total_seconds() >= 1
    except ValueError:
        return True


def touch(conn: Connection, name: str, now: datetime) -> None:
    conn.execute(update(t.agents).where(t.agents.c.name == name).values(last_seen=iso(now)))
