"""End-to-end envelopes between a vault and a paired sidecar, through relays that read nothing.

A message is signed by its sender (Ed25519, over its RFC 8785 form with a context string), then
the signature and the message are sealed together with HPKE (RFC 9180, base mode,
DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to the receiver's X25519 key, with
the HPKE `info` naming the sender's and the receiver's routing ids. So:
- only the receiver can read it, and a relay that changes one byte makes it fail to open;
- the signature inside says who wrote it, and nobody without that key can write one (HPKE base
  mode alone would let anyone who knows the receiver's public key write to it);
- a relay that claims another sender, or delivers it to another receiver, makes it fail to open.

Every message carries a request id, a timestamp, a random nonce, and the sender's session id
and sequence number; `Freshness` refuses what is stale, replayed or out of order (see there).
The relay sees the routing ids, the size and the time, nothing else.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from keysafe.crypto import jcs
from keysafe.relay.routing import routing_id

__all__ = [
    "FRESH_MS",
    "EnvelopeRefused",
    "Freshness",
    "Identity",
    "Kind",
    "Message",
    "PeerKeys",
    "new_id",
    "now_ms",
    "open_sealed",
    "seal",
]

VERSION: Final = 1
FRESH_MS: Final = 120_000  # a message more than 2 minutes from the receiver's clock is stale
START_SKEW_MS: Final = 5_000  # how far before a receiver's start a message may have been sent
MAX_SESSIONS: Final = 4096  # sender sessions remembered at once (each bounded by FRESH_MS)
MAX_SESSIONS_PER_SENDER: Final = 8  # a sender's restarts within FRESH_MS; more is a flood
_SUITE: Final = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_SIGNED: Final = b"keysafe/relay/v1/envelope\n"
_INFO: Final = b"keysafe/relay/v1/seal\n"
_SIG_LEN: Final = 64


class EnvelopeRefused(Exception):
    """An envelope that is not accepted; `reason` is one word for the audit log (tampered,
    forged, replayed, reordered, stale, misdirected, malformed, unknown)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A fresh request or message id (128 random bits, hex)."""
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class PeerKeys:
    """The public half of an end: what the other end needs to write to it and check it."""

    sign: bytes  # Ed25519 public key
    kem: bytes  # X25519 public key

    def __post_init__(self) -> None:
        if len(self.sign) != 32 or len(self.kem) != 32:
            raise ValueError("an end's public keys are 32 bytes each")

    @property
    def rid(self) -> str:
        return routing_id(self.sign)

    def to_text(self) -> str:
        return f"{self.sign.hex()}.{self.kem.hex()}"

    @classmethod
    def from_text(cls, text: str) -> PeerKeys:
        """Parse `to_text`'s form.

        Raises:
            ValueError: not two 32-byte hex keys.
        """
        sign, _, kem = text.partition(".")
        return cls(bytes.fromhex(sign), bytes.fromhex(kem))


@dataclass(frozen=True)
class Identity:
    """One end's long-term keys: Ed25519 to sign, X25519 to be written to."""

    sign: SigningKey
    kem: X25519PrivateKey

    @classmethod
    def generate(cls) -> Identity:
        return cls(SigningKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def from_seeds(cls, sign_seed: bytes | bytearray, kem_seed: bytes | bytearray) -> Identity:
        """The identity two 32-byte seeds make (the vault derives them from its master key)."""
        return cls(SigningKey(bytes(sign_seed)), X25519PrivateKey.from_private_bytes(kem_seed))

    def private_bytes(self) -> bytes:
        """Both private keys (64 bytes), for the sidecar to keep encrypted at rest."""
        return bytes(self.sign) + self.kem.private_bytes_raw()

    @classmethod
    def from_private_bytes(cls, raw: bytes | bytearray) -> Identity:
        if len(raw) != 64:
            raise ValueError("an identity is 64 bytes")
        return cls.from_seeds(raw[:32], raw[32:])

    @property
    def public(self) -> PeerKeys:
        return PeerKeys(bytes(self.sign.verify_key), self.kem.public_key().public_bytes_raw())

    @property
    def rid(self) -> str:
        return self.public.rid


class Kind(StrEnum):
    CLAIM = "claim"  # a sidecar claims an invite (and asks, again and again, whether it is paired)
    REQUEST = "request"  # a sidecar's agent request, for the vault's agent API
    RESPONSE = "response"  # the vault's answer to a claim or a request (same id)
    REFUSED = "refused"  # the vault will not answer this sender (revoked, unknown)


class Message(BaseModel):
    """What an envelope holds, signed by `sender`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    v: Literal[1] = VERSION
    kind: Kind
    sender: str = Field(pattern=r"^[0-9a-f]{32}$")
    to: str = Field(pattern=r"^[0-9a-f]{32}$")
    id: str = Field(pattern=r"^[0-9a-f]{32}$")  # the request id; an answer carries its request's
    ts: int  # the sender's clock, unix milliseconds
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    session: str = Field(pattern=r"^[0-9a-f]{32}$")  # the sender process's, random at its start
    seq: int = Field(ge=1)  # 1, 2, 3, … within the session, in the order sent
    payload: dict[str, JsonValue]


def _info(sender: str, receiver: str) -> bytes:
    return _INFO + sender.encode() + b">" + receiver.encode()


def seal(me: Identity, receiver: PeerKeys, message: Message) -> bytes:
    """`message`, signed by `me` and sealed to `receiver`.

    Raises:
        ValueError: `message` does not name `me` as sender and `receiver` as receiver.
    """
    if message.sender != me.rid or message.to != receiver.rid:
        raise ValueError("a message names its sender and its receiver")
    plain = jcs.dumps(message.model_dump(mode="json"))
    signature = me.sign.sign(_SIGNED + plain).signature
    public = X25519PublicKey.from_public_bytes(receiver.kem)
    return _SUITE.encrypt(signature + plain, public, info=_info(me.rid, receiver.rid))


def open_sealed(
    me: Identity, sealed: bytes, *, sender: str, key_of: Callable[[Message], bytes | None]
) -> Message:
    """Open an envelope the relay says `sender` sent to `me`, and check its signature with the
    Ed25519 key `key_of` gives for the message (None: a sender this end does not know).

    Raises:
        EnvelopeRefused: it does not open (tampered, or not from `sender`, or not to `me`), is
            not a message, names other ends, or is not signed by the sender's key.
    """
    try:
        body = _SUITE.decrypt(sealed, me.kem, info=_info(sender, me.rid))
    except (InvalidTag, ValueError):
        raise EnvelopeRefused(
            "tampered", "the envelope does not open: altered, or not from its sender to us"
        ) from None
    signature, plain = body[:_SIG_LEN], body[_SIG_LEN:]
    try:
        message = Message.model_validate_json(plain)
    except ValidationError:
        raise EnvelopeRefused("malformed", "the envelope holds no message") from None
    if jcs.dumps(message.model_dump(mode="json")) != plain:
        raise EnvelopeRefused("malformed", "the message is not in its canonical form")
    if message.sender != sender or message.to != me.rid:
        raise EnvelopeRefused("misdirected", "the message names other ends than its envelope")
    key = key_of(message)
    if key is None:
        raise EnvelopeRefused("unknown", "the sender is not paired with this end")
    if routing_id(key) != sender:
        raise EnvelopeRefused("forged", "the sender's key does not match its routing id")
    try:
        VerifyKey(key).verify(_SIGNED + plain, signature)
    except (BadSignatureError, ValueError):
        raise EnvelopeRefused("forged", "the signature is not the sender's") from None
    return message


@dataclass
class _Session:
    last_seq: int
    last_ts: int


@dataclass
class Freshness:
    """The receiver's memory of what it accepted, to refuse what is stale, replayed or reordered.

    - Stale: more than FRESH_MS from this end's clock, or sent (by its own clock) before this end
      started, give or take START_SKEW_MS. An envelope captured before a restart never comes back
      as new, although the memory below is gone; an honest sender's retry is sealed anew.
    - Replayed: a nonce seen within FRESH_MS.
    - Reordered: a sequence number at or below the last one accepted from that sender session.
      The sender seals and sends one message at a time, and a relay's mailbox is first in,
      first out, so an honest stream never arrives out of order; a message lost that way is
      resent by its sender, sealed anew.
    """

    started_ms: int = field(default_factory=now_ms)
    _sessions: dict[tuple[str, str], _Session] = field(default_factory=dict)
    _nonces: dict[str, int] = field(default_factory=dict)

    def check(self, message: Message, now: int | None = None) -> None:
        """Accept `message` (remembering it), or refuse it.

        Raises:
            EnvelopeRefused: stale, replayed or reordered.
        """
        now = now_ms() if now is None else now
        self._forget(now)
        if abs(now - message.ts) > FRESH_MS:
            raise EnvelopeRefused("stale", "the message is too old, or from a clock far off")
        if message.ts < self.started_ms - START_SKEW_MS:
            raise EnvelopeRefused("stale", "the message was sent before this end started")
        if message.nonce in self._nonces:
            raise EnvelopeRefused("replayed", "this message was accepted before")
        key = (message.sender, message.session)
        known = self._sessions.get(key)
        if known is not None and message.seq <= known.last_seq:
            raise EnvelopeRefused("reordered", "a later message of this sender came first")
        if known is None and (
            len(self._sessions) >= MAX_SESSIONS
            or sum(1 for s, _ in self._sessions if s == message.sender) >= MAX_SESSIONS_PER_SENDER
        ):
            raise EnvelopeRefused("stale", "too many sender sessions at once")
        self._sessions[key] = _Session(message.seq, message.ts)
        self._nonces[message.nonce] = message.ts

    def _forget(self, now: int) -> None:
        # What is older than the window cannot pass the staleness check any more.
        horizon = now - FRESH_MS
        if self._nonces and min(self._nonces.values()) < horizon:
            self._nonces = {n: ts for n, ts in self._nonces.items() if ts >= horizon}
            self._sessions = {k: s for k, s in self._sessions.items() if s.last_ts >= horizon}


@dataclass
class Sender:
    """One end's outgoing numbering: a session id for this process and its next sequence
    number. The caller seals and hands to the relay one message at a time (see Freshness)."""

    me: Identity
    session: str = field(default_factory=new_id)
    _seq: int = 0

    def message(
        self, kind: Kind, to: str, request_id: str, payload: dict[str, JsonValue]
    ) -> Message:
        self._seq += 1
        return Message(
            kind=kind,
            sender=self.me.rid,
            to=to,
            id=request_id,
            ts=now_ms(),
            nonce=new_id(),
            session=self.session,
            seq=self._seq,
            payload=payload,
        )


def fingerprint(*parts: bytes) -> bytes:
    """SHA-256 over length-prefixed parts (for pairing transcripts)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(4, "big") + p)
    return h.digest()
