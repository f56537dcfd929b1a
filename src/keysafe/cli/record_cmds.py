"""`keysafe credential | data | wallet …`: add, list and remove what the vault holds."""

from __future__ import annotations

from typing import Annotated

import typer

from keysafe.cli import inputs, render
from keysafe.cli.app import JsonFlag, PassphraseFile, app, home
from keysafe.cli.vault_cmds import unlocked
from keysafe.errors import MalformedRequestError
from keysafe.service import credentials, data, wallets
from keysafe.service.context import open_vault
from keysafe.service.models import Attachment, Chain, DataClass

credential_app = typer.Typer(
    help="API keys and tokens that agents use through keysafe without seeing them.",
    no_args_is_help=True,
)
data_app = typer.Typer(
    help="Personal data (JSON or text) agents may read under policy.", no_args_is_help=True
)
wallet_app = typer.Typer(
    help="EVM and Solana wallets whose keys never leave the vault.", no_args_is_help=True
)
app.add_typer(credential_app, name="credential")
app.add_typer(data_app, name="data")
app.add_typer(wallet_app, name="wallet")


# -- credentials ---------------------------------------------------------------------------


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

    Example: printf %s "$GITHUB_TOKEN" | keysafe credential add github --host api.github.com --bearer
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
    with unlocked(passphrase_file) as vault, inputs.stdin_secret(f"Secret for '{name}'") as secret:
        view = credentials.add_credential(
            vault, name, secret, hosts=host, attach=attach, replace=replace
        )
    if json_out:
        render.as_json(view.to_dict())
    else:
        render.out.print(f"Credential '{view.name}' stored for {', '.join(view.hosts)}.")


@credential_app.command("list")
def credential_list(json_out: JsonFlag = False) -> None:
    """List credentials: names, hosts and how they are attached. Never values."""
    with open_vault(home()) as vault:
        views = credentials.list_credentials(vault)
    if json_out:
        render.as_json([v.to_dict() for v in views])
        return
    render.table(
        "Credentials", ["name", "hosts", "attached as", "created"],
        [(v.name, ", ".join(v.hosts), f"{v.attach['type']} {v.attach['name']}", v.created_at[:19])
         for v in views],
        empty="No credentials yet. Add one with `keysafe credential add NAME --host HOST`.",
    )  # fmt: skip


@credential_app.command("remove")
def credential_remove(name: str, passphrase_file: PassphraseFile = None) -> None:
    """Delete a credential."""
    with unlocked(passphrase_file) as vault:
        credentials.remove_credential(vault, name)
    render.out.print(f"Credential '{name}' removed.")


@credential_app.command("placeholder")
def credential_placeholder(
    name: str,
    agent: Annotated[str, typer.Option("--agent", help="The only agent it will work for.")],
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Print ONCE an opaque stand-in (ksp_…) an unmodified SDK can carry as its API key.

    Point the SDK at `keysafe proxy` (http://127.0.0.1:8421/NAME/…) with the placeholder as its
    key: the proxy swaps it for the real secret on the way to the credential's hosts, for AGENT
    only. Anywhere else the placeholder is worthless; misuse is refused and audited.

    Example: keysafe credential placeholder openai --agent shopper
    """
    from keysafe.service import placeholders

    with unlocked(passphrase_file) as vault:
        token = placeholders.issue(vault, name, agent)
    text = bytes(token.reveal()).decode()
    token.wipe()
    if json_out:
        render.as_json({"credential": name, "agent": agent, "placeholder": text})
        return
    render.out.print(f"Placeholder for credential '{name}', agent '{agent}' (shown once):")
    print(text)
    render.out.print(f"Use it as the API key with base URL http://127.0.0.1:8421/{name}/…")


# -- data ----------------------------------------------------------------------------------


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
    with unlocked(passphrase_file) as vault, inputs.stdin_secret(f"Value for '{name}'") as value:
        view = data.set_data(vault, name, value, data_class=data_class)
    if json_out:
        render.as_json(view.to_dict())
    else:
        render.out.print(f"Data '{view.name}' stored ({view.format}, {view.data_class}).")


@data_app.command("list")
def data_list(json_out: JsonFlag = False) -> None:
    """List data records: names, classes, formats. Never values."""
    with open_vault(home()) as vault:
        views = data.list_data(vault)
    if json_out:
        render.as_json([v.to_dict() for v in views])
        return
    render.table(
        "Data", ["name", "class", "format", "fields", "updated"],
        [(v.name, v.data_class, v.format, ", ".join(v.fields), v.updated_at[:19]) for v in views],
        empty="No data yet. Add some with `keysafe data set NAME`.",
    )  # fmt: skip


@data_app.command("remove")
def data_remove(name: str, passphrase_file: PassphraseFile = None) -> None:
    """Delete a data record."""
    with unlocked(passphrase_file) as vault:
        data.remove_data(vault, name)
    render.out.print(f"Data '{name}' removed.")


# -- wallets -------------------------------------------------------------------------------


@wallet_app.command("create")
def wallet_create(
    name: str,
    chain: Annotated[Chain, typer.Option("--chain", help="evm or solana.")],
    index: Annotated[
        int | None, typer.Option("--index", help="Account index to derive (default: the next one).")
    ] = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Create a wallet from the vault's recovery phrase and print its address (MetaMask / Phantom paths)."""
    with unlocked(passphrase_file) as vault:
        view = wallets.create_wallet(vault, name, chain, index=index)
    if json_out:
        render.as_json({"name": view.name, "chain": view.chain, "address": view.address})
    else:
        render.out.print(f"Wallet '{view.name}' ({view.chain}, index {view.index}): {view.address}")


@wallet_app.command("import")
def wallet_import(
    name: str,
    chain: Annotated[Chain, typer.Option("--chain", help="evm or solana.")],
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Import a private key read from stdin (or a hidden prompt); it never leaves the vault again."""
    with unlocked(passphrase_file) as vault, inputs.stdin_secret("Private key") as key:
        view = wallets.import_wallet(vault, name, chain, key)
    if json_out:
        render.as_json({"name": view.name, "chain": view.chain, "address": view.address})
    else:
        render.out.print(f"Wallet '{view.name}' ({view.chain}) imported: {view.address}")


@wallet_app.command("list")
def wallet_list(passphrase_file: PassphraseFile = None, json_out: JsonFlag = False) -> None:
    """List wallets and addresses; each address is re-derived from its key before it is shown."""
    with unlocked(passphrase_file) as vault:
        views = wallets.list_wallets(vault)
    if json_out:
        render.as_json([v.to_dict() for v in views])
        return
    render.table(
        "Wallets", ["name", "chain", "address", "source"],
        [(v.name, v.chain, v.address, v.source if v.index is None else f"{v.source} #{v.index}")
         for v in views],
        empty="No wallets yet. Create one with `keysafe wallet create NAME --chain evm`.",
    )  # fmt: skip
