"""`keysafe demo`: the main job on the embedded default, on a throwaway vault in a temp dir."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from keysafe.cli import render
from keysafe.cli.app import app
from keysafe.errors import WrongPassphraseError
from keysafe.service import audit, backup, credentials, data, vault_admin, wallets
from keysafe.service.context import Home, open_vault
from keysafe.service.models import Attachment, Chain, DataClass, SecretBytes


def _step(n: int, text: str) -> None:
    render.out.print(f"\n[bold cyan]{n}.[/bold cyan] {text}")


@app.command()
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the demo vault and print where it is.")
    ] = False,
) -> None:
    """Walk through keysafe on a throwaway vault: init, a credential, wallets, backup, audit verify.

    Nothing touches your real vault; no prompts; the temp dir is removed afterwards.
    """
    tmp = Path(tempfile.mkdtemp(prefix="keysafe-demo-"))
    try:
        _run(tmp)
    finally:
        if keep:
            render.out.print(
                f"\nDemo vault kept in {tmp / 'home'} (passphrase in {tmp / 'passphrase'})."
            )
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def _run(tmp: Path) -> None:
    home = Home(tmp / "home")
    pw_text = "demo-" + secrets.token_urlsafe(12)
    (tmp / "passphrase").write_text(pw_text)
    pw = SecretBytes(bytearray(pw_text.encode()))

    render.out.print(
        "[bold]keysafe demo[/bold]: agents use keys, never hold them. Throwaway vault in "
        + str(home.path)
    )

    _step(
        1,
        "Create the vault: Argon2id wraps a master key derived from a new 24-word recovery phrase.",
    )
    vault, phrase = vault_admin.init_vault(home, pw)
    render.out.print(
        f"   vault id {vault.vault_id}; recovery phrase shown once ({len(bytes(phrase.reveal()).split())} words, not repeated here)"
    )

    _step(
        2,
        "Store an API key for api.example.com. It is envelope-encrypted; nobody can list its value.",
    )
    canary = SecretBytes(bytearray(b"sk-demo-" + secrets.token_hex(8).encode()))
    credentials.add_credential(
        vault, "example-api", canary, hosts=["api.example.com"], attach=Attachment.bearer()
    )
    for c in credentials.list_credentials(vault):
        render.out.print(
            f"   {c.name}: hosts {c.hosts}, attached as {c.attach['type']} {c.attach['name']}"
        )

    _step(3, "Store personal data an agent may only read with the owner's approval.")
    data.set_data(
        vault,
        "profile.email",
        SecretBytes(bytearray(b'{"email": "owner@example.com"}')),
        data_class=DataClass.SENSITIVE,
    )
    render.out.print("   profile.email (sensitive, json)")

    _step(4, "Create wallets from the recovery phrase (MetaMask and Phantom derivation paths).")
    for name, chain in (("main", Chain.EVM), ("sol", Chain.SOLANA)):
        w = wallets.create_wallet(vault, name, chain)
        render.out.print(f"   {w.name:<5} {w.chain:<7} {w.address}")

    _step(5, "A wrong passphrase is refused (and counted: 5 in a row lock unlocking for 30 s).")
    vault.lock()
    try:
        vault.unlock(SecretBytes(bytearray(b"not the passphrase")))
    except WrongPassphraseError as exc:
        render.out.print(f"   refused: {exc.what}")
    vault.unlock(pw)

    _step(6, "Add an agent with the example policy and dry-run three payments on a Monday morning.")
    from importlib import resources

    from keysafe.policy.intent import Intent
    from keysafe.service import agents, policies

    example = (resources.files("keysafe.policy") / "example_policy.yaml").read_text(
        encoding="utf-8"
    )
    _, token = agents.add_agent(vault, "shopper")
    if token is not None:
        token.wipe()  # the demo never uses it; a real agent keeps it in its own config
    policies.set_policy(vault, "shopper", example, source="example policy")
    for amount in ("5", "12.5", "30"):
        intent = Intent.model_validate(
            {"action": "evm.transfer", "chain": "base", "asset": "USDC", "amount": amount,
             "to": "0x1111111111111111111111111111111111111111", "time": "2026-11-23T09:00:00Z"}
        )  # fmt: skip
        d = policies.check(vault, "shopper", intent)
        render.out.print(
            f"   {amount:>5} USDC → [bold]{d.outcome}[/bold] ({d.code or d.rule}): {d.reason}"
        )

    _step(
        7,
        "Back up everything, then rebuild the vault on an empty home from backup + recovery phrase.",
    )
    backup_file = tmp / "vault.ksbackup"
    header = backup.create_backup(vault, backup_file)
    vault.lock()
    home2 = Home(tmp / "rebuilt")
    rebuilt, _ = backup.restore_new(home2, backup_file, phrase, pw)
    with rebuilt:
        same = [w.address for w in wallets.list_wallets(rebuilt)]
    render.out.print(f"   backup held {header.records} records; rebuilt vault has wallets {same}")

    _step(8, "Verify the tamper-evident audit log (a SHA-256 hash chain over canonical JSON).")
    with open_vault(home) as v:
        report = audit.verify(v)
        entries = audit.list_entries(v)
    for e in entries:
        render.out.print(f"   #{e.seq:<2} {e.action:<16} {e.target:<28} {e.outcome}")
    render.out.print(f"   chain ok: {report.ok} ({report.entries} entries)")
    phrase.wipe()
    pw.wipe()
    render.out.print(
        "\n[bold green]Done.[/bold green] Next: `keysafe init` creates your own vault in ~/.keysafe."
    )
