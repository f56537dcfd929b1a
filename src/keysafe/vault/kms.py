"""Key providers: what wraps the vault's key-encryption key (KEK), which wraps the master key and
the passphrase's sealing key (vault/hierarchy.py).

    provider = kms.provider_for(config, token=tok, url=operators_url)  # never the header's URL
    blob = provider.wrap(kek, context=kms.context_for(vault_id, provider.config))
    kek = provider.unwrap(blob, context=kms.context_for(vault_id, provider.config))

- `local` (the default): the KEK is Argon2id(passphrase); no provider object is involved and the
  header keeps today's format (vault/vault.py). `destroy` has nothing outside the database to
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

import base64
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from keysafe.crypto import aead, jcs
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, KmsUnavailableError, MalformedRequestError
from keysafe.hosts import is_loopback

try:  # the [aws] extra: a keysafe without it still runs every other provider
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:  # pragma: no cover - the test environment has it
    boto3 = None

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


# -- OpenBao / HashiCorp Vault transit --------------------------------------------------------


class OpenBaoTransit(KmsProvider):
    """The transit engine at `<url>/v1/transit`, key `config.key`, authenticated by a token."""

    def __init__(self, config: KmsConfig, *, token: SecretBytes, mount: str = "transit") -> None:
        super().__init__(config)
        self._token = token
        self._base = f"{config.url}/v1/{mount}"
        self._key = quote(config.key or "", safe="")
        # No proxy from the environment: the token must go to the URL in the header, nowhere
        # else; no redirects followed, for the same reason.
        self._http = httpx.Client(timeout=TIMEOUT_S, trust_env=False, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any] | None, doing: str) -> dict[str, Any]:
        return self._call("POST", path, body, doing)

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None, doing: str
    ) -> dict[str, Any]:
        # The token goes in a header built per call; httpx never logs headers, and no request
        # object outlives this function.
        headers = {"X-Vault-Token": bytes(self._token.reveal()).decode("ascii", "replace")}
        try:
            r = self._http.request(method, f"{self._base}/{path}", json=body, headers=headers)
        except httpx.HTTPError:
            raise self.unreachable(doing) from None
        finally:
            headers.clear()
        if r.status_code in (401, 403):
            raise self.refused(doing, "the token is missing, expired or not allowed on this key")
        if r.status_code == 404:
            raise self.refused(doing, f"there is no transit key named {self.config.key!r}")
        if r.status_code >= 500 or r.status_code == 429:
            raise self.unreachable(doing)  # 503: sealed or standby; 5xx: the server's trouble
        if r.status_code == 400:
            raise _BadRequest
        if r.status_code == 204:
            return {}
        if r.status_code != 200:
            raise self.refused(doing, f"HTTP {r.status_code}")
        try:
            data = r.json()["data"]
            if not isinstance(data, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise self.unreachable(doing) from None
        return data

    def _wrap(self, key: SecretBytes, context: dict[str, str]) -> bytes:
        plain = base64.b64encode(bytes(key.reveal())).decode()
        try:
            data = self._post(f"encrypt/{self._key}", {"plaintext": plain}, "wrap the vault's key")
        except _BadRequest:
            raise self.refused("wrap the vault's key", "the key cannot encrypt") from None
        ct = data.get("ciphertext")
        if not isinstance(ct, str) or not ct.startswith("vault:v"):
            raise self.unreachable("wrap the vault's key")
        return ct.encode()

    def _unwrap(self, blob: bytes, context: dict[str, str]) -> SecretBytes:
        try:
            data = self._post(
                f"decrypt/{self._key}", {"ciphertext": blob.decode("ascii", "replace")},
                "open the vault's key",
            )  # fmt: skip
        except _BadRequest:
            # Transit answers 400 for a ciphertext its key did not make (or a mangled one).
            raise self.rejected() from None
        plain = data.get("plaintext")
        if not isinstance(plain, str):
            raise self.unreachable("open the vault's key")
        try:
            return SecretBytes.adopt(bytearray(base64.b64decode(plain, validate=True)))
        except ValueError:
            raise self.rejected() from None

    def _health(self) -> KmsHealth:
        try:
            data = self._call("GET", f"keys/{self._key}", None, "read the key")
        except _BadRequest:
            return KmsHealth(False, f"{self.config.describe()}: the key cannot be read")
        latest = data.get("latest_version")
        return KmsHealth(True, f"{self.config.describe()} answers (key version {latest})")

    def _destroy(self) -> str:
        doing = "delete the transit key"
        try:
            self._post(f"keys/{self._key}/config", {"deletion_allowed": True}, doing)
            self._call("DELETE", f"keys/{self._key}", None, doing)
        except _BadRequest:
            raise self.refused(doing, "the server would not delete it") from None
        return (
            f"Transit key {self.config.key!r} deleted from {self.config.url}: every blob it "
            "wrapped, in any vault, can no longer be opened."
        )


class _BadRequest(Exception):
    """A 400 from transit: what it means depends on the call (the body is never read)."""


# -- AWS KMS ----------------------------------------------------------------------------------

_AWS_REFUSED: Final = {
    "AccessDeniedException": "the credentials may not use this key",
    "UnrecognizedClientException": "the credentials are not recognised",
    "InvalidSignatureException": "the credentials are not recognised",
    "ExpiredTokenException": "the credentials have expired",
    "NotFoundException": "there is no such key",
    "DisabledException": "the key is disabled",
    "KMSInvalidStateException": "the key is disabled or pending deletion",
    "InvalidKeyUsageException": "the key cannot encrypt",
}
_AWS_REJECTED: Final = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


@dataclass(frozen=True, slots=True)
class _AwsBlob:
    """What is stored for aws-kms: KMS's ciphertext of the data key, and the KEK sealed under
    that data key (nonce ‖ ciphertext ‖ tag), as one JSON object of base64 strings."""

    kms_blob: bytes
    nonce: bytes
    sealed: bytes

    def dumps(self) -> bytes:
        return jcs.dumps({
            "v": 1, "kms": base64.b64encode(self.kms_blob).decode(),
            "nonce": base64.b64encode(self.nonce).decode(),
            "sealed": base64.b64encode(self.sealed).decode(),
        })  # fmt: skip

    @classmethod
    def loads(cls, raw: bytes) -> _AwsBlob:
        """Raises ValueError for anything but a blob `dumps` wrote."""
        try:
            doc = json.loads(raw)
            if doc.get("v") != 1:
                raise ValueError("unknown blob version")
            return cls(
                *(base64.b64decode(doc[k], validate=True) for k in ("kms", "nonce", "sealed"))
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(str(exc)) from None


class AwsKms(KmsProvider):
    """AWS KMS through boto3: region from AWS_REGION / AWS_DEFAULT_REGION (else us-east-1),
    credentials from boto3's usual chain, `config.url` as the endpoint (moto, LocalStack)."""

    def __init__(self, config: KmsConfig, *, region: str | None = None) -> None:
        super().__init__(config)
        if boto3 is None:
            raise MalformedRequestError(
                "--kms aws-kms needs boto3, which this keysafe was installed without.",
                next_step="install it: `pip install 'keysafe[aws]'`.",
            )
        session = boto3.session.Session()
        self._client = session.client(
            "kms", endpoint_url=config.url, region_name=region or session.region_name or "us-east-1",
            config=botocore.config.Config(
                connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 2}
            ),
        )  # fmt: skip

    def close(self) -> None:
        self._client.close()

    def _aws(self, doing: str, call: Any) -> Any:
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _AWS_REJECTED:
                raise self.rejected() from None
            if code in _AWS_REFUSED:
                raise self.refused(doing, _AWS_REFUSED[code]) from None
            raise self.unreachable(doing) from None
        except botocore.exceptions.NoCredentialsError:
            # No credentials at all is the owner's to fix, not the network's.
            raise self.refused(doing, "no AWS credentials were found") from None
        except (botocore.exceptions.BotoCoreError, OSError):
            raise self.unreachable(doing) from None

    def _wrap(self, key: SecretBytes, context: dict[str, str]) -> bytes:
        made = self._aws("wrap the vault's key", lambda: self._client.generate_data_key(
            KeyId=self.config.key, KeySpec="AES_256", EncryptionContext=context,
        ))  # fmt: skip
        data_key = SecretBytes.adopt(bytearray(made["Plaintext"]))
        with data_key:
            nonce = aead.new_nonce()
            sealed = aead.encrypt(data_key.reveal(), nonce, key.reveal(), jcs.dumps(context))
        return _AwsBlob(bytes(made["CiphertextBlob"]), nonce, sealed).dumps()

    def _unwrap(self, blob: bytes, context: dict[str, str]) -> SecretBytes:
        try:
            parsed = _AwsBlob.loads(blob)
        except ValueError:
            raise self.rejected() from None
        opened = self._aws("open the vault's key", lambda: self._client.decrypt(
            CiphertextBlob=parsed.kms_blob, EncryptionContext=context, KeyId=self.config.key,
        ))  # fmt: skip
        data_key = SecretBytes.adopt(bytearray(opened["Plaintext"]))
        with data_key:
            try:
                plain = aead.decrypt(
                    data_key.reveal(), parsed.nonce, parsed.sealed, jcs.dumps(context)
                )
            except aead.DecryptionError:
                raise self.rejected() from None
        return SecretBytes.adopt(plain)

    def _health(self) -> KmsHealth:
        meta = self._aws("read the key", lambda: self._client.describe_key(KeyId=self.config.key))
        state = str(meta.get("KeyMetadata", {}).get("KeyState", "unknown"))
        return KmsHealth(state == "Enabled", f"{self.config.describe()}: key {state.lower()}")

    def _destroy(self) -> str:
        doing = "destroy the KMS key"
        self._aws(doing, lambda: self._client.disable_key(KeyId=self.config.key))
        self._aws(doing, lambda: self._client.schedule_key_deletion(
            KeyId=self.config.key, PendingWindowInDays=7,
        ))  # fmt: skip
        return (
            f"KMS key {self.config.key} disabled now and scheduled for deletion in 7 days (AWS's "
            "shortest wait): from now on no blob it wrapped opens."
        )


def provider_for(
    config: KmsConfig, *, token: SecretBytes | None, url: str | None = None
) -> KmsProvider:
    """The provider a vault header names. `token` is OpenBao's (ignored by AWS, whose
    credentials come from boto3's chain); `url` is where the operator says OpenBao is, given
    with the token (KEYSAFE_KMS_URL, or `init --kms-url`): the token is sent there and nowhere
    else. The header's URL is never trusted for that, because anyone who can write the database
    could point it at a listener of their own and collect the token (and with it, through the
    real OpenBao, the vault's key).

    Raises:
        MalformedRequestError: `local` (it has no provider object), OpenBao without a token or
            without the operator's URL, or a URL that is not https (or http on loopback).
    """
    if config.kind is KmsKind.OPENBAO:
        if token is None or not len(token):
            raise MalformedRequestError(
                "This vault's key is in OpenBao, and no token was given to reach it.",
                next_step="put the token in KEYSAFE_KMS_TOKEN, or its file in --kms-token-file "
                "(or KEYSAFE_KMS_TOKEN_FILE), and retry.",
            )
        if not url:
            raise MalformedRequestError(
                "keysafe sends the OpenBao token only to an address you give it with the "
                "token, never to one read from the vault's database.",
                next_step="set KEYSAFE_KMS_URL to your OpenBao's address (https://…, as given "
                "to `keysafe init --kms-url`), and retry.",
            )
        given = KmsConfig.build(str(KmsKind.OPENBAO), url=url, key=config.key)
        return OpenBaoTransit(given, token=token)
    if config.kind is KmsKind.AWS:
        return AwsKms(config)
    raise MalformedRequestError(
        "This vault is unlocked with its passphrase, not a KMS.",
        next_step="give the passphrase (KEYSAFE_PASSPHRASE, --passphrase-file or the prompt).",
    )
