"""`keysafe chain …`: the chain registry policies and signing use."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from keysafe.chains import Chain
from keysafe.cli import owner, render
from keysafe.cli.options import JsonFlag, PassphraseFile
from keysafe.cli.registries import registry_here
from keysafe.errors import MalformedRequestError
from keysafe.service import owner_ops

chain_app = typer.Typer(help="The chain registry policies and signing use.", no_args_is_help=True)


@chain_app.command("add")
def chain_add(
    name: str,
    chain_id: Annotated[int | None, typer.Option("--chain-id", help="EVM chain id.")] = None,
    rpc: Annotated[str | None, typer.Option("--rpc", help="JSON-RPC URL.")] = None,
    family: Annotated[str, typer.Option("--family", help="evm or solana.")] = "evm",
    max_fee: Annotated[
        str | None,
        typer.Option(
            "--max-fee",
            help="Fee ceiling per transaction in the chain's native coin, e.g. 0.02 "
            "(default: the built-in chain's, else 0.05 ETH / 0.01 SOL).",
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Add (or update) a chain:
    keysafe chain add arbitrum --chain-id 42161 --rpc https://… --max-fee 0.02"""
    if family not in ("evm", "solana"):
        raise MalformedRequestError(
            "--family is evm or solana.", next_step="pass --family evm or --family solana."
        )
    op = owner_ops.AddChain(
        name=name, family=Chain(family), chain_id=chain_id, rpc=rpc, max_fee=max_fee
    )
    info = owner.perform(op, passphrase_file)
    render.out.print(
        f"Chain '{info.name}' registered "
        f"(fee ceiling {info.max_fee} {info.native} per transaction)."
    )


@chain_app.command("list")
def chain_list(json_out: JsonFlag = False) -> None:
    """List built-in and added chains."""
    chains = registry_here().chains
    render.listing(
        "Chains",
        ["name", "family", "chain id", "rpc", "max fee", "built in"],
        [
            (
                c.name,
                c.family,
                c.chain_id,
                c.rpc,
                f"{c.fee_ceiling_text} {c.native}",
                "yes" if c.builtin else "no",
            )
            for c in chains
        ],
        empty="",
        # The record as it is, with its fee ceiling as digits (the family default filled in)
        # where the record keeps a Decimal or None, and the coin that ceiling is counted in.
        json_value=[
            dataclasses.asdict(c) | {"max_fee": c.fee_ceiling_text, "native": c.native}
            for c in chains
        ],
        json_out=json_out,
    )
