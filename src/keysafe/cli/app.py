"""Root of the `keysafe` CLI: the Typer app, logging set-up, and the one place errors are mapped.

Exit codes: 0 ok, 1 an error the user can act on (one line on stderr naming the fix), 2 usage.
A bug is reported as INTERNAL with an incident id; its traceback goes only to the log file.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

from keysafe import __version__
from keysafe.cli import render
from keysafe.errors import ErrorCode, KeysafeError
from keysafe.service.context import Home, known_fault

logger = logging.getLogger("keysafe")

HELP = (
    "keysafe keeps wallet keys, API keys and personal data for AI agents, which may "
    "[bold]use[/bold] them but never [bold]hold[/bold] them. Everything is encrypted at rest and "
    "every action is written to a tamper-evident audit log.\n\n"
    "The vault lives in KEYSAFE_HOME (default ~/.keysafe). Scripts pass the passphrase in "
    "KEYSAFE_PASSPHRASE or with --passphrase-file; secret values always come from stdin or a "
    "hidden prompt, never from the command line. Exit codes: 0 ok, 1 error (one line naming the "
    "fix), 2 usage, 3 needs approval, 4 denied."
)

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)

PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="Read the vault passphrase from this file (else KEYSAFE_PASSPHRASE, else a prompt).",
        dir_okay=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def home() -> Home:
    return Home.from_env()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"keysafe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    _configure_logging(home())


def _configure_logging(h: Home) -> None:
    if logger.handlers or not h.path.is_dir():
        return
    try:
        handler = logging.FileHandler(h.log_path, encoding="utf-8")
    except OSError:
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _register() -> None:
    # Imported for their side effect of adding commands to `app`.
    from keysafe.cli import (  # noqa: F401
        agent_cmds,
        audit_cmds,
        backup_cmds,
        chain_cmds,
        demo_cmd,
        record_cmds,
        server_cmds,
        surface_cmds,
        vault_cmds,
    )


def main(argv: list[str] | None = None) -> None:
    os.umask(0o077)  # every file keysafe creates is 0600, every directory 0700
    _register()
    try:
        app(args=argv, prog_name="keysafe")
    except KeysafeError as exc:
        logger.info("refused: %s %s", exc.code, exc.what)
        render.error_line(str(exc.code), exc.what, exc.next_step)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted: nothing was changed by the unfinished step.\n")
        sys.exit(130)
    except Exception as exc:
        known = known_fault(exc)
        if known is not None:
            logger.info("refused: %s %s", known.code, known.what)
            render.error_line(str(known.code), known.what, known.next_step)
            sys.exit(known.exit_code)
        incident = secrets.token_hex(4)
        logger.exception("internal error, incident %s", incident)
        render.error_line(
            str(ErrorCode.INTERNAL),
            f"keysafe hit an internal error (incident {incident}); nothing was shown of your "
            "secrets.",
            f"see {home().log_path} for the details and report incident {incident}.",
        )
        sys.exit(1)
