"""`keysafe credential | data | wallet …`: add, list and remove what the vault holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keysafe.cli import inputs, owner, render
from keysafe.cli.app import JsonFlag, PassphraseFile, app, home
from keysafe.errors import MalformedRequestError
from keysafe.service import credentials, data, owner_ops
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
    with inputs.stdin_secret(f"Secret for '{name}'") as secret:
        op = owner_ops.AddCredential(
            name=name, hosts=host, attach=attach, secret=owner_ops.wire(secret), replace=replace
        )
    view = owner.perform(op, passphrase_file)
    if json_out:
        render.as_json(view.model_dump(mode="json"))
    else:
        render.out.print(f"Credential '{view.name}' stored for {', '.join(view.hosts)}.")


@credential_app.command("list")
def credential_list(json_out: JsonFlag = False) -> None:
    """List credentials: names, hosts and how they are attached. Never values."""
    with open_vault(home()) as vault:
        views = credentials.list_credentials(vault)
    if json_out:
        render.as_json([v.model_dump(mode="json") for v in views])
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
    with inputs.stdin_secret(f"Value for '{name}'") as value:
        op = owner_ops.SetData(name=name, value=owner_ops.wire(value), data_class=data_class)
    view = owner.perform(op, passphrase_file)
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
    owner.perform(owner_ops.RemoveData(name=name), passphrase_file)
    render.out.print(f"Data '{name}' removed.")


# -- wallets -------------------------------------------------------------------------------


# Options of the 2-of-3 ceremonies (`wallet create --threshold`, `wallet refresh`).
JoinCodeFile = Annotated[
    Path | None,
    typer.Option(
        "--join-code-file",
        help="With a 2-of-3 ceremony: also write the agent's join code to this file (0600), for "
        "scripts that hand it to the agent's host.",
        dir_okay=False,
    ),
]
JoinKeyFile = Annotated[
    Path | None,
    typer.Option(
        "--join-key-file",
        help="With a 2-of-3 ceremony: a join key shared with the agent's host (made here the "
        "first time; copy it there, never to the vault's host), so its `keysafe mcp` joins by "
        "itself instead of taking a code.",
        dir_okay=False,
    ),
]
VaultUrl = Annotated[
    str | None,
    typer.Option(
        "--vault-url",
        help="With a 2-of-3 ceremony: the vault's server when it runs on another machine "
        "(https; the owner logs in with the vault passphrase). Default: this home's.",
    ),
]


@wallet_app.command("create")
def wallet_create(
    name: str,
    chain: Annotated[Chain, typer.Option("--chain", help="evm or solana.")],
    index: Annotated[
        int | None, typer.Option("--index", help="Account index to derive (default: the next one).")
    ] = None,
    threshold: Annotated[
        str | None,
        typer.Option(
            "--threshold",
            help="2-of-3: a wallet whose key never exists (agent, vault, recovery shares): "
            "FROST on Solana, DKLs23 threshold ECDSA on EVM.",
        ),
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="With --threshold: the agent holding share 1.")
    ] = None,
    recovery_file: Annotated[
        Path | None,
        typer.Option(
            "--recovery-file",
            help="With --threshold: where the recovery share goes (store it offline).",
            dir_okay=False,
        ),
    ] = None,
    join_code_file: JoinCodeFile = None,
    join_key_file: JoinKeyFile = None,
    vault_url: VaultUrl = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Create a wallet from the vault's recovery phrase and print its address (MetaMask / Phantom paths).

    With --threshold 2-of-3 (Solana: FROST; EVM: DKLs23 threshold ECDSA, which signs only
    complete transactions, nonce, gas and fees included): a distributed key generation among
    the agent (KEYSAFE_AGENT_TOKEN says which; share 1, a file encrypted under a share key only
    the agent's host keeps: KEYSAFE_AGENT_SHARE_KEY), this vault (share 2) and a recovery
    party (share 3, a file under a recovery passphrase: KEYSAFE_RECOVERY_PASSPHRASE or a prompt).
    Any two sign; the key itself never exists anywhere. Point `keysafe mcp` at the agent's file
    with KEYSAFE_AGENT_SHARE_FILE.

    Each party runs in its own process: this one is the recovery party, the running
    `keysafe serve` the vault's, and the agent joins from its host with the code this prints
    (`keysafe agent threshold join`); messages between them are end-to-end encrypted.
    """
    if threshold is not None:
        if threshold != "2-of-3":
            raise MalformedRequestError(
                f"'{threshold[:20]}' is not a supported threshold.",
                next_step="use --threshold 2-of-3.",
            )
        if not (agent and recovery_file):
            raise MalformedRequestError(
                "A 2-of-3 wallet needs --agent NAME and --recovery-file PATH.",
                next_step="add the missing options.",
            )
        from keysafe.cli import keygen  # the MPC code, only for this command

        made = keygen.create_apart(
            name,
            chain,
            agent,
            recovery_file,
            passphrase_file,
            join_code_file,
            join_key_file,
            vault_url,
        )
        keygen.show_created(made, json_out)
        return
    if agent or recovery_file or join_code_file or join_key_file or vault_url:
        raise MalformedRequestError(
            "--agent, --recovery-file, --join-code-file, --join-key-file and --vault-url go "
            "with --threshold 2-of-3.",
            next_step="add --threshold 2-of-3, or drop them for an ordinary wallet.",
        )
    view = owner.perform(
        owner_ops.CreateWallet(name=name, chain=chain, index=index), passphrase_file
    )
    if json_out:
        render.as_json({"name": view.name, "chain": view.chain, "address": view.address})
    else:
        render.out.print(f"Wallet '{view.name}' ({view.chain}, index {view.index}): {view.address}")


@wallet_app.command("refresh")
def wallet_refresh(
    name: str,
    recovery_file: Annotated[
        Path,
        typer.Option(
            "--recovery-file",
            help="The wallet's recovery file: rewritten in place; with --with agent,vault (the "
            "old one is lost) where the new one goes.",
            dir_okay=False,
        ),
    ],
    with_parties: Annotated[
        str,
        typer.Option(
            "--with",
            help="The two parties that deal: vault,recovery (refresh, or evict the agent), "
            "agent,vault (replace a lost recovery file) or agent,recovery (rebuild the vault's "
            "share). All three get new shares.",
        ),
    ] = "vault,recovery",
    join_code_file: JoinCodeFile = None,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            help="With --with agent,recovery on a vault that has no record of the wallet (a new "
            "vault): the agent holding share 1; the rest comes from the recovery file.",
        ),
    ] = None,
    join_key_file: JoinKeyFile = None,
    vault_url: VaultUrl = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Replace all three shares of a 2-of-3 wallet: any two parties reshare; same address.

    Every old share stops working with the new ones. Each party runs in its own process: this
    one is the recovery party, the running `keysafe serve` the vault's, and the agent joins from
    its host with the code this prints. To evict a compromised agent, rotate its token first
    (`keysafe agent rotate-token NAME`) and reshare --with vault,recovery: the agent's host
    joins with the new token and a new share key, and its old share file is useless. The
    recovery file is rewritten under the same passphrase (KEYSAFE_RECOVERY_PASSPHRASE or a
    prompt).
    """
    from keysafe.cli import keygen  # the MPC code, only for this command

    made = keygen.reshare_apart(
        name,
        with_parties,
        recovery_file,
        passphrase_file,
        join_code_file,
        agent,
        join_key_file,
        vault_url,
    )
    if json_out:
        render.as_json(made)
        return
    render.out.print(
        f"Wallet '{name}' reshared by {made['with']}; address unchanged: {made['address']}\n"
        f"recovery file: {made['recovery_file']} (new share; store it offline)",
        markup=False,
    )


@wallet_app.command("recover-sign")
def wallet_recover_sign(
    agent_share_file: Annotated[
        Path, typer.Option("--agent-share-file", help="The agent's share file.", dir_okay=False)
    ],
    recovery_file: Annotated[
        Path, typer.Option("--recovery-file", help="The wallet's recovery file.", dir_okay=False)
    ],
    message: Annotated[str | None, typer.Option("--message", help="Text to sign.")] = None,
    transaction: Annotated[
        str | None,
        typer.Option(
            "--transaction",
            help="A Solana transaction (base64), or a complete EVM one (JSON or unsigned RLP hex).",
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Sign with the agent's and the recovery share when the vault is gone (no vault needed).

    The agent's share key (KEYSAFE_AGENT_SHARE_KEY) opens its share, the recovery passphrase
    (KEYSAFE_RECOVERY_PASSPHRASE) the other; the two sign together and the key is never formed.
    The agent's share signs in a child process of its own, so no process holds both shares.
    Use it to move funds to a new wallet after losing the vault.
    """
    from keysafe.mpc import share_file
    from keysafe.service import threshold_offline

    if (message is None) == (transaction is None):
        raise MalformedRequestError(
            "Give exactly one of --message and --transaction.", next_step="pick what to sign."
        )
    agent_doc = share_file.read(agent_share_file, "agent share file")  # missing or bad: now
    recovery_doc = share_file.read(recovery_file, "recovery file")
    if share_file.agent_share_needs_key(agent_doc):
        token = inputs.passphrase(None, env=("KEYSAFE_AGENT_SHARE_KEY",), label="Agent share key")
    else:  # a share file from before share keys opens with the agent's token
        token = inputs.passphrase(
            None, env=("KEYSAFE_AGENT_TOKEN",), label="Agent token (ks_agent_…)"
        )
    recovery = inputs.passphrase(
        None, env=("KEYSAFE_RECOVERY_PASSPHRASE",), label="Recovery passphrase"
    )
    with token, recovery:
        out = threshold_offline.sign_without_vault(
            agent_share_file, token, recovery_doc, recovery,
            message=message.encode() if message is not None else None, transaction=transaction,
        )  # fmt: skip
    if json_out:
        render.as_json(out)
    else:
        for k, v in out.items():
            render.out.print(f"{k}: {v}", markup=False)


@wallet_app.command("import")
def wallet_import(
    name: str,
    chain: Annotated[Chain, typer.Option("--chain", help="evm or solana.")],
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Import a private key read from stdin (or a hidden prompt); it never leaves the vault again."""
    with inputs.stdin_secret("Private key") as key:
        op = owner_ops.ImportWallet(name=name, chain=chain, key=owner_ops.wire(key))
    view = owner.perform(op, passphrase_file)
    if json_out:
        render.as_json({"name": view.name, "chain": view.chain, "address": view.address})
    else:
        render.out.print(f"Wallet '{view.name}' ({view.chain}) imported: {view.address}")


@wallet_app.command("list")
def wallet_list(passphrase_file: PassphraseFile = None, json_out: JsonFlag = False) -> None:
    """List wallets and addresses; each address is re-derived from its key before it is shown."""
    views = owner.perform(owner_ops.ListWallets(), passphrase_file).wallets
    if json_out:
        render.as_json([v.model_dump(mode="json") for v in views])
        return
    render.table(
        "Wallets", ["name", "chain", "address", "source"],
        [(v.name, v.chain, v.address, v.source if v.index is None else f"{v.source} #{v.index}")
         for v in views],
        empty="No wallets yet. Create one with `keysafe wallet create NAME --chain evm`.",
    )  # fmt: skip
