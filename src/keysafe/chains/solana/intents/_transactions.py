"""The intent of a whole Solana transaction (module doc of `keysafe.chains.solana.intents`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from keysafe.chains.solana.intents._common import (
    check_address,
    check_chain,
    fmt_lamports,
    printable,
    refuse,
    short,
)
from keysafe.chains.solana.intents._decode import decode, demote_foreign_ata
from keysafe.chains.solana.intents._judge import judge_alone, judge_transfers
from keysafe.chains.solana.intents._programs import (
    MAX_PRIORITY_FEE_LAMPORTS,
    SOL_DECIMALS,
    TOKEN_ACCOUNT_RENT_LAMPORTS,
)
from keysafe.chains.solana.intents._steps import Helper, Step, Transfer
from keysafe.chains.solana.intents._value import network_fee, priority_fee
from keysafe.chains.solana.tx import SolanaTx
from keysafe.policy.intent import Intent
from keysafe.policy.registry import ChainInfo, Registry, from_base_units

logger = logging.getLogger(__name__)


def check_signers(tx: SolanaTx, wallet: str) -> None:
    """Refuse unless the wallet signs, with at most a separate fee payer beside it."""
    if wallet not in tx.required_signers:
        raise refuse(
            f"This transaction does not need the wallet's signature ({wallet}); its signers are "
            f"{', '.join(tx.required_signers)}.",
            next_step="build the transaction with the wallet as fee payer or as a signer.",
        )
    others = [s for s in tx.required_signers if s not in (wallet, tx.fee_payer)]
    if others:
        raise refuse(
            f"This transaction also needs the signature of {', '.join(others)}; keysafe signs "
            "only transactions whose signers are the wallet and, optionally, a separate fee "
            "payer.",
            next_step="remove the other signers (e.g. create new accounts in a separate "
            "transaction signed by their owners).",
        )


# -- the intent -------------------------------------------------------------------------------


def intent_from_tx(
    tx: SolanaTx,
    *,
    registry: Registry,
    chain: ChainInfo,
    wallet_address: str,
    max_priority_fee_lamports: int = MAX_PRIORITY_FEE_LAMPORTS,
) -> Intent:
    """The intent of a parsed transaction, for the wallet `wallet_address` on `chain`.

    Args:
        tx: from `parse_transaction`.
        registry: chains and assets; SPL mints are looked up by address on `chain`.
        chain: the Solana cluster the transaction is for.
        wallet_address: the vault wallet that would sign.
        max_priority_fee_lamports: refuse a larger priority fee when the wallet pays the fee.

    Raises:
        MalformedRequestError: the transaction cannot be judged or signed (see module doc).
    """
    check_chain(chain)
    wallet = check_address(wallet_address, "wallet address")
    check_signers(tx, wallet)
    if not tx.instructions:
        raise refuse("The transaction has no instructions; there is nothing to sign.")
    steps = demote_foreign_ata([decode(tx, n, wallet) for n in range(len(tx.instructions))], wallet)
    costs = _costs(tx, steps, wallet, max_priority_fee_lamports)
    notes: list[str] = []
    judged = judge_alone(steps, registry, chain, wallet) or judge_transfers(
        steps, registry, chain, wallet, notes
    )
    notes.extend(_notes(tx, steps, wallet, costs))
    summary = "; ".join([judged.head, *notes])
    if len(summary) > 500:
        summary = summary[:499] + "…"
    # The wallet pays nothing when a sponsor pays the fee.
    paid = (costs.fee if tx.fee_payer == wallet else 0) + costs.rent
    intent: Intent | None = None
    with contextlib.suppress(ValidationError):
        intent = judged.build(
            chain=chain.name,
            asset=judged.asset,
            amount=judged.amount,
            unlimited=judged.unlimited,
            fee=from_base_units(paid, SOL_DECIMALS),
            to=judged.to,
            spender=judged.spender,
            contract=judged.contract,
            function=judged.function,
        )
    if intent is None:
        # Outside the handler: pydantic's error quotes the values it refused.
        raise refuse("keysafe could not describe this transaction within its request limits.")
    return intent.with_summary(summary)


@dataclass(frozen=True, slots=True)
class _Costs:
    """What the transaction costs beside the value it moves, in lamports."""

    fee: int  # network fee, priority fee included
    priority: int  # the priority fee alone
    gifted: int  # token accounts created for someone else
    rent: int  # their rent, which leaves the wallet for good


def _costs(tx: SolanaTx, steps: Sequence[Step], wallet: str, max_priority: int) -> _Costs:
    priority = priority_fee(steps)
    if tx.fee_payer == wallet and priority > max_priority:
        raise refuse(
            f"The transaction's compute-budget instructions allow a priority fee of up to "
            f"{fmt_lamports(priority)}, above keysafe's ceiling of {fmt_lamports(max_priority)}.",
            next_step="lower the compute-unit price or the compute-unit limit.",
        )
    # Token accounts created for someone else: their rent leaves the wallet for good. Counted
    # even when a sponsor pays the network fee (the wallet may still fund the account).
    gifted = sum(
        1 for s in steps if isinstance(s, Helper) and s.ata is not None and s.ata[1] != wallet
    )
    return _Costs(network_fee(tx, priority), priority, gifted, gifted * TOKEN_ACCOUNT_RENT_LAMPORTS)


def _notes(tx: SolanaTx, steps: Sequence[Step], wallet: str, costs: _Costs) -> list[str]:
    """The summary's notes after what is judged: lookup tables, fee, rent and memos."""
    notes: list[str] = []
    unresolved = [s for s in steps if isinstance(s, Transfer) and not s.resolved]
    if unresolved:
        notes.append(
            f"{len(unresolved)} transfer(s) use accounts from address lookup tables that "
            "cannot be resolved offline"
        )
    elif tx.lookup_tables:
        notes.append(f"loads accounts from {len(tx.lookup_tables)} lookup table(s)")
    fee_note = (
        f"network fee up to {fmt_lamports(costs.fee)}"
        if tx.fee_payer == wallet
        else f"fee paid by {short(tx.fee_payer)}"
    )
    if costs.priority:
        fee_note += f" (priority fee up to {fmt_lamports(costs.priority)})"
    notes.append(fee_note)
    if costs.rent:
        notes.append(
            f"creates {costs.gifted} token account(s) for the recipient: rent "
            f"{fmt_lamports(costs.rent)}, counted as fee"
        )
    memos = [s.memo for s in steps if isinstance(s, Helper) and s.memo is not None]
    if memos:
        notes.append("memo " + "; ".join(f'"{printable(m)}"' for m in memos))
    return notes
