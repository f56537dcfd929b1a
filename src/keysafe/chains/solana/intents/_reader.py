"""Reading an instruction's accounts and data; running short means the program refuses it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from solders.pubkey import Pubkey

from keysafe.chains.solana.intents._common import refuse
from keysafe.chains.solana.intents._programs import MAX_SEED_LEN
from keysafe.chains.solana.intents._steps import Call, Step
from keysafe.chains.solana.tx import AccountRef, SolanaTx
from keysafe.errors import MalformedRequestError

logger = logging.getLogger(__name__)


def read_uint(data: bytes, start: int, size: int) -> int:
    """The little-endian uint of `size` bytes at `start`."""
    return int.from_bytes(data[start : start + size], "little")


def accounts_of(tx: SolanaTx, indexes: bytes, need: int, n: int, name: str) -> list[AccountRef]:
    """The first `need` accounts of instruction `n` (refused when there are fewer)."""
    if len(indexes) < need:
        raise refuse(
            f"Instruction {n} ({name}) lists {len(indexes)} accounts but needs at least {need}; "
            "the program would refuse it."
        )
    return [tx.account_ref(i) for i in indexes[:need]]


def short_data(n: int, name: str) -> MalformedRequestError:
    """The refusal of an instruction whose data runs short."""
    return refuse(f"Instruction {n} ({name}) has too few data bytes; the program would refuse it.")


class DataReader:
    """Reads an instruction's data field by field; running short means the program refuses it.

    Bytes after the last field are ignored, as the System program's bincode and the SPL Token
    unpackers ignore them, so padding cannot turn an instruction into something else.
    """

    def __init__(self, raw: bytes, n: int, name: str, start: int) -> None:
        self._raw, self._n, self._name, self._pos = raw, n, name, start

    def take(self, size: int) -> bytes:
        """The next `size` bytes."""
        if self._pos + size > len(self._raw):
            raise short_data(self._n, self._name)
        out = self._raw[self._pos : self._pos + size]
        self._pos += size
        return out

    def u64(self) -> int:
        """The next little-endian u64."""
        return int.from_bytes(self.take(8), "little")

    def pubkey(self) -> str:
        """The next 32 bytes as a base58 public key."""
        return str(Pubkey.from_bytes(self.take(32)))

    def seed(self) -> str:
        # bincode String: u64 length, then UTF-8; the runtime allows seeds of at most 32 bytes.
        """The next bincode string: a seed of at most 32 UTF-8 bytes."""
        size = self.u64()
        if size > MAX_SEED_LEN:
            raise refuse(
                f"Instruction {self._n} ({self._name}) has a seed of {size} bytes; the runtime "
                f"allows at most {MAX_SEED_LEN} and would refuse it."
            )
        try:
            return self.take(size).decode("utf-8")
        except UnicodeDecodeError:
            raise refuse(
                f"Instruction {self._n} ({self._name}) has a seed that is not UTF-8; the runtime "
                "would refuse it."
            ) from None


@dataclass(frozen=True, slots=True)
class Instruction:
    """Instruction `n` of `tx` being decoded: its program, name, accounts and a data reader."""

    tx: SolanaTx
    n: int
    program: str
    family: str  # "system", "spl-token" or "token-2022": the prefix of step functions
    name: str  # e.g. "transfer", or "instruction 99" when unknown
    what: str  # how a refusal names it, e.g. "System transfer", "spl-token approve"
    accounts: bytes  # account indexes
    data: DataReader
    wallet: str

    @property
    def function(self) -> str:
        """e.g. "system.transfer", "spl-token.approveChecked"."""
        return f"{self.family}.{self.name}"

    def refs(self, need: int) -> list[AccountRef]:
        """The first `need` accounts (refused when there are fewer)."""
        return accounts_of(self.tx, self.accounts, need, self.n, self.what)


def as_call(ix: Instruction) -> Step:
    """An instruction keysafe does not decode further: a call to its program."""
    return Call(ix.program, ix.name)
