"""`keysafe asset …`: the asset registry (symbols, token addresses, decimals)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from keysafe.cli import owner, render
from keysafe.cli.options import JsonFlag, PassphraseFile
from keysafe.cli.registries import registry_here
from keysafe.service import owner_ops

asset_app = typer.Typer(
    help="The asset registry (symbols, token addresses, decimals).", no_args_is_help=True
)


@asset_app.command("add")
def asset_add(
    symbol: str,
    chain: Annotated[str, typer.Option("--chain", help="Chain name or id.")],
    address: Annotated[str, typer.Option("--address", help="Token contract / mint address.")],
    decimals: Annotated[int, typer.Option("--decimals", help="Token decimals (USDC: 6).")],
    passphrase_file: PassphraseFile = None,
) -> None:
    """Add (or update) a token: keysafe asset add USDC --chain base --address 0x… --decimals 6"""
    op = owner_ops.AddAsset(symbol=symbol, chain=chain, address=address, decimals=decimals)
    info = owner.perform(op, passphrase_file)
    render.out.print(f"Asset {info.symbol} on {info.chain} registered ({info.decimals} decimals).")


@asset_app.command("list")
def asset_list(json_out: JsonFlag = False) -> None:
    """List built-in and added assets."""
    assets = registry_here().assets
    render.listing(
        "Assets",
        ["symbol", "chain", "address", "decimals", "built in"],
        [
            (a.symbol, a.chain, a.address or "(native)", a.decimals, "yes" if a.builtin else "no")
            for a in assets
        ],
        empty="",
        json_value=[dataclasses.asdict(a) for a in assets],
        json_out=json_out,
    )
