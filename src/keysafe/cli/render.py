"""Output: JSON for scripts (`--json`, stable field names), Rich tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console(highlight=False, soft_wrap=True)


def as_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    empty: str,
    whole: Sequence[str] = ("id", "address"),
) -> None:
    """A table for people. Cells are text, never Rich markup (they may hold an agent's words).
    Columns named in `whole` (ids) are never shortened or wrapped: a narrow terminal squeezes
    the other columns instead, so an id can always be copied as printed."""
    if not rows:
        out.print(f"[dim]{empty}[/dim]")
        return
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for i, c in enumerate(columns):
        if c in whole:
            widest = max((len(str(r[i])) for r in rows if r[i] is not None), default=0)
            t.add_column(c, no_wrap=True, min_width=max(widest, len(c)), overflow="ignore")
        else:
            t.add_column(c)
    for r in rows:
        t.add_row(*(Text("" if v is None else str(v)) for v in r))
    out.print(t)


def plain(text: str) -> None:
    """One line for people, printed as text: never read as Rich markup."""
    out.print(Text(text))


def error_line(code: str, what: str, next_step: str) -> None:
    # One line, no Rich wrapping: scripts grep it, people read it.
    msg = f"Error [{code}]: {what}"
    if next_step:
        msg += f" Next: {next_step}"
    sys.stderr.write(msg.replace("\n", " ") + "\n")


def note(text: str) -> None:
    """A message for the person, on stderr, so stdout stays what scripts parse."""
    sys.stderr.write(text.replace("\n", " ") + "\n")


def listing(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    empty: str,
    json_value: Any,
    json_out: bool,
) -> None:
    """What a `list` command prints: `json_value` with --json (scripts), else `table`."""
    if json_out:
        as_json(json_value)
    else:
        table(title, columns, rows, empty=empty)


def answer(json_value: Any, text: str, *, json_out: bool, markup: bool = True) -> None:
    """What a command that did one thing prints: `json_value` with --json (scripts), else
    `text` for people (Rich markup allowed: the caller's own words, never an agent's; `markup`
    False prints brackets in it, such as a path's or a summary's, as they are)."""
    if json_out:
        as_json(json_value)
    else:
        out.print(text, markup=markup)
