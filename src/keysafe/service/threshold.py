"""Threshold wallets: 2-of-3 wallets whose private key never exists: FROST(Ed25519) on Solana,
DKLs23 threshold ECDSA on EVM.

Shares: agent (1, a file on the agent's host, sealed under a share key only that host holds),
user (2, this vault, a `critical` record), recovery (3, an offline file under a recovery
passphrase). Any two sign; the owner alone (user) cannot.

Rules this module enforces:
- Key generation and reshares run with each party in its own process (`service/keygen.py`):
  this module only keeps the vault's share when a ceremony ends (`store_new_wallet`,
  `replace_vault_share`). No code path computes the group key.
- Agent + user signing is RFC 9591 with the vault's commitment preprocessed: the agent asks for
  a vault commitment (`preprocess`), builds the signing package for the transaction it made
  itself, signs its share and sends it with the transaction. The vault decodes the transaction,
  applies the policy exactly as for any wallet (allow / ask / deny, budgets, approvals,
  idempotency), verifies the agent's share (a bad one is named), adds its own share and returns
  the transaction signed and verified. The vault's nonces live only in memory, are used once,
  expire, and are dropped when the vault locks: they can never be reused, even across a crash.
  EVM wallets sign with DKLs23 the same way: a session (`_dkls_open`), an exchange of rounds,
  then the vault finishes inside the gated request.
- User + recovery (the owner with the recovery file) sign as two processes: the vault commits
  and co-signs here (`owner_commit`, `owner_cosign`), the recovery share signs in the owner's
  CLI, exactly as the agent's side does. Agent + recovery sign without any vault
  (`sign_without_vault`), the agent's share in a child process.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn, Protocol

from eth_account.messages import SignableMessage
from solders.pubkey import Pubkey
from sqlalchemy import Connection

from keysafe.chains import Chain
from keysafe.chains.addresses import evm_address_from_public
from keysafe.chains.evm import signing as evm_signing
from keysafe.chains.evm import tx as evm_tx
from keysafe.chains.evm.intents import personal_message_bytes
from keysafe.errors import KeysafeError, MalformedRequestError, NotFoundError, PolicyDeniedError
from keysafe.mpc import share_file
from keysafe.mpc.dkls import cosigner as dkls_cosigner
from keysafe.mpc.dkls import signing as dkls_signing
from keysafe.mpc.dkls.errors import DklsAbort
from keysafe.mpc.frost import cosigner, party, session, signing
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import ED25519, SECP256K1
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER, KeyPackage, PublicKeyPackage
from keysafe.service.agents import get_agent
from keysafe.service.models import DataClass, RecordKind, SecretBytes
from keysafe.service.vault_admin import check_new_passphrase
from keysafe.vault.records import RecordInfo
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

THRESHOLD: Final = "2-of-3"
NONCE_TTL_S: Final = 15 * 60  # outlives an approval (5 min by default) parked with the request
MAX_OPEN_PER_AGENT: Final = 32
_NONCES: Final = "frost_nonces"
_DKLS_SESSIONS: Final = "dkls_sessions"
_DKLS_BANS: Final = "dkls_bans"
_OWNER: Final = "(owner)"  # the owner's sessions in the nonce table (no agent has this name)
_LOCK = threading.Lock()  # guards vault.volatile's nonce table across request threads


def is_threshold(info: RecordInfo) -> bool:
    return info.meta.get("source") == "threshold"


def public_of(info: RecordInfo) -> PublicKeyPackage:
    return PublicKeyPackage.from_dict(info.meta["public"])


def _address(public: PublicKeyPackage) -> str:
    if public.suite is SECP256K1:
        return evm_address_from_public(public.group_public_key)
    return str(Pubkey.from_bytes(public.group_public_key))


# -- key generation -----------------------------------------------------------------------------


def store_new_wallet(
    vault: Vault, name: str, chain: Chain, agent: str, share: share_file.Share, *,
    action: str = "wallet.create",
) -> RecordInfo:  # fmt: skip
    """Keep the vault's share of a new 2-of-3 wallet (generation 1 on this vault) and audit
    `action` (`wallet.create`, or `wallet.reshare` for a wallet rebuilt here).

    Raises:
        AlreadyExistsError: a wallet of that name exists.
    """
    public = share.key.public
    meta = {
        "chain": str(chain), "address": _address(public), "source": "threshold",
        "threshold": THRESHOLD, "agent": agent, "public": public.to_dict(), "generation": 1,
    }  # fmt: skip
    return _store_user_share(vault, name, meta, share, replace=False, action=action)


def replace_vault_share(vault: Vault, info: RecordInfo, share: share_file.Share) -> RecordInfo:
    """Keep the vault's new share after a reshare of wallet `info` (same group key, one
    generation up; audited `wallet.reshare`) and drop every session and ban made for the old
    shares, which can never sign again.

    Raises:
        FrostError: the new share is for another group key.
    """
    wallet = info.name
    public = share.key.public
    if public.group_public_key != public_of(info).group_public_key:
        raise FrostError("resharing changed the group key; nothing was replaced")
    # New shares, new pair state for every pair: an old ban has nothing left to protect.
    meta = {k: v for k, v in info.meta.items() if k not in ("banned", "restored")} | {
        "public": public.to_dict(), "generation": int(info.meta.get("generation", 1)) + 1,
    }  # fmt: skip
    stored = _store_user_share(vault, wallet, meta, share, replace=True, action="wallet.reshare")
    with _LOCK:  # commitments and sessions made for the old shares can never be used now
        table = _table(vault)
        for sid_old in [s for s, p in table.items() if p.wallet == wallet]:
            del table[sid_old]
        sessions = _dkls_table(vault)
        for sid_old in [s for s, p in sessions.items() if p.wallet == wallet]:
            del sessions[sid_old]
        _pending_bans(vault).difference_update({(wallet, AGENT), (wallet, RECOVERY)})
    return stored


def check_share_key(share_key: SecretBytes, token: SecretBytes) -> None:
    check_new_passphrase(share_key, what="agent share key (KEYSAFE_AGENT_SHARE_KEY)")
    if hmac.compare_digest(bytes(share_key.reveal()), bytes(token.reveal())):
        raise MalformedRequestError(
            "The agent's share key must not be its token: the vault sees the token on every "
            "request, and the share key is what keeps the vault from opening the agent's share.",
            next_step="choose a separate secret for KEYSAFE_AGENT_SHARE_KEY and give it only to "
            "the agent's host.",
        )


def _store_user_share(
    vault: Vault, name: str, meta: dict[str, Any], key: share_file.Share, *, replace: bool,
    action: str, actor: str = "owner",
) -> RecordInfo:  # fmt: skip
    plain = SecretBytes(key.secret_bytes())
    with plain, vault.db.write() as conn:
        info = vault.put_record(
            conn, kind=RecordKind.WALLET, name=name, data_class=DataClass.CRITICAL, meta=meta,
            plaintext=plain, replace=replace,
        )  # fmt: skip
        vault.audit(
            conn, actor=actor, action=action, target=f"wallet:{name}", outcome="success",
            details={"name": name, "chain": meta["chain"], "address": meta["address"],
                     "source": "threshold", "agent": meta["agent"],
                     "version": int(meta["generation"])},
        )  # fmt: skip
    return info


def vault_share(vault: Vault, info: RecordInfo) -> share_file.Share:
    with vault.db.read() as conn, vault.open_record(conn, info) as plain:
        return share_file.Share.from_secret_bytes(bytes(plain.reveal()), USER, public_of(info))


def _user_key(vault: Vault, info: RecordInfo) -> KeyPackage:
    return vault_share(vault, info).key


def threshold_wallet(vault: Vault, name: str) -> RecordInfo:
    with vault.db.read() as conn:
        info = vault.get_record(conn, RecordKind.WALLET, name)
    if not is_threshold(info):
        raise MalformedRequestError(
            f"Wallet '{name}' is not a threshold wallet.",
            next_step="this command is for wallets made with --threshold 2-of-3.",
        )
    return info


# -- agent + user: the vault's preprocessed commitment ------------------------------------------


@dataclass(frozen=True, slots=True)
class _Preprocessed:
    wallet: str
    agent: str
    generation: int
    nonces: signing.SigningNonces
    commitment: signing.SigningCommitment
    expires: float


def _table(vault: Vault) -> dict[bytes, _Preprocessed]:
    table: dict[bytes, _Preprocessed] = vault.volatile.setdefault(_NONCES, {})
    now = time.monotonic()
    for sid in [s for s, p in table.items() if p.expires <= now]:
        del table[sid]
    return table


def discard(vault: Vault, agent: str, fields: dict[str, Any] | None) -> None:
    """Drop a commitment the agent's request will not use (it was refused before the vault's
    part): an unused commitment must not count against the agent for its 15 minutes."""
    if not fields or not isinstance(fields.get("session_id"), str):
        return
    try:
        sid = bytes.fromhex(fields["session_id"])
    except ValueError:
        return
    with _LOCK:
        table = _table(vault)
        if sid in table and table[sid].agent == agent:
            del table[sid]
        sessions = _dkls_table(vault)
        if sid in sessions and sessions[sid].agent == agent:
            del sessions[sid]


def preprocess(vault: Vault, agent: str, wallet: str) -> dict[str, Any]:
    """The vault's round-one commitment for one future signature by `agent` with `wallet`."""
    vault.require_unlocked()
    info = threshold_wallet(vault, wallet)
    if info.meta.get("agent") != agent:
        raise NotFoundError(
            f"No threshold wallet '{wallet[:64]}' shared with this agent.",
            next_step="see list_capabilities for the wallets you may use.",
        )
    with vault.db.read() as conn:
        if get_agent(conn, agent).status != "active":
            raise PolicyDeniedError(
                f"Agent '{agent}' is paused.", next_step="ask the owner to resume it."
            )
    return _commit(vault, info, agent)


def hold_restored(vault: Vault, conn: Connection) -> list[str]:
    """Mark every 2-of-3 wallet of a vault just rebuilt from a backup as restored: it signs
    with nobody until a refresh. The backup may predate an eviction (a newer generation, the
    old agent share and token valid again here), and only a refresh with the current recovery
    file proves it does not. Runs inside the restore's transaction. Returns the wallets."""
    held = []
    for info in vault.list_records(conn, RecordKind.WALLET):
        if not is_threshold(info) or info.meta.get("restored"):
            continue
        with vault.open_record(conn, info) as plain:
            material = SecretBytes(bytearray(plain.reveal()))
        with material:
            vault.put_record(
                conn, kind=RecordKind.WALLET, name=info.name, data_class=DataClass.CRITICAL,
                meta=dict(info.meta) | {"restored": True}, plaintext=material, replace=True,
            )  # fmt: skip
        held.append(info.name)
    return held


def _refuse_restored(info: RecordInfo) -> None:
    if info.meta.get("restored"):
        raise PolicyDeniedError(
            f"Wallet '{info.name}' was rebuilt from a backup, which may predate a refresh that "
            "evicted a share; it signs with nobody until it is refreshed.",
            next_step=f"run `keysafe wallet refresh {info.name}` with the current recovery file "
            "(if the recovery file is newer than the backup, move the funds with `keysafe "
            "wallet recover-sign` and the current agent share file instead).",
        )


class _Held(Protocol):
    @property
    def agent(self) -> str:  # who holds it: an agent's name, or _OWNER
        ...


def _admit(held: Iterable[_Held], holder: str, what: str) -> None:
    """Refuse a new session or commitment past the per-holder cap (call with _LOCK held)."""
    if sum(1 for p in held if p.agent == holder) >= MAX_OPEN_PER_AGENT:
        who = "The owner" if holder == _OWNER else f"Agent '{holder}'"
        raise MalformedRequestError(
            f"{who} already holds {MAX_OPEN_PER_AGENT} {what}.",
            next_step="use them (or wait 15 minutes for them to expire).",
        )


def _commit(vault: Vault, info: RecordInfo, holder: str) -> dict[str, Any]:
    """Fresh vault nonces for one signature with `holder` (an agent, or `_OWNER`), kept in
    memory under a new session id; returns the commitment to send. For an EVM (DKLs23)
    wallet: a fresh session only, the protocol runs in `dkls_exchange` and `cosign_ecdsa`."""
    _refuse_restored(info)
    if public_of(info).suite is SECP256K1:
        return _dkls_open(vault, info, holder)
    nonces, commitment = signing.commit(_user_key(vault, info))
    sid = secrets.token_bytes(32)
    with _LOCK:
        table = _table(vault)
        _admit(table.values(), holder, "unused commitments")
        table[sid] = _Preprocessed(
            info.name, holder, int(info.meta.get("generation", 1)), nonces, commitment,
            time.monotonic() + NONCE_TTL_S,
        )  # fmt: skip
    return {
        "session_id": sid.hex(), "wallet": info.name, "identifier": USER,
        "hiding": commitment.hiding.hex(), "binding": commitment.binding.hex(),
        "expires_in": NONCE_TTL_S,
    }  # fmt: skip


def _hex(fields: dict[str, Any], name: str) -> bytes:
    value = fields.get(name)
    try:
        if not isinstance(value, str):
            raise ValueError
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedRequestError(
            f"threshold.{name} is missing or not hex.",
            next_step="send the fields keysafe's agent client builds: session_id, hiding, "
            "binding, share.",
        ) from None


def cosign(
    vault: Vault, agent: str, info: RecordInfo, message: bytes, fields: dict[str, Any]
) -> bytes:
    """The vault's part, after the policy allowed the transaction: check the agent's share,
    add the user's, aggregate; returns the verified 64-byte signature. The preprocessed nonces
    are consumed first, whatever happens next."""
    return _cosign(vault, agent, info, message, fields, partner=AGENT)


def _cosign(
    vault: Vault,
    holder: str,
    info: RecordInfo,
    message: bytes,
    fields: dict[str, Any],
    *,
    partner: int,
) -> bytes:
    """Consume `holder`'s session, verify `partner`'s share (named if bad), add the vault's."""
    sid = _hex(fields, "session_id")
    whose = "the owner's" if holder == _OWNER else "this agent's"
    with _LOCK:
        table = _table(vault)
        pre = table.get(sid)
        if pre is not None and pre.agent == holder and pre.wallet == info.name:
            del table[sid]  # consumed before anything else: used once, whatever happens next
        else:
            pre = None
    if pre is None:
        raise MalformedRequestError(
            f"The threshold session is unknown, used, expired, or not {whose}.",
            next_step="ask for a fresh vault commitment (the client does this per signature).",
        )
    side = "recovery" if partner == RECOVERY else "agent"
    if pre.generation != int(info.meta.get("generation", 1)):
        raise MalformedRequestError(
            "The wallet's shares were refreshed since this commitment was made.",
            next_step=f"ask for a fresh commitment with the new {side} share.",
        )
    public = public_of(info)
    try:
        theirs = signing.SigningCommitment(
            partner,
            ED25519.deserialize_element(_hex(fields, "hiding"), what="hiding commitment"),
            ED25519.deserialize_element(_hex(fields, "binding"), what="binding commitment"),
        )
        commitments = tuple(sorted((theirs, pre.commitment), key=lambda c: c.identifier))
        share = _hex(fields, "share")
        signing.verify_signature_share(public, partner, theirs, share, commitments, message)
    except FrostError as exc:
        raise MalformedRequestError(
            f"The {'recovery file' if partner == RECOVERY else 'agent'}'s part of the threshold "
            f"signature is invalid: {exc.what}",
            next_step=f"nothing was signed; the {side} share may not belong to this wallet.",
            culprit=partner,
        ) from None
    user = _user_key(vault, info)
    mine = signing.sign(user, pre.nonces, message, commitments)
    return signing.aggregate(public, commitments, message, {partner: share, USER: mine})


# -- agent + user on an EVM wallet: DKLs23 over three requests ---------------------------------
#
#   1. POST /v1/agent/threshold/commit     → a fresh session id (the signing nonce), in memory
#   2. POST /v1/agent/threshold/exchange   the agent's round 1 and the transaction → the vault's
#      rounds 1 and 2 (nothing here lets the agent sign: the vault's round 3 never leaves it)
#   3. sign_transaction through the gate with the agent's rounds 2 and 3: only where a plain
#      wallet would open its key, `cosign_ecdsa` runs the vault's round 3 and the final check.
#
# The vault hashes the transaction itself in steps 2 and 3 and they must agree; the session
# binds that hash, so the agent cannot get a signature over anything the policy did not judge.


@dataclass(slots=True)
class _DklsSession:
    wallet: str
    agent: str
    generation: int
    expires: float
    message_hash: bytes = b""
    state: dkls_signing.SigningState | None = None


def _dkls_table(vault: Vault) -> dict[bytes, _DklsSession]:
    table: dict[bytes, _DklsSession] = vault.volatile.setdefault(_DKLS_SESSIONS, {})
    now = time.monotonic()
    for sid in [s for s, p in table.items() if p.expires <= now]:
        del table[sid]
    return table


def _dkls_open(vault: Vault, info: RecordInfo, holder: str) -> dict[str, Any]:
    persist_bans(vault)  # one a parked approval's failed check left in memory, if any
    _refuse_banned(vault, info, AGENT if holder != _OWNER else RECOVERY)
    sid = secrets.token_bytes(32)
    with _LOCK:
        table = _dkls_table(vault)
        _admit(table.values(), holder, "unused signing sessions")
        table[sid] = _DklsSession(
            info.name, holder, int(info.meta.get("generation", 1)),
            time.monotonic() + NONCE_TTL_S,
        )  # fmt: skip
    return {
        "session_id": sid.hex(), "wallet": info.name, "identifier": USER, "protocol": "dkls23",
        "expires_in": NONCE_TTL_S,
    }  # fmt: skip


def _pending_bans(vault: Vault) -> set[tuple[str, int]]:
    bans: set[tuple[str, int]] = vault.volatile.setdefault(_DKLS_BANS, set())
    return bans


def persist_bans(vault: Vault) -> None:
    """Write the bans a failed check recorded into the wallets' records. A check can fail
    inside the gate's write transaction, where the record cannot be rewritten, so the ban is
    enforced from memory at once and written here, after that transaction (`through_gate`)."""
    with _LOCK:
        pending = sorted(_pending_bans(vault))
    for wallet, partner in pending:
        # Read, open and rewrite in one write transaction: a refresh committing in between
        # must not be overwritten with the old share and meta.
        with vault.db.write() as conn:
            info = vault.find_record(conn, RecordKind.WALLET, wallet)
            if info is not None and partner not in info.meta.get("banned", []):
                with vault.open_record(conn, info) as plain:
                    material = SecretBytes(bytearray(plain.reveal()))
                with material:
                    vault.put_record(
                        conn, kind=RecordKind.WALLET, name=wallet, data_class=DataClass.CRITICAL,
                        meta=dict(info.meta) | {"banned": sorted({*info.meta.get("banned", []), partner})},
                        plaintext=material, replace=True,
                    )  # fmt: skip
                vault.audit(
                    conn, actor="system", action="wallet.threshold-ban", target=f"wallet:{wallet}",
                    outcome="success", details={"name": wallet, "party": partner,
                                                "version": int(info.meta.get("generation", 1))},
                )  # fmt: skip
        with _LOCK:
            _pending_bans(vault).discard((wallet, partner))


def _refuse_banned(vault: Vault, info: RecordInfo, partner: int) -> None:
    with _LOCK:
        pending = (info.name, partner) in _pending_bans(vault)
    if pending or partner in info.meta.get("banned", []):
        side = "agent" if partner == AGENT else "recovery file"
        raise PolicyDeniedError(
            f"Wallet '{info.name}': the {side}'s share failed a DKLs23 check with the vault "
            "before, so the vault no longer signs with it.",
            next_step="reshare the wallet with the other two parties (`keysafe wallet refresh`), "
            "which gives every party a new share and new pair state.",
        )


def _take_session(
    vault: Vault, sid: bytes, holder: str, wallet: str, *, exchanged: bool
) -> _DklsSession:
    """Remove and return `holder`'s session: each step uses it once."""
    with _LOCK:
        table = _dkls_table(vault)
        session_ = table.get(sid)
        if (
            session_ is not None and session_.agent == holder and session_.wallet == wallet
            and (session_.state is not None) == exchanged
        ):  # fmt: skip
            del table[sid]
            return session_
    raise MalformedRequestError(
        "The threshold signing session is unknown, used, expired, or not this agent's.",
        next_step="start again from a fresh session (the client does this per signature).",
    )


def _dkls_abort(vault: Vault, info: RecordInfo, exc: DklsAbort, partner: int) -> NoReturn:
    """A failed check: name the partner, and if the check guards the pair's OT state, ban the
    pair for good (a selective failure there can leak bits of it; threshold.md §2.2)."""
    if exc.ban and exc.culprit == partner:
        with _LOCK:
            _pending_bans(vault).add((info.name, partner))
            # sessions already exchanged with that share die too: each is one more probe
            sessions = _dkls_table(vault)
            for sid in [s for s, p in sessions.items() if p.wallet == info.name]:
                del sessions[sid]
        logger.warning("wallet %s: party %d banned after a failed DKLs23 check", info.name, partner)
    side = "recovery file" if partner == RECOVERY else "agent"
    raise MalformedRequestError(
        f"The {side}'s part of the threshold signature is invalid: {exc.what}",
        next_step="nothing was signed"
        + ("; the vault will not sign with this share again until a reshare." if exc.ban else "."),
        culprit=exc.culprit if exc.culprit is not None else partner,
        **({"banned": True} if exc.ban else {}),
    )


def _b64(fields: dict[str, Any], name: str) -> bytes:
    value = fields.get(name)
    try:
        if not isinstance(value, str):
            raise ValueError
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise MalformedRequestError(
            f"threshold.{name} is missing or not base64.",
            next_step="send the fields keysafe's agent client builds.",
        ) from None


def dkls_exchange(
    vault: Vault, agent: str, info: RecordInfo, message_hash: bytes, fields: dict[str, Any],
    *, partner: int = AGENT,
) -> dict[str, str]:  # fmt: skip
    """Step 2: the vault's rounds 1 and 2 for the session in `fields` (`session_id`, the
    partner's `round1` and `verifying_share`), over `message_hash`, which the caller computed
    itself. `agent` holds the session: an agent's name, or the owner (partner: recovery).

    Raises:
        MalformedRequestError: an unknown or used session, or the agent's round 1 is invalid
            (culprit 1; an OT-extension failure also bans the pair).
        PolicyDeniedError: the pair is banned.
    """
    vault.require_unlocked()
    sid = _hex(fields, "session_id")
    session_ = _take_session(vault, sid, agent, info.name, exchanged=False)
    if partner == AGENT:
        with vault.db.read() as conn:
            if get_agent(conn, agent).status != "active":
                raise PolicyDeniedError(
                    f"Agent '{agent}' is paused.", next_step="ask the owner to resume it."
                )
    _refuse_banned(vault, info, partner)
    side = "agent share" if partner == AGENT else "recovery file"
    if session_.generation != int(info.meta.get("generation", 1)):
        raise MalformedRequestError(
            "The wallet's shares were refreshed since this session was opened.",
            next_step=f"open a fresh session with the new {side}.",
        )
    if fields.get("verifying_share") != public_of(info).verifying_shares[partner].hex():
        raise MalformedRequestError(
            f"The {side} is not the wallet's current one (from before a refresh?); nothing was "
            "run with it.",
            next_step=f"use the {side} the last `keysafe wallet refresh` wrote.",
        )
    share = vault_share(vault, info)
    state, first = dkls_signing.round1(share.key, share.pairs[partner], message_hash, sid)
    try:
        second = dkls_signing.round2(state, _b64(fields, "round1"))
    except DklsAbort as exc:
        try:
            _dkls_abort(vault, info, exc, partner)
        finally:
            persist_bans(vault)  # no transaction is open here
    session_.state, session_.message_hash = state, message_hash
    session_.expires = time.monotonic() + NONCE_TTL_S  # parked with an approval, it must live
    with _LOCK:
        _dkls_table(vault)[sid] = session_
    return {
        "session_id": sid.hex(), "round1": base64.b64encode(first).decode(),
        "round2": base64.b64encode(second).decode(),
    }  # fmt: skip


def cosign_ecdsa(
    vault: Vault, agent: str, info: RecordInfo, message_hash: bytes, fields: dict[str, Any],
    *, partner: int = AGENT,
) -> dkls_signing.Signature:  # fmt: skip
    """Step 3, after the policy allowed the transaction: the vault's round 3 and the final
    combination; returns a signature that recovers the wallet's key. The session is consumed
    first, whatever happens next.

    Raises:
        MalformedRequestError: the session is unknown or used, the transaction is not the one
            the session was opened for, or the agent's rounds fail a check (culprit 1; the
            multiplication, Γ and final checks also ban the pair).
    """
    sid = _hex(fields, "session_id")
    session_ = _take_session(vault, sid, agent, info.name, exchanged=True)
    _refuse_banned(vault, info, partner)
    if session_.generation != int(info.meta.get("generation", 1)):
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
        dkls_signing.round3(session_.state, _b64(fields, "round2"))
        return dkls_signing.finish(session_.state, _b64(fields, "round3"))
    except DklsAbort as exc:
        _dkls_abort(vault, info, exc, partner)


# -- user + recovery: the owner's CLI holds the recovery share, this process the vault's ------


def owner_commit(vault: Vault, wallet: str) -> dict[str, Any]:
    """The vault's commitment for one signature the owner makes with the recovery file, with
    the wallet's public package so the owner's side can tell a stale recovery file."""
    vault.require_unlocked()
    info = threshold_wallet(vault, wallet)
    return _commit(vault, info, _OWNER) | {"public": info.meta["public"]}


def _owner_message_digest(message: str) -> tuple[SignableMessage, bytes]:
    """What `wallet sign-message` signs on EVM: personal_sign over the text (MetaMask's rule)."""
    return evm_signing.personal_digest(personal_message_bytes(message))


def owner_exchange(
    vault: Vault, wallet: str, message: str, fields: dict[str, Any]
) -> dict[str, str]:
    """Step 2 of the owner's EVM signature with the recovery file: the vault's rounds 1 and 2
    against the recovery side's round 1, over the message hashed here."""
    vault.require_unlocked()
    info = threshold_wallet(vault, wallet)
    digest = _owner_message_digest(message)[1]
    try:
        return dkls_exchange(vault, _OWNER, info, digest, fields, partner=RECOVERY)
    except KeysafeError as exc:
        _audit_owner_failure(vault, wallet, exc)
        raise


def recovery_start(
    wallet: str, answer: dict[str, Any], recovery: dict[str, Any], share: share_file.Share,
    message: str,
) -> tuple[dkls_signing.SigningState, dict[str, str]]:  # fmt: skip
    """The owner's side of an EVM signature (its CLI; no vault here): check the recovery share
    against the public package the vault sent, then round 1 over the message hashed here."""
    check_recovery(wallet, PublicKeyPackage.from_dict(answer["public"]), recovery, share.key)
    digest = _owner_message_digest(message)[1]
    return dkls_cosigner.start(share.key, share.pairs[USER], answer, digest)


def recovery_finish(state: dkls_signing.SigningState, rounds: dict[str, Any]) -> dict[str, str]:
    """Rounds 2 and 3 against the vault's rounds 1 and 2 (its checks name the vault)."""
    return dkls_cosigner.finish(state, rounds)


def _audit_owner_failure(vault: Vault, wallet: str, exc: KeysafeError) -> None:
    # A refused part (a wrong share, a reused session) is worth a trace: it is someone with the
    # owner's session trying a share that is not the wallet's.
    with vault.db.write() as conn:
        vault.audit(
            conn, actor="owner", action="wallet.sign_message", target=f"wallet:{wallet}",
            outcome="failure", details={"name": wallet, "signer": "user+recovery",
                                        "code": str(exc.code), **exc.facts},
        )  # fmt: skip


def recovery_part(
    wallet: str, answer: dict[str, Any], recovery: dict[str, Any], key: KeyPackage, message: bytes
) -> dict[str, str]:
    """The owner's side (its CLI, no vault here): check the recovery share against the public
    package the vault sent with its commitment (`answer`), then commit and sign over `message`.

    Raises:
        MalformedRequestError: the recovery file is another wallet's or from before a refresh,
            or the vault's commitment is malformed.
    """
    check_recovery(wallet, PublicKeyPackage.from_dict(answer["public"]), recovery, key)
    return cosigner.part(key, answer, message)


def owner_cosign(vault: Vault, wallet: str, message: bytes, fields: dict[str, Any]) -> str:
    """The vault's share beside the recovery share the owner's CLI signed with; returns the
    base58 signature, verified, and audits it."""
    from solders.signature import Signature

    vault.require_unlocked()
    info = threshold_wallet(vault, wallet)
    details: dict[str, Any] = {"name": wallet, "signer": "user+recovery"}
    try:
        if public_of(info).suite is SECP256K1:
            signable, digest = _owner_message_digest(message.decode("utf-8"))
            ecdsa = cosign_ecdsa(vault, _OWNER, info, digest, fields, partner=RECOVERY)
            text = evm_signing.assemble_message_signature(
                signable, ecdsa.r, ecdsa.s, ecdsa.recovery_id, info.meta["address"]
            )
        else:
            text = str(Signature.from_bytes(
                _cosign(vault, _OWNER, info, message, fields, partner=RECOVERY)
            ))  # fmt: skip
    except KeysafeError as exc:
        _audit_owner_failure(vault, wallet, exc)
        raise
    with vault.db.write() as conn:
        vault.audit(
            conn, actor="owner", action="wallet.sign_message", target=f"wallet:{wallet}",
            outcome="success", details=details,
        )  # fmt: skip
    return text


# -- user + recovery (the owner, with the recovery file) ------------------------------------


def open_recovery(
    wallet: str, current: PublicKeyPackage, recovery: dict[str, Any], passphrase: SecretBytes
) -> KeyPackage:
    """The recovery share of `wallet` from its recovery file, checked against the wallet's
    current public package (`current`: the vault's, or what the vault sent the owner's CLI).

    Raises:
        WrongPassphraseError / IntegrityError: the passphrase is wrong or the file was altered.
        MalformedRequestError: the file is another wallet's, or from before a refresh.
    """
    key = share_file.open_recovery_share(recovery, passphrase).key
    check_recovery(wallet, current, recovery, key)
    return key


def check_recovery(
    wallet: str, current: PublicKeyPackage, recovery: dict[str, Any], key: KeyPackage
) -> None:
    """Raises MalformedRequestError unless `key` (opened from the `recovery` file) is the
    current recovery share of `wallet`, whose public package is `current`."""
    if key.identifier != RECOVERY or key.public.group_public_key != current.group_public_key:
        raise MalformedRequestError(
            f"That recovery file is not for wallet '{wallet}'.",
            next_step="use the wallet's current recovery file.",
        )
    if key.public.verifying_shares != current.verifying_shares:
        raise MalformedRequestError(
            f"That recovery file is from before wallet '{wallet}' was refreshed; its share "
            "no longer signs.",
            next_step="use the recovery file the last `keysafe wallet refresh` rewrote.",
        )
    if recovery.get("wallet") != wallet:
        raise MalformedRequestError(
            f"That recovery file is for wallet '{recovery.get('wallet')}'.",
            next_step=f"use the recovery file written for '{wallet}'.",
        )


# -- agent + recovery: when the vault is gone ---------------------------------------------------


def sign_without_vault(
    agent_share_path: Path,
    agent_secret: SecretBytes,
    recovery_doc: dict[str, Any],
    recovery_passphrase: SecretBytes,
    *,
    message: bytes | None = None,
    transaction: str | None = None,
) -> dict[str, Any]:
    """Agent + recovery sign a message or a transaction with no vault at all (it was lost):
    the two share files and their secrets are enough, and still no key is formed. The agent's
    share is opened and signs in a child process (`mpc/frost/party.py`); this process holds the
    recovery share and coordinates, so no process holds both. Solana wallets sign with FROST,
    EVM wallets with DKLs23 (a message as personal_sign text; a transaction complete, as JSON
    or unsigned RLP hex)."""
    if (message is None) == (transaction is None):
        raise MalformedRequestError(
            "Give a message or a transaction (one of them).", next_step="pick what to sign."
        )
    rec_share = share_file.open_recovery_share(recovery_doc, recovery_passphrase)
    if rec_share.key.suite is SECP256K1:
        return _sign_without_vault_evm(
            agent_share_path, agent_secret, rec_share, message=message, transaction=transaction
        )
    return _sign_without_vault_solana(
        agent_share_path, agent_secret, rec_share.key, message=message, transaction=transaction
    )


def _check_pair(agent: party.PipeSigner, rec: KeyPackage) -> None:
    if (agent.identifier, rec.identifier) != (AGENT, RECOVERY) or (
        agent.public.group_public_key != rec.public.group_public_key
    ):
        raise MalformedRequestError(
            "These share files are not the agent's and the recovery share of one wallet "
            "(of the same generation).",
            next_step="use the current agent share file and recovery file of the same wallet.",
        )


def _sign_without_vault_evm(
    agent_share_path: Path, agent_secret: SecretBytes, rec: share_file.Share, *,
    message: bytes | None, transaction: str | None,
) -> dict[str, Any]:  # fmt: skip
    what: dict[str, Any]
    tx: evm_tx.EvmTx | None = None
    if transaction is not None:
        payload: Any = (
            json.loads(transaction) if transaction.lstrip().startswith("{") else transaction
        )
        tx = evm_tx.parse_transaction(payload)
        digest = dkls_cosigner.transaction_digest(payload)  # refuses an incomplete one
        what = {"transaction": payload}
    else:
        text = (message or b"").decode("utf-8")
        signable, digest = _owner_message_digest(text)
        what = {"message": text}
    with party.PipeSigner(agent_share_path, agent_secret, evm=what) as agent:
        _check_pair(agent, rec.key)
        address = _address(agent.public)
        nonce = secrets.token_bytes(32)
        theirs = agent.dkls_round1(nonce)
        if theirs.get("verifying_share") != rec.key.public.verifying_shares[AGENT].hex():
            raise MalformedRequestError(
                "The agent share is not of the recovery file's generation.",
                next_step="use the agent share file and recovery file of the same refresh.",
            )
        state, first = dkls_signing.round1(rec.key, rec.pairs[AGENT], digest, nonce)
        try:
            second = dkls_signing.round2(state, _b64(theirs, "round1"))
            rest = agent.dkls_rounds({
                "session_id": nonce.hex(), "round1": base64.b64encode(first).decode(),
                "round2": base64.b64encode(second).decode(),
            })  # fmt: skip
            dkls_signing.round3(state, _b64(rest, "round2"))
            sig = dkls_signing.finish(state, _b64(rest, "round3"))
        except DklsAbort as exc:
            raise MalformedRequestError(
                f"The agent's part of the threshold signature is invalid: {exc.what}",
                next_step="nothing was signed; check the agent share file.",
                culprit=AGENT,
            ) from None
        wallet = agent.wallet
    out: dict[str, Any] = {"wallet": wallet, "address": address, "signers": "agent+recovery"}
    if tx is not None:
        signed = evm_signing.assemble_transaction(tx, sig.r, sig.s, sig.recovery_id, address)
        out |= {"signed_transaction": signed.raw_hex, "tx_hash": signed.tx_hash}
    else:
        out["signature"] = evm_signing.assemble_message_signature(
            signable, sig.r, sig.s, sig.recovery_id, address
        )
    return out


def _sign_without_vault_solana(
    agent_share_path: Path, agent_secret: SecretBytes, rec: KeyPackage, *,
    message: bytes | None, transaction: str | None,
) -> dict[str, Any]:  # fmt: skip
    from solders.signature import Signature

    tx = None
    if transaction is not None:
        from keysafe.chains.solana import tx as sol_tx

        tx = sol_tx.parse_transaction(transaction)
        message = tx.message_bytes
    assert message is not None
    signed = message
    with party.PipeSigner(agent_share_path, agent_secret, signed) as agent:
        _check_pair(agent, rec)
        address = _address(agent.public)
        mine = session.Signer(
            rec, session.MemoryNonceStore(), check_message=lambda r: r.message == signed
        )
        sig = session.Coordinator(rec.public, [AGENT, RECOVERY], signed).run(
            {AGENT: agent, RECOVERY: mine}
        )
        wallet = agent.wallet
    out: dict[str, Any] = {
        "wallet": wallet, "address": address, "signers": "agent+recovery",
        "signature": str(Signature.from_bytes(sig)),
    }  # fmt: skip
    if tx is not None:
        from keysafe.chains.solana import signing as sol_signing

        out["signed_transaction"] = sol_signing.attach_signature(tx, address, sig).base64
    return out
