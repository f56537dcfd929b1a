"""2-of-3 wallet creation with every party in its own process (service/keygen.py): this CLI
process is the recovery party (owner side) or the agent (`keysafe agent threshold join`).

Imported only by the commands that run a keygen: it loads the MPC code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from keysafe import files, remote
from keysafe.agent_models import KeygenPost, KeygenView
from keysafe.cli import inputs, owner, render
from keysafe.client import AgentClient
from keysafe.errors import MalformedRequestError
from keysafe.mpc import share_file
from keysafe.service import keygen_party, threshold
from keysafe.service.keygen_party import JoinCode, Party
from keysafe.service.models import Chain, SecretBytes
from keysafe.service.owner_keygen import KeygenExchange, KeygenStart
from keysafe.service.vault_admin import check_new_passphrase

_WHY = "the vault's party runs there and the recovery party here, never both in one process"


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


def create_apart(
    name: str,
    chain: Chain,
    agent: str,
    recovery_file: Path,
    passphrase_file: Path | None,
    join_code_file: Path | None,
) -> dict[str, Any]:
    """The owner's side: open the keygen in the running server, play the recovery party here,
    wait for the agent's host to join with the code, keep the recovery file.

    Raises:
        MalformedRequestError: no server, a bad name, or the recovery file exists.
        IntegrityError: the keygen failed (the party at fault is named) or timed out.
    """
    _refuse_existing(recovery_file)
    owner.require_server(_WHY)  # before the recovery passphrase is asked for
    recovery = inputs.passphrase(
        None, env=("KEYSAFE_RECOVERY_PASSPHRASE",), label="Recovery passphrase", confirm=True
    )
    with recovery:
        check_new_passphrase(recovery, what="recovery-file passphrase")
        key, public = keygen_party.recovery_key()
        started = owner.perform_on_server(
            KeygenStart(wallet=name, chain=chain, agent=agent, recovery_key=public),
            passphrase_file, why=_WHY,
        )  # fmt: skip

        def send(keygen_id: str, post: KeygenPost) -> KeygenView:
            op = KeygenExchange(keygen_id=keygen_id, post=post)
            return owner.perform_on_server(op, passphrase_file, why=_WHY)

        party = Party.recovery(send, key, started)
        code = party.join_code()
        if join_code_file is not None:
            files.write_private(join_code_file, code.encode(), replace=True, what="join code")
        _say(
            f"Waiting (up to 10 minutes) for agent '{agent}' to join. On the agent's host, with "
            "KEYSAFE_URL, KEYSAFE_AGENT_TOKEN and KEYSAFE_AGENT_SHARE_KEY set, run:\n"
            f"  KEYSAFE_JOIN_CODE={code} keysafe agent threshold join "
            f"--share-file {agent}-{name}.share"
        )
        share = party.run()
        doc = share_file.seal_recovery_share(name, started.vault_id, share, recovery)
        del share
    share_file.write(recovery_file, doc)
    try:
        address = party.confirm()
    except BaseException:
        recovery_file.unlink(missing_ok=True)  # no wallet: the file would only mislead
        raise
    return {"name": name, "chain": str(chain), "address": address, "threshold": "2-of-3",
            "recovery_file": str(recovery_file)}  # fmt: skip


def join(share_file_path: Path, code_text: str | None) -> dict[str, Any]:
    """The agent's side: join the keygen the code names, keep the agent's share under
    KEYSAFE_AGENT_SHARE_KEY (which never leaves this host).

    Raises:
        MalformedRequestError: no token, share key or code; a weak share key; the file exists.
        IntegrityError: the keygen failed (the party at fault is named) or timed out.
    """
    _refuse_existing(share_file_path)
    token_text = os.environ.get("KEYSAFE_AGENT_TOKEN", "")
    if not token_text:
        raise MalformedRequestError(
            "KEYSAFE_AGENT_TOKEN is not set.",
            next_step="set it to the token `keysafe agent add` printed for this agent.",
        )
    code_secret = (
        SecretBytes(bytearray(code_text.encode()))
        if code_text
        else inputs.passphrase(None, env=("KEYSAFE_JOIN_CODE",), label="Join code (ksj_…)")
    )
    with code_secret:
        code = JoinCode.decode(bytes(code_secret.reveal()).decode("utf-8", "replace"))
    share_key = inputs.passphrase(
        None, env=("KEYSAFE_AGENT_SHARE_KEY",), confirm=True,
        label="Agent share key (only this host keeps it: KEYSAFE_AGENT_SHARE_KEY)",
    )  # fmt: skip
    with share_key:
        threshold.check_share_key(share_key, SecretBytes(bytearray(token_text.encode())))
        with AgentClient(token_text, url=remote.vault_url()) as client:
            party = Party.agent(client.keygen_exchange, code)
            share = party.run()
            view = party.view
            assert view is not None
            doc = share_file.seal_agent_share(view.wallet, view.vault_id, share, share_key)
            del share
            share_file.write(share_file_path, doc)
            try:
                address = party.confirm()
            except BaseException:
                share_file_path.unlink(missing_ok=True)
                raise
    return {"wallet": view.wallet, "chain": view.chain, "address": address,
            "share_file": str(share_file_path)}  # fmt: skip


def show_created(made: dict[str, Any], json_out: bool) -> None:
    if json_out:
        render.as_json(made)
        return
    render.out.print(
        f"Wallet '{made['name']}' ({made['chain']}, 2-of-3): {made['address']}\n"
        f"recovery share: {made['recovery_file']} (store it offline, with its passphrase)",
        markup=False,
    )
