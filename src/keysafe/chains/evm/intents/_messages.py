"""personal_sign (EIP-191 version 0x45): which bytes a message is, and what signing it says."""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Final

from keysafe.chains.evm.intents._common import bad, described, require_evm
from keysafe.chains.evm.intents._summary import chain_label
from keysafe.policy.intent import Intent
from keysafe.policy.registry import ChainInfo

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS: Final = 65536  # Intent.message's limit
_HEX_MESSAGE: Final = re.compile(r"0x(?:[0-9a-fA-F]{2})+")


def _as_text(payload: bytes) -> str | None:
    """The payload as text when it is UTF-8 without control characters (other than newlines)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\r\t" for ch in text):
        return None
    return text


def personal_message_bytes(message: str) -> bytes:
    """The bytes personal_sign signs for `message`: "0x" + an even number of hex digits is
    bytes (as MetaMask reads it), anything else UTF-8 text. The agent's side of a 2-of-3
    wallet reads a message with this same rule.

    Raises:
        MalformedRequestError: not a string, too long, not valid Unicode, or empty.
    """
    if not isinstance(message, str):
        bad("the message to sign must be a string (text, or 0x-prefixed hex for bytes).")
    if len(message) > MAX_MESSAGE_CHARS:
        bad(f"the message is longer than {MAX_MESSAGE_CHARS} characters.")
    if _HEX_MESSAGE.fullmatch(message):
        payload = bytes.fromhex(message[2:])
    else:
        try:
            payload = message.encode("utf-8")
        except UnicodeEncodeError:
            bad("the message is not valid Unicode text (it has lone surrogates).")
    if not payload:
        bad("the message is empty; there is nothing to sign.")
    return payload


def intent_from_personal_message(message: str, *, chain: ChainInfo) -> tuple[Intent, bytes]:
    """Decode a personal_sign request.

    As MetaMask does, a message of the form "0x" + hex digits (an even number) is bytes; any
    other string is UTF-8 text. Hex that decodes to plain text is judged as that text, so a
    policy's `message_matches` sees "example.com wants you to sign in" however it was sent.

    Returns:
        The intent, and the message bytes to sign. `sign_personal_message` adds the EIP-191
        prefix "\\x19Ethereum Signed Message:\\n" + length itself.

    Raises:
        MalformedRequestError: `chain` is not an EVM chain, or the message is unreadable
            (`personal_message_bytes`).
    """
    require_evm(chain)
    payload = personal_message_bytes(message)
    text = _as_text(payload) if _HEX_MESSAGE.fullmatch(message) else message
    if text is not None:
        return described(lambda: Intent.evm_sign_message(chain=chain.name, message=text)), payload
    hex_text = "0x" + payload.hex()
    blind = (
        f"sign {len(payload)} bytes of binary data ({hex_text[:10]}…{hex_text[-4:]}) "
        f"on {chain_label(chain.name)}: blind signing, the data cannot be shown as text"
    )
    intent = described(
        lambda: Intent.evm_sign_message(chain=chain.name, message=hex_text), summary=blind
    )
    return intent, payload
