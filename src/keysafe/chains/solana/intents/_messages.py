"""Off-chain messages: the exact bytes Ed25519 signs, and never a transaction message."""

from __future__ import annotations

import base64
import binascii
import logging

from solders.message import Message, from_bytes_versioned
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from keysafe.chains.solana.intents._common import check_chain, printable, refuse
from keysafe.chains.solana.intents._programs import MAX_MESSAGE_SIZE
from keysafe.policy.intent import Intent
from keysafe.policy.registry import ChainInfo

logger = logging.getLogger(__name__)


def _is_transaction_message(raw: bytes) -> bool:
    """True when `raw` reads as a legacy or v0 transaction message (what a tx signature covers)."""
    try:
        message = from_bytes_versioned(raw)
    except Exception:
        return False
    if not isinstance(message, Message):
        # A version prefix (0x80 | v) that parses: never text (not a UTF-8 lead byte); refuse
        # without further checks, whatever future version it is. The off-chain message format
        # starts with 0xff "solana offchain" and does not parse.
        return True
    # Legacy messages have no prefix, so long text can occasionally parse; only a message that
    # also passes the runtime's sanitize checks counts.
    try:
        n = int(message.header.num_required_signatures)
        VersionedTransaction.populate(message, [Signature.default()] * n).sanitize()
    except Exception:
        return False
    return True


def intent_from_message(
    text_or_b64: str, *, encoding: str, chain: ChainInfo
) -> tuple[Intent, bytes]:
    """The intent of signing an off-chain message, and the exact bytes that will be signed.

    Args:
        text_or_b64: the message as text (`encoding="utf8"`) or as standard base64.
        encoding: how `text_or_b64` is given: "utf8" or "base64".
        chain: the Solana cluster (recorded in the intent; Ed25519 signs the same everywhere).

    Raises:
        MalformedRequestError: an unknown encoding; not decodable, empty, too long, or a
            transaction message.
    """
    check_chain(chain)
    raw = _message_bytes(text_or_b64, encoding)
    if _is_transaction_message(raw):
        raise refuse(
            "These bytes are a Solana transaction message: signing them as a message would "
            "sign a transaction blind.",
            next_step="send it as a transaction so keysafe can decode and judge it.",
        )
    text: str | None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        summary = f'sign message "{printable(text, 120)}" ({len(raw)} bytes)'
    else:
        summary = (
            f"sign {len(raw)} bytes of binary data (base64 {base64.b64encode(raw[:24]).decode()}…)"
        )
    intent = Intent.solana_sign_message(chain=chain.name, message=text, summary=summary[:500])
    return intent, raw


def _decoded(text_or_b64: str, encoding: str) -> bytes | None:
    """The message's bytes; None when they do not decode."""
    if encoding == "utf8":
        try:
            return text_or_b64.encode("utf-8")
        except UnicodeEncodeError:
            return None
    if encoding == "base64":
        try:
            return binascii.a2b_base64(text_or_b64.strip().encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
    raise refuse(
        f"Unknown message encoding {str(encoding)[:20]!r}.",
        next_step='use encoding "utf8" or "base64".',
    )


def _message_bytes(text_or_b64: str, encoding: str) -> bytes:
    """The bytes to sign: decoded, not empty, and at most MAX_MESSAGE_SIZE."""
    if not isinstance(text_or_b64, str):
        raise refuse("The message must be a string.", next_step="send text or base64.")
    raw = _decoded(text_or_b64, encoding)
    if raw is None:
        raise refuse(
            f"The message is not valid {'UTF-8' if encoding == 'utf8' else 'base64'}.",
            next_step="send UTF-8 text, or standard base64 with padding.",
        )
    if not raw:
        raise refuse("The message is empty; there is nothing to sign.", next_step="send text.")
    if len(raw) > MAX_MESSAGE_SIZE:
        raise refuse(
            f"The message is {len(raw)} bytes; keysafe signs messages of at most "
            f"{MAX_MESSAGE_SIZE} bytes.",
            next_step="sign a hash of the data instead.",
        )
    return raw
