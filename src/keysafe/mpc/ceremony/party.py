"""A party's side of a keygen that is not the vault's: the recovery party in the owner's CLI,
the agent on its host. Both talk to the vault through `send` (the owner's session or the
agent's token) and run `mpc/keygen.py` behind the end-to-end channel (`mpc/channel.py`), whose
keys the join code (`join_code.py`) authenticates.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keysafe import files
from keysafe.agent_models import KeygenPost, KeygenView, Sealed
from keysafe.errors import IntegrityError, MalformedRequestError
from keysafe.mpc import channel, share_file
from keysafe.mpc.ceremony.join_code import (
    MAC_LEN,
    JoinCode,
    check_recovery_tag,
    from_b64,
    hash_recovery_key,
    params_digest,
    recovery_tag,
    to_b64,
)
from keysafe.mpc.channel import Channel, ChannelError
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import ED25519, SECP256K1
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER, PublicKeyPackage
from keysafe.mpc.keygen import KeygenParty, ReshareParty, public_digest
from keysafe.mpc.share_file import Share

__all__ = ["POLL_S", "TTL_S", "CeremonyFailed", "Party", "Send", "keep_and_confirm", "recovery_key"]

logger = logging.getLogger(__name__)

TTL_S: Final = 10 * 60  # a ceremony's life in the vault (service/keygen.py uses this one)
POLL_S: Final = 0.5

Send = Callable[[str, KeygenPost], KeygenView]  # (keygen id, post) → the vault's answer


class CeremonyFailed(IntegrityError):
    """The vault says the ceremony failed: nothing was created or changed (a definite answer,
    unlike a lost connection or a ceremony the vault no longer knows)."""


def recovery_key() -> tuple[X25519PrivateKey, str]:
    """A fresh ephemeral key for the recovery party, and its public half (base64) for the
    vault (`KeygenStart`)."""
    key = channel.new_key()
    return key, to_b64(channel.public_bytes(key))


class Party:
    """The agent's (1) or the recovery party's (3) side of one keygen.

    The recovery side: `Party.recovery(send, start)` with the view `start` returned, then
    `join_code()` for the agent's host. The agent side: `Party.agent(send, code)`. Then, on
    either: `run()` gives this party's share; keep it (write the file), then `confirm()` tells
    the vault, which stores its own share once both confirmed; it returns the wallet's address.
    """

    def __init__(
        self,
        me: int,
        send: Send,
        keygen_id: str,
        key: X25519PrivateKey,
        code: JoinCode,
        old_share: Share | None = None,
    ) -> None:
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
        cls,
        send: Send,
        key: X25519PrivateKey,
        started: KeygenView,
        old_share: Share | None = None,
        *,
        join_key: bytes | None = None,
    ) -> Party:
        """The recovery party of the ceremony `started` opened; in a reshare `old_share` is
        its current share (needed when it deals; checked against the wallet either way). With
        `join_key` (shared with the agent's host) no code needs handing over."""
        sid = bytes.fromhex(started.id)
        code = (
            JoinCode.from_join_key(join_key, sid)
            if join_key is not None
            else JoinCode(
                sid, hash_recovery_key(channel.public_bytes(key)), secrets.token_bytes(MAC_LEN)
            )
        )
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
            return self._post(KeygenPost(tag=to_b64(tag)))
        public = channel.public_bytes(self._key)
        tag = channel.announce_tag(self._code.mac_key, self._code.session_id, AGENT, public)
        return self._post(KeygenPost(key=to_b64(public), tag=to_b64(tag)))

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
        keys = {i: from_b64(k) for i, k in view.keys.items()}
        named = self._code.recovery_key_hash
        if self.me == AGENT:
            if named is not None and not hmac.compare_digest(
                hash_recovery_key(keys[RECOVERY]), named
            ):
                raise ChannelError(
                    "the recovery party's key is not the one the join code names", USER
                )
            check_recovery_tag(self._code, view)
            self._pinned = params_digest(view)
        else:
            tag = channel.announce_tag(
                self._code.mac_key, self._code.session_id, AGENT, keys[AGENT]
            )
            if view.agent_tag is None or not hmac.compare_digest(from_b64(view.agent_tag), tag):
                raise ChannelError(
                    "the agent's key does not carry the join code's tag: not the agent's", USER
                )
        return Channel(
            self._code.session_id,
            self.me,
            self._key,
            {j: k for j, k in keys.items() if j != self.me},
            {self.peer: self._code.mac_key},
        )

    def _deliver(self, round_: int, out: dict[int, bytes]) -> None:
        assert self._channel is not None
        sealed = [
            Sealed(
                round=round_,
                sender=self.me,
                receiver=j,
                body=to_b64(self._channel.seal(round_, j, m)),
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
                return {
                    j: self._channel.open(round_, j, from_b64(got[j])) for j in (USER, self.peer)
                }
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
