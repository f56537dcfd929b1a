"""`--help` shows parameters as click writes them: `NAME`, `[NAME]`, `TEXT`, `INTEGER`, `FILE`,
`[stdio|http]`, and nothing after a flag.

Typer 0.29 draws its own forms instead (`{name}` for a required argument, `<str>`, `<int range>`,
`<bool>` after every flag), which no other command-line tool and no keysafe doc uses. Typer builds
its parameter objects afresh for every run (the help option per context), so the two display
methods are replaced on its classes, once, when keysafe's CLI is imported: only what help shows
changes, never how a value is parsed. tests/unit/test_cli_commands.py walks every command's
`--help` and rejects the typer forms.
"""

from __future__ import annotations

from typing import Final

import typer.core
from typer import _click

# typer's type label (inside its <…>) -> click's name for the same type.
_CLICK_NAMES: Final = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "FLOAT",
    "bool": "BOOLEAN",
    "file": "FILE",
    "dir": "DIRECTORY",
    "path": "PATH",
    "int range": "INTEGER RANGE",
    "float range": "FLOAT RANGE",
    "datetime": "DATETIME",
    "uuid": "UUID",
}


def click_type(label: str) -> str:
    """A typer type label (`<str>`, `<int range>`, `<a|b>`, `<list[str]>`) as click writes it."""
    inner = label[1:-1] if label[:1] == "<" and label[-1:] == ">" else label
    if inner.startswith("list[") and inner.endswith("]"):
        inner = inner[5:-1]  # click shows an option that repeats by its element type
    if inner in _CLICK_NAMES:
        return _CLICK_NAMES[inner]
    if "|" in inner:
        return f"[{inner}]"  # choices
    return inner.upper()


def _type_shown(param: typer.core._TyperParameter, ctx: _click.Context) -> str | None:
    if param.metavar is not None:
        return param.metavar
    if isinstance(param, typer.core.TyperOption) and (param.is_flag or param.count):
        return None  # a flag takes no value, so there is no type to show
    shown = click_type(param.display_type(ctx))
    return f"{shown}..." if param.nargs != 1 else shown


def _argument_name(param: typer.core.TyperArgument) -> str:
    return param.metavar or (param.name or "arg").upper()


def _argument_hint(param: typer.core.TyperArgument) -> str:
    return f"'{_argument_name(param)}'"  # "Missing argument 'NAME'.", as the usage line names it


def _argument_usage(param: typer.core.TyperArgument) -> str:
    name = _argument_name(param)
    name = name if param.required else f"[{name}]"
    return f"{name}..." if param.nargs != 1 else name


def install() -> None:
    """Make every typer parameter render as click would (idempotent)."""
    # Replacing typer's methods on its classes is the point, so mypy's method-assign and the
    # signature check (our functions take the parameter, not `self` of a bound method) are off.
    typer.core.TyperOption.display_type_rich = _type_shown  # type: ignore[method-assign, assignment]
    typer.core.TyperArgument.display_type_rich = _type_shown  # type: ignore[method-assign, assignment]
    typer.core.TyperArgument.get_error_hint = _argument_hint  # type: ignore[method-assign, assignment]
    typer.core.TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign, assignment]
