"""`keysafe rotate`: a new epoch key, every record sealed again under it, the old key destroyed."""

from __future__ import annotations

from keysafe.cli import owner, render
from keysafe.cli.app import JsonFlag, PassphraseFile, app
from keysafe.service import owner_ops


@app.command()
def rotate(passphrase_file: PassphraseFile = None, json_out: JsonFlag = False) -> None:
    """Start a new epoch key, seal every record again under it, and destroy the old key.

    A key copied before the rotation (a memory dump, a leak) then opens nothing in the vault's
    files. `keysafe serve` also rotates on a schedule (--rotate-every, default 7 days) and when an
    agent is revoked. Goes through the running server when it is unlocked.
    """
    done = owner.perform(owner_ops.RotateEpochs(), passphrase_file)
    if json_out:
        render.as_json(done.model_dump())
        return
    render.out.print(
        f"Epoch {done.epoch} started: {done.resealed} records sealed again, "
        f"old epoch keys {', '.join(map(str, done.destroyed)) or 'none'} destroyed."
    )
