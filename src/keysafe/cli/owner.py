"""Where an owner command's change runs: in the running server, or here.

While `keysafe serve` runs unlocked on this home, the change goes to it over the owner session
(`keysafe unlock` opened one; otherwise the passphrase is asked once and the session is kept a few
minutes), so the owner is not asked for the passphrase by every command and one process owns the
unlocked vault. With no server, or a locked one, the command opens the vault files itself as it
always did; a locked server stays locked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import TypeAdapter

from keysafe.cli import client
from keysafe.cli.home import home
from keysafe.cli.unlocking import unlocked
from keysafe.errors import MalformedRequestError
from keysafe.service.context import open_vault
from keysafe.service.owner_ops import Op
from keysafe.vault.vault import Vault

R = TypeVar("R")

OPS_PATH = "/v1/owner/ops"


def perform(op: Op[R], passphrase_file: Path | None) -> R:
    """Run `op` with the vault unlocked: in this home's running server when it is unlocked,
    else here after asking for the passphrase.

    Raises:
        KeysafeError: whatever the operation raises, on either side (the server's errors come
            back with their code), or the passphrase is wrong.
    """
    h = home()
    url = h.serving_url()
    if url is not None and client.server_unlocked(url):
        return _on(url, op, passphrase_file)
    with unlocked(passphrase_file) as vault:
        return op.run(vault)


def perform_on_server(
    op: Op[R], passphrase_file: Path | None, *, why: str, url: str | None = None
) -> R:
    """Run `op` in this home's running, unlocked server (or the one at `url`, on another
    machine), never here: for a step whose point is that this process does not hold what the
    server holds (`why` says what, for the error).

    Raises:
        MalformedRequestError: no server runs on this home (or at `url`), or it is locked.
        KeysafeError: whatever the operation raises in the server.
    """
    return _on(require_server(why, url), op, passphrase_file)


def vault_url(url: str) -> str:
    """A `--vault-url` the owner's passphrase may be sent to: https, or http on this machine.

    Raises:
        MalformedRequestError: anything else.
    """
    parts = urlsplit(url.strip())
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not local):
        raise MalformedRequestError(
            f"--vault-url {url[:80]!r} is neither https nor a server on this machine: the "
            "owner's passphrase would cross the network in the clear.",
            next_step="give the vault's https:// URL (TLS in front of `keysafe serve`).",
        )
    return f"{parts.scheme}://{parts.netloc}"


def require_server(why: str, url: str | None = None) -> str:
    """The URL of this home's running, unlocked server, or of the one at `url`.

    Raises:
        MalformedRequestError: none runs, or it is locked; `why` says why one is needed.
    """
    if url is not None:
        url = vault_url(url)
        if not client.server_unlocked(url):
            raise MalformedRequestError(
                f"No unlocked keysafe server answers at {url}: {why}.",
                next_step="check the URL, and that the server runs and is unlocked.",
            )
        return url
    url = home().serving_url()
    if url is None or not client.server_unlocked(url):
        raise MalformedRequestError(
            f"This needs `keysafe serve` running and unlocked on this home: {why}.",
            next_step="start it (`keysafe serve`, then `keysafe unlock`), then run this again.",
        )
    return url


def request(
    method: str,
    path: str,
    passphrase_file: Path | None,
    here: Callable[[Vault], Any],
    *,
    json_body: Any = None,
    unlock: bool = True,
) -> Any:
    """The owner's request `method path` (JSON in and out) to the running server when one
    answers; else `here` run on this home's vault, unlocked (or, with `unlock` False, only
    opened: a read needs no passphrase), and its answer.

    Raises:
        KeysafeError: whatever either side refuses (the server's errors come back with their
            code), or the passphrase is wrong.
    """
    if client.server_live():
        return client.owner_call(
            home(), method, path, passphrase_file=passphrase_file, json_body=json_body
        )
    with unlocked(passphrase_file) if unlock else open_vault(home()) as vault:
        return here(vault)


def _on(url: str, op: Op[R], passphrase_file: Path | None) -> R:
    raw = client.owner_call(
        home(),
        "POST",
        OPS_PATH,
        passphrase_file=passphrase_file,
        json_body=op.model_dump(mode="json"),
        url=url,
    )
    return cast(R, TypeAdapter(op.result).validate_python(raw))
