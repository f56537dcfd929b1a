"""`keysafe mcp` joining its agent's 2-of-3 ceremonies by itself (`KEYSAFE_AGENT_JOIN_KEY_FILE`).

The owner and the agent's host share a long-term join key (the owner's `--join-key-file`
made it; it never goes to the vault). A background thread asks the vault every few seconds
for ceremonies opened for this agent with that key, runs the agent's party for each
(`mpc/ceremony.join_as_agent`: the recovery key must carry the join key's tag, so a vault
cannot stand in for the owner), writes the new share under KEYSAFE_AGENT_SHARE_KEY and starts
signing with it at once: a new wallet's share goes to KEYSAFE_AGENT_SHARE_DIR (default: the
folder of the first KEYSAFE_AGENT_SHARE_FILE) as `<wallet>.share`; a reshare replaces the file
the old share came from. Each ceremony is tried once; failures are logged, never fatal.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Final

from keysafe.agent_models import KeygenPost
from keysafe.client import AgentClient
from keysafe.errors import KeysafeError, MalformedRequestError
from keysafe.mcp_server.threshold import ShareBook
from keysafe.mpc import ceremony, share_file
from keysafe.mpc.share_file import SecretBytes

__all__ = ["DIR_ENV", "ENV", "start"]

logger = logging.getLogger(__name__)

ENV: Final = "KEYSAFE_AGENT_JOIN_KEY_FILE"
DIR_ENV: Final = "KEYSAFE_AGENT_SHARE_DIR"
SHARE_KEY_ENV: Final = "KEYSAFE_AGENT_SHARE_KEY"
POLL_S: Final = 2.0
# keysafe's own rule for names (service/models.NAME_RE), checked again here: the name comes from
# the vault and becomes a file name on this host.
_WALLET_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def start(token: str, url: str, shares: ShareBook) -> threading.Thread | None:
    """Start joining in the background when KEYSAFE_AGENT_JOIN_KEY_FILE is set; `shares` (the
    agent's shares by wallet, which the tools sign with) gets each new share.

    Raises:
        MalformedRequestError: the join key file is bad, or no usable share key is set.
    """
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    join_key = ceremony.read_join_key(Path(value))
    share_key = os.environ.get(SHARE_KEY_ENV, "")
    if len(share_key) < 12 or hmac.compare_digest(share_key.encode(), token.encode()):
        raise MalformedRequestError(
            f"Joining by itself needs {SHARE_KEY_ENV}: a secret of its own (at least 12 "
            "characters, not the agent's token) that seals the shares on this host.",
            next_step=f"set {SHARE_KEY_ENV}, or unset {ENV}.",
        )
    folder = Path(os.environ.get(DIR_ENV) or _first_share_dir() or Path.cwd())
    thread = threading.Thread(
        target=_loop,
        args=(token, url, join_key, share_key, shares, folder),
        name="keysafe-auto-join",
        daemon=True,
    )
    thread.start()
    logger.info("joining this agent's 2-of-3 ceremonies by itself (shares in %s)", folder)
    return thread


def _first_share_dir() -> Path | None:
    first = next(filter(None, os.environ.get("KEYSAFE_AGENT_SHARE_FILE", "").split(os.pathsep)), "")
    return Path(first).parent if first else None


def _loop(
    token: str,
    url: str,
    join_key: bytes,
    share_key: str,
    shares: ShareBook,
    folder: Path,
) -> None:
    tried: set[str] = set()
    with AgentClient(token, url=url) as client:
        while True:
            try:
                for code in ceremony.keyed_codes(client.keygens(), join_key):
                    if code.keygen_id not in tried:
                        tried.add(code.keygen_id)
                        _join(client, code, share_key, shares, folder)
            except Exception as exc:
                logger.warning("auto-join: could not ask the vault (%s)", type(exc).__name__)
            time.sleep(POLL_S)


def _join(
    client: AgentClient,
    code: ceremony.JoinCode,
    share_key: str,
    shares: ShareBook,
    folder: Path,
) -> None:
    view = client.keygen_exchange(code.keygen_id, KeygenPost())
    try:  # the wallet, kind and key are the owner's (tagged), not the vault's say-so
        ceremony.check_recovery_tag(code, view)
    except ceremony.ChannelError:
        logger.warning(
            "auto-join: a ceremony for %r is not the owner's; not joining", view.wallet[:80]
        )
        return
    if not _WALLET_NAME.fullmatch(view.wallet):  # a name from elsewhere: never a path
        logger.warning("auto-join: the wallet name %r is not one; not joining", view.wallet[:80])
        return
    old = shares.peek(view.wallet)
    if view.kind == "create" and old is not None:
        logger.warning(
            "auto-join: %s is already a wallet here; not joining its keygen", view.wallet
        )
        return
    # A reshare replaces only the file of the share it replaces; anything new is a new file.
    path = (
        old.origin
        if old is not None and old.origin is not None
        else folder / f"{view.wallet}.share"
    )
    if old is None and path.exists():
        logger.warning("auto-join: %s exists; not joining the ceremony of %s", path, view.wallet)
        return
    try:
        # From the first message of the ceremony until the new share is in, signing with this
        # wallet waits (ShareBook): the vault holds its new share before this process does.
        with shares.replacing(view.wallet), SecretBytes(bytearray(share_key.encode())) as secret:
            joined = ceremony.join_as_agent(client.keygen_exchange, code, path, secret, old)
            doc = share_file.read(path, "agent share file")
            shares.put(view.wallet, replace(share_file.open_agent_share(doc, secret), origin=path))
    except KeysafeError as exc:
        logger.warning("auto-join of %s failed: %s", view.wallet, exc.what)
        return
    logger.warning(
        "auto-join: %s of wallet %s done (%s); share in %s",
        joined.kind,
        joined.wallet,
        joined.address,
        path,
    )
