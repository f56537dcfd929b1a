"""`keysafe data …`: personal data (JSON or text) agents may read under policy."""

from __future__ import annotations

from typing import Annotated

import typer

from keysafe.cli import inputs, owner, render
from keysafe.cli.home import read_vault
from keysafe.cli.options import JsonFlag, PassphraseFile
from keysafe.service import data, owner_ops
from keysafe.service.models import DataClass

data_app = typer.Typer(
    help="Personal data (JSON or text) agents may read under policy.", no_args_is_help=True
)


@data_app.command("set")
def data_set(
    name: Annotated[str, typer.Argument(help="e.g. profile.email")],
    data_class: Annotated[
        DataClass,
        typer.Option(
            "--class", help="standard: agents may read under policy; sensitive: only with approval."
        ),
    ] = DataClass.STANDARD,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Store a JSON or text value read from stdin (or a hidden prompt). Replaces an older value."""
    with inputs.stdin_secret(f"Value for '{name}'") as value:
        op = owner_ops.SetData(name=name, value=owner_ops.wire(value), data_class=data_class)
    view = owner.perform(op, passphrase_file)
    render.answer(
        view.model_dump(mode="json"),
        f"Data '{view.name}' stored ({view.format}, {view.data_class}).",
        json_out=json_out,
    )


@data_app.command("list")
def data_list(json_out: JsonFlag = False) -> None:
    """List data records: names, classes, formats. Never values."""
    views = read_vault(data.list_data)
    render.listing(
        "Data",
        ["name", "class", "format", "fields", "updated"],
        [(v.name, v.data_class, v.format, ", ".join(v.fields), v.updated_at[:19]) for v in views],
        empty="No data yet. Add some with `keysafe data set NAME`.",
        json_value=[v.model_dump(mode="json") for v in views],
        json_out=json_out,
    )


@data_app.command("remove")
def data_remove(name: str, passphrase_file: PassphraseFile = None) -> None:
    """Delete a data record."""
    owner.perform(owner_ops.RemoveData(name=name), passphrase_file)
    render.out.print(f"Data '{name}' removed.")
