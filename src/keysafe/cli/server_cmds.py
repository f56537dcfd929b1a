"""`keysafe serve`, and `keysafe unlock | lock` of the running server."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keysafe.cli import client, inputs, ports, render
from keysafe.cli.home import home
from keysafe.cli.options import KmsTokenFile, PassphraseFile, Port
from keysafe.cli.unlocking import unlock as unlock_vault
from keysafe.errors import KeysafeError, MalformedRequestError
from keysafe.hosts import is_loopback
from keysafe.service import epochs, in_flight
from keysafe.service.context import Home, open_vault
from keysafe.vault.vault import Vault

if TYPE_CHECKING:
    from keysafe.api.relay_end import VaultEnd
    from keysafe.api.state import ServerState

logger = logging.getLogger(__name__)


# `keysafe serve | unlock | lock`, mounted at the top by cli/app.py.
commands = typer.Typer()


Host = Annotated[str, typer.Option("--host", help="Address to bind; loopback unless TLS is given.")]
UnlockNow = Annotated[
    bool,
    typer.Option(
        "--unlock", help="Start unlocked: ask for the passphrase now, or (a KMS vault) ask the KMS."
    ),
]
TlsCert = Annotated[
    Path | None,
    typer.Option("--tls-cert", help="TLS certificate (PEM).", exists=True, dir_okay=False),
]
TlsKey = Annotated[
    Path | None,
    typer.Option("--tls-key", help="TLS private key (PEM).", exists=True, dir_okay=False),
]
IdleLock = Annotated[
    int, typer.Option("--idle-lock", help="Lock after this many idle seconds (0: never).", min=0)
]
ApprovalTtl = Annotated[
    int | None,
    typer.Option(
        "--approval-ttl", help="Seconds a pending approval lives (default 300).", min=10, max=86400
    ),
]
MaxResponse = Annotated[
    int | None,
    typer.Option(
        "--max-response",
        help="Largest answer, in bytes, the credential proxy passes on from an API "
        "(default 10 MiB = 10485760); a larger one is refused, a stream is cut off. "
        "Kept in the vault (sealed) until set again.",
        min=1024,
        max=1024 * 1024 * 1024,
    ),
]
RateLimit = Annotated[
    float,
    typer.Option(
        "--rate-limit",
        help="Requests per second each agent may make (bursts of twice that); 429 beyond.",
        min=0.1,
    ),
]
RelayUrl = Annotated[
    str | None,
    typer.Option(
        "--relay",
        help="Also connect OUT to this relay (wss://host:port, or ws:// on loopback) and "
        "answer remote agents' sidecars through it (`keysafe agent invite`); nothing "
        "listens for them here, and the relay reads none of it.",
    ),
]
RotateEvery = Annotated[
    str,
    typer.Option(
        "--rotate-every",
        help="Start a new epoch key (every record sealed again, the old key destroyed) this "
        "often while unlocked, e.g. 7d, 12h; 0 never. Agents' revokes rotate too.",
    ),
]
TelegramApiUrl = Annotated[
    str | None,
    typer.Option(
        "--telegram-api-url",
        hidden=True,
        help="The Telegram Bot API's address (tests point it at a local stand-in); "
        "default KEYSAFE_TELEGRAM_API_URL, else Telegram's.",
    ),
]


@commands.command()
def serve(
    host: Host = "127.0.0.1",
    port: Port = 8420,
    unlock_now: UnlockNow = False,
    passphrase_file: PassphraseFile = None,
    kms_token_file: KmsTokenFile = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    idle_lock: IdleLock = 900,
    approval_ttl: ApprovalTtl = None,
    max_response: MaxResponse = None,
    rate_limit: RateLimit = 20.0,
    relay: RelayUrl = None,
    rotate_every: RotateEvery = "7d",
    telegram_api_url: TelegramApiUrl = None,
) -> None:
    """Run the vault server agents talk to (HTTP API + the owner's web page). Starts locked."""
    _refuse_clear_text(host, tls_cert, tls_key)
    ports.check_port_free(
        host,
        port,
        what="another `keysafe serve`",
        next_step="stop that program, or run `keysafe serve --port N` and point agents at it "
        "with KEYSAFE_URL=http://127.0.0.1:N.",
    )
    h = home()
    vault = open_vault(h)
    serve_lock = h.hold_serve_lock()  # held (open) until this process ends
    # Owner commands on this home send their changes here while it runs unlocked (cli/owner.py).
    h.advertise_server(serve_lock, _local_url("https" if tls_cert else "http", host, port))
    if unlock_now:  # first, so what recovery writes to the audit log carries the owner's seal
        unlock_vault(vault, passphrase_file, kms_token_file)
    alone = _settle_last_run(vault)
    _keep_settings(vault, approval_ttl, max_response)
    state = _server_state(h, vault, host, idle_lock, rate_limit, kms_token_file)
    stop = threading.Event()
    _start_idle_loop(state, vault, stop, idle_lock, rotate_every)
    _start_notifier(vault, stop, telegram_api_url, release_leases=alone)
    _run_server(state, vault, stop, host, port, tls_cert, tls_key, relay)


def _refuse_clear_text(host: str, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Raises:
    MalformedRequestError: `host` is not loopback and no TLS certificate and key are given."""
    if not is_loopback(host) and not (tls_cert and tls_key):
        raise MalformedRequestError(
            f"Refusing to serve on {host} without TLS: agent tokens and the passphrase would "
            "cross the network in clear.",
            next_step="bind 127.0.0.1 (the default), or pass --tls-cert FILE --tls-key FILE.",
        )


def _settle_last_run(vault: Vault) -> bool:
    """Before anyone is answered: settle what a crash left open (reservations, idempotency keys,
    approvals that were running), so nothing stays "in progress" for ever. On a shared database
    only when no other server runs: what is open may be that server's work under way, and
    settling it would free its idempotency keys and budget mid-request. True when this server
    runs alone on its database."""
    alone = vault.db.announce_server()
    if alone:
        recovered = in_flight.recover(vault)
    else:
        recovered = in_flight.Recovered(released=0, kept=0, approvals_failed=0)
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
    return alone


def _keep_settings(vault: Vault, approval_ttl: int | None, max_response: int | None) -> None:
    """Seal --approval-ttl and --max-response into the vault, where they stay until set again."""
    if approval_ttl is None and max_response is None:
        return
    from keysafe.service import settings  # only when a setting is given

    if approval_ttl is not None:
        settings.set_approval_ttl(vault, approval_ttl)
    if max_response is not None:
        settings.set_max_response(vault, max_response)


def _server_state(
    h: Home, vault: Vault, host: str, idle_lock: int, rate_limit: float, kms_token_file: Path | None
) -> ServerState:
    from keysafe.api.state import ServerState  # the server's libraries: serve's alone

    state = ServerState(
        h,
        vault,
        idle_lock_after=float(idle_lock) if idle_lock else None,
        rate_per_second=rate_limit,
        burst=2 * rate_limit,
        kms_token=inputs.kms_token(kms_token_file),
        kms_url=inputs.kms_url(),
    )
    state.allowed_hosts = state.allowed_hosts | {host.lower()}
    return state


def _start_idle_loop(
    state: ServerState, vault: Vault, stop: threading.Event, idle_lock: int, rotate_every: str
) -> None:
    """A thread that locks the vault when idle and starts each new epoch key when it is due."""
    every = (
        None
        if rotate_every.strip() == "0"
        else timedelta(seconds=inputs.duration_seconds(rotate_every))
    )

    def idle_loop() -> None:
        while not stop.wait(5):
            if state.idle_check():
                logger.info("vault locked after %d idle seconds", idle_lock)
            try:
                epochs.keep_up(vault, every)
            except KeysafeError as exc:  # locked meanwhile, or the disk: next round tries again
                logger.warning("epoch rotation: %s", exc)

    threading.Thread(target=idle_loop, name="idle-lock", daemon=True).start()


def _start_notifier(
    vault: Vault, stop: threading.Event, telegram_api_url: str | None, *, release_leases: bool
) -> None:
    """Sends the notification outbox (webhooks, Telegram) and hears Telegram's buttons."""
    from keysafe.api.notifier import Notifier  # python-telegram-bot: the server's alone
    from keysafe.notify import telegram

    Notifier(
        vault,
        telegram_api=telegram.api_url(telegram_api_url),
        stop=stop,
        release_leases=release_leases,
    ).start()


def _run_server(
    state: ServerState,
    vault: Vault,
    stop: threading.Event,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    relay: str | None,
) -> None:
    """Serve the API (and, with `relay`, the vault's end of the relay) until the process is
    stopped; then the background threads stop and the vault is locked."""
    import uvicorn  # the server's libraries: serve's alone

    from keysafe.api import create_app

    scheme = "https" if tls_cert else "http"
    render.out.print(
        f"keysafe serving on {scheme}://{host}:{port} — "
        f"vault {'unlocked' if vault.is_unlocked else 'locked'}; "
        f"the owner's page is {scheme}://{host}:{port}/"
    )
    asgi = create_app(state)
    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
    )
    end = None if relay is None else _relay_end(vault, asgi, relay)
    try:
        asyncio.run(_serve(uvicorn.Server(config), end))
    finally:
        stop.set()
        vault.lock()


def _relay_end(vault: Vault, asgi: Any, relay: str) -> VaultEnd:
    """The vault's end of the relay at `relay`, which connects out once the vault is unlocked."""
    # imported here: the relay's libraries (websockets) are for a server that uses one
    from keysafe.api.relay_end import VaultEnd
    from keysafe.service import pairing

    pairing.set_server_relay(vault, relay)
    render.out.print(f"keysafe connects out to the relay {relay} (once unlocked)")
    return VaultEnd(vault, asgi, relay)


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


@commands.command()
def unlock(passphrase_file: PassphraseFile = None) -> None:
    """Unlock the running server's vault (this home's server, or KEYSAFE_URL) with the
    passphrase."""
    url = client.server_url()
    if url is None or not client.server_up(url):
        raise client.no_server()
    client.login(home(), url, passphrase_file)
    render.out.print(f"Vault unlocked on {url}.")


@commands.command()
def lock(passphrase_file: PassphraseFile = None) -> None:
    """Lock the running server's vault now: the master key is wiped from its memory."""
    if not client.server_live():
        raise client.no_server()
    client.owner_call(home(), "POST", "/v1/owner/lock", passphrase_file=passphrase_file)
    render.out.print("Vault locked.")
