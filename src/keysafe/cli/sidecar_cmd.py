"""`keysafe sidecar pair INVITE` and `keysafe sidecar --port 8420`: the agent's host end of the
relay (relay/sidecar.py). Nothing here opens a vault: the sidecar has its own home and keys."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Annotated

import typer

from keysafe import sidecar
from keysafe.cli import inputs, ports, render
from keysafe.cli.options import JsonFlag
from keysafe.errors import AlreadyExistsError
from keysafe.relay import sidecar_state

sidecar_app = typer.Typer(
    help="Run an agent's host end of the relay: the vault's agent API on 127.0.0.1, with the "
    "vault somewhere else. Pair first (`keysafe sidecar pair 'ksi_…'`).",
    invoke_without_command=True,
)

SidecarPassphrase = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="File holding the sidecar's passphrase (else KEYSAFE_SIDECAR_PASSPHRASE, else asked).",
        dir_okay=False,
    ),
]
_ENV = ("KEYSAFE_SIDECAR_PASSPHRASE",)


@sidecar_app.callback()
def sidecar_serve(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option("--port", help="Port on 127.0.0.1.", min=1, max=65535)
    ] = 8420,
    passphrase_file: SidecarPassphrase = None,
) -> None:
    """Serve the vault's agent API on 127.0.0.1:PORT, through the relay, for local agents.

    Local callers send `Authorization: Bearer ks_local_…` (printed once by `sidecar pair`):
    `KEYSAFE_URL=http://127.0.0.1:PORT KEYSAFE_AGENT_TOKEN=ks_local_… keysafe mcp` works as with
    a local vault. The token never leaves this host; requests travel end-to-end encrypted.
    """
    if ctx.invoked_subcommand is not None:
        return
    home = sidecar_state.sidecar_home()
    state = sidecar_state.load_state(home)
    ports.check_port_free(
        "127.0.0.1",
        port,
        what="another sidecar",
        next_step="stop that program, or pass --port N (and KEYSAFE_URL=http://127.0.0.1:N).",
    )
    with inputs.passphrase(passphrase_file, env=_ENV, label="Sidecar passphrase") as secret:
        identity = sidecar_state.open_identity(state, secret)

    def ready() -> None:
        render.note(
            f"keysafe sidecar for agent '{state.agent}' serving on http://127.0.0.1:{port} "
            f"through {state.relay}"
        )

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it; nothing to tidy up
        asyncio.run(sidecar.serve(state, identity, host="127.0.0.1", port=port, ready=ready))


@sidecar_app.command("pair")
def sidecar_pair(
    invite: Annotated[str, typer.Argument(help="The owner's invite, `ksi_…`.", metavar="INVITE")],
    passphrase_file: SidecarPassphrase = None,
    json_out: JsonFlag = False,
) -> None:
    """Pair this host with the owner's vault: show four words, wait for the owner's approval,
    then print this sidecar's local token ONCE.

    The owner sees the pairing in `keysafe approvals` with four words of its own, and approves
    with `keysafe approve ID --words '…'` only if they are the ones printed here. The sidecar's
    keys are kept in KEYSAFE_HOME (this host's), encrypted under a passphrase chosen now.
    """
    home = sidecar_state.sidecar_home()
    if (home / sidecar_state.STATE_FILE).exists():
        raise AlreadyExistsError(
            f"{home} already holds a paired sidecar.",
            next_step="use another KEYSAFE_HOME for a second agent, or remove the old one.",
        )
    with inputs.passphrase(
        passphrase_file, env=_ENV, label="New sidecar passphrase", confirm=True
    ) as secret:

        def show(words: list[str]) -> None:
            render.note(
                f"Pairing words: {' '.join(words)}\n"
                "Ask the owner to approve the pairing only if `keysafe approvals` shows these "
                "same words. Waiting for the owner…"
            )

        identity, accepted = asyncio.run(
            sidecar.pair(invite, host_label=socket.gethostname(), on_words=show)
        )
        token = sidecar_state.save_state(
            home, identity=identity, invite=accepted, passphrase=secret
        )
    if json_out:
        render.as_json({"agent": accepted.agent, "relay": accepted.relay, "local_token": token})
        return
    render.out.print(f"Paired as agent '{accepted.agent}'. Local token (shown once): {token}")
    render.out.print(
        "Next: `keysafe sidecar --port 8420`, then point agents at http://127.0.0.1:8420."
    )
