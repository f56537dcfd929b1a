"""`keysafe policy …`: write, lint, show and dry-run the policies that say what each agent may
do."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from keysafe.cli import owner, render
from keysafe.cli.home import home, read_vault
from keysafe.cli.inputs import read_text
from keysafe.cli.options import JsonFlag, PassphraseFile
from keysafe.errors import MalformedRequestError
from keysafe.policy.engine import Decision
from keysafe.policy.intent import intent_from_json
from keysafe.service import owner_ops, policies
from keysafe.service.context import open_vault

policy_app = typer.Typer(
    help="Policies: what each agent may do (YAML; deny beats ask beats allow; no match is deny).",
    no_args_is_help=True,
)

PolicyFile = Annotated[Path, typer.Argument(help="Policy YAML file.", exists=True, dir_okay=False)]


@policy_app.command("example")
def policy_example() -> None:
    """Print a commented example policy to start from: keysafe policy example > shopper.yaml"""
    sys.stdout.write(policies.example())


@policy_app.command("set")
def policy_set(agent: str, file: PolicyFile, passphrase_file: PassphraseFile = None) -> None:
    """Attach FILE as AGENT's policy. A policy with lint errors is refused."""
    done = owner.perform(
        owner_ops.SetPolicy(agent=agent, text=read_text(file), source=str(file)), passphrase_file
    )
    for w in done.warnings:
        render.out.print(f"warning: {('rule ' + repr(w.rule) + ' ') if w.rule else ''}{w.message}")
    render.out.print(f"Policy {done.digest[:12]} set for agent '{agent}' ({done.rules} rules).")


@policy_app.command("show")
def policy_show(agent: str, json_out: JsonFlag = False) -> None:
    """Print AGENT's policy as set, with its hash."""
    view = read_vault(lambda vault: policies.show_policy(vault, agent))
    if json_out:
        render.as_json(
            None
            if view is None
            else {
                "agent": view.agent,
                "hash": view.digest,
                "set_at": view.set_at,
                "source": view.source,
            }
        )
        return
    if view is None:
        render.out.print(f"Agent '{agent}' has no policy: every request is denied.")
        return
    render.out.print(f"# policy {view.digest} set {view.set_at}")
    render.out.print(view.source, markup=False, highlight=False)


@policy_app.command("lint")
def policy_lint(file: PolicyFile, json_out: JsonFlag = False) -> None:
    """Check a policy file: errors (exit 1) and warnings (exit 0). Uses this vault's registry if
    any."""
    text = read_text(file)
    h = home()
    if h.exists():
        with open_vault(h) as vault:
            _, report = policies.lint_text(vault, text, now=vault.clock(), source=str(file))
    else:
        _, report = policies.lint_text(None, text, now=datetime.now(UTC), source=str(file))
    if json_out:
        render.as_json(report.to_dict())
    else:
        for f in report.findings:
            render.out.print(f"{f.level}: {f}", markup=False)
        render.out.print(
            f"{file}: {len(report.errors)} errors, {len(report.warnings)} warnings"
            + ("" if report.errors else " — ok to set")
        )
    if report.errors:
        raise typer.Exit(1)


def _print_decision(d: Decision) -> None:
    color = {"allow": "green", "ask": "yellow", "deny": "red"}[d.outcome]
    render.out.print(
        f"[bold {color}]{d.outcome.upper()}[/bold {color}]"
        + (f"  rule: {d.rule}" if d.rule else "")
        + (f"  code: {d.code}" if d.code else "")
    )
    render.out.print(d.reason, markup=False)
    if d.matched:
        render.out.print("matched rules: " + ", ".join(d.matched), markup=False)
    for w in d.windows:
        unit = w.asset or "actions"
        mark = "ok" if w.ok else "OVER"
        render.out.print(
            f"  {w.rule} {w.window}: used {w.used} of {w.limit} {unit}, "
            f"this request {w.requested}, left {w.left} [{mark}]",
            markup=False,
        )


@policy_app.command("check")
def policy_check(
    agent: str,
    request: Annotated[
        Path, typer.Argument(help="Decoded request JSON file, or - for stdin.", allow_dash=True)
    ],
    json_out: JsonFlag = False,
) -> None:
    """Dry-run a decoded request against AGENT's policy and state; reserves and records nothing.

    Exit code: 0 allow, 3 ask, 4 deny, 1 malformed request file.
    Example request: {"action": "evm.transfer", "chain": "base", "wallet": "main", "asset": "USDC",
    "amount": "12.5", "to": "0x1111…"}
    """
    raw_text = sys.stdin.read() if str(request) == "-" else read_text(request)
    try:
        raw = json.loads(raw_text)
    except json.JSONDecodeError as exc:
        raise MalformedRequestError(
            f"The request file is not JSON ({exc.msg} at line {exc.lineno}).",
            next_step="write one JSON object with at least an 'action'.",
        ) from None
    intent = intent_from_json(raw, source="the request file")
    decision = read_vault(lambda vault: policies.check(vault, agent, intent))
    if json_out:
        render.as_json(decision.to_dict())
    else:
        _print_decision(decision)
    raise typer.Exit({"allow": 0, "ask": 3, "deny": 4}[decision.outcome])
