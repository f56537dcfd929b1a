"""`keysafe decode` (no vault needed) and `keysafe wallet sign-message` (the owner)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from keysafe.cli import owner, render
from keysafe.cli.app import JsonFlag, PassphraseFile, app, home
from keysafe.cli.record_cmds import wallet_app
from keysafe.errors import MalformedRequestError
from keysafe.service import decode as decoding
from keysafe.service.context import open_vault
from keysafe.service.registry import registry as vault_registry


@app.command()
def decode(
    source: Annotated[
        Path,
        typer.Argument(
            help="File with the transaction or typed data, or - for stdin.", allow_dash=True
        ),
    ],
    chain: Annotated[
        str | None,
        typer.Option("--chain", help="Chain name or id (must agree with the transaction)."),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Decode an EVM transaction (JSON or unsigned RLP hex), EIP-712 typed data or a Solana
    transaction (base64) into what it would do, with a one-line summary. Needs no vault."""
    if str(source) == "-":
        text = sys.stdin.read()
    else:
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MalformedRequestError(
                f"Cannot read {source} ({exc}).", next_step="check the path."
            ) from None
    h = home()
    reg = None
    if h.exists():
        with open_vault(h) as vault:
            reg = vault_registry(vault)
    intent = decoding.decode_payload(text, chain=chain, registry=reg)
    view = decoding.intent_view(intent, reg)
    if json_out:
        render.as_json(view)
        return
    render.out.print(f"[bold]{view['summary'] or view['action']}[/bold]")
    for key, value in view.items():
        if key != "summary" and value is not None:
            render.out.print(f"  {key:>9}: {value}", markup=False, highlight=False)


def _sign_with_recovery(
    name: str, message: str, recovery_file: Path, passphrase_file: Path | None, json_out: bool
) -> None:
    """The owner's 2-of-3 signature as two processes: the recovery share signs here, the
    vault's share in the running server; neither process ever holds both."""
    from keysafe.cli import inputs
    from keysafe.mpc import share_file
    from keysafe.service import threshold_owner
    from keysafe.service.owner_signing import ThresholdCommit, ThresholdCosign, ThresholdExchange

    doc = share_file.read(recovery_file, "recovery file")
    why = "the vault's share signs there and the recovery share here, never both in one process"
    owner.require_server(why)  # before the recovery passphrase is asked for
    recovery = inputs.passphrase(
        None, env=("KEYSAFE_RECOVERY_PASSPHRASE",), label="Recovery passphrase"
    )
    with recovery:  # a wrong passphrase or an altered file fails before the vault commits
        share = share_file.open_recovery_share(doc, recovery)
    answer = owner.perform_on_server(ThresholdCommit(wallet=name), passphrase_file, why=why)
    if answer.protocol == "dkls23":  # an EVM wallet: three steps, the vault hashes the text too
        state, first = threshold_owner.recovery_start(
            name, answer.model_dump(), doc, share, message
        )
        exchange = ThresholdExchange(
            wallet=name, message=message, session_id=first["session_id"],
            round1=first["round1"], verifying_share=first["verifying_share"],
        )  # fmt: skip
        rounds = owner.perform_on_server(exchange, passphrase_file, why=why)
        part = threshold_owner.recovery_finish(state, rounds.model_dump())
        cosign = ThresholdCosign(
            wallet=name, message=message, session_id=part["session_id"], round2=part["round2"],
            round3=part["round3"],
        )  # fmt: skip
    else:
        fields = threshold_owner.recovery_part(
            name, answer.model_dump(), doc, share.key, message.encode()
        )
        cosign = ThresholdCosign(
            wallet=name, message=message, session_id=fields["session_id"],
            hiding=fields["hiding"], binding=fields["binding"], share=fields["share"],
        )  # fmt: skip
    del share
    done = owner.perform_on_server(cosign, passphrase_file, why=why)
    if json_out:
        render.as_json(
            {"signature": done.signature, "address": done.address, "signers": "user+recovery"}
        )
    else:
        render.out.print(
            f"signer:    {done.address} (2-of-3: vault + recovery)\nsignature: {done.signature}",
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
    if json_out:
        render.as_json({"signature": result.signature, "address": result.address})
    else:
        render.out.print(
            f"{result.summary}\nsigner:    {result.address}\nsignature: {result.signature}",
            markup=False,
        )
