"""End-to-end channels between the three parties of a 2-of-3 key ceremony, through the vault.

Each party makes a fresh X25519 key for one ceremony and announces its public half. A message
from party i to party j is HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
ChaCha20-Poly1305) to j's key, with the HPKE `info` binding the ceremony's session id, the
round, the sender and the receiver: the vault, which relays every message, cannot read one it
is not the receiver of, nor move one to another session, round or party.

HPKE base mode does not say who sent a message. Where that matters (agent ↔ recovery: the vault
relays them and must not be able to stand in for either), the two parties share a MAC key out of
band (the join code the owner hands to the agent's host) and every message between them carries
HMAC-SHA256 under it inside the encryption. Messages to or from the vault need no MAC: the
vault is the other end, and the agent's token or the owner's session authenticates the sender
to it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from keysafe.mpc.frost.keys import PARTIES

__all__ = ["KEY_LEN", "Channel", "ChannelError", "announce_tag", "new_key", "public_bytes"]

KEY_LEN: Final = 32
MAC_LEN: Final = 32
_SUITE: Final = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_INFO: Final = b"keysafe/ceremony/v1/message"
_ANNOUNCE: Final = b"keysafe/ceremony/v1/announce"


class ChannelError(Exception):
    """A message that did not open: wrong key, altered, moved, or without its MAC. `culprit` is
    the party it claims to come from (or the vault, which relayed it)."""

    def __init__(self, message: str, culprit: int) -> None:
        super().__init__(message)
        self.culprit = culprit


def new_key() -> X25519PrivateKey:
    """A fresh ephemeral key for one ceremony (never stored)."""
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def announce_tag(mac_key: bytes, session_id: bytes, identifier: int, public: bytes) -> bytes:
    """HMAC over a party's announced key, under the MAC key two parties share out of band: the
    other one accepts that key only with this tag, so the relay cannot swap it for its own."""
    data = _ANNOUNCE + session_id + bytes([identifier]) + public
    return hmac.new(mac_key, data, hashlib.sha256).digest()


def _info(session_id: bytes, round_: int, sender: int, receiver: int) -> bytes:
    return _INFO + session_id + round_.to_bytes(2, "big") + bytes([sender, receiver])


@dataclass
class Channel:
    """One party's end of the ceremony's channels.

    `peers` holds the other parties' announced public keys; `macs` the MAC key shared with a
    peer out of band, for the peers whose messages the relay must not be able to forge.
    """

    session_id: bytes
    me: int
    key: X25519PrivateKey
    peers: Mapping[int, bytes]
    macs: Mapping[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.me not in PARTIES or set(self.peers) != set(PARTIES) - {self.me}:
            raise ValueError("a channel needs this party and the two others' keys")
        if any(len(k) != KEY_LEN for k in self.peers.values()):
            raise ValueError("every announced key is 32 bytes")

    def seal(self, round_: int, receiver: int, payload: bytes) -> bytes:
        """`payload` for `receiver` in round `round_`: only it can open it, only as this."""
        info = _info(self.session_id, round_, self.me, receiver)
        mac = self.macs.get(receiver)
        body = payload if mac is None else hmac.new(mac, info + payload, hashlib.sha256).digest()
        if mac is not None:
            body += payload
        public = X25519PublicKey.from_public_bytes(self.peers[receiver])
        return _SUITE.encrypt(body, public, info=info)

    def open(self, round_: int, sender: int, sealed: bytes) -> bytes:
        """The payload `sender` sealed for this party in round `round_`.

        Raises:
            ChannelError: it does not open as exactly that (culprit: `sender`).
        """
        if sender not in self.peers:
            raise ChannelError(f"party {sender} is not in this ceremony", sender)
        info = _info(self.session_id, round_, sender, self.me)
        try:
            body = _SUITE.decrypt(sealed, self.key, info=info)
        except (InvalidTag, ValueError):
            raise ChannelError(
                f"round {round_} message from party {sender} does not open: altered, replayed "
                "from another session or round, or sealed to another key",
                sender,
            ) from None
        mac = self.macs.get(sender)
        if mac is None:
            return body
        tag, payload = body[:MAC_LEN], body[MAC_LEN:]
        want = hmac.new(mac, info + payload, hashlib.sha256).digest()
        if len(tag) != MAC_LEN or not hmac.compare_digest(tag, want):
            raise ChannelError(
                f"round {round_} message from party {sender} lacks the MAC the join code "
                "keys: someone between the parties made it",
                sender,
            )
        return payload
