"""Commands that run on the agent's side: `keysafe mcp`, `keysafe proxy`, `keysafe run`.

They talk to a running `keysafe serve` (KEYSAFE_URL) as an agent (KEYSAFE_AGENT_TOKEN) and never
open the vault's files.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Annotated, Any

import typer

from keysafe.errors import MalformedRequestError, NotAuthenticatedError, PolicyDeniedError
from keysafe.remote import MCP_HTTP_PORT, AgentClient, vault_url

TOKEN_ENV = "KEYSAFE_AGENT_TOKEN"  # noqa: S105 - the variable's name


def _agent_token(required: bool = True) -> str | None:
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    # ks_local_: a sidecar's local token (`keysafe sidecar pair`), for KEYSAFE_URL = the sidecar.
    if token is not None and not token.startswith(("ks_agent_", "ks_local_")):
        raise NotAuthenticatedError(
            f"{TOKEN_ENV} does not hold an agent token (ks_agent_…, or a sidecar's ks_local_…)"
            + (
                ": a ksp_ placeholder only works through `keysafe proxy`."
                if token.startswith("ksp_")
                else "."
            ),
            next_step="set it to the token `keysafe agent add NAME` printed.",
        )
    if token is None and required:
        raise NotAuthenticatedError(
            f"{TOKEN_ENV} is not set.",
            next_step="set it to the agent's token from `keysafe agent add NAME` "
            "(the MCP config from `keysafe agent add NAME --mcp-config` sets it for you).",
        )
    return token


# `keysafe mcp | proxy | run`, mounted at the top by cli/app.py.
commands = typer.Typer()


@commands.command("mcp")
def mcp_cmd(
    http: Annotated[
        bool,
        typer.Option("--http", help="Serve streamable HTTP on 127.0.0.1:PORT/mcp, not stdio."),
    ] = False,
    port: Annotated[
        int, typer.Option("--port", help="Port for --http.", min=1, max=65535)
    ] = MCP_HTTP_PORT,
) -> None:
    """Run the MCP server an agent host (Claude Desktop, Cursor, an SDK client) talks to.

    stdio (default): the host launches `keysafe mcp` with KEYSAFE_AGENT_TOKEN in its environment.
    --http: one endpoint for several agents; each request carries `Authorization: Bearer
    ks_agent_…`, checked with the vault every time. Either way it is a thin client of the
    running vault (KEYSAFE_URL, default http://127.0.0.1:8420): start that with
    `keysafe serve --unlock`. Tools: list_capabilities, get_address, sign_transaction,
    send_transaction, transfer, sign_message, sign_typed_data, http_request, read_data,
    approval_status, check_policy, list_pending_approvals.

    2-of-3 wallets: KEYSAFE_AGENT_SHARE_FILE (the agent's share files, ':'-separated) and
    KEYSAFE_AGENT_SHARE_KEY open the agent's shares here; with KEYSAFE_AGENT_POLICY_FILE (a copy
    of the agent's policy) this host refuses what that copy denies before the share is used.
    """
    from keysafe import mcp_server

    if http:
        sys.stderr.write(f"keysafe MCP on http://127.0.0.1:{port}/mcp (vault {vault_url()})\n")
        mcp_server.run_http(port)
        return
    token = _agent_token()
    assert token is not None
    mcp_server.run_stdio(token)


@commands.command("proxy")
def proxy_cmd(
    port: Annotated[int, typer.Option("--port", help="Local port.", min=1, max=65535)] = 8421,
) -> None:
    """Run the local credential proxy: http://127.0.0.1:PORT/CREDENTIAL/PATH → the credential's
    host, with the real key attached by the vault.

    Give the SDK a placeholder as its API key (`keysafe credential placeholder NAME --agent A`)
    and this base URL, e.g. OpenAI(base_url="http://127.0.0.1:8421/openai/v1", api_key="ksp_…").
    Only a placeholder authorises a call; requests from web pages and to other host names are
    refused.
    """
    from keysafe import local_proxy

    sys.stderr.write(
        f"keysafe proxy on http://127.0.0.1:{port}/CREDENTIAL/… (vault {vault_url()})\n"
    )
    local_proxy.run(port)


def _parse_spec(spec: str) -> tuple[str, str]:
    name, sep, var = spec.partition(":")
    if not sep or not name or not var or not var.replace("_", "").isalnum() or var[0].isdigit():
        raise MalformedRequestError(
            f"'{spec[:80]}' is not CREDENTIAL:ENV_VAR.",
            next_step="write it as --credential github:GITHUB_TOKEN.",
        )
    return name, var


async def _release(
    client: AgentClient, credential: str, purpose: str, wait_s: int
) -> dict[str, Any]:
    asked = await client.request_release(credential, purpose)
    approval_id = asked.approval_id
    sys.stderr.write(
        f"keysafe: waiting for the owner to approve releasing '{credential}' ({approval_id}); "
        f"the owner runs `keysafe approve {approval_id}` or uses the web page.\n"
    )
    deadline = time.monotonic() + wait_s
    while True:
        left = int(deadline - time.monotonic())
        view = await client.approval(approval_id, wait=max(0, min(left, 60)))
        if view["status"] == "approved" and isinstance(view.get("result"), dict):
            result: dict[str, Any] = view["result"]
            if "error" in result:
                break
            return result
        if view["status"] != "pending" or left <= 0:
            break
    raise PolicyDeniedError(
        f"The owner did not approve releasing '{credential}' ({view['status']}).",
        next_step="ask the owner, then run the command again.",
        approval_id=approval_id,
        status=str(view["status"]),
    )


@commands.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run_cmd(
    ctx: typer.Context,
    credential: Annotated[
        list[str],
        typer.Option(
            "--credential",
            help="CREDENTIAL:ENV_VAR to put in the child's environment (repeatable).",
        ),
    ],
    wait: Annotated[
        int, typer.Option("--wait", help="Seconds to wait for the owner's approval.", min=1)
    ] = 300,
) -> None:
    """Run a command with a credential's value in its environment, after the owner approves.

    This hands over possession of the secret (the child can read it), so every run asks the
    owner, whatever the policy says, and is audited as a release. Prefer `http_request` or
    `keysafe proxy` where the tool allows: they never hand the key out.

    Example: keysafe run --credential github:GITHUB_TOKEN -- gh repo list
    """
    command = list(ctx.args)
    if not command:
        raise MalformedRequestError(
            "No command to run.",
            next_step="put it after --, e.g. keysafe run --credential gh:GH_TOKEN -- gh repo list.",
        )
    specs = [_parse_spec(s) for s in credential]
    token = _agent_token()
    assert token is not None
    purpose = " ".join(command)[:200]

    async def collect() -> dict[str, str]:
        async with AgentClient(token) as client:
            env: dict[str, str] = {}
            for name, var in specs:
                env[var] = str((await _release(client, name, purpose, wait))["value"])
            return env

    secrets_env = asyncio.run(collect())
    child_env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV} | secrets_env
    del secrets_env
    try:
        code = subprocess.call(command, env=child_env)
    except FileNotFoundError:
        raise MalformedRequestError(
            f"Command not found: {command[0][:100]}.", next_step="check the command's name or path."
        ) from None
    finally:
        child_env.clear()
    raise typer.Exit(code)
