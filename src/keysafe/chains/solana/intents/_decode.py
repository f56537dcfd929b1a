"""Each instruction of a transaction decoded into a step, by program."""

from __future__ import annotations

import logging

from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

from keysafe.chains.solana.intents._common import refuse
from keysafe.chains.solana.intents._programs import (
    ASSOCIATED_TOKEN_PROGRAM,
    BUDGET_DATA_SIZE,
    COMPUTE_BUDGET_PROGRAM,
    MEMO_PROGRAMS,
    SYSTEM_PROGRAM,
    TOKEN_PROGRAMS,
)
from keysafe.chains.solana.intents._reader import read_uint
from keysafe.chains.solana.intents._steps import Budget, Call, Helper, Step, Transfer
from keysafe.chains.solana.intents._system import decode_system
from keysafe.chains.solana.intents._token import decode_token
from keysafe.chains.solana.tx import SolanaTx

logger = logging.getLogger(__name__)


def _decode_ata(tx: SolanaTx, data: bytes, accounts: bytes) -> Step:
    # Create (no data or [0]) and CreateIdempotent ([1]): payer, account, owner, mint, system,
    # token program. The program derives the account itself, so we can prove whose it is.
    if len(data) > 1 or (data and data[0] not in (0, 1)) or len(accounts) < 6:
        return Call(ASSOCIATED_TOKEN_PROGRAM, "recoverNested" if data[:1] == b"\x02" else "")
    refs = [tx.account_ref(i) for i in accounts[:6]]
    ata: tuple[str, str] | None = None
    account, owner, mint = refs[1].address, refs[2].address, refs[3].address
    token_program = refs[5].address
    if account and owner and mint and token_program in TOKEN_PROGRAMS:
        derived = get_associated_token_address(
            Pubkey.from_string(owner), Pubkey.from_string(mint), Pubkey.from_string(token_program)
        )
        if str(derived) == account:
            ata = (account, owner)
    return Helper(ASSOCIATED_TOKEN_PROGRAM, "create token account", ata=ata)


def _decode_budget(n: int, data: bytes) -> Budget:
    tag = data[0] if data else -1
    size = BUDGET_DATA_SIZE.get(tag)
    if size is None or len(data) != size:
        raise refuse(
            f"Instruction {n} is a compute-budget instruction keysafe cannot read (unknown or "
            "malformed); the runtime would refuse it."
        )
    return Budget(tag, read_uint(data, 1, size - 1))


def decode(tx: SolanaTx, n: int, wallet: str) -> Step:
    """Instruction `n` of `tx` as a step, by its program."""
    ix = tx.instructions[n]
    program = tx.program_id(ix)
    data, accounts = bytes(ix.data), bytes(ix.accounts)
    if program == SYSTEM_PROGRAM:
        return decode_system(tx, n, data, accounts, wallet)
    if program in TOKEN_PROGRAMS:
        return decode_token(tx, program, n, data, accounts, wallet)
    if program == COMPUTE_BUDGET_PROGRAM:
        return _decode_budget(n, data)
    if program in MEMO_PROGRAMS:
        text = data.decode("utf-8", errors="replace")
        return Helper(program, "memo", memo=text)
    if program == ASSOCIATED_TOKEN_PROGRAM:
        return _decode_ata(tx, data, accounts)
    return Call(program, "")


def demote_foreign_ata(steps: list[Step], wallet: str) -> list[Step]:
    """Creating a token account is a helper only for the wallet or for a transfer's recipient.

    The payer funds the new account's rent and its owner can close it and keep the lamports,
    so creating accounts for anyone else is a way to move SOL: it counts as a call.
    """
    destinations = {
        s.destination.address for s in steps if isinstance(s, Transfer) and s.destination.address
    }
    out: list[Step] = []
    for s in steps:
        if (
            isinstance(s, Helper)
            and s.program == ASSOCIATED_TOKEN_PROGRAM
            and not (s.ata is not None and (s.ata[1] == wallet or s.ata[0] in destinations))
        ):
            s = Call(ASSOCIATED_TOKEN_PROGRAM, "create")
        out.append(s)
    return out
