"""`keysafe credential …`: API keys and tokens agents use through keysafe without seeing them."""

from __future__ import annotations

from typing import Annotated

import typer

from keysafe.cli import inputs, owner, render
from keysafe.cli.home import read_vault
from keysafe.cli.options import JsonFlag, PassphraseFile
from keysafe.errors import MalformedRequestError
from keysafe.service import credentials, owner_ops
from keysafe.service.models import Attachment

credential_app = typer.Typer(
    help="API keys and tokens that agents use through keysafe without seeing them.",
    no_args_is_help=True,
)


@credential_app.command("add")
def credential_add(
    name: Annotated[str, typer.Argument(help="A name agents and policies use, e.g. github.")],
    host: Annotated[
        list[str],
        typer.Option("--host", help="Host (and :port) the secret may be sent to. Repeatable."),
    ],
    header: Annotated[
        str | None,
        typer.Option("--header", help='Header template, e.g. "Authorization: Bearer {secret}".'),
    ] = None,
    bearer: Annotated[
        bool, typer.Option("--bearer", help="Send as Authorization: Bearer.")
    ] = False,
    basic: Annotated[
        str | None, typer.Option("--basic", help="Send as HTTP basic auth for USER.")
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", help="Send as this query parameter.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace an existing credential.")
    ] = False,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Store a credential. The secret is read from stdin (piped) or a hidden prompt, never argv.

    Example:
    printf %s "$GITHUB_TOKEN" | keysafe credential add github --host api.github.com --bearer
    """
    chosen = [x for x in (header, bearer or None, basic, query) if x]
    if len(chosen) > 1:
        raise MalformedRequestError(
            "Choose one of --header, --bearer, --basic or --query.",
            next_step="pass exactly one way to attach the secret.",
        )
    if header:
        attach = Attachment.header(header)
    elif basic:
        attach = Attachment.basic(basic)
    elif query:
        attach = Attachment.query(query)
    else:
        attach = Attachment.bearer()
    with inputs.stdin_secret(f"Secret for '{name}'") as secret:
        op = owner_ops.AddCredential(
            name=name, hosts=host, attach=attach, secret=owner_ops.wire(secret), replace=replace
        )
    view = owner.perform(op, passphrase_file)
    render.answer(
        view.model_dump(mode="json"),
        f"Credential '{view.name}' stored for {', '.join(view.hosts)}.",
        json_out=json_out,
    )


@credential_app.command("list")
def credential_list(json_out: JsonFlag = False) -> None:
    """List credentials: names, hosts and how they are attached. Never values."""
    views = read_vault(credentials.list_credentials)
    render.listing(
        "Credentials",
        ["name", "hosts", "attached as", "created"],
        [
            (
                v.name,
                ", ".join(v.hosts),
                f"{v.attach['type']} {v.attach['name']}",
                v.created_at[:19],
            )
            for v in views
        ],
        empty="No credentials yet. Add one with `keysafe credential add NAME --host HOST`.",
        json_value=[v.model_dump(mode="json") for v in views],
        json_out=json_out,
    )


@credential_app.command("remove")
def credential_remove(name: str, passphrase_file: PassphraseFile = None) -> None:
    """Delete a credential."""
    owner.perform(owner_ops.RemoveCredential(name=name), passphrase_file)
    render.out.print(f"Credential '{name}' removed.")


@credential_app.command("placeholder")
def credential_placeholder(
    name: str,
    agent: Annotated[str, typer.Option("--agent", help="The only agent it will work for.")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Rotate: the agent's older placeholders for this credential stop working.",
        ),
    ] = False,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Print ONCE an opaque stand-in (ksp_…) an unmodified SDK can carry as its API key.

    Point the SDK at `keysafe proxy` (http://127.0.0.1:8421/NAME/…) with the placeholder as its
    key: the proxy swaps it for the real secret on the way to the credential's hosts, for AGENT
    only. Anywhere else the placeholder is worthless; misuse is refused and audited.

    Example: keysafe credential placeholder openai --agent shopper
    """
    text = owner.perform(
        owner_ops.IssuePlaceholder(credential=name, agent=agent, replace=replace), passphrase_file
    ).placeholder
    if json_out:
        render.as_json({"credential": name, "agent": agent, "placeholder": text})
        return
    render.out.print(f"Placeholder for credential '{name}', agent '{agent}' (shown once):")
    print(text)
    render.out.print(f"Use it as the API key with base URL http://127.0.0.1:8421/{name}/…")
