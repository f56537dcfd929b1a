"""The join code that ties the agent's host to the owner's ceremony without the vault, and the
owner's tag on the recovery party's key and on what the ceremony is about.

The owner's CLI makes the code and shows it; the owner hands it to the agent's host. It carries
the keygen id, a hash of the recovery party's key and a MAC key the vault never sees. With it the
agent knows the recovery key it is shown is the owner's, and the recovery party knows the
agent's key is the agent's (its tag): a vault that relays cannot put itself in the middle and
end up holding two shares. With a long-term join key shared by the owner and the agent's host,
the MAC key is derived per ceremony and no code needs handing over.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from keysafe.agent_models import KeygenView
from keysafe.crypto import jcs
from keysafe.crypto.kdf import hkdf_sha256
from keysafe.errors import MalformedRequestError
from keysafe.mpc import channel
from keysafe.mpc.channel import ChannelError
from keysafe.mpc.frost.keys import RECOVERY, USER
from keysafe.mpc.keygen import SESSION_ID_LEN

__all__ = [
    "CODE_PREFIX",
    "HASH_LEN",
    "JOIN_KEY_LEN",
    "MAC_LEN",
    "JoinCode",
    "check_recovery_tag",
    "from_b64",
    "hash_recovery_key",
    "params_digest",
    "read_join_key",
    "recovery_tag",
    "to_b64",
]

CODE_PREFIX: Final = "ksj_"
JOIN_KEY_LEN: Final = 32
_JOIN_INFO: Final = b"keysafe/ceremony/v1/join-key/"
HASH_LEN: Final = 16
MAC_LEN: Final = 32


def hash_recovery_key(public: bytes) -> bytes:
    """What a join code says of the recovery party's key: a short hash of it."""
    return hashlib.sha256(b"keysafe/keygen/recovery-key" + public).digest()[:HASH_LEN]


@dataclass(frozen=True)
class JoinCode:
    """What the agent's host needs to join, from the owner, not from the vault."""

    session_id: bytes
    recovery_key_hash: bytes | None  # None: a join key's code (the recovery key comes tagged)
    mac_key: bytes

    def __repr__(self) -> str:
        return f"JoinCode(id={self.session_id.hex()[:12]}…)"

    @classmethod
    def from_join_key(cls, join_key: bytes, session_id: bytes) -> JoinCode:
        """The code of ceremony `session_id` for an agent host and an owner that share a
        long-term join key (`KEYSAFE_AGENT_JOIN_KEY_FILE`; never given to the vault): the MAC
        key is derived from it, and the recovery party tags its key instead of the code naming
        it, so the agent's host can join by itself (`keysafe mcp`)."""
        mac = bytes(hkdf_sha256(join_key, info=_JOIN_INFO + session_id))
        return cls(session_id, None, mac)

    @property
    def keygen_id(self) -> str:
        return self.session_id.hex()

    def encode(self) -> str:
        assert self.recovery_key_hash is not None, "a join key's code is never shown"
        raw = self.session_id + self.recovery_key_hash + self.mac_key
        return CODE_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> JoinCode:
        """Raises:
        MalformedRequestError: not a join code (a typo, or cut short)."""
        text = text.strip()
        bad = MalformedRequestError(
            "That is not a keygen join code (ksj_…).",
            next_step="copy the whole code the owner's `keysafe wallet create` printed.",
        )
        if not text.startswith(CODE_PREFIX):
            raise bad
        body = text[len(CODE_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise bad from None
        if len(raw) != SESSION_ID_LEN + HASH_LEN + MAC_LEN:
            raise bad
        return cls(
            raw[:SESSION_ID_LEN],
            raw[SESSION_ID_LEN : SESSION_ID_LEN + HASH_LEN],
            raw[SESSION_ID_LEN + HASH_LEN :],
        )


def params_digest(view: KeygenView) -> bytes:
    """What a ceremony is about, as the vault states it: kind, wallet, chain, agent, quorum and
    (for a reshare) the public package. The owner's recovery tag covers it, so the vault cannot
    show the agent another wallet, kind or key than the owner started."""
    fields = {
        "kind": view.kind,
        "wallet": view.wallet,
        "chain": view.chain,
        "agent": view.agent,
        "quorum": view.quorum,
        "public": view.public,
    }
    return hashlib.sha256(jcs.dumps(fields)).digest()


def recovery_tag(mac_key: bytes, session_id: bytes, public: bytes, params: bytes) -> bytes:
    """The owner's tag on its recovery key and on the ceremony's parameters (`params_digest`)."""
    return channel.announce_tag(mac_key, session_id, RECOVERY, public + params)


def check_recovery_tag(code: JoinCode, view: KeygenView) -> None:
    """The agent's check of what the vault shows: the recovery key and the ceremony's
    parameters carry the owner's tag (under the join code's or join key's MAC key).

    Raises:
        ChannelError: they do not (culprit: the vault, which relayed them).
    """
    keys = {i: from_b64(k) for i, k in view.keys.items()}
    if RECOVERY not in keys or view.recovery_tag is None:
        raise ChannelError("the recovery party's key comes without the owner's tag", USER)
    want = recovery_tag(code.mac_key, code.session_id, keys[RECOVERY], params_digest(view))
    if not hmac.compare_digest(from_b64(view.recovery_tag), want):
        raise ChannelError(
            "the recovery key or the ceremony's wallet, kind or key does not carry the owner's "
            "tag: not what the owner started",
            USER,
        )


def read_join_key(path: Path) -> bytes:
    """The long-term join key in `path` (hex).

    Raises:
        MalformedRequestError: missing, unreadable or not a join key.
    """
    try:
        raw = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        raw = b""
    if len(raw) != JOIN_KEY_LEN:
        raise MalformedRequestError(
            f"{path} does not hold a join key ({JOIN_KEY_LEN * 2} hex characters).",
            next_step="copy the file `--join-key-file` made on the owner's side, unchanged.",
        )
    return raw


def to_b64(raw: bytes) -> str:
    """Bytes as the vault's views carry them (standard base64)."""
    return base64.b64encode(raw).decode()


def from_b64(value: str) -> bytes:
    """Bytes from a view's base64 (strict: anything else is refused)."""
    return base64.b64decode(value, validate=True)
