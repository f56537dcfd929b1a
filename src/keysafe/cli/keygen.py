"""2-of-3 wallet creation with every party in its own process (service/keygen.py): this CLI
process is the recovery party (owner side) or the agent (`keysafe agent threshold join`).

Imported only by the commands that run a keygen: it loads the MPC code.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from keysafe import files, remote, wire
from keysafe.agent_models import KeygenPost, KeygenView
from keysafe.chains import Chain
from keysafe.cli import inputs, owner, render
from keysafe.cli.options import OwnerCeremony
from keysafe.client import AgentClient
from keysafe.errors import MalformedRequestError
from keysafe.mpc import ceremony, share_file
from keysafe.service import threshold_records
from keysafe.service.keygen import Rebuild
from keysafe.service.models import SecretBytes
from keysafe.service.owner_keygen import KeygenExchange, KeygenStart, ReshareStart
from keysafe.service.vault_admin import check_new_passphrase

_WHY = "the vault's party runs there and the recovery party here, never both in one process"


class Created(BaseModel):
    """A new 2-of-3 wallet, as `wallet create --threshold 2-of-3 --json` prints it."""

    model_config = ConfigDict(frozen=True)
    name: str
    chain: str
    address: str
    threshold: Literal["2-of-3"] = "2-of-3"
    recovery_file: str


class Reshared(BaseModel):
    """A reshared 2-of-3 wallet, as `wallet refresh --json` prints it (`with`: the two parties
    that dealt)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    name: str
    with_: str = Field(alias="with")
    address: str
    recovery_file: str


def _say(text: str) -> None:
    """Progress for the person: stderr, so `--json` output stays the only thing on stdout."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _refuse_existing(path: Path) -> None:
    if path.exists():
        raise MalformedRequestError(
            f"{path} already exists; keysafe never overwrites a share file.",
            next_step="choose another path.",
        )


def _owner_send(side: OwnerCeremony) -> ceremony.Send:
    def send(keygen_id: str, post: KeygenPost) -> KeygenView:
        op = KeygenExchange(keygen_id=keygen_id, post=post)
        return owner.perform_on_server(op, side.passphrase_file, why=_WHY, url=side.vault_url)

    return send


def _join_key(path: Path | None) -> bytes | None:
    """The join key shared with the agent's host: read from `path`, or made there (0600) the
    first time, for the owner to copy to the agent's host (never to the vault's)."""
    if path is None:
        return None
    if not path.exists():
        files.write_private(path, secrets.token_hex(32).encode(), what="join key")
        _say(
            f"Made a join key in {path}. Copy it to the agent's host (not to the vault's), and "
            "point KEYSAFE_AGENT_JOIN_KEY_FILE at it there: `keysafe mcp` then joins by itself."
        )
    return ceremony.read_join_key(path)


def _show_join(
    party: ceremony.Party, agent: str, name: str, join_code_file: Path | None, keyed: bool
) -> None:
    if keyed:
        _say(
            f"Waiting (up to 10 minutes) for agent '{agent}' to join: its `keysafe mcp` with "
            "KEYSAFE_AGENT_JOIN_KEY_FILE joins by itself (or run `keysafe agent threshold join "
            f"--join-key-file FILE --share-file {agent}-{name}.share` on its host)."
        )
        return
    code = party.join_code()
    if join_code_file is not None:
        files.write_private(join_code_file, code.encode(), replace=True, what="join code")
    # The code goes to the prompt of `join`, not onto its command line (shell history, ps).
    _say(
        f"Waiting (up to 10 minutes) for agent '{agent}' to join. On the agent's host, with "
        "KEYSAFE_URL, KEYSAFE_AGENT_TOKEN and KEYSAFE_AGENT_SHARE_KEY set, run\n"
        f"  keysafe agent threshold join --share-file {agent}-{name}.share\n"
        f"and give it this one-time join code when it asks (it is not a secret to keep, but "
        f"hand it over yourself, not through the vault):\n  {code}"
    )


def _run_recovery_party(
    party: ceremony.Party, name: str, vault_id: str, recovery: SecretBytes
) -> dict[str, Any]:
    """Run the recovery party's side of the ceremony to its end and seal its new share under the
    recovery passphrase: the recovery file's document. The share is dropped as soon as it is
    sealed."""
    share = party.run()
    doc = share_file.seal_recovery_share(name, vault_id, share, recovery)
    del share
    return doc


def create_apart(name: str, chain: Chain, agent: str, side: OwnerCeremony) -> Created:
    """The owner's side: open the keygen in the running server, play the recovery party here,
    wait for the agent's host to join (with the code, or by itself with the join key in
    `side.join_key_file`), keep the recovery file.

    Raises:
        MalformedRequestError: no server, a bad name, or the recovery file exists.
        IntegrityError: the keygen failed (the party at fault is named) or timed out.
    """
    wire.pin_recursion_limit()  # eth-account's py_ecc raised it to 100,000 on import
    _refuse_existing(side.recovery_file)
    owner.require_server(_WHY, side.vault_url)  # before the recovery passphrase is asked for
    join_key = _join_key(side.join_key_file)
    with inputs.recovery_passphrase(confirm=True) as recovery:
        check_new_passphrase(recovery, what="recovery-file passphrase")
        key, public = ceremony.recovery_key()
        started = owner.perform_on_server(
            KeygenStart(wallet=name, chain=chain, agent=agent, recovery_key=public),
            side.passphrase_file,
            why=_WHY,
            url=side.vault_url,
        )

        party = ceremony.Party.recovery(_owner_send(side), key, started, join_key=join_key)
        _show_join(party, agent, name, side.join_code_file, join_key is not None)
        doc = _run_recovery_party(party, name, started.vault_id, recovery)
    address = ceremony.keep_and_confirm(party, side.recovery_file, doc)
    return Created(
        name=name, chain=str(chain), address=address, recovery_file=str(side.recovery_file)
    )


def join(
    share_file_path: Path, code_text: str | None, join_key_file: Path | None = None
) -> ceremony.Joined:
    """The agent's side: join the keygen or reshare the code names; keep the agent's new share
    under KEYSAFE_AGENT_SHARE_KEY (which never leaves this host). In a reshare an existing
    --share-file is the agent's current share (it deals with it when it is in the quorum) and
    is replaced only once the vault has its new share too.

    Raises:
        MalformedRequestError: no token, share key or code; a weak share key; a share file
            given for a new wallet.
        IntegrityError: the ceremony failed (the party at fault is named) or timed out.
    """
    wire.pin_recursion_limit()  # eth-account's py_ecc raised it to 100,000 on import
    token_text = os.environ.get("KEYSAFE_AGENT_TOKEN", "")
    if not token_text:
        raise MalformedRequestError(
            "KEYSAFE_AGENT_TOKEN is not set.",
            next_step="set it to the token `keysafe agent add` printed for this agent.",
        )
    join_key = ceremony.read_join_key(join_key_file) if join_key_file is not None else None
    code = None
    if join_key is None:
        code_secret = (
            SecretBytes(bytearray(code_text.encode()))
            if code_text
            else inputs.passphrase(None, env=("KEYSAFE_JOIN_CODE",), label="Join code (ksj_…)")
        )
        with code_secret:
            text = bytes(code_secret.reveal()).decode("utf-8", "replace")
            code = ceremony.JoinCode.decode(text)
    replacing = share_file_path.exists()
    share_key = inputs.passphrase(
        None,
        env=("KEYSAFE_AGENT_SHARE_KEY",),
        confirm=not replacing,
        label="Agent share key (only this host keeps it: KEYSAFE_AGENT_SHARE_KEY)",
    )
    with share_key:
        threshold_records.check_share_key(share_key, SecretBytes(bytearray(token_text.encode())))
        old = None
        if replacing:
            doc = share_file.read(share_file_path, "agent share file")
            old = share_file.open_agent_share(doc, share_key)
        with AgentClient(token_text, url=remote.vault_url()) as client:
            if code is None:
                assert join_key is not None
                _say("Waiting (up to 10 minutes) for the owner to open a ceremony for this agent…")
                code = ceremony.await_keyed(client.keygens, join_key)
            joined = ceremony.join_as_agent(
                client.keygen_exchange, code, share_file_path, share_key, old
            )
            del old
    return joined


_PARTIES: Final = {"agent": ceremony.AGENT, "vault": ceremony.USER, "recovery": ceremony.RECOVERY}


def _quorum(with_parties: str) -> tuple[int, int]:
    names = [w.strip() for w in with_parties.split(",") if w.strip()]
    if len(names) != 2 or len(set(names)) != 2 or any(n not in _PARTIES for n in names):
        raise MalformedRequestError(
            f"--with {with_parties[:40]!r} is not two of agent, vault, recovery.",
            next_step="use --with vault,recovery, agent,vault or agent,recovery.",
        )
    a, b = sorted(_PARTIES[n] for n in names)
    return a, b


def _open_old_share(doc: dict[str, Any] | None, recovery: SecretBytes) -> share_file.Share | None:
    """The recovery party's current share when it deals (`doc`: its file), opened with the
    recovery passphrase; else None, after checking the passphrase will do for a new file.

    Raises:
        WrongPassphraseError: the passphrase does not open `doc`.
    """
    if doc is None:
        check_new_passphrase(recovery, what="recovery-file passphrase")
        return None
    return share_file.open_recovery_share(doc, recovery)


def _vault_share_rebuild(
    agent: str | None, old: share_file.Share | None, quorum: tuple[int, int]
) -> Rebuild | None:
    """What the vault needs to rebuild its share (`--agent`, on a vault with no record of the
    wallet), or None without --agent.

    Raises:
        MalformedRequestError: --agent with another quorum than agent,recovery.
    """
    if agent is None:
        return None
    if old is None or quorum != (ceremony.AGENT, ceremony.RECOVERY):
        raise MalformedRequestError(
            "--agent goes with --with agent,recovery (rebuilding the vault's share on "
            "a vault with no record of the wallet).",
            next_step="drop --agent, or reshare --with agent,recovery.",
        )
    return Rebuild(public=old.key.public.to_dict(), agent=agent)


def reshare_apart(
    name: str, with_parties: str, side: OwnerCeremony, agent: str | None = None
) -> Reshared:
    """The owner's side of a reshare by two parties (`with_parties`), each in its own process:
    the recovery party here (dealing with its current file when it is one of the two, else
    receiving a new one at `side.recovery_file`), the vault's in the server, the agent's on its
    host; `agent` rebuilds the vault's share on a vault with no record of the wallet.

    Raises:
        MalformedRequestError: no server; a bad --with; the recovery file missing when it
            deals, or present when a new one is made.
        WrongPassphraseError: the recovery passphrase does not open the file.
        IntegrityError: the reshare failed (the party at fault is named) or timed out.
    """
    wire.pin_recursion_limit()  # eth-account's py_ecc raised it to 100,000 on import
    quorum = _quorum(with_parties)
    deals = ceremony.RECOVERY in quorum
    if not deals:
        _refuse_existing(side.recovery_file)
    doc = share_file.read(side.recovery_file, "recovery file") if deals else None
    owner.require_server(_WHY, side.vault_url)
    join_key = _join_key(side.join_key_file)
    with inputs.recovery_passphrase(confirm=not deals) as recovery:
        old = _open_old_share(doc, recovery)  # fails before anything runs
        key, public = ceremony.recovery_key()
        rebuild = _vault_share_rebuild(agent, old, quorum)
        start = ReshareStart(wallet=name, quorum=quorum, recovery_key=public, rebuild=rebuild)
        started = owner.perform_on_server(start, side.passphrase_file, why=_WHY, url=side.vault_url)
        party = ceremony.Party.recovery(_owner_send(side), key, started, old, join_key=join_key)
        del old
        _show_join(party, started.agent, name, side.join_code_file, join_key is not None)
        new_doc = _run_recovery_party(party, name, started.vault_id, recovery)
    address = ceremony.keep_and_confirm(party, side.recovery_file, new_doc)
    return Reshared(
        name=name, with_=with_parties, address=address, recovery_file=str(side.recovery_file)
    )


def show_created(made: Created, json_out: bool) -> None:
    """A new 2-of-3 wallet, for a script (`json_out`) or a person."""
    render.answer(
        made.model_dump(),
        f"Wallet '{made.name}' ({made.chain}, 2-of-3): {made.address}\n"
        f"recovery share: {made.recovery_file} (store it offline, with its passphrase)",
        json_out=json_out,
        markup=False,
    )
