"""The running server's state: the vault handle, owner sessions, rate limits, idle lock.

Nothing here is global: `create_app` builds one `ServerState` and every route reads it from
`request.app.state.keysafe`, so tests can run two servers in one process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from keysafe.service.context import Home
from keysafe.vault.vault import Vault

OWNER_PREFIX = "ks_owner_"


@dataclass
class Session:
    csrf: str
    expires: float


@dataclass
class Bucket:
    tokens: float
    stamp: float


@dataclass
class ServerState:
    home: Home
    vault: Vault
    session_ttl: float = 600.0
    idle_lock_after: float | None = 900.0
    rate_per_second: float = 20.0
    burst: float = 40.0
    monotonic: Callable[[], float] = time.monotonic
    _sessions: dict[str, Session] = field(default_factory=dict)
    _buckets: dict[str, Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    last_activity: float = field(default_factory=time.monotonic)

    # -- owner sessions: stored as SHA-256, compared in constant time ------------------------

    def new_session(self) -> tuple[str, Session]:
        token = OWNER_PREFIX + secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(24), self.monotonic() + self.session_ttl)
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
                found.expires = now + self.session_ttl  # sliding
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
