"""2-of-3 wallets for service-level tests, made and reshared the way the product does it: the
vault's party in `service/keygen.py`, the agent's and the recovery party each in a thread of
its own with its own `keygen_party.Party`, files written as the two CLIs write them. (The
threads share a process only because these are unit tests; the e2e tests run three.)"""

from __future__ import annotations

import base64
import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keysafe.agent_models import KeygenView
from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.mpc import channel, share_file
from keysafe.mpc.ceremony import JoinCode, Party, Send, keep_and_confirm
from keysafe.mpc.frost.keys import AGENT, RECOVERY
from keysafe.mpc.share_file import Share
from keysafe.service import keygen
from keysafe.vault.vault import Vault


def _secret(text: str | bytes) -> SecretBytes:
    return SecretBytes(bytearray(text.encode() if isinstance(text, str) else text))


def _run(
    vault: Vault,
    started: KeygenView,
    key: X25519PrivateKey,
    agent: str,
    old: dict[int, Share],
    paths: dict[int, Path],
    share_key: str,
    recovery_passphrase: str | bytes,
) -> str:
    def send(party: int) -> Send:
        return lambda kid, post: keygen.exchange(vault, kid, party, post, agent=agent)

    recovery = Party.recovery(send(RECOVERY), key, started, old.get(RECOVERY))
    agent_party = Party.agent(send(AGENT), JoinCode.decode(recovery.join_code()), old.get(AGENT))
    addresses: dict[int, str] = {}
    errors: list[BaseException] = []

    def play(party: Party, path: Path) -> None:
        try:
            share = party.run()
            assert party.view is not None
            if party.me == AGENT:
                doc = share_file.seal_agent_share(
                    party.view.wallet, party.view.vault_id, share, _secret(share_key)
                )
            else:
                doc = share_file.seal_recovery_share(
                    party.view.wallet, party.view.vault_id, share, _secret(recovery_passphrase)
                )
            addresses[party.me] = keep_and_confirm(party, path, doc)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=play, args=(agent_party, paths[AGENT])),
        threading.Thread(target=play, args=(recovery, paths[RECOVERY])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    assert addresses[AGENT] == addresses[RECOVERY]
    return addresses[AGENT]


def create(
    vault: Vault,
    name: str,
    chain: Chain,
    agent: str,
    *,
    agent_file: Path,
    recovery_file: Path,
    share_key: str,
    recovery_passphrase: str | bytes,
) -> str:
    """A new 2-of-3 wallet; returns its address."""
    key = channel.new_key()
    started = keygen.start(
        vault, name, chain, agent, base64.b64encode(channel.public_bytes(key)).decode()
    )
    return _run(
        vault,
        started,
        key,
        agent,
        {},
        {AGENT: agent_file, RECOVERY: recovery_file},
        share_key,
        recovery_passphrase,
    )


def reshare(
    vault: Vault,
    name: str,
    quorum: tuple[int, int],
    *,
    agent_file: Path,
    recovery_file: Path,
    share_key: str,
    recovery_passphrase: str | bytes,
    agent_old: Path | None = None,
    recovery_old: Path | None = None,
    old_share_key: str | None = None,
    rebuild_for: str | None = None,
) -> str:
    """Reshare by `quorum`; each dealer's current share is read from its old file (default:
    the file the new share goes to). The new shares go to `agent_file` and `recovery_file`.
    `rebuild_for` (an agent's name): rebuild the wallet on a vault with no record of it."""
    old: dict[int, Share] = {}
    agent_old = agent_old or agent_file
    recovery_old = recovery_old or recovery_file
    if AGENT in quorum:
        doc = share_file.read(agent_old, "agent share file")
        old[AGENT] = share_file.open_agent_share(doc, _secret(old_share_key or share_key))
    if RECOVERY in quorum:
        doc = share_file.read(recovery_old, "recovery file")
        old[RECOVERY] = share_file.open_recovery_share(doc, _secret(recovery_passphrase))
    key = channel.new_key()
    rebuild = None
    if rebuild_for is not None:  # a vault with no record of the wallet: as `--agent NAME` does
        rebuild = keygen.Rebuild(public=old[RECOVERY].key.public.to_dict(), agent=rebuild_for)
    started = keygen.start_reshare(
        vault,
        name,
        quorum,
        base64.b64encode(channel.public_bytes(key)).decode(),
        rebuild=rebuild,
    )
    agent = started.agent
    return _run(
        vault,
        started,
        key,
        agent,
        old,
        {AGENT: agent_file, RECOVERY: recovery_file},
        share_key,
        recovery_passphrase,
    )
