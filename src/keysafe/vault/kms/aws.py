"""AWS KMS as a key provider: `GenerateDataKey` gives a fresh AES-256 data key and its KMS
ciphertext; the KEK is AEAD-sealed under that data key and the stored blob holds both. The
encryption context names the vault and purpose, so KMS itself refuses another vault's blob.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Final

from keysafe.crypto import aead, jcs
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError
from keysafe.vault.kms.base import TIMEOUT_S, KmsConfig, KmsHealth, KmsProvider

try:  # the [aws] extra: a keysafe without it still runs every other provider
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:  # pragma: no cover - the test environment has it
    boto3 = None


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
        return jcs.dumps(
            {
                "v": 1,
                "kms": base64.b64encode(self.kms_blob).decode(),
                "nonce": base64.b64encode(self.nonce).decode(),
                "sealed": base64.b64encode(self.sealed).decode(),
            }
        )

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
            "kms",
            endpoint_url=config.url,
            region_name=region or session.region_name or "us-east-1",
            config=botocore.config.Config(
                connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 2}
            ),
        )

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
        made = self._aws(
            "wrap the vault's key",
            lambda: self._client.generate_data_key(
                KeyId=self.config.key,
                KeySpec="AES_256",
                EncryptionContext=context,
            ),
        )
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
        opened = self._aws(
            "open the vault's key",
            lambda: self._client.decrypt(
                CiphertextBlob=parsed.kms_blob,
                EncryptionContext=context,
                KeyId=self.config.key,
            ),
        )
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
        self._aws(
            doing,
            lambda: self._client.schedule_key_deletion(
                KeyId=self.config.key,
                PendingWindowInDays=7,
            ),
        )
        return (
            f"KMS key {self.config.key} disabled now and scheduled for deletion in 7 days (AWS's "
            "shortest wait): from now on no blob it wrapped opens."
        )
