"""The HTTP client proxied calls travel on (service/proxy.py), and how a call lets go of it.

Rules this module enforces:
- Calls share one HTTP client per unlocked vault (kept-alive connections, per upstream origin):
  the connection pool matches scheme, host and port exactly, so a request only ever travels on
  a connection to its own URL's host.
- The shared client keeps no cookies (its jar refuses them all): nothing one call (one agent,
  one credential) received can reach another call.
- Locking the vault retires the client (vault.volatile): it is closed once the calls under way
  have ended, and the next unlock makes a new one.
- A connection is only ever reused after an answer read to its end.
"""

from __future__ import annotations

import functools
import http.cookiejar
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any, Final

import httpx

from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

# Read: the longest silence between two pieces of an answer. A model that thinks before its
# first token (or answers unstreamed) is silent for a minute and more; 15 s cut those off.
TIMEOUT: Final = httpx.Timeout(120.0, connect=5.0)
# Kept-alive upstream connections: no cap on how many (one agent's long streams must not make
# another agent's call wait for a free one), a few idle ones per host kept, and an idle one
# dropped before the 5 s many servers (Node's default) close theirs, so a kept connection is
# rarely closed under a request.
LIMITS: Final = httpx.Limits(
    max_connections=None, max_keepalive_connections=32, keepalive_expiry=4.0
)
_CLIENT: Final = "proxy.client"  # vault.volatile's key: the shared client, retired on lock
_HOP_BODY_MAX: Final = 64 * 1024  # a redirect's body read (and dropped) to keep its connection
_CLIENT_LOCK = threading.Lock()  # one client is made, however many calls start at once


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """The system's CA bundle, loaded once: building it was most of a proxied call's cost.
    (A cache of a read-only trust store, not state: it never changes while keysafe runs.)"""
    return httpx.create_ssl_context()


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """The shared client's jar policy: no cookie is ever stored or sent, so nothing one call
    (one agent, one credential) received can reach another call."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def _new_client(transport: httpx.BaseTransport | None) -> httpx.Client:
    return httpx.Client(
        timeout=TIMEOUT,
        follow_redirects=False,
        transport=transport,
        verify=_tls_context(),
        limits=LIMITS,
        cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
    )


class _Shared:
    """The vault's shared client and the calls using it. Locking the vault retires it
    (`close`, from Vault.lock): no new call takes it, and it is closed, connections and all,
    as soon as the calls already under way have ended, so a lock does not cut off a call
    (a long stream) that was sent before it, as none was before the client was shared."""

    def __init__(self) -> None:
        self.client = _new_client(None)
        self._calls = 0
        self._retired = False
        self._guard = threading.Lock()

    def acquire(self) -> httpx.Client | None:
        """The client for one more call, or None once retired."""
        with self._guard:
            if self._retired:
                return None
            self._calls += 1
            return self.client

    def release(self) -> None:
        with self._guard:
            self._calls -= 1
            done = self._retired and self._calls == 0
        if done:
            self.client.close()

    def close(self) -> None:
        with self._guard:
            self._retired = True
            done = self._calls == 0
        if done:
            self.client.close()


def client_for(
    vault: Vault, transport: httpx.BaseTransport | None
) -> tuple[httpx.Client, Callable[[], None]]:
    """The client for a call and what ends the call's use of it: the vault's shared client,
    made on first use; a client of the call's own (closed at its end) when a test passes a
    transport, or when the vault locked a moment ago."""
    if transport is None:
        with _CLIENT_LOCK:
            shared: _Shared | None = vault.volatile.get(_CLIENT)
            if shared is None and vault.is_unlocked:
                shared = vault.volatile[_CLIENT] = _Shared()
        client = shared.acquire() if shared is not None else None
        if shared is not None and client is not None:
            return client, shared.release
    own = _new_client(transport)
    return own, own.close


def finish_hop(response: httpx.Response) -> None:
    """Done with a redirect: a short body (most are empty) is read to its end so its kept-alive
    connection can carry the next hop; anything else is closed, and the connection with it
    (a connection is only ever reused after an answer read to its end)."""
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) <= _HOP_BODY_MAX:
        response.read()
    response.close()
