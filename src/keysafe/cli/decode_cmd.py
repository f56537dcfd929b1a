"""`keysafe decode`: what a transaction or typed data would do. Needs no vault."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from keysafe.cli import render
from keysafe.cli.options import JsonFlag
from keysafe.cli.registries import vault_registry
from keysafe.errors import MalformedRequestError
from keysafe.service import decode as decoding

# `keysafe decode`, mounted at the top by cli/app.py.
commands = typer.Typer()


@commands.command()
def decode(
    source: Annotated[
        Path,
        typer.Argument(
            help="File with the transaction or typed data, or - for stdin.", allow_dash=True
        ),
    ],
    chain: Annotated[
        str | None,
        typer.Option("--chain", help="Chain name or id (must agree with the transaction)."),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Decode an EVM transaction (JSON or unsigned RLP hex), EIP-712 typed data or a Solana
    transaction (base64) into what it would do, with a one-line summary. Needs no vault."""
    if str(source) == "-":
        text = sys.stdin.read()
    else:
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MalformedRequestError(
                f"Cannot read {source} ({exc}).", next_step="check the path."
            ) from None
    reg = vault_registry()
    intent = decoding.decode_payload(text, chain=chain, registry=reg)
    view = decoding.intent_view(intent, reg)
    if json_out:
        render.as_json(view)
        return
    render.out.print(f"[bold]{view['summary'] or view['action']}[/bold]")
    for key, value in view.items():
        if key != "summary" and value is not None:
            render.out.print(f"  {key:>9}: {value}", markup=False, highlight=False)
