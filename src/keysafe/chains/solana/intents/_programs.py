"""Solana program ids and the runtime's constants and instruction names keysafe reads."""

from __future__ import annotations

import logging
from typing import Final

logger = logging.getLogger(__name__)


# Program ids are public addresses; ruff's S105 mistakes "Token…" names for passwords.
SYSTEM_PROGRAM: Final = "11111111111111111111111111111111"
TOKEN_PROGRAM: Final = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"  # noqa: S105
TOKEN_2022_PROGRAM: Final = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"  # noqa: S105
ASSOCIATED_TOKEN_PROGRAM: Final = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"  # noqa: S105
COMPUTE_BUDGET_PROGRAM: Final = "ComputeBudget111111111111111111111111111111"
MEMO_PROGRAM: Final = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
MEMO_V1_PROGRAM: Final = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"

TOKEN_PROGRAMS: Final = {TOKEN_PROGRAM: "spl-token", TOKEN_2022_PROGRAM: "token-2022"}
MEMO_PROGRAMS: Final = frozenset({MEMO_PROGRAM, MEMO_V1_PROGRAM})

# 0.05 SOL. Priority fees go to validators, not to an attacker, but an agent could still burn
# the wallet's SOL with a huge compute-unit price; real priority fees are far below this.
MAX_PRIORITY_FEE_LAMPORTS: Final = 50_000_000
MAX_MESSAGE_SIZE: Final = 65536  # Intent.message holds at most 65536 characters

# Runtime constants (solana compute-budget): fee per signature, default and maximum units.
LAMPORTS_PER_SIGNATURE: Final = 5000
# Rent-exempt minimum of a 165-byte SPL token account (0.00203928 SOL). Creating one for someone
# else moves that much SOL to them (its owner can close it and keep the lamports), so it is
# charged as part of the fee. Token-2022 accounts with extensions are larger: this is a floor.
TOKEN_ACCOUNT_RENT_LAMPORTS: Final = 2_039_280
DEFAULT_UNITS_PER_INSTRUCTION: Final = 200_000
MAX_COMPUTE_UNITS: Final = 1_400_000
MICRO_LAMPORTS: Final = 1_000_000
SOL_DECIMALS: Final = 9
# The u8 in transferChecked allows 255; 64 keeps "0." + digits inside Intent.amount (100 chars).
MAX_DECIMALS: Final = 64

# An SPL approval is a u64, so "unlimited" cannot be 2^128 as for ERC-20: wallets approve
# u64::MAX, and from 2^63 base units up no allowance is a real, bounded amount any more (it
# exceeds nearly every mint's whole supply). Judging too much as unlimited is the safe side:
# caps and windows refuse unlimited amounts.
SPL_UNLIMITED_FROM: Final = 2**63
MAX_SEED_LEN: Final = 32  # solana_pubkey::MAX_SEED_LEN
# Precompiles: each signature they verify is charged like a transaction signature; the first
# data byte is the number of signatures.
PRECOMPILES: Final = frozenset(
    {
        "Ed25519SigVerify111111111111111111111111111",
        "KeccakSecp256k11111111111111111111111111111",
        "Secp256r1SigVerify1111111111111111111111111",
    }
)

SYSTEM_NAMES: Final = (
    "createAccount",
    "assign",
    "transfer",
    "createAccountWithSeed",
    "advanceNonceAccount",
    "withdrawNonceAccount",
    "initializeNonceAccount",
    "authorizeNonceAccount",
    "allocate",
    "allocateWithSeed",
    "assignWithSeed",
    "transferWithSeed",
    "upgradeNonceAccount",
    "createAccountAllowPrefund",
)
# spl-token's AuthorityType (Token knows the first four; Token-2022 all of them).
AUTHORITY_TYPES: Final = (
    "MintTokens",
    "FreezeAccount",
    "AccountOwner",
    "CloseAccount",
    "TransferFeeConfig",
    "WithheldWithdraw",
    "CloseMint",
    "InterestRate",
    "PermanentDelegate",
    "ConfidentialTransferMint",
    "TransferHookProgramId",
    "ConfidentialTransferFeeConfig",
    "MetadataPointer",
    "GroupPointer",
    "GroupMemberPointer",
    "ScaledUiAmount",
    "Pause",
)
TOKEN_NAMES: Final = (
    "initializeMint",
    "initializeAccount",
    "initializeMultisig",
    "transfer",
    "approve",
    "revoke",
    "setAuthority",
    "mintTo",
    "burn",
    "closeAccount",
    "freezeAccount",
    "thawAccount",
    "transferChecked",
    "approveChecked",
    "mintToChecked",
    "burnChecked",
    "initializeAccount2",
    "syncNative",
    "initializeAccount3",
    "initializeMultisig2",
    "initializeMint2",
)
BUDGET_NAMES: Final = {
    1: "requestHeapFrame",
    2: "setComputeUnitLimit",
    3: "setComputeUnitPrice",
    4: "setLoadedAccountsDataSizeLimit",
}
BUDGET_DATA_SIZE: Final = {1: 5, 2: 5, 3: 9, 4: 5}
