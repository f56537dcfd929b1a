"""What every Solana decoder shares: its refusal and how it shows addresses and text."""

from __future__ import annotations

import logging
from typing import Final

from solders.pubkey import Pubkey

from keysafe.chains.solana.intents._programs import SOL_DECIMALS
from keysafe.errors import MalformedRequestError
from keysafe.policy.registry import ChainInfo, from_base_units

logger = logging.getLogger(__name__)

REBUILD: Final = "rebuild the transaction with your Solana library and send it again."


def refuse(what: str, next_step: str = REBUILD) -> MalformedRequestError:
    """The refusal of a transaction or message keysafe will not sign."""
    return MalformedRequestError(what, next_step=next_step)


def short(address: str | None) -> str:
    """`abcd…wxyz` for an address; a lookup-table account is named as such."""
    if address is None:
        return "an account from a lookup table"
    return f"{address[:4]}…{address[-4:]}" if len(address) > 10 else address


def printable(text: str, limit: int = 80) -> str:
    """Text safe for a one-line summary: no control characters, bounded length."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def fmt_lamports(lamports: int) -> str:
    """`lamports` as SOL, e.g. "0.000005 SOL"."""
    return f"{from_base_units(lamports, SOL_DECIMALS)} SOL"


def check_chain(chain: ChainInfo) -> None:
    """Refuse a chain that is not a Solana cluster."""
    if chain.family != "solana":
        raise refuse(
            f"The chain '{chain.name}' is not a Solana cluster.",
            next_step="name a Solana chain (solana, solana-devnet, solana-local).",
        )


def check_address(address: str, what: str) -> str:
    """`address` as a canonical base58 public key, or refused (`what` names it)."""
    try:
        return str(Pubkey.from_string(address))
    except (ValueError, TypeError):
        raise refuse(
            f"The {what} is not a Solana address.", next_step="use a base58 Solana address."
        ) from None
