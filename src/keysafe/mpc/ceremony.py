"""A party's side of a keygen that is not the vault's: the recovery party in the owner's CLI,
the agent on its host. Both talk to the vault through `send` (the owner's session or the
agent's token) and run `mpc/keygen.py` behind the end-to-end channel.

The join code ties the two together without the vault: the owner's CLI makes it and shows it;
the owner hands it to the agent's host. It carries the keygen id, a hash of the recovery party's
key and a MAC key the vault never sees. With it the agent knows the recovery key it is shown is
the owner's, and the recovery party knows the agent's key is the agent's (its tag): a vault that
relays cannot put itself in the middle and end up holding two shares.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keysafe import files
from keysafe.agent_models import KeygenPost, KeygenView, Sealed
from keysafe.crypto import jcs
from keysafe.crypto.kdf import hkdf_sha256
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, MalformedRequestError
from keysafe.mpc import channel, share_file
from keysafe.mpc.channel import Channel, ChannelError
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import ED25519, SECP256K1
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER, PublicKeyPackage
from keysafe.mpc.keygen import SESSION_ID_LEN, KeygenParty, ReshareParty, public_digest
from keysafe.mpc.share_file import Share

__all__ = [
    "AGENT",
    "RECOVERY",
    "USER",
    "CeremonyFailed",
    "ChannelError",
    "JoinCode",
    "Party",
    "Send",
    "recovery_key",
]

logger = logging.getLogger(__name__)

TTL_S: Final = 10 * 60  # a ceremony's life in the vault (service/keygen.py uses this one)

CODE_PREFIX: Final = "ksj_"
JOIN_KEY_LEN: Final = 32
_JOIN_INFO: Final = b"keysafe/ceremony/v1/join-key/"
_HASH_LEN: Final = 16
_MAC_LEN: Final = 32
POLL_S: Final = 0.5

Send = Callable[[str, KeygenPost], KeygenView]  # (keygen id, post) → the vault's answer


class CeremonyFailed(IntegrityError):
    """The vault says the ceremony failed: nothing was created or changed (a definite answer,
    unlike a lost connection or a ceremony the vault no longer knows)."""


def _key_hash(public: bytes) -> bytes:
    return hashlib.sha256(b"keysafe/keygen/recovery-key" + public).digest()[:_HASH_LEN]


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
        if len(raw) != SESSION_ID_LEN + _HASH_LEN + _MAC_LEN:
            raise bad
        return cls(
            raw[:SESSION_ID_LEN], raw[SESSION_ID_LEN : SESSION_ID_LEN + _HASH_LEN],
            raw[SESSION_ID_LEN + _HASH_LEN :],
        )  # fmt: skip


def params_digest(view: KeygenView) -> bytes:
    """What a ceremony is about, as the vault states it: kind, wallet, chain, agent, quorum and
    (for a reshare) the public package. The owner's recovery tag covers it, so the vault cannot
    show the agent another wallet, kind or key than the owner started."""
    fields = {
        "kind": view.kind, "wallet": view.wallet, "chain": view.chain, "agent": view.agent,
        "quorum": view.quorum, "public": view.public,
    }  # fmt: skip
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
    keys = {i: _b64(k) for i, k in view.keys.items()}
    if RECOVERY not in keys or view.recovery_tag is None:
        raise ChannelError("the recovery party's key comes without the owner's tag", USER)
    want = recovery_tag(code.mac_key, code.session_id, keys[RECOVERY], params_digest(view))
    if not hmac.compare_digest(_b64(view.recovery_tag), want):
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


def _enc(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def recovery_key() -> tuple[X25519PrivateKey, str]:
    """A fresh ephemeral key for the recovery party, and its public half (base64) for the
    vault (`KeygenStart`)."""
    key = channel.new_key()
    return key, _enc(channel.public_bytes(key))


class Party:
    """The agent's (1) or the recovery party's (3) side of one keygen.

    The recovery side: `Party.recovery(send, start)` with the view `start` returned, then
    `join_code()` for the agent's host. The agent side: `Party.agent(send, code)`. Then, on
    either: `run()` gives this party's share; keep it (write the file), then `confirm()` tells
    the vault, which stores its own share once both confirmed; it returns the wallet's address.
    """

    def __init__(
        self, me: int, send: Send, keygen_id: str, key: X25519PrivateKey, code: JoinCode,
        old_share: Share | None = None,
    ) -> None:  # fmt: skip
        self.me, self._send, self.keygen_id = me, send, keygen_id
        self._key, self._code = key, code
        self._old = old_share
        self.peer = RECOVERY if me == AGENT else AGENT
        self._party: KeygenParty | ReshareParty | None = None
        self._idle = 0
        self._pinned: bytes | None = None  # params_digest of the ceremony this party is in
        self._channel: Channel | None = None
        self.view: KeygenView | None = None

    def __repr__(self) -> str:
        return f"Party(me={self.me}, keygen={self.keygen_id[:12]}…)"

    @classmethod
    def recovery(
        cls, send: Send, key: X25519PrivateKey, started: KeygenView,
        old_share: Share | None = None, join_key: bytes | None = None,
    ) -> Party:  # fmt: skip
        """The recovery party of the ceremony `started` opened; in a reshare `old_share` is
        its current share (needed when it deals; checked against the wallet either way). With
        `join_key` (shared with the agent's host) no code needs handing over."""
        sid = bytes.fromhex(started.id)
        code = (
            JoinCode.from_join_key(join_key, sid) if join_key is not None
            else JoinCode(sid, _key_hash(channel.public_bytes(key)), secrets.token_bytes(_MAC_LEN))
        )  # fmt: skip
        party = cls(RECOVERY, send, started.id, key, code, old_share)
        party.view, party._pinned = started, params_digest(started)
        return party

    @classmethod
    def agent(cls, send: Send, code: JoinCode, old_share: Share | None = None) -> Party:
        """The agent's party of the ceremony `code` names; in a reshare `old_share` is its
        current share (needed when it deals)."""
        return cls(AGENT, send, code.keygen_id, channel.new_key(), code, old_share)

    def join_code(self) -> str:
        return self._code.encode()

    @property
    def chain(self) -> str:
        assert self.view is not None
        return self.view.chain

    def _post(self, post: KeygenPost) -> KeygenView:
        self.view = self._send(self.keygen_id, post)
        if self._pinned is not None and params_digest(self.view) != self._pinned:
            raise ChannelError("the vault changed what the ceremony is about midway", USER)
        if self.view.status == "failed":
            raise CeremonyFailed(
                f"The ceremony failed: {self.view.failure}.",
                next_step="nothing was changed; start it again.",
            )
        return self.view

    def _abort(self, why: str) -> None:
        try:
            self._send(self.keygen_id, KeygenPost(abort=why[:300]))
        except Exception as exc:
            logger.warning("could not tell the vault the keygen stopped: %s", type(exc).__name__)

    def run(self, deadline: float | None = None) -> Share:
        """Run this party's rounds to its share (not yet usable: keep it, then `confirm`).

        Raises:
            IntegrityError: a check failed here (the keygen is stopped for everyone, naming
                the party at fault) or elsewhere, or the other parties did not come in time.
        """
        deadline = deadline or time.monotonic() + TTL_S
        try:
            return self._run(deadline)
        except (ChannelError, FrostError) as exc:
            self._abort(f"party {self.me} refused party {exc.culprit}'s messages")
            raise IntegrityError(
                f"The keygen stopped: {exc}.",
                next_step="nothing was created; start again, and check who relays your messages.",
                culprit=exc.culprit or 0,
            ) from None

    def _run(self, deadline: float) -> Share:
        view = self._announce()
        # All three keys, and for the agent the owner's tag on the recovery key (posted by the
        # owner's first request, which may come after the agent's).
        while len(view.keys) < 3 or (self.me == AGENT and view.recovery_tag is None):
            view = self._wait(deadline, "the other parties to join")
        self._channel = self._open_channel(view)
        self._party = self._protocol(view)
        self._deliver(1, self._party.start())
        for r in range(1, self._party.rounds + 1):
            inbox = self._collect(r, deadline)
            self._deliver(r + 1, self._party.step(r, inbox))
        assert self._party.share is not None
        return self._party.share

    def _protocol(self, view: KeygenView) -> KeygenParty | ReshareParty:
        sid = bytes.fromhex(self.keygen_id)
        if view.kind == "create" and self._old is not None:
            raise MalformedRequestError(
                "This is a new wallet's keygen, and a share was given to replace.",
                next_step="give a new --share-file path: a keygen never overwrites a share.",
            )
        if view.kind == "create":
            return KeygenParty(SECP256K1 if view.chain == "evm" else ED25519, self.me, sid)
        if view.public is None or view.quorum is None or len(view.quorum) != 2:
            raise ChannelError("the vault's reshare lacks its public package or quorum", USER)
        public = PublicKeyPackage.from_dict(view.public)
        quorum = (view.quorum[0], view.quorum[1])
        if self._old is not None and self._old.key.public != public:
            raise ChannelError(
                "the vault reshares another key (or generation) than this party's share is of",
                USER,
            )
        if self.me in quorum and self._old is None:
            raise MalformedRequestError(
                f"Party {self.me} deals in this reshare: it needs its current share.",
                next_step="give this party's current share file (and its secret).",
            )
        old_key = self._old.key if self._old is not None and self.me in quorum else None
        self._old = None
        return ReshareParty(self.me, sid, public, quorum, old_key)

    def _announce(self) -> KeygenView:
        if self.me == RECOVERY:
            # The tag authenticates this key (with a join key, the agent's host has no code
            # naming it) and what the ceremony is about, as this party started it.
            assert self.view is not None and self._pinned is not None
            public = channel.public_bytes(self._key)
            tag = recovery_tag(self._code.mac_key, self._code.session_id, public, self._pinned)
            return self._post(KeygenPost(tag=_enc(tag)))
        public = channel.public_bytes(self._key)
        tag = channel.announce_tag(self._code.mac_key, self._code.session_id, AGENT, public)
        return self._post(
            KeygenPost(key=base64.b64encode(public).decode(), tag=base64.b64encode(tag).decode())
        )

    def _wait(self, deadline: float, what: str) -> KeygenView:
        if time.monotonic() > deadline:
            self._abort(f"party {self.me} waited too long for {what}")
            raise IntegrityError(
                f"Gave up waiting for {what}.", next_step="start `keysafe wallet create` again."
            )
        # Quick at first (a round's answer is usually there within milliseconds), then backing
        # off to POLL_S while a party is slow (a person starting the agent's side).
        self._idle += 1
        time.sleep(min(POLL_S, 0.01 * 1.5**self._idle))
        seen = len(self.view.messages) if self.view else 0
        view = self._post(KeygenPost())
        if len(view.messages) != seen or (len(view.keys) == 3 and self._party is None):
            self._idle = 0
        return view

    def _open_channel(self, view: KeygenView) -> Channel:
        keys = {i: _b64(k) for i, k in view.keys.items()}
        named = self._code.recovery_key_hash
        if self.me == AGENT:
            if named is not None and not hmac.compare_digest(_key_hash(keys[RECOVERY]), named):
                raise ChannelError(
                    "the recovery party's key is not the one the join code names", USER
                )
            check_recovery_tag(self._code, view)
            self._pinned = params_digest(view)
        else:
            tag = channel.announce_tag(
                self._code.mac_key, self._code.session_id, AGENT, keys[AGENT]
            )
            if view.agent_tag is None or not hmac.compare_digest(_b64(view.agent_tag), tag):
                raise ChannelError(
                    "the agent's key does not carry the join code's tag: not the agent's", USER
                )
        return Channel(
            self._code.session_id, self.me, self._key,
            {j: k for j, k in keys.items() if j != self.me}, {self.peer: self._code.mac_key},
        )  # fmt: skip

    def _deliver(self, round_: int, out: dict[int, bytes]) -> None:
        assert self._channel is not None
        sealed = [
            Sealed(
                round=round_,
                sender=self.me,
                receiver=j,
                body=_enc(self._channel.seal(round_, j, m)),
            )
            for j, m in out.items()
        ]
        self._post(KeygenPost(messages=sealed))

    def _collect(self, round_: int, deadline: float) -> dict[int, bytes]:
        assert self._channel is not None and self.view is not None
        view = self.view
        while True:
            got = {m.sender: m.body for m in view.messages if m.round == round_}
            if set(got) >= {USER, self.peer}:
                return {j: self._channel.open(round_, j, _b64(got[j])) for j in (USER, self.peer)}
            view = self._wait(deadline, f"round {round_}")

    def confirm(self, deadline: float | None = None) -> str:
        """Tell the vault this party kept its share; wait until the vault keeps its own.

        Returns:
            The new wallet's address.

        Raises:
            IntegrityError: the keygen failed, or the vault did not finish in time.
        """
        assert self._party is not None and self._party.share is not None
        deadline = deadline or time.monotonic() + TTL_S
        digest = public_digest(self._party.share.key.public, self._code.session_id)
        self._deliver(self._party.rounds + 1, {USER: digest})
        self._party.share = None
        view = self.view
        while view is None or view.status != "done":
            view = self._wait(deadline, "the other party to confirm")
        assert view.address is not None
        return view.address


def keep_and_confirm(party: Party, path: Path, doc: dict[str, Any]) -> str:
    """Keep this party's new share at `path`, then confirm to the vault. A new file appears
    before the confirmation (the vault stores its share only after it); a file being replaced
    keeps the old share (the new one waits beside it) until the vault has confirmed. Only a
    definite failure from the vault removes the new share: when the outcome is unknown (a lost
    answer, a ceremony the vault no longer knows) the new share stays, and the error says where.

    Raises:
        ceremony.CeremonyFailed: the vault says it failed (the new share is gone, nothing changed).
        IntegrityError: the outcome is unknown (the new share is kept).
    """
    replacing = path.exists()
    target = path.with_name(f".{path.name}.{secrets.token_hex(4)}.new") if replacing else path
    share_file.write(target, doc)
    try:
        address = party.confirm()
    except CeremonyFailed:
        target.unlink(missing_ok=True)  # nothing changed: the new share would only mislead
        raise
    except Exception as exc:
        raise IntegrityError(
            f"The vault's answer to this party's confirmation was lost ({type(exc).__name__}); "
            f"the new share is kept at {target}.",
            next_step="check `keysafe wallet list` (or sign with the new file): if the wallet "
            "is there (or signs) the new share is the one to keep"
            + (f" (move it over {path})" if replacing else "")
            + "; if not, delete it.",
        ) from None
    if replacing:
        files.move_over(target, path)
        # A ban belonged to the old share's pair state, which is gone: the new share signs.
        share_file.ban_marker(path).unlink(missing_ok=True)
    return address


@dataclass(frozen=True)
class Joined:
    """What the agent's host ended a ceremony with."""

    wallet: str
    chain: str
    address: str
    share_file: Path
    kind: str

    def to_dict(self) -> dict[str, str]:
        return {"wallet": self.wallet, "chain": self.chain, "address": self.address,
                "share_file": str(self.share_file), "kind": self.kind}  # fmt: skip


def join_as_agent(
    send: Send, code: JoinCode, path: Path, share_key: SecretBytes, old: Share | None
) -> Joined:
    """The agent's side of one ceremony, start to end: run the party, seal the new share under
    `share_key` (which never leaves this host) at `path`, confirm. In a reshare `old` is the
    agent's current share and `path` its file, replaced once the vault has its new share.

    Raises:
        CeremonyFailed: the vault says the ceremony failed (nothing changed).
        IntegrityError: a check failed here (the culprit named) or the outcome is unknown.
    """
    party = Party.agent(send, code, old)
    share = party.run()
    view = party.view
    assert view is not None
    doc = share_file.seal_agent_share(view.wallet, view.vault_id, share, share_key)
    del share
    address = keep_and_confirm(party, path, doc)
    return Joined(view.wallet, view.chain, address, path, view.kind)


def keyed_codes(pending: Sequence[KeygenView], join_key: bytes) -> list[JoinCode]:
    """The codes of the ceremonies in `pending` (what the vault lists for this agent) that the
    owner opened with this join key: each one's recovery tag checks out under the key derived
    for it, over the ceremony as the vault shows it. Others (another host's key, a join code's
    ceremony, anything the vault made up or changed) are left alone, never joined or stopped."""
    codes = []
    for view in pending:
        code = JoinCode.from_join_key(join_key, bytes.fromhex(view.id))
        try:
            check_recovery_tag(code, view)
        except ChannelError:
            continue
        codes.append(code)
    return codes


def await_keyed(
    pending: Callable[[], Sequence[KeygenView]], join_key: bytes, timeout: float = TTL_S
) -> JoinCode:
    """Wait for the owner to open a join-key ceremony for this agent; its code.

    Raises:
        IntegrityError: none came within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes = keyed_codes(pending(), join_key)
        if codes:
            return codes[0]
        time.sleep(1.0)
    raise IntegrityError(
        "No ceremony was opened for this agent in time.",
        next_step="run `keysafe wallet create … --join-key-file FILE` (or `wallet refresh`) on "
        "the owner's side first.",
    )
