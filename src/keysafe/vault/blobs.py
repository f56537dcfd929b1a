"""Where a record's ciphertext lives: in its `records` row (the default), or as an object in S3.

    store = open_blobs(BlobConfig.parse("s3://my-bucket/keysafe", endpoint=None))
    stored = store.stow(vault_id, kind="data", record_id=rid, epoch=3, version=1,
                        nonce=sealed.nonce, ciphertext=sealed.ciphertext)
    nonce, ciphertext = store.fetch(stored, ref)    # hash checked before anything is decrypted

The vault calls this one interface (`RecordBlobs`) whichever store the vault uses.

Rules the S3 store enforces:
- Layout: `<prefix>/<vault id>/<kind>/<epoch>/<record id>.v<version>.enc`, holding the record's
  nonce then its ciphertext, the bytes the row would otherwise hold. The record's version is in
  the name so no write ever overwrites the object a committed row points at: a crash between
  putting the object and committing its row leaves the old row and its old object intact, in a
  bucket with versions or without (the row also keeps the version id where there is one).
- The row keeps the object's key, version id and SHA-256. A fetched object whose hash differs
  (altered, or swapped for another record's) or that is missing is refused with INTEGRITY_ERROR
  before decryption; the record's AEAD would refuse it too, this says which side broke.
- Destroying an epoch deletes every version and delete marker under that epoch's part of the
  layout, so no old ciphertext stays in a versioned bucket (forward secrecy, service/epochs.py).
  Objects no row points at (a crash between put and commit, a replaced or removed record) are
  garbage until their epoch is destroyed at the next rotation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from keysafe.crypto import aead
from keysafe.errors import IntegrityError, MalformedRequestError
from keysafe.store.s3 import S3Objects
from keysafe.vault.records import RecordRef

logger = logging.getLogger(__name__)

_BUCKET: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_PART: Final = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True, slots=True)
class BlobConfig:
    """An S3 blob store's settings, as the vault header keeps them (no credential, ever)."""

    bucket: str
    prefix: str  # "" or path segments without leading/trailing "/"
    endpoint: str | None  # None: AWS itself; else an S3-compatible server's URL

    @classmethod
    def parse(cls, url: str, *, endpoint: str | None) -> BlobConfig:
        """From `s3://bucket/prefix` and an optional endpoint URL.

        Raises:
            MalformedRequestError: not an s3:// URL with a valid bucket name and prefix.
        """
        bad = MalformedRequestError(
            f"--blobs takes s3://BUCKET/PREFIX (letters, digits, '.', '_' and '-' in the "
            f"prefix); {url[:200]!r} is not one.",
            next_step="e.g. `keysafe init --blobs s3://my-vault-bucket/keysafe`.",
        )
        if not url.startswith("s3://"):
            raise bad
        bucket, _, prefix = url[len("s3://") :].partition("/")
        prefix = prefix.strip("/")
        if not _BUCKET.match(bucket) or (
            prefix and not all(_PREFIX_PART.match(p) for p in prefix.split("/"))
        ):
            raise bad
        if endpoint is not None:
            _check_endpoint(endpoint)
        return cls(bucket, prefix, endpoint)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def to_json(self) -> str:
        return json.dumps(
            {"kind": "s3", "bucket": self.bucket, "prefix": self.prefix, "endpoint": self.endpoint},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> BlobConfig:
        """Read the vault header's setting.

        Raises:
            IntegrityError: it is not one keysafe wrote.
        """
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or raw.get("kind") != "s3":
                raise ValueError("not an s3 blob store")
            endpoint = raw.get("endpoint")
            return cls.parse(
                f"s3://{raw['bucket']}/{raw['prefix']}",
                endpoint=None if endpoint is None else str(endpoint),
            )
        except (ValueError, KeyError, TypeError, MalformedRequestError):
            raise IntegrityError(
                "The vault header's blob store setting is not one keysafe wrote.",
                next_step="restore the database from a backup (`keysafe backup restore FILE`).",
            ) from None


@dataclass(frozen=True, slots=True)
class Stored:
    """A record's ciphertext as its row holds it: inline (`nonce`, `ciphertext`), or a pointer
    to an object (`blob_key`, `blob_version`, `blob_sha256`) with the inline columns empty."""

    nonce: bytes
    ciphertext: bytes
    blob_key: str | None = None
    blob_version: str | None = None
    blob_sha256: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Stored:
        return cls(row.nonce, row.ciphertext, row.blob_key, row.blob_version, row.blob_sha256)

    def columns(self) -> dict[str, Any]:
        """The `records` columns to write."""
        return {
            "nonce": self.nonce,
            "ciphertext": self.ciphertext,
            "blob_key": self.blob_key,
            "blob_version": self.blob_version,
            "blob_sha256": self.blob_sha256,
        }


class RecordBlobs(ABC):
    """Where record ciphertext goes. Every method runs inside the caller's SQL transaction; none
    commits anything itself."""

    def stow(
        self,
        vault_id: str,
        *,
        kind: str,
        record_id: str,
        epoch: int,
        version: int,
        nonce: bytes,
        ciphertext: bytes,
    ) -> Stored:
        """Store a record's ciphertext (before its row is written) and say what the row holds."""
        name = _layout_name(kind=kind, epoch=epoch, record_id=record_id, version=version)
        return self._keep(vault_id, name, nonce, ciphertext)

    @abstractmethod
    def _keep(self, vault_id: str, name: str, nonce: bytes, ciphertext: bytes) -> Stored:
        """`stow`'s step for this store: keep the ciphertext of the record that the layout
        names `name` (`<kind>/<epoch>/<record id>.v<version>.enc`) within `vault_id`'s part."""

    @abstractmethod
    def fetch(self, stored: Stored, ref: RecordRef) -> tuple[bytes, bytes]:
        """The (nonce, ciphertext) a row points at.

        Raises:
            IntegrityError: the object is missing, or its hash is not the row's.
            StoreError: the store is unreachable or refuses.
        """

    @abstractmethod
    def destroy_epoch(self, vault_id: str, epoch: int) -> int:
        """Delete every stored copy of ciphertext sealed in `epoch` (no row may use it any more);
        returns how many objects or versions went."""

    @property
    @abstractmethod
    def description(self) -> str:
        """Where ciphertext lives, for people (status, docs, audit)."""

    @property
    def remote(self) -> bool:
        """Is ciphertext kept outside the database (each read and write a network call)?"""
        return False


class InlineBlobs(RecordBlobs):
    """The default: ciphertext in the `records` row, exactly as before schema 0011."""

    def _keep(self, vault_id: str, name: str, nonce: bytes, ciphertext: bytes) -> Stored:
        return Stored(nonce, ciphertext)

    def fetch(self, stored: Stored, ref: RecordRef) -> tuple[bytes, bytes]:
        if stored.blob_key is not None:
            # A pointer in a vault that has no object store: the row or the header was edited.
            raise IntegrityError(
                f"The {ref.kind} '{ref.name}' (record {ref.id}) points at an object in a blob "
                "store, but this vault keeps its ciphertext in its database. Nothing was "
                "decrypted.",
                next_step="restore the vault from a backup (`keysafe backup restore FILE`); if "
                "you did not edit the database yourself, treat this machine as tampered with.",
                record=ref.id,
            )
        return stored.nonce, stored.ciphertext

    def destroy_epoch(self, vault_id: str, epoch: int) -> int:
        return 0  # the rows themselves were re-sealed; SQLite's secure_delete zeroed the old bytes

    @property
    def description(self) -> str:
        return "database"


class S3Blobs(RecordBlobs):
    """Ciphertext as objects in one S3 bucket, under the vault's prefix."""

    def __init__(self, config: BlobConfig, objects: S3Objects | None = None) -> None:
        self.config = config
        self._objects = objects
        self._base = f"{config.prefix}/" if config.prefix else ""

    @property
    def objects(self) -> S3Objects:
        # Made at first use: opening a vault (to show its status, or to refuse a wrong
        # passphrase) must not need boto3 or the network.
        if self._objects is None:
            self._objects = S3Objects(self.config.bucket, endpoint=self.config.endpoint)
        return self._objects

    def vault_prefix(self, vault_id: str) -> str:
        return f"{self._base}{vault_id}/"

    def check(self) -> None:
        """Raises StoreError when the bucket cannot be reached or used."""
        self.objects.check()

    def _keep(self, vault_id: str, name: str, nonce: bytes, ciphertext: bytes) -> Stored:
        key = self.vault_prefix(vault_id) + name
        body = nonce + ciphertext
        # Put first; the caller then commits the row that points here. A crash in between leaves
        # an object no row names (garbage, deleted with its epoch), never a row without its object.
        version_id = self.objects.put(key, body)
        return Stored(b"", b"", key, version_id, hashlib.sha256(body).hexdigest())

    def fetch(self, stored: Stored, ref: RecordRef) -> tuple[bytes, bytes]:
        if stored.blob_key is None:
            return stored.nonce, stored.ciphertext  # a row written inline is still readable
        where = f"s3://{self.config.bucket}/{stored.blob_key}"
        body = self.objects.get(stored.blob_key, stored.blob_version)
        if body is None:
            raise IntegrityError(
                f"The {ref.kind} '{ref.name}' (record {ref.id}) cannot be read: its ciphertext "
                f"object {where} is missing from the bucket (deleted, expired by a lifecycle "
                "rule, or the bucket was emptied). Nothing was decrypted.",
                next_step="restore the vault from a backup (`keysafe backup restore FILE`); check "
                "the bucket's lifecycle rules and who may delete from it, and treat the bucket as "
                "tampered with if nobody meant to.",
                record=ref.id,
            )
        digest = hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(digest, stored.blob_sha256 or "") or len(body) < (
            aead.NONCE_SIZE + aead.TAG_SIZE
        ):
            logger.warning("record %s: object %s does not match its hash", ref.id, where)
            raise IntegrityError(
                f"The {ref.kind} '{ref.name}' (record {ref.id}) failed its integrity check: its "
                f"ciphertext object {where} is not the one the vault wrote (altered, or swapped "
                "for another). Nothing was decrypted.",
                next_step="restore the vault from a backup (`keysafe backup restore FILE`) and "
                "treat the bucket as tampered with: review who can write to it (its access policy "
                "and access logs).",
                record=ref.id,
            )
        return body[: aead.NONCE_SIZE], body[aead.NONCE_SIZE :]

    def destroy_epoch(self, vault_id: str, epoch: int) -> int:
        prefix = self.vault_prefix(vault_id)
        doomed = [
            (key, version)
            for key, version in self.objects.versions(prefix)
            if _epoch_of(key[len(prefix) :]) == epoch
        ]
        self.objects.delete_versions(doomed)
        return len(doomed)

    @property
    def remote(self) -> bool:
        return True

    @property
    def description(self) -> str:
        return self.config.url + (f" at {self.config.endpoint}" if self.config.endpoint else "")


def _check_endpoint(endpoint: str) -> None:
    """An http(s) URL with a host and nothing secret in it: it is kept in the vault header and
    shown in messages, and credentials come from the AWS chain only."""
    try:
        parts = urlsplit(endpoint)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        ok = False
    if not ok:
        raise MalformedRequestError(
            "--blobs-endpoint takes an http(s) URL with a host; that is not one.",
            next_step="e.g. `--blobs-endpoint https://s3.example.com` (or leave it out for AWS).",
        )
    if parts.username is not None or parts.password is not None or parts.query:
        # Never quote it: the part refused is where a secret would be.
        raise MalformedRequestError(
            "--blobs-endpoint must not carry credentials or a query: it is stored in the vault "
            "header and shown in messages.",
            next_step="give the bare URL (https://host[:port]) and put the keys in "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or an AWS profile.",
        )


def _layout_name(*, kind: str, epoch: int, record_id: str, version: int) -> str:
    """A record's object name below its vault's prefix (the layout above)."""
    return f"{kind}/{epoch}/{record_id}.v{version}.enc"


def _epoch_of(rest: str) -> int | None:
    """The epoch in `<kind>/<epoch>/<name>` (None: not keysafe's layout; left alone)."""
    parts = rest.split("/")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return int(parts[1])


def open_blobs(config: BlobConfig | None) -> RecordBlobs:
    """The store a vault header names (None: the database)."""
    return InlineBlobs() if config is None else S3Blobs(config)
