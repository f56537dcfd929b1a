"""`keysafe grants …`: the "approve for a while" grants, and ending one early."""

from __future__ import annotations

from typing import Annotated

import typer

from keysafe.cli import owner, render
from keysafe.cli.options import JsonFlag, PassphraseFile

grants_app = typer.Typer(
    help='"Approve for a while" grants: what each lets an agent do without asking, until when.',
    invoke_without_command=True,
)


@grants_app.callback()
def grants_list(
    ctx: typer.Context, passphrase_file: PassphraseFile = None, json_out: JsonFlag = False
) -> None:
    """List the active grants (through the server when it runs)."""
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service import approvals

    if ctx.invoked_subcommand is not None:
        return
    items = owner.request(
        "GET",
        "/v1/owner/grants",
        passphrase_file,
        lambda vault: [g.model_dump(mode="json") for g in approvals.list_grants(vault)],
        unlock=False,
    )
    render.listing(
        "Grants",
        ["id", "agent", "rule", "covers", "until"],
        [(str(g["id"]), g["agent"], g["rule"], g["summary"], g["until"]) for g in items],
        empty="No active grants: every ask goes to you.",
        json_value=items,
        json_out=json_out,
    )


@grants_app.command("revoke")
def grants_revoke(
    grant_id: Annotated[int, typer.Argument(help="The grant's id, from `keysafe grants`.")],
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """End a grant now: that agent's requests of that shape are asked again."""
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service import approvals

    result = owner.request(
        "POST",
        f"/v1/owner/grants/{grant_id}/revoke",
        passphrase_file,
        lambda vault: approvals.revoke_grant(vault, grant_id).model_dump(mode="json"),
    )
    if json_out:
        render.as_json(result)
    else:
        render.out.print(
            f"Grant {grant_id} revoked: agent {result['agent']}, rule {result['rule']}."
        )
