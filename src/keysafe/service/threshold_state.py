"""The vault's in-memory state of 2-of-3 signing: FROST commitments, DKLs23 sessions and bans
not yet written to their wallets.

Rules this module enforces:
- Everything lives in `vault.volatile`, which is dropped when the vault locks: a nonce or a
  session can never outlive it, nor be used after a crash.
- Each entry expires after `NONCE_TTL_S` and is capped per holder (`MAX_OPEN_PER_AGENT`).
- `LOCK` guards the tables across request threads; callers hold it while they read or change one.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from keysafe.errors import MalformedRequestError
from keysafe.mpc.dkls import signing as dkls_signing
from keysafe.mpc.frost import signing
from keysafe.vault.vault import Vault

NONCE_TTL_S: Final = 15 * 60  # outlives an approval (5 min by default) parked with the request
MAX_OPEN_PER_AGENT: Final = 32
OWNER: Final = "(owner)"  # the owner's sessions in the nonce table (no agent has this name)
LOCK = threading.Lock()  # guards vault.volatile's nonce table across request threads


@dataclass(frozen=True, slots=True)
class Preprocessed:
    """The vault's FROST nonces for one signature, and the commitment it sent."""

    wallet: str
    agent: str
    generation: int
    nonces: signing.SigningNonces
    commitment: signing.SigningCommitment
    expires: float


@dataclass(slots=True)
class DklsSession:
    """One DKLs23 signature under way: opened, then exchanged (with the hash it binds)."""

    wallet: str
    agent: str
    generation: int
    expires: float
    message_hash: bytes = b""
    state: dkls_signing.SigningState | None = None


# The tables' keys in vault.volatile.
_NONCES: Final = "frost_nonces"
_DKLS_SESSIONS: Final = "dkls_sessions"
_DKLS_BANS: Final = "dkls_bans"
_Entry = TypeVar("_Entry", Preprocessed, DklsSession)


def _unexpired(table: dict[bytes, _Entry]) -> dict[bytes, _Entry]:
    now = time.monotonic()
    for sid in [s for s, p in table.items() if p.expires <= now]:
        del table[sid]
    return table


def frost_table(vault: Vault) -> dict[bytes, Preprocessed]:
    """The live FROST commitments by session id (call with LOCK held)."""
    table: dict[bytes, Preprocessed] = vault.volatile.setdefault(_NONCES, {})
    return _unexpired(table)


def dkls_table(vault: Vault) -> dict[bytes, DklsSession]:
    """The live DKLs23 sessions by session id (call with LOCK held)."""
    table: dict[bytes, DklsSession] = vault.volatile.setdefault(_DKLS_SESSIONS, {})
    return _unexpired(table)


def pending_bans(vault: Vault) -> set[tuple[str, int]]:
    """(wallet, party) bans recorded in memory, not yet written to the wallet's record."""
    bans: set[tuple[str, int]] = vault.volatile.setdefault(_DKLS_BANS, set())
    return bans


class _Held(Protocol):
    @property
    def agent(self) -> str:  # who holds it: an agent's name, or OWNER
        ...


def admit(held: Iterable[_Held], holder: str, what: str) -> None:
    """Refuse a new session or commitment past the per-holder cap (call with LOCK held).

    Raises:
        MalformedRequestError: `holder` already holds MAX_OPEN_PER_AGENT of them.
    """
    if sum(1 for p in held if p.agent == holder) >= MAX_OPEN_PER_AGENT:
        who = "The owner" if holder == OWNER else f"Agent '{holder}'"
        raise MalformedRequestError(
            f"{who} already holds {MAX_OPEN_PER_AGENT} {what}.",
            next_step="use them (or wait 15 minutes for them to expire).",
        )


def discard(vault: Vault, agent: str, fields: dict[str, Any] | None) -> None:
    """Drop a commitment the agent's request will not use (it was refused before the vault's
    part): an unused commitment must not count against the agent for its 15 minutes."""
    if not fields or not isinstance(fields.get("session_id"), str):
        return
    try:
        sid = bytes.fromhex(fields["session_id"])
    except ValueError:
        return
    with LOCK:
        table = frost_table(vault)
        if sid in table and table[sid].agent == agent:
            del table[sid]
        sessions = dkls_table(vault)
        if sid in sessions and sessions[sid].agent == agent:
            del sessions[sid]


def forget_wallet(vault: Vault, wallet: str, *, parties: Iterable[int] = ()) -> None:
    """Drop every commitment and session of `wallet` (its shares changed: none can sign
    again), and the pending bans of `parties`."""
    with LOCK:
        table = frost_table(vault)
        for sid in [s for s, p in table.items() if p.wallet == wallet]:
            del table[sid]
        sessions = dkls_table(vault)
        for sid in [s for s, p in sessions.items() if p.wallet == wallet]:
            del sessions[sid]
        pending_bans(vault).difference_update({(wallet, party) for party in parties})


@dataclass(frozen=True, slots=True)
class FieldEncoding:
    """How a threshold request writes its bytes fields, and what to tell a caller who got one
    wrong."""

    form: str  # the word the error uses: "hex", "base64"
    decode: Callable[[str], bytes]
    next_step: str

    def read(self, fields: dict[str, Any], name: str) -> bytes:
        """`fields[name]` decoded to bytes.

        Raises:
            MalformedRequestError: it is missing or not in this encoding.
        """
        value = fields.get(name)
        try:
            if not isinstance(value, str):
                raise ValueError
            return self.decode(value)
        except ValueError:  # binascii.Error is one too
            raise MalformedRequestError(
                f"threshold.{name} is missing or not {self.form}.", next_step=self.next_step
            ) from None


HEX: Final = FieldEncoding(
    "hex",
    bytes.fromhex,
    "send the fields keysafe's agent client builds: session_id, hiding, binding, share.",
)
BASE64: Final = FieldEncoding(
    "base64",
    lambda v: base64.b64decode(v, validate=True),
    "send the fields keysafe's agent client builds.",
)
