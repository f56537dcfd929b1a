"""`keysafe init | status | recover | passphrase change`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from keysafe.cli import client, inputs, render
from keysafe.cli.home import home
from keysafe.cli.options import JsonFlag, KmsTokenFile, PassphraseFile
from keysafe.cli.unlocking import unlocked
from keysafe.service import epochs, rotation_due, vault_admin, vault_status
from keysafe.service.context import Home, open_vault
from keysafe.service.models import SecretBytes
from keysafe.service.vault_admin import KmsConfig, KmsKind
from keysafe.vault.vault import Vault

# `keysafe init | status | recover`, mounted at the top by cli/app.py.
commands = typer.Typer()
passphrase_app = typer.Typer(help="Change the vault passphrase.", no_args_is_help=True)


KmsKindOpt = Annotated[
    str,
    typer.Option(
        "--kms",
        help="What wraps the vault's key: local (the passphrase, default), openbao (OpenBao / "
        "Vault transit) or aws-kms. With a KMS there is no passphrase.",
    ),
]
KmsUrlOpt = Annotated[
    str | None,
    typer.Option("--kms-url", help="The KMS's address (OpenBao; AWS: an endpoint, e.g. moto)."),
]
KmsKeyOpt = Annotated[
    str | None,
    typer.Option("--kms-key", help="The KMS key: transit key name, or AWS key id / ARN / alias."),
]


Blobs = Annotated[
    str | None,
    typer.Option(
        "--blobs",
        help="Keep record ciphertext in this S3 bucket (s3://BUCKET/PREFIX; versioning on "
        "is best), with only a pointer and a SHA-256 in the database. AWS credentials come "
        "from the environment or ~/.aws, as for the aws CLI. Needs keysafe[aws].",
    ),
]
BlobsEndpoint = Annotated[
    str | None,
    typer.Option(
        "--blobs-endpoint", help="The URL of an S3-compatible server for --blobs (not AWS)."
    ),
]


@commands.command()
def init(
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
    blobs: Blobs = None,
    blobs_endpoint: BlobsEndpoint = None,
    kms: KmsKindOpt = "local",
    kms_url: KmsUrlOpt = None,
    kms_key: KmsKeyOpt = None,
    kms_token_file: KmsTokenFile = None,
) -> None:
    """Create a new vault and show its 24-word recovery phrase once.

    The passphrase is asked twice (or taken from KEYSAFE_PASSPHRASE / --passphrase-file); it needs
    at least 12 characters and must not be easy to guess (four or more random words work well).
    Write the recovery phrase down on paper: it is the only way back if the passphrase is lost, and
    it rebuilds the vault's wallets on a new machine.
    """
    h = home()
    config = KmsConfig.build(kms, url=kms_url, key=kms_key)
    vault, phrase = _create_vault(h, config, passphrase_file, kms_token_file, blobs, blobs_endpoint)
    with vault, phrase:
        words = bytes(phrase.reveal()).decode()
        if json_out:
            out = {"vault_id": vault.vault_id, "recovery_phrase": words}
            render.as_json(out | ({"blobs": vault.blobs.description} if blobs else {}))
            return
        _show_created(h, vault, config, blobs=bool(blobs))
        _show_recovery_phrase(words)


def _create_vault(
    h: Home,
    config: KmsConfig,
    passphrase_file: Path | None,
    kms_token_file: Path | None,
    blobs: str | None,
    blobs_endpoint: str | None,
) -> tuple[Vault, SecretBytes]:
    """A new vault in `h` and its recovery phrase: under a new passphrase (asked twice), or
    wrapped by the KMS `config` names (its token read for this call and wiped after it)."""
    if config.kind is KmsKind.LOCAL:
        with inputs.passphrase(passphrase_file, label="New vault passphrase", confirm=True) as pw:
            return vault_admin.init_vault(h, pw, blobs_url=blobs, blobs_endpoint=blobs_endpoint)
    token = inputs.kms_token(kms_token_file)
    try:
        return vault_admin.init_vault(
            h, None, kms=config, kms_token=token, blobs_url=blobs, blobs_endpoint=blobs_endpoint
        )
    finally:
        if token is not None:
            token.wipe()


def _show_created(h: Home, vault: Vault, config: KmsConfig, *, blobs: bool) -> None:
    render.out.print(f"Vault [bold]{vault.vault_id}[/bold] created in {h.path}.")
    if blobs:
        render.out.print(f"Record ciphertext is kept in {vault.blobs.description}.")
    if config.kind is not KmsKind.LOCAL:
        render.out.print(
            f"Its key is wrapped by {config.describe()}: it unlocks through the KMS, with "
            "no passphrase."
        )


def _show_recovery_phrase(words: str) -> None:
    """The recovery phrase, six numbered words a row, between its warnings."""
    render.out.print("")
    render.out.print("[bold yellow]Recovery phrase — shown this once, write it down:[/bold yellow]")
    numbered = words.split()
    for row in range(0, len(numbered), 6):
        render.out.print(
            "  "
            + "  ".join(f"{i + 1:>2}. {w:<9}" for i, w in enumerate(numbered[row : row + 6], row))
        )
    render.out.print(
        "\nAnyone with these words can open this vault. Keep them offline; "
        "`keysafe recover` uses them to set a new passphrase or rebuild the vault."
    )


@commands.command()
def status(json_out: JsonFlag = False) -> None:
    """Show whether a vault exists here, what it holds and the audit head (no passphrase needed)."""
    h = home()
    if not h.exists():
        render.answer(
            {"initialized": False, "home": str(h.path)},
            f"No vault in {h.path}. Run `keysafe init` to create one.",
            json_out=json_out,
        )
        return
    with open_vault(h) as vault:
        st = vault_status.status(h, vault).model_dump(mode="json")
        kms_line = vault_admin.key_provider(vault).describe()
        st["epoch"] = _epoch_status(vault)
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
    _show_status(st, kms_line, _server_line(url, state))


def _epoch_status(vault: Vault) -> dict[str, Any]:
    """The current epoch, since when, the retired ones not yet re-sealed, and whether a rotation
    is due."""
    ep = epochs.state(vault)
    return {
        "current": ep.current,
        "since": ep.since,
        "retired": list(ep.retired),
        "due": epochs.due(vault),
    }


def _server_line(url: str | None, state: bool | None) -> str:
    """The server this home serves from, as `status` says it (`state`: its unlocked answer)."""
    if url is None:
        return "not running (`keysafe serve` starts it)"
    if state is None:
        return f"running at {url}, not answering"
    return f"running at {url}, " + (
        "unlocked: owner commands go through it" if state else "locked (`keysafe unlock`)"
    )


def _show_status(st: dict[str, Any], kms_line: str, server: str) -> None:
    """`status` for people: one aligned line a field, then the due rotations and failed
    unlocks."""
    for key in (
        "home",
        "vault_id",
        "created_at",
        "credentials",
        "data",
        "wallets",
        "agents",
        "audit_entries",
        "audit_head",
        "blobs",
    ):
        if key in st:  # `blobs` only for a vault whose ciphertext is in S3
            render.out.print(f"{key.replace('_', ' '):>14}: {st[key]}")
    render.out.print(f"{'key provider':>14}: {kms_line}")
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


@commands.command()
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
    was: KmsConfig | None = None
    if h.exists():
        with open_vault(h) as before:
            was = vault_admin.key_provider(before)
    with inputs.phrase_and_new_passphrase(passphrase_file) as (phrase, pw):
        vault, rebuilt = vault_admin.recover_vault(h, phrase, pw)
    left_kms = was is not None and was.kind is not KmsKind.LOCAL
    with vault:
        if json_out:
            # `left_kms` only when it did: scripts reading {vault_id, rebuilt} see no change
            extra = {"left_kms": True} if left_kms else {}
            render.as_json({"vault_id": vault.vault_id, "rebuilt": rebuilt} | extra)
        elif left_kms and was is not None:
            render.out.print(
                f"Vault {vault.vault_id} opened with the recovery phrase. It was wrapped by "
                f"{was.describe()}; it now unlocks with the new passphrase instead, and no "
                "longer uses the KMS (its key there can be retired)."
            )
        elif rebuilt:
            render.out.print(
                f"Vault {vault.vault_id} rebuilt in {h.path}. Create wallets again in the same "
                "order to get the same addresses; restore credentials with "
                "`keysafe backup restore`."
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
    """Change the passphrase (old one: KEYSAFE_PASSPHRASE; new one: KEYSAFE_NEW_PASSPHRASE).

    A vault a KMS wraps has no passphrase: this is refused (manage access in the KMS).
    """
    with open_vault(home()) as probe:  # before any prompt: a KMS vault has no passphrase
        vault_admin.require_passphrase_vault(probe)
    with (
        unlocked(passphrase_file) as vault,
        inputs.passphrase(
            new_passphrase_file,
            env=("KEYSAFE_NEW_PASSPHRASE",),
            label="New vault passphrase",
            confirm=True,
        ) as pw,
    ):
        vault_admin.change_passphrase(vault, pw)
    render.out.print("Passphrase changed.")
