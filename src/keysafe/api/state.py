"""The running server's state: the vault handle, owner sessions, rate limits, idle lock.

Nothing here is global: `create_app` builds one `ServerState` and every route reads it from
`request.app.state.keysafe` (`server_state`), so tests can run two servers in one process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from keysafe.service import rotation_due
from keysafe.service.balances import BalanceCache
from keysafe.service.context import Home
from keysafe.service.models import SecretBytes
from keysafe.service.rotation_due import DueRotation
from keysafe.vault.vault import Vault

OWNER_PREFIX = "ks_owner_"
ROTATIONS_TTL = 10.0
CHALLENGE_TTL_S = 60.0
CHALLENGES_MAX = 64


@dataclass
class Session:
    csrf: str
    expires: float
    hard_expiry: float  # sliding renewals stop here


@dataclass
class Bucket:
    tokens: float
    stamp: float


@dataclass
class ServerState:
    home: Home
    vault: Vault
    session_ttl: float = 600.0
    session_max: float = 8 * 3600.0
    idle_lock_after: float | None = 900.0
    rate_per_second: float = 20.0
    burst: float = 40.0
    monotonic: Callable[[], float] = time.monotonic
    # Host names a browser may use to reach us; anything else is refused, so a web page on a
    # rebinding DNS name cannot talk to the vault through the owner's browser.
    allowed_hosts: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
    _sessions: dict[str, Session] = field(default_factory=dict)
    _buckets: dict[str, Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    last_activity: float = field(default_factory=time.monotonic)
    # Balances are fetched from chain nodes at most every BALANCE_TTL_S seconds, however often
    # the owner's page polls (service/balances.py).
    balances: BalanceCache = field(default_factory=BalanceCache)
    # Due rotations count uses over the audit log: on a long log that is a scan, so the page's
    # poll (every 2 s) recomputes them only when something was audited AND at most every
    # ROTATIONS_TTL seconds. (when, audit head seq, the list)
    rotations_cache: tuple[float, int, list[DueRotation]] | None = None

    def rotations_due(self, head: int) -> list[DueRotation]:
        """What the rotation policy says to replace now, as the owner's page shows it; `head`
        is the audit log's newest sequence number."""
        now = self.monotonic()
        cached = self.rotations_cache
        if cached is None or (cached[1] != head and now - cached[0] >= ROTATIONS_TTL):
            cached = (now, head, rotation_due.due(self.vault)[1])
            self.rotations_cache = cached
        return cached[2]

    # A KMS vault's token (OpenBao), given at `keysafe serve`: the server unlocks through it
    # again after an idle lock. Kept in memory only; never stored, logged or answered.
    kms_token: SecretBytes | None = None
    kms_url: str | None = None  # where the token goes: the operator's, never the header's
    # Login challenges for a KMS vault's owner (no passphrase to prove): single use, short-lived.
    _challenges: dict[str, float] = field(default_factory=dict)

    def new_challenge(self) -> str:
        challenge = secrets.token_hex(32)
        now = self.monotonic()
        with self._lock:
            for key, until in list(self._challenges.items()):
                if until <= now:
                    del self._challenges[key]
            if len(self._challenges) >= CHALLENGES_MAX:  # bounded: drop the oldest
                del self._challenges[next(iter(self._challenges))]
            self._challenges[challenge] = now + CHALLENGE_TTL_S
        return challenge

    def take_challenge(self, challenge: str) -> bool:
        """Is `challenge` one this server issued, unexpired and unused? (It is used up now.)"""
        with self._lock:
            until = self._challenges.pop(challenge, None)
        return until is not None and until > self.monotonic()

    # -- owner sessions: stored as SHA-256, compared in constant time ------------------------

    def new_session(self) -> tuple[str, Session]:
        token = OWNER_PREFIX + secrets.token_urlsafe(32)
        now = self.monotonic()
        session = Session(secrets.token_urlsafe(24), now + self.session_ttl, now + self.session_max)
        with self._lock:
            self._sessions[hashlib.sha256(token.encode()).hexdigest()] = session
        return token, session

    def session(self, token: str) -> Session | None:
        if not token.startswith(OWNER_PREFIX):
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self.monotonic()
        with self._lock:
            for key, s in list(self._sessions.items()):
                if s.expires <= now:
                    del self._sessions[key]
            found = next(
                (s for k, s in self._sessions.items() if hmac.compare_digest(k, digest)), None
            )
            if found is not None:
                found.expires = min(now + self.session_ttl, found.hard_expiry)  # sliding, capped
            return found

    def end_session(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(hashlib.sha256(token.encode()).hexdigest(), None)

    # -- per-agent rate limit (token bucket) --------------------------------------------------

    def allow(self, agent: str) -> bool:
        now = self.monotonic()
        with self._lock:
            b = self._buckets.setdefault(agent, Bucket(self.burst, now))
            b.tokens = min(self.burst, b.tokens + (now - b.stamp) * self.rate_per_second)
            b.stamp = now
            if b.tokens < 1:
                return False
            b.tokens -= 1
            return True

    def touch(self) -> None:
        self.last_activity = self.monotonic()

    def idle_check(self) -> bool:
        """Lock the vault when idle for too long; returns True when it locked."""
        if self.idle_lock_after is None or not self.vault.is_unlocked:
            return False
        if self.monotonic() - self.last_activity >= self.idle_lock_after:
            self.vault.lock()
            return True
        return False


def server_state(request: Request) -> ServerState:
    """The state of the server that `request` reached (`create_app` put it on the app)."""
    state: ServerState = request.app.state.keysafe
    return state
