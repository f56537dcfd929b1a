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
from keysafe.policy.intent import Intent
from keysafe.policy.registry import AssetInfo, ChainInfo, Registry, from_base_units, parse_decimal

__all__ = [
    "ASSOCIATED_TOKEN_PROGRAM",
    "COMPUTE_BUDGET_PROGRAM",
    "MAX_MESSAGE_SIZE",
    "MAX_PRIORITY_FEE_LAMPORTS",
    "MEMO_PROGRAM",
    "MEMO_V1_PROGRAM",
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
_DEFAULT_UNITS_PER_INSTRUCTION: Final = 200_000
_MAX_COMPUTE_UNITS: Final = 1_400_000
_MICRO_LAMPORTS: Final = 1_000_000
_SOL_DECIMALS: Final = 9
# The u8 in transferChecked allows 255; 64 keeps "0." + digits inside Intent.amount (100 chars).
_MAX_DECIMALS: Final = 64

_SYSTEM_NAMES: Final = (
    "createAccount", "assign", "transfer", "createAccountWithSeed", "advanceNonceAccount",
    "withdrawNonceAccount", "initializeNonceAccount", "authorizeNonceAccount", "allocate",
    "allocateWithSeed", "assignWithSeed", "transferWithSeed", "upgradeNonceAccount",
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

    @property
    def resolved(self) -> bool:
        refs = (self.source, self.destination, self.authority, self.mint)
        return all(r is None or r.resolved for r in refs)


_Step = _Budget | _Helper | _Call | _Transfer


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


def _decode_system(tx: SolanaTx, n: int, data: bytes, accounts: bytes) -> _Step:
    if len(data) < 4:
        raise _short_data(n, "System program")
    tag = _u(data, 0, 4)
    name = _SYSTEM_NAMES[tag] if tag < len(_SYSTEM_NAMES) else f"instruction {tag}"
    if tag != 2:
        return _Call(SYSTEM_PROGRAM, name)
    # SystemInstruction::Transfer { lamports: u64 }; bincode ignores trailing bytes here.
    if len(data) < 12:
        raise _short_data(n, "System transfer")
    source, destination = _accounts(tx, accounts, 2, n, "System transfer")
    return _Transfer(SYSTEM_PROGRAM, "system.transfer", source, destination, source, _u(data, 4, 8))


def _decode_token(
    tx: SolanaTx, program: str, n: int, data: bytes, accounts: bytes, wallet: str
) -> _Step:
    label = _TOKEN_PROGRAMS[program]
    if not data:
        raise _short_data(n, label)
    tag = data[0]
    name = _TOKEN_NAMES[tag] if tag < len(_TOKEN_NAMES) else f"instruction {tag}"
    if tag == 3:  # Transfer { amount: u64 }: source, destination, authority
        if len(data) < 9:
            raise _short_data(n, f"{label} transfer")
        src, dst, auth = _accounts(tx, accounts, 3, n, f"{label} transfer")
        return _Transfer(program, f"{label}.transfer", src, dst, auth, _u(data, 1, 8))
    if tag == 12:  # TransferChecked { amount: u64, decimals: u8 }: source, mint, destination, auth
        if len(data) < 10:
            raise _short_data(n, f"{label} transferChecked")
        src, mint, dst, auth = _accounts(tx, accounts, 4, n, f"{label} transferChecked")
        return _Transfer(
            program, f"{label}.transferChecked", src, dst, auth, _u(data, 1, 8), mint, data[9]
        )
    if tag == 17:
        return _Helper(program, "sync native SOL")
    if tag == 9 and len(accounts) >= 3:  # CloseAccount: account, destination, owner
        destination = tx.account_ref(accounts[1])
        if destination.address == wallet:
            return _Helper(program, "close a token account (rent back to the wallet)")
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
        return _decode_system(tx, n, data, accounts)
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


def _asset_of(t: _Transfer, registry: Registry, chain: ChainInfo) -> tuple[tuple[str, ...], _Value]:
    """The asset key (transfers are summed only within one key) and an empty _Value for it."""
    if t.program == SYSTEM_PROGRAM:
        native = _native(registry, chain)
        return ("native",), _Value(native.symbol, native.decimals, known=True, function=t.function)
    if t.decimals is not None and t.decimals > _MAX_DECIMALS:
        raise _refuse(
            f"The transfer says its token has {t.decimals} decimals; keysafe judges tokens with "
            f"at most {_MAX_DECIMALS}.",
            next_step="check the mint's decimals; no real token uses that many.",
        )
    if t.mint is not None and t.mint.address is not None and t.decimals is not None:
        mint = t.mint.address
        info = _by_mint(registry, chain, mint)
        if info is not None and info.decimals != t.decimals:
            raise _refuse(
                f"The transfer says mint {mint} has {t.decimals} decimals, but the registry "
                f"knows it as {info.symbol} with {info.decimals}; the amount cannot be judged.",
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

    transfers = [s for s in steps if isinstance(s, _Transfer)]
    unresolved = [t for t in transfers if not t.resolved]
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

    notes: list[str] = []
    if unresolved:
        notes.append(
            f"{len(unresolved)} transfer(s) use accounts from address lookup tables that "
            "cannot be resolved offline"
        )
    elif tx.lookup_tables:
        notes.append(f"loads accounts from {len(tx.lookup_tables)} lookup table(s)")
    memos = [h.memo for h in helpers if h.memo is not None]
    if memos:
        notes.append("memo " + "; ".join(f'"{_printable(m)}"' for m in memos))
    if priority:
        notes.append(f"priority fee up to {_fmt_lamports(priority)}")
    if tx.fee_payer != wallet:
        notes.append(f"fee paid by {_short(tx.fee_payer)}")

    contract: str | None
    if programs or value is None:
        action = "solana.call"
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
        function = None
    else:
        action = "solana.transfer"
        contract = value.mint
        head = "send " + _transfer_phrase(value, owners, wallet)
        function = value.function
    summary = "; ".join([head, *notes])
    if len(summary) > 500:
        summary = summary[:499] + "…"
    try:
        return Intent(
            action=action,
            chain=chain.name,
            asset=value.asset if value else None,
            amount=value.amount if value else None,
            to=value.to if value else None,
            contract=contract,
            function=function,
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

    Compared: action; chain, asset, amount, recipient and contract when either side has one.
    Amounts compare as decimals ("0.50" == "0.5"). Assets compare by symbol (any case) or by mint.
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
        try:
            same = parse_decimal(declared.amount) == Decimal(decoded.amount)
        except ValueError:
            same = False
        if not same:
            raise _mismatch("amount", declared.amount, decoded.amount)
    if declared.asset is not None or decoded.asset is not None:
        if decoded.asset is None:
            raise _refuse(
                f"The request declares asset {declared.asset!r}, but this SPL transfer names no "
                "mint, so keysafe cannot confirm which token it moves; nothing was signed.",
                next_step="use transferChecked, which names the mint and its decimals.",
            )
        ok = declared.asset is not None and (
            declared.asset.upper() == decoded.asset.upper() or declared.asset == decoded.contract
        )
        if not ok:
            raise _mismatch("asset", declared.asset or "none", decoded.asset)
    if declared.contract is not None and declared.contract != decoded.contract:
        raise _mismatch("contract", declared.contract, decoded.contract)
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
