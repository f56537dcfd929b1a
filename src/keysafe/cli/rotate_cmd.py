"""`keysafe rotate`: a new epoch key, every record sealed again under it, the old key destroyed."""

from __future__ import annotations

from typing import Annotated

import typer

from keysafe.cli import owner, render
from keysafe.cli.home import read_vault
from keysafe.cli.options import JsonFlag, PassphraseFile
from keysafe.service import owner_ops, rotation_due
from keysafe.service.rotation_due import DueRotation

# `keysafe rotate | rotation-policy`, mounted at the top by cli/app.py.
commands = typer.Typer()


@commands.command()
def rotate(passphrase_file: PassphraseFile = None, json_out: JsonFlag = False) -> None:
    """Start a new epoch key, seal every record again under it, and destroy the old key.

    A key copied before the rotation (a memory dump, a leak) then opens nothing in the vault's
    files. `keysafe serve` also rotates on a schedule (--rotate-every, default 7 days) and when an
    agent is revoked. Goes through the running server when it is unlocked.
    """
    done = owner.perform(owner_ops.RotateEpochs(), passphrase_file)
    if json_out:
        render.as_json(done.model_dump())
        return
    render.out.print(
        f"Epoch {done.epoch} started: {done.resealed} records sealed again, "
        f"old epoch keys {', '.join(map(str, done.destroyed)) or 'none'} destroyed."
    )


@commands.command("rotation-policy")
def rotation_policy(
    after: Annotated[
        str | None,
        typer.Option(
            "--after", help="Replace agents' tokens, keys and placeholders this old: 30d, 12h."
        ),
    ] = None,
    after_uses: Annotated[
        int | None,
        typer.Option("--after-uses", min=0, help="…or after this many uses (0: no use count)."),
    ] = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Show (or set, with --after / --after-uses) when what agents hold is due for replacement,
    and list what is due now with the command that replaces each.

    Nothing is replaced by itself: the agent holds it, so the owner rotates (`keysafe agent
    rotate-token NAME`, `keysafe credential placeholder NAME --agent A --replace`) and hands the
    new one over. The default is 90 days and no use count. Setting needs the vault unlocked.
    """
    if after is not None or after_uses is not None:
        hours = None if after is None else rotation_due.parse_after(after).total_seconds() // 3600
        done = owner.perform(
            owner_ops.SetRotationPolicy(
                after_hours=None if hours is None else int(hours), after_uses=after_uses
            ),
            passphrase_file,
        )
        described, due = done.after, done.due
    else:
        pol, due = read_vault(rotation_due.due)
        described = pol.describe()
    if json_out:
        render.as_json({"policy": described, "due": [d.model_dump() for d in due]})
        return
    render.out.print(f"Agents' tokens, keys and placeholders are replaced {described}.")
    _print_due(due)


def _print_due(due: list[DueRotation]) -> None:
    if not due:
        render.out.print("Nothing is due.")
    for d in due:
        whose = d.agent + (f" ({d.credential})" if d.credential else "")
        render.out.print(
            f"due: {d.what} of {whose}, {d.why} (issued {d.issued_at}, {d.uses} uses): {d.fix}"
        )
