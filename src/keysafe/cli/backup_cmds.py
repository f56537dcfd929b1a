"""`keysafe backup create FILE | restore FILE`."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated

import typer

from keysafe import files, wire
from keysafe.cli import client, inputs, owner, render
from keysafe.cli.home import home
from keysafe.cli.options import JsonFlag, PassphraseFile
from keysafe.errors import AlreadyExistsError, MalformedRequestError, NotFoundError
from keysafe.service import backup, owner_ops
from keysafe.service.context import Home

backup_app = typer.Typer(
    help="Encrypted, integrity-checked backups of the whole vault.", no_args_is_help=True
)

FileArg = Annotated[Path, typer.Argument(help="Backup file path.", dir_okay=False)]


@backup_app.command("create")
def backup_create(
    file: FileArg, passphrase_file: PassphraseFile = None, json_out: JsonFlag = False
) -> None:
    """Write everything (credentials, data, wallets, audit) to FILE, encrypted under the vault's
    key.

    Opening the backup needs this vault's passphrase or its recovery phrase. While `keysafe
    serve` runs unlocked on this home, the server seals the backup and this command writes FILE,
    without asking the passphrase again.
    """
    if file.exists() or file.is_symlink():
        raise AlreadyExistsError(
            f"{file} already exists; keysafe never overwrites a backup.",
            next_step="choose another path, or move the old file away deliberately.",
        )
    made = owner.perform(owner_ops.CreateBackup(file=str(file.absolute())), passphrase_file)
    assert made.blob is not None  # a new backup always carries its bytes
    files.write_private(file, base64.b64decode(made.blob), what="backup")
    if json_out:
        render.as_json(made.model_dump(exclude={"blob"}) | {"file": str(file)})
    else:
        render.out.print(
            f"Backup of {made.records} records and {made.entries} audit entries written to {file}."
        )


RebuildBlobs = Annotated[
    str | None,
    typer.Option(
        "--blobs",
        help="Rebuilding on an empty home: keep record ciphertext in this S3 bucket "
        "(s3://BUCKET/PREFIX), as `keysafe init --blobs`.",
    ),
]
RebuildBlobsEndpoint = Annotated[
    str | None,
    typer.Option("--blobs-endpoint", help="The URL of an S3-compatible server for --blobs."),
]


@backup_app.command("restore")
def backup_restore(
    file: FileArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
    blobs: RebuildBlobs = None,
    blobs_endpoint: RebuildBlobsEndpoint = None,
) -> None:
    """Restore FILE into this vault (same vault only), or rebuild a vault on an empty KEYSAFE_HOME.

    Into an existing vault: unlock with the passphrase; records are replaced by the backup's, the
    audit log is kept and the restore is added to it. Into an empty home: the recovery phrase is
    read from stdin (one line) or asked, and a new passphrase from --passphrase-file,
    KEYSAFE_NEW_PASSPHRASE, KEYSAFE_PASSPHRASE or a prompt.
    """
    h = home()
    if not file.is_file():
        raise NotFoundError(f"No backup file at {file}.", next_step="check the path.")
    rebuilt = not h.exists()  # from an empty home: restore_new pauses agents, holds 2-of-3 wallets
    if h.exists():
        if blobs or blobs_endpoint:
            raise MalformedRequestError(
                "--blobs chooses where a vault rebuilt on an empty home keeps its ciphertext; "
                f"the vault in {h.path} keeps the setting it was made with.",
                next_step="leave --blobs out, or restore into an empty KEYSAFE_HOME.",
            )
        records, entries, vault_id = _restore_into(h, file, passphrase_file, yes=yes)
    else:
        records, entries, vault_id = _rebuild(h, file, passphrase_file, blobs, blobs_endpoint)
    if json_out:
        render.as_json(
            {"vault_id": vault_id, "records": records, "entries": entries, "agents_paused": rebuilt}
        )
    else:
        render.out.print(f"Restored {records} records into vault {vault_id}.")
        if rebuilt:
            render.out.print(
                "Every agent is paused: a token rotated or revoked after this backup was made "
                "would be valid again. Resume each you trust: `keysafe agent resume NAME`. "
                "2-of-3 wallets sign again after `keysafe wallet refresh NAME`.",
                markup=False,
            )


def _restore_into(
    h: Home, file: Path, passphrase_file: Path | None, *, yes: bool
) -> tuple[int, int, str]:
    """Replace the records of the vault in `h` with the backup's, once the owner confirms:
    (records, audit entries, vault id).

    Raises:
        MalformedRequestError: the backup is too large for the running server's requests.
    """
    if not inputs.confirm(
        f"Replace the records of the vault in {h.path} with those in {file}?", assume_yes=yes
    ):
        render.out.print("Nothing restored.")
        raise typer.Exit(1)
    blob = base64.b64encode(file.read_bytes()).decode()
    url = h.serving_url()
    if len(blob) > wire.MAX_BODY - 1024 and url is not None and client.server_unlocked(url):
        raise MalformedRequestError(
            f"{file} is too large to send to the running server (its requests are capped at "
            f"{wire.MAX_BODY // 1024} KiB).",
            next_step="run `keysafe lock`, run this again (it restores from the files, with "
            "the passphrase), then `keysafe unlock`.",
        )
    made = owner.perform(owner_ops.RestoreBackup(blob=blob), passphrase_file)
    return made.records, made.entries, made.vault_id


def _rebuild(
    h: Home, file: Path, passphrase_file: Path | None, blobs: str | None, blobs_endpoint: str | None
) -> tuple[int, int, str]:
    """Rebuild a vault in the empty home `h` from the backup, the recovery phrase and a new
    passphrase: (records, audit entries, vault id)."""
    with inputs.phrase_and_new_passphrase(passphrase_file) as (phrase, pw):
        vault, header = backup.restore_new(
            h, file, phrase, pw, blobs_url=blobs, blobs_endpoint=blobs_endpoint
        )
    with vault:
        vault_id = vault.vault_id
    return header.records, header.entries, vault_id
