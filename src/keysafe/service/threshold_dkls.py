"""Agent + user (or owner + recovery) signing on an EVM 2-of-3 wallet: DKLs23 over three requests.

  1. POST /v1/agent/threshold/commit     → a fresh session id (the signing nonce), in memory
  2. POST /v1/agent/threshold/exchange   the agent's round 1 and the transaction → the vault's
     rounds 1 and 2 (nothing here lets the agent sign: the vault's round 3 never leaves it)
  3. sign_transaction through the gate with the agent's rounds 2 and 3: only where a plain
     wallet would open its key, `DklsCosigner.cosign` runs the vault's round 3 and the final check.

The vault hashes the transaction itself in steps 2 and 3 and they must agree; the session binds
that hash, so the agent cannot get a signature over anything the policy did not judge. A failed
check that guards a pair's OT state bans the pair for good (threshold.md §2.2).
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from keysafe.audit.outcome import Outcome
from keysafe.errors import MalformedRequestError, PolicyDeniedError
from keysafe.mpc.dkls import signing as dkls_signing
from keysafe.mpc.dkls.errors import DklsAbort
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER
from keysafe.service import threshold_state as state
from keysafe.service.models import RecordKind
from keysafe.service.record_meta import ThresholdWallet, Wallet
from keysafe.service.threshold_records import require_active_agent, rewrite_meta, vault_share
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)


def dkls_open(vault: Vault, wallet: ThresholdWallet, holder: str) -> dict[str, Any]:
    """Step 1: a fresh session for one signature by `holder` (an agent, or the owner)."""
    persist_bans(vault)  # one a parked approval's failed check left in memory, if any
    _refuse_banned(vault, wallet, AGENT if holder != state.OWNER else RECOVERY)
    sid = secrets.token_bytes(32)
    with state.LOCK:
        table = state.dkls_table(vault)
        state.admit(table.values(), holder, "unused signing sessions")
        table[sid] = state.DklsSession(
            wallet.name, holder, wallet.meta.generation, time.monotonic() + state.NONCE_TTL_S
        )
    return {
        "session_id": sid.hex(),
        "wallet": wallet.name,
        "identifier": USER,
        "protocol": "dkls23",
        "expires_in": state.NONCE_TTL_S,
    }


def persist_bans(vault: Vault) -> None:
    """Write the bans a failed check recorded into the wallets' records. A check can fail
    inside the gate's write transaction, where the record cannot be rewritten, so the ban is
    enforced from memory at once and written here, after that transaction (`through_gate`)."""
    with state.LOCK:
        pending = sorted(state.pending_bans(vault))
    for name, partner in pending:
        # Read, open and rewrite in one write transaction: a refresh committing in between
        # must not be overwritten with the old share and meta.
        with vault.db.write() as conn:
            info = vault.find_record(conn, RecordKind.WALLET, name)
            wallet = None if info is None else Wallet.of(info).as_threshold()
            if wallet is not None and partner not in wallet.meta.banned:
                rewrite_meta(
                    vault, conn, wallet, {"banned": sorted({*wallet.meta.banned, partner})}
                )
                vault.audit(
                    conn,
                    actor="system",
                    action="wallet.threshold-ban",
                    target=f"wallet:{name}",
                    outcome=Outcome.SUCCESS,
                    details={"name": name, "party": partner, "version": wallet.meta.generation},
                )
        with state.LOCK:
            state.pending_bans(vault).discard((name, partner))


def _refuse_banned(vault: Vault, wallet: ThresholdWallet, partner: int) -> None:
    with state.LOCK:
        pending = (wallet.name, partner) in state.pending_bans(vault)
    if pending or partner in wallet.meta.banned:
        side = "agent" if partner == AGENT else "recovery file"
        raise PolicyDeniedError(
            f"Wallet '{wallet.name}': the {side}'s share failed a DKLs23 check with the vault "
            "before, so the vault no longer signs with it.",
            next_step="reshare the wallet with the other two parties (`keysafe wallet refresh`), "
            "which gives every party a new share and new pair state.",
        )


def _take_session(
    vault: Vault, sid: bytes, holder: str, wallet: str, *, exchanged: bool
) -> state.DklsSession:
    """Remove and return `holder`'s session: each step uses it once."""
    with state.LOCK:
        table = state.dkls_table(vault)
        session_ = table.get(sid)
        if (
            session_ is not None
            and session_.agent == holder
            and session_.wallet == wallet
            and (session_.state is not None) == exchanged
        ):
            del table[sid]
            return session_
    raise MalformedRequestError(
        "The threshold signing session is unknown, used, expired, or not this agent's.",
        next_step="start again from a fresh session (the client does this per signature).",
    )


def _dkls_abort(vault: Vault, wallet: ThresholdWallet, exc: DklsAbort, partner: int) -> NoReturn:
    """A failed check: name the partner, and if the check guards the pair's OT state, ban the
    pair for good (a selective failure there can leak bits of it; threshold.md §2.2)."""
    if exc.ban and exc.culprit == partner:
        with state.LOCK:
            state.pending_bans(vault).add((wallet.name, partner))
            # sessions already exchanged with that share die too: each is one more probe
            sessions = state.dkls_table(vault)
            for sid in [s for s, p in sessions.items() if p.wallet == wallet.name]:
                del sessions[sid]
        logger.warning(
            "wallet %s: party %d banned after a failed DKLs23 check", wallet.name, partner
        )
    side = "recovery file" if partner == RECOVERY else "agent"
    raise MalformedRequestError(
        f"The {side}'s part of the threshold signature is invalid: {exc.what}",
        next_step="nothing was signed"
        + ("; the vault will not sign with this share again until a reshare." if exc.ban else "."),
        culprit=exc.culprit if exc.culprit is not None else partner,
        **({"banned": True} if exc.ban else {}),
    )


@dataclass(frozen=True, slots=True)
class DklsCosigner:
    """The vault's side of one DKLs23 signature on `wallet`, steps 2 and 3. `holder` holds the
    session: an agent (partner AGENT, its agent share), or the owner (partner RECOVERY, the
    recovery file)."""

    vault: Vault
    holder: str
    wallet: ThresholdWallet
    partner: int = AGENT

    def exchange(self, message_hash: bytes, fields: dict[str, Any]) -> dict[str, str]:
        """Step 2: the vault's rounds 1 and 2 for the session in `fields` (`session_id`, the
        partner's `round1` and `verifying_share`), over `message_hash`, which the caller
        computed itself.

        Raises:
            MalformedRequestError: an unknown or used session, or the agent's round 1 is
                invalid (culprit 1; an OT-extension failure also bans the pair).
            PolicyDeniedError: the pair is banned.
        """
        vault, wallet, partner = self.vault, self.wallet, self.partner
        vault.require_unlocked()
        sid = state.HEX.read(fields, "session_id")
        session_ = _take_session(vault, sid, self.holder, wallet.name, exchanged=False)
        if partner == AGENT:
            require_active_agent(vault, self.holder)
        _refuse_banned(vault, wallet, partner)
        side = "agent share" if partner == AGENT else "recovery file"
        if session_.generation != wallet.meta.generation:
            raise MalformedRequestError(
                "The wallet's shares were refreshed since this session was opened.",
                next_step=f"open a fresh session with the new {side}.",
            )
        if fields.get("verifying_share") != wallet.public().verifying_shares[partner].hex():
            raise MalformedRequestError(
                f"The {side} is not the wallet's current one (from before a refresh?); nothing "
                "was run with it.",
                next_step=f"use the {side} the last `keysafe wallet refresh` wrote.",
            )
        share = vault_share(vault, wallet)
        run, first = dkls_signing.round1(share.key, share.pairs[partner], message_hash, sid)
        try:
            second = dkls_signing.round2(run, state.BASE64.read(fields, "round1"))
        except DklsAbort as exc:
            try:
                _dkls_abort(vault, wallet, exc, partner)
            finally:
                persist_bans(vault)  # no transaction is open here
        session_.state, session_.message_hash = run, message_hash
        session_.expires = time.monotonic() + state.NONCE_TTL_S  # parked with an approval
        with state.LOCK:
            state.dkls_table(vault)[sid] = session_
        return {
            "session_id": sid.hex(),
            "round1": base64.b64encode(first).decode(),
            "round2": base64.b64encode(second).decode(),
        }

    def cosign(self, message_hash: bytes, fields: dict[str, Any]) -> dkls_signing.Signature:
        """Step 3, after the policy allowed the transaction: the vault's round 3 and the final
        combination; returns a signature that recovers the wallet's key. The session is
        consumed first, whatever happens next.

        Raises:
            MalformedRequestError: the session is unknown or used, the transaction is not the
                one the session was opened for, or the agent's rounds fail a check (culprit 1;
                the multiplication, Γ and final checks also ban the pair).
        """
        vault, wallet, partner = self.vault, self.wallet, self.partner
        sid = state.HEX.read(fields, "session_id")
        session_ = _take_session(vault, sid, self.holder, wallet.name, exchanged=True)
        _refuse_banned(vault, wallet, partner)
        if session_.generation != wallet.meta.generation:
            raise MalformedRequestError(
                "The wallet's shares were refreshed since this session was opened.",
                next_step="sign again with the new share.",
            )
        if session_.message_hash != message_hash:
            raise MalformedRequestError(
                "This transaction is not the one the threshold session was opened for.",
                next_step="run the whole signature again for this transaction.",
                culprit=partner,
            )
        assert session_.state is not None
        try:
            dkls_signing.round3(session_.state, state.BASE64.read(fields, "round2"))
            return dkls_signing.finish(session_.state, state.BASE64.read(fields, "round3"))
        except DklsAbort as exc:
            _dkls_abort(vault, wallet, exc, partner)
