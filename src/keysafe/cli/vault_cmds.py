"""`keysafe init | status | recover | passphrase change`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keysafe.cli import client, inputs, render
from keysafe.cli.app import JsonFlag, PassphraseFile, app, home
from keysafe.service import epochs, notify, rotation_due, vault_admin
from keysafe.service.context import open_vault
from keysafe.vault.vault import Vault

passphrase_app = typer.Typer(help="Change the vault passphrase.", no_args_is_help=True)
app.add_typer(passphrase_app, name="passphrase")


def unlocked(passphrase_file: Path | None) -> Vault:
    """Open the vault in KEYSAFE_HOME and unlock it with the owner's passphrase."""
    vault = open_vault(home())
    with inputs.passphrase(passphrase_file) as secret:
        notify.unlock_watched(vault, secret)  # a refused attempt alerts the owner's channels
    return vault


@app.command()
def init(passphrase_file: PassphraseFile = None, json_out: JsonFlag = False) -> None:
    """Create a new vault and show its 24-word recovery phrase once.

    The passphrase is asked twice (or taken from KEYSAFE_PASSPHRASE / --passphrase-file); it needs
    at least 12 characters and must not be easy to guess (four or more random words work well).
    Write the recovery phrase down on paper: it is the only way back if the passphrase is lost, and it
    rebuilds the vault's wallets on a new machine.
    """
    h = home()
    with inputs.passphrase(passphrase_file, label="New vault passphrase", confirm=True) as pw:
        vault, phrase = vault_admin.init_vault(h, pw)
    with vault, phrase:
        words = bytes(phrase.reveal()).decode()
        if json_out:
            render.as_json({"vault_id": vault.vault_id, "recovery_phrase": words})
            return
        render.out.print(f"Vault [bold]{vault.vault_id}[/bold] created in {h.path}.\n")
        render.out.print(
            "[bold yellow]Recovery phrase — shown this once, write it down:[/bold yellow]"
        )
        numbered = words.split()
        for row in range(0, len(numbered), 6):
            render.out.print(
                "  "
                + "  ".join(
                    f"{i + 1:>2}. {w:<9}" for i, w in enumerate(numbered[row : row + 6], row)
                )
            )
        render.out.print(
            "\nAnyone with these words can open this vault. Keep them offline; "
            "`keysafe recover` uses them to set a new passphrase or rebuild the vault."
        )


@app.command()
def status(json_out: JsonFlag = False) -> None:
    """Show whether a vault exists here, what it holds and the audit head (no passphrase needed)."""
    h = home()
    if not h.exists():
        if json_out:
            render.as_json({"initialized": False, "home": str(h.path)})
        else:
            render.out.print(f"No vault in {h.path}. Run `keysafe init` to create one.")
        return
    with open_vault(h) as vault:
        st = vault_admin.status(h, vault).to_dict()
        ep = epochs.state(vault)
        st["epoch"] = {"current": ep.current, "since": ep.since, "retired": list(ep.retired),
                       "due": epochs.due(vault)}  # fmt: skip
        st["rotations_due"] = [d.model_dump() for d in rotation_due.due(vault)[1]]
    url = h.serving_url()
    state = None if url is None else client.server_unlocked(url)
    st["server"] = {
        "running": url is not None,
        "url": url,
        # the server's own answer; None while it starts up or if it does not answer
        "unlocked": state,
    }
    if json_out:
        render.as_json(st)
        return
    for key in ("home", "vault_id", "created_at", "credentials", "data", "wallets", "agents",
                "audit_entries", "audit_head"):  # fmt: skip
        render.out.print(f"{key.replace('_', ' '):>14}: {st[key]}")
    if url is None:
        server = "not running (`keysafe serve` starts it)"
    elif state is None:
        server = f"running at {url}, not answering"
    else:
        server = f"running at {url}, " + (
            "unlocked: owner commands go through it" if state else "locked (`keysafe unlock`)"
        )
    render.out.print(f"{'server':>14}: {server}")
    ep = st["epoch"]
    render.out.print(
        f"{'epoch':>14}: {ep['current']} since {ep['since']}"
        + (" — rotation due (`keysafe rotate`)" if ep["due"] else "")
        + (f"; re-sealing from {ep['retired']} unfinished" if ep["retired"] else "")
    )
    for d in st["rotations_due"]:
        whose = d["agent"] + (f" ({d['credential']})" if d["credential"] else "")
        render.out.print(f"{'rotation due':>14}: {d['what']} of {whose}, {d['why']} — `{d['fix']}`")
    if st["unlock_failures"]:
        render.out.print(
            f"[yellow]{st['unlock_failures']} failed unlock attempts in a row.[/yellow]"
        )


@app.command()
def recover(
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file", help="Read the NEW passphrase from this file.", dir_okay=False
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Use the recovery phrase to set a new passphrase, or to rebuild the vault on an empty home.

    The phrase (12-24 words) is read as one line from stdin when piped, else asked hidden. The new
    passphrase comes from --passphrase-file, KEYSAFE_NEW_PASSPHRASE, KEYSAFE_PASSPHRASE or a
    prompt. On an empty KEYSAFE_HOME the vault is rebuilt: create wallets again in the same order
    to get the same addresses, and bring credentials back with `keysafe backup restore FILE`.
    """
    h = home()
    with inputs.stdin_line("Recovery phrase") as phrase, inputs.passphrase(
        passphrase_file, env=("KEYSAFE_NEW_PASSPHRASE", "KEYSAFE_PASSPHRASE"),
        label="New vault passphrase", confirm=True,
    ) as pw:  # fmt: skip
        vault, rebuilt = vault_admin.recover_vault(h, phrase, pw)
    with vault:
        if json_out:
            render.as_json({"vault_id": vault.vault_id, "rebuilt": rebuilt})
        elif rebuilt:
            render.out.print(
                f"Vault {vault.vault_id} rebuilt in {h.path}. Create wallets again in the same "
                "order to get the same addresses; restore credentials with `keysafe backup restore`."
            )
        else:
            render.out.print(f"New passphrase set for vault {vault.vault_id}.")


@passphrase_app.command("change")
def passphrase_change(
    passphrase_file: PassphraseFile = None,
    new_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--new-passphrase-file", help="Read the new passphrase from this file.", dir_okay=False
        ),
    ] = None,
) -> None:
    """Change the passphrase (old one: KEYSAFE_PASSPHRASE; new one: KEYSAFE_NEW_PASSPHRASE)."""
    with unlocked(passphrase_file) as vault, inputs.passphrase(
        new_passphrase_file, env=("KEYSAFE_NEW_PASSPHRASE",), label="New vault passphrase",
        confirm=True,
    ) as pw:  # fmt: skip
        vault_admin.change_passphrase(vault, pw)
    render.out.print("Passphrase changed.")
