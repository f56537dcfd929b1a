"""The vault's side of remote agents: its relay identity, invites, claims, and paired sidecars.

- The vault's identity (Ed25519 to sign, X25519 to be written to) is derived from the master
  key, so it is the same after a restart and gone with the vault; it is only available unlocked.
- An invite lives in the server's memory (`vault.volatile`) for ten minutes and is used once:
  the first sidecar that claims it (with its secret) holds it; a claim of the same invite by other
  keys is refused and audited.
- A claim parks a `pairing` approval that shows the four words. Approving it needs the words the
  sidecar shows (`approvals.approve(..., words=…)`); wrong words deny the pairing.
- An approved pairing makes the agent: key-only, its Ed25519 key the sidecar's, with the policy
  the invite carried; the sidecar's X25519 key is kept in a sealed setting. Revoking the agent cuts
  the sidecar off at its next message (`sidecar_agent` reads the agent's row every time).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from keysafe import approvals as store
from keysafe.approvals import Kind, Status
from keysafe.audit.outcome import Outcome
from keysafe.errors import AlreadyExistsError, MalformedRequestError
from keysafe.relay.envelope import Identity, PeerKeys
from keysafe.relay.pairing import (
    INVITE_TTL_S,
    Claim,
    ClaimAnswer,
    ClaimStatus,
    Invite,
    commitment,
    encode_invite,
    normalise_words,
    pairing_words,
)
from keysafe.service import agents, notify, policies, sealed_state
from keysafe.service.models import check_name
from keysafe.store import tables as t
from keysafe.vault.seals import Seal
from keysafe.vault.vault import Vault

__all__ = [
    "INVITE_TTL_S",
    "PairingRequest",
    "check_words",
    "claim",
    "claim_admissible",
    "complete",
    "create_invite",
    "mark_relayed",
    "server_relay",
    "set_server_relay",
    "sidecar_agent",
    "sidecar_binding",
    "vault_identity",
]

logger = logging.getLogger(__name__)

_INVITES: Final = "relay.invites"
_IDENTITY: Final = "relay.identity"
_RELAY_URL: Final = "relay.url"
SIDECAR_SETTING: Final = "relay.sidecar:"  # + agent name: the sidecar's PeerKeys text
MAX_OPEN_INVITES: Final = 16
_CLAIMS: Final = threading.Lock()  # claims are answered in worker threads
_CLAIM_STATUS: Final[dict[Status, ClaimStatus]] = {
    Status.PENDING: "pending",
    Status.EXECUTING: "pending",
    Status.APPROVED: "paired",
    Status.DENIED: "denied",
    Status.EXPIRED: "expired",
    Status.FAILED: "denied",
}


class PairingRequest(BaseModel):
    """A parked pairing (the approval's request): what approving it makes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    invite_id: str
    sidecar: str  # PeerKeys text
    words: list[str]
    host: str = ""
    policy: str | None = None
    policy_source: str | None = None


@dataclass
class _Open:
    invite: Invite
    policy: str | None
    policy_source: str | None
    vault_nonce: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    claimed_by: str | None = None  # the first claimer's keys hold the invite
    commitment: str | None = None  # and its commitment, fixed with them
    approval_id: str | None = None


def vault_identity(vault: Vault) -> Identity:
    """The vault's relay identity, derived from its master key.

    Raises:
        VaultLockedError: the vault is locked.
    """
    held = vault.volatile.get(_IDENTITY)
    if isinstance(held, Identity):
        return held
    with vault.subkey("relay-sign") as sign, vault.subkey("relay-kem") as kem:
        identity = Identity.from_seeds(sign.reveal(), kem.reveal())
    vault.volatile[_IDENTITY] = identity
    return identity


def set_server_relay(vault: Vault, url: str) -> None:
    """Remember the relay this server connects out to (`keysafe serve --relay URL`), the
    default relay named in its invites."""
    vault.serving[_RELAY_URL] = url


def server_relay(vault: Vault) -> str:
    """The relay this server connects out to.

    Raises:
        MalformedRequestError: it was started without --relay.
    """
    url = vault.serving.get(_RELAY_URL)
    if url is None:
        raise MalformedRequestError(
            "This server does not connect to a relay, so no sidecar could reach it.",
            next_step="restart it with `keysafe serve --relay wss://relay.example:8443`, or "
            "name the relay with `--relay`.",
        )
    return url


def _table(vault: Vault) -> dict[str, _Open]:
    table: dict[str, _Open] = vault.volatile.setdefault(_INVITES, {})
    now = time.time()
    for key in [k for k, o in table.items() if o.invite.expires <= now and o.approval_id is None]:
        del table[key]
    return table


def create_invite(
    vault: Vault, agent: str, *, relay: str, policy: str | None, policy_source: str | None
) -> str:
    """A one-time invite for a sidecar to pair as new agent `agent`, through `relay`.

    Raises:
        AlreadyExistsError: an agent of that name exists (pairing makes a new agent).
        PolicyError / MalformedRequestError: the policy does not check, or too many open invites.
        VaultLockedError: the vault is locked.
    """
    check_name(agent, "agent")
    if policy is not None:
        policies.validated(vault, policy, source=policy_source or "policy")
    with vault.db.read() as conn:
        if conn.execute(select(t.agents.c.name).where(t.agents.c.name == agent)).first():
            raise AlreadyExistsError(
                f"An agent named '{agent}' already exists; pairing makes a new agent.",
                next_step="invite under a new name (revoke the old agent if it is retired).",
                agent=agent,
            )
    table = _table(vault)
    if sum(1 for o in table.values() if o.approval_id is None) >= MAX_OPEN_INVITES:
        raise MalformedRequestError(
            "Too many invites are open at once.",
            next_step="wait for them to be used or expire (10 minutes).",
        )
    identity = vault_identity(vault)
    invite = Invite(
        id=secrets.token_hex(16),
        agent=agent,
        vault=identity.public.to_text(),
        relay=relay,
        expires=int(time.time()) + INVITE_TTL_S,
        secret=secrets.token_hex(16),
    )
    table[invite.id] = _Open(invite, policy, policy_source)
    with vault.db.write() as conn:
        vault.audit(
            conn,
            actor="owner",
            action="agent.invite",
            target=f"agent:{agent}",
            outcome=Outcome.SUCCESS,
            details={"agent": agent, "invite": invite.id[:8], "expires": invite.expires},
        )
    return encode_invite(identity, invite)


def claim_admissible(vault: Vault, claimed: Claim) -> bool:
    """Whether a claim may be heard at all: its invite is open, its secret and terms are the
    vault's, and no other sidecar holds it. Checked before anything is remembered or written for
    the claim, so a host that once saw an invite cannot flood the vault with claims."""
    held = _table(vault).get(claimed.invite.id)
    return (
        held is not None
        and hmac.compare_digest(held.invite.secret, claimed.invite.secret)
        and held.invite == claimed.invite
        and (
            held.claimed_by is None
            or (held.claimed_by == claimed.sidecar and held.commitment == claimed.commitment)
        )
    )


def claim(vault: Vault, claimed: Claim, sender: str) -> ClaimAnswer:
    """Answer a sidecar's claim (sent, and sent again while it waits, by `sender`).

    The first valid claim of an invite holds it (its keys and commitment) and is answered with
    the vault's nonce; the claim that reveals the committed nonce parks the pairing approval with
    the words; later claims by the same sidecar read its state. The caller has checked that the
    claim's message is signed by the sidecar key the claim names, and that `sender` is that
    key's routing id.
    """
    with _CLAIMS:  # one claim at a time: the first one holds the invite
        return _claim(vault, claimed, sender)


def _claim(vault: Vault, claimed: Claim, sender: str) -> ClaimAnswer:
    table = _table(vault)
    held = table.get(claimed.invite.id)
    if held is None:
        return _refuse(vault, sender, "expired", "This invite is unknown or has expired.")
    if not hmac.compare_digest(held.invite.secret, claimed.invite.secret) or (
        held.invite != claimed.invite
    ):
        return _refuse(vault, sender, "refused", "This invite does not match the vault's.")
    if held.claimed_by is not None and (
        held.claimed_by != claimed.sidecar or held.commitment != claimed.commitment
    ):
        return _refuse(vault, sender, "refused", "This invite was already used.")
    if held.claimed_by is None:
        held.claimed_by, held.commitment = claimed.sidecar, claimed.commitment
    if held.approval_id is None:
        if claimed.reveal is None:
            return ClaimAnswer(status="reveal", nonce=held.vault_nonce.hex())
        sidecar_nonce = bytes.fromhex(claimed.reveal)
        if not hmac.compare_digest(commitment(sidecar_nonce), claimed.commitment):
            table.pop(claimed.invite.id, None)  # a wrong reveal spends the invite
            return _refuse(
                vault, sender, "refused", "The revealed nonce is not the one committed to."
            )
        words = pairing_words(
            held.invite,
            vault_identity(vault).public,
            claimed.sidecar_keys,
            sidecar_nonce,
            held.vault_nonce,
        )
        held.approval_id = _park(vault, held, claimed, words)
    assert held.approval_id is not None
    approval = _approval(vault, held.approval_id)
    status = _CLAIM_STATUS[approval.status]
    if status != "pending":
        table.pop(claimed.invite.id, None)  # decided: the invite is spent
    shown = approval.request.get("words")
    return ClaimAnswer(
        status=status,
        approval_id=approval.id,
        message=_said(approval),
        words=[str(w) for w in shown] if isinstance(shown, list) else None,
    )


def _said(approval: store.Approval) -> str | None:
    if approval.status is Status.DENIED:
        reason = approval.result.get("reason") if approval.result else None
        return "The owner did not approve this pairing." + (f" {reason}" if reason else "")
    if approval.status is Status.FAILED and approval.result:
        error = approval.result.get("error")
        return str(error.get("message")) if isinstance(error, dict) else None
    return None


def _approval(vault: Vault, approval_id: str) -> store.Approval:
    now = vault.clock().timestamp()
    with vault.db.write() as conn:
        store.notice_expired(vault, conn, now)
        return store.get(conn, approval_id, now)


def _park(vault: Vault, held: _Open, claimed: Claim, words: list[str]) -> str:
    request = PairingRequest(
        invite_id=held.invite.id,
        sidecar=claimed.sidecar,
        words=words,
        host=claimed.host,
        policy=held.policy,
        policy_source=held.policy_source,
    )
    host = f" on {claimed.host!r}" if claimed.host else ""
    summary = (
        f"pair a sidecar{host} as new agent '{held.invite.agent}': check that it shows the "
        f"words {' '.join(words)}"
    )
    with vault.db.write() as conn:
        approval = store.park(
            vault,
            conn,
            agent=held.invite.agent,
            kind=Kind.PAIRING,
            request=request.model_dump(mode="json"),
            fingerprint=PeerKeys.from_text(claimed.sidecar).rid,
            summary=summary,
            rule=None,
        )
        notify.on_approval(vault, conn, approval)
    logger.info("pairing %s parked for agent %s", approval.id, held.invite.agent)
    return approval.id


def _refuse(vault: Vault, sender: str, status: ClaimStatus, message: str) -> ClaimAnswer:
    with vault.db.write() as conn:
        vault.audit(
            conn,
            actor=f"relay:{sender[:12]}",
            action="relay.pairing",
            target="invite",
            outcome=Outcome.DENIED,
            details={"reason": status, "message": message},
        )
    return ClaimAnswer(status=status, message=message)


def complete(vault: Vault, agent: str, request: PairingRequest) -> dict[str, Any]:
    """Make the paired agent (run when the owner approves the pairing, words checked).

    Raises:
        AlreadyExistsError: an agent of that name was made meanwhile.
    """
    keys = PeerKeys.from_text(request.sidecar)
    if request.policy is not None:
        policies.validated(vault, request.policy, source=request.policy_source or "policy")
    view, _ = agents.add_agent(vault, agent, public_key=keys.sign.hex(), with_token=False)
    if request.policy is not None:
        policies.set_policy(vault, agent, request.policy, source=request.policy_source or "policy")
    with vault.db.write() as conn:
        sealed_state.write_setting(vault, conn, SIDECAR_SETTING + agent, keys.to_text())
        vault.audit(
            conn,
            actor="owner",
            action="agent.pair",
            target=f"agent:{agent}",
            outcome=Outcome.SUCCESS,
            details={"agent": agent, "sidecar": keys.rid, "host": request.host[:100]},
        )
    return {"agent": view.name, "sidecar": keys.rid, "status": "paired"}


RELAYED_MARK_S: Final = 900.0  # longer than a sidecar retries one request (REQUEST_DEADLINE_S)


def mark_relayed(vault: Vault, agent: str, sender: str, request_id: str) -> bool:
    """Mark a sidecar's request as run (before it runs); False if it was marked already.

    Kept in the database (the nonces table, as signed requests' nonces are), so a retry after
    this process restarted is not run a second time.
    """
    now = vault.clock().timestamp()
    with vault.db.write() as conn:
        conn.execute(delete(t.nonces).where(t.nonces.c.expires < now))
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(t.nonces).values(
                        agent=agent,
                        nonce=f"relay:{sender[:32]}:{request_id}"[:128],
                        expires=now + RELAYED_MARK_S,
                    )
                )
        except SqlIntegrityError:
            return False
    return True


def check_words(approval: store.Approval, typed: str | None) -> bool:
    """Whether `typed` are the pairing's words (any case and separators)."""
    want = approval.request.get("words")
    return typed is not None and isinstance(want, list) and normalise_words(typed) == want


def sidecar_binding(vault: Vault, sender: str) -> tuple[str, PeerKeys] | None:
    """The agent a sidecar with routing id `sender` was paired as, and the sidecar's keys,
    whatever the agent's state; None if no sealed pairing names that sidecar."""
    with vault.db.read() as conn:
        rows = conn.execute(
            select(t.settings).where(t.settings.c.key.startswith(SIDECAR_SETTING))
        ).all()
    for row in rows:
        try:
            keys = PeerKeys.from_text(row.value)
        except ValueError:
            continue
        if keys.rid != sender:
            continue
        if sealed_state.setting_seal_state(vault, row) is not Seal.SEALED:
            return None  # written outside keysafe: never a way in
        return row.key[len(SIDECAR_SETTING) :], keys
    return None


def sidecar_agent(vault: Vault, sender: str) -> tuple[str, PeerKeys] | None:
    """`sidecar_binding`, only while the agent is not revoked and still has the sidecar's key.

    Read on every message, so a revoked agent's sidecar is cut off at its next one; a paused
    agent's requests still reach the gate (which refuses them, saying the agent is paused).
    """
    bound = sidecar_binding(vault, sender)
    if bound is None:
        return None
    agent, keys = bound
    with vault.db.read() as conn:
        row = conn.execute(select(t.agents).where(t.agents.c.name == agent)).first()
    if row is None or row.status == "revoked" or row.public_key != keys.sign.hex():
        return None
    return bound
