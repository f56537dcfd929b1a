"""One 2-of-3 keygen or reshare as the vault holds it (service/keygen.py): its state in memory
and the vault's own party (share 2), which runs its rounds as the other parties' mail arrives,
stores its share once both confirm the same public package, and ends the ceremony on a failed
check.

Apart from service/keygen.py, which opens ceremonies and relays what the parties post, because
this is the one place that does cryptographic work and writes the wallet.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keysafe.agent_models import KeygenStatus
from keysafe.audit.outcome import Outcome
from keysafe.chains import Chain
from keysafe.errors import KeysafeError
from keysafe.mpc.channel import Channel, ChannelError
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.keys import AGENT, PARTIES, RECOVERY, USER
from keysafe.mpc.keygen import KeygenParty, ReshareParty, public_digest
from keysafe.service import threshold_records
from keysafe.service.record_meta import ThresholdWallet
from keysafe.vault.vault import Vault

# The keygen module's logger, so that the ceremony's log lines keep the name they always had.
logger = logging.getLogger("keysafe.service.keygen")

SETTLED_S: Final = 10 * 60  # how long a finished ceremony's outcome (no secrets) stays readable


@dataclass
class Keygen:
    """One keygen or reshare in memory: the parties' keys, the sealed mail the vault relays,
    and the vault's own party with its progress."""

    session_id: bytes
    wallet: str
    chain: Chain
    agent: str
    expires: float
    vault_key: X25519PrivateKey
    party: KeygenParty | ReshareParty
    old: ThresholdWallet | None = None  # a reshare's wallet (None: rebuilding it here)
    keys: dict[int, bytes] = field(default_factory=dict)
    agent_tag: bytes | None = None
    recovery_tag: bytes | None = None  # join-key mode: the owner's tag on the recovery key
    mail: dict[tuple[int, int, int], bytes] = field(default_factory=dict)
    channel: Channel | None = None
    vault_round: int = 1  # the round whose messages the vault's party waits for
    status: KeygenStatus = "waiting"
    failure: str | None = None
    address: str | None = None

    @property
    def id(self) -> str:
        return self.session_id.hex()


def drive(vault: Vault, g: Keygen) -> None:
    """Run the vault's party as far as the mail allows; store the wallet when all confirm."""
    # The vault's party starts once every key is in and the owner has tagged its own (which
    # also covers what the ceremony is about): the agent checks that tag before it sends.
    if g.status == "waiting" and len(g.keys) == len(PARTIES) and g.recovery_tag is not None:
        g.channel = Channel(
            g.session_id, USER, g.vault_key, {j: g.keys[j] for j in (AGENT, RECOVERY)}
        )
        _post(g, 1, g.party.start())
        g.status = "running"
    try:
        while g.status == "running" and g.vault_round <= g.party.rounds:
            r = g.vault_round
            if any((r, j, USER) not in g.mail for j in (AGENT, RECOVERY)):
                return
            assert g.channel is not None
            inbox = {j: g.channel.open(r, j, g.mail[(r, j, USER)]) for j in (AGENT, RECOVERY)}
            _post(g, r + 1, g.party.step(r, inbox))
            g.vault_round += 1
        if g.status == "running":
            _finish(vault, g)
    except (ChannelError, FrostError) as exc:
        fail(vault, g, f"party {exc.culprit}: {exc}" if exc.culprit else str(exc))
    except Exception:  # a bug or a message no check foresaw: stop the ceremony, never jam it
        logger.exception("ceremony %s: the vault's party stopped", g.id[:12])
        fail(vault, g, f"the vault's party stopped in round {g.vault_round} (see its log)")


def _post(g: Keygen, round_: int, out: dict[int, bytes]) -> None:
    assert g.channel is not None
    for j, payload in out.items():
        g.mail[(round_, USER, j)] = g.channel.seal(round_, j, payload)


def _finish(vault: Vault, g: Keygen) -> None:
    done = g.party.rounds + 1
    if any((done, j, USER) not in g.mail for j in (AGENT, RECOVERY)):
        return
    share = g.party.share
    assert share is not None and g.channel is not None
    want = public_digest(share.key.public, g.session_id)
    for j in (AGENT, RECOVERY):
        if g.channel.open(done, j, g.mail[(done, j, USER)]) != want:
            raise FrostError("confirmed another public package", culprit=j)
    try:
        if g.old is None:  # a new wallet, or one rebuilt on a vault that had no record of it
            action = "wallet.reshare" if isinstance(g.party, ReshareParty) else "wallet.create"
            info = threshold_records.store_new_wallet(
                vault, g.wallet, g.chain, g.agent, share, action=action
            )
        else:
            now = threshold_records.threshold_wallet(vault, g.wallet)
            if now.meta.generation != g.old.meta.generation:
                raise FrostError("the wallet was reshared by another run meanwhile")
            info = threshold_records.replace_vault_share(vault, now, share)
    except (KeysafeError, FrostError) as exc:
        fail(vault, g, f"the vault could not keep its share: {exc}")
        return
    g.status, g.address = "done", info.address
    _settle(g)
    logger.info("ceremony %s done: wallet %s", g.id[:12], g.wallet)


def _settle(g: Keygen) -> None:
    """A ceremony ended: its secrets go now; its outcome stays readable for a while, so a
    party that confirmed and then lost an answer (or was made to wait by another party until
    the deadline) still learns how it ended rather than finding nothing."""
    g.party.forget()
    g.mail.clear()
    g.expires = max(g.expires, time.monotonic() + SETTLED_S)


def fail(vault: Vault, g: Keygen, why: str) -> None:
    """End the ceremony for all three parties, naming why (at most 300 characters), and audit
    the failed wallet creation or reshare."""
    g.status, g.failure = "failed", why[:300]
    _settle(g)
    with vault.db.write() as conn:
        vault.audit(
            conn,
            actor="owner",
            action="wallet.reshare" if isinstance(g.party, ReshareParty) else "wallet.create",
            target=f"wallet:{g.wallet}",
            outcome=Outcome.FAILURE,
            details={
                "name": g.wallet,
                "chain": str(g.chain),
                "source": "threshold",
                "agent": g.agent,
                "reason": g.failure,
            },
        )
    logger.warning("keygen %s failed: %s", g.id[:12], g.failure)
