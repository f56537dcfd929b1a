"""The agent's host in a ceremony: join the one a code names, or find the ones the owner opened
with the join key this host shares with it (`keysafe mcp` joins those by itself), and keep the
agent's new share sealed under a key that never leaves this host."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from keysafe.agent_models import KeygenView
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError
from keysafe.mpc import share_file
from keysafe.mpc.ceremony.join_code import JoinCode, check_recovery_tag
from keysafe.mpc.ceremony.party import TTL_S, Party, Send, keep_and_confirm
from keysafe.mpc.channel import ChannelError
from keysafe.mpc.share_file import Share

__all__ = ["Joined", "await_keyed", "join_as_agent", "keyed_codes"]


@dataclass(frozen=True)
class Joined:
    """What the agent's host ended a ceremony with."""

    wallet: str
    chain: str
    address: str
    share_file: Path
    kind: str

    def to_dict(self) -> dict[str, str]:
        """The fields as strings (the share file's path too), as the CLI prints them."""
        return {name: str(value) for name, value in dataclasses.asdict(self).items()}


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
