"""Argument types the MCP tools share, and how a tool's body argument is sent.

They live at module level, imported by name where a tool is defined: the SDK resolves a tool's
annotations by name to build its input schema.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field

from keysafe.client._calls import Call

# Argument types shared by several tools (module level: the SDK resolves annotations by name).
Wallet = Annotated[str, Field(description='Wallet name, e.g. "main".', max_length=64)]
Transaction = Annotated[
    dict[str, Any] | str,
    Field(
        description="EVM: a JSON object such as "
        '{"to": "0x1111…", "value": "0x2386f26fc10000", "chainId": 8453} (nonce, gas and '
        "fees are filled in when an RPC is configured) or unsigned RLP hex. Solana: the "
        "serialized transaction, base64."
    ),
]
Description = Annotated[
    str | None,
    Field(
        description="Why, in one sentence; shown to the owner if approval is needed.",
        max_length=500,
    ),
]
IdemKey = Annotated[
    str | None,
    Field(
        description="Reuse the same key to retry safely: the vault acts at most once.",
        max_length=200,
    ),
]
ChainName = Annotated[
    str | None,
    Field(
        description='Chain name, e.g. "base" or "solana"; EVM reads chainId if omitted.',
        max_length=64,
    ),
]


# transfer's arguments
_ASSET = (
    '"native" for the chain\'s own coin (ETH, SOL), or a token symbol your policy names, e.g. '
    '"USDC" (or the token\'s contract or mint address).'
)
_RECIPIENT = (
    "The recipient's address. For a Solana token give the owner's wallet address, not a token "
    "account."
)
_AMOUNT = (
    'How much, as a decimal string in whole units: "0.5" ETH, "12.5" USDC (not base units, '
    "not a number type)."
)
_CHAIN = (
    'Chain name, e.g. "base" or "solana". Needed for the native coin and for tokens on several '
    "chains."
)
Asset = Annotated[str, Field(description=_ASSET, max_length=64)]
Recipient = Annotated[str, Field(description=_RECIPIENT, max_length=64)]
Amount = Annotated[str, Field(description=_AMOUNT, max_length=100)]
TransferChain = Annotated[str | None, Field(description=_CHAIN, max_length=64)]

# sign_message's arguments
Message = Annotated[
    str, Field(description="The message, e.g. a Sign-In with Ethereum text.", max_length=65536)
]
Encoding = Annotated[
    Literal["utf8", "base64"], Field(description='"utf8" (default) or "base64" for raw bytes.')
]


# A JSON value, or text. Models send a JSON body either way, and the SDK turns a string that
# looks like JSON into an object before validation: `str` alone refused every JSON body.
JsonValue = dict[str, Any] | list[Any] | str | int | float | bool
Body = Annotated[
    JsonValue | None,
    Field(
        description="Request body: text is sent as it is; a JSON object or array is sent as "
        "JSON (Content-Type application/json unless you set one)."
    ),
]


def request_body(
    body: JsonValue | None, headers: dict[str, str] | None
) -> tuple[str | None, dict[str, str] | None]:
    """The body as the bytes' text, serialised once; a JSON body gets its content type."""
    if body is None or isinstance(body, str):
        return body, headers
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if not any(k.lower() == "content-type" for k in headers or {}):
        headers = {**(headers or {}), "Content-Type": "application/json"}
    return text, headers


def body_of(call: Call[Any]) -> dict[str, Any]:
    """The JSON body keysafe.client posts for a tool's arguments: a signing tool builds its body
    with the client's route builder, so the two agent-side callers send the same request."""
    assert call.body is not None  # every route a tool posts to takes a body
    return call.body


def drop_none(**kw: Any) -> dict[str, Any]:
    """The arguments given a value: the request body leaves the others out."""
    return {k: v for k, v in kw.items() if v is not None}
