"""`keysafe backup create FILE | restore FILE`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keysafe.cli import inputs, render
from keysafe.cli.app import JsonFlag, PassphraseFile, app, home
from keysafe.cli.vault_cmds import unlocked
from keysafe.service import backup

backup_app = typer.Typer(
    help="Encrypted, integrity-checked backups of the whole vault.", no_args_is_help=True
)
app.add_typer(backup_app, name="backup")

FileArg = Annotated[Path, typer.Argument(help="Backup file path.", dir_okay=False)]


@backup_app.command("create")
def backup_create(
    file: FileArg, passphrase_file: PassphraseFile = None, json_out: JsonFlag = False
) -> None:
    """Write everything (credentials, data, wallets, audit) to FILE, encrypted under the vault's key.

    Opening the backup needs this vault's passphrase or its recovery phrase.
    """
    with unlocked(passphrase_file) as vault:
        header = backup.create_backup(vault, file)
    if json_out:
        render.as_json(header.to_dict() | {"file": str(file)})
    else:
        render.out.print(
            f"Backup of {header.records} records and {header.entries} audit entries written to {file}."
        )


@backup_app.command("restore")
def backup_restore(
    file: FileArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Restore FILE into this vault (same vault only), or rebuild a vault on an empty KEYSAFE_HOME.

    Into an existing vault: unlock with the passphrase; records are replaced by the backup's, the
    audit log is kept and the restore is added to it. Into an empty home: the recovery phrase is
    read from stdin (one line) or asked, and a new passphrase from --passphrase-file,
    KEYSAFE_NEW_PASSPHRASE, KEYSAFE_PASSPHRASE or a prompt.
    """
    h = home()
    if not file.is_file():
        from keysafe.errors import NotFoundError

        raise NotFoundError(f"No backup file at {file}.", next_step="check the path.")
    rebuilt = not h.exists()  # from an empty home: restore_new pauses agents, holds 2-of-3 wallets
    if h.exists():
        if not inputs.confirm(
            f"Replace the records of the vault in {h.path} with those in {file}?", assume_yes=yes
        ):
            render.out.print("Nothing restored.")
            raise typer.Exit(1)
        with unlocked(passphrase_file) as vault:
            header = backup.restore_into(vault, file)
            vault_id = vault.vault_id
    else:
        with inputs.stdin_line("Recovery phrase") as phrase, inputs.passphrase(
            passphrase_file, env=("KEYSAFE_NEW_PASSPHRASE", "KEYSAFE_PASSPHRASE"),
            label="New vault passphrase", confirm=True,
        ) as pw:  # fmt: skip
            vault, header = backup.restore_new(h, file, phrase, pw)
        with vault:
            vault_id = vault.vault_id
    if json_out:
        render.as_json({"vault_id": vault_id, "records": header.records, "entries": header.entries,
                        "agents_paused": rebuilt})  # fmt: skip
    else:
        render.out.print(f"Restored {header.records} records into vault {vault_id}.")
        if rebuilt:
            render.out.print(
                "Every agent is paused: a token rotated or revoked after this backup was made "
                "would be valid again. Resume each you trust: `keysafe agent resume NAME`. "
                "2-of-3 wallets sign again after `keysafe wallet refresh NAME`.",
                markup=False,
            )
