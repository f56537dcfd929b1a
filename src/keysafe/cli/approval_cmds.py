"""`keysafe approvals | approve | deny`: the owner's answer to requests that wait for it, through
the running server when there is one."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from keysafe.cli import inputs, owner, render
from keysafe.cli.options import JsonFlag, PassphraseFile

# `keysafe approvals | approve | deny`, mounted at the top by cli/app.py.
commands = typer.Typer()

ApprovalId = Annotated[
    str,
    typer.Argument(
        help="The approval's id from `keysafe approvals`, or a unique prefix of it "
        "(at least 6 characters after apr_; the apr_ may be left off)."
    ),
]


AllFlag = Annotated[bool, typer.Option("--all", help="Also show decided and expired ones.")]


@commands.command("approvals")
def approvals_list(
    all_: AllFlag = False,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """List requests waiting for the owner's approval (through the server when it runs)."""
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service import approvals

    items = owner.request(
        "GET",
        f"/v1/owner/approvals?all={'true' if all_ else 'false'}",
        passphrase_file,
        lambda vault: [
            a.for_owner() for a in approvals.list_approvals(vault, pending_only=not all_)
        ],
        unlock=False,
    )
    render.listing(
        "Approvals",
        ["id", "agent", "status", "summary", "rule", "expires"],
        [
            (a["approval_id"], a["agent"], a["status"], a["summary"], a["rule"], a["expires_at"])
            for a in items
        ],
        empty="Nothing waits for your approval.",
        json_value=items,
        json_out=json_out,
    )


GrantFor = Annotated[
    str | None,
    typer.Option("--for", help="Also let this agent do this kind of thing for a while, e.g. 1h."),
]
PairingWords = Annotated[
    str | None,
    typer.Option(
        "--words",
        help="A pairing's four words, as the sidecar shows them: wrong words deny it.",
    ),
]


@commands.command()
def approve(
    approval_id: ApprovalId,
    for_: GrantFor = None,
    words: PairingWords = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Approve a pending request: keysafe runs exactly that request and keeps its result for the
    agent.

    A pairing (a remote sidecar asking to become an agent) is approved only with --words: the
    four words the sidecar printed, which must be the ones `keysafe approvals` shows.
    """
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service import approvals

    seconds = inputs.duration_seconds(for_) if for_ else None
    result = owner.request(
        "POST",
        f"/v1/owner/approvals/{quote(approval_id, safe='')}/approve",
        passphrase_file,
        lambda vault: approvals.approve(
            vault, approval_id, grant_seconds=seconds, words=words
        ).for_owner(),
        json_body={"for_seconds": seconds, "words": words},
    )
    if json_out:
        render.as_json(result)
    else:
        # The whole id, as the server resolved the prefix typed; the summary is the agent's
        # text, so it is printed as text (never as Rich markup).
        render.plain(f"Approval {result['approval_id']}: {result['status']} — {result['summary']}")


DenyReason = Annotated[
    str | None,
    typer.Option(
        "--reason", help="Why, for the agent: it reads this with the denial (300 characters)."
    ),
]


@commands.command()
def deny(
    approval_id: ApprovalId,
    reason: DenyReason = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Deny a pending request; nothing is signed and no budget is used."""
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service import approvals

    result = owner.request(
        "POST",
        f"/v1/owner/approvals/{quote(approval_id, safe='')}/deny",
        passphrase_file,
        lambda vault: approvals.deny(vault, approval_id, reason=reason).for_owner(),
        json_body={"reason": reason} if reason is not None else None,
    )
    if json_out:
        render.as_json(result)
    else:
        said = f" The agent is told: {result['reason']}" if result.get("reason") else ""
        render.plain(f"Approval {result['approval_id']}: denied.{said}")
