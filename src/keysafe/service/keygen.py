"""Creating a 2-of-3 wallet with each party in its own process: the vault relays and plays
share 2; the owner's CLI plays the recovery party (3); the agent's host plays the agent (1).

    owner CLI   start(wallet, chain, agent, recovery key) → a keygen id, the vault's key
                prints a join code for the agent's host: the id, a hash of the recovery
                party's key and a MAC key (never sent to the vault)
    agent host  exchange(key, tag) → announces its key; the tag (HMAC under the code's MAC
                key) lets the recovery party know the key is the agent's, not the relay's
    all three   rounds of `mpc/keygen.py`, each message sealed end to end (`mpc/channel.py`)
                and relayed here; the vault's own party runs here as its messages arrive
    the end     each party keeps its share, then confirms the public package to the vault;
                with both confirmations matching its own, the vault stores its share and the
                wallet exists (audited `wallet.create`)

Everything here lives in memory (`vault.volatile`) for at most ten minutes: a keygen that does
not finish leaves nothing behind but share files the parties wrote for a wallet that does not
exist. A failed check ends the keygen for all three, naming the party at fault.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from keysafe.agent_models import KeygenPost, KeygenView, Sealed
from keysafe.chains import Chain
from keysafe.errors import (
    AlreadyExistsError,
    MalformedRequestError,
    NotFoundError,
    PolicyDeniedError,
)
from keysafe.mpc import ceremony, channel
from keysafe.mpc.frost.groups import ED25519, SECP256K1
from keysafe.mpc.frost.keys import AGENT, PARTIES, RECOVERY, USER, PublicKeyPackage
from keysafe.mpc.keygen import SESSION_ID_LEN, KeygenParty, ReshareParty
from keysafe.service import threshold_records
from keysafe.service.agents import get_agent
from keysafe.service.keygen_ceremony import Keygen, drive, fail
from keysafe.service.models import RecordKind, check_name
from keysafe.service.record_meta import ThresholdWallet
from keysafe.vault.vault import Vault

__all__ = [
    "TTL_S",
    "Rebuild",
    "agent_exchange",
    "exchange",
    "pending",
    "start",
    "start_reshare",
]

logger = logging.getLogger(__name__)

TTL_S: Final = ceremony.TTL_S
MAX_OPEN: Final = 4  # keygens at once per vault: each holds a party's secrets in memory
_TABLE: Final = "keygens"
_LOCK = threading.Lock()  # guards the table and every keygen in it across request threads


class Rebuild(BaseModel):
    """What a vault with no record of a 2-of-3 wallet needs to rebuild its share: the wallet's
    public package (from the owner's recovery file, which the owner's CLI opened) and the agent
    that holds share 1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public: dict[str, Any]
    agent: str

    def package(self) -> PublicKeyPackage:
        """Raises:
        MalformedRequestError: not a public package."""
        try:
            return PublicKeyPackage.from_dict(self.public)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedRequestError(
                f"That is not a wallet's public package ({type(exc).__name__}).",
                next_step="pass the recovery file `keysafe wallet create` wrote.",
            ) from None


def _table(vault: Vault) -> dict[str, Keygen]:
    table: dict[str, Keygen] = vault.volatile.setdefault(_TABLE, {})
    now = time.monotonic()
    for kid in [k for k, g in table.items() if g.expires <= now]:
        del table[kid]
    return table


def _b64(value: str, what: str, length: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequestError(
            f"{what} is not base64.", next_step="send it as sent."
        ) from None
    if length is not None and len(raw) != length:
        raise MalformedRequestError(f"{what} is not {length} bytes.", next_step="send it intact.")
    return raw


def _enc(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _view(vault: Vault, g: Keygen, party: int) -> KeygenView:
    return KeygenView(
        id=g.id,
        wallet=g.wallet,
        chain=str(g.chain),
        agent=g.agent,
        vault_id=vault.vault_id,
        rounds=g.party.rounds,
        keys={i: _enc(k) for i, k in g.keys.items()},
        kind="reshare" if isinstance(g.party, ReshareParty) else "create",
        quorum=list(g.party.quorum) if isinstance(g.party, ReshareParty) else None,
        public=g.party.old_public.to_dict() if isinstance(g.party, ReshareParty) else None,
        agent_tag=None if g.agent_tag is None else _enc(g.agent_tag),
        recovery_tag=None if g.recovery_tag is None else _enc(g.recovery_tag),
        messages=[
            Sealed(round=r, sender=s, receiver=t, body=_enc(body))
            for (r, s, t), body in sorted(g.mail.items())
            if t == party
        ],
        status=g.status,
        failure=g.failure,
        address=g.address,
        expires_in=max(0, int(g.expires - time.monotonic())),
    )


def start(vault: Vault, wallet: str, chain: Chain, agent: str, recovery_key: str) -> KeygenView:
    """The owner opens a keygen for a new 2-of-3 wallet `wallet` shared with `agent`;
    `recovery_key` is the recovery party's ephemeral X25519 key (base64).

    Raises:
        MalformedRequestError: a bad name or key, or too many keygens open.
        AlreadyExistsError: a wallet of that name exists, or a keygen for it is open.
        NotFoundError: no agent of that name.
        PolicyDeniedError: the agent is not active.
    """
    check_name(wallet, "wallet")
    key = _b64(recovery_key, "The recovery party's key", channel.KEY_LEN)
    vault.require_unlocked()
    with vault.db.read() as conn:
        if get_agent(conn, agent).status != "active":
            raise PolicyDeniedError(
                f"Agent '{agent}' is not active.", next_step=f"`keysafe agent resume {agent}`."
            )
        if vault.find_record(conn, RecordKind.WALLET, wallet) is not None:
            raise AlreadyExistsError(
                f"A wallet named '{wallet}' already exists.", next_step="pick another name."
            )
    suite = SECP256K1 if chain is Chain.EVM else ED25519
    return _open(
        vault, _keygen(wallet, chain, agent, lambda sid: KeygenParty(suite, USER, sid)), key
    )


def _reshared(
    vault: Vault, wallet: str, q: tuple[int, ...], rebuild: Rebuild | None
) -> tuple[ThresholdWallet | None, PublicKeyPackage, str, Chain]:
    """The wallet a reshare keeps: its record (None when rebuilt on a vault without one),
    public package, agent and chain."""
    with vault.db.read() as conn:
        found = vault.find_record(conn, RecordKind.WALLET, wallet)
    if found is None and rebuild is None:
        raise NotFoundError(
            f"This vault has no wallet '{wallet[:64]}'.",
            next_step="check the name with `keysafe wallet list`; to rebuild a 2-of-3 wallet "
            "on this vault, reshare --with agent,recovery --agent NAME.",
        )
    if found is not None:
        info = threshold_records.threshold_wallet(vault, wallet)
        return info, info.public(), info.meta.agent, info.meta.chain
    assert rebuild is not None
    if q != (AGENT, RECOVERY):
        raise MalformedRequestError(
            f"This vault has no wallet '{wallet}': only the agent and the recovery party "
            "can rebuild it here.",
            next_step="use --with agent,recovery.",
        )
    public = rebuild.package()
    return None, public, rebuild.agent, Chain.EVM if public.suite is SECP256K1 else Chain.SOLANA


def start_reshare(
    vault: Vault,
    wallet: str,
    quorum: tuple[int, int],
    recovery_key: str,
    *,
    rebuild: Rebuild | None = None,
) -> KeygenView:
    """The owner opens a reshare of 2-of-3 wallet `wallet` by the two parties of `quorum`
    (1 agent, 2 vault, 3 recovery): fresh shares for all three, same address. Vault +
    recovery evict or refresh the agent; agent + vault replace a lost recovery file; agent +
    recovery rebuild the vault's share, also on a vault with no record of the wallet: then
    `rebuild` says what the record held (the public package, from the owner's recovery file,
    and the agent). `recovery_key` is the recovery party's ephemeral key.

    Raises:
        NotFoundError: no 2-of-3 wallet of that name (and no `rebuild` for agent + recovery).
        MalformedRequestError: not two distinct parties, a bad key or package, or too many open.
        AlreadyExistsError: a ceremony for that wallet is already open.
        PolicyDeniedError: the wallet's agent is not active.
    """
    q = tuple(sorted(set(quorum)))
    if len(q) != 2 or any(i not in PARTIES for i in q):
        raise MalformedRequestError(
            "A reshare needs two of the three parties.",
            next_step="use --with vault,recovery, agent,vault or agent,recovery.",
        )
    key = _b64(recovery_key, "The recovery party's key", channel.KEY_LEN)
    vault.require_unlocked()
    info, public, agent, chain = _reshared(vault, wallet, q, rebuild)
    with vault.db.read() as conn:
        if not _may_join(get_agent(conn, agent).status, q):
            raise PolicyDeniedError(
                f"Agent '{agent}' is {get_agent(conn, agent).status}: it cannot take part in "
                "this reshare.",
                next_step=f"`keysafe agent resume {agent}` first, or reshare --with "
                "vault,recovery (a paused agent may receive a new share then, never deal).",
            )
    # The vault deals only what it holds: its share, loaded here (this process's only one).
    old_key = (
        threshold_records.vault_share(vault, info).key if info is not None and USER in q else None
    )

    def party(sid: bytes) -> ReshareParty:
        return ReshareParty(USER, sid, public, q, old_key)

    return _open(vault, _keygen(wallet, chain, agent, party, old=info), key)


def _may_join(status: str, quorum: tuple[int, ...] | None) -> bool:
    """An active agent takes part in any ceremony; a paused one only receives a new share in a
    vault + recovery reshare (how the owner evicts it: it deals nothing and signs nothing)."""
    return status == "active" or (status == "paused" and quorum == (USER, RECOVERY))


def _keygen(
    wallet: str,
    chain: Chain,
    agent: str,
    party: Callable[[bytes], KeygenParty | ReshareParty],
    old: ThresholdWallet | None = None,
) -> Keygen:
    """A new ceremony for `wallet`: a fresh session id (its `party` is made for it), the vault's
    own transport key, and the deadline."""
    sid = secrets.token_bytes(SESSION_ID_LEN)
    return Keygen(
        session_id=sid,
        wallet=wallet,
        chain=chain,
        agent=agent,
        expires=time.monotonic() + TTL_S,
        vault_key=channel.new_key(),
        party=party(sid),
        old=old,
    )


def _open(vault: Vault, g: Keygen, recovery_key: bytes) -> KeygenView:
    with _LOCK:
        table = _table(vault)
        if any(o.wallet == g.wallet and o.status in ("waiting", "running") for o in table.values()):
            raise AlreadyExistsError(
                f"A keygen or reshare for '{g.wallet}' is already open.",
                next_step="let it finish or wait ten minutes for it to expire.",
            )
        if sum(o.status in ("waiting", "running") for o in table.values()) >= MAX_OPEN:
            raise MalformedRequestError(
                f"{MAX_OPEN} keygens are open already.",
                next_step="let them finish or wait ten minutes for them to expire.",
            )
        g.keys = {USER: channel.public_bytes(g.vault_key), RECOVERY: recovery_key}
        table[g.id] = g
        logger.info("ceremony %s opened for wallet %s (agent %s)", g.id[:12], g.wallet, g.agent)
        return _view(vault, g, RECOVERY)


def pending(vault: Vault, agent: str) -> list[KeygenView]:
    """The keygens waiting for `agent` to join."""
    vault.require_unlocked()
    with _LOCK:
        return [
            _view(vault, g, AGENT)
            for g in _table(vault).values()
            if g.agent == agent and g.status == "waiting" and AGENT not in g.keys
        ]


def exchange(
    vault: Vault, keygen_id: str, party: int, post: KeygenPost, *, agent: str | None = None
) -> KeygenView:
    """Party `party` posts to keygen `keygen_id` and gets back what is there for it. The
    surface authenticated the caller: the owner is the recovery party (3); an agent (`agent`,
    its name) is party 1 of the keygens opened for it, and only while it is active.

    Raises:
        NotFoundError: no such keygen open for this caller (or it expired).
        PolicyDeniedError: the agent is paused.
        MalformedRequestError: a message not from `party`, out of place, or sent twice
            differently; a key announced twice; messages before all keys are in.
    """
    vault.require_unlocked()
    status = None
    if party == AGENT:
        if agent is None:
            raise PolicyDeniedError("No agent named.", next_step="authenticate as the agent.")
        with vault.db.read() as conn:
            status = get_agent(conn, agent).status
    elif party != RECOVERY:
        raise MalformedRequestError("Only parties 1 and 3 post here.", next_step="-")
    with _LOCK:
        g = _table(vault).get(keygen_id)
        if g is None or (party == AGENT and g.agent != agent):
            raise NotFoundError(
                "No such keygen open; it finished, failed or expired (ten minutes).",
                next_step="start the wallet creation again.",
            )
        quorum = g.party.quorum if isinstance(g.party, ReshareParty) else None
        if status is not None and not _may_join(status, quorum):
            raise PolicyDeniedError(
                f"Agent '{agent}' is {status}.", next_step="ask the owner to resume it."
            )
        if post.abort is not None:
            if g.status in ("waiting", "running"):
                said = "".join(c for c in post.abort if c.isalnum() or c in " ,.'()-")[:120]
                fail(vault, g, f"party {party} stopped it, saying: {said}")
            return _view(vault, g, party)
        if post.key is not None:
            _announce(g, party, post)
        elif party == RECOVERY and post.tag is not None:
            tag = _b64(post.tag, "The recovery key's tag", 32)
            again = g.recovery_tag is not None and not hmac.compare_digest(g.recovery_tag, tag)
            if again or g.status != "waiting":
                raise MalformedRequestError(
                    "The recovery key is tagged already.", next_step="start a new ceremony."
                )
            g.recovery_tag = tag
        for m in post.messages:
            _deliver(g, party, m)
        drive(vault, g)
        return _view(vault, g, party)


def agent_exchange(vault: Vault, agent: str, keygen_id: str, post: KeygenPost) -> KeygenView:
    """`exchange` for the authenticated agent `agent`, which is party 1."""
    return exchange(vault, keygen_id, AGENT, post, agent=agent)


def _announce(g: Keygen, party: int, post: KeygenPost) -> None:
    assert post.key is not None
    key = _b64(post.key, "The party's key", channel.KEY_LEN)
    if g.keys.get(party) not in (None, key):
        raise MalformedRequestError(
            f"Party {party} announced another key already.", next_step="start a new keygen."
        )
    if party == AGENT:
        if post.tag is None:
            raise MalformedRequestError(
                "The agent's key needs the tag the join code keys.",
                next_step="join with the code the owner's CLI printed.",
            )
        g.agent_tag = _b64(post.tag, "The key's tag", 32)
    g.keys[party] = key


def _deliver(g: Keygen, party: int, m: Sealed) -> None:
    if g.status != "running":
        raise MalformedRequestError(
            f"This keygen is {g.status}; it takes no messages now.",
            next_step="start again" if g.status == "failed" else "wait for all three keys.",
        )
    if m.sender != party or m.receiver == party or m.round > g.party.rounds + 1:
        raise MalformedRequestError(
            f"A message from party {m.sender} to {m.receiver} in round {m.round} cannot come "
            f"from party {party}.",
            next_step="send only your own messages.",
        )
    body = _b64(m.body, "A message body")
    slot = (m.round, m.sender, m.receiver)
    if g.mail.get(slot, body) != body:
        raise MalformedRequestError(
            f"Round {m.round} to party {m.receiver} was sent already, differently.",
            next_step="start a new keygen.",
        )
    g.mail[slot] = body
