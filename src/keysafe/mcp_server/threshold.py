"""The agent's side of a 2-of-3 wallet: its share (identifier 1) and its part of each signature.

The share file (`KEYSAFE_AGENT_SHARE_FILE`, several separated by ':') is opened with the agent's
own token and held only in this process. For each transaction the agent itself decodes, it asks
the vault for a fresh commitment, commits to fresh nonces of its own (in memory, used once and
dropped), builds the RFC 9591 signing package for that exact message and signs its share. The
vault then judges the transaction under the owner's policy and adds its share only if allowed.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from solders.message import to_bytes_versioned
from solders.transaction import VersionedTransaction

from keysafe.errors import MalformedRequestError
from keysafe.mpc import share_file
from keysafe.mpc.frost import cosigner
from keysafe.mpc.frost.keys import AGENT, KeyPackage
from keysafe.mpc.share_file import SecretBytes
from keysafe.remote import AgentClient

SHARE_ENV = "KEYSAFE_AGENT_SHARE_FILE"


def load_shares(token: str, value: str | None = None) -> dict[str, KeyPackage]:
    """The agent's shares by wallet name, from KEYSAFE_AGENT_SHARE_FILE (paths joined by ':')."""
    raw = value if value is not None else os.environ.get(SHARE_ENV, "")
    shares: dict[str, KeyPackage] = {}
    secret = SecretBytes(bytearray(token.encode()))
    with secret:
        for part in filter(None, raw.split(os.pathsep)):
            doc = share_file.read(Path(part), "agent share file")
            key = share_file.open_agent_share(doc, secret)
            if key.identifier != AGENT:
                raise MalformedRequestError(
                    f"{part} holds share {key.identifier}, not the agent's.",
                    next_step="point KEYSAFE_AGENT_SHARE_FILE at the agent share file.",
                )
            shares[str(doc["wallet"])] = key
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
    return message.encode("utf-8")


async def agent_part(
    client: AgentClient, key: KeyPackage, wallet: str, message: bytes
) -> dict[str, str]:
    """Everything the vault needs from the agent for one threshold signature over `message`
    (the transaction's message bytes, or a message's own bytes), decoded here independently."""
    return cosigner.part(key, await client.threshold_commit(wallet), message)
