"""`keysafe agent …`, `keysafe pause-all | resume-all`, `keysafe policy …`, `keysafe chain | asset …`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from keysafe.chains import Chain
from keysafe.cli import owner, render
from keysafe.cli.app import JsonFlag, PassphraseFile, SealYesFlag, app, home
from keysafe.errors import MalformedRequestError
from keysafe.policy.engine import Decision
from keysafe.policy.intent import intent_from_json
from keysafe.policy.registry import Registry
from keysafe.service import agents, owner_ops, policies, registry
from keysafe.service.context import open_vault

agent_app = typer.Typer(
    help="Agents: who may ask the vault, with what token or key.", no_args_is_help=True
)
policy_app = typer.Typer(
    help="Policies: what each agent may do (YAML; deny beats ask beats allow; no match is deny).",
    no_args_is_help=True,
)
chain_app = typer.Typer(help="The chain registry policies and signing use.", no_args_is_help=True)
asset_app = typer.Typer(
    help="The asset registry (symbols, token addresses, decimals).", no_args_is_help=True
)
app.add_typer(agent_app, name="agent")
app.add_typer(policy_app, name="policy")
app.add_typer(chain_app, name="chain")
app.add_typer(asset_app, name="asset")

PolicyFile = Annotated[Path, typer.Argument(help="Policy YAML file.", exists=True, dir_okay=False)]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MalformedRequestError(
            f"Cannot read {path} ({exc}).", next_step="check the file."
        ) from None


# -- agents ---------------------------------------------------------------------------------


@agent_app.command("add")
def agent_add(
    name: str,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Attach this policy file.", dir_okay=False)
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option("--public-key", help="Ed25519 public key (hex/base64) for signed requests."),
    ] = None,
    mcp_config: Annotated[
        str | None,
        typer.Option(
            "--mcp-config",  # given bare, it means stdio (cli/app.py _OPTIONAL_VALUES)
            metavar="[stdio|http]",
            help="Print only the MCP server entry (holds the token) on stdout: `stdio` (the "
            "default) launches `keysafe mcp` (Claude Desktop, Cursor); `http` points at a "
            "running `keysafe mcp --http` with the token in a header.",
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Register an agent and print its token ONCE (ks_agent_…). Store it where the agent runs.

    With --mcp-config the token is printed inside a ready `mcpServers` entry instead, and that
    JSON is all that goes to stdout (`> mcp.json` works): paste it into
    claude_desktop_config.json or .cursor/mcp.json.
    """
    if mcp_config not in (None, "stdio", "http"):
        raise MalformedRequestError(
            f"--mcp-config takes stdio or http, not {mcp_config[:20]!r}.",
            next_step="use `--mcp-config` (stdio) or `--mcp-config http`.",
        )
    added = owner.perform(
        owner_ops.AddAgent(
            name=name, public_key=public_key, policy=_read(policy) if policy else None,
            policy_source=str(policy) if policy else None,
        ),
        passphrase_file,
    )  # fmt: skip
    view, tok = added.agent, added.token
    snippet = _mcp_config(tok, mcp_config) if mcp_config and tok else None
    if json_out:
        render.as_json(
            view.to_dict() | {"token": tok} | ({"mcp_config": snippet} if snippet else {})
        )
    elif snippet is not None:
        render.note(f"Agent '{name}' added. Its MCP server entry (holds the token; shown once):")
        print(json.dumps(snippet, indent=2))  # plain JSON, alone on stdout: no markup, no wrapping
    else:
        render.out.print(
            f"Agent '{name}' added"
            + (
                f" with policy {view.policy_digest[:12]}."
                if view.policy_digest
                else " (no policy yet: it is denied everything)."
            )
        )
        if tok:
            render.out.print(f"Token (shown once): {tok}")


def _mcp_config(token: str, transport: str) -> dict[str, Any]:
    """The `mcpServers` entry MCP hosts read: over stdio they launch `keysafe mcp`; over HTTP
    they connect to a running `keysafe mcp --http` (its default port) with the token as bearer."""
    from keysafe.remote import MCP_HTTP_PORT, vault_url

    if transport == "http":
        entry: dict[str, Any] = {
            "type": "http",
            "url": f"http://127.0.0.1:{MCP_HTTP_PORT}/mcp",
            "headers": {"Authorization": f"Bearer {token}"},
        }
    else:
        exe = shutil.which("keysafe") or str(Path(sys.executable).with_name("keysafe"))
        entry = {
            "command": exe,
            "args": ["mcp"],
            "env": {"KEYSAFE_URL": vault_url(), "KEYSAFE_AGENT_TOKEN": token},
        }
    return {"mcpServers": {"keysafe": entry}}


@agent_app.command("list")
def agent_list(json_out: JsonFlag = False) -> None:
    """List agents: status, policy hash, last seen."""
    with open_vault(home()) as vault:
        views = agents.list_agents(vault)
    if json_out:
        render.as_json([v.to_dict() for v in views])
        return
    render.table(
        "Agents", ["name", "status", "auth", "policy", "created", "last seen"],
        [(v.name, v.status, v.auth, (v.policy_digest or "-")[:12], v.created_at[:19], (v.last_seen or "never")[:19]) for v in views],
        empty="No agents yet. Add one with `keysafe agent add NAME --policy FILE`.",
    )  # fmt: skip


def _status_cmd(name: str, status: agents.Status, passphrase_file: Path | None, verb: str) -> None:
    owner.perform(owner_ops.SetAgentStatus(name=name, status=status), passphrase_file)
    render.out.print(f"Agent '{name}' {verb}.")


@agent_app.command("pause")
def agent_pause(name: str, passphrase_file: PassphraseFile = None) -> None:
    """Refuse every request of this agent until `agent resume`."""
    _status_cmd(name, "paused", passphrase_file, "paused")


@agent_app.command("resume")
def agent_resume(name: str, passphrase_file: PassphraseFile = None) -> None:
    """Let a paused agent make requests again."""
    _status_cmd(name, "active", passphrase_file, "resumed")


@agent_app.command("revoke")
def agent_revoke(name: str, passphrase_file: PassphraseFile = None) -> None:
    """Revoke an agent now and for good: its token stops working at once."""
    _status_cmd(name, "revoked", passphrase_file, "revoked (final)")


@agent_app.command("rotate-token")
def agent_rotate(
    name: str, passphrase_file: PassphraseFile = None, json_out: JsonFlag = False
) -> None:
    """Give the agent a new token (shown once); the old one stops working."""
    tok = owner.perform(owner_ops.RotateToken(name=name), passphrase_file).token
    if json_out:
        render.as_json({"name": name, "token": tok})
    else:
        render.out.print(f"New token for '{name}' (shown once): {tok}")


@agent_app.command("invite")
def agent_invite(
    name: str,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="The new agent's policy (YAML); without it, it is denied everything."
        ),
    ] = None,
    relay: Annotated[
        str | None,
        typer.Option(
            "--relay",
            help="The relay the sidecar should connect to (default: the one `keysafe serve "
            "--relay` connects to).",
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Invite a remote agent: print a one-time invite (ksi_…, 10 minutes) for its sidecar.

    On the agent's host, `keysafe sidecar pair 'ksi_…'` shows four words. The pairing then
    appears in `keysafe approvals` (kind pairing) with the words it should show: approve it with
    `keysafe approve ID --words '…'` only if they are the same. Needs `keysafe serve --relay URL`
    running and unlocked on this home. The invite lets whoever holds it ask to pair, nothing more.
    """
    made = owner.perform_on_server(
        owner_ops.CreateInvite(
            agent=name, relay=relay, policy=_read(policy) if policy else None,
            policy_source=str(policy) if policy else None,
        ),
        passphrase_file, why="the server holds open invites and the relay link",
    )  # fmt: skip
    if json_out:
        render.as_json(made.model_dump())
        return
    render.note(
        f"Invite for agent '{name}' through {made.relay} (one use, {made.expires_in // 60} "
        "minutes). On the agent's host run:"
    )
    print(f"keysafe sidecar pair '{made.invite}'")


@agent_app.command("seal")
def agent_seal(
    passphrase_file: PassphraseFile = None,
    yes: SealYesFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """List agents, policies and settings without the owner's seal, then seal them.

    Each row that decides what an agent may do carries a seal under the owner's key. Rows written
    by a keysafe older than the seals, restored from an old backup, or written into the database
    file by someone else have none, and the vault refuses what they grant until you have seen and
    sealed them. Read the list: seal only what you recognise. Rows whose seal is broken (edited
    after sealing) are listed but never sealed: fix each as its message says. With --json and
    without --yes it only lists.
    """
    rows = owner.perform(owner_ops.ReviewSeals(), passphrase_file).rows
    open_rows = [r for r in rows if r.state != "broken"]
    if not json_out:
        if not rows:
            render.out.print("Every agent, policy and setting is sealed.")
            return
        for r in rows:
            render.out.print(f"{r.state:>9}  {r.summary}", markup=False, highlight=False)
    asked = open_rows and not yes and not json_out
    if asked and not typer.confirm(f"Seal the {len(open_rows)} unsealed row(s)?", default=False):
        raise typer.Exit(1)
    done = 0
    if open_rows and (yes or not json_out):
        # Each row carries the fingerprint it was shown with: one changed in between stays open.
        done = owner.perform(owner_ops.SealRows(rows=open_rows), passphrase_file).sealed
    if json_out:
        render.as_json({"rows": [r.to_dict() for r in rows], "sealed": done})
    else:
        render.out.print(f"Sealed {done} row(s).")
    if any(r.state == "broken" for r in rows):
        raise typer.Exit(1)


@app.command("pause-all")
def pause_all(passphrase_file: PassphraseFile = None) -> None:
    """Kill switch: deny every agent request until `keysafe resume-all`."""
    owner.perform(owner_ops.PauseAll(paused=True), passphrase_file)
    render.out.print("All agents paused: every agent request is denied until `keysafe resume-all`.")


@app.command("resume-all")
def resume_all(passphrase_file: PassphraseFile = None) -> None:
    """Lift the kill switch set by `keysafe pause-all`."""
    owner.perform(owner_ops.PauseAll(paused=False), passphrase_file)
    render.out.print("Agents resumed (each agent's own pause still applies).")


# -- policies -------------------------------------------------------------------------------


@policy_app.command("example")
def policy_example() -> None:
    """Print a commented example policy to start from: keysafe policy example > shopper.yaml"""
    sys.stdout.write(policies.example())


@policy_app.command("set")
def policy_set(agent: str, file: PolicyFile, passphrase_file: PassphraseFile = None) -> None:
    """Attach FILE as AGENT's policy. A policy with lint errors is refused."""
    done = owner.perform(
        owner_ops.SetPolicy(agent=agent, text=_read(file), source=str(file)), passphrase_file
    )
    for w in done.warnings:
        render.out.print(f"warning: {('rule ' + repr(w.rule) + ' ') if w.rule else ''}{w.message}")
    render.out.print(f"Policy {done.digest[:12]} set for agent '{agent}' ({done.rules} rules).")


@policy_app.command("show")
def policy_show(agent: str, json_out: JsonFlag = False) -> None:
    """Print AGENT's policy as set, with its hash."""
    with open_vault(home()) as vault:
        view = policies.show_policy(vault, agent)
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
    """Check a policy file: errors (exit 1) and warnings (exit 0). Uses this vault's registry if any."""
    text = _read(file)
    h = home()
    if h.exists():
        with open_vault(h) as vault:
            _, report = policies.lint_text(vault, text, now=vault.clock(), source=str(file))
    else:
        from datetime import UTC, datetime

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
            f"  {w.rule} {w.window}: used {w.used} of {w.limit} {unit}, this request {w.requested}, left {w.left} [{mark}]",
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
    Example request: {"action": "evm.transfer", "chain": "base", "wallet": "main", "asset": "USDC", "amount": "12.5", "to": "0x1111…"}
    """
    raw_text = sys.stdin.read() if str(request) == "-" else _read(request)
    try:
        raw = json.loads(raw_text)
    except ValueError as exc:
        raise MalformedRequestError(
            f"The request file is not JSON ({exc.msg} at line {exc.lineno}).",  # type: ignore[attr-defined]
            next_step="write one JSON object with at least an 'action'.",
        ) from None
    intent = intent_from_json(raw, source="the request file")
    with open_vault(home()) as vault:
        decision = policies.check(vault, agent, intent)
    if json_out:
        render.as_json(decision.to_dict())
    else:
        _print_decision(decision)
    raise typer.Exit({"allow": 0, "ask": 3, "deny": 4}[decision.outcome])


# -- registry -------------------------------------------------------------------------------


@chain_app.command("add")
def chain_add(
    name: str,
    chain_id: Annotated[int | None, typer.Option("--chain-id", help="EVM chain id.")] = None,
    rpc: Annotated[str | None, typer.Option("--rpc", help="JSON-RPC URL.")] = None,
    family: Annotated[str, typer.Option("--family", help="evm or solana.")] = "evm",
    max_fee: Annotated[
        str | None,
        typer.Option(
            "--max-fee",
            help="Fee ceiling per transaction in the chain's native coin, e.g. 0.02 "
            "(default: the built-in chain's, else 0.05 ETH / 0.01 SOL).",
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Add (or update) a chain: keysafe chain add arbitrum --chain-id 42161 --rpc https://… --max-fee 0.02"""
    if family not in ("evm", "solana"):
        raise MalformedRequestError(
            "--family is evm or solana.", next_step="pass --family evm or --family solana."
        )
    op = owner_ops.AddChain(
        name=name, family=Chain(family), chain_id=chain_id, rpc=rpc, max_fee=max_fee
    )
    info = owner.perform(op, passphrase_file)
    render.out.print(
        f"Chain '{info.name}' registered (fee ceiling {info.max_fee} {info.native} per transaction)."
    )


def _registry() -> Registry:
    """This vault's registry, or the built-in one when there is no vault here."""
    h = home()
    if not h.exists():
        return Registry.builtin()
    with open_vault(h) as vault:
        return registry.registry(vault)


@chain_app.command("list")
def chain_list(json_out: JsonFlag = False) -> None:
    """List built-in and added chains."""
    rows = [
        {
            "name": c.name,
            "family": c.family,
            "chain_id": c.chain_id,
            "rpc": c.rpc,
            "builtin": c.builtin,
            "max_fee": c.fee_ceiling_text,
            "native": c.native,
        }
        for c in _registry().chains
    ]
    if json_out:
        render.as_json(rows)
        return
    render.table("Chains", ["name", "family", "chain id", "rpc", "max fee", "built in"],
                 [(r["name"], r["family"], r["chain_id"], r["rpc"], f"{r['max_fee']} {r['native']}",
                   "yes" if r["builtin"] else "no") for r in rows], empty="")  # fmt: skip


@asset_app.command("add")
def asset_add(
    symbol: str,
    chain: Annotated[str, typer.Option("--chain", help="Chain name or id.")],
    address: Annotated[str, typer.Option("--address", help="Token contract / mint address.")],
    decimals: Annotated[int, typer.Option("--decimals", help="Token decimals (USDC: 6).")],
    passphrase_file: PassphraseFile = None,
) -> None:
    """Add (or update) a token: keysafe asset add USDC --chain base --address 0x… --decimals 6"""
    op = owner_ops.AddAsset(symbol=symbol, chain=chain, address=address, decimals=decimals)
    info = owner.perform(op, passphrase_file)
    render.out.print(f"Asset {info.symbol} on {info.chain} registered ({info.decimals} decimals).")


@asset_app.command("list")
def asset_list(json_out: JsonFlag = False) -> None:
    """List built-in and added assets."""
    rows = [
        {
            "symbol": a.symbol,
            "chain": a.chain,
            "address": a.address,
            "decimals": a.decimals,
            "builtin": a.builtin,
        }
        for a in _registry().assets
    ]
    if json_out:
        render.as_json(rows)
        return
    render.table("Assets", ["symbol", "chain", "address", "decimals", "built in"],
                 [(r["symbol"], r["chain"], r["address"] or "(native)", r["decimals"], "yes" if r["builtin"] else "no") for r in rows], empty="")  # fmt: skip
