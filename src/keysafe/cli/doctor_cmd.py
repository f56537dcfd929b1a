"""`keysafe doctor`: what is wrong with this keysafe, and what to do about it."""

from __future__ import annotations

from typing import Annotated, Final

import typer
from rich.markup import escape

from keysafe.cli import client, inputs, render
from keysafe.cli.home import home
from keysafe.cli.options import JsonFlag, KmsTokenFile
from keysafe.service import doctor
from keysafe.service.findings import Status

_STYLE: Final = {
    Status.OK: "[green]ok  [/green]",
    Status.WARN: "[yellow]WARN[/yellow]",
    Status.FAIL: "[bold red]FAIL[/bold red]",
}


# `keysafe doctor`, mounted at the top by cli/app.py.
commands = typer.Typer()


@commands.command("doctor")
def doctor_cmd(
    timeout: Annotated[
        float,
        typer.Option("--timeout", help="Seconds each network check may take.", min=0.1, max=60.0),
    ] = doctor.NETWORK_TIMEOUT_S,
    json_out: JsonFlag = False,
    kms_token_file: KmsTokenFile = None,
) -> None:
    """Check this keysafe and say what to fix (no passphrase needed; nothing is changed).

    Checks the home's permissions and owner, the vault database, its locks, the server at
    KEYSAFE_URL (running? locked?), every chain RPC you configured (reachable, right network),
    the passphrase's Argon2id cost measured on this machine (or, for a KMS vault, whether its
    KMS answers and its key is usable), failed unlocks, pause-all, rows
    without the owner's seal, and the audit log's hash chain. Each line is ok, WARN (works, but
    look at it) or FAIL (does not work as it stands), with the fix. Exit 1 if any check fails.
    """
    token = inputs.kms_token(kms_token_file)
    try:
        report = doctor.diagnose(
            home(),
            server_url=client.server_url() or client.DEFAULT_URL,
            timeout=timeout,
            kms_token=token,
            kms_url=inputs.kms_url(),
        )
    finally:
        if token is not None:
            token.wipe()
    if json_out:
        render.as_json(report.model_dump(mode="json", by_alias=True))
    else:
        render.out.print(f"keysafe doctor: {escape(report.home)}")
        width = max(len(f.check) for f in report.findings)
        for f in report.findings:
            render.out.print(f"  {_STYLE[f.status]}  {f.check:<{width}}  {escape(f.summary)}")
            if f.fix:
                render.out.print(f"  {'':4}  {'':<{width}}  [bold]fix:[/bold] {escape(f.fix)}")
        counts = {s: sum(f.status is s for f in report.findings) for s in Status}
        render.out.print(
            f"{counts[Status.OK]} ok, {counts[Status.WARN]} warning(s), "
            f"{counts[Status.FAIL]} failure(s)."
        )
    if not report.ok:
        raise typer.Exit(1)
