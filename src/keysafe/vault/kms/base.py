"""Key providers, the common part: what wraps the vault's key-encryption key (KEK), which wraps the
master key and the passphrase's sealing key (vault/hierarchy.py).

    provider = kms.provider_for(config, token=tok, url=operators_url)  # never the header's URL
    blob = provider.wrap(kek, context=kms.context_for(vault_id, provider.config))
    kek = provider.unwrap(blob, context=kms.context_for(vault_id, provider.config))

- `local` (the default): the KEK is Argon2id(passphrase); no provider object is involved and the
  header keeps today's format (vault/header.py). `destroy` has nothing outside the database to
  shred: deleting the vault's files is the shredding.
- `openbao` (OpenBao or HashiCorp Vault, transit engine): the KEK is sent to
  `POST /v1/transit/encrypt/<key>` and the ciphertext (`vault:vN:…`) is stored; unwrapping calls
  `/decrypt`. The transit key never leaves the KMS. `destroy` allows deletion on the key and
  deletes it (every version): every blob it wrapped, in any vault, is gone for good.
- `aws-kms`: `GenerateDataKey` gives a fresh AES-256 data key and its KMS ciphertext; the KEK is
  AEAD-sealed (XChaCha20-Poly1305) under that data key and the stored blob holds both. The
  encryption context names the vault and purpose, so KMS itself refuses another vault's blob
  (and records the context in CloudTrail). `destroy` disables the key at once and schedules its
  deletion after AWS's shortest waiting period (7 days; cancellable by an AWS admin meanwhile).

Rules this module enforces:
- The token is a `SecretBytes` given to the provider by the caller; it is never part of a
  `KmsConfig`, a message, a log line or a repr. A KMS response body is never quoted in an error.
- Every failure comes out as one of two errors (the public method wraps a private hook, as
  TUF's fetcher does): `KmsUnavailableError` when the KMS cannot be reached or refuses the caller
  (its `reason` fact says which: "unreachable" or "refused"), or `IntegrityError` when the KMS
  answers but will not open this blob (another key, another vault's blob, an edited header).
- The associated data (AEAD and, for AWS, the encryption context) binds the blob to the vault
  id, the provider kind and the key id, so a blob copied between vaults or keys does not open.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeVar
from urllib.parse import urlsplit

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, KmsUnavailableError, MalformedRequestError
from keysafe.hosts import is_loopback

logger = logging.getLogger(__name__)

T = TypeVar("T")

TIMEOUT_S: Final = 10.0
_RECOVER: Final = "or rebuild the vault without the KMS: `keysafe recover` with the recovery phrase"


class KmsKind(StrEnum):
    LOCAL = "local"  # the passphrase (Argon2id): today's format, the default
    OPENBAO = "openbao"  # OpenBao / HashiCorp Vault transit engine
    AWS = "aws-kms"  # AWS KMS (or anything speaking its API, such as moto)


class KmsReason(StrEnum):
    UNREACHABLE = "unreachable"  # no answer, a timeout, a 5xx, a sealed OpenBao
    REFUSED = "refused"  # the KMS answered no: token, permission, missing or disabled key


@dataclass(frozen=True, slots=True)
class KmsConfig:
    """Where the vault's key lives: kept in the vault header. Never holds a token."""

    kind: KmsKind
    url: str | None = None
    key: str | None = None

    @classmethod
    def local(cls) -> KmsConfig:
        return cls(KmsKind.LOCAL)

    @classmethod
    def build(cls, kind: str, *, url: str | None, key: str | None) -> KmsConfig:
        """Validate what the owner typed (`keysafe init --kms …`).

        Raises:
            MalformedRequestError: an unknown kind, or a missing/unusable URL or key id.
        """
        try:
            k = KmsKind(kind)
        except ValueError:
            raise MalformedRequestError(
                f"Unknown key provider {kind[:40]!r}.",
                next_step="use --kms local, --kms openbao or --kms aws-kms.",
            ) from None
        if k is KmsKind.LOCAL:
            return cls.local()
        if not key:
            raise MalformedRequestError(
                f"--kms {k} needs the key to use (--kms-key).",
                next_step="pass --kms-key NAME (OpenBao transit key) or a key id/ARN (AWS).",
            )
        if k is KmsKind.OPENBAO and not url:
            raise MalformedRequestError(
                "--kms openbao needs the server's address (--kms-url).",
                next_step="pass --kms-url https://bao.example:8200 (http only on loopback).",
            )
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
                raise MalformedRequestError(
                    "--kms-url must be an http(s) URL without credentials in it.",
                    next_step="pass e.g. --kms-url https://bao.example:8200.",
                )
            if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
                raise MalformedRequestError(
                    "--kms-url uses plain http to another machine: the token and the wrapped "
                    "key would cross the network in clear.",
                    next_step="use https, or a KMS on this machine (127.0.0.1).",
                )
            url = url.rstrip("/")
        return cls(k, url, key)

    def describe(self) -> str:
        """For status and messages: kind, URL, key id (none of them secret)."""
        if self.kind is KmsKind.LOCAL:
            return "local (passphrase)"
        where = f" at {self.url}" if self.url else ""
        return f"{self.kind}{where}, key {self.key}"


@dataclass(frozen=True, slots=True)
class KmsHealth:
    ok: bool
    detail: str  # one line for `keysafe doctor`; never a response body or a token


def context_for(vault_id: str, config: KmsConfig) -> dict[str, str]:
    """What a wrapped KEK is bound to: this vault, this provider and key, this purpose. The URL
    is left out on purpose: moving the KMS to another address must not orphan the vault."""
    return {
        "keysafe:vault": vault_id,
        "keysafe:kms": str(config.kind),
        "keysafe:key": config.key or "",
        "keysafe:purpose": "vault-kek",
    }


class KmsProvider(ABC):
    """One KMS: `wrap`/`unwrap` a key, report `health`, `destroy` (crypto-shred) its key.

    Each public method calls a private hook and maps anything foreign it raises to
    `KmsUnavailableError` (an `IntegrityError` from a hook passes through)."""

    def __init__(self, config: KmsConfig) -> None:
        self.config = config

    def wrap(self, key: SecretBytes, *, context: dict[str, str]) -> bytes:
        return self._guard(lambda: self._wrap(key, context), "wrap the vault's key")

    def unwrap(self, blob: bytes, *, context: dict[str, str]) -> SecretBytes:
        return self._guard(lambda: self._unwrap(blob, context), "open the vault's key")

    def health(self) -> KmsHealth:
        """Does the KMS answer, and is the key usable? Never raises for the KMS's sake."""
        try:
            return self._guard(self._health, "read the key")
        except (KmsUnavailableError, IntegrityError) as exc:
            return KmsHealth(False, exc.what)

    def destroy(self) -> str:
        """Crypto-shred what this provider can; returns what was done, in one sentence.

        Raises:
            KmsUnavailableError: the KMS is down or refuses (e.g. the token may not delete).
        """
        return self._guard(self._destroy, "destroy the vault's key")

    @abstractmethod
    def close(self) -> None:
        """Release connections (nothing secret is kept between calls)."""

    def _guard(self, call: Callable[[], T], doing: str) -> T:
        try:
            result = call()
        except (KmsUnavailableError, IntegrityError):
            raise
        except Exception as exc:  # a client library's own error: never quoted (it may echo)
            logger.warning("kms %s: %s failed (%s)", self.config.kind, doing, type(exc).__name__)
            raise self.unreachable(doing) from None
        return result

    def unreachable(self, doing: str) -> KmsUnavailableError:
        return KmsUnavailableError(
            f"The key provider ({self.config.describe()}) did not answer, so keysafe could not "
            f"{doing}; nothing was changed.",
            next_step=f"start the KMS or restore the network path to it and retry, {_RECOVER}.",
            reason=str(KmsReason.UNREACHABLE),
            kms=str(self.config.kind),
        )

    def refused(self, doing: str, why: str) -> KmsUnavailableError:
        return KmsUnavailableError(
            f"The key provider ({self.config.describe()}) refused to {doing}: {why}; nothing "
            "was changed.",
            next_step="check the token (KEYSAFE_KMS_TOKEN / --kms-token-file) or credentials, "
            f"their permission on the key and that the key exists and is enabled, {_RECOVER}.",
            reason=str(KmsReason.REFUSED),
            kms=str(self.config.kind),
        )

    def rejected(self) -> IntegrityError:
        return IntegrityError(
            f"The key provider ({self.config.describe()}) will not open this vault's wrapped key "
            "with that key: the key was deleted or replaced, or the header belongs to another "
            "key or vault, or was edited.",
            next_step="restore the database from a backup, " + _RECOVER + ".",
            kms=str(self.config.kind),
        )

    @abstractmethod
    def _wrap(self, key: SecretBytes, context: dict[str, str]) -> bytes: ...

    @abstractmethod
    def _unwrap(self, blob: bytes, context: dict[str, str]) -> SecretBytes: ...

    @abstractmethod
    def _health(self) -> KmsHealth: ...

    @abstractmethod
    def _destroy(self) -> str: ...


def not_a_kms_vault() -> MalformedRequestError:
    return MalformedRequestError(
        "This vault is unlocked with its passphrase, not a KMS.",
        next_step="give the passphrase (KEYSAFE_PASSPHRASE, --passphrase-file or the prompt).",
    )
