"""Decoded instructions (steps): what each instruction of a transaction does, before the
whole transaction is judged."""

from __future__ import annotations

import logging
from dataclasses import KW_ONLY, dataclass, field

from keysafe.chains.solana.tx import AccountRef

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Budget:
    """A compute-budget instruction: the unit limit, the unit price, …"""

    kind: int  # compute-budget discriminator
    value: int


@dataclass(frozen=True, slots=True)
class Helper:
    """An instruction that moves no value away from the wallet (memo, token account, …)."""

    program: str
    what: str  # e.g. "memo", "create token account"
    memo: str | None = None
    ata: tuple[str, str] | None = None  # (token account, owner) proven by derivation


@dataclass(frozen=True, slots=True)
class Call:
    """An instruction of a program keysafe does not decode further."""

    program: str
    what: str  # instruction name when known, else ""


@dataclass(frozen=True, slots=True)
class _Amount:
    """What a transfer and an approval share: up to `units` of one asset out of `source`.

    The amount is keyword-only, so the accounts each kind adds stay positional, in the
    instruction's account order.
    """

    program: str
    function: str  # "system.transfer", "spl-token.approveChecked", …
    source: AccountRef
    _: KW_ONLY
    units: int  # base units (lamports or token base units)
    mint: AccountRef | None = None  # the Checked forms only
    decimals: int | None = None  # the Checked forms only


@dataclass(frozen=True, slots=True)
class Transfer(_Amount):
    """Lamports or SPL tokens moving from `source` to `destination`."""

    destination: AccountRef
    authority: AccountRef
    # What else the instruction does (creates an account, …), for the summary.
    note: str = field(default="", kw_only=True)

    @property
    def resolved(self) -> bool:
        """True when no account comes from a lookup table."""
        refs = (self.source, self.destination, self.authority, self.mint)
        return all(r is None or r.resolved for r in refs)


@dataclass(frozen=True, slots=True)
class Approve(_Amount):
    """SPL approve/approveChecked: `delegate` may then move up to `units` out of `source`."""

    delegate: AccountRef
    owner: AccountRef


@dataclass(frozen=True, slots=True)
class Authority:
    """Control over `account` passes to `new`: whatever the account holds or can do goes too."""

    program: str
    function: str  # "spl-token.setAuthority", "system.assign", …
    account: AccountRef
    kind: str  # which authority: "AccountOwner", "MintTokens", "owner program", …
    new: str | None  # the new authority (from the instruction data); None: removed for good


@dataclass(frozen=True, slots=True)
class Close:
    """SPL closeAccount to someone else: the account's whole lamport balance goes there."""

    program: str
    function: str
    account: AccountRef
    destination: AccountRef


Step = Budget | Helper | Call | Transfer | Approve | Authority | Close
# Value moves that are not transfers: each is judged as its own action, so each must be alone.
Alone = Approve | Authority | Close
