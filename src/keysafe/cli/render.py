"""Output: JSON for scripts (`--json`, stable field names), Rich tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)


def as_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str) -> None:
    if not rows:
        out.print(f"[dim]{empty}[/dim]")
        return
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    out.print(t)


def error_line(code: str, what: str, next_step: str) -> None:
    # One line, no Rich wrapping: scripts grep it, people read it.
    msg = f"Error [{code}]: {what}"
    if next_step:
        msg += f" Next: {next_step}"
    sys.stderr.write(msg.replace("\n", " ") + "\n")


def note(text: str) -> None:
    """A message for the person, on stderr, so stdout stays what scripts parse."""
    sys.stderr.write(text.replace("\n", " ") + "\n")
