"""OpenBao (or HashiCorp Vault) transit as a key provider: the KEK is sent to
`POST /v1/transit/encrypt/<key>` and the ciphertext (`vault:vN:…`) is stored; unwrapping calls
`/decrypt`. The transit key never leaves the KMS. The token goes only to the operator's URL.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import httpx

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import map_exceptions
from keysafe.vault.kms.base import TIMEOUT_S, KmsConfig, KmsHealth, KmsProvider


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
            with map_exceptions({httpx.HTTPError: lambda _: self.unreachable(doing)}):
                r = self._http.request(method, f"{self._base}/{path}", json=body, headers=headers)
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
                f"decrypt/{self._key}",
                {"ciphertext": blob.decode("ascii", "replace")},
                "open the vault's key",
            )
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
