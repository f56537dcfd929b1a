"""`keysafe wallet …`: EVM and Solana wallets whose keys never leave the vault."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel

from keysafe.chains import Chain
from keysafe.cli import inputs, owner, render
from keysafe.cli.options import JsonFlag, OwnerCeremony, PassphraseFile
from keysafe.errors import MalformedRequestError
from keysafe.service import owner_ops

Step = TypeVar("Step", bound=BaseModel)  # a step of an owner signature, sent to the server

wallet_app = typer.Typer(
    help="EVM and Solana wallets whose keys never leave the vault.", no_args_is_help=True
)


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


ChainOpt = Annotated[Chain, typer.Option("--chain", help="evm or solana.")]
AccountIndex = Annotated[
    int | None, typer.Option("--index", help="Account index to derive (default: the next one).")
]
Threshold = Annotated[
    str | None,
    typer.Option(
        "--threshold",
        help="2-of-3: a wallet whose key never exists (agent, vault, recovery shares): "
        "FROST on Solana, DKLs23 threshold ECDSA on EVM.",
    ),
]
ShareOneAgent = Annotated[
    str | None, typer.Option("--agent", help="With --threshold: the agent holding share 1.")
]
NewRecoveryFile = Annotated[
    Path | None,
    typer.Option(
        "--recovery-file",
        help="With --threshold: where the recovery share goes (store it offline).",
        dir_okay=False,
    ),
]


@wallet_app.command("create")
def wallet_create(
    name: str,
    chain: ChainOpt,
    index: AccountIndex = None,
    threshold: Threshold = None,
    agent: ShareOneAgent = None,
    recovery_file: NewRecoveryFile = None,
    join_code_file: JoinCodeFile = None,
    join_key_file: JoinKeyFile = None,
    vault_url: VaultUrl = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Create a wallet from the vault's recovery phrase and print its address (MetaMask / Phantom
    paths).

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
        agent, recovery_file = _two_of_three(threshold, agent, recovery_file)
        from keysafe.cli import keygen  # the MPC code, only for this command

        side = OwnerCeremony(
            recovery_file, passphrase_file, join_code_file, join_key_file, vault_url
        )
        keygen.show_created(keygen.create_apart(name, chain, agent, side), json_out)
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
    render.answer(
        {"name": view.name, "chain": view.chain, "address": view.address},
        f"Wallet '{view.name}' ({view.chain}, index {view.index}): {view.address}",
        json_out=json_out,
    )


def _two_of_three(
    threshold: str, agent: str | None, recovery_file: Path | None
) -> tuple[str, Path]:
    """The agent and the recovery file of `wallet create --threshold 2-of-3`, whose key
    generation this process joins as the recovery party (cli/keygen.py).

    Raises:
        MalformedRequestError: another threshold, or --agent or --recovery-file missing.
    """
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
    return agent, recovery_file


RefreshRecoveryFile = Annotated[
    Path,
    typer.Option(
        "--recovery-file",
        help="The wallet's recovery file: rewritten in place; with --with agent,vault (the "
        "old one is lost) where the new one goes.",
        dir_okay=False,
    ),
]
ResharingParties = Annotated[
    str,
    typer.Option(
        "--with",
        help="The two parties that deal: vault,recovery (refresh, or evict the agent), "
        "agent,vault (replace a lost recovery file) or agent,recovery (rebuild the vault's "
        "share). All three get new shares.",
    ),
]
RebuildAgent = Annotated[
    str | None,
    typer.Option(
        "--agent",
        help="With --with agent,recovery on a vault that has no record of the wallet (a new "
        "vault): the agent holding share 1; the rest comes from the recovery file.",
    ),
]


@wallet_app.command("refresh")
def wallet_refresh(
    name: str,
    recovery_file: RefreshRecoveryFile,
    with_parties: ResharingParties = "vault,recovery",
    join_code_file: JoinCodeFile = None,
    agent: RebuildAgent = None,
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

    side = OwnerCeremony(recovery_file, passphrase_file, join_code_file, join_key_file, vault_url)
    made = keygen.reshare_apart(name, with_parties, side, agent)
    render.answer(
        made.model_dump(by_alias=True),
        f"Wallet '{name}' reshared by {made.with_}; address unchanged: {made.address}\n"
        f"recovery file: {made.recovery_file} (new share; store it offline)",
        json_out=json_out,
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
    recovery = inputs.recovery_passphrase()
    with token, recovery:
        out = threshold_offline.sign_without_vault(
            agent_share_file,
            token,
            recovery_doc,
            recovery,
            message=message.encode() if message is not None else None,
            transaction=transaction,
        ).model_dump(exclude_none=True)
    if json_out:
        render.as_json(out)
    else:
        for k, v in out.items():
            render.out.print(f"{k}: {v}", markup=False)


@wallet_app.command("import")
def wallet_import(
    name: str,
    chain: ChainOpt,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Import a private key read from stdin (or a hidden prompt); it never leaves the vault
    again."""
    with inputs.stdin_secret("Private key") as key:
        op = owner_ops.ImportWallet(name=name, chain=chain, key=owner_ops.wire(key))
    view = owner.perform(op, passphrase_file)
    render.answer(
        {"name": view.name, "chain": view.chain, "address": view.address},
        f"Wallet '{view.name}' ({view.chain}) imported: {view.address}",
        json_out=json_out,
    )


@wallet_app.command("list")
def wallet_list(passphrase_file: PassphraseFile = None, json_out: JsonFlag = False) -> None:
    """List wallets and addresses; each address is re-derived from its key before it is shown."""
    views = owner.perform(owner_ops.ListWallets(), passphrase_file).wallets
    render.listing(
        "Wallets",
        ["name", "chain", "address", "source"],
        [
            (v.name, v.chain, v.address, v.source if v.index is None else f"{v.source} #{v.index}")
            for v in views
        ],
        empty="No wallets yet. Create one with `keysafe wallet create NAME --chain evm`.",
        json_value=[v.model_dump(mode="json") for v in views],
        json_out=json_out,
    )


def _sign_with_recovery(
    name: str, message: str, recovery_file: Path, passphrase_file: Path | None, json_out: bool
) -> None:
    """The owner's 2-of-3 signature as two processes: the recovery share signs here, the
    vault's share in the running server; neither process ever holds both."""
    from keysafe.mpc import share_file
    from keysafe.service import threshold_owner
    from keysafe.service.owner_signing import ThresholdCommit, ThresholdCosign, ThresholdExchange

    doc = share_file.read(recovery_file, "recovery file")
    why = "the vault's share signs there and the recovery share here, never both in one process"
    owner.require_server(why)  # before the recovery passphrase is asked for
    recovery = inputs.recovery_passphrase()
    with recovery:  # a wrong passphrase or an altered file fails before the vault commits
        share = share_file.open_recovery_share(doc, recovery)
    answer = owner.perform_on_server(ThresholdCommit(wallet=name), passphrase_file, why=why)
    if answer.protocol == "dkls23":  # an EVM wallet: three steps, the vault hashes the text too
        state, first = threshold_owner.recovery_start(
            name, answer.model_dump(), doc, share, message
        )
        exchange = _recovery_step(ThresholdExchange, name, message, first)
        rounds = owner.perform_on_server(exchange, passphrase_file, why=why)
        part = threshold_owner.recovery_finish(state, rounds.model_dump())
    else:
        part = threshold_owner.recovery_part(
            name, answer.model_dump(), doc, share.key, message.encode()
        )
    del share
    cosign = _recovery_step(ThresholdCosign, name, message, part)
    done = owner.perform_on_server(cosign, passphrase_file, why=why)
    _show_cosigned(done.address, done.signature, json_out=json_out)


def _recovery_step(op: type[Step], wallet: str, message: str, part: dict[str, str]) -> Step:
    """The server's next step of an owner signature over `message`, carrying the recovery
    share's `part` of it (its fields are named as the op names them)."""
    return op.model_validate({"wallet": wallet, "message": message, **part})


def _show_cosigned(address: str, signature: str, *, json_out: bool) -> None:
    """The vault's and the recovery share's signature, for a script or a person."""
    render.answer(
        {"signature": signature, "address": address, "signers": "user+recovery"},
        f"signer:    {address} (2-of-3: vault + recovery)\nsignature: {signature}",
        json_out=json_out,
        markup=False,
    )


@wallet_app.command("sign-message")
def wallet_sign_message(
    name: str,
    message: Annotated[
        str, typer.Argument(help="The message text (EIP-191 for EVM, raw UTF-8 bytes for Solana).")
    ],
    recovery_file: Annotated[
        Path | None,
        typer.Option(
            "--recovery-file",
            help="For a 2-of-3 wallet: the recovery share, which signs together with the vault's.",
            dir_okay=False,
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Sign a message as the owner: EIP-191 personal_sign for EVM, Ed25519 for Solana.

    A 2-of-3 wallet needs a second share: --recovery-file (its passphrase from
    KEYSAFE_RECOVERY_PASSPHRASE or a prompt); the vault alone cannot sign. The recovery share
    signs in this process and the vault's in `keysafe serve`, which must be running and
    unlocked: no process ever holds both shares.
    """
    if recovery_file is not None:
        _sign_with_recovery(name, message, recovery_file, passphrase_file, json_out)
        return
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service.owner_signing import SignMessage

    result = owner.perform(SignMessage(wallet=name, message=message), passphrase_file)
    render.answer(
        {"signature": result.signature, "address": result.address},
        f"{result.summary}\nsigner:    {result.address}\nsignature: {result.signature}",
        json_out=json_out,
        markup=False,
    )
