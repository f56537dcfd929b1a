"""What the policy judges of a whole transaction: one value move, or one approval, authority
change or closing on its own."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, Unpack

from keysafe.chains.solana.intents._common import refuse, short
from keysafe.chains.solana.intents._programs import (
    COMPUTE_BUDGET_PROGRAM,
    SPL_UNLIMITED_FROM,
    SYSTEM_PROGRAM,
)
from keysafe.chains.solana.intents._steps import (
    Alone,
    Approve,
    Authority,
    Call,
    Close,
    Helper,
    Step,
    Transfer,
)
from keysafe.chains.solana.intents._value import Value, asset_of, native_asset, value_of
from keysafe.policy.intent import UNLIMITED, Intent, SolanaMove
from keysafe.policy.registry import ChainInfo, Registry

logger = logging.getLogger(__name__)


def transfer_phrase(v: Value, owners: dict[str, str], wallet: str) -> str:
    """ "0.5 SOL to 9xQe…WdKp": what the transfers move, to whom, from whom."""
    if v.asset is None:
        what = f"{v.amount} base units of an unknown token"
    elif v.mint is not None and v.known:
        what = f"{v.amount} {v.asset} (mint {short(v.mint)})"
    elif v.mint is not None:
        what = f"{v.amount} of unregistered token mint {short(v.mint)}"
    else:
        what = f"{v.amount} {v.asset}"
    to = v.to
    if to is None:
        target = "an account from a lookup table (not resolvable offline)"
    elif v.mint is not None or v.asset is None:
        target = f"token account {short(to)}"
        if to in owners:
            target += f" (owner {short(owners[to])})"
    else:
        target = short(to)
    phrase = f"{what} to {target}"
    senders = sorted({short(s) for s in v.sources if s != wallet})
    if senders:
        phrase += " from " + ", ".join(senders)
    if v.asset is None:
        phrase += f" ({v.unknown_why}, so the asset and decimals are unknown)"
    return phrase


class SolanaConstructor(Protocol):
    """`Intent.solana_transfer` and its siblings: one per action."""

    def __call__(self, *, chain: str, **move: Unpack[SolanaMove]) -> Intent: ...


@dataclass(frozen=True, slots=True)
class Judged:
    """What the policy judges, before the common parts (chain, fee, notes) are added."""

    build: SolanaConstructor  # the per-action constructor of the intent
    head: str  # the summary's first phrase
    asset: str | None = None
    amount: str | None = None
    unlimited: bool | None = None
    to: str | None = None
    spender: str | None = None
    contract: str | None = None
    function: str | None = None


def _token_name(v: Value) -> str:
    if v.mint is not None and v.known:
        return f"{v.asset} (mint {short(v.mint)})"
    if v.mint is not None:
        return f"unregistered token mint {short(v.mint)}"
    return str(v.asset)


def _judge_approve(a: Approve, registry: Registry, chain: ChainInfo) -> Judged:
    _, v = asset_of(a, registry, chain)
    v.units = a.units
    huge = a.units >= SPL_UNLIMITED_FROM
    source = f"token account {short(a.source.address)}"
    if v.asset is None:
        # No mint, so no decimals: the amount stays in base units and is never "unlimited",
        # so the engine cannot judge it and denies (an unlimited amount would skip that check).
        what = (
            f"{'UNLIMITED (' if huge else ''}{a.units} base units{')' if huge else ''} of an "
            f"unknown token ({v.unknown_why.replace('transfer', 'approval')}, so the asset and "
            "decimals are unknown)"
        )
        amount, unlimited = str(a.units), False
    elif huge:
        what, amount, unlimited = f"UNLIMITED {_token_name(v)}", UNLIMITED, True
    else:
        what, amount, unlimited = f"{v.amount} {_token_name(v)}", v.amount, False
    return Judged(
        Intent.solana_approve,
        f"approve {short(a.delegate.address)} to spend {what} from {source}",
        asset=v.asset,
        amount=amount,
        unlimited=unlimited,
        spender=a.delegate.address,
        contract=v.mint,
        function=a.function,
    )


def _judge_authority(a: Authority, native: str, wallet: str) -> Judged:
    account = short(a.account.address) + (" (the wallet)" if a.account.address == wallet else "")
    if a.program == SYSTEM_PROGRAM:
        if a.kind == "owner program":
            head = f"hand account {account} to program {short(a.new)}, which then controls all "
        else:
            head = f"hand the authority of nonce account {account} to {short(a.new)}, who then "
            head += "controls "
        head += f"its {native}"
    elif a.new is None:
        head = f"REMOVE the {a.kind} authority of {account} for good"
    else:
        head = f"hand the {a.kind} authority of {account} to {short(a.new)}"
    # Control of an account carries everything it holds or can mint: no cap can bound it.
    return Judged(
        Intent.solana_set_authority,
        head + " (judged as unlimited)",
        asset=native if a.program == SYSTEM_PROGRAM else None,
        amount=UNLIMITED,
        unlimited=True,
        to=a.new,
        spender=a.new,
        contract=a.account.address,
        function=a.function,
    )


def _judge_close(c: Close, native: str) -> Judged:
    # The instruction moves the account's whole lamport balance (rent, and for a wrapped-SOL
    # account the wrapped SOL too) without saying how much: only a rule that allows this action
    # with no cap can allow it.
    head = (
        f"close token account {short(c.account.address)}: ALL its {native} (rent, and for "
        f"wrapped {native} the whole balance; not stated in the instruction, so judged as "
        f"unlimited) goes to {short(c.destination.address)}"
    )
    return Judged(
        Intent.solana_close_account,
        head,
        asset=native,
        amount=UNLIMITED,
        unlimited=True,
        to=c.destination.address,
        contract=c.account.address,
        function=c.function,
    )


def judge_alone(
    steps: Sequence[Step], registry: Registry, chain: ChainInfo, wallet: str
) -> Judged | None:
    """An approval, authority change or closing: judged on its own, or the transaction refused."""
    alone = [(n, s) for n, s in enumerate(steps) if isinstance(s, Alone)]
    if not alone:
        return None
    n, step = alone[0]
    others = [s for s in steps if isinstance(s, Transfer | Call)]
    if len(alone) > 1 or others:
        what = [s.function for _, s in alone] + [
            s.function if isinstance(s, Transfer) else f"a call to program {short(s.program)}"
            for s in others
        ]
        raise refuse(
            f"The transaction does {len(what)} things ({', '.join(dict.fromkeys(what))}); "
            "keysafe judges an approval, an authority change or closing an account to someone "
            "else only on its own, so that no value move hides behind another.",
            next_step="send it in a transaction of its own (compute-budget and memo "
            "instructions may stay).",
        )
    if isinstance(step, Approve):
        refs = [step.source, step.delegate, step.owner, step.mint]
    elif isinstance(step, Authority):
        refs = [step.account]
    else:
        refs = [step.account, step.destination]
    if not all(r is None or r.resolved for r in refs):
        raise refuse(
            f"Instruction {n} ({step.function}) names accounts from an address lookup table, "
            "which keysafe cannot resolve offline, so it cannot tell what is handed to whom.",
            next_step="list those accounts as static keys (not from a lookup table).",
        )
    native = native_asset(registry, chain).symbol
    if isinstance(step, Approve):
        return _judge_approve(step, registry, chain)
    if isinstance(step, Authority):
        return _judge_authority(step, native, wallet)
    return _judge_close(step, native)


def judge_transfers(
    steps: Sequence[Step], registry: Registry, chain: ChainInfo, wallet: str, notes: list[str]
) -> Judged:
    """Transfers and calls (module doc, "The intent of the whole transaction")."""
    transfers = [s for s in steps if isinstance(s, Transfer)]
    programs: list[str] = []
    for s in steps:
        if (isinstance(s, Call) or (isinstance(s, Transfer) and not s.resolved)) and (
            s.program not in programs
        ):
            programs.append(s.program)
    if len(programs) > 1:
        raise refuse(
            f"The transaction calls {len(programs)} programs ({', '.join(programs)}); keysafe "
            "judges a call to one program per transaction.",
            next_step="split the transaction, one program per transaction.",
        )
    value = value_of(transfers, registry, chain)
    helpers = [s for s in steps if isinstance(s, Helper)]
    owners = {h.ata[0]: h.ata[1] for h in helpers if h.ata is not None}
    n = len(steps)
    notes.extend(dict.fromkeys(t.note for t in transfers if t.note))
    if programs or value is None:
        if programs:
            contract = programs[0]
        else:  # only helpers and compute-budget instructions
            non_budget = [s.program for s in steps if isinstance(s, Helper)]
            contract = non_budget[0] if non_budget else COMPUTE_BUDGET_PROGRAM
        names = sorted({s.what for s in steps if isinstance(s, Call) and s.what})
        head = f"call program {short(contract)}"
        if names:
            head += f" ({', '.join(names)})"
        head += f" ({n} instruction{'s' if n != 1 else ''})"
        if value is not None:
            notes.insert(0, "sends " + transfer_phrase(value, owners, wallet))
        return Judged(
            Intent.solana_call,
            head,
            asset=value.asset if value else None,
            amount=value.amount if value else None,
            to=value.to if value else None,
            contract=contract,
        )
    return Judged(
        Intent.solana_transfer,
        "send " + transfer_phrase(value, owners, wallet),
        asset=value.asset,
        amount=value.amount,
        to=value.to,
        contract=value.mint,
        function=value.function,
    )
