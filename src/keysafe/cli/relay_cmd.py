"""`keysafe relay`: run a relay that remote agents and the vault both connect out to."""

from __future__ import annotations

import logging
import sys
from typing import Annotated
from urllib.parse import urlsplit

import typer

from keysafe.cli import ports
from keysafe.cli.options import Port
from keysafe.relay import routing

logger = logging.getLogger("keysafe.relay")


def _log_to_stderr(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def _log_listening(host: str, port: int, redis: str | None, *, websocket: bool) -> None:
    """Say where the relay listens, what it serves and where its mailboxes live."""
    where = f"[{host}]" if ":" in host else host
    store = (
        f"redis {urlsplit(redis).hostname}:{urlsplit(redis).port or 6379}" if redis else "memory"
    )
    logger.info(
        "relay listening on http://%s:%d (%s; mailboxes in %s)",
        where,
        port,
        "websocket and long-poll" if websocket else "long-poll only",
        store,
    )


# `keysafe relay`, mounted at the top by cli/app.py.
commands = typer.Typer()


RelayHost = Annotated[str, typer.Option("--host", help="Address to bind.")]
Redis = Annotated[
    str | None,
    typer.Option(
        "--redis",
        help="Keep mailboxes in this Redis (redis://HOST:PORT/DB), shared by every relay "
        "instance pointed at it; without it they live in this process and die with it.",
    ),
]
MaxBody = Annotated[
    int,
    typer.Option("--max-body", help="Largest message body, in bytes.", min=1, max=64 * 1024 * 1024),
]
Ttl = Annotated[
    float,
    typer.Option("--ttl", help="Seconds an undelivered message is kept, then dropped.", min=0.1),
]
Rate = Annotated[
    float,
    typer.Option(
        "--rate", help="Messages per second each sender may send (bursts of twice that).", min=0.1
    ),
]
MailboxCap = Annotated[
    int, typer.Option("--mailbox-cap", help="Most messages waiting for one recipient.", min=1)
]
NoWebsocket = Annotated[
    bool,
    typer.Option(
        "--no-websocket", help="Serve only the HTTP long-poll API (links fall back to it)."
    ),
]
Verbose = Annotated[
    bool,
    typer.Option("--verbose", help="Also log each message: routing ids, size, id (never a body)."),
]


@commands.command("relay")
def relay_cmd(
    host: RelayHost = "127.0.0.1",
    port: Port = 8443,
    redis: Redis = None,
    max_body: MaxBody = routing.DEFAULT_MAX_BODY,
    ttl: Ttl = routing.DEFAULT_TTL_S,
    rate: Rate = routing.DEFAULT_RATE,
    mailbox_cap: MailboxCap = routing.DEFAULT_MAILBOX_CAP,
    no_websocket: NoWebsocket = False,
    verbose: Verbose = False,
) -> None:
    """Run a relay: the vault and agents on other machines both connect out to it, and it passes
    end-to-end encrypted envelopes between them by routing id.

    The relay never sees plaintext, and keeps nothing but undelivered envelopes until --ttl. Put
    TLS in front of it (a reverse proxy such as Caddy or nginx, passing WebSockets through to
    /v1/relay/ws) and give agents the wss:// or https:// URL. Several instances behind one
    load balancer share mailboxes through --redis. Logs (stderr) name routing ids, sizes and
    times only.
    """
    import uvicorn

    from keysafe.relay.server import RelayConfig, make_relay_app

    ports.check_port_free(
        host,
        port,
        what="another relay",
        next_step="stop that program, or run `keysafe relay --port N`.",
    )
    _log_to_stderr(verbose)
    config = RelayConfig(
        max_body=max_body,
        ttl=ttl,
        rate=rate,
        burst=2 * rate,
        mailbox_cap=mailbox_cap,
        redis_url=redis,
        websocket=not no_websocket,
    )
    _log_listening(host, port, redis, websocket=not no_websocket)
    uvicorn.run(
        make_relay_app(config),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        ws="websockets-sansio",
        ws_max_size=config.ws_max_frame,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=3,
    )
