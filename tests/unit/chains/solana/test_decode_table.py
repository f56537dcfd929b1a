"""Decoding Solana transactions into intents: a named case table, then messages and declarations.

Each case builds a base64 transaction, decodes it for the vault wallet on `solana` and checks
either the intent's fields (a subset) and summary words, or the refusal's message words.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solders.instruction import AccountMeta, CompiledInstruction, Instruction
from solders.message import (
    MessageHeader,
    MessageV0,
    MessageV1,
    TransactionConfig,
    to_bytes_versioned,
)
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import (
    AllocateParams,
    AssignParams,
    AssignWithSeedParams,
    AuthorizeNonceAccountParams,
    CreateAccountAllowPrefundParams,
    allocate,
    assign,
    assign_with_seed,
    authorize_nonce_account,
    create_account_allow_prefund,
)
from solders.transaction import VersionedTransaction

from keysafe.chains.solana import check_declared, intent_from_message, intent_from_tx
from keysafe.chains.solana import parse_transaction as parse
from keysafe.errors import MalformedRequestError
from keysafe.policy.engine import AgentState, Decision, decide
from keysafe.policy.intent import Intent
from keysafe.policy.registry import ChainInfo, Registry
from keysafe.policy.rules import ACTIONS, parse_policy
from tests.unit.chains.solana import (
    ATA_PROGRAM,
    BLOCKHASH,
    BOB,
    BOB_T22,
    BOB_USDC,
    CAROL,
    COMPUTE_BUDGET,
    JUPITER,
    MALLORY,
    MEMO,
    NONCE,
    OTHER_MINT,
    SOL,
    SPONSOR,
    SYSTEM,
    TABLE,
    TOKEN,
    TOKEN_2022,
    U64_MAX,
    USDC_MINT,
    WALLET,
    WALLET_T22,
    WALLET_USDC,
    close_account,
    create_ata_idempotent,
    ed25519_verify,
    encode,
    legacy_b64,
    legacy_message,
    limit,
    memo,
    price,
    program_call,
    registry_with_usdc,
    seeded,
    sol_create_account,
    sol_create_with_seed,
    sol_transfer,
    sol_transfer_with_seed,
    sol_withdraw_nonce,
    spl_approve,
    spl_approve_checked,
    spl_set_authority,
    spl_transfer,
    spl_transfer_checked,
    table,
    unsigned,
    v0_b64,
    v0_message,
)

REGISTRY = registry_with_usdc()
SOLANA = REGISTRY.chain("solana")


def _short(address: object) -> str:
    s = str(address)
    return f"{s[:4]}…{s[-4:]}"


def _padded_transfer() -> str:
    ix = sol_transfer(BOB, SOL // 2)
    padded = Instruction(ix.program_id, bytes(ix.data) + b"\x00\x01", ix.accounts)
    return legacy_b64([padded])


def _extra_signature_slot() -> str:
    raw = base64.b64decode(legacy_b64([sol_transfer(BOB, SOL)]))
    assert raw[0] == 1  # compact-u16 signature count
    return encode(bytes([2]) + raw[1:65] + bytes(64) + raw[65:])


def _zero_instructions() -> str:
    return legacy_b64([])


def _v1_or_garbage_version() -> str:
    raw = bytearray(base64.b64decode(v0_b64([sol_transfer(BOB, SOL)])))
    assert raw[65] == 0x80
    raw[65] = 0x85  # version 5: no runtime executes it
    return encode(bytes(raw))


def _v1_message() -> str:
    # v1 carries its priority fee inline (TransactionConfig), outside compute-budget
    # instructions, so keysafe cannot judge its fee: refused rather than half-decoded.
    ix = sol_transfer(BOB, 1)
    message = MessageV1(
        MessageHeader(1, 0, 1),
        TransactionConfig(priority_fee=10**12, compute_unit_limit=1_400_000),
        BLOCKHASH,
        [WALLET, SYSTEM],
        [CompiledInstruction(1, bytes(ix.data), bytes([0, 0]))],
    )
    return encode(VersionedTransaction.populate(message, [Signature.default()]))


def _cut(ix: Instruction, size: int) -> Instruction:
    """The instruction with its data cut to `size` bytes."""
    return Instruction(ix.program_id, bytes(ix.data)[:size], ix.accounts)


def _replace(ix: Instruction, at: int, data: bytes) -> Instruction:
    raw = bytes(ix.data)
    return Instruction(ix.program_id, raw[:at] + data + raw[at + len(data) :], ix.accounts)


def _seed_length(ix: Instruction, at: int, length: int) -> Instruction:
    """Overwrite the u64 length of a bincode string at `at` (the bytes after it stay)."""
    return _replace(ix, at, length.to_bytes(8, "little"))


def _first_accounts(ix: Instruction, n: int) -> Instruction:
    return Instruction(ix.program_id, bytes(ix.data), ix.accounts[:n])


def _prefund(new: Pubkey, payer: Pubkey | None, lamports: int) -> Instruction:
    return create_account_allow_prefund(
        CreateAccountAllowPrefundParams(
            new_account=new, payer=payer, lamports=lamports, space=0, owner=JUPITER
        )
    )


@dataclass(frozen=True)
class Case:
    build: Callable[[], str]
    expect: dict[str, Any] = field(default_factory=dict)
    summary_has: tuple[str, ...] = ()
    refused: str | None = None  # words the MalformedRequestError must contain
    wallet: str = str(WALLET)


CASES: dict[str, Case] = {
    # -- System transfers ---------------------------------------------------------------------
    "system transfer, legacy": Case(
        lambda: legacy_b64([sol_transfer(BOB, SOL // 2)]),
        {
            "action": "solana.transfer",
            "chain": "solana",
            "asset": "SOL",
            "amount": "0.5",
            "to": str(BOB),
            "contract": None,
            "function": "system.transfer",
        },
        (f"send 0.5 SOL to {_short(BOB)}",),
    ),
    "system transfer, v0": Case(
        lambda: v0_b64([sol_transfer(BOB, SOL // 2)]),
        {"action": "solana.transfer", "asset": "SOL", "amount": "0.5", "to": str(BOB)},
        (f"send 0.5 SOL to {_short(BOB)}",),
    ),
    "system transfer with trailing data bytes is still a transfer": Case(
        _padded_transfer, {"action": "solana.transfer", "amount": "0.5", "to": str(BOB)}
    ),
    "two system transfers to one recipient add up": Case(
        lambda: legacy_b64([sol_transfer(BOB, SOL // 2), sol_transfer(BOB, SOL // 4)]),
        {"action": "solana.transfer", "amount": "0.75", "to": str(BOB)},
    ),
    "system transfers to two recipients are refused": Case(
        lambda: legacy_b64([sol_transfer(BOB, SOL), sol_transfer(CAROL, SOL)]),
        refused="2 different recipients",
    ),
    "system transfer with a missing account is refused": Case(
        lambda: legacy_b64(
            [
                Instruction(
                    SYSTEM, bytes(sol_transfer(BOB, 1).data), [AccountMeta(WALLET, True, True)]
                )
            ]
        ),
        refused="needs at least 2",
    ),
    # -- System instructions that move lamports without being `transfer` ------------------------
    "createAccount moves its lamports to the new account": Case(
        lambda: legacy_b64([sol_create_account(SPONSOR, 100 * SOL, JUPITER)], payer=SPONSOR),
        {
            "action": "solana.transfer",
            "asset": "SOL",
            "amount": "100",
            "to": str(SPONSOR),
            "contract": None,
            "function": "system.createAccount",
            "fee": "0",
        },
        (
            f"send 100 SOL to {_short(SPONSOR)}",
            f"creates account {_short(SPONSOR)} of program {_short(JUPITER)} (0 bytes)",
        ),
    ),
    "createAccount with too few data bytes is refused": Case(
        lambda: legacy_b64([_cut(sol_create_account(SPONSOR, SOL, JUPITER), 51)], payer=SPONSOR),
        refused="(System createAccount) has too few data bytes",
    ),
    "createAccountWithSeed moves its lamports to the derived account": Case(
        lambda: legacy_b64([sol_create_with_seed("vault", 100 * SOL, JUPITER)]),
        {
            "action": "solana.transfer",
            "asset": "SOL",
            "amount": "100",
            "to": str(seeded("vault", JUPITER)),
            "function": "system.createAccountWithSeed",
        },
        ('seed "vault"', f"of program {_short(JUPITER)}"),
    ),
    "createAccountWithSeed with a 33-byte seed is refused": Case(
        lambda: legacy_b64([_seed_length(sol_create_with_seed("s" * 32, 1, JUPITER), 36, 33)]),
        refused="a seed of 33 bytes",
    ),
    "createAccountWithSeed with a seed that is not UTF-8 is refused": Case(
        lambda: legacy_b64([_replace(sol_create_with_seed("ab", 1, JUPITER), 44, b"\xff")]),
        refused="not UTF-8",
    ),
    "createAccountWithSeed cut inside its seed is refused": Case(
        lambda: legacy_b64([_cut(sol_create_with_seed("vault", 1, JUPITER), 46)]),
        refused="too few data bytes",
    ),
    "transferWithSeed out of the wallet's derived account is a transfer": Case(
        lambda: legacy_b64([sol_transfer_with_seed("savings", MALLORY, 7 * SOL)]),
        {
            "action": "solana.transfer",
            "asset": "SOL",
            "amount": "7",
            "to": str(MALLORY),
            "function": "system.transferWithSeed",
        },
        (
            f"send 7 SOL to {_short(MALLORY)}",
            f"from account {_short(seeded('savings', SYSTEM))} derived from {_short(WALLET)}",
        ),
    ),
    "transferWithSeed with a missing account is refused": Case(
        lambda: legacy_b64([_first_accounts(sol_transfer_with_seed("s", MALLORY, 1), 2)]),
        refused="needs at least 3",
    ),
    "withdrawNonceAccount moves its lamports to the recipient": Case(
        lambda: legacy_b64([sol_withdraw_nonce(MALLORY, 3 * SOL)]),
        {
            "action": "solana.transfer",
            "asset": "SOL",
            "amount": "3",
            "to": str(MALLORY),
            "function": "system.withdrawNonceAccount",
        },
        (f"withdraws from nonce account {_short(NONCE)}",),
    ),
    "withdrawNonceAccount with too few data bytes is refused": Case(
        lambda: legacy_b64([_cut(sol_withdraw_nonce(MALLORY, 1), 11)]),
        refused="too few data bytes",
    ),
    "withdrawNonceAccount without its authority account is refused": Case(
        lambda: legacy_b64(
            [_first_accounts(sol_withdraw_nonce(MALLORY, 1), 4), memo("x", [WALLET])]
        ),
        refused="needs at least 5",
    ),
    "createAccount and a transfer to someone else are two recipients: refused": Case(
        lambda: legacy_b64(
            [sol_create_account(SPONSOR, 100 * SOL, JUPITER), sol_transfer(BOB, 1)], payer=SPONSOR
        ),
        refused="2 different recipients",
    ),
    "createAccount and a transfer to the same account add up": Case(
        lambda: legacy_b64(
            [sol_create_with_seed("a", SOL, SYSTEM), sol_transfer(seeded("a", SYSTEM), SOL)]
        ),
        {"action": "solana.transfer", "amount": "2", "function": "system.transfers"},
    ),
    "createAccount beside a program call is solana.call carrying the lamports": Case(
        lambda: legacy_b64([sol_create_with_seed("a", 100 * SOL, JUPITER), program_call()]),
        {
            "action": "solana.call",
            "contract": str(JUPITER),
            "asset": "SOL",
            "amount": "100",
            "to": str(seeded("a", JUPITER)),
        },
        ("sends 100 SOL to",),
    ),
    "createAccountAllowPrefund funded by the wallet is a transfer": Case(
        lambda: legacy_b64([_prefund(SPONSOR, WALLET, 2 * SOL)], payer=SPONSOR),
        {
            "action": "solana.transfer",
            "amount": "2",
            "to": str(SPONSOR),
            "function": "system.createAccountAllowPrefund",
        },
    ),
    "createAccountAllowPrefund of the wallet itself hands it to a program": Case(
        lambda: legacy_b64([_prefund(WALLET, None, 0)]),
        {
            "action": "solana.set_authority",
            "contract": str(WALLET),
            "to": str(JUPITER),
            "asset": "SOL",
            "amount": "unlimited",
            "unlimited": True,
        },
    ),
    "system assign of the wallet hands its SOL to that program": Case(
        lambda: legacy_b64([assign(AssignParams(pubkey=WALLET, owner=JUPITER))]),
        {
            "action": "solana.set_authority",
            "contract": str(WALLET),
            "to": str(JUPITER),
            "spender": str(JUPITER),
            "asset": "SOL",
            "amount": "unlimited",
            "unlimited": True,
            "function": "system.assign",
        },
        (
            f"hand account {_short(WALLET)} (the wallet) to program {_short(JUPITER)}, which then "
            "controls all its SOL",
        ),
    ),
    "system assignWithSeed is an authority change": Case(
        lambda: legacy_b64(
            [
                assign_with_seed(
                    AssignWithSeedParams(
                        address=seeded("x", SYSTEM), base=WALLET, seed="x", owner=JUPITER
                    )
                )
            ]
        ),
        {
            "action": "solana.set_authority",
            "contract": str(seeded("x", SYSTEM)),
            "to": str(JUPITER),
            "function": "system.assignWithSeed",
        },
    ),
    "system assign with a truncated owner is refused": Case(
        lambda: legacy_b64([_cut(assign(AssignParams(pubkey=WALLET, owner=JUPITER)), 20)]),
        refused="too few data bytes",
    ),
    "authorizeNonceAccount hands the nonce account's SOL to a new authority": Case(
        lambda: legacy_b64(
            [
                authorize_nonce_account(
                    AuthorizeNonceAccountParams(
                        nonce_pubkey=NONCE, authorized_pubkey=WALLET, new_authority=MALLORY
                    )
                )
            ]
        ),
        {
            "action": "solana.set_authority",
            "contract": str(NONCE),
            "to": str(MALLORY),
            "asset": "SOL",
            "amount": "unlimited",
            "function": "system.authorizeNonceAccount",
        },
        ("nonce account",),
    ),
    "system allocate stays a call to the system program": Case(
        lambda: legacy_b64([allocate(AllocateParams(pubkey=WALLET, space=10))]),
        {"action": "solana.call", "contract": str(SYSTEM), "amount": None},
        ("allocate",),
    ),
    # -- SPL Token ----------------------------------------------------------------------------
    "spl transfer names no mint: asset unknown, base units": Case(
        lambda: legacy_b64([spl_transfer(WALLET_USDC, BOB_USDC, 25_000_000)]),
        {
            "action": "solana.transfer",
            "asset": None,
            "amount": "25000000",
            "to": str(BOB_USDC),
            "contract": None,
            "function": "spl-token.transfer",
        },
        ("25000000 base units of an unknown token", "names no mint"),
    ),
    "transferChecked of a registered mint is in token units": Case(
        lambda: legacy_b64([spl_transfer_checked(WALLET_USDC, USDC_MINT, BOB_USDC, 25_000_000, 6)]),
        {
            "action": "solana.transfer",
            "asset": "USDC",
            "amount": "25",
            "to": str(BOB_USDC),
            "contract": str(USDC_MINT),
            "function": "spl-token.transferChecked",
        },
        (f"send 25 USDC (mint {_short(USDC_MINT)}) to token account {_short(BOB_USDC)}",),
    ),
    "transferChecked of an unknown mint names the mint as asset": Case(
        lambda: legacy_b64(
            [spl_transfer_checked(WALLET_USDC, OTHER_MINT, BOB_USDC, 1_500_000_000, 9)]
        ),
        {
            "action": "solana.transfer",
            "asset": str(OTHER_MINT),
            "amount": "1.5",
            "contract": str(OTHER_MINT),
        },
        ("unregistered token mint",),
    ),
    "transferChecked with decimals the registry disagrees with is refused": Case(
        lambda: legacy_b64([spl_transfer_checked(WALLET_USDC, USDC_MINT, BOB_USDC, 25, 9)]),
        refused="registry knows it as USDC with 6",
    ),
    "transferChecked claiming 200 decimals is refused": Case(
        lambda: legacy_b64([spl_transfer_checked(WALLET_USDC, OTHER_MINT, BOB_USDC, 7, 200)]),
        refused="200 decimals",
    ),
    "token-2022 transferChecked": Case(
        lambda: v0_b64(
            [spl_transfer_checked(WALLET_T22, OTHER_MINT, BOB_T22, 7, 0, program=TOKEN_2022)]
        ),
        {
            "action": "solana.transfer",
            "asset": str(OTHER_MINT),
            "amount": "7",
            "to": str(BOB_T22),
            "function": "token-2022.transferChecked",
        },
    ),
    "token-2022 plain transfer": Case(
        lambda: legacy_b64([spl_transfer(WALLET_T22, BOB_T22, 9, program=TOKEN_2022)]),
        {
            "action": "solana.transfer",
            "asset": None,
            "amount": "9",
            "function": "token-2022.transfer",
        },
    ),
    "transferChecked with too few data bytes is refused": Case(
        lambda: legacy_b64(
            [
                Instruction(
                    TOKEN,
                    bytes([12, 1, 0]),
                    spl_transfer_checked(WALLET_USDC, USDC_MINT, BOB_USDC, 1, 6).accounts,
                )
            ]
        ),
        refused="too few data bytes",
    ),
    "transfers of two assets are refused": Case(
        lambda: legacy_b64(
            [sol_transfer(BOB, 1), spl_transfer_checked(WALLET_USDC, USDC_MINT, BOB_USDC, 1, 6)]
        ),
        refused="more than one asset",
    ),
    "create recipient's token account then transferChecked stays a transfer": Case(
        lambda: legacy_b64(
            [
                create_ata_idempotent(BOB, USDC_MINT),
                spl_transfer_checked(WALLET_USDC, USDC_MINT, BOB_USDC, 1_000_000, 6),
            ]
        ),
        {"action": "solana.transfer", "asset": "USDC", "amount": "1", "to": str(BOB_USDC)},
        (f"(owner {_short(BOB)})",),
    ),
    "creating a stranger's token account is a call (its owner could close it for the rent)": Case(
        lambda: legacy_b64([create_ata_idempotent(MALLORY, USDC_MINT), sol_transfer(BOB, 1)]),
        {
            "action": "solana.call",
            "contract": str(ATA_PROGRAM),
            "asset": "SOL",
            "amount": "0.000000001",
        },
        ("(create)",),
    ),
    "creating the wallet's own token account is a helper": Case(
        lambda: legacy_b64([create_ata_idempotent(WALLET, USDC_MINT), sol_transfer(BOB, 1)]),
        {"action": "solana.transfer", "asset": "SOL", "to": str(BOB)},
    ),
    "closeAccount back to the wallet is a helper": Case(
        lambda: legacy_b64([close_account(WALLET_USDC, WALLET), sol_transfer(BOB, 1)]),
        {"action": "solana.transfer", "to": str(BOB)},
    ),
    "closeAccount to someone else sends all its SOL there: close_account, unlimited": Case(
        lambda: legacy_b64([close_account(WALLET_USDC, MALLORY)]),
        {
            "action": "solana.close_account",
            "contract": str(WALLET_USDC),
            "to": str(MALLORY),
            "asset": "SOL",
            "amount": "unlimited",
            "unlimited": True,
            "function": "spl-token.closeAccount",
        },
        (f"close token account {_short(WALLET_USDC)}: ALL its SOL", f"goes to {_short(MALLORY)}"),
    ),
    "token-2022 closeAccount to someone else": Case(
        lambda: legacy_b64([close_account(WALLET_T22, MALLORY, program=TOKEN_2022)]),
        {
            "action": "solana.close_account",
            "to": str(MALLORY),
            "function": "token-2022.closeAccount",
        },
    ),
    "closeAccount with a missing account is refused": Case(
        lambda: legacy_b64(
            [_first_accounts(close_account(WALLET_USDC, MALLORY), 2), memo("x", [WALLET])]
        ),
        refused="needs at least 3",
    ),
    # -- SPL approvals and authorities --------------------------------------------------------
    "approveChecked of a registered mint: spender, amount in token units": Case(
        lambda: legacy_b64([spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, 5_000_000, 6)]),
        {
            "action": "solana.approve",
            "asset": "USDC",
            "amount": "5",
            "unlimited": False,
            "spender": str(MALLORY),
            "to": None,
            "contract": str(USDC_MINT),
            "function": "spl-token.approveChecked",
        },
        (
            f"approve {_short(MALLORY)} to spend 5 USDC (mint {_short(USDC_MINT)}) from token "
            f"account {_short(WALLET_USDC)}",
        ),
    ),
    "approveChecked of u64::MAX is unlimited": Case(
        lambda: legacy_b64([spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, U64_MAX, 6)]),
        {
            "action": "solana.approve",
            "asset": "USDC",
            "amount": "unlimited",
            "unlimited": True,
            "spender": str(MALLORY),
        },
        ("to spend UNLIMITED USDC",),
    ),
    "approveChecked of 2^63 is unlimited": Case(
        lambda: legacy_b64([spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, 2**63, 6)]),
        {"amount": "unlimited", "unlimited": True},
    ),
    "approveChecked just under 2^63 is an amount": Case(
        lambda: legacy_b64([spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, 2**63 - 1, 6)]),
        {"amount": "9223372036854.775807", "unlimited": False},
    ),
    "approveChecked of an unknown mint names the mint as asset": Case(
        lambda: legacy_b64([spl_approve_checked(WALLET_USDC, OTHER_MINT, MALLORY, 10, 0)]),
        {
            "action": "solana.approve",
            "asset": str(OTHER_MINT),
            "amount": "10",
            "contract": str(OTHER_MINT),
        },
        ("unregistered token mint",),
    ),
    "approveChecked with decimals the registry disagrees with is refused": Case(
        lambda: legacy_b64([spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, 1, 9)]),
        refused="registry knows it as USDC with 6",
    ),
    "approveChecked with too few data bytes is refused": Case(
        lambda: legacy_b64([_cut(spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, 1, 6), 9)]),
        refused="(spl-token approveChecked) has too few data bytes",
    ),
    "plain approve names no mint: base units, never unlimited": Case(
        lambda: legacy_b64([spl_approve(WALLET_USDC, MALLORY, U64_MAX)]),
        {
            "action": "solana.approve",
            "asset": None,
            "amount": str(U64_MAX),
            "unlimited": False,
            "spender": str(MALLORY),
            "function": "spl-token.approve",
        },
        (f"UNLIMITED ({U64_MAX} base units) of an unknown token", "approval names no mint"),
    ),
    "plain approve with too few data bytes is refused": Case(
        lambda: legacy_b64([_cut(spl_approve(WALLET_USDC, MALLORY, 1), 5)]),
        refused="too few data bytes",
    ),
    "plain approve with a missing account is refused": Case(
        lambda: legacy_b64(
            [_first_accounts(spl_approve(WALLET_USDC, MALLORY, 1), 2), memo("x", [WALLET])]
        ),
        refused="needs at least 3",
    ),
    "token-2022 approveChecked": Case(
        lambda: legacy_b64(
            [spl_approve_checked(WALLET_T22, OTHER_MINT, MALLORY, 3, 0, program=TOKEN_2022)]
        ),
        {
            "action": "solana.approve",
            "asset": str(OTHER_MINT),
            "amount": "3",
            "function": "token-2022.approveChecked",
        },
    ),
    "approve beside a transfer is refused: one value move may not hide another": Case(
        lambda: legacy_b64(
            [spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, 1, 6), sol_transfer(BOB, 1)]
        ),
        refused="does 2 things (spl-token.approveChecked, system.transfer)",
    ),
    "two approvals are refused": Case(
        lambda: legacy_b64(
            [
                spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, 1, 6),
                spl_approve(WALLET_USDC, BOB, 1),
            ]
        ),
        refused="judges an approval, an authority change or closing an account",
    ),
    "approve beside a program call is refused": Case(
        lambda: legacy_b64([spl_approve(WALLET_USDC, MALLORY, 1), program_call()]),
        refused=f"a call to program {_short(JUPITER)}",
    ),
    "approve with compute budget and a memo is still an approval": Case(
        lambda: legacy_b64(
            [
                limit(10_000),
                price(100),
                spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, 1_000_000, 6),
                memo("allowance"),
            ]
        ),
        {"action": "solana.approve", "amount": "1", "fee": "0.000005001"},
        (
            'memo "allowance"',
            "network fee up to 0.000005001 SOL (priority fee up to 0.000000001 SOL)",
        ),
    ),
    "approve to a delegate from a lookup table is refused": Case(
        lambda: v0_b64(
            [spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, 1, 6)], tables=[table(MALLORY)]
        ),
        refused="names accounts from an address lookup table",
    ),
    "setAuthority AccountOwner of the wallet's token account to a stranger": Case(
        lambda: legacy_b64([spl_set_authority(WALLET_USDC, 2, MALLORY)]),
        {
            "action": "solana.set_authority",
            "contract": str(WALLET_USDC),
            "to": str(MALLORY),
            "spender": str(MALLORY),
            "asset": None,
            "amount": "unlimited",
            "unlimited": True,
            "function": "spl-token.setAuthority",
        },
        (f"hand the AccountOwner authority of {_short(WALLET_USDC)} to {_short(MALLORY)}",),
    ),
    "setAuthority removing the mint authority": Case(
        lambda: legacy_b64([spl_set_authority(OTHER_MINT, 0, None)]),
        {"action": "solana.set_authority", "contract": str(OTHER_MINT), "to": None},
        (f"REMOVE the MintTokens authority of {_short(OTHER_MINT)} for good",),
    ),
    "token-2022 setAuthority PermanentDelegate": Case(
        lambda: legacy_b64([spl_set_authority(OTHER_MINT, 8, MALLORY, program=TOKEN_2022)]),
        {
            "action": "solana.set_authority",
            "to": str(MALLORY),
            "function": "token-2022.setAuthority",
        },
        ("PermanentDelegate",),
    ),
    "spl-token setAuthority with a type only token-2022 knows is named by number": Case(
        lambda: legacy_b64([spl_set_authority(OTHER_MINT, 8, MALLORY)]),
        {"action": "solana.set_authority"},
        ("authority type 8",),
    ),
    "setAuthority with a malformed option tag is refused": Case(
        lambda: legacy_b64([_replace(spl_set_authority(WALLET_USDC, 2, MALLORY), 2, b"\x02")]),
        refused="malformed new authority",
    ),
    "setAuthority with a truncated new authority is refused": Case(
        lambda: legacy_b64([_cut(spl_set_authority(WALLET_USDC, 2, MALLORY), 20)]),
        refused="too few data bytes",
    ),
    "setAuthority beside closeAccount is refused": Case(
        lambda: legacy_b64(
            [spl_set_authority(WALLET_USDC, 2, MALLORY), close_account(WALLET_USDC, MALLORY)]
        ),
        refused="spl-token.setAuthority, spl-token.closeAccount",
    ),
    # -- compute budget, memo, other programs ------------------------------------------------
    "compute budget + transfer": Case(
        lambda: legacy_b64([limit(300), price(2_000_000), sol_transfer(BOB, SOL // 2)]),
        {"action": "solana.transfer", "asset": "SOL", "amount": "0.5", "to": str(BOB)},
        ("send 0.5 SOL", "priority fee up to 0.0000006 SOL"),
    ),
    "a plain transfer's fee is one signature": Case(
        lambda: legacy_b64([sol_transfer(BOB, 1)]),
        {"fee": "0.000005"},
        ("network fee up to 0.000005 SOL",),
    ),
    "fee = signatures + compute-unit price x limit, rounded up": Case(
        lambda: legacy_b64([limit(300), price(2_000_001), sol_transfer(BOB, 1)]),
        {"fee": "0.000005601"},
        ("network fee up to 0.000005601 SOL (priority fee up to 0.000000601 SOL)",),
    ),
    "fee without a unit limit counts 200k units per instruction": Case(
        lambda: legacy_b64([price(1_000_000), sol_transfer(BOB, 1), memo("m")]),
        {"fee": "0.000405"},
    ),
    "fee counts the signatures a precompile verifies": Case(
        lambda: legacy_b64([ed25519_verify(3), sol_transfer(BOB, 1)]),
        {"fee": "0.00002", "action": "solana.call"},
    ),
    "a sponsored transaction costs the wallet no fee": Case(
        lambda: legacy_b64([limit(300), price(2_000_000), sol_transfer(BOB, 1)], payer=SPONSOR),
        {"fee": "0"},
        (f"fee paid by {_short(SPONSOR)} (priority fee up to 0.0000006 SOL)",),
    ),
    "priority fee above the ceiling is refused": Case(
        lambda: legacy_b64([limit(1_400_000), price(10**9), sol_transfer(BOB, 1)]),
        refused="priority fee of up to 1.4 SOL",
    ),
    "a repeated compute-budget instruction is refused": Case(
        lambda: legacy_b64([price(1), price(2), sol_transfer(BOB, 1)]),
        refused="repeats the compute-budget instruction setComputeUnitPrice",
    ),
    "only compute budget is a call to the compute-budget program": Case(
        lambda: legacy_b64([limit(1000)]),
        {"action": "solana.call", "contract": str(COMPUTE_BUDGET)},
    ),
    "memo only is a call to the memo program": Case(
        lambda: legacy_b64([memo("hello", [WALLET])]),
        {"action": "solana.call", "contract": str(MEMO), "amount": None, "to": None},
        ('memo "hello"',),
    ),
    "transfer + memo stays a transfer and shows the memo": Case(
        lambda: legacy_b64([sol_transfer(BOB, SOL), memo("invoice 42\nline two")]),
        {"action": "solana.transfer", "amount": "1", "to": str(BOB)},
        ('memo "invoice 42?line two"',),
    ),
    "other program is solana.call with its program id": Case(
        lambda: legacy_b64([limit(200_000), price(1), program_call()]),
        {"action": "solana.call", "contract": str(JUPITER), "asset": None, "amount": None},
        (f"call program {_short(JUPITER)} (3 instructions)",),
    ),
    "program call + SOL transfer is solana.call carrying the amount": Case(
        lambda: legacy_b64([program_call(), sol_transfer(BOB, SOL)]),
        {
            "action": "solana.call",
            "contract": str(JUPITER),
            "asset": "SOL",
            "amount": "1",
            "to": str(BOB),
        },
        (f"sends 1 SOL to {_short(BOB)}",),
    ),
    "calls to two programs are refused": Case(
        lambda: legacy_b64([program_call(), program_call(MALLORY)]),
        refused="calls 2 programs",
    ),
    # -- address lookup tables ----------------------------------------------------------------
    "v0 transfer whose destination comes from a lookup table is solana.call": Case(
        lambda: v0_b64([sol_transfer(BOB, SOL // 2)], tables=[table(CAROL, BOB)]),
        {
            "action": "solana.call",
            "contract": str(SYSTEM),
            "asset": "SOL",
            "amount": "0.5",
            "to": None,
        },
        ("lookup table", "cannot be resolved offline"),
    ),
    "v0 transferChecked whose mint comes from a lookup table has no asset": Case(
        lambda: v0_b64(
            [spl_transfer_checked(WALLET_USDC, USDC_MINT, BOB_USDC, 5, 6)],
            tables=[table(USDC_MINT)],
        ),
        {
            "action": "solana.call",
            "contract": str(TOKEN),
            "asset": None,
            "amount": "5",
            "to": str(BOB_USDC),
        },
        ("cannot be resolved offline", "its mint comes from a lookup table"),
    ),
    "v0 with a lookup table for another account keeps the static transfer": Case(
        lambda: v0_b64([sol_transfer(BOB, SOL), program_call(JUPITER)], tables=[table(CAROL)]),
        {"action": "solana.call", "contract": str(JUPITER), "amount": "1", "to": str(BOB)},
        ("loads accounts from 1 lookup table",),
    ),
    # -- signers ------------------------------------------------------------------------------
    "an extra required signer is refused": Case(
        lambda: legacy_b64([sol_transfer(BOB, SOL), memo("co-sign", [MALLORY])]),
        refused=f"also needs the signature of {MALLORY}",
    ),
    "a transaction the wallet does not sign is refused": Case(
        lambda: legacy_b64([sol_transfer(BOB, SOL, source=MALLORY)], payer=MALLORY),
        refused="does not need the wallet's signature",
    ),
    "a separate fee payer (sponsor) is allowed and shown": Case(
        lambda: legacy_b64([sol_transfer(BOB, SOL)], payer=SPONSOR),
        {"action": "solana.transfer", "amount": "1", "to": str(BOB)},
        (f"fee paid by {_short(SPONSOR)}",),
    ),
    "a transfer out of the sponsor's account says whose money it is": Case(
        lambda: legacy_b64(
            [sol_transfer(BOB, SOL, source=SPONSOR), memo("x", [WALLET])], payer=SPONSOR
        ),
        {"action": "solana.transfer", "amount": "1"},
        (f"from {_short(SPONSOR)}",),
    ),
    # -- malformed input ----------------------------------------------------------------------
    "malformed base64 is refused": Case(lambda: "AQID$$$not-base64", refused="not valid base64"),
    "empty input is refused": Case(lambda: "  ", refused="empty"),
    "truncated bytes are refused": Case(
        lambda: encode(base64.b64decode(legacy_b64([sol_transfer(BOB, 1)]))[:-7]),
        refused="not a Solana transaction",
    ),
    "trailing bytes are refused": Case(
        lambda: encode(base64.b64decode(legacy_b64([sol_transfer(BOB, 1)])) + b"\x00"),
        refused="trailing or non-canonical",
    ),
    "a signature slot the header does not need is refused": Case(
        _extra_signature_slot, refused="inconsistent"
    ),
    "an unknown message version is refused": Case(_v1_or_garbage_version, refused="transaction"),
    "a v1 message (SIMD-0385) is refused": Case(_v1_message, refused="legacy and v0"),
    "more than 1232 bytes is refused": Case(lambda: encode(bytes(1300)), refused="1232"),
    "zero instructions are refused": Case(_zero_instructions, refused="no instructions"),
}


def _decode(case: Case, registry: Registry = REGISTRY, chain: ChainInfo = SOLANA) -> Intent:
    return intent_from_tx(
        parse(case.build()), registry=registry, chain=chain, wallet_address=case.wallet
    )


def test_the_table_covers_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", list(CASES))
def test_decode(name: str) -> None:
    case = CASES[name]
    if case.refused is not None:
        with pytest.raises(
            MalformedRequestError, match=case.refused.replace("(", r"\(").replace(")", r"\)")
        ):
            _decode(case)
        return
    intent = _decode(case)
    got = intent.model_dump()
    assert {k: got[k] for k in case.expect} == case.expect
    assert intent.summary is not None
    for words in case.summary_has:
        assert words in intent.summary, intent.summary


# -- beyond the table ---------------------------------------------------------------------------


def test_parse_exposes_signers_fee_payer_version_and_tables() -> None:
    tx = parse(v0_b64([sol_transfer(BOB, 1)], payer=SPONSOR, tables=[table(CAROL, BOB)]))
    assert tx.version == 0
    assert tx.fee_payer == str(SPONSOR)
    assert tx.required_signers == (str(SPONSOR), str(WALLET))
    assert tx.lookup_tables == (str(TABLE),)
    assert [r.describe() for r in tx.loaded_accounts] == [f"entry 1 of lookup table {TABLE}"]
    assert tx.signer_index(str(WALLET)) == 1 and tx.signer_index(str(BOB)) is None
    assert not tx.is_signed_by(str(WALLET))
    msg = v0_message([sol_transfer(BOB, 1)], payer=SPONSOR, tables=[table(CAROL, BOB)])
    assert tx.message_bytes == bytes(to_bytes_versioned(msg))


def test_parse_legacy_has_no_tables_and_round_trips() -> None:
    b64 = legacy_b64([sol_transfer(BOB, 1)])
    tx = parse(b64)
    assert tx.version == "legacy" and tx.lookup_tables == () and tx.loaded_accounts == ()
    assert tx.base64 == b64
    assert isinstance(tx.message, type(legacy_message([sol_transfer(BOB, 1)])))


def test_refusal_never_quotes_the_input() -> None:
    secretish = "Q0FOQVJZLVRPS0VO" * 3 + "$"
    with pytest.raises(MalformedRequestError) as info:
        parse(secretish)
    assert secretish not in str(info.value) and "Q0FOQVJZ" not in repr(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_intent_for_an_evm_chain_is_refused() -> None:
    with pytest.raises(MalformedRequestError, match="not a Solana cluster"):
        _decode(CASES["system transfer, legacy"], chain=REGISTRY.chain("base"))


def test_custom_solana_chain_uses_its_native_asset() -> None:
    reg = Registry.builtin().with_additions(
        [ChainInfo("my-sol", "solana", None, builtin=False)], []
    )
    intent = _decode(CASES["system transfer, legacy"], registry=reg, chain=reg.chain("my-sol"))
    assert (intent.chain, intent.asset, intent.amount) == ("my-sol", "SOL", "0.5")


def test_priority_fee_ceiling_applies_only_when_the_wallet_pays() -> None:
    ixs = [limit(1_400_000), price(10**9), sol_transfer(BOB, 1)]
    sponsored = intent_from_tx(
        parse(legacy_b64(ixs, payer=SPONSOR)),
        registry=REGISTRY,
        chain=SOLANA,
        wallet_address=str(WALLET),
    )
    assert sponsored.action == "solana.transfer"
    raised = intent_from_tx(
        parse(legacy_b64(ixs)),
        registry=REGISTRY,
        chain=SOLANA,
        wallet_address=str(WALLET),
        max_priority_fee_lamports=2 * SOL,
    )
    assert "priority fee up to 1.4 SOL" in (raised.summary or "")


def test_default_compute_limit_counts_200k_per_instruction() -> None:
    intent = _decode(Case(lambda: legacy_b64([price(1_000_000), sol_transfer(BOB, 1)])))
    assert "priority fee up to 0.0002 SOL" in (intent.summary or "")


_ALLOW_SOLANA_TRANSFERS = parse_policy(
    "version: 1\nrules:\n  - name: pay\n    allow: [solana.transfer]\n    wallets: [main]\n"
    "    chains: [solana]\n"
)


def _decide(intent: Intent) -> Decision:
    # the service names the signing wallet on the decoded intent
    return decide(
        _ALLOW_SOLANA_TRANSFERS,
        AgentState("bot", "active"),
        intent.model_copy(update={"wallet": "main"}),
        registry=REGISTRY,
        usage=lambda *_: ({}, 0),
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_policy_allows_a_registered_transfer() -> None:
    assert _decide(_decode(CASES["system transfer, legacy"])).outcome == "allow"
    assert _decide(_usdc_to_bob()).outcome == "allow"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("spl transfer names no mint: asset unknown, base units", "UNEVALUABLE"),
        ("transferChecked of an unknown mint names the mint as asset", "UNKNOWN_ASSET"),
    ],
    ids=["plain transfer", "unknown mint"],
)
def test_policy_denies_a_transfer_whose_asset_it_cannot_judge(name: str, code: str) -> None:
    decision = _decide(_decode(CASES[name]))
    assert (decision.outcome, decision.code) == ("deny", code)


_VALUE_MOVES_POLICY = parse_policy("""\
version: 1
rules:
  - name: programs
    allow: [solana.call]
    wallets: [main]
    chains: [solana]
  - name: pay
    allow: [solana.transfer]
    wallets: [main]
    chains: [solana]
    assets: [SOL]
    max_per_tx: {SOL: "1"}
  - name: limited-approvals
    allow: [solana.approve]
    wallets: [main]
    chains: [solana]
    when: {unlimited: false}
    max_per_tx: {USDC: "10"}
  - name: anything-under-a-sol-cap
    allow: [solana.set_authority, solana.close_account]
    wallets: [main]
    chains: [solana]
    max_per_tx: {SOL: "1"}
""")


def _decide_value_move(name: str) -> Decision:
    return decide(
        _VALUE_MOVES_POLICY,
        AgentState("bot", "active"),
        _decode(CASES[name]).model_copy(update={"wallet": "main"}),
        registry=REGISTRY,
        usage=lambda *_: ({}, 0),
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("name", "outcome", "code"),
    [
        ("createAccount moves its lamports to the new account", "deny", "OVER_PER_TX_LIMIT"),
        (
            "createAccountWithSeed moves its lamports to the derived account",
            "deny",
            "OVER_PER_TX_LIMIT",
        ),
        (
            "transferWithSeed out of the wallet's derived account is a transfer",
            "deny",
            "OVER_PER_TX_LIMIT",
        ),
        ("withdrawNonceAccount moves its lamports to the recipient", "deny", "OVER_PER_TX_LIMIT"),
        ("approveChecked of a registered mint: spender, amount in token units", "allow", None),
        ("approveChecked of u64::MAX is unlimited", "deny", "NO_MATCHING_RULE"),
        ("approveChecked of an unknown mint names the mint as asset", "deny", "UNKNOWN_ASSET"),
        ("plain approve names no mint: base units, never unlimited", "deny", "UNEVALUABLE"),
        ("system assign of the wallet hands its SOL to that program", "deny", "OVER_PER_TX_LIMIT"),
        (
            "closeAccount to someone else sends all its SOL there: close_account, unlimited",
            "deny",
            "OVER_PER_TX_LIMIT",
        ),
    ],
    ids=[
        "createAccount",
        "createAccountWithSeed",
        "transferWithSeed",
        "withdrawNonceAccount",
        "approve 5 USDC",
        "approve unlimited",
        "approve unknown mint",
        "plain approve",
        "assign",
        "closeAccount",
    ],
)
def test_policy_judges_value_moves_by_their_amounts_not_as_calls(
    name: str, outcome: str, code: str | None
) -> None:
    decision = _decide_value_move(name)
    assert (decision.outcome, decision.code) == (outcome, code), decision.reason


def test_policy_allows_an_unlimited_move_only_through_a_rule_without_a_cap() -> None:
    policy = parse_policy(
        "version: 1\nrules:\n  - name: close\n    allow: [solana.close_account]\n"
        f'    wallets: [main]\n    recipients: ["{MALLORY}"]\n'
    )
    intent = _decode(
        CASES["closeAccount to someone else sends all its SOL there: close_account, unlimited"]
    )
    decision = decide(
        policy,
        AgentState("bot", "active"),
        intent.model_copy(update={"wallet": "main"}),
        registry=REGISTRY,
        usage=lambda *_: ({}, 0),
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert (decision.outcome, decision.rule) == ("allow", "close")


def test_summary_is_bounded_and_single_line() -> None:
    intent = _decode(Case(lambda: legacy_b64([sol_transfer(BOB, 1), memo("x\n" * 400)])))
    assert intent.summary is not None and len(intent.summary) <= 500 and "\n" not in intent.summary


# -- declared vs decoded ------------------------------------------------------------------------


def _usdc_to_bob() -> Intent:
    return _decode(CASES["transferChecked of a registered mint is in token units"])


def test_declared_matching_transfer_is_accepted() -> None:
    decoded = _decode(CASES["system transfer, legacy"])
    declared = Intent(
        action="solana.transfer", chain="solana", asset="sol", amount="0.50", to=str(BOB)
    )
    assert check_declared(decoded, declared) == decoded


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"amount": "0.6"}, "declares amount '0.6'"),
        ({"to": str(CAROL)}, "declares recipient"),
        ({"asset": "USDC"}, "declares asset 'USDC'"),
        ({"action": "solana.call"}, "declares action"),
        ({"amount": None}, "declares amount 'none'"),
        ({"chain": "solana-devnet"}, "declares chain"),
    ],
    ids=["amount", "recipient", "asset", "action", "missing amount", "chain"],
)
def test_declared_mismatch_is_refused(change: dict[str, Any], words: str) -> None:
    decoded = _decode(CASES["system transfer, legacy"])
    base = {
        "action": "solana.transfer",
        "chain": "solana",
        "asset": "SOL",
        "amount": "0.5",
        "to": str(BOB),
    }
    with pytest.raises(MalformedRequestError, match=words):
        check_declared(decoded, Intent(**{**base, **change}))


def test_declared_spl_recipient_wallet_is_accepted_through_its_token_account() -> None:
    decoded = _usdc_to_bob()
    declared = Intent(action="solana.transfer", asset=str(USDC_MINT), amount="25", to=str(BOB))
    judged = check_declared(decoded, declared)
    assert judged.to == str(BOB) and judged.asset == "USDC"
    assert f"token account of {BOB}" in (judged.summary or "")


def test_declared_spl_recipient_that_does_not_own_the_account_is_refused() -> None:
    declared = Intent(action="solana.transfer", asset="USDC", amount="25", to=str(CAROL))
    with pytest.raises(MalformedRequestError, match="declares recipient"):
        check_declared(_usdc_to_bob(), declared)


def test_declared_unlimited_approval_with_its_spender_is_accepted() -> None:
    decoded = _decode(CASES["approveChecked of u64::MAX is unlimited"])
    declared = Intent(
        action="solana.approve", asset="USDC", amount="Unlimited", spender=str(MALLORY)
    )
    assert check_declared(decoded, declared) == decoded


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"spender": str(BOB)}, "declares spender"),
        ({"amount": "5"}, "declares amount '5'"),
    ],
    ids=["spender", "limited amount"],
)
def test_declared_approval_mismatch_is_refused(change: dict[str, Any], words: str) -> None:
    decoded = _decode(CASES["approveChecked of u64::MAX is unlimited"])
    base = {
        "action": "solana.approve",
        "asset": "USDC",
        "amount": "unlimited",
        "spender": str(MALLORY),
    }
    with pytest.raises(MalformedRequestError, match=words):
        check_declared(decoded, Intent(**{**base, **change}))


def test_declared_asset_on_a_plain_transfer_is_refused() -> None:
    decoded = _decode(CASES["spl transfer names no mint: asset unknown, base units"])
    declared = Intent(action="solana.transfer", asset="USDC", amount="25000000", to=str(BOB_USDC))
    with pytest.raises(MalformedRequestError, match="names no mint"):
        check_declared(decoded, declared)


# -- messages -----------------------------------------------------------------------------------


def test_message_utf8_is_signed_as_its_bytes() -> None:
    intent, raw = intent_from_message("Sign in to example.com ✓", encoding="utf8", chain=SOLANA)
    assert raw == "Sign in to example.com ✓".encode()
    assert intent.action == "solana.sign_message" and intent.chain == "solana"
    assert intent.message == "Sign in to example.com ✓"
    assert intent.summary == f'sign message "Sign in to example.com ✓" ({len(raw)} bytes)'


def test_message_base64_binary_has_no_text() -> None:
    data = bytes([0xFF, 0xFE, 0x00, 0x01]) * 4
    intent, raw = intent_from_message(
        base64.b64encode(data).decode(), encoding="base64", chain=SOLANA
    )
    assert raw == data and intent.message is None
    assert "16 bytes of binary data" in (intent.summary or "")


def test_message_base64_text_keeps_its_text() -> None:
    intent, raw = intent_from_message(
        base64.b64encode(b"hello").decode(), encoding="base64", chain=SOLANA
    )
    assert raw == b"hello" and intent.message == "hello"


@pytest.mark.parametrize(
    ("text", "encoding", "words"),
    [
        ("", "utf8", "empty"),
        ("not base64!", "base64", "not valid base64"),
        ("x" * 65537, "utf8", "at most 65536 bytes"),
        ("\udc80", "utf8", "not valid UTF-8"),
    ],
    ids=["empty", "bad base64", "too long", "lone surrogate"],
)
def test_message_bad_input_is_refused(text: str, encoding: Any, words: str) -> None:
    with pytest.raises(MalformedRequestError, match=words):
        intent_from_message(text, encoding=encoding, chain=SOLANA)


@pytest.mark.parametrize("version", ["legacy", "v0"])
def test_message_that_is_a_transaction_message_is_refused(version: str) -> None:
    ixs = [sol_transfer(BOB, SOL)]
    msg = legacy_message(ixs) if version == "legacy" else v0_message(ixs)
    raw = bytes(to_bytes_versioned(msg))
    with pytest.raises(MalformedRequestError, match="sign a transaction blind"):
        intent_from_message(base64.b64encode(raw).decode(), encoding="base64", chain=SOLANA)


def test_offchain_message_format_is_signable() -> None:
    raw = b"\xffsolana offchain" + bytes([0, 0]) + (5).to_bytes(2, "little") + b"hello"
    intent, out = intent_from_message(
        base64.b64encode(raw).decode(), encoding="base64", chain=SOLANA
    )
    assert out == raw and intent.action == "solana.sign_message"


def test_unsigned_helper_matches_solders_transaction_bytes() -> None:
    # Guard for the builders: an unsigned legacy tx is what solders' own Transaction serialises.
    from solders.transaction import Transaction

    msg = legacy_message([sol_transfer(BOB, 1)])
    assert bytes(unsigned(msg)) == bytes(Transaction.new_unsigned(msg))
    assert isinstance(v0_message([sol_transfer(BOB, 1)]), MessageV0)


# -- robustness ---------------------------------------------------------------------------------

_SEEDS = [
    base64.b64decode(CASES[name].build())
    for name in (
        "compute budget + transfer",
        "v0 transferChecked whose mint comes from a lookup table has no asset",
        "create recipient's token account then transferChecked stays a transfer",
    )
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 40),
)
def test_mutated_transactions_decode_or_are_refused_cleanly(
    seed: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    raw = bytearray(seed)
    for pos, value in edits:
        raw[pos % len(raw)] = value
    data = encode(bytes(raw[: len(raw) - cut]))
    try:
        intent = intent_from_tx(
            parse(data), registry=REGISTRY, chain=SOLANA, wallet_address=str(WALLET)
        )
    except MalformedRequestError as exc:
        assert data not in str(exc)
        return
    assert intent.action in ACTIONS and intent.action.startswith("solana.")
