"""`keysafe audit [--since …] [--json]`, `keysafe audit verify` and `keysafe audit seal`."""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from keysafe.audit.record import AuditEntry, ChainReport
from keysafe.cli import render
from keysafe.cli.home import home, read_vault
from keysafe.cli.options import JsonFlag, PassphraseFile, SealYesFlag
from keysafe.cli.unlocking import unlock
from keysafe.errors import IntegrityError, MalformedRequestError
from keysafe.service import audit, sealed_state, vault_admin
from keysafe.service.context import open_vault
from keysafe.service.sealed_state import StateRow
from keysafe.service.vault_admin import KmsKind
from keysafe.vault.vault import Vault

audit_app = typer.Typer(
    help="The tamper-evident audit log: read it, or verify its hash chain.",
    invoke_without_command=True,
)

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _since(text: str | None) -> str | None:
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if m:
        when = datetime.now(UTC) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    else:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise MalformedRequestError(
                f"'{text[:40]}' is not a time.",
                next_step="use an ISO time (2026-11-23T09:00:00Z), a date, or a duration like "
                "30m, 24h, 7d.",
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@audit_app.callback()
def audit_list(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only entries from this time (ISO) or this long ago (24h)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Only the newest N entries.", min=1)
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Show the audit log, newest last. Values of secrets never appear; identifiers are HMACs."""
    if ctx.invoked_subcommand is not None:
        return
    entries = read_vault(lambda vault: audit.list_entries(vault, since=_since(since), limit=limit))
    if json_out:
        render.as_json([e.to_dict() for e in entries])
        return
    if not entries:
        render.out.print("No audit entries match.")
        return
    for e in entries:  # one line each, never truncated: the log is evidence
        _print_entry(e)


def _print_entry(e: AuditEntry) -> None:
    details = json.dumps(e.details, separators=(",", ":"), sort_keys=True)
    render.out.print(
        f"{e.seq:>6}  {e.time[:23]}Z  {e.actor}  {e.action}  {e.target}  {e.outcome}  {details}",
        markup=False,
        highlight=False,
    )


@audit_app.command("verify")
def audit_verify(
    passphrase_file: PassphraseFile = None,
    unkeyed: Annotated[
        bool,
        typer.Option("--unkeyed", help="Check only the hash chain; do not ask for the passphrase."),
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Check the whole audit log; name the first edited, missing or reordered entry (exit 1).

    With the passphrase (KEYSAFE_PASSPHRASE, --passphrase-file or the prompt) it also checks the
    owner's keyed seals, which catch a chain rewritten from scratch; --unkeyed skips that.
    """
    with open_vault(home()) as vault:
        if not unkeyed and _can_unlock(vault, passphrase_file):
            unlock(vault, passphrase_file)
        report = audit.verify(vault)
        # With the key, the sealed state (agents, policies, settings) is checked too: a policy
        # edited in the file is as much tampering as an edited entry.
        state = sealed_state.review(vault) if report.keyed else []
    if json_out:
        render.as_json(report.to_dict() | {"state": [r.model_dump() for r in state]})
        if not report.ok or state:
            raise typer.Exit(1)
        return
    if report.ok and not state:
        how = (
            "hash chain, owner's seals, and every agent, policy and setting sealed"
            if report.keyed
            else "hash chain only (unkeyed)"
        )
        render.out.print(f"Audit log verified: {report.entries} entries, all intact ({how}).")
        return
    raise _failure(report, state)


def _can_unlock(vault: Vault, passphrase_file: Path | None) -> bool:
    """Whether the passphrase can be had without surprising a script (a file, the environment,
    a person at the terminal), or the vault needs none."""
    return bool(
        passphrase_file
        or os.environ.get("KEYSAFE_PASSPHRASE")
        or sys.stdin.isatty()
        # a KMS vault unlocks with no person to ask: keyed unless --unkeyed says otherwise
        or vault_admin.key_provider(vault).kind is not KmsKind.LOCAL
    )


def _failure(report: ChainReport, state: list[StateRow]) -> IntegrityError:
    """The error for a verification that failed: the sealed state when the chain is intact,
    else the entries the owner has not sealed, else tampering."""
    if report.ok:
        broken = [r.summary for r in state if r.state == "broken"]
        if broken:
            return IntegrityError(
                "The audit log is intact, but rows were edited outside keysafe: "
                f"{'; '.join(broken[:5])}.",
                next_step="keep this copy as evidence; `keysafe agent seal` lists them with what "
                "to do.",
            )
        return IntegrityError(
            f"The audit log is intact, but {len(state)} agent, policy or setting row(s) have no "
            "owner's seal (written by an older keysafe, restored from an old backup, or edited).",
            next_step="run `keysafe agent seal` to see them, and seal them if you recognise them.",
        )
    if report.unsealed:
        return IntegrityError(
            f"The audit log has entries the owner has not sealed: {report.problem} (first: seq "
            f"{report.first_bad_seq}).",
            next_step="run `keysafe audit seal` to see them; seal them if you recognise them, and "
            "treat any you do not as evidence of tampering.",
            first_bad_seq=report.first_bad_seq or 0,
        )
    return IntegrityError(
        f"The audit log was tampered with: {report.problem} "
        f"(first bad entry: seq {report.first_bad_seq}).",
        next_step="keep this copy as evidence, and compare with a backup "
        "(`keysafe backup restore` into an empty home).",
        first_bad_seq=report.first_bad_seq or 0,
    )


@audit_app.command("seal")
def audit_seal(
    passphrase_file: PassphraseFile = None,
    yes: SealYesFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """List the audit entries the owner has not sealed, then seal them with the owner's key.

    Entries are written without the owner's seal while the vault is locked (failed unlocks,
    refused requests, recovery after a crash) — or by someone editing the database file. Keyed
    `audit verify` fails until you have seen and sealed them. Read the list: seal only what you
    recognise; keep a copy of the home as evidence if anything looks forged.
    """
    with open_vault(home()) as vault:
        unlock(vault, passphrase_file)
        pending = audit.unsealed(vault)
        if not pending:
            render.answer(
                {"unsealed": [], "sealed": 0}, "Every audit entry is sealed.", json_out=json_out
            )
            return
        if not json_out:
            render.out.print(f"{len(pending)} audit entries are not sealed:")
            for e in pending:
                _print_entry(e)
        if not yes and not typer.confirm("Seal these entries?", default=False):
            raise typer.Exit(1)
        done = audit.seal(vault, [e.seq for e in pending])
    render.answer(
        {"unsealed": [e.to_dict() for e in pending], "sealed": done},
        f"Sealed {done} entries.",
        json_out=json_out,
    )
