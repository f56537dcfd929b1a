"""Refusing a busy port in one keysafe-style line, before anything is opened or asked for
(uvicorn would print its own multi-line error once the server had started)."""

from __future__ import annotations

import errno
import socket

from keysafe.errors import MalformedRequestError


def check_port_free(host: str, port: int, *, what: str, next_step: str) -> None:
    """Bind `host:port` once, as uvicorn will, and let go.

    Args:
        host: the address to bind.
        port: the port.
        what: what else may hold the port, for the message ("another `keysafe serve`").
        next_step: what the person does about a busy port.

    Raises:
        MalformedRequestError: the port is busy, or the address is not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise MalformedRequestError(
                    f"keysafe cannot listen on {host}:{port} ({exc.strerror}).",
                    next_step="pick an address of this machine with --host, or another --port.",
                ) from None
            raise MalformedRequestError(
                f"Port {port} on {host} is already in use ({what}, or another program).",
                next_step=next_step,
            ) from None
