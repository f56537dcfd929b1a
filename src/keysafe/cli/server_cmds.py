"""`keysafe serve`, and the owner's live commands: unlock, lock, approvals, approve, deny."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from keysafe.cli import client, inputs, ports, render
from keysafe.cli.app import JsonFlag, KmsTokenFile, PassphraseFile, app, home
from keysafe.cli.vault_cmds import unlock as unlock_vault
from keysafe.cli.vault_cmds import unlocked
from keysafe.errors import KeysafeError, MalformedRequestError
from keysafe.hosts import is_loopback
from keysafe.service import epochs, in_flight
from keysafe.service.context import open_vault

if TYPE_CHECKING:
    from keysafe.api.relay_end import VaultEnd

logger = logging.getLogger(__name__)


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; loopback unless TLS is given.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.", min=1, max=65535)] = 8420,
    unlock_now: Annotated[
        bool,
        typer.Option(
            "--unlock",
            help="Start unlocked: ask for the passphrase now, or (a KMS vault) ask the KMS.",
        ),
    ] = False,
    passphrase_file: PassphraseFile = None,
    kms_token_file: KmsTokenFile = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="TLS certificate (PEM).", exists=True, dir_okay=False),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", help="TLS private key (PEM).", exists=True, dir_okay=False),
    ] = None,
    idle_lock: Annotated[
        int,
        typer.Option("--idle-lock", help="Lock after this many idle seconds (0: never).", min=0),
    ] = 900,
    approval_ttl: Annotated[
        int | None,
        typer.Option(
            "--approval-ttl",
            help="Seconds a pending approval lives (default 300).",
            min=10,
            max=86400,
        ),
    ] = None,
    max_response: Annotated[
        int | None,
        typer.Option(
            "--max-response",
            help="Largest answer, in bytes, the credential proxy passes on from an API "
            "(default 10 MiB = 10485760); a larger one is refused, a stream is cut off. "
            "Kept in the vault (sealed) until set again.",
            min=1024,
            max=1024 * 1024 * 1024,
        ),
    ] = None,
    rate_limit: Annotated[
        float,
        typer.Option(
            "--rate-limit",
            help="Requests per second each agent may make (bursts of twice that); 429 beyond.",
            min=0.1,
        ),
    ] = 20.0,
    relay: Annotated[
        str | None,
        typer.Option(
            "--relay",
            help="Also connect OUT to this relay (wss://host:port, or ws:// on loopback) and "
            "answer remote agents' sidecars through it (`keysafe agent invite`); nothing "
            "listens for them here, and the relay reads none of it.",
        ),
    ] = None,
    rotate_every: Annotated[
        str,
        typer.Option(
            "--rotate-every",
            help="Start a new epoch key (every record sealed again, the old key destroyed) this "
            "often while unlocked, e.g. 7d, 12h; 0 never. Agents' revokes rotate too.",
        ),
    ] = "7d",
    telegram_api_url: Annotated[
        str | None,
        typer.Option(
            "--telegram-api-url",
            hidden=True,
            help="The Telegram Bot API's address (tests point it at a local stand-in); "
            "default KEYSAFE_TELEGRAM_API_URL, else Telegram's.",
        ),
    ] = None,
) -> None:
    """Run the vault server agents talk to (HTTP API + the owner's web page). Starts locked."""
    import uvicorn

    from keysafe.api import create_app
    from keysafe.api.notifier import Notifier  # python-telegram-bot: the server's alone
    from keysafe.api.state import ServerState
    from keysafe.notify import telegram

    if not is_loopback(host) and not (tls_cert and tls_key):
        raise MalformedRequestError(
            f"Refusing to serve on {host} without TLS: agent tokens and the passphrase would cross the network in clear.",
            next_step="bind 127.0.0.1 (the default), or pass --tls-cert FILE --tls-key FILE.",
        )
    ports.check_port_free(
        host, port, what="another `keysafe serve`",
        next_step="stop that program, or run `keysafe serve --port N` and point agents at it "
        "with KEYSAFE_URL=http://127.0.0.1:N.",
    )  # fmt: skip
    h = home()
    vault = open_vault(h)
    _lock = h.hold_serve_lock()  # held (open) until this process ends
    # Owner commands on this home send their changes here while it runs unlocked (cli/owner.py).
    h.advertise_server(_lock, _local_url("https" if tls_cert else "http", host, port))
    if unlock_now:  # first, so what recovery writes to the audit log carries the owner's seal
        unlock_vault(vault, passphrase_file, kms_token_file)
    # Before anyone is answered: settle what a crash left open (reservations, idempotency keys,
    # approvals that were running), so nothing stays "in progress" for ever. On a shared
    # database only when no other server runs: what is open may be that server's work under
    # way, and settling it would free its idempotency keys and budget mid-request.
    alone = vault.db.announce_server()
    if alone:
        recovered = in_flight.recover(vault)
    else:
        recovered = in_flight.Recovered(0, 0, 0)
        render.note(
            "another keysafe server runs on this database: what a crash may have left open is "
            "settled by the first server that starts alone (docs/postgresql.md)."
        )
    if recovered.released or recovered.kept or recovered.approvals_failed:
        render.note(
            f"keysafe finished what the last run left open: {recovered.released} request(s) "
            f"released, {recovered.kept} send(s) kept as spent, {recovered.approvals_failed} "
            "approval(s) marked failed (see `keysafe audit`)."
        )
    if approval_ttl is not None or max_response is not None:
        from keysafe.service import settings

        if approval_ttl is not None:
            settings.set_approval_ttl(vault, approval_ttl)
        if max_response is not None:
            settings.set_max_response(vault, max_response)
    state = ServerState(
        h, vault, idle_lock_after=float(idle_lock) if idle_lock else None,
        rate_per_second=rate_limit, burst=2 * rate_limit,
        kms_token=inputs.kms_token(kms_token_file), kms_url=inputs.kms_url(),
    )  # fmt: skip
    state.allowed_hosts = state.allowed_hosts | {host.lower()}
    stop = threading.Event()

    every = None if rotate_every.strip() == "0" else timedelta(seconds=_seconds(rotate_every))

    def idle_loop() -> None:
        while not stop.wait(5):
            if state.idle_check():
                logger.info("vault locked after %d idle seconds", idle_lock)
            try:
                epochs.keep_up(vault, every)
            except KeysafeError as exc:  # locked meanwhile, or the disk: next round tries again
                logger.warning("epoch rotation: %s", exc)

    threading.Thread(target=idle_loop, name="idle-lock", daemon=True).start()
    # Sends the notification outbox (webhooks, Telegram) and hears Telegram's buttons.
    Notifier(
        vault, telegram_api=telegram.api_url(telegram_api_url), stop=stop, release_leases=alone
    ).start()
    scheme = "https" if tls_cert else "http"
    render.out.print(
        f"keysafe serving on {scheme}://{host}:{port} — vault {'unlocked' if vault.is_unlocked else 'locked'}; "
        f"the owner's page is {scheme}://{host}:{port}/"
    )
    asgi = create_app(state)
    config = uvicorn.Config(
        asgi, host=host, port=port, log_level="warning",
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
    )  # fmt: skip
    if relay is not None:
        # imported here: the relay's libraries (websockets) are for a server that uses one
        from keysafe.api.relay_end import VaultEnd
        from keysafe.service import pairing

        pairing.set_server_relay(vault, relay)
        render.out.print(f"keysafe connects out to the relay {relay} (once unlocked)")
    try:
        asyncio.run(_serve(uvicorn.Server(config), None if relay is None else
                           VaultEnd(vault, asgi, relay)))  # fmt: skip
    finally:
        stop.set()
        vault.lock()


async def _serve(server: Any, end: VaultEnd | None) -> None:
    """uvicorn's server, and beside it (with --relay) the vault's end of the relay."""
    task = None if end is None else asyncio.create_task(end.run())
    try:
        await server.serve()
    finally:
        if task is not None:
            task.cancel()


def _local_url(scheme: str, host: str, port: int) -> str:
    """How a process on this machine reaches a server bound to `host`."""
    if host in ("0.0.0.0", ""):  # noqa: S104  # reading the bind address, not binding
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _live() -> bool:
    url = client.server_url()
    return url is not None and client.server_up(url)


@app.command()
def unlock(passphrase_file: PassphraseFile = None) -> None:
    """Unlock the running server's vault (this home's server, or KEYSAFE_URL) with the passphrase."""
    url = client.server_url()
    if url is None or not client.server_up(url):
        raise client.no_server()
    client.login(home(), url, passphrase_file)
    render.out.print(f"Vault unlocked on {url}.")


@app.command()
def lock(passphrase_file: PassphraseFile = None) -> None:
    """Lock the running server's vault now: the master key is wiped from its memory."""
    if not _live():
        raise client.no_server()
    client.owner_call(home(), "POST", "/v1/owner/lock", passphrase_file=passphrase_file)
    render.out.print("Vault locked.")


@app.command("approvals")
def approvals_list(
    all_: Annotated[
        bool, typer.Option("--all", help="Also show decided and expired ones.")
    ] = False,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """List requests waiting for the owner's approval (through the server when it runs)."""
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service import approvals

    if _live():
        items = client.owner_call(
            home(),
            "GET",
            f"/v1/owner/approvals?all={'true' if all_ else 'false'}",
            passphrase_file=passphrase_file,
        )
    else:
        with open_vault(home()) as vault:
            items = [a.for_owner() for a in approvals.list_approvals(vault, pending_only=not all_)]
    if json_out:
        render.as_json(items)
        return
    render.table(
        "Approvals", ["id", "agent", "status", "summary", "rule", "expires"],
        [(a["approval_id"], a["agent"], a["status"], a["summary"], a["rule"], a["expires_at"]) for a in items],
        empty="Nothing waits for your approval.",
    )  # fmt: skip


_DURATION = re.compile(r"^(\d+)([smhd])$")


def _seconds(text: str) -> int:
    m = _DURATION.match(text.strip())
    if not m:
        raise MalformedRequestError(
            f"'{text[:20]}' is not a duration.", next_step="use e.g. 15m, 1h or 1d."
        )
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


ApprovalId = Annotated[
    str,
    typer.Argument(
        help="The approval's id from `keysafe approvals`, or a unique prefix of it "
        "(at least 6 characters after apr_; the apr_ may be left off)."
    ),
]


@app.command()
def approve(
    approval_id: ApprovalId,
    for_: Annotated[
        str | None,
        typer.Option(
            "--for", help="Also let this agent do this kind of thing for a while, e.g. 1h."
        ),
    ] = None,
    words: Annotated[
        str | None,
        typer.Option(
            "--words",
            help="A pairing's four words, as the sidecar shows them: wrong words deny it.",
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Approve a pending request: keysafe runs exactly that request and keeps its result for the agent.

    A pairing (a remote sidecar asking to become an agent) is approved only with --words: the
    four words the sidecar printed, which must be the ones `keysafe approvals` shows.
    """
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service import approvals

    seconds = _seconds(for_) if for_ else None
    if _live():
        result = client.owner_call(
            home(), "POST", f"/v1/owner/approvals/{quote(approval_id, safe='')}/approve",
            passphrase_file=passphrase_file, json_body={"for_seconds": seconds, "words": words},
        )  # fmt: skip
    else:
        with unlocked(passphrase_file) as vault:
            result = approvals.approve(
                vault, approval_id, grant_seconds=seconds, words=words
            ).for_owner()
    if json_out:
        render.as_json(result)
    else:
        # The whole id, as the server resolved the prefix typed; the summary is the agent's
        # text, so it is printed as text (never as Rich markup).
        render.plain(f"Approval {result['approval_id']}: {result['status']} — {result['summary']}")


@app.command()
def deny(
    approval_id: ApprovalId,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason", help="Why, for the agent: it reads this with the denial (300 characters)."
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """Deny a pending request; nothing is signed and no budget is used."""
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service import approvals

    if _live():
        result = client.owner_call(
            home(), "POST", f"/v1/owner/approvals/{quote(approval_id, safe='')}/deny",
            passphrase_file=passphrase_file,
            json_body={"reason": reason} if reason is not None else None,
        )  # fmt: skip
    else:
        with unlocked(passphrase_file) as vault:
            result = approvals.deny(vault, approval_id, reason=reason).for_owner()
    if json_out:
        render.as_json(result)
    else:
        said = f" The agent is told: {result['reason']}" if result.get("reason") else ""
        render.plain(f"Approval {result['approval_id']}: denied.{said}")


grants_app = typer.Typer(
    help='"Approve for a while" grants: what each lets an agent do without asking, until when.',
    invoke_without_command=True,
)
app.add_typer(grants_app, name="grants")


@grants_app.callback()
def grants_list(
    ctx: typer.Context, passphrase_file: PassphraseFile = None, json_out: JsonFlag = False
) -> None:
    """List the active grants (through the server when it runs)."""
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service import approvals

    if ctx.invoked_subcommand is not None:
        return
    if _live():
        items = client.owner_call(
            home(), "GET", "/v1/owner/grants", passphrase_file=passphrase_file
        )
    else:
        with open_vault(home()) as vault:
            items = [g.to_dict() for g in approvals.list_grants(vault)]
    if json_out:
        render.as_json(items)
        return
    render.table(
        "Grants", ["id", "agent", "rule", "covers", "until"],
        [(str(g["id"]), g["agent"], g["rule"], g["summary"], g["until"]) for g in items],
        empty="No active grants: every ask goes to you.",
    )  # fmt: skip


@grants_app.command("revoke")
def grants_revoke(
    grant_id: Annotated[int, typer.Argument(help="The grant's id, from `keysafe grants`.")],
    passphrase_file: PassphraseFile = None,
    json_out: JsonFlag = False,
) -> None:
    """End a grant now: that agent's requests of that shape are asked again."""
    # imported here: it loads eth-account (about a second), which no other command needs
    from keysafe.service import approvals

    if _live():
        result = client.owner_call(
            home(), "POST", f"/v1/owner/grants/{grant_id}/revoke", passphrase_file=passphrase_file
        )
    else:
        with unlocked(passphrase_file) as vault:
            result = approvals.revoke_grant(vault, grant_id).to_dict()
    if json_out:
        render.as_json(result)
    else:
        render.out.print(
            f"Grant {grant_id} revoked: agent {result['agent']}, rule {result['rule']}."
        )
