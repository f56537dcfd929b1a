"""Root of the `keysafe` CLI: the Typer app, logging set-up, and the one place errors are mapped.

Exit codes: 0 ok, 1 an error the user can act on (one line on stderr naming the fix), 2 usage.
A bug is reported as INTERNAL with an incident id; its traceback goes only to the log file.
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets
import sys
from typing import Annotated, Final

import typer

from keysafe import __version__
from keysafe.cli import metavars, render
from keysafe.cli.home import home
from keysafe.errors import ErrorCode, KeysafeError
from keysafe.service.context import Home, known_fault

logger = logging.getLogger("keysafe")
metavars.install()  # --help writes NAME, TEXT, FILE as click does, not typer's {name}, <str>

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
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
)


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


# Everything `keysafe` runs, mounted here in the order --help lists it. Only the module of the
# command being run is imported: importing all of them (wallet code, the server, MCP) cost a third
# of every run. tests/unit/test_cli_commands.py checks these tables against the built app.
#
# Top-level commands (`keysafe init`): the module whose nameless `commands` Typer holds each;
# `mount` merges that Typer into `app` without a name, so its commands sit at the top.
COMMANDS: Final[dict[str, str]] = {
    "init": "vault_cmds",
    "status": "vault_cmds",
    "recover": "vault_cmds",
    "pause-all": "agent_cmds",
    "resume-all": "agent_cmds",
    "decode": "decode_cmd",
    "demo": "demo_cmd",
    "doctor": "doctor_cmd",
    "relay": "relay_cmd",
    "rotate": "rotate_cmd",
    "rotation-policy": "rotate_cmd",
    "serve": "server_cmds",
    "unlock": "server_cmds",
    "lock": "server_cmds",
    "approvals": "approval_cmds",
    "approve": "approval_cmds",
    "deny": "approval_cmds",
    "mcp": "surface_cmds",
    "proxy": "surface_cmds",
    "run": "surface_cmds",
}
# Command groups (`keysafe agent add`): the module and the name of the Typer it owns.
GROUPS: Final[dict[str, tuple[str, str]]] = {
    "passphrase": ("vault_cmds", "passphrase_app"),
    "agent": ("agent_cmds", "agent_app"),
    "policy": ("policy_cmds", "policy_app"),
    "chain": ("chain_cmds", "chain_app"),
    "asset": ("asset_cmds", "asset_app"),
    "audit": ("audit_cmds", "audit_app"),
    "backup": ("backup_cmds", "backup_app"),
    "credential": ("credential_cmds", "credential_app"),
    "data": ("data_cmds", "data_app"),
    "wallet": ("wallet_cmds", "wallet_app"),
    "notify": ("notify_cmds", "notify_app"),
    "grants": ("grants_cmds", "grants_app"),
    "sidecar": ("sidecar_cmd", "sidecar_app"),
}
_mounted: set[str] = set()  # modules and groups `register` added to `app`: each only once


def register(argv: list[str] | None = None) -> None:
    """Mount on `app` the commands `argv` can reach: its command's module, or every module (for
    --help, completion, or a name keysafe does not know, so the error lists them all)."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    word = words[0] if words else ""
    if word in COMMANDS:
        _mount_commands(COMMANDS[word])
    elif word in GROUPS:
        _mount_group(word)
    else:
        for module in dict.fromkeys(COMMANDS.values()):  # first the top-level commands, in order
            _mount_commands(module)
        for group in GROUPS:
            _mount_group(group)


def _mount_commands(module: str) -> None:
    """Merge `module`'s nameless `commands` Typer into `app`: its commands sit at the top."""
    if module not in _mounted:
        _mounted.add(module)
        app.add_typer(_typer(module, "commands"))


def _mount_group(name: str) -> None:
    """Add the group `name` (`keysafe NAME …`) to `app`, from the module that owns its Typer."""
    if name not in _mounted:
        _mounted.add(name)
        app.add_typer(_typer(*GROUPS[name]), name=name)


def _typer(module: str, attribute: str) -> typer.Typer:
    found = getattr(importlib.import_module(f"keysafe.cli.{module}"), attribute)
    assert isinstance(found, typer.Typer), (module, attribute)
    return found


# Options whose value may be left out, with the value that means (Typer has no such option):
# `agent add NAME --mcp-config` is `--mcp-config stdio`.
_OPTIONAL_VALUES: Final[dict[str, tuple[str, frozenset[str]]]] = {
    "--mcp-config": ("stdio", frozenset({"stdio", "http"})),
}


def with_optional_values(argv: list[str]) -> list[str]:
    """`argv` with the default filled in after each option of _OPTIONAL_VALUES given bare."""
    out: list[str] = []
    for i, word in enumerate(argv):
        out.append(word)
        if word in _OPTIONAL_VALUES:
            default, values = _OPTIONAL_VALUES[word]
            if i + 1 == len(argv) or argv[i + 1] not in values:
                out.append(default)
    return out


def main(argv: list[str] | None = None) -> None:
    os.umask(0o077)  # every file keysafe creates is 0600, every directory 0700
    args = with_optional_values(sys.argv[1:] if argv is None else argv)
    register(args)
    try:
        app(args=args, prog_name="keysafe")
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
