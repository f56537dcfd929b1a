"""How an agent proves who it is (service/agents.py keeps who the agents are).

- A bearer token `ks_agent_…`: only its SHA-256 is stored, and the presented token's hash is
  compared in constant time.
- Or an Ed25519 key: each request is signed over the RFC 8785 canonical JSON of the envelope
  `{version: 2, agent, timestamp, nonce, method, path, body}`; the timestamp must be within
  ±5 minutes and the nonce is accepted once (a replay is refused with REPLAY). The envelope names
  the whole request (method, path with its query, body), so a signature made for one route
  (sign-transaction) does not work on another (send-transaction). Version 1 signed only the body
  and is refused.
- Every refusal but an old envelope's carries one fixed message: which part was wrong is an
  oracle. A revoked agent never authenticates; a paused one does (the gate then denies it).
"""

from __future__ import annotations

import base64
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from keysafe.crypto import jcs, signatures
from keysafe.errors import KeysafeError, NotAuthenticatedError, ReplayError
from keysafe.service import sealed_state
from keysafe.service.agents import TOKEN_PREFIX, hash_token
from keysafe.store import tables as t
from keysafe.vault.seals import Seal
from keysafe.vault.vault import Vault, iso

logger = logging.getLogger(__name__)

CLOCK_SKEW: Final = timedelta(minutes=5)
ENVELOPE_VERSION: Final = 2
# Exactly these keys: a missing one leaves part of the request unsigned, an unknown one is a
# client speaking a format this vault does not know.
ENVELOPE_KEYS: Final = frozenset(
    {"version", "agent", "timestamp", "nonce", "method", "path", "body"}
)
# The agent row as `authenticate_token_quick` reads it; the seal covers all but last_seen.
_QUICK_SQL: Final = (
    "SELECT name, token_hash, public_key, status, created_at, mac, last_seen "
    "FROM agents WHERE token_hash = ?"
)


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
    digest = hash_token(token)
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
    digest = hash_token(bearer)
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


def _stale(last_seen: str | None, now: datetime) -> bool:
    if last_seen is None:
        return True
    try:
        return (now - datetime.fromisoformat(last_seen.replace("Z", "+00:00"))).total_seconds() >= 1
    except ValueError:
        return True


def touch(conn: Connection, name: str, now: datetime) -> None:
    """Mark the agent as seen at `now`."""
    conn.execute(update(t.agents).where(t.agents.c.name == name).values(last_seen=iso(now)))
