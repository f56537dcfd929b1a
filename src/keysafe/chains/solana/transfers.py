"""The unsigned transaction of a plain transfer: SOL, or an SPL token to its owner's account.

    >>> b64 = build_transfer(wallet=ME, to=BOB, units=5, blockhash=H)            # doctest: +SKIP
    >>> b64 = build_transfer(wallet=ME, to=BOB, units=5_000_000, blockhash=H,
    ...                      token=SplToken(USDC_MINT, 6, TOKEN_PROGRAM),
    ...                      create_account=True)                                 # doctest: +SKIP

A token moves with `transferChecked` (it names the mint and the decimals, so the token program
itself refuses a wrong decimals count and the decoder can tell the asset) from the wallet's
associated token account to the recipient's. When the recipient's account does not exist yet,
the associated-token-account program's `CreateIdempotent` comes first: idempotent, so a chain that
created the account meanwhile (or an RPC that answered wrongly) makes it a no-op, never a failure.
The wallet pays the fee (and that account's rent). The result is the base64 wire form with an
empty signature slot, which `tx.parse_transaction` reads and the decoders judge.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final

from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams
from solders.system_program import transfer as system_transfer
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

from keysafe.chains.solana.intents import ASSOCIATED_TOKEN_PROGRAM, SYSTEM_PROGRAM

__all__ = ["SplToken", "associated_account", "build_transfer"]

_TRANSFER_CHECKED: Final = 12  # spl-token TokenInstruction::TransferChecked
_CREATE_IDEMPOTENT: Final = 1  # spl-associated-token-account CreateIdempotent


@dataclass(frozen=True, slots=True)
class SplToken:
    """An SPL token mint: its decimals and the token program that owns it."""

    mint: str
    decimals: int
    program: str  # the token program that owns the mint: Token or Token-2022


def associated_account(owner: str, token: SplToken) -> str:
    """The associated token account of `owner` for `token` (a program-derived address)."""
    return str(
        get_associated_token_address(
            Pubkey.from_string(owner),
            Pubkey.from_string(token.mint),
            Pubkey.from_string(token.program),
        )
    )


def _create_idempotent(payer: Pubkey, owner: Pubkey, token: SplToken) -> Instruction:
    mint, program = Pubkey.from_string(token.mint), Pubkey.from_string(token.program)
    accounts = [
        AccountMeta(payer, is_signer=True, is_writable=True),
        AccountMeta(get_associated_token_address(owner, mint, program), False, True),
        AccountMeta(owner, is_signer=False, is_writable=False),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(Pubkey.from_string(SYSTEM_PROGRAM), is_signer=False, is_writable=False),
        AccountMeta(program, is_signer=False, is_writable=False),
    ]
    return Instruction(
        Pubkey.from_string(ASSOCIATED_TOKEN_PROGRAM), bytes([_CREATE_IDEMPOTENT]), accounts
    )


def _transfer_checked(wallet: Pubkey, owner: Pubkey, units: int, token: SplToken) -> Instruction:
    mint, program = Pubkey.from_string(token.mint), Pubkey.from_string(token.program)
    data = bytes([_TRANSFER_CHECKED]) + units.to_bytes(8, "little") + bytes([token.decimals])
    accounts = [
        AccountMeta(get_associated_token_address(wallet, mint, program), False, True),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(get_associated_token_address(owner, mint, program), False, True),
        AccountMeta(wallet, is_signer=True, is_writable=False),
    ]
    return Instruction(program, data, accounts)


def build_transfer(
    *,
    wallet: str,
    to: str,
    units: int,
    blockhash: str,
    token: SplToken | None = None,
    create_account: bool = False,
) -> str:
    """The unsigned transfer of `units` base units from `wallet` to `to`, base64.

    Args:
        wallet: the paying wallet (fee payer, the one signer).
        to: the recipient's wallet; for a token, the owner of the destination account.
        units: base units (lamports, or the token's smallest unit), 1 to 2^64 - 1.
        blockhash: a recent blockhash from the chain.
        token: the SPL token, or None for SOL.
        create_account: create the recipient's associated token account first (token only).

    Raises:
        ValueError: an address or the blockhash is not base58 of the right size, or `units` does
            not fit a u64.
    """
    if not 0 < units < 2**64:
        raise ValueError("units must fit an unsigned 64-bit integer")
    payer, owner = Pubkey.from_string(wallet), Pubkey.from_string(to)
    instructions: list[Instruction]
    if token is None:
        instructions = [
            system_transfer(TransferParams(from_pubkey=payer, to_pubkey=owner, lamports=units))
        ]
    else:
        instructions = [_transfer_checked(payer, owner, units, token)]
        if create_account:
            instructions.insert(0, _create_idempotent(payer, owner, token))
    try:
        recent = Hash.from_string(blockhash)
    except Exception:  # solders' ParseHashError is not a ValueError
        raise ValueError("the blockhash is not base58 for 32 bytes") from None
    message = Message.new_with_blockhash(instructions, payer, recent)
    tx = VersionedTransaction.populate(message, [Signature.default()])
    return base64.b64encode(bytes(tx)).decode()
