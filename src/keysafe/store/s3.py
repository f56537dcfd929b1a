"""An S3 bucket (or an S3-compatible server) as a plain object store: put, get, list versions,
delete versions. The only module that imports boto3.

Rules this module enforces:
- Every boto3/botocore failure leaves here as a KeysafeError that says what to do next: an
  endpoint that does not answer is STORE_ERROR "unreachable", missing credentials or a refused
  request are STORE_ERROR naming the S3 error code. A missing object is not an error here
  (`get` answers None); what it means is the caller's to say.
- Credentials come from boto3's own chain (environment, `~/.aws/config`, instance roles); they
  are never taken as arguments, stored or printed.
- Timeouts are short and retries few: a request waits on this store while the vault holds its
  write lock, so a dead endpoint must fail in seconds, not minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from keysafe.errors import StoreError

try:
    # boto3 is the optional extra `keysafe[aws]`: a vault that keeps its ciphertext in SQLite
    # must not need it installed, so its absence is reported when an S3 store is used (below),
    # not at import time. (Untyped: pyproject.toml lets mypy skip them.)
    import boto3
    from botocore import exceptions as boto_errors
    from botocore.config import Config
except ImportError:  # pragma: no cover - exercised only without the extra
    boto3 = None

logger = logging.getLogger(__name__)

# S3 error codes that mean "there is no such object (or version)".
_MISSING: Final = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound", "InvalidArgument"})
_DELETE_BATCH: Final = 1000  # DeleteObjects takes at most 1000 keys


class S3Objects:
    """One bucket, reached at `endpoint` (None: AWS itself)."""

    def __init__(self, bucket: str, *, endpoint: str | None) -> None:
        if boto3 is None:
            raise StoreError(
                "This vault keeps its record ciphertext in S3, but boto3 (the AWS SDK) is not "
                "installed here.",
                next_step="install it with `pip install 'keysafe[aws]'`, then retry.",
            )
        self.bucket = bucket
        self.endpoint = endpoint
        config = Config(
            connect_timeout=5, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"}
        )
        with self._call("connect to"):
            self._client: Any = boto3.session.Session().client(
                "s3", endpoint_url=endpoint, config=config
            )

    @property
    def where(self) -> str:
        """The store as a person would name it (never with a credential)."""
        return f"s3://{self.bucket}" + (f" ({self.endpoint})" if self.endpoint else "")

    def check(self) -> None:
        """Is the bucket there and ours to use?

        Raises:
            StoreError: unreachable, no credentials, no such bucket, or access denied.
        """
        with self._call("reach"):
            self._client.head_bucket(Bucket=self.bucket)

    def put(self, key: str, body: bytes) -> str | None:
        """Store `body` at `key`; returns the new version's id (None: the bucket keeps none)."""
        with self._call("write to"):
            answer = self._client.put_object(Bucket=self.bucket, Key=key, Body=body)
        version = answer.get("VersionId")
        # A bucket that never had versioning answers "null" (or nothing): there is one version.
        return None if version in (None, "", "null") else str(version)

    def get(self, key: str, version: str | None) -> bytes | None:
        """The bytes at `key` (that version, if given), or None when there are none."""
        kwargs: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if version is not None:
            kwargs["VersionId"] = version
        with self._call("read from"):
            try:
                answer = self._client.get_object(**kwargs)
                body: bytes = answer["Body"].read()
            except boto_errors.ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
        return body

    def versions(self, prefix: str) -> list[tuple[str, str]]:
        """Every (key, version id) under `prefix`: object versions and delete markers alike (a
        bucket without versions lists each object once, as version "null")."""
        found: list[tuple[str, str]] = []
        with self._call("list"):
            pages = self._client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    found.append((str(item["Key"]), str(item.get("VersionId") or "null")))
        return found

    def delete_versions(self, items: list[tuple[str, str]]) -> None:
        """Delete these exact versions (not a delete marker on top: the bytes go)."""
        for start in range(0, len(items), _DELETE_BATCH):
            batch = [{"Key": k, "VersionId": v} for k, v in items[start : start + _DELETE_BATCH]]
            with self._call("delete from"):
                answer = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            failed = answer.get("Errors") or []
            if failed:
                first = failed[0]
                raise StoreError(
                    f"The blob store at {self.where} refused to delete {len(failed)} object "
                    f"versions (S3 error {first.get('Code', '?')} on {first.get('Key', '?')}).",
                    next_step="let keysafe's credentials delete object versions "
                    "(s3:DeleteObjectVersion) and lift any object lock, then run "
                    "`keysafe rotate` again.",
                    bucket=self.bucket,
                )

    @contextmanager
    def _call(self, verb: str) -> Iterator[None]:
        """Map boto3's failures to what a person can act on (never a traceback)."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            raise self._translate(exc, verb) from None

    def _translate(self, exc: Exception, verb: str) -> StoreError:
        where = self.where
        if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
            return StoreError(
                f"keysafe found no AWS credentials to {verb} the blob store at {where}.",
                next_step="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or "
                "an instance role) for the user running keysafe, then retry.",
                bucket=self.bucket,
            )
        if isinstance(exc, boto_errors.ClientError):
            code = _code(exc)
            logger.warning("S3 %s %s failed: %s", verb, where, code)
            return StoreError(
                f"The blob store at {where} refused to let keysafe {verb} it (S3 error {code}).",
                next_step=_CLIENT_NEXT.get(
                    code, "check the bucket's name, region and access policy, then retry."
                ),
                bucket=self.bucket,
                s3_error=code,
            )
        if isinstance(exc, boto_errors.BotoCoreError):
            # Connection refused, DNS, timeouts, TLS: the store did not answer. Nothing was
            # committed: the caller's transaction is rolled back with this error.
            logger.warning("S3 %s %s failed: %s", verb, where, type(exc).__name__)
            return StoreError(
                f"The blob store at {where} is unreachable ({type(exc).__name__}), so keysafe "
                "could not read or write record ciphertext; nothing was changed.",
                next_step="check the network and the endpoint (`--blobs-endpoint`), or that the "
                "S3-compatible server is running, then retry.",
                bucket=self.bucket,
            )
        raise exc  # a bug of ours, not the store's: the surfaces report it as INTERNAL


_CLIENT_NEXT: Final = {
    "NoSuchBucket": "create the bucket (with versioning on), or fix the name in the vault's "
    "`--blobs` setting.",
    "AccessDenied": "let keysafe's AWS identity get, put, list and delete objects and their "
    "versions under the vault's prefix, then retry.",
    "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID / the AWS profile keysafe runs with.",
    "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY / the AWS profile keysafe runs with.",
    "403": "let keysafe's AWS identity use the bucket (its access policy), then retry.",
    "404": "create the bucket (with versioning on), or fix the name in the vault's `--blobs` "
    "setting.",
}


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))
