"""Threshold wallets: 2-of-3 wallets whose private key never exists: FROST(Ed25519) on Solana,
DKLs23 threshold ECDSA on EVM.

Shares: agent (1, a file on the agent's host, sealed under a share key only that host holds),
user (2, this vault, a `critical` record), recovery (3, an offline file under a recovery
passphrase). Any two sign; the owner alone (user) cannot.

Rules this module enforces:
- Agent + user signing is RFC 9591 with the vault's commitment preprocessed: the agent asks for
  a vault commitment (`preprocess`), builds the signing package for the transaction it made
  itself, signs its share and sends it with the transaction. The vault decodes the transaction,
  applies the policy exactly as for any wallet (allow / ask / deny, budgets, approvals,
  idempotency), verifies the agent's share (a bad one is named), adds its own share and returns
  the transaction signed and verified. The vault's nonces live only in memory, are used once,
  expire, and are dropped when the vault locks: they can never be reused, even across a crash.
  EVM wallets sign with DKLs23 the same way (`service/threshold_dkls.py`): a session, an
  exchange of rounds, then the vault finishes inside the gated request.

The rest of 2-of-3 wallets lives beside this module: the vault's share as a record
(`threshold_records.py`), the in-memory nonces and sessions (`threshold_state.py`), the owner
with the recovery file (`threshold_owner.py`) and agent + recovery with no vault
(`threshold_offline.py`).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from keysafe.errors import MalformedRequestError, NotFoundError
from keysafe.mpc.frost import signing
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import ED25519, SECP256K1
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER
from keysafe.service import threshold_state as state
from keysafe.service.record_meta import ThresholdWallet
from keysafe.service.threshold_dkls import dkls_open
from keysafe.service.threshold_records import (
    refuse_restored,
    require_active_agent,
    threshold_wallet,
    vault_share,
)
from keysafe.vault.vault import Vault


def preprocess(vault: Vault, agent: str, wallet: str) -> dict[str, Any]:
    """The vault's round-one commitment for one future signature by `agent` with `wallet`."""
    vault.require_unlocked()
    found = threshold_wallet(vault, wallet)
    if found.meta.agent != agent:
        raise NotFoundError(
            f"No threshold wallet '{wallet[:64]}' shared with this agent.",
            next_step="see list_capabilities for the wallets you may use.",
        )
    require_active_agent(vault, agent)
    return commit(vault, found, agent)


def commit(vault: Vault, wallet: ThresholdWallet, holder: str) -> dict[str, Any]:
    """Fresh vault nonces for one signature with `holder` (an agent, or the owner), kept in
    memory under a new session id; returns the commitment to send. For an EVM (DKLs23)
    wallet: a fresh session only, the protocol runs in `DklsCosigner`."""
    refuse_restored(wallet)
    if wallet.public().suite is SECP256K1:
        return dkls_open(vault, wallet, holder)
    nonces, commitment = signing.commit(vault_share(vault, wallet).key)
    sid = secrets.token_bytes(32)
    with state.LOCK:
        table = state.frost_table(vault)
        state.admit(table.values(), holder, "unused commitments")
        table[sid] = state.Preprocessed(
            wallet.name,
            holder,
            wallet.meta.generation,
            nonces,
            commitment,
            time.monotonic() + state.NONCE_TTL_S,
        )
    return {
        "session_id": sid.hex(),
        "wallet": wallet.name,
        "identifier": USER,
        "hiding": commitment.hiding.hex(),
        "binding": commitment.binding.hex(),
        "expires_in": state.NONCE_TTL_S,
    }


def cosign(
    vault: Vault, agent: str, wallet: ThresholdWallet, message: bytes, fields: dict[str, Any]
) -> bytes:
    """The vault's part, after the policy allowed the transaction: check the agent's share,
    add the user's, aggregate; returns the verified 64-byte signature. The preprocessed nonces
    are consumed first, whatever happens next."""
    return frost_cosign(vault, agent, wallet, message, fields, partner=AGENT)


def frost_cosign(
    vault: Vault,
    holder: str,
    wallet: ThresholdWallet,
    message: bytes,
    fields: dict[str, Any],
    *,
    partner: int,
) -> bytes:
    """Consume `holder`'s session, verify `partner`'s share (named if bad), add the vault's."""
    sid = state.HEX.read(fields, "session_id")
    whose = "the owner's" if holder == state.OWNER else "this agent's"
    with state.LOCK:
        table = state.frost_table(vault)
        pre = table.get(sid)
        if pre is not None and pre.agent == holder and pre.wallet == wallet.name:
            del table[sid]  # consumed before anything else: used once, whatever happens next
        else:
            pre = None
    if pre is None:
        raise MalformedRequestError(
            f"The threshold session is unknown, used, expired, or not {whose}.",
            next_step="ask for a fresh vault commitment (the client does this per signature).",
        )
    side = "recovery" if partner == RECOVERY else "agent"
    if pre.generation != wallet.meta.generation:
        raise MalformedRequestError(
            "The wallet's shares were refreshed since this commitment was made.",
            next_step=f"ask for a fresh commitment with the new {side} share.",
        )
    public = wallet.public()
    try:
        theirs = signing.SigningCommitment(
            partner,
            ED25519.deserialize_element(state.HEX.read(fields, "hiding"), what="hiding commitment"),
            ED25519.deserialize_element(
                state.HEX.read(fields, "binding"), what="binding commitment"
            ),
        )
        commitments = tuple(sorted((theirs, pre.commitment), key=lambda c: c.identifier))
        share = state.HEX.read(fields, "share")
        signing.verify_signature_share(public, partner, theirs, share, commitments, message)
    except FrostError as exc:
        raise MalformedRequestError(
            f"The {'recovery file' if partner == RECOVERY else 'agent'}'s part of the threshold "
            f"signature is invalid: {exc.what}",
            next_step=f"nothing was signed; the {side} share may not belong to this wallet.",
            culprit=partner,
        ) from None
    user = vault_share(vault, wallet).key
    mine = signing.sign(user, pre.nonces, message, commitments)
    return signing.aggregate(public, commitments, message, {partner: share, USER: mine})
