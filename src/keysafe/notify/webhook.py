"""Webhook deliveries: the signature every delivery carries, and the URLs keysafe posts to.

Each delivery is one JSON POST. Its headers:

- `keysafe-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, the
  secret being the endpoint's whole `whsec_…` string (UTF-8);
- `keysafe-delivery: <id>`: the same on every retry of one notification, including a retry
  after the server was killed mid-send, so a receiver dedupes on it;
- `keysafe-event: <event>`.

A receiver verifies with `verify` (docs/notifications.md prints the same few lines): the
signature over the raw bytes it received, and a timestamp within five minutes of its clock, so a
captured delivery cannot be replayed later.

URLs are HTTPS, except loopback (`http://127.0.0.1`, `localhost`, `[::1]`), where nothing
crosses a network.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Final
from urllib.parse import urlsplit

from keysafe.errors import MalformedRequestError
from keysafe.hosts import is_loopback
from keysafe.notify.notice import Notice

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TOLERANCE_S",
    "body",
    "check_url",
    "new_secret",
    "signature_header",
    "verify",
]

SIGNATURE_HEADER: Final = "keysafe-signature"
DELIVERY_HEADER: Final = "keysafe-delivery"
EVENT_HEADER: Final = "keysafe-event"
TOLERANCE_S: Final = 300
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix, not a secret


def new_secret() -> str:
    """A fresh endpoint signing secret: `whsec_` and 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def body(delivery_id: str, notice: Notice, created_at: float, now: float) -> bytes:
    """A delivery's JSON: its id, event and time, the notice as a model and as text."""
    return json.dumps(
        {
            "delivery_id": delivery_id,
            "event": str(notice.event),
            "created_at": int(created_at),
            "notice": notice.model_dump(mode="json"),
            "text": notice.text(now),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def _mac(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, t: int) -> str:
    """The `keysafe-signature` value for `body` sent at unix time `t`."""
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(secret: str, body: bytes, header: str, *, now: float) -> bool:
    """Whether `header` signs exactly `body` with `secret`, within TOLERANCE_S of `now`."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - t) > TOLERANCE_S:
        return False
    return hmac.compare_digest(_mac(secret, t, body), parts.get("v1", ""))


def check_url(url: str) -> str:
    """`url` if keysafe may post to it: https anywhere, http only on loopback.

    Raises:
        MalformedRequestError: another scheme, no host, credentials in the URL, or http to a
            host that is not loopback.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        host, parts = "", urlsplit("")
    if not host or parts.scheme not in ("https", "http") or len(text) > 2000:
        raise MalformedRequestError(
            f"{text[:80]!r} is not a webhook URL keysafe can post to.",
            next_step="give an https:// URL, e.g. https://hooks.example/keysafe.",
        )
    if parts.username or parts.password:
        raise MalformedRequestError(
            "A webhook URL must not carry a user name or password: it is shown in listings.",
            next_step="drop the user:password@ part; deliveries are signed instead.",
        )
    if parts.scheme == "http" and not is_loopback(host):
        raise MalformedRequestError(
            f"Refusing http:// to {host}: notifications would cross the network in clear.",
            next_step="use https://, or http://127.0.0.1 for a receiver on this machine.",
        )
    return text
