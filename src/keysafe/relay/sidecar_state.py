"""What a paired sidecar keeps in its own home (`KEYSAFE_HOME` on the agent's host): the folder
0700, `sidecar.json` 0600, with its private keys encrypted under a passphrase (Argon2id, then
XChaCha20-Poly1305) and only the SHA-256 of its local token."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from keysafe import files
from keysafe.crypto import aead
from keysafe.crypto.kdf import DEFAULT_ARGON2, Argon2Params, argon2id
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, NotFoundError, WrongPassphraseError
from keysafe.relay.envelope import Identity, PeerKeys
from keysafe.relay.pairing import Invite

__all__ = [
    "LOCAL_PREFIX",
    "STATE_FILE",
    "SidecarState",
    "load_state",
    "open_identity",
    "save_state",
    "sidecar_home",
]

STATE_FILE: Final = "sidecar.json"
LOCAL_PREFIX: Final = "ks_local_"
_AAD: Final = b"keysafe/sidecar/v1/identity\n"


class SidecarState(BaseModel):
    """What `sidecar.json` holds. The private keys are sealed under the passphrase."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    agent: str
    relay: str
    vault: str  # PeerKeys text
    public: str  # this sidecar's PeerKeys text
    kdf: dict[str, int]
    salt: str  # hex
    nonce: str  # hex
    sealed: str  # hex: the 64 private key bytes, encrypted
    local_token_sha256: str
    paired_at: str


def sidecar_home() -> Path:
    """The sidecar's home: `KEYSAFE_HOME`, or ~/.keysafe (made 0700)."""
    raw = os.environ.get("KEYSAFE_HOME") or str(Path.home() / ".keysafe")
    path = Path(raw).expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _seal_identity(
    identity: Identity, passphrase: SecretBytes, kdf: Argon2Params
) -> tuple[bytes, bytes, bytes]:
    salt, nonce = secrets.token_bytes(16), aead.new_nonce()
    key = argon2id(passphrase.reveal(), salt, kdf)
    try:
        sealed = aead.encrypt(key, nonce, identity.private_bytes(), _AAD + identity.rid.encode())
    finally:
        key[:] = bytes(len(key))
    return salt, nonce, sealed


def save_state(
    home: Path,
    *,
    identity: Identity,
    invite: Invite,
    passphrase: SecretBytes,
    kdf: Argon2Params = DEFAULT_ARGON2,
) -> str:
    """Write the sidecar's state after the owner approved the pairing; returns the local token
    (shown once: only its hash is kept).

    Raises:
        AlreadyExistsError: this home already holds a paired sidecar.
    """
    salt, nonce, sealed = _seal_identity(identity, passphrase, kdf)
    token = LOCAL_PREFIX + secrets.token_urlsafe(32)
    state = SidecarState(
        agent=invite.agent,
        relay=invite.relay,
        vault=invite.vault,
        public=identity.public.to_text(),
        kdf=kdf.to_dict(),
        salt=salt.hex(),
        nonce=nonce.hex(),
        sealed=sealed.hex(),
        local_token_sha256=hashlib.sha256(token.encode()).hexdigest(),
        paired_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    files.write_private(home / STATE_FILE, state.model_dump_json().encode(), what="sidecar state")
    return token


def load_state(home: Path) -> SidecarState:
    """The sidecar's state.

    Raises:
        NotFoundError: not paired yet.
        IntegrityError: the file is not a sidecar's state.
    """
    path = home / STATE_FILE
    if not path.is_file():
        raise NotFoundError(
            f"No paired sidecar in {home}.",
            next_step="pair first: `keysafe sidecar pair 'ksi_…'` with the owner's invite.",
        )
    try:
        return SidecarState.model_validate_json(path.read_bytes())
    except ValidationError:
        raise IntegrityError(
            f"{path} is not a keysafe sidecar's state.", next_step="pair again in a new home."
        ) from None


def open_identity(state: SidecarState, passphrase: SecretBytes) -> Identity:
    """The sidecar's private keys, opened with the passphrase.

    Raises:
        WrongPassphraseError: the passphrase does not open them.
    """
    key = argon2id(
        passphrase.reveal(), bytes.fromhex(state.salt), Argon2Params.from_dict(state.kdf)
    )
    public = PeerKeys.from_text(state.public)
    try:
        raw = aead.decrypt(
            key, bytes.fromhex(state.nonce), bytes.fromhex(state.sealed), _AAD + public.rid.encode()
        )
    except Exception:
        raise WrongPassphraseError(
            "The passphrase does not open this sidecar's keys.",
            next_step="give the passphrase chosen at `keysafe sidecar pair`.",
        ) from None
    finally:
        key[:] = bytes(len(key))
    identity = Identity.from_private_bytes(raw)
    raw[:] = bytes(len(raw))
    if identity.public != public:
        raise IntegrityError("The sidecar's keys do not match its state.", next_step="pair again.")
    return identity
