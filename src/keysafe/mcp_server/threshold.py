"""The agent's side of a 2-of-3 wallet: its share (identifier 1) and its part of each signature.

The share file (`KEYSAFE_AGENT_SHARE_FILE`, several separated by ':') is opened with the agent's
share key (`KEYSAFE_AGENT_SHARE_KEY`, which only this host holds; a file from before share keys
opens with the agent's token) and held only in this process. For each transaction the agent
itself decodes:

- Solana (FROST): it asks the vault for a fresh commitment, commits to fresh nonces of its own
  (in memory, used once and dropped), builds the RFC 9591 signing package for that exact message
  and signs its share.
- EVM (DKLs23): it hashes the complete transaction (or the EIP-191 message) itself, opens a
  session, sends its round 1 with the transaction (`/v1/agent/threshold/exchange`), checks the
  vault's rounds 1 and 2, and sends its rounds 2 and 3 with the request.

The vault then judges the transaction under the owner's policy and adds its part only if allowed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypedDict

from solders.message import to_bytes_versioned
from solders.transaction import VersionedTransaction

from keysafe.errors import MalformedRequestError, RequestInProgressError
from keysafe.mcp_server.own_policy import OwnPolicy
from keysafe.mpc import share_file
from keysafe.mpc.dkls import cosigner as dkls_cosigner
from keysafe.mpc.frost import cosigner
from keysafe.mpc.frost.keys import AGENT, USER, KeyPackage
from keysafe.mpc.share_file import SecretBytes, Share
from keysafe.remote import AgentClient

SHARE_ENV = "KEYSAFE_AGENT_SHARE_FILE"
SHARE_KEY_ENV = "KEYSAFE_AGENT_SHARE_KEY"
# How long a signature waits for a refresh of its wallet's share that is under way here.
JOIN_WAIT_S = 60.0

# The agent's part of one signature with a 2-of-3 wallet, given the vault client and its share.
Part = Callable[[AgentClient, Share], Awaitable[dict[str, str]]]


class _Subject(TypedDict, total=False):
    """What a DKLs23 session signs, as /v1/agent/threshold/exchange names it (the vault hashes
    it itself): a transaction (and its chain), a message (and its encoding), or typed data."""

    transaction: Any
    chain: str
    message: str
    encoding: Literal["utf8", "base64"]
    typed_data: dict[str, Any]


class ShareBook:
    """The agent's shares by wallet name, as the signing tools see them while `keysafe mcp`
    replaces one by itself (auto-join of a refresh).

    A refresh gives the vault its new share before this process has opened and swapped in the
    agent's: a signature started in between would pair the old share with the vault's new one
    and fail ("signature share does not verify"). So a wallet being replaced is marked, and a
    signature with it waits until the new share is in (or the ceremony failed and the old one
    stays). Other wallets sign meanwhile.
    """

    def __init__(self, shares: dict[str, Share] | None = None) -> None:
        self._shares = dict(shares or {})
        self._replacing: set[str] = set()
        self._lock = threading.Lock()

    def peek(self, wallet: str) -> Share | None:
        """The share held now, without waiting (for the auto-join itself)."""
        with self._lock:
            return self._shares.get(wallet)

    @contextmanager
    def replacing(self, wallet: str) -> Iterator[None]:
        """Marks `wallet` as being replaced for the duration (`put` the new share inside)."""
        with self._lock:
            self._replacing.add(wallet)
        try:
            yield
        finally:
            with self._lock:
                self._replacing.discard(wallet)

    def put(self, wallet: str, share: Share) -> None:
        with self._lock:
            self._shares[wallet] = share

    async def current(self, wallet: str, wait_s: float = JOIN_WAIT_S) -> Share | None:
        """The share to sign `wallet` with (None: not a 2-of-3 wallet of this agent's), once no
        replacement of it is under way.

        Raises:
            RequestInProgressError: a replacement still runs after `wait_s` seconds.
        """
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                if wallet not in self._replacing:
                    return self._shares.get(wallet)
            if time.monotonic() >= deadline:
                raise RequestInProgressError(
                    f"The agent's share of {wallet} is being refreshed on this host.",
                    next_step="retry in a minute; if it persists, check `keysafe mcp`'s log.",
                )
            await asyncio.sleep(0.05)


def load_shares(
    token: str, value: str | None = None, share_key: str | None = None
) -> dict[str, Share]:
    """The agent's shares by wallet name, from KEYSAFE_AGENT_SHARE_FILE (paths joined by ':'),
    opened with KEYSAFE_AGENT_SHARE_KEY (`share_key`), or the token for an older file.

    Raises:
        MalformedRequestError: a file is missing, not an agent share, or needs the share key
            and none is set.
        WrongPassphraseError: the share key (or token) does not open a file.
    """
    raw = value if value is not None else os.environ.get(SHARE_ENV, "")
    key_text = share_key if share_key is not None else os.environ.get(SHARE_KEY_ENV)
    shares: dict[str, Share] = {}
    for part in filter(None, raw.split(os.pathsep)):
        doc = share_file.read(Path(part), "agent share file")
        if share_file.agent_share_needs_key(doc) and not key_text:
            raise MalformedRequestError(
                f"{part} opens with the agent's share key, and {SHARE_KEY_ENV} is not set.",
                next_step=f"set {SHARE_KEY_ENV} to the share key chosen when the wallet was "
                "created (or last refreshed).",
            )
        opener = key_text if share_file.agent_share_needs_key(doc) else token
        with SecretBytes(bytearray(str(opener).encode())) as secret:
            share = share_file.open_agent_share(doc, secret)
            if share.key.identifier != AGENT:
                raise MalformedRequestError(
                    f"{part} holds share {share.key.identifier}, not the agent's.",
                    next_step="point KEYSAFE_AGENT_SHARE_FILE at the agent share file.",
                )
            if share_file.ban_marker(
                Path(part)
            ).exists():  # the vault failed a check before: refuse it
                share.pairs[USER] = share.pairs[USER].ban()
            shares[str(doc["wallet"])] = replace(share, origin=Path(part))
    return shares


def message_of(transaction: Any) -> bytes:
    """The exact bytes a Solana transaction's signers sign, decoded here independently."""
    if not isinstance(transaction, str):
        raise MalformedRequestError(
            "A threshold wallet signs Solana transactions, given as base64.",
            next_step="serialize the transaction and base64-encode it.",
        )
    try:
        tx = VersionedTransaction.from_bytes(base64.b64decode(transaction, validate=True))
    except Exception:
        raise MalformedRequestError(
            "The transaction is not a serialized Solana transaction.",
            next_step="pass bytes(VersionedTransaction) base64-encoded.",
        ) from None
    return bytes(to_bytes_versioned(tx.message))


def message_bytes(message: str, encoding: str) -> bytes:
    """The exact bytes a `sign_message` request signs (utf8 text, or base64 raw bytes)."""
    if encoding == "base64":
        try:
            return base64.b64decode(message, validate=True)
        except ValueError:
            raise MalformedRequestError(
                "The message is not valid base64.", next_step="base64-encode the raw bytes."
            ) from None
    try:
        return message.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no text keysafe signs
        raise MalformedRequestError(
            "The message is not valid UTF-8 text.", next_step="send text, or base64 bytes."
        ) from None


async def agent_part(
    client: AgentClient, key: KeyPackage, wallet: str, message: bytes
) -> dict[str, str]:
    """Everything the vault needs from the agent for one FROST signature over `message`
    (the transaction's message bytes, or a message's own bytes), decoded here independently."""
    return cosigner.part(key, await client.threshold_commit(wallet), message)


async def transaction_part(
    client: AgentClient,
    share: Share,
    wallet: str,
    transaction: Any,
    chain: str | None,
    own: OwnPolicy | None = None,
) -> dict[str, str]:
    """The agent's part for a transaction with a 2-of-3 wallet, either protocol; first, when
    this host keeps its own copy of the policy (`own`), that copy must not deny it."""
    if own is not None:
        own.check_transaction(share, wallet, transaction, chain)
    if not share.pairs:  # FROST (Solana)
        return await agent_part(client, share.key, wallet, message_of(transaction))
    what: _Subject = {"transaction": transaction}
    if chain:
        what["chain"] = chain
    digest = dkls_cosigner.transaction_digest(transaction)
    return await _dkls_part(client, share, wallet, digest, what)


async def message_part(
    client: AgentClient,
    share: Share,
    wallet: str,
    message: str,
    encoding: Literal["utf8", "base64"],
    own: OwnPolicy | None = None,
) -> dict[str, str]:
    """The agent's part for `sign_message` with a 2-of-3 wallet, either protocol; first, when
    this host keeps its own copy of the policy (`own`), that copy must not deny it."""
    if own is not None:
        own.check_message(share, wallet, message, encoding)
    if not share.pairs:  # FROST (Solana)
        return await agent_part(client, share.key, wallet, message_bytes(message, encoding))
    digest = dkls_cosigner.message_digest(message)
    return await _dkls_part(
        client, share, wallet, digest, {"message": message, "encoding": encoding}
    )


async def typed_data_part(
    client: AgentClient,
    share: Share,
    wallet: str,
    typed_data: dict[str, Any],
    own: OwnPolicy | None = None,
) -> dict[str, str]:
    """The agent's part for `sign_typed_data` with a 2-of-3 EVM wallet (DKLs23 over the EIP-712
    digest, computed here); first, this host's own copy of the policy must not deny it."""
    if not share.pairs:
        raise MalformedRequestError(
            f"Wallet '{wallet}' is not an EVM wallet; EIP-712 typed data is EVM only.",
            next_step="use an EVM wallet.",
        )
    if own is not None:
        own.check_typed_data(share, wallet, typed_data)
    digest = dkls_cosigner.typed_data_digest(typed_data)
    return await _dkls_part(client, share, wallet, digest, {"typed_data": typed_data})


async def _dkls_part(
    client: AgentClient, share: Share, wallet: str, digest: bytes, what: _Subject
) -> dict[str, str]:
    """Open a session, exchange rounds 1 and 2 with the vault, return rounds 2 and 3."""
    if share.pairs[USER].banned:
        raise MalformedRequestError(
            f"Wallet '{wallet}': the vault failed a DKLs23 check with this agent share before, so "
            "the share no longer signs with it.",
            next_step="the owner reshares the wallet (a new share file for the agent).",
            culprit=USER,
        )
    session = await client.threshold_commit(wallet)
    state, first = dkls_cosigner.start(share.key, share.pairs[USER], session, digest)
    answer = await client.threshold_exchange({"wallet": wallet, **first, **what})
    try:
        return dkls_cosigner.finish(state, answer)
    except MalformedRequestError as exc:
        if exc.facts.get("banned"):
            # A failed check may have leaked bits of this pair's OT state: never again, in this
            # process or the next one (the marker beside the share file), until a reshare.
            share.pairs[USER] = share.pairs[USER].ban()
            if share.origin is not None:
                share_file.ban_marker(share.origin).write_text(
                    f"the vault failed a DKLs23 check: {exc.what}\nreshare the wallet.\n"
                )
        raise
