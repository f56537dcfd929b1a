"""Builders for Solana test transactions, shared by the tests in this folder.

Transactions are built with solders (System instructions too); SPL Token instructions are built
by hand from their documented layouts (Transfer = [3] + u64, TransferChecked = [12] + u64 + u8
decimals, Approve = [4] + u64, ApproveChecked = [13] + u64 + u8, SetAuthority = [6] + u8 type +
COption<Pubkey>, CloseAccount = [9]), so the decoder is checked against the layout, not against
itself. Keys come from fixed seeds, so test
ids and failures are reproducible.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import (
    CreateAccountParams,
    CreateAccountWithSeedParams,
    TransferParams,
    TransferWithSeedParams,
    WithdrawNonceAccountParams,
    create_account,
    create_account_with_seed,
    transfer,
    transfer_with_seed,
    withdraw_nonce_account,
)
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

from keysafe.crypto.secret import SecretBytes
from keysafe.policy.registry import AssetInfo, Registry

TOKEN = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022 = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
COMPUTE_BUDGET = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
SYSTEM = Pubkey.from_string("11111111111111111111111111111111")
JUPITER = Pubkey.from_string("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4")
USDC_MINT = Pubkey.from_string("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")

WALLET_SEED = bytes(range(1, 33))
WALLET_KP = Keypair.from_seed(WALLET_SEED)
WALLET = WALLET_KP.pubkey()
SPONSOR_KP = Keypair.from_seed(bytes([7] * 32))
SPONSOR = SPONSOR_KP.pubkey()
BOB = Keypair.from_seed(bytes([2] * 32)).pubkey()
CAROL = Keypair.from_seed(bytes([3] * 32)).pubkey()
MALLORY_KP = Keypair.from_seed(bytes([4] * 32))
MALLORY = MALLORY_KP.pubkey()
OTHER_MINT = Keypair.from_seed(bytes([5] * 32)).pubkey()
TABLE = Keypair.from_seed(bytes([6] * 32)).pubkey()
BLOCKHASH = Hash.from_string("4vJ9JU1bJJE96FWSJKvHsmmFADCg4gpZQff4P3bkLKi")

WALLET_USDC = get_associated_token_address(WALLET, USDC_MINT)
BOB_USDC = get_associated_token_address(BOB, USDC_MINT)
WALLET_T22 = get_associated_token_address(WALLET, OTHER_MINT, TOKEN_2022)
BOB_T22 = get_associated_token_address(BOB, OTHER_MINT, TOKEN_2022)

ED25519_PROGRAM = Pubkey.from_string("Ed25519SigVerify111111111111111111111111111")
NONCE = Keypair.from_seed(bytes([8] * 32)).pubkey()

SOL = 1_000_000_000
U64_MAX = 2**64 - 1


def wallet_seed() -> SecretBytes:
    return SecretBytes(bytearray(WALLET_SEED))


def registry_with_usdc() -> Registry:
    usdc = AssetInfo("USDC", "solana", str(USDC_MINT), 6, builtin=False)
    return Registry.builtin().with_additions([], [usdc])


def sol_transfer(to: Pubkey, lamports: int, source: Pubkey = WALLET) -> Instruction:
    return transfer(TransferParams(from_pubkey=source, to_pubkey=to, lamports=lamports))


def spl_transfer(
    source: Pubkey,
    destination: Pubkey,
    amount: int,
    *,
    authority: Pubkey = WALLET,
    program: Pubkey = TOKEN,
) -> Instruction:
    data = bytes([3]) + amount.to_bytes(8, "little")
    accounts = [
        AccountMeta(source, is_signer=False, is_writable=True),
        AccountMeta(destination, is_signer=False, is_writable=True),
        AccountMeta(authority, is_signer=True, is_writable=False),
    ]
    return Instruction(program, data, accounts)


def spl_transfer_checked(
    source: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    amount: int,
    decimals: int,
    *,
    authority: Pubkey = WALLET,
    program: Pubkey = TOKEN,
) -> Instruction:
    data = bytes([12]) + amount.to_bytes(8, "little") + bytes([decimals])
    accounts = [
        AccountMeta(source, is_signer=False, is_writable=True),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(destination, is_signer=False, is_writable=True),
        AccountMeta(authority, is_signer=True, is_writable=False),
    ]
    return Instruction(program, data, accounts)


def close_account(
    account: Pubkey, destination: Pubkey, owner: Pubkey = WALLET, *, program: Pubkey = TOKEN
) -> Instruction:
    accounts = [
        AccountMeta(account, is_signer=False, is_writable=True),
        AccountMeta(destination, is_signer=False, is_writable=True),
        AccountMeta(owner, is_signer=True, is_writable=False),
    ]
    return Instruction(program, bytes([9]), accounts)


def spl_approve(
    source: Pubkey,
    delegate: Pubkey,
    amount: int,
    *,
    owner: Pubkey = WALLET,
    program: Pubkey = TOKEN,
) -> Instruction:
    data = bytes([4]) + amount.to_bytes(8, "little")
    accounts = [
        AccountMeta(source, is_signer=False, is_writable=True),
        AccountMeta(delegate, is_signer=False, is_writable=False),
        AccountMeta(owner, is_signer=True, is_writable=False),
    ]
    return Instruction(program, data, accounts)


def spl_approve_checked(
    source: Pubkey,
    mint: Pubkey,
    delegate: Pubkey,
    amount: int,
    decimals: int,
    *,
    owner: Pubkey = WALLET,
    program: Pubkey = TOKEN,
) -> Instruction:
    data = bytes([13]) + amount.to_bytes(8, "little") + bytes([decimals])
    accounts = [
        AccountMeta(source, is_signer=False, is_writable=True),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(delegate, is_signer=False, is_writable=False),
        AccountMeta(owner, is_signer=True, is_writable=False),
    ]
    return Instruction(program, data, accounts)


def spl_set_authority(
    account: Pubkey,
    kind: int,
    new: Pubkey | None,
    *,
    current: Pubkey = WALLET,
    program: Pubkey = TOKEN,
) -> Instruction:
    option = bytes([0]) if new is None else bytes([1]) + bytes(new)
    accounts = [
        AccountMeta(account, is_signer=False, is_writable=True),
        AccountMeta(current, is_signer=True, is_writable=False),
    ]
    return Instruction(program, bytes([6, kind]) + option, accounts)


def sol_create_account(
    new: Pubkey, lamports: int, owner: Pubkey, source: Pubkey = WALLET
) -> Instruction:
    return create_account(
        CreateAccountParams(
            from_pubkey=source, to_pubkey=new, lamports=lamports, space=0, owner=owner
        )
    )


def seeded(seed: str, owner: Pubkey, base: Pubkey = WALLET) -> Pubkey:
    return Pubkey.create_with_seed(base, seed, owner)


def sol_create_with_seed(seed: str, lamports: int, owner: Pubkey) -> Instruction:
    return create_account_with_seed(
        CreateAccountWithSeedParams(
            from_pubkey=WALLET,
            to_pubkey=seeded(seed, owner),
            base=WALLET,
            seed=seed,
            lamports=lamports,
            space=0,
            owner=owner,
        )
    )


def sol_transfer_with_seed(seed: str, to: Pubkey, lamports: int) -> Instruction:
    return transfer_with_seed(
        TransferWithSeedParams(
            from_pubkey=seeded(seed, SYSTEM),
            from_base=WALLET,
            from_seed=seed,
            from_owner=SYSTEM,
            to_pubkey=to,
            lamports=lamports,
        )
    )


def sol_withdraw_nonce(to: Pubkey, lamports: int, nonce: Pubkey = NONCE) -> Instruction:
    return withdraw_nonce_account(
        WithdrawNonceAccountParams(
            nonce_pubkey=nonce, authorized_pubkey=WALLET, to_pubkey=to, lamports=lamports
        )
    )


def ed25519_verify(signatures: int) -> Instruction:
    # Only the count (first byte) matters to the fee; the offsets are not checked offline.
    return Instruction(ED25519_PROGRAM, bytes([signatures, 0]) + bytes(14 * signatures), [])


def create_ata_idempotent(owner: Pubkey, mint: Pubkey, program: Pubkey = TOKEN) -> Instruction:
    accounts = [
        AccountMeta(WALLET, is_signer=True, is_writable=True),
        AccountMeta(get_associated_token_address(owner, mint, program), False, True),
        AccountMeta(owner, is_signer=False, is_writable=False),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(SYSTEM, is_signer=False, is_writable=False),
        AccountMeta(program, is_signer=False, is_writable=False),
    ]
    return Instruction(ATA_PROGRAM, bytes([1]), accounts)


def memo(text: str, signers: Sequence[Pubkey] = ()) -> Instruction:
    return Instruction(MEMO, text.encode(), [AccountMeta(s, True, False) for s in signers])


def price(micro_lamports: int) -> Instruction:
    return set_compute_unit_price(micro_lamports)


def limit(units: int) -> Instruction:
    return set_compute_unit_limit(units)


def program_call(program: Pubkey = JUPITER, data: bytes = b"\xe5\x17\xcb\x97") -> Instruction:
    return Instruction(
        program, data, [AccountMeta(WALLET, True, True), AccountMeta(CAROL, False, True)]
    )


def legacy_message(ixs: Sequence[Instruction], payer: Pubkey = WALLET) -> Message:
    return Message.new_with_blockhash(list(ixs), payer, BLOCKHASH)


def v0_message(
    ixs: Sequence[Instruction],
    payer: Pubkey = WALLET,
    tables: Sequence[AddressLookupTableAccount] = (),
) -> MessageV0:
    return MessageV0.try_compile(payer, list(ixs), list(tables), BLOCKHASH)


def unsigned(message: Message | MessageV0) -> VersionedTransaction:
    n = message.header.num_required_signatures
    return VersionedTransaction.populate(message, [Signature.default()] * n)


def encode(tx: VersionedTransaction | bytes) -> str:
    return base64.b64encode(bytes(tx)).decode()


def legacy_b64(ixs: Sequence[Instruction], payer: Pubkey = WALLET) -> str:
    return encode(unsigned(legacy_message(ixs, payer)))


def v0_b64(
    ixs: Sequence[Instruction],
    payer: Pubkey = WALLET,
    tables: Sequence[AddressLookupTableAccount] = (),
) -> str:
    return encode(unsigned(v0_message(ixs, payer, tables)))


def table(*addresses: Pubkey) -> AddressLookupTableAccount:
    return AddressLookupTableAccount(TABLE, list(addresses))
