"""Pairing a sidecar with a vault: the invite, the claim, and the four words both sides show.

1. The owner's vault makes an invite (`ksi_…`): the vault's public keys, the relay's URL, the
   agent's name, an id, a one-time secret and an expiry, signed by the vault's Ed25519 key. It
   travels to the agent's host out of band (the owner copies it).
2. The sidecar makes its own keys and sends a claim through the relay, sealed to the vault's key
   from the invite and signed by its own: the invite and the sidecar's public keys.
3. The words come from a commit-then-reveal exchange, so nobody in between can choose keys
   until the two ends' words match (44 bits are few enough to search offline otherwise): the
   claim carries a commitment to a random nonce of the sidecar's; the vault answers with a nonce
   of its own (fixed per invite); the sidecar then reveals its nonce, which must match the
   commitment. Both ends derive four words from the transcript (the invite as signed, both ends'
   keys, both nonces). Each side fixed its nonce before it saw the other's, and an invite is
   claimed once, so someone who swapped keys on the way has one chance in 2^44 that the words
   match. The owner types the words the sidecar shows when approving; other words deny it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from functools import cache
from typing import Final, Literal

from mnemonic import Mnemonic
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keysafe.crypto import jcs
from keysafe.errors import MalformedRequestError
from keysafe.relay.envelope import Identity, PeerKeys, fingerprint

__all__ = [
    "INVITE_PREFIX",
    "INVITE_TTL_S",
    "Claim",
    "ClaimAnswer",
    "ClaimStatus",
    "Invite",
    "commitment",
    "decode_invite",
    "encode_invite",
    "normalise_words",
    "pairing_words",
]

INVITE_PREFIX: Final = "ksi_"
INVITE_TTL_S: Final = 600
WORDS: Final = 4
_INVITE_SIGNED: Final = b"keysafe/relay/v1/invite\n"
_WORDS_CONTEXT: Final = b"keysafe/relay/v1/pairing-words"
_COMMIT_CONTEXT: Final = b"keysafe/relay/v1/pairing-commit\n"


class Invite(BaseModel):
    """What an invite says; the vault's signature covers its RFC 8785 form."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    v: Literal[1] = 1
    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    agent: str = Field(min_length=1, max_length=64)
    vault: str  # PeerKeys.to_text
    relay: str = Field(min_length=1, max_length=500)
    expires: int  # unix seconds
    secret: str = Field(pattern=r"^[0-9a-f]{32}$")  # proves the claimer holds this invite

    @property
    def vault_keys(self) -> PeerKeys:
        return PeerKeys.from_text(self.vault)

    def signed_bytes(self) -> bytes:
        return jcs.dumps(self.model_dump(mode="json"))


def encode_invite(vault: Identity, invite: Invite) -> str:
    """The invite as the owner hands it over: `ksi_` + base64url(invite) + "." + base64url(sig)."""
    body = invite.signed_bytes()
    sig = vault.sign.sign(_INVITE_SIGNED + body).signature
    return INVITE_PREFIX + _b64(body) + "." + _b64(sig)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _bad_invite(why: str) -> MalformedRequestError:
    return MalformedRequestError(
        f"This is not a keysafe invite ({why}).",
        next_step="copy the whole `ksi_…` line `keysafe agent invite` printed, or ask the "
        "owner for a new one.",
    )


def decode_invite(text: str, *, now: float) -> Invite:
    """The invite in `text`, checked against its own vault key and its expiry.

    The signature proves the invite was not changed after the vault made it, given that key; the
    pairing words prove the key itself (a swapped one shows other words).

    Raises:
        MalformedRequestError: not an invite, altered, or expired.
    """
    text = text.strip()
    if not text.startswith(INVITE_PREFIX) or text.count(".") != 1:
        raise _bad_invite("it does not start with ksi_")
    body_text, _, sig_text = text[len(INVITE_PREFIX) :].partition(".")
    try:
        body, sig = _unb64(body_text), _unb64(sig_text)
        invite = Invite.model_validate_json(body)
        keys = invite.vault_keys
    except (binascii.Error, ValueError, ValidationError):
        raise _bad_invite("it does not decode") from None
    if invite.signed_bytes() != body:
        raise _bad_invite("it is not in its canonical form")
    try:
        VerifyKey(keys.sign).verify(_INVITE_SIGNED + body, sig)
    except (BadSignatureError, ValueError):
        raise _bad_invite("its signature does not verify: it was altered") from None
    if now >= invite.expires:
        raise MalformedRequestError(
            "This invite has expired (they last 10 minutes).",
            next_step="ask the owner for a new one: `keysafe agent invite NAME`.",
        )
    return invite


class Claim(BaseModel):
    """A sidecar's claim of an invite (the payload of a `claim` message)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    invite: Invite
    sidecar: str  # PeerKeys.to_text of the sidecar; it also signs the message that carries this
    host: str = Field(default="", max_length=100)  # a label for the owner, e.g. the hostname
    commitment: str = Field(pattern=r"^[0-9a-f]{64}$")  # SHA-256 of the sidecar's nonce
    reveal: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")  # that nonce, later

    @property
    def sidecar_keys(self) -> PeerKeys:
        return PeerKeys.from_text(self.sidecar)


ClaimStatus = Literal["reveal", "pending", "paired", "denied", "expired", "refused"]


class ClaimAnswer(BaseModel):
    """The vault's answer to a claim: still waiting for the owner, paired, or refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: ClaimStatus
    nonce: str | None = None  # "reveal": the vault's nonce; now the sidecar reveals its own
    approval_id: str | None = None
    words: list[str] | None = None  # the vault's words, so the sidecar can show a mismatch
    message: str | None = None


@cache
def _wordlist() -> list[str]:
    return list(Mnemonic("english").wordlist)


def commitment(nonce: bytes) -> str:
    """The sidecar's commitment to its nonce (hex SHA-256)."""
    return hashlib.sha256(_COMMIT_CONTEXT + nonce).hexdigest()


def pairing_words(
    invite: Invite, vault: PeerKeys, sidecar: PeerKeys, sidecar_nonce: bytes, vault_nonce: bytes
) -> list[str]:
    """Four words (44 bits) from the pairing's transcript; both ends compute them alike."""
    digest = fingerprint(
        _WORDS_CONTEXT,
        invite.signed_bytes(),
        vault.sign,
        vault.kem,
        sidecar.sign,
        sidecar.kem,
        sidecar_nonce,
        vault_nonce,
    )
    bits = int.from_bytes(digest[:8], "big") >> (64 - 11 * WORDS)
    words = _wordlist()
    return [words[(bits >> (11 * (WORDS - 1 - i))) & 0x7FF] for i in range(WORDS)]


def normalise_words(text: str) -> list[str]:
    """The words as the owner typed them: any case, spaces, commas or hyphens between."""
    return [w for w in text.lower().replace(",", " ").replace("-", " ").split() if w]
