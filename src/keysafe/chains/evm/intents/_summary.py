"""The one-line description of an EVM intent the owner reads, built from the intent's own fields.

Text from the request (domain names, messages, addresses of unknown length) is cleaned of control
and bidi characters and shortened before it is shown.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from typing import Final

from keysafe.policy.intent import Intent

logger = logging.getLogger(__name__)

_SIWE: Final = re.compile(r"\A(?P<domain>\S{1,253}) wants you to sign in\b")


def short(address: str | None) -> str:
    """`0x1234…abcd` for an address; other text cleaned and cut to 20 characters."""
    if not address:
        return "nobody"
    return f"{address[:6]}…{address[-4:]}" if len(address) == 42 else clean(address, 20)


def clean(text: str, limit: int = 60) -> str:
    """Request text made safe to show: no control, format (bidi) or line characters, shortened."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        out.append(" " if cat[0] == "C" or cat in ("Zl", "Zp") else ch)
    cleaned = " ".join("".join(out).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def chain_label(chain: str | int | None) -> str:
    """ "Base" for `base`, "chain 10" for a bare id."""
    if chain is None:
        return "an unnamed chain"
    return str(chain).replace("-", " ").title() if isinstance(chain, str) else f"chain {chain}"


def _is_address(text: str | None) -> bool:
    return bool(text) and len(text or "") == 42 and (text or "").startswith("0x")


def _asset_name(i: Intent) -> str:
    if _is_address(i.asset):
        return f"unknown token {short(i.asset)}"
    return i.asset or "tokens"


def _where(i: Intent) -> str:
    chain = chain_label(i.chain)
    if not i.contract or i.contract == i.asset:  # an unknown token is already named by address
        return f"on {chain}"
    return f"{short(i.contract)} on {chain}"


def _amount_phrase(i: Intent) -> str:
    chain = chain_label(i.chain)
    if i.is_unlimited:
        return f"UNLIMITED {_asset_name(i)} ({_where(i)})"
    if _is_address(i.asset):
        return f"{i.amount} base units of unknown token {short(i.asset)} on {chain}"
    if i.contract:
        return f"{i.amount} {i.asset} ({short(i.contract)} on {chain})"
    return f"{i.amount} {i.asset} on {chain}"


def _transfer(i: Intent) -> str:
    return f"send {_amount_phrase(i)} to {short(i.to)}"


def _approve(i: Intent) -> str:
    chain = chain_label(i.chain)
    if i.function == "setApprovalForAll(address,bool)":
        if i.is_unlimited:
            return f"APPROVE ALL NFTs of {short(i.contract)} on {chain} to {short(i.spender)}"
        return (
            f"revoke {short(i.spender)}'s approval for all NFTs of {short(i.contract)} on {chain}"
        )
    if i.is_unlimited:
        return f"APPROVE UNLIMITED {_asset_name(i)} to {short(i.spender)} ({_where(i)})"
    if i.amount is None:
        return f"approve {short(i.spender)} ({_where(i)})"
    if _is_address(i.asset):
        return (
            f"approve {i.amount} base units of unknown token {short(i.asset)} to "
            f"{short(i.spender)} on {chain}"
        )
    return f"approve {i.amount} {i.asset} to {short(i.spender)} ({_where(i)})"


def _call(i: Intent) -> str:
    what = i.function or f"unknown function {i.selector}"
    text = f"call {what} on {short(i.contract)} on {chain_label(i.chain)}"
    return text if i.amount is None else f"{text} with {i.amount} {i.asset} attached"


def _deploy(i: Intent) -> str:
    text = f"deploy a contract on {chain_label(i.chain)}"
    return text if i.amount is None else f"{text} with {i.amount} {i.asset}"


def _sign_message(i: Intent) -> str:
    m = _SIWE.match(i.message or "")
    if m:
        return f"sign in to {clean(m.group('domain'), 80)}"
    return f'sign the message "{clean(i.message or "", 80)}"'


def _sign_typed_data(i: Intent) -> str:
    name = clean(str((i.domain or {}).get("name", "")), 40) or "an unnamed app"
    return f'sign typed data for "{name}" ({_where(i)})'


# The phrase for each action; any other action is named as it is.
_PHRASES: Final[dict[str, Callable[[Intent], str]]] = {
    "evm.transfer": _transfer,
    "evm.approve": _approve,
    "evm.call": _call,
    "evm.deploy": _deploy,
    "evm.sign_message": _sign_message,
    "evm.sign_typed_data": _sign_typed_data,
}


def summarize(intent: Intent, *, how: str | None = None) -> str:
    """A one-line description of `intent` for the owner, built from the intent's own fields.

    e.g. "send 25 USDC (0x8335…2913 on Base) to 0x1111…1111, max fee 0.00042 ETH", "APPROVE
    UNLIMITED USDC to 0xdead…beef (0x8335…2913 on Base)", "sign in to example.com". `how` adds a
    note on the mechanism ("by EIP-2612 permit signature").
    """
    phrase = _PHRASES.get(intent.action)
    text = phrase(intent) if phrase else f"{intent.action} on {chain_label(intent.chain)}"
    if how:
        text = f"{text} {how}"
    if intent.fee is not None:
        text = f"{text}, max fee {intent.fee} ETH"  # EVM fees are paid in ETH on every EVM chain
    return text if len(text) <= 500 else text[:499] + "…"
