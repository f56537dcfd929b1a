"""`keysafe agent …` and `keysafe pause-all | resume-all`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from keysafe.cli import owner, render
from keysafe.cli.agent_threshold_cmds import threshold_app
from keysafe.cli.home import read_vault
from keysafe.cli.inputs import read_text
from keysafe.cli.options import JsonFlag, PassphraseFile, SealYesFlag
from keysafe.errors import MalformedRequestError
from keysafe.service import agents, owner_ops

agent_app = typer.Typer(
    help="Agents: who may ask the vault, with what token or key.", no_args_is_help=True
)
agent_app.add_typer(threshold_app, name="threshold")
# `keysafe pause-all | resume-all`, mounted at the top by cli/app.py.
commands = typer.Typer()


McpConfig = Annotated[
    str | None,
    typer.Option(
        "--mcp-config",  # given bare, it means stdio (cli/app.py _OPTIONAL_VALUES)
        metavar="[stdio|http]",
        help="Print only the MCP server entry (holds the token) on stdout: `stdio` (the "
        "default) launches `keysafe mcp` (Claude Desktop, Cursor); `http` points at a "
        "running `keysafe mcp --http` with the token in a header.",
    ),
]


# -- agents ---------------------------------------------------------------------------------


@agent_app.command("add")
def agent_add(
    name: str,
    policy: InvitePolicy = None,
    public_key: Annotated[
        str | None,
        typer.Option("--public-key", help="Ed25519 public key (hex/base64) for signed requests."),
    ] = None,
    mcp_config: McpConfig = None,
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
    text, source = _policy_file(policy)
    added = owner.perform(
        owner_ops.AddAgent(name=name, public_key=public_key, policy=text, policy_source=source),
        passphrase_file,
    )
    view, tok = added.agent, added.token
    snippet = _mcp_config(tok, mcp_config) if mcp_config and tok else None
    if json_out:
        render.as_json(
            view.model_dump(mode="json")
            | {"token": tok}
            | ({"mcp_config": snippet} if snippet else {})
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


def _policy_file(path: Path | None) -> tuple[str | None, str | None]:
    """The policy a new agent starts with: the YAML text of `path`, and where it came from (for
    the audit log); (None, None) without --policy.

    Raises:
        MalformedRequestError: the file cannot be read as UTF-8 text.
    """
    if path is None:
        return None, None
    return read_text(path), str(path)


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
    views = read_vault(agents.list_agents)
    render.listing(
        "Agents",
        ["name", "status", "auth", "policy", "created", "last seen"],
        [
            (
                v.name,
                v.status,
                v.auth,
                (v.policy_digest or "-")[:12],
                v.created_at[:19],
                (v.last_seen or "never")[:19],
            )
            for v in views
        ],
        empty="No agents yet. Add one with `keysafe agent add NAME --policy FILE`.",
        json_value=[v.model_dump(mode="json") for v in views],
        json_out=json_out,
    )


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
    render.answer(
        {"name": name, "token": tok},
        f"New token for '{name}' (shown once): {tok}",
        json_out=json_out,
    )


InvitePolicy = Annotated[
    Path | None, typer.Option("--policy", help="Attach this policy file.", dir_okay=False)
]
InviteRelay = Annotated[
    str | None,
    typer.Option(
        "--relay",
        help="The relay the sidecar should connect to (default: the one `keysafe serve "
        "--relay` connects to).",
    ),
]


@agent_app.command("invite")
def agent_invite(
    name: str,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="The new agent's policy (YAML); without it, it is denied everything."
        ),
    ] = None,
    relay: InviteRelay = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Invite a remote agent: print a one-time invite (ksi_…, 10 minutes) for its sidecar.

    On the agent's host, `keysafe sidecar pair 'ksi_…'` shows four words. The pairing then
    appears in `keysafe approvals` (kind pairing) with the words it should show: approve it with
    `keysafe approve ID --words '…'` only if they are the same. Needs `keysafe serve --relay URL`
    running and unlocked on this home. The invite lets whoever holds it ask to pair, nothing more.
    """
    text, source = _policy_file(policy)
    made = owner.perform_on_server(
        owner_ops.CreateInvite(agent=name, relay=relay, policy=text, policy_source=source),
        passphrase_file,
        why="the server holds open invites and the relay link",
    )
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
    render.answer(
        {"rows": [r.model_dump() for r in rows], "sealed": done},
        f"Sealed {done} row(s).",
        json_out=json_out,
    )
    if any(r.state == "broken" for r in rows):
        raise typer.Exit(1)


@commands.command("pause-all")
def pause_all(passphrase_file: PassphraseFile = None) -> None:
    """Kill switch: deny every agent request until `keysafe resume-all`."""
    owner.perform(owner_ops.PauseAll(paused=True), passphrase_file)
    render.out.print("All agents paused: every agent request is denied until `keysafe resume-all`.")


@commands.command("resume-all")
def resume_all(passphrase_file: PassphraseFile = None) -> None:
    """Lift the kill switch set by `keysafe pause-all`."""
    owner.perform(owner_ops.PauseAll(paused=False), passphrase_file)
    render.out.print("Agents resumed (each agent's own pause still applies).")
