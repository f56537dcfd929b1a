"""Key providers: what wraps the vault's key-encryption key (see kms/base.py for the rules).

    provider = kms.provider_for(config, token=tok, url=operators_url)  # never the header's URL
    blob = provider.wrap(kek, context=kms.context_for(vault_id, provider.config))

The interface and the header's settings are in base.py; one module per provider (openbao.py,
aws.py); `provider_for` picks one.
"""

from __future__ import annotations

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError
from keysafe.vault.kms.aws import AwsKms
from keysafe.vault.kms.base import (
    TIMEOUT_S,
    KmsConfig,
    KmsHealth,
    KmsKind,
    KmsProvider,
    KmsReason,
    context_for,
    not_a_kms_vault,
)
from keysafe.vault.kms.openbao import OpenBaoTransit

__all__ = [
    "TIMEOUT_S",
    "AwsKms",
    "KmsConfig",
    "KmsHealth",
    "KmsKind",
    "KmsProvider",
    "KmsReason",
    "OpenBaoTransit",
    "context_for",
    "not_a_kms_vault",
    "provider_for",
]


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
    raise not_a_kms_vault()
