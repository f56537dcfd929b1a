"""`keysafe agent threshold …`: the agent's side of a 2-of-3 wallet, run on the agent's host
(KEYSAFE_URL, KEYSAFE_AGENT_TOKEN, KEYSAFE_AGENT_SHARE_KEY), never on the vault's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keysafe.cli import render
from keysafe.cli.options import JsonFlag

threshold_app = typer.Typer(
    help="The agent's side of 2-of-3 wallets, run on the agent's host.", no_args_is_help=True
)


@threshold_app.command("join")
def threshold_join(
    share_file: Annotated[
        Path,
        typer.Option(
            "--share-file", help="Where this agent's new share goes (a new file).", dir_okay=False
        ),
    ],
    code: Annotated[
        str | None,
        typer.Option(
            "--code",
            help="The join code the owner's `keysafe wallet create` or `wallet refresh` printed "
            "(ksj_…). Default: KEYSAFE_JOIN_CODE, else a prompt (better: a code on a command "
            "line lands in shell history and `ps`).",
        ),
    ] = None,
    join_key_file: Annotated[
        Path | None,
        typer.Option(
            "--join-key-file",
            help="Instead of a code: the join key the owner shares with this host "
            "(`--join-key-file` on the owner's side made it); waits for the owner's next "
            "ceremony for this agent and joins it.",
            dir_okay=False,
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Join a 2-of-3 wallet's key generation or reshare as this agent: runs the agent's party
    here, with the vault's party in `keysafe serve` and the recovery party in the owner's CLI.
    The share is sealed under KEYSAFE_AGENT_SHARE_KEY (which never leaves this host) into
    --share-file; then point `keysafe mcp` at it with KEYSAFE_AGENT_SHARE_FILE. In a reshare an
    existing --share-file is the agent's current share, replaced once the vault has its new one.
    """
    from keysafe.cli import keygen  # the MPC code, only for this command

    made = keygen.join(share_file, code, join_key_file)
    render.answer(
        made.to_dict(),
        f"Joined wallet '{made.wallet}' ({made.chain}, 2-of-3): {made.address}\n"
        f"agent share: {made.share_file} (KEYSAFE_AGENT_SHARE_FILE for `keysafe mcp`)",
        json_out=json_out,
        markup=False,
    )
