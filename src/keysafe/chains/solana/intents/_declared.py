"""What the agent declared, held against what the transaction does."""

from __future__ import annotations

import logging
from decimal import Decimal

from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

from keysafe.chains.solana.intents._common import refuse
from keysafe.chains.solana.intents._programs import TOKEN_PROGRAMS
from keysafe.errors import MalformedRequestError
from keysafe.policy.intent import UNLIMITED, Intent
from keysafe.policy.registry import parse_decimal

logger = logging.getLogger(__name__)

# -- declared vs decoded ----------------------------------------------------------------------


def _mismatch(field_name: str, declared: str, decoded: str | None) -> MalformedRequestError:
    return refuse(
        f"The request declares {field_name} {declared[:100]!r}, but the transaction does "
        f"{'not name one' if decoded is None else repr(decoded)}; nothing was signed.",
        next_step="declare exactly what the transaction does (no blind signing).",
    )


def _owner_matches(decoded: Intent, owner: str) -> bool:
    """True when `decoded.to` is the associated token account of `owner` for its mint."""
    program = next(
        (p for p, label in TOKEN_PROGRAMS.items() if (decoded.function or "").startswith(label)),
        None,
    )
    if program is None or decoded.contract is None or decoded.to is None:
        return False
    try:
        derived = get_associated_token_address(
            Pubkey.from_string(owner),
            Pubkey.from_string(decoded.contract),
            Pubkey.from_string(program),
        )
    except (ValueError, TypeError):
        return False
    return str(derived) == decoded.to


def check_declared(decoded: Intent, declared: Intent) -> Intent:
    """Refuse unless what the agent declared is what the transaction does; return what to judge.

    Compared: action; chain, asset, amount, recipient and contract when either side has one;
    spender when declared. Amounts compare as decimals ("0.50" == "0.5") or as "unlimited".
    Assets compare by symbol (any case) or by mint.
    For an SPL transfer the agent may declare the recipient's *wallet*: it is accepted when the
    decoded destination is that wallet's associated token account (derived here, not trusted),
    and the returned intent then names the wallet as `to`, so recipient rules see the person.

    Raises:
        MalformedRequestError: any difference; nothing may be signed.
    """
    if declared.action != decoded.action:
        raise _mismatch("action", declared.action, decoded.action)
    if declared.chain is not None and str(declared.chain).lower() != str(decoded.chain).lower():
        raise _mismatch("chain", str(declared.chain), str(decoded.chain))
    if (declared.amount is None) != (decoded.amount is None):
        raise _mismatch("amount", declared.amount or "none", decoded.amount)
    if declared.amount is not None and decoded.amount is not None:
        if UNLIMITED in (declared.amount.strip().lower(), decoded.amount):
            same = declared.amount.strip().lower() == decoded.amount
        else:
            try:
                same = parse_decimal(declared.amount) == Decimal(decoded.amount)
            except ValueError:
                same = False
        if not same:
            raise _mismatch("amount", declared.amount, decoded.amount)
    if declared.asset is not None or decoded.asset is not None:
        if decoded.asset is None:
            raise refuse(
                f"The request declares asset {declared.asset!r}, but this {decoded.action} names "
                "no mint, so keysafe cannot confirm which token it moves; nothing was signed.",
                next_step="use transferChecked or approveChecked, which name the mint and its "
                "decimals.",
            )
        ok = declared.asset is not None and (
            declared.asset.upper() == decoded.asset.upper() or declared.asset == decoded.contract
        )
        if not ok:
            raise _mismatch("asset", declared.asset or "none", decoded.asset)
    if declared.contract is not None and declared.contract != decoded.contract:
        raise _mismatch("contract", declared.contract, decoded.contract)
    if declared.spender is not None and declared.spender != decoded.spender:
        raise _mismatch("spender", declared.spender, decoded.spender)
    if declared.to is None and decoded.to is None:
        return decoded
    if declared.to is None:
        raise _mismatch("recipient", "none", decoded.to)
    if declared.to == decoded.to:
        return decoded
    if _owner_matches(decoded, declared.to):
        summary = f"{decoded.summary or ''} (token account of {declared.to})"[:500]
        return decoded.model_copy(update={"to": declared.to, "summary": summary})
    raise _mismatch("recipient", declared.to, decoded.to)


# -- messages ---------------------------------------------------------------------------------
