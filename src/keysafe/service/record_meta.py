"""The public metadata of wallet, credential and data records, as typed models.

A record's `meta` is stored as canonical JSON and bound into its ciphertext's associated data
(vault/records.py), so these models only read it: each is parsed once where the record is read,
and a rewrite of a record starts from the stored dict itself (`RecordInfo.meta`), never from a
model's dump, so the stored bytes of old and new rows stay what they were. `stored()` gives the
dict a new record is written with: exactly the fields it was built with.

Rules:
- A wallet is a 2-of-3 threshold wallet exactly when its meta parses as `ThresholdMeta`
  (`source` "threshold"); `Wallet.threshold` is the one place that answers it.
- Metadata that does not parse is an integrity failure (edited outside keysafe), as a record
  whose ciphertext does not open.
- Fields a model does not name are kept (`extra="allow"`): a newer keysafe may add one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from keysafe.chains import Chain
from keysafe.mpc.frost.keys import PublicKeyPackage
from keysafe.vault.records import RecordInfo, integrity_failure


class _Meta(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    def stored(self) -> dict[str, Any]:
        """The JSON a new record keeps: the fields this model was built or read with."""
        return self.model_dump(mode="json", exclude_unset=True)


class WalletMeta(_Meta):
    """A single-key wallet: derived from the vault's seed (with its BIP-44/SLIP-10 `index` and
    `path`) or imported."""

    chain: Chain
    address: str
    source: Literal["derived", "imported"]
    index: int | None = None
    path: str | None = None


class ThresholdMeta(_Meta):
    """A 2-of-3 wallet: the vault holds the user share; `public` is the group's public key
    package, `generation` counts reshares (1 when made), `banned` the parties a failed DKLs23
    check excluded, `restored` a wallet rebuilt from a backup (it signs after a refresh only)."""

    chain: Chain
    address: str
    source: Literal["threshold"]
    threshold: str
    agent: str
    public: dict[str, Any]
    generation: int = 1
    banned: tuple[int, ...] = ()
    restored: bool = False

    def public_package(self) -> PublicKeyPackage:
        return PublicKeyPackage.from_dict(self.public)


class CredentialMeta(_Meta):
    """The hosts a credential may be sent to, and how it is attached (`Attachment`'s fields)."""

    hosts: list[str]
    attach: dict[str, str]


class DataMeta(_Meta):
    """A data record's format, and the top-level field names of a JSON object (never values)."""

    format: Literal["text", "json"]
    fields: list[str] = Field(default_factory=list)


AnyWalletMeta = Annotated[WalletMeta | ThresholdMeta, Field(discriminator="source")]
_WALLET_META: TypeAdapter[WalletMeta | ThresholdMeta] = TypeAdapter(AnyWalletMeta)


_M = TypeVar("_M")


def _parse(info: RecordInfo, adapter: TypeAdapter[_M]) -> _M:
    try:
        return adapter.validate_python(info.meta)
    except ValidationError:
        raise integrity_failure(info.ref) from None


def credential_meta(info: RecordInfo) -> CredentialMeta:
    """The credential record's metadata.

    Raises:
        IntegrityError: it was edited outside keysafe.
    """
    return _parse(info, _CREDENTIAL_META)


def data_meta(info: RecordInfo) -> DataMeta:
    """The data record's metadata.

    Raises:
        IntegrityError: it was edited outside keysafe.
    """
    return _parse(info, _DATA_META)


_CREDENTIAL_META: TypeAdapter[CredentialMeta] = TypeAdapter(CredentialMeta)
_DATA_META: TypeAdapter[DataMeta] = TypeAdapter(DataMeta)


class RecordStamps(TypedDict):
    """What every owner's view of a record takes from its row, beside the metadata: its name
    and when it was first and last written."""

    name: str
    created_at: str
    updated_at: str


def record_stamps(info: RecordInfo) -> RecordStamps:
    """The record's name and write times, for a view to take as keywords."""
    return {"name": info.name, "created_at": info.created_at, "updated_at": info.updated_at}


@dataclass(frozen=True, slots=True)
class Wallet:
    """A wallet record read from the vault, with its metadata parsed once."""

    info: RecordInfo
    meta: WalletMeta | ThresholdMeta

    @classmethod
    def of(cls, info: RecordInfo) -> Wallet:
        """Parse the wallet record's metadata.

        Raises:
            IntegrityError: it was edited outside keysafe.
        """
        return cls(info, _parse(info, _WALLET_META))

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def address(self) -> str:
        return self.meta.address

    @property
    def chain(self) -> Chain:
        return self.meta.chain

    @property
    def threshold(self) -> ThresholdMeta | None:
        """The 2-of-3 metadata, or None for a single-key wallet."""
        return self.meta if isinstance(self.meta, ThresholdMeta) else None

    def as_threshold(self) -> ThresholdWallet | None:
        """This wallet as a 2-of-3 wallet, or None for a single-key wallet."""
        meta = self.threshold
        return None if meta is None else ThresholdWallet(self.info, meta)


@dataclass(frozen=True, slots=True)
class ThresholdWallet(Wallet):
    """A 2-of-3 wallet record, its metadata parsed once."""

    meta: ThresholdMeta

    def public(self) -> PublicKeyPackage:
        return self.meta.public_package()
