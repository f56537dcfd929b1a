"""Parse a base64 Solana transaction (legacy or v0) into a checked, read-only `SolanaTx`.

    >>> tx = parse_transaction(b64)                       # doctest: +SKIP
    >>> tx.version, tx.fee_payer, tx.required_signers     # doctest: +SKIP
    ('legacy', '9xQe…', ('9xQe…',))

What parsing enforces (every failure is a `MalformedRequestError` that never quotes the input):

* the input is strict base64 (RFC 4648 alphabet, padding, no whitespace inside) and at most
  `MAX_TRANSACTION_SIZE` bytes once decoded, the size of one network packet a validator accepts;
* the bytes are one transaction in the wire format (compact-u16 signature count, signatures, then
  a legacy message or a 0x80-prefixed v0 message) and nothing else: re-serialising gives back
  exactly the input, so no trailing or non-canonical bytes ride along unseen;
* the message sanitises (solders' port of the runtime's rules: indexes in range, program ids
  static, signer counts consistent) and carries one signature slot per required signer;
* no account key appears twice among the static keys, so each signer has exactly one slot;
* only versions the runtime executes (legacy, 0).

Accounts loaded from address lookup tables (v0) are *not* resolved here: that needs the tables'
on-chain contents. `account_ref(i)` says, for an instruction's account index, either the static
address or which table and position it comes from, so decoders can refuse to guess.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from solders.instruction import CompiledInstruction
from solders.message import Message, MessageV0, to_bytes_versioned
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from keysafe.errors import MalformedRequestError

__all__ = [
    "MAX_TRANSACTION_SIZE",
    "AccountRef",
    "SolanaTx",
    "parse_transaction",
]

logger = logging.getLogger(__name__)

# Solana's PACKET_DATA_SIZE (1280-byte IPv6 MTU minus 48 bytes of headers): no validator
# accepts a larger transaction, so anything larger is refused before solders sees it.
MAX_TRANSACTION_SIZE: Final = 1232
_MAX_B64_CHARS: Final = 4 * ((MAX_TRANSACTION_SIZE + 2) // 3)
_DEFAULT_SIGNATURE: Final = Signature.default()

_NEXT_STEP: Final = (
    "send the whole serialised transaction (signature slots and message) as standard base64, "
    "e.g. base64.b64encode(bytes(VersionedTransaction)) or "
    "transaction.serialize({requireAllSignatures: false}).toString('base64')."
)

Version = Literal["legacy", 0]


@dataclass(frozen=True, slots=True)
class AccountRef:
    """An instruction's account: a static address, or an entry of an address lookup table."""

    index: int  # index into the message's full account list (static, then loaded)
    address: str | None  # base58 when static; None when it is loaded from a lookup table
    table: str | None = None  # lookup table address, for loaded accounts
    table_index: int | None = None  # position inside that table
    writable: bool | None = None  # for loaded accounts: from writable_indexes or readonly_indexes

    @property
    def resolved(self) -> bool:
        """True when the address is known offline (a static key)."""
        return self.address is not None

    def describe(self) -> str:
        """The address, or which lookup-table entry it is."""
        if self.address is not None:
            return self.address
        return f"entry {self.table_index} of lookup table {self.table}"


@dataclass(frozen=True, slots=True)
class SolanaTx:
    """A parsed, sanitised transaction. Build it with `parse_transaction`, not directly."""

    transaction: VersionedTransaction
    message: Message | MessageV0
    version: Version
    message_bytes: bytes  # exactly the bytes every signer signs
    account_keys: tuple[str, ...]  # static keys, base58, in message order
    required_signers: tuple[str, ...]  # the first num_required_signatures static keys
    lookup_tables: tuple[str, ...]  # addresses of the tables a v0 message loads from
    loaded_accounts: tuple[AccountRef, ...]  # accounts loaded from those tables, in index order

    @property
    def fee_payer(self) -> str:
        """The first static key: it signs and pays the fee (sanitise guarantees it exists)."""
        return self.account_keys[0]

    @property
    def instructions(self) -> Sequence[CompiledInstruction]:
        """The message's compiled instructions."""
        return self.message.instructions

    @property
    def recent_blockhash(self) -> str:
        """The blockhash the message names."""
        return str(self.message.recent_blockhash)

    @property
    def signatures(self) -> tuple[Signature, ...]:
        """The signature slots, in signer order (empty slots hold the default signature)."""
        return tuple(self.transaction.signatures)

    @property
    def raw(self) -> bytes:
        """The serialised transaction."""
        return bytes(self.transaction)

    @property
    def base64(self) -> str:
        """The serialised transaction as base64."""
        return base64.b64encode(bytes(self.transaction)).decode("ascii")

    def signer_index(self, address: str) -> int | None:
        """The signature slot of `address`, or None when it is not a required signer."""
        try:
            return self.required_signers.index(address)
        except ValueError:
            return None

    def is_signed_by(self, address: str) -> bool:
        """True when the slot of `address` holds a (non-empty) signature; not verified here."""
        i = self.signer_index(address)
        return i is not None and self.transaction.signatures[i] != _DEFAULT_SIGNATURE

    def account_ref(self, index: int) -> AccountRef:
        """Resolve an instruction's account index against static keys and lookup tables."""
        n = len(self.account_keys)
        if 0 <= index < n:
            return AccountRef(index, self.account_keys[index])
        if n <= index < n + len(self.loaded_accounts):
            return self.loaded_accounts[index - n]
        raise MalformedRequestError(
            f"An instruction refers to account index {index}, but the transaction has only "
            f"{n + len(self.loaded_accounts)} accounts.",
            next_step="rebuild the transaction with your Solana library.",
        )

    def program_id(self, ix: CompiledInstruction) -> str:
        # Sanitise guarantees program ids are static keys (never loaded from a table).
        """The program instruction `ix` calls."""
        return self.account_keys[ix.program_id_index]


def _malformed(what: str) -> MalformedRequestError:
    return MalformedRequestError(what, next_step=_NEXT_STEP)


def _decode_base64(b64: str) -> bytes:
    if not isinstance(b64, str):
        raise _malformed("The Solana transaction must be a base64 string.")
    text = b64.strip()
    if not text:
        raise _malformed("The Solana transaction is empty.")
    if len(text) > _MAX_B64_CHARS:
        raise _malformed(
            f"The Solana transaction is longer than {MAX_TRANSACTION_SIZE} bytes, the largest "
            "a validator accepts."
        )
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        pass
    # Raised outside the handler, so the decoder's exception (which may quote input) is not
    # chained as __context__.
    raise _malformed("The Solana transaction is not valid base64.")


def _loaded_accounts(message: MessageV0) -> tuple[AccountRef, ...]:
    """v0 ordering (runtime `LoadedAddresses`): every table's writable entries, then readonly."""
    start = len(message.account_keys)
    refs: list[AccountRef] = []
    for writable in (True, False):
        for lookup in message.address_table_lookups:
            table = str(lookup.account_key)
            indexes = lookup.writable_indexes if writable else lookup.readonly_indexes
            for pos in indexes:
                refs.append(AccountRef(start + len(refs), None, table, int(pos), writable))
    return tuple(refs)


def _from_bytes(raw: bytes) -> VersionedTransaction | None:
    # Legacy and v0 share one wire format, so VersionedTransaction reads both; a legacy solders
    # `Transaction` serialises to the same bytes. solders raises several foreign exception
    # types (some quote the input), so none of them leaves this function.
    try:
        return VersionedTransaction.from_bytes(raw)
    except Exception:
        return None


def _sanitizes(tx: VersionedTransaction) -> bool:
    try:
        tx.sanitize()
    except Exception:
        return False
    return True


def parse_transaction(b64: str) -> SolanaTx:
    """Decode and check a base64 legacy or v0 transaction.

    Args:
        b64: the serialised transaction, signed, partly signed or with empty signature slots.

    Returns:
        The parsed transaction with its static keys, required signers and lookup tables.

    Raises:
        MalformedRequestError: the input is not exactly one valid transaction (see module doc).
    """
    tx, message = _read_transaction(_decode_base64(b64))
    keys = tuple(str(k) for k in message.account_keys)
    n_signers = _check_signers(tx, keys)
    version: Version
    tables: tuple[str, ...] = ()
    loaded: tuple[AccountRef, ...] = ()
    if isinstance(message, MessageV0):
        if tx.version() != 0:
            raise _malformed("Only legacy and v0 Solana transactions can be signed.")
        version = 0
        tables = tuple(str(lookup.account_key) for lookup in message.address_table_lookups)
        loaded = _loaded_accounts(message)
    else:
        version = "legacy"
    return SolanaTx(
        transaction=tx,
        message=message,
        version=version,
        message_bytes=bytes(to_bytes_versioned(message)),
        account_keys=keys,
        required_signers=keys[:n_signers],
        lookup_tables=tables,
        loaded_accounts=loaded,
    )


def _read_transaction(raw: bytes) -> tuple[VersionedTransaction, Message | MessageV0]:
    """`raw` as exactly one canonical, sanitized legacy or v0 transaction, and its message."""
    if len(raw) > MAX_TRANSACTION_SIZE:
        raise _malformed(
            f"The Solana transaction is {len(raw)} bytes; validators accept at most "
            f"{MAX_TRANSACTION_SIZE}."
        )
    tx = _from_bytes(raw)
    if tx is None:
        raise _malformed(
            "The bytes are not a Solana transaction (they could not be read as signatures "
            "followed by a legacy or v0 message; truncated or not a transaction)."
        )
    if bytes(tx) != raw:
        raise _malformed(
            "The Solana transaction has trailing or non-canonical bytes after the message."
        )
    message = tx.message
    if not isinstance(message, Message | MessageV0):
        raise _malformed(
            "Only legacy and v0 Solana transactions can be signed; this one uses a newer "
            "message version."
        )
    if not _sanitizes(tx):
        raise _malformed(
            "The Solana transaction is inconsistent (an index is out of range, a program id is "
            "not a static key, or the number of signature slots does not match the header)."
        )
    return tx, message


def _check_signers(tx: VersionedTransaction, keys: tuple[str, ...]) -> int:
    """The number of required signers, which has one signature slot each."""
    n_signers = int(tx.message.header.num_required_signatures)
    # The runtime (sanitize of a VersionedTransaction) requires exactly one slot per signer;
    # checked here too so the wallet's slot is unambiguous whatever solders version is installed.
    if len(tx.signatures) != n_signers or n_signers < 1 or n_signers > len(keys):
        raise _malformed(
            f"The Solana transaction has {len(tx.signatures)} signature slots but its message "
            f"needs {n_signers} signers."
        )
    if len(set(keys)) != len(keys):
        raise _malformed(
            "The Solana transaction lists the same account twice among its static keys; the "
            "runtime refuses such a transaction."
        )
    return n_signers
