"""System program instructions, decoded by a table keyed by instruction tag.

Every System instruction that moves lamports is a transfer; those that hand an account to a
program or a new authority are authority changes; the rest are calls (module doc of
`keysafe.chains.solana.intents`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from keysafe.chains.solana.intents._common import fmt_lamports, printable, refuse, short
from keysafe.chains.solana.intents._programs import SYSTEM_NAMES, SYSTEM_PROGRAM
from keysafe.chains.solana.intents._reader import (
    DataReader,
    Instruction,
    as_call,
    read_uint,
    short_data,
)
from keysafe.chains.solana.intents._steps import Authority, Call, Step, Transfer
from keysafe.chains.solana.tx import SolanaTx

logger = logging.getLogger(__name__)


def _created(new: str | None, owner: str, space: int) -> str:
    return f"creates account {short(new)} of program {short(owner)} ({space} bytes"


def _transfer(ix: Instruction) -> Step:
    """Transfer { lamports }: source, destination."""
    lamports = ix.data.u64()
    source, destination = ix.refs(2)
    return Transfer(SYSTEM_PROGRAM, ix.function, source, destination, source, units=lamports)


def _create_account(ix: Instruction) -> Step:
    """CreateAccount { lamports, space, owner }: funding, new account."""
    lamports, space, owner = ix.data.u64(), ix.data.u64(), ix.data.pubkey()
    source, new = ix.refs(2)
    note = _created(new.address, owner, space) + ")"
    return Transfer(SYSTEM_PROGRAM, ix.function, source, new, source, units=lamports, note=note)


def _create_account_with_seed(ix: Instruction) -> Step:
    """CreateAccountWithSeed { base, seed, lamports, space, owner }: funding, new account."""
    d = ix.data
    base, seed, lamports, space, owner = d.pubkey(), d.seed(), d.u64(), d.u64(), d.pubkey()
    source, new = ix.refs(2)
    note = f'{_created(new.address, owner, space)}, seed "{printable(seed, 32)}" of {short(base)})'
    return Transfer(SYSTEM_PROGRAM, ix.function, source, new, source, units=lamports, note=note)


def _transfer_with_seed(ix: Instruction) -> Step:
    """TransferWithSeed { lamports, from_seed, from_owner }: from, base, to."""
    lamports, seed, _owner = ix.data.u64(), ix.data.seed(), ix.data.pubkey()
    source, signer, destination = ix.refs(3)
    # The source is derived from `signer` (the base key, which signs): the signer's money,
    # judged as a transfer by that signer like any other.
    note = (
        f"from account {short(source.address)} derived from {short(signer.address)} "
        f'(seed "{printable(seed, 32)}")'
    )
    return Transfer(
        SYSTEM_PROGRAM, ix.function, source, destination, signer, units=lamports, note=note
    )


def _withdraw_nonce(ix: Instruction) -> Step:
    """WithdrawNonceAccount(lamports): nonce, to, recent blockhashes, rent, authority."""
    lamports = ix.data.u64()
    nonce, destination, _, _, authority = ix.refs(5)
    note = f"withdraws from nonce account {short(nonce.address)}"
    return Transfer(
        SYSTEM_PROGRAM, ix.function, nonce, destination, authority, units=lamports, note=note
    )


def _create_allow_prefund(ix: Instruction) -> Step:
    """CreateAccountAllowPrefund { lamports, space, owner }: new account, [funding]."""
    lamports, space, owner = ix.data.u64(), ix.data.u64(), ix.data.pubkey()
    (new,) = ix.refs(1)
    if len(ix.accounts) < 2 and lamports:
        raise refuse(
            f"Instruction {ix.n} ({ix.what}) moves {fmt_lamports(lamports)} but names no "
            "funding account; the program would refuse it."
        )
    if new.address == ix.wallet:
        # The wallet's own account would belong to `owner`: that program could then take
        # every lamport in it.
        return Authority(SYSTEM_PROGRAM, ix.function, new, "owner program", owner)
    if len(ix.accounts) < 2:  # no funding: moves nothing of the wallet's
        return Call(SYSTEM_PROGRAM, ix.name)
    source = ix.tx.account_ref(ix.accounts[1])
    note = _created(new.address, owner, space) + ")"
    return Transfer(SYSTEM_PROGRAM, ix.function, source, new, source, units=lamports, note=note)


def _assign(ix: Instruction) -> Step:
    """Assign { owner }: account; AssignWithSeed { base, seed, owner }: account, base."""
    if ix.name == "assignWithSeed":
        ix.data.pubkey(), ix.data.seed()
    owner = ix.data.pubkey()
    (account,) = ix.refs(1)
    return Authority(SYSTEM_PROGRAM, ix.function, account, "owner program", owner)


def _authorize_nonce(ix: Instruction) -> Step:
    """AuthorizeNonceAccount(new authority): nonce, authority."""
    new_authority = ix.data.pubkey()
    (nonce,) = ix.refs(1)
    return Authority(SYSTEM_PROGRAM, ix.function, nonce, "nonce authority", new_authority)


# Instruction tag -> decoder; any other tag is a call to the System program.
_DECODERS: Final[dict[int, Callable[[Instruction], Step]]] = {
    0: _create_account,
    1: _assign,
    2: _transfer,
    3: _create_account_with_seed,
    5: _withdraw_nonce,
    7: _authorize_nonce,
    10: _assign,
    11: _transfer_with_seed,
    13: _create_allow_prefund,
}


def decode_system(tx: SolanaTx, n: int, data: bytes, accounts: bytes, wallet: str) -> Step:
    """Instruction `n` of `tx`, a System program instruction, as a step.

    Raises:
        MalformedRequestError: short data or too few accounts, a bad seed (the program would
            refuse it), or a prefunded account creation without a funding account.
    """
    if len(data) < 4:
        raise short_data(n, "System program")
    tag = read_uint(data, 0, 4)
    name = SYSTEM_NAMES[tag] if tag < len(SYSTEM_NAMES) else f"instruction {tag}"
    label = f"System {name}"
    reader = DataReader(data, n, label, 4)
    ix = Instruction(tx, n, SYSTEM_PROGRAM, "system", name, label, accounts, reader, wallet)
    return _DECODERS.get(tag, as_call)(ix)
