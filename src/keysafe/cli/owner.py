"""Where an owner command's change runs: in the running server, or here.

While `keysafe serve` runs unlocked on this home, the change goes to it over the owner session
(`keysafe unlock` opened one; otherwise the passphrase is asked once and the session is kept a few
minutes), so the owner is not asked for the passphrase by every command and one process owns the
unlocked vault. With no server, or a locked one, the command opens the vault files itself as it
always did; a locked server stays locked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar, cast

from pydantic import TypeAdapter

from keysafe.cli import client
from keysafe.cli.app import home
from keysafe.cli.vault_cmds import unlocked
from keysafe.service.owner_ops import Op

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
        raw = client.owner_call(
            h, "POST", OPS_PATH, passphrase_file=passphrase_file,
            json_body=op.model_dump(mode="json"), url=url,
        )  # fmt: skip
        return cast(R, TypeAdapter(op.result).validate_python(raw))
    with unlocked(passphrase_file) as vault:
        return op.run(vault)
