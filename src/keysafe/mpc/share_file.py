"""Encrypted files for the threshold shares that live outside the vault.

- The agent's share (identifier 1) sits beside the agent, encrypted under a key derived from the
  agent's token with HKDF-SHA256 (the token is 256 random bits; a slow KDF adds nothing).
- The recovery share (identifier 3) goes offline, encrypted under a recovery passphrase with
  Argon2id (64 MiB, t=3, p=4) — the same cost as the vault's own passphrase.

Both are XChaCha20-Poly1305 over the 32-byte share; every public field of the file (format,
wallet, identifier, the public key package, the KDF parameters) is the associated data, so an
edited file is refused, not silently used with another group key. Files are written 0600,
atomically (temp file, fsync, rename).
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any, Final

from keysafe import files
from keysafe.crypto import aead, jcs
from keysafe.crypto.kdf import DEFAULT_ARGON2, Argon2Params, argon2id, hkdf_sha256
from keysafe.crypto.secret import SecretBytes as SecretBytes  # re-exported for the agent side
from keysafe.errors import IntegrityError, MalformedRequestError, WrongPassphraseError
from keysafe.mpc.frost.keys import KeyPackage, PublicKeyPackage

FORMAT: Final = "keysafe-frost-share"
VERSION: Final = 1
_AGENT_INFO: Final = b"keysafe/frost/agent-share/v1"


def _header(wallet: str, vault_id: str, key: KeyPackage, kdf: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT, "version": VERSION, "wallet": wallet, "vault_id": vault_id,
        "identifier": key.identifier, "public": key.public.to_dict(), "kdf": kdf,
    }  # fmt: skip


def _seal(header: dict[str, Any], key: bytearray, share: KeyPackage) -> dict[str, Any]:
    nonce = aead.new_nonce()
    plain = bytearray(share.suite.serialize_scalar(share.signing_share))
    try:
        ct = aead.encrypt(key, nonce, plain, jcs.dumps(header))
    finally:
        plain[:] = bytes(len(plain))
        key[:] = bytes(len(key))
    return header | {
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ct).decode(),
    }


def _open(doc: dict[str, Any], key: bytearray, what: str) -> KeyPackage:
    header = {k: v for k, v in doc.items() if k not in ("nonce", "ciphertext")}
    try:
        nonce = base64.b64decode(doc["nonce"], validate=True)
        ct = base64.b64decode(doc["ciphertext"], validate=True)
        public = PublicKeyPackage.from_dict(doc["public"])
        identifier = int(doc["identifier"])
    except (KeyError, TypeError, ValueError):
        raise IntegrityError(
            f"The {what} is damaged (fields missing or malformed).",
            next_step="use an intact copy of the file.",
        ) from None
    try:
        plain = aead.decrypt(key, nonce, ct, jcs.dumps(header))
    except aead.DecryptionError:
        raise WrongPassphraseError(
            f"The {what} does not open with this key: wrong secret, or the file was edited.",
            next_step="check the token or passphrase, and that the file is the one written for "
            "this wallet.",
        ) from None
    finally:
        key[:] = bytes(len(key))
    try:
        share = public.suite.deserialize_scalar(bytes(plain), what="signing share")
    finally:
        plain[:] = bytes(len(plain))
    pkg = KeyPackage(identifier, share, public)
    if public.suite.base_mul(share) != public.verifying_shares.get(identifier):
        raise IntegrityError(
            f"The {what}'s share does not match its verifying share.",
            next_step="use the file written for this wallet.",
        )
    return pkg


def _agent_key(token: SecretBytes, salt: bytes) -> bytearray:
    return hkdf_sha256(token.reveal(), info=_AGENT_INFO, salt=salt)


def seal_agent_share(
    wallet: str, vault_id: str, share: KeyPackage, token: SecretBytes
) -> dict[str, Any]:
    salt = secrets.token_bytes(16)
    header = _header(wallet, vault_id, share, {"name": "hkdf-sha256", "salt": salt.hex()})
    return _seal(header, _agent_key(token, salt), share)


def open_agent_share(doc: dict[str, Any], token: SecretBytes) -> KeyPackage:
    _check_format(doc, "agent share file")
    salt = bytes.fromhex(str(doc["kdf"]["salt"]))
    return _open(doc, _agent_key(token, salt), "agent share file")


def seal_recovery_share(
    wallet: str, vault_id: str, share: KeyPackage, passphrase: SecretBytes,
    params: Argon2Params = DEFAULT_ARGON2,
) -> dict[str, Any]:  # fmt: skip
    salt = secrets.token_bytes(16)
    kdf = {"name": "argon2id", "salt": salt.hex(), **params.to_dict()}
    return _seal(
        _header(wallet, vault_id, share, kdf), argon2id(passphrase.reveal(), salt, params), share
    )


def open_recovery_share(doc: dict[str, Any], passphrase: SecretBytes) -> KeyPackage:
    _check_format(doc, "recovery file")
    kdf = doc["kdf"]
    try:
        params = Argon2Params.from_dict(
            {k: kdf[k] for k in ("memory_kib", "time_cost", "parallelism", "length")}
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedRequestError(
            f"The recovery file's key derivation settings are not usable ({exc}).",
            next_step="use the recovery file keysafe wrote; this one was altered.",
        ) from None
    key = argon2id(passphrase.reveal(), bytes.fromhex(str(kdf["salt"])), params)
    return _open(doc, key, "recovery file")


def _check_format(doc: Any, what: str) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise MalformedRequestError(
            f"That is not a keysafe {what} (format {FORMAT} v{VERSION}).",
            next_step="pass the file `keysafe wallet create … --threshold 2-of-3` wrote.",
        )


def write(path: Path, doc: dict[str, Any], *, replace: bool = False) -> None:
    """Write 0600 and atomically; never over an existing file unless `replace` (keysafe/files.py).

    Raises:
        AlreadyExistsError: the file exists and `replace` is False.
    """
    files.write_private(
        path, json.dumps(doc, indent=2).encode("utf-8"), replace=replace, what="share file"
    )


def read(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MalformedRequestError(f"No {what} at {path}.", next_step="check the path.") from None
    except (OSError, ValueError):
        raise MalformedRequestError(
            f"{path} is not a readable {what}.", next_step="check the path and the file."
        ) from None
    _check_format(doc, what)
    return dict(doc)
