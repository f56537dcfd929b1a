"""SPL Token and Token-2022 instructions, decoded by a table keyed by instruction tag.

Transfers and approvals name their mint only in their Checked forms; `setAuthority` hands over
control; `closeAccount` is a helper when the rent goes back to the wallet and a value move
otherwise (module doc of `keysafe.chains.solana.intents`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from keysafe.chains.solana.intents._common import refuse
from keysafe.chains.solana.intents._programs import (
    AUTHORITY_TYPES,
    TOKEN_2022_PROGRAM,
    TOKEN_NAMES,
    TOKEN_PROGRAMS,
)
from keysafe.chains.solana.intents._reader import DataReader, Instruction, as_call, short_data
from keysafe.chains.solana.intents._steps import (
    Approve,
    Authority,
    Close,
    Helper,
    Step,
    Transfer,
)
from keysafe.chains.solana.tx import AccountRef, SolanaTx

logger = logging.getLogger(__name__)


def _amount(ix: Instruction) -> tuple[int, int | None, AccountRef | None, list[AccountRef]]:
    """(amount, decimals, mint, the other accounts) of a transfer or an approval: its Checked
    form adds decimals to the data and the mint as second account."""
    amount = ix.data.u64()
    if not ix.name.endswith("Checked"):
        return amount, None, None, ix.refs(3)
    decimals = ix.data.take(1)[0]
    first, mint, *rest = ix.refs(4)
    return amount, decimals, mint, [first, *rest]


def _transfer(ix: Instruction) -> Step:
    """Transfer: source, destination, authority; TransferChecked: source, mint, destination,
    authority."""
    amount, decimals, mint, (src, dst, auth) = _amount(ix)
    return Transfer(
        ix.program, ix.function, src, dst, auth, units=amount, mint=mint, decimals=decimals
    )


def _approve(ix: Instruction) -> Step:
    """Approve: source, delegate, owner; ApproveChecked: source, mint, delegate, owner."""
    amount, decimals, mint, (src, delegate, owner) = _amount(ix)
    return Approve(
        ix.program, ix.function, src, delegate, owner, units=amount, mint=mint, decimals=decimals
    )


def _set_authority(ix: Instruction) -> Step:
    """SetAuthority { type: u8, new: COption<Pubkey> }: account, current authority."""
    kind, flag = ix.data.take(1)[0], ix.data.take(1)[0]
    if flag not in (0, 1):
        raise refuse(
            f"Instruction {ix.n} ({ix.what}) has a malformed new authority; the program would "
            "refuse it."
        )
    new_authority = ix.data.pubkey() if flag == 1 else None
    (account,) = ix.refs(2)[:1]
    names = AUTHORITY_TYPES if ix.program == TOKEN_2022_PROGRAM else AUTHORITY_TYPES[:4]
    kind_name = names[kind] if kind < len(names) else f"authority type {kind}"
    return Authority(ix.program, ix.function, account, kind_name, new_authority)


def _sync_native(ix: Instruction) -> Step:
    return Helper(ix.program, "sync native SOL")


def _close_account(ix: Instruction) -> Step:
    """CloseAccount: account, destination, owner."""
    account, destination, _owner = ix.refs(3)
    if destination.address == ix.wallet:
        return Helper(ix.program, "close a token account (rent back to the wallet)")
    return Close(ix.program, ix.function, account, destination)


# Instruction tag -> decoder; any other tag is a call to the token program.
_DECODERS: Final[dict[int, Callable[[Instruction], Step]]] = {
    3: _transfer,
    4: _approve,
    6: _set_authority,
    9: _close_account,
    12: _transfer,
    13: _approve,
    17: _sync_native,
}


def decode_token(
    tx: SolanaTx, program: str, n: int, data: bytes, accounts: bytes, wallet: str
) -> Step:
    """Instruction `n` of `tx`, an SPL Token or Token-2022 instruction, as a step.

    Raises:
        MalformedRequestError: short data, too few accounts or a malformed new authority (the
            program would refuse it).
    """
    label = TOKEN_PROGRAMS[program]
    if not data:
        raise short_data(n, label)
    tag = data[0]
    name = TOKEN_NAMES[tag] if tag < len(TOKEN_NAMES) else f"instruction {tag}"
    what = f"{label} {name}"
    reader = DataReader(data, n, what, 1)
    ix = Instruction(tx, n, program, label, name, what, accounts, reader, wallet)
    return _DECODERS.get(tag, as_call)(ix)
