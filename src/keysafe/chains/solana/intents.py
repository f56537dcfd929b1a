"""Decode what a Solana transaction or message would do, as the `Intent` a policy judges.

    >>> tx = parse_transaction(b64)                                        # doctest: +SKIP
    >>> intent = intent_from_tx(tx, registry=reg, chain=sol, wallet_address=me)  # doctest: +SKIP
    >>> intent.action, intent.asset, intent.amount, intent.summary         # doctest: +SKIP
    ('solana.transfer', 'SOL', '0.5', 'send 0.5 SOL to 9xQe…WdKp')

Rules this module enforces (each refusal is a `MalformedRequestError`: nothing gets signed):

Signers
    The wallet must be one of the transaction's required signers. Any other required signer is
    refused, except the fee payer (the first key): a sponsor may pay the fee and sign for it.

Instructions, one by one
    * System `transfer` → a SOL transfer. Trailing data bytes are ignored exactly as the System
      program ignores them, so padding cannot turn a transfer into an unknown call.
    * SPL Token and Token-2022 `transfer` ([3] + u64) and `transferChecked` ([12] + u64 + u8):
      token transfers. `transferChecked` names the mint and decimals: the amount is in token units
      and the asset is the registry's symbol for that mint on this chain, or the mint address when
      the registry does not know it (policy then denies: unknown asset). If the registry knows the
      mint with other decimals than the instruction states, the request is refused.
    * Plain SPL `transfer` names no mint (its destination is a token account), so the asset is
      unknown: `asset` is None, `amount` stays in base units and the summary says so. The policy
      engine cannot judge an amount without an asset, so it denies ("cannot be judged").
    * Other System instructions that move lamports are SOL transfers too: `createAccount`,
      `createAccountWithSeed` and `createAccountAllowPrefund` (funding account → the new
      account), `transferWithSeed` (the base key's derived account → recipient; the base key
      signs, so it is that signer's money) and `withdrawNonceAccount` (nonce account →
      recipient). Seeds over 32 bytes or not UTF-8, and short data, are refused.
    * SPL `approve` ([4] + u64) and `approveChecked` ([13] + u64 + u8) → `solana.approve`:
      `spender` = the delegate, asset and amount as for transfers (approveChecked names the mint;
      plain approve does not, so its amount stays in base units and the engine denies it). From
      `SPL_UNLIMITED_FROM` (2^63) base units up, including u64::MAX, the amount is `unlimited`,
      so caps, windows and `when: {unlimited: …}` treat it like an unlimited ERC-20 approval.
    * Handing over control → `solana.set_authority` (`contract` = the account, `to` and
      `spender` = the new authority, None when removed; the authority type is in the summary):
      SPL `setAuthority`, System `assign`/`assignWithSeed` (the account's new owner program can
      take its lamports), `authorizeNonceAccount`, and `createAccountAllowPrefund` of the wallet
      itself. Control carries everything the account holds or can mint, so the amount is
      `unlimited` (asset SOL for System accounts, none for SPL ones): no cap can allow it.
    * SPL `closeAccount` to anyone but the wallet → `solana.close_account` (`to` = destination):
      the account's whole lamport balance moves (rent, and for wrapped SOL the wrapped amount),
      but the instruction does not say how much, so it is `unlimited` SOL: only a rule that
      names the action without a SOL cap or window allows it.
    * Compute-budget instructions set the fee: the largest priority fee the transaction can pay is
      computed, shown in the summary, and refused above `max_priority_fee_lamports` when the
      wallet pays the fee. Malformed or repeated ones are refused (the runtime would fail them).
    * Helpers that move no value away from the wallet and do not change the action: memos (text
      goes into the summary), associated-token-account `create`/`createIdempotent`, SPL
      `syncNative`, and SPL `closeAccount` whose rent goes back to the wallet.
    * Any other instruction is a call to its program.

Address lookup tables (v0)
    Accounts loaded from a lookup table cannot be resolved offline (the table's contents live on
    chain), and keysafe never guesses them. A transfer with any account (source, destination,
    mint, authority) from a lookup table is therefore *not* decoded as a transfer: it counts as a
    call to its program (System or SPL Token), so the intent is `solana.call`, never
    `solana.transfer`. What can be read is still reported: the amount (in SOL for System
    transfers, in base units with no asset for SPL ones) so that caps still apply, and `to`
    stays None, so no recipient rule can match. Program ids are always static keys (the runtime
    requires it), so the called program is always known.

The intent of the whole transaction
    * Transfers in one transaction must move one asset to one recipient; their amounts add up.
      Several assets or recipients are refused (a policy judges one amount and one recipient).
    * No calls: `solana.transfer`. One called program: `solana.call` with `contract` = that
      program, carrying the transfer's asset, amount and recipient too, so caps still apply.
      Calls to several programs are refused (a policy names one contract per request).
    * Only helpers: `solana.call` to the helper's program (e.g. a memo). No instruction: refused.
    * An approval, authority change or closing is judged alone: with any transfer, call or
      second one beside it the transaction is refused, so no value move hides behind another.
      Its accounts must be static keys (a lookup-table account is refused: whom it hands
      value to could not be told).
    * `fee`: the most the wallet pays for the network fee, in SOL: 5000 lamports per signature
      (the transaction's and those its Ed25519/secp256k1/secp256r1 precompile instructions
      verify) plus the priority fee (compute-unit price × limit / 10^6, rounded up). "0" when a
      sponsor pays. The summary shows it.

Messages
    Ed25519 over the exact bytes (UTF-8 text or base64 input). Bytes that read as a Solana
    transaction message are refused: signing them would sign a transaction blind.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal

from pydantic import ValidationError
from solders.message import Message, from_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

from keysafe.chains.solana.tx import AccountRef, SolanaTx
from keysafe.errors import MalformedRequestError
from keysafe.policy.intent import UNLIMITED, Intent
from keysafe.policy.registry import AssetInfo, ChainInfo, Registry, from_base_units, parse_decimal

__all__ = [
    "ASSOCIATED_TOKEN_PROGRAM",
    "COMPUTE_BUDGET_PROGRAM",
    "MAX_MESSAGE_SIZE",
    "MAX_PRIORITY_FEE_LAMPORTS",
    "MEMO_PROGRAM",
    "MEMO_V1_PROGRAM",
    "SPL_UNLIMITED_FROM",
    "SYSTEM_PROGRAM",
    "TOKEN_2022_PROGRAM",
    "TOKEN_PROGRAM",
    "check_declared",
    "intent_from_message",
    "intent_from_tx",
]

logger = logging.getLogger(__name__)

# Program ids are public addresses; ruff's S105 mistakes "Token…" names for passwords.
SYSTEM_PROGRAM: Final = "11111111111111111111111111111111"
TOKEN_PROGRAM: Final = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"  # noqa: S105
TOKEN_2022_PROGRAM: Final = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"  # noqa: S105
ASSOCIATED_TOKEN_PROGRAM: Final = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"  # noqa: S105
COMPUTE_BUDGET_PROGRAM: Final = "ComputeBudget111111111111111111111111111111"
MEMO_PROGRAM: Final = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
MEMO_V1_PROGRAM: Final = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"

_TOKEN_PROGRAMS: Final = {TOKEN_PROGRAM: "spl-token", TOKEN_2022_PROGRAM: "token-2022"}
_MEMO_PROGRAMS: Final = frozenset({MEMO_PROGRAM, MEMO_V1_PROGRAM})

# 0.05 SOL. Priority fees go to validators, not to an attacker, but an agent could still burn
# the wallet's SOL with a huge compute-unit price; real priority fees are far below this.
MAX_PRIORITY_FEE_LAMPORTS: Final = 50_000_000
MAX_MESSAGE_SIZE: Final = 65536  # Intent.message holds at most 65536 characters

# Runtime constants (solana compute-budget): fee per signature, default and maximum units.
_LAMPORTS_PER_SIGNATURE: Final = 5000
# Rent-exempt minimum of a 165-byte SPL token account (0.00203928 SOL). Creating one for someone
# else moves that much SOL to them (its owner can close it and keep the lamports), so it is
# charged as part of the fee. Token-2022 accounts with extensions are larger: this is a floor.
TOKEN_ACCOUNT_RENT_LAMPORTS: Final = 2_039_280
_DEFAULT_UNITS_PER_INSTRUCTION: Final = 200_000
_MAX_COMPUTE_UNITS: Final = 1_400_000
_MICRO_LAMPORTS: Final = 1_000_000
_SOL_DECIMALS: Final = 9
# The u8 in transferChecked allows 255; 64 keeps "0." + digits inside Intent.amount (100 chars).
_MAX_DECIMALS: Final = 64

# An SPL approval is a u64, so "unlimited" cannot be 2^128 as for ERC-20: wallets approve
# u64::MAX, and from 2^63 base units up no allowance is a real, bounded amount any more (it
# exceeds nearly every mint's whole supply). Judging too much as unlimited is the safe side:
# caps and windows refuse unlimited amounts.
SPL_UNLIMITED_FROM: Final = 2**63
_MAX_SEED_LEN: Final = 32  # solana_pubkey::MAX_SEED_LEN
# Precompiles: each signature they verify is charged like a transaction signature; the first
# data byte is the number of signatures.
_PRECOMPILES: Final = frozenset({
    "Ed25519SigVerify111111111111111111111111111",
    "KeccakSecp256k11111111111111111111111111111",
    "Secp256r1SigVerify1111111111111111111111111",
})  # fmt: skip

_SYSTEM_NAMES: Final = (
    "createAccount", "assign", "transfer", "createAccountWithSeed", "advanceNonceAccount",
    "withdrawNonceAccount", "initializeNonceAccount", "authorizeNonceAccount", "allocate",
    "allocateWithSeed", "assignWithSeed", "transferWithSeed", "upgradeNonceAccount",
    "createAccountAllowPrefund",
)  # fmt: skip
# spl-token's AuthorityType (Token knows the first four; Token-2022 all of them).
_AUTHORITY_TYPES: Final = (
    "MintTokens", "FreezeAccount", "AccountOwner", "CloseAccount", "TransferFeeConfig",
    "WithheldWithdraw", "CloseMint", "InterestRate", "PermanentDelegate",
    "ConfidentialTransferMint", "TransferHookProgramId", "ConfidentialTransferFeeConfig",
    "MetadataPointer", "GroupPointer", "GroupMemberPointer", "ScaledUiAmount", "Pause",
)  # fmt: skip
_TOKEN_NAMES: Final = (
    "initializeMint", "initializeAccount", "initializeMultisig", "transfer", "approve", "revoke",
    "setAuthority", "mintTo", "burn", "closeAccount", "freezeAccount", "thawAccount",
    "transferChecked", "approveChecked", "mintToChecked", "burnChecked", "initializeAccount2",
    "syncNative", "initializeAccount3", "initializeMultisig2", "initializeMint2",
)  # fmt: skip
_BUDGET_NAMES: Final = {
    1: "requestHeapFrame",
    2: "setComputeUnitLimit",
    3: "setComputeUnitPrice",
    4: "setLoadedAccountsDataSizeLimit",
}
_BUDGET_DATA_SIZE: Final = {1: 5, 2: 5, 3: 9, 4: 5}

_REBUILD: Final = "rebuild the transaction with your Solana library and send it again."


# -- decoded instructions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Budget:
    kind: int  # compute-budget discriminator
    value: int


@dataclass(frozen=True, slots=True)
class _Helper:
    program: str
    what: str  # e.g. "memo", "create token account"
    memo: str | None = None
    ata: tuple[str, str] | None = None  # (token account, owner) proven by derivation


@dataclass(frozen=True, slots=True)
class _Call:
    program: str
    what: str  # instruction name when known, else ""


@dataclass(frozen=True, slots=True)
class _Transfer:
    program: str
    function: str  # "system.transfer", "spl-token.transferChecked", …
    source: AccountRef
    destination: AccountRef
    authority: AccountRef
    units: int  # base units (lamports or token base units)
    mint: AccountRef | None = None  # transferChecked only
    decimals: int | None = None  # transferChecked only
    note: str = ""  # what else the instruction does (creates an account, …), for the summary

    @property
    def resolved(self) -> bool:
        refs = (self.source, self.destination, self.authority, self.mint)
        return all(r is None or r.resolved for r in refs)


@dataclass(frozen=True, slots=True)
class _Approve:
    """SPL approve/approveChecked: `delegate` may then move up to `units` out of `source`."""

    program: str
    function: str  # "spl-token.approve", "token-2022.approveChecked", …
    source: AccountRef
    delegate: AccountRef
    owner: AccountRef
    units: int  # base units
    mint: AccountRef | None = None  # approveChecked only
    decimals: int | None = None  # approveChecked only


@dataclass(frozen=True, slots=True)
class _Authority:
    """Control over `account` passes to `new`: whatever the account holds or can do goes too."""

    program: str
    function: str  # "spl-token.setAuthority", "system.assign", …
    account: AccountRef
    kind: str  # which authority: "AccountOwner", "MintTokens", "owner program", …
    new: str | None  # the new authority (from the instruction data); None: removed for good


@dataclass(frozen=True, slots=True)
class _Close:
    """SPL closeAccount to someone else: the account's whole lamport balance goes there."""

    program: str
    function: str
    account: AccountRef
    destination: AccountRef


_Step = _Budget | _Helper | _Call | _Transfer | _Approve | _Authority | _Close
# Value moves that are not transfers: each is judged as its own action, so each must be alone.
_Alone = _Approve | _Authority | _Close


def _refuse(what: str, next_step: str = _REBUILD) -> MalformedRequestError:
    return MalformedRequestError(what, next_step=next_step)


def _short(address: str | None) -> str:
    if address is None:
        return "an account from a lookup table"
    return f"{address[:4]}…{address[-4:]}" if len(address) > 10 else address


def _printable(text: str, limit: int = 80) -> str:
    """Text safe for a one-line summary: no control characters, bounded length."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _u(data: bytes, start: int, size: int) -> int:
    return int.from_bytes(data[start : start + size], "little")


def _accounts(tx: SolanaTx, indexes: bytes, need: int, n: int, name: str) -> list[AccountRef]:
    if len(indexes) < need:
        raise _refuse(
            f"Instruction {n} ({name}) lists {len(indexes)} accounts but needs at least {need}; "
            "the program would refuse it."
        )
    return [tx.account_ref(i) for i in indexes[:need]]


def _short_data(n: int, name: str) -> MalformedRequestError:
    return _refuse(f"Instruction {n} ({name}) has too few data bytes; the program would refuse it.")


class _Data:
    """Reads an instruction's data field by field; running short means the program refuses it.

    Bytes after the last field are ignored, as the System program's bincode and the SPL Token
    unpackers ignore them, so padding cannot turn an instruction into something else.
    """

    def __init__(self, raw: bytes, n: int, name: str, start: int) -> None:
        self._raw, self._n, self._name, self._pos = raw, n, name, start

    def take(self, size: int) -> bytes:
        if self._pos + size > len(self._raw):
            raise _short_data(self._n, self._name)
        out = self._raw[self._pos : self._pos + size]
        self._pos += size
        return out

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")

    def pubkey(self) -> str:
        return str(Pubkey.from_bytes(self.take(32)))

    def seed(self) -> str:
        # bincode String: u64 length, then UTF-8; the runtime allows seeds of at most 32 bytes.
        size = self.u64()
        if size > _MAX_SEED_LEN:
            raise _refuse(
                f"Instruction {self._n} ({self._name}) has a seed of {size} bytes; the runtime "
                f"allows at most {_MAX_SEED_LEN} and would refuse it."
            )
        try:
            return self.take(size).decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse(
                f"Instruction {self._n} ({self._name}) has a seed that is not UTF-8; the runtime "
                "would refuse it."
            ) from None


def _decode_system(tx: SolanaTx, n: int, data: bytes, accounts: bytes, wallet: str) -> _Step:
    if len(data) < 4:
        raise _short_data(n, "System program")
    tag = _u(data, 0, 4)
    name = _SYSTEM_NAMES[tag] if tag < len(_SYSTEM_NAMES) else f"instruction {tag}"
    label = f"System {name}"
    d = _Data(data, n, label, 4)
    if tag == 2:  # Transfer { lamports }: source, destination
        lamports = d.u64()
        source, destination = _accounts(tx, accounts, 2, n, label)
        return _Transfer(SYSTEM_PROGRAM, "system.transfer", source, destination, source, lamports)
    if tag == 0:  # CreateAccount { lamports, space, owner }: funding, new account
        lamports, space, owner = d.u64(), d.u64(), d.pubkey()
        source, new = _accounts(tx, accounts, 2, n, label)
        note = f"creates account {_short(new.address)} of program {_short(owner)} ({space} bytes)"
        return _Transfer(
            SYSTEM_PROGRAM, "system.createAccount", source, new, source, lamports, note=note
        )
    if tag == 3:  # CreateAccountWithSeed { base, seed, lamports, space, owner }: funding, new
        base, seed, lamports, space, owner = d.pubkey(), d.seed(), d.u64(), d.u64(), d.pubkey()
        source, new = _accounts(tx, accounts, 2, n, label)
        note = (
            f"creates account {_short(new.address)} of program {_short(owner)} ({space} bytes, "
            f'seed "{_printable(seed, 32)}" of {_short(base)})'
        )
        return _Transfer(
            SYSTEM_PROGRAM, "system.createAccountWithSeed", source, new, source, lamports, note=note
        )
    if tag == 11:  # TransferWithSeed { lamports, from_seed, from_owner }: from, base, to
        lamports, seed, _owner = d.u64(), d.seed(), d.pubkey()
        source, signer, destination = _accounts(tx, accounts, 3, n, label)
        # The source is derived from `signer` (the base key, which signs): the signer's money,
        # judged as a transfer by that signer like any other.
        note = (
            f"from account {_short(source.address)} derived from {_short(signer.address)} "
            f'(seed "{_printable(seed, 32)}")'
        )
        return _Transfer(
            SYSTEM_PROGRAM, "system.transferWithSeed", source, destination, signer, lamports,
            note=note,
        )  # fmt: skip
    if tag == 5:  # WithdrawNonceAccount(lamports): nonce, to, blockhashes, rent, authority
        lamports = d.u64()
        nonce, destination, _, _, authority = _accounts(tx, accounts, 5, n, label)
        note = f"withdraws from nonce account {_short(nonce.address)}"
        return _Transfer(
            SYSTEM_PROGRAM, "system.withdrawNonceAccount", nonce, destination, authority,
            lamports, note=note,
        )  # fmt: skip
    if tag == 13:  # CreateAccountAllowPrefund { lamports, space, owner }: new account, [funding]
        lamports, space, owner = d.u64(), d.u64(), d.pubkey()
        (new,) = _accounts(tx, accounts, 1, n, label)
        if len(accounts) < 2 and lamports:
            raise _refuse(
                f"Instruction {n} ({label}) moves {_fmt_lamports(lamports)} but names no funding "
                "account; the program would refuse it."
            )
        if new.address == wallet:
            # The wallet's own account would belong to `owner`: that program could then take
            # every lamport in it.
            return _Authority(SYSTEM_PROGRAM, "system.createAccountAllowPrefund", new,
                              "owner program", owner)  # fmt: skip
        if len(accounts) < 2:  # no funding: moves nothing of the wallet's
            return _Call(SYSTEM_PROGRAM, name)
        source = tx.account_ref(accounts[1])
        note = f"creates account {_short(new.address)} of program {_short(owner)} ({space} bytes)"
        return _Transfer(
            SYSTEM_PROGRAM, "system.createAccountAllowPrefund", source, new, source, lamports,
            note=note,
        )  # fmt: skip
    if tag in (1, 10):  # Assign { owner }: account; AssignWithSeed { base, seed, owner }
        if tag == 10:
            d.pubkey(), d.seed()
        owner = d.pubkey()
        (account,) = _accounts(tx, accounts, 1, n, label)
        return _Authority(SYSTEM_PROGRAM, f"system.{name}", account, "owner program", owner)
    if tag == 7:  # AuthorizeNonceAccount(new authority): nonce, authority
        new_authority = d.pubkey()
        (nonce,) = _accounts(tx, accounts, 1, n, label)
        return _Authority(
            SYSTEM_PROGRAM, "system.authorizeNonceAccount", nonce, "nonce authority", new_authority
        )
    return _Call(SYSTEM_PROGRAM, name)


def _decode_token(
    tx: SolanaTx, program: str, n: int, data: bytes, accounts: bytes, wallet: str
) -> _Step:
    label = _TOKEN_PROGRAMS[program]
    if not data:
        raise _short_data(n, label)
    tag = data[0]
    name = _TOKEN_NAMES[tag] if tag < len(_TOKEN_NAMES) else f"instruction {tag}"
    what = f"{label} {name}"
    d = _Data(data, n, what, 1)
    if tag == 3:  # Transfer { amount: u64 }: source, destination, authority
        amount = d.u64()
        src, dst, auth = _accounts(tx, accounts, 3, n, what)
        return _Transfer(program, f"{label}.transfer", src, dst, auth, amount)
    if tag == 12:  # TransferChecked { amount: u64, decimals: u8 }: source, mint, destination, auth
        amount, decimals = d.u64(), d.take(1)[0]
        src, mint, dst, auth = _accounts(tx, accounts, 4, n, what)
        return _Transfer(
            program, f"{label}.transferChecked", src, dst, auth, amount, mint, decimals
        )
    if tag == 4:  # Approve { amount: u64 }: source, delegate, owner
        amount = d.u64()
        src, delegate, owner = _accounts(tx, accounts, 3, n, what)
        return _Approve(program, f"{label}.approve", src, delegate, owner, amount)
    if tag == 13:  # ApproveChecked { amount: u64, decimals: u8 }: source, mint, delegate, owner
        amount, decimals = d.u64(), d.take(1)[0]
        src, mint, delegate, owner = _accounts(tx, accounts, 4, n, what)
        return _Approve(
            program, f"{label}.approveChecked", src, delegate, owner, amount, mint, decimals
        )
    if tag == 6:  # SetAuthority { type: u8, new: COption<Pubkey> }: account, current authority
        kind, flag = d.take(1)[0], d.take(1)[0]
        if flag not in (0, 1):
            raise _refuse(
                f"Instruction {n} ({what}) has a malformed new authority; the program would "
                "refuse it."
            )
        new_authority = d.pubkey() if flag == 1 else None
        (account,) = _accounts(tx, accounts, 2, n, what)[:1]
        names = _AUTHORITY_TYPES if program == TOKEN_2022_PROGRAM else _AUTHORITY_TYPES[:4]
        kind_name = names[kind] if kind < len(names) else f"authority type {kind}"
        return _Authority(program, f"{label}.setAuthority", account, kind_name, new_authority)
    if tag == 17:
        return _Helper(program, "sync native SOL")
    if tag == 9:  # CloseAccount: account, destination, owner
        account, destination, _owner = _accounts(tx, accounts, 3, n, what)
        if destination.address == wallet:
            return _Helper(program, "close a token account (rent back to the wallet)")
        return _Close(program, f"{label}.closeAccount", account, destination)
    return _Call(program, name)


def _decode_ata(tx: SolanaTx, data: bytes, accounts: bytes) -> _Step:
    # Create (no data or [0]) and CreateIdempotent ([1]): payer, account, owner, mint, system,
    # token program. The program derives the account itself, so we can prove whose it is.
    if len(data) > 1 or (data and data[0] not in (0, 1)) or len(accounts) < 6:
        return _Call(ASSOCIATED_TOKEN_PROGRAM, "recoverNested" if data[:1] == b"\x02" else "")
    refs = [tx.account_ref(i) for i in accounts[:6]]
    ata: tuple[str, str] | None = None
    account, owner, mint = refs[1].address, refs[2].address, refs[3].address
    token_program = refs[5].address
    if account and owner and mint and token_program in _TOKEN_PROGRAMS:
        derived = get_associated_token_address(
            Pubkey.from_string(owner), Pubkey.from_string(mint), Pubkey.from_string(token_program)
        )
        if str(derived) == account:
            ata = (account, owner)
    return _Helper(ASSOCIATED_TOKEN_PROGRAM, "create token account", ata=ata)


def _decode_budget(n: int, data: bytes) -> _Budget:
    tag = data[0] if data else -1
    size = _BUDGET_DATA_SIZE.get(tag)
    if size is None or len(data) != size:
        raise _refuse(
            f"Instruction {n} is a compute-budget instruction keysafe cannot read (unknown or "
            "malformed); the runtime would refuse it."
        )
    return _Budget(tag, _u(data, 1, size - 1))


def _decode(tx: SolanaTx, n: int, wallet: str) -> _Step:
    ix = tx.instructions[n]
    program = tx.program_id(ix)
    data, accounts = bytes(ix.data), bytes(ix.accounts)
    if program == SYSTEM_PROGRAM:
        return _decode_system(tx, n, data, accounts, wallet)
    if program in _TOKEN_PROGRAMS:
        return _decode_token(tx, program, n, data, accounts, wallet)
    if program == COMPUTE_BUDGET_PROGRAM:
        return _decode_budget(n, data)
    if program in _MEMO_PROGRAMS:
        text = data.decode("utf-8", errors="replace")
        return _Helper(program, "memo", memo=text)
    if program == ASSOCIATED_TOKEN_PROGRAM:
        return _decode_ata(tx, data, accounts)
    return _Call(program, "")


def _demote_foreign_ata(steps: list[_Step], wallet: str) -> list[_Step]:
    """Creating a token account is a helper only for the wallet or for a transfer's recipient.

    The payer funds the new account's rent and its owner can close it and keep the lamports,
    so creating accounts for anyone else is a way to move SOL: it counts as a call.
    """
    destinations = {
        s.destination.address for s in steps if isinstance(s, _Transfer) and s.destination.address
    }
    out: list[_Step] = []
    for s in steps:
        if (
            isinstance(s, _Helper)
            and s.program == ASSOCIATED_TOKEN_PROGRAM
            and not (s.ata is not None and (s.ata[1] == wallet or s.ata[0] in destinations))
        ):
            s = _Call(ASSOCIATED_TOKEN_PROGRAM, "create")
        out.append(s)
    return out


# -- fees -------------------------------------------------------------------------------------


def _priority_fee(steps: Sequence[_Step]) -> int:
    """The largest priority fee in lamports: ceil(price × unit limit / 10^6)."""
    budget: dict[int, int] = {}
    for n, s in enumerate(steps):
        if isinstance(s, _Budget):
            if s.kind in budget:
                raise _refuse(
                    f"Instruction {n} repeats the compute-budget instruction "
                    f"{_BUDGET_NAMES[s.kind]}; the runtime refuses duplicates."
                )
            budget[s.kind] = s.value
    price = budget.get(3, 0)
    if not price:
        return 0
    others = sum(1 for s in steps if not isinstance(s, _Budget))
    limit = budget.get(2, _DEFAULT_UNITS_PER_INSTRUCTION * others)
    return math.ceil(price * min(limit, _MAX_COMPUTE_UNITS) / _MICRO_LAMPORTS)


def _network_fee(tx: SolanaTx, priority: int) -> int:
    """The most the fee payer can be charged, in lamports: 5000 per signature (the transaction's
    and each one its precompile instructions verify, which the runtime charges alike) plus the
    priority fee."""
    signatures = len(tx.required_signers)
    for ix in tx.instructions:
        data = bytes(ix.data)
        if tx.program_id(ix) in _PRECOMPILES and data:
            signatures += data[0]
    return _LAMPORTS_PER_SIGNATURE * signatures + priority


# -- the value a transaction moves ------------------------------------------------------------


@dataclass
class _Value:
    asset: str | None  # symbol, mint address, or None (unknown: amount in base units)
    decimals: int | None  # None: amount is in base units
    units: int = 0
    destinations: list[str | None] = field(default_factory=list)
    sources: list[str | None] = field(default_factory=list)
    mint: str | None = None
    known: bool = False  # the asset is in the registry
    function: str = ""
    unknown_why: str = "the transfer names no mint"  # when asset is None

    @property
    def amount(self) -> str:
        if self.decimals is None:
            return str(self.units)
        return from_base_units(self.units, self.decimals)

    @property
    def to(self) -> str | None:
        targets = set(self.destinations)
        return next(iter(targets)) if len(targets) == 1 else None


def _native(registry: Registry, chain: ChainInfo) -> AssetInfo:
    for a in registry.assets:
        if a.chain == chain.name and a.address is None:
            return a
    return AssetInfo(chain.native, chain.name, None, _SOL_DECIMALS)


def _by_mint(registry: Registry, chain: ChainInfo, mint: str) -> AssetInfo | None:
    # Match the mint address exactly; a symbol that happens to equal a mint must not match.
    for a in registry.assets:
        if a.chain == chain.name and a.address == mint:
            return a
    return None


def _asset_of(
    t: _Transfer | _Approve, registry: Registry, chain: ChainInfo
) -> tuple[tuple[str, ...], _Value]:
    """The asset key (transfers are summed only within one key) and an empty _Value for it."""
    if t.program == SYSTEM_PROGRAM:
        native = _native(registry, chain)
        return ("native",), _Value(native.symbol, native.decimals, known=True, function=t.function)
    if t.decimals is not None and t.decimals > _MAX_DECIMALS:
        raise _refuse(
            f"Instruction {t.function} says its token has {t.decimals} decimals; keysafe judges "
            f"tokens with at most {_MAX_DECIMALS}.",
            next_step="check the mint's decimals; no real token uses that many.",
        )
    if t.mint is not None and t.mint.address is not None and t.decimals is not None:
        mint = t.mint.address
        info = _by_mint(registry, chain, mint)
        if info is not None and info.decimals != t.decimals:
            raise _refuse(
                f"Instruction {t.function} says mint {mint} has {t.decimals} decimals, but the "
                f"registry knows it as {info.symbol} with {info.decimals}; the amount cannot be "
                "judged.",
                next_step="fix the decimals in the transaction, or correct the registry entry.",
            )
        asset = info.symbol if info is not None else mint
        value = _Value(asset, t.decimals, mint=mint, known=info is not None, function=t.function)
        return ("mint", t.program, mint), value
    # Plain transfer (no mint), or a mint loaded from a lookup table: the asset is unknown and
    # the amount stays in base units. Same source account → same token.
    value = _Value(None, None, function=t.function)
    if t.mint is not None:
        value.unknown_why = "its mint comes from a lookup table"
    return ("unknown", t.program, t.source.describe()), value


def _value(transfers: Sequence[_Transfer], registry: Registry, chain: ChainInfo) -> _Value | None:
    if not transfers:
        return None
    key0, value = _asset_of(transfers[0], registry, chain)
    for t in transfers:
        key, other = _asset_of(t, registry, chain)
        if key != key0 or other.decimals != value.decimals:
            raise _refuse(
                "The transaction moves more than one asset; keysafe judges one asset per "
                "transaction, so it cannot tell what this one spends.",
                next_step="send one transaction per asset.",
            )
        value.units += t.units
        value.destinations.append(t.destination.address)
        value.sources.append(t.authority.address)
        if t.function != value.function:
            value.function = t.function.split(".")[0] + ".transfers"
    resolved = {d for d in value.destinations if d is not None}
    if len(resolved) > 1:
        raise _refuse(
            f"The transaction sends to {len(resolved)} different recipients; keysafe judges one "
            "recipient per transaction.",
            next_step="send one transaction per recipient.",
        )
    return value


# -- signers ----------------------------------------------------------------------------------


def _check_signers(tx: SolanaTx, wallet: str) -> None:
    if wallet not in tx.required_signers:
        raise _refuse(
            f"This transaction does not need the wallet's signature ({wallet}); its signers are "
            f"{', '.join(tx.required_signers)}.",
            next_step="build the transaction with the wallet as fee payer or as a signer.",
        )
    others = [s for s in tx.required_signers if s not in (wallet, tx.fee_payer)]
    if others:
        raise _refuse(
            f"This transaction also needs the signature of {', '.join(others)}; keysafe signs "
            "only transactions whose signers are the wallet and, optionally, a separate fee "
            "payer.",
            next_step="remove the other signers (e.g. create new accounts in a separate "
            "transaction signed by their owners).",
        )


def _check_chain(chain: ChainInfo) -> None:
    if chain.family != "solana":
        raise _refuse(
            f"The chain '{chain.name}' is not a Solana cluster.",
            next_step="name a Solana chain (solana, solana-devnet, solana-local).",
        )


def _check_address(address: str, what: str) -> str:
    try:
        return str(Pubkey.from_string(address))
    except (ValueError, TypeError):
        raise _refuse(
            f"The {what} is not a Solana address.", next_step="use a base58 Solana address."
        ) from None


# -- the intent -------------------------------------------------------------------------------


def _fmt_lamports(lamports: int) -> str:
    return f"{from_base_units(lamports, _SOL_DECIMALS)} SOL"


def _transfer_phrase(v: _Value, owners: dict[str, str], wallet: str) -> str:
    if v.asset is None:
        what = f"{v.amount} base units of an unknown token"
    elif v.mint is not None and v.known:
        what = f"{v.amount} {v.asset} (mint {_short(v.mint)})"
    elif v.mint is not None:
        what = f"{v.amount} of unregistered token mint {_short(v.mint)}"
    else:
        what = f"{v.amount} {v.asset}"
    to = v.to
    if to is None:
        target = "an account from a lookup table (not resolvable offline)"
    elif v.mint is not None or v.asset is None:
        target = f"token account {_short(to)}"
        if to in owners:
            target += f" (owner {_short(owners[to])})"
    else:
        target = _short(to)
    phrase = f"{what} to {target}"
    senders = sorted({_short(s) for s in v.sources if s != wallet})
    if senders:
        phrase += " from " + ", ".join(senders)
    if v.asset is None:
        phrase += f" ({v.unknown_why}, so the asset and decimals are unknown)"
    return phrase


@dataclass(frozen=True, slots=True)
class _Judged:
    """What the policy judges, before the common parts (chain, fee, notes) are added."""

    action: str
    head: str  # the summary's first phrase
    asset: str | None = None
    amount: str | None = None
    unlimited: bool | None = None
    to: str | None = None
    spender: str | None = None
    contract: str | None = None
    function: str | None = None


def _token_name(v: _Value) -> str:
    if v.mint is not None and v.known:
        return f"{v.asset} (mint {_short(v.mint)})"
    if v.mint is not None:
        return f"unregistered token mint {_short(v.mint)}"
    return str(v.asset)


def _judge_approve(a: _Approve, registry: Registry, chain: ChainInfo) -> _Judged:
    _, v = _asset_of(a, registry, chain)
    v.units = a.units
    huge = a.units >= SPL_UNLIMITED_FROM
    source = f"token account {_short(a.source.address)}"
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
    return _Judged(
        "solana.approve",
        f"approve {_short(a.delegate.address)} to spend {what} from {source}",
        asset=v.asset, amount=amount, unlimited=unlimited, spender=a.delegate.address,
        contract=v.mint, function=a.function,
    )  # fmt: skip


def _judge_authority(a: _Authority, native: str, wallet: str) -> _Judged:
    account = _short(a.account.address) + (" (the wallet)" if a.account.address == wallet else "")
    if a.program == SYSTEM_PROGRAM:
        if a.kind == "owner program":
            head = f"hand account {account} to program {_short(a.new)}, which then controls all "
        else:
            head = f"hand the authority of nonce account {account} to {_short(a.new)}, who then "
            head += "controls "
        head += f"its {native}"
    elif a.new is None:
        head = f"REMOVE the {a.kind} authority of {account} for good"
    else:
        head = f"hand the {a.kind} authority of {account} to {_short(a.new)}"
    # Control of an account carries everything it holds or can mint: no cap can bound it.
    return _Judged(
        "solana.set_authority", head + " (judged as unlimited)",
        asset=native if a.program == SYSTEM_PROGRAM else None, amount=UNLIMITED, unlimited=True,
        to=a.new, spender=a.new, contract=a.account.address, function=a.function,
    )  # fmt: skip


def _judge_close(c: _Close, native: str) -> _Judged:
    # The instruction moves the account's whole lamport balance (rent, and for a wrapped-SOL
    # account the wrapped SOL too) without saying how much: only a rule that allows this action
    # with no cap can allow it.
    head = (
        f"close token account {_short(c.account.address)}: ALL its {native} (rent, and for "
        f"wrapped {native} the whole balance; not stated in the instruction, so judged as "
        f"unlimited) goes to {_short(c.destination.address)}"
    )
    return _Judged(
        "solana.close_account", head, asset=native, amount=UNLIMITED, unlimited=True,
        to=c.destination.address, contract=c.account.address, function=c.function,
    )  # fmt: skip


def _judge_alone(
    steps: Sequence[_Step], registry: Registry, chain: ChainInfo, wallet: str
) -> _Judged | None:
    """An approval, authority change or closing: judged on its own, or the transaction refused."""
    alone = [(n, s) for n, s in enumerate(steps) if isinstance(s, _Alone)]
    if not alone:
        return None
    n, step = alone[0]
    others = [s for s in steps if isinstance(s, _Transfer | _Call)]
    if len(alone) > 1 or others:
        what = [s.function for _, s in alone] + [
            s.function if isinstance(s, _Transfer) else f"a call to program {_short(s.program)}"
            for s in others
        ]
        raise _refuse(
            f"The transaction does {len(what)} things ({', '.join(dict.fromkeys(what))}); "
            "keysafe judges an approval, an authority change or closing an account to someone "
            "else only on its own, so that no value move hides behind another.",
            next_step="send it in a transaction of its own (compute-budget and memo "
            "instructions may stay).",
        )
    if isinstance(step, _Approve):
        refs = [step.source, step.delegate, step.owner, step.mint]
    elif isinstance(step, _Authority):
        refs = [step.account]
    else:
        refs = [step.account, step.destination]
    if not all(r is None or r.resolved for r in refs):
        raise _refuse(
            f"Instruction {n} ({step.function}) names accounts from an address lookup table, "
            "which keysafe cannot resolve offline, so it cannot tell what is handed to whom.",
            next_step="list those accounts as static keys (not from a lookup table).",
        )
    native = _native(registry, chain).symbol
    if isinstance(step, _Approve):
        return _judge_approve(step, registry, chain)
    if isinstance(step, _Authority):
        return _judge_authority(step, native, wallet)
    return _judge_close(step, native)


def _judge_transfers(
    steps: Sequence[_Step], registry: Registry, chain: ChainInfo, wallet: str, notes: list[str]
) -> _Judged:
    """Transfers and calls (module doc, "The intent of the whole transaction")."""
    transfers = [s for s in steps if isinstance(s, _Transfer)]
    programs: list[str] = []
    for s in steps:
        if (isinstance(s, _Call) or (isinstance(s, _Transfer) and not s.resolved)) and (
            s.program not in programs
        ):
            programs.append(s.program)
    if len(programs) > 1:
        raise _refuse(
            f"The transaction calls {len(programs)} programs ({', '.join(programs)}); keysafe "
            "judges a call to one program per transaction.",
            next_step="split the transaction, one program per transaction.",
        )
    value = _value(transfers, registry, chain)
    helpers = [s for s in steps if isinstance(s, _Helper)]
    owners = {h.ata[0]: h.ata[1] for h in helpers if h.ata is not None}
    n = len(steps)
    notes.extend(dict.fromkeys(t.note for t in transfers if t.note))
    if programs or value is None:
        if programs:
            contract = programs[0]
        else:  # only helpers and compute-budget instructions
            non_budget = [s.program for s in steps if isinstance(s, _Helper)]
            contract = non_budget[0] if non_budget else COMPUTE_BUDGET_PROGRAM
        names = sorted({s.what for s in steps if isinstance(s, _Call) and s.what})
        head = f"call program {_short(contract)}"
        if names:
            head += f" ({', '.join(names)})"
        head += f" ({n} instruction{'s' if n != 1 else ''})"
        if value is not None:
            notes.insert(0, "sends " + _transfer_phrase(value, owners, wallet))
        return _Judged(
            "solana.call", head, asset=value.asset if value else None,
            amount=value.amount if value else None, to=value.to if value else None,
            contract=contract,
        )  # fmt: skip
    return _Judged(
        "solana.transfer", "send " + _transfer_phrase(value, owners, wallet),
        asset=value.asset, amount=value.amount, to=value.to, contract=value.mint,
        function=value.function,
    )  # fmt: skip


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
    _check_chain(chain)
    wallet = _check_address(wallet_address, "wallet address")
    _check_signers(tx, wallet)
    if not tx.instructions:
        raise _refuse("The transaction has no instructions; there is nothing to sign.")
    steps = _demote_foreign_ata(
        [_decode(tx, n, wallet) for n in range(len(tx.instructions))], wallet
    )

    priority = _priority_fee(steps)
    if tx.fee_payer == wallet and priority > max_priority_fee_lamports:
        raise _refuse(
            f"The transaction's compute-budget instructions allow a priority fee of up to "
            f"{_fmt_lamports(priority)}, above keysafe's ceiling of "
            f"{_fmt_lamports(max_priority_fee_lamports)}.",
            next_step="lower the compute-unit price or the compute-unit limit.",
        )
    fee = _network_fee(tx, priority)
    # Token accounts created for someone else: their rent leaves the wallet for good. Counted
    # even when a sponsor pays the network fee (the wallet may still fund the account).
    gifted = sum(
        1 for s in steps if isinstance(s, _Helper) and s.ata is not None and s.ata[1] != wallet
    )
    rent = gifted * TOKEN_ACCOUNT_RENT_LAMPORTS

    notes: list[str] = []
    judged = _judge_alone(steps, registry, chain, wallet) or _judge_transfers(
        steps, registry, chain, wallet, notes
    )
    unresolved = [s for s in steps if isinstance(s, _Transfer) and not s.resolved]
    if unresolved:
        notes.append(
            f"{len(unresolved)} transfer(s) use accounts from address lookup tables that "
            "cannot be resolved offline"
        )
    elif tx.lookup_tables:
        notes.append(f"loads accounts from {len(tx.lookup_tables)} lookup table(s)")
    fee_note = (
        f"network fee up to {_fmt_lamports(fee)}"
        if tx.fee_payer == wallet
        else f"fee paid by {_short(tx.fee_payer)}"
    )
    if priority:
        fee_note += f" (priority fee up to {_fmt_lamports(priority)})"
    notes.append(fee_note)
    if rent:
        notes.append(
            f"creates {gifted} token account(s) for the recipient: rent {_fmt_lamports(rent)}, "
            "counted as fee"
        )
    memos = [s.memo for s in steps if isinstance(s, _Helper) and s.memo is not None]
    if memos:
        notes.append("memo " + "; ".join(f'"{_printable(m)}"' for m in memos))
    summary = "; ".join([judged.head, *notes])
    if len(summary) > 500:
        summary = summary[:499] + "…"
    try:
        return Intent(
            action=judged.action,
            chain=chain.name,
            asset=judged.asset,
            amount=judged.amount,
            unlimited=judged.unlimited,
            # The wallet pays nothing when a sponsor pays the fee.
            fee=from_base_units((fee if tx.fee_payer == wallet else 0) + rent, _SOL_DECIMALS),
            to=judged.to,
            spender=judged.spender,
            contract=judged.contract,
            function=judged.function,
            summary=summary,
        )
    except ValidationError:
        pass
    # Outside the handler: pydantic's error quotes the values it refused.
    raise _refuse("keysafe could not describe this transaction within its request limits.")


# -- declared vs decoded ----------------------------------------------------------------------


def _mismatch(field_name: str, declared: str, decoded: str | None) -> MalformedRequestError:
    return _refuse(
        f"The request declares {field_name} {declared[:100]!r}, but the transaction does "
        f"{'not name one' if decoded is None else repr(decoded)}; nothing was signed.",
        next_step="declare exactly what the transaction does (no blind signing).",
    )


def _owner_matches(decoded: Intent, owner: str) -> bool:
    """True when `decoded.to` is the associated token account of `owner` for its mint."""
    program = next(
        (p for p, label in _TOKEN_PROGRAMS.items() if (decoded.function or "").startswith(label)),
        None,
    )
    if program is None or decoded.contract is None or decoded.to is None:
        return False
    try:
        derived = get_associated_token_address(
            Pubkey.from_string(owner), Pubkey.from_string(decoded.contract),
            Pubkey.from_string(program),
        )  # fmt: skip
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
            raise _refuse(
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


def _is_transaction_message(raw: bytes) -> bool:
    """True when `raw` reads as a legacy or v0 transaction message (what a tx signature covers)."""
    try:
        message = from_bytes_versioned(raw)
    except Exception:
        return False
    if not isinstance(message, Message):
        # A version prefix (0x80 | v) that parses: never text (not a UTF-8 lead byte); refuse
        # without further checks, whatever future version it is. The off-chain message format
        # starts with 0xff "solana offchain" and does not parse.
        return True
    # Legacy messages have no prefix, so long text can occasionally parse; only a message that
    # also passes the runtime's sanitize checks counts.
    try:
        n = int(message.header.num_required_signatures)
        VersionedTransaction.populate(message, [Signature.default()] * n).sanitize()
    except Exception:
        return False
    return True


def intent_from_message(
    text_or_b64: str, *, encoding: Literal["utf8", "base64"], chain: ChainInfo
) -> tuple[Intent, bytes]:
    """The intent of signing an off-chain message, and the exact bytes that will be signed.

    Args:
        text_or_b64: the message as text (`encoding="utf8"`) or as standard base64.
        encoding: how `text_or_b64` is given.
        chain: the Solana cluster (recorded in the intent; Ed25519 signs the same everywhere).

    Raises:
        MalformedRequestError: not decodable, empty, too long, or a transaction message.
    """
    _check_chain(chain)
    if not isinstance(text_or_b64, str):
        raise _refuse("The message must be a string.", next_step="send text or base64.")
    raw: bytes | None = None
    if encoding == "utf8":
        try:
            raw = text_or_b64.encode("utf-8")
        except UnicodeEncodeError:
            raw = None
    elif encoding == "base64":
        try:
            raw = binascii.a2b_base64(text_or_b64.strip().encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raw = None
    else:
        raise _refuse(
            f"Unknown message encoding {str(encoding)[:20]!r}.",
            next_step='use encoding "utf8" or "base64".',
        )
    if raw is None:
        raise _refuse(
            f"The message is not valid {'UTF-8' if encoding == 'utf8' else 'base64'}.",
            next_step="send UTF-8 text, or standard base64 with padding.",
        )
    if not raw:
        raise _refuse("The message is empty; there is nothing to sign.", next_step="send text.")
    if len(raw) > MAX_MESSAGE_SIZE:
        raise _refuse(
            f"The message is {len(raw)} bytes; keysafe signs messages of at most "
            f"{MAX_MESSAGE_SIZE} bytes.",
            next_step="sign a hash of the data instead.",
        )
    if _is_transaction_message(raw):
        raise _refuse(
            "These bytes are a Solana transaction message: signing them as a message would "
            "sign a transaction blind.",
            next_step="send it as a transaction so keysafe can decode and judge it.",
        )
    text: str | None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        summary = f'sign message "{_printable(text, 120)}" ({len(raw)} bytes)'
    else:
        summary = (
            f"sign {len(raw)} bytes of binary data (base64 {base64.b64encode(raw[:24]).decode()}…)"
        )
    intent = Intent(
        action="solana.sign_message", chain=chain.name, message=text, summary=summary[:500]
    )
    return intent, raw
