"""Encrypted files for the threshold shares that live outside the vault.

- The agent's share (identifier 1) sits beside the agent, encrypted under a key only the agent
  holds (`KEYSAFE_AGENT_SHARE_KEY`, Argon2id): never its bearer token, which the vault sees on
  every request, so a compromised vault that can read the file still cannot open it. Files
  from before (key from the token with HKDF-SHA256) still open with the token.
- The recovery share (identifier 3) goes offline, encrypted under a recovery passphrase with
  Argon2id (64 MiB, t=3, p=4) — the same cost as the vault's own passphrase.

Both are XChaCha20-Poly1305 over the 32-byte share, followed for a secp256k1 (DKLs23) wallet by
the party's pair states for its two peers (`mpc/dkls/setup.py`); every public field of the file
(format, wallet, identifier, the public key package, the KDF parameters) is the associated data, so
an edited file is refused, not silently used with another group key. Files are written 0600,
atomically (temp file, fsync, rename).
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from keysafe import files
from keysafe.crypto import aead, jcs
from keysafe.crypto.kdf import DEFAULT_ARGON2, Argon2Params, argon2id, hkdf_sha256
from keysafe.crypto.secret import SecretBytes as SecretBytes  # re-exported for the agent side
from keysafe.errors import IntegrityError, MalformedRequestError, WrongPassphraseError
from keysafe.mpc.dkls.setup import PAIR_STATE_LEN, PairState
from keysafe.mpc.frost.groups import SECP256K1
from keysafe.mpc.frost.keys import KeyPackage, PublicKeyPackage

FORMAT: Final = "keysafe-frost-share"
VERSION: Final = 1
_AGENT_INFO: Final = b"keysafe/frost/agent-share/v1"


@dataclass(frozen=True, slots=True)
class Share:
    """One party's whole secret for a 2-of-3 wallet: its key package and, for a secp256k1
    (DKLs23) wallet, its pair state with each peer by the peer's identifier."""

    key: KeyPackage
    pairs: dict[int, PairState] = field(default_factory=dict)
    origin: Path | None = None  # the file it was read from, when the reader says so

    def __repr__(self) -> str:
        return f"Share(identifier={self.key.identifier}, peers={sorted(self.pairs)})"

    def secret_bytes(self) -> bytearray:
        """share ‖ pair states in peer order: what the file (or the vault record) encrypts."""
        out = bytearray(self.key.suite.serialize_scalar(self.key.signing_share))
        for peer in sorted(self.pairs):
            out += self.pairs[peer].to_bytes()
        return out

    @classmethod
    def from_secret_bytes(cls, plain: bytes, identifier: int, public: PublicKeyPackage) -> Share:
        """Raises:
        IntegrityError: wrong length, a pair state for another party or key, or a share
            that does not match its verifying share."""
        suite = public.suite
        n = suite.scalar_len
        want = n + (2 * PAIR_STATE_LEN if suite is SECP256K1 else 0)
        if len(plain) != want:
            raise IntegrityError(
                "The share material has the wrong length.", next_step="use an intact copy."
            )
        key = KeyPackage(identifier, suite.deserialize_scalar(plain[:n], what="share"), public)
        pairs: dict[int, PairState] = {}
        for at in range(n, len(plain), PAIR_STATE_LEN):
            state = PairState.from_bytes(bytes(plain[at : at + PAIR_STATE_LEN]))
            if state.me != identifier or state.public_key != public.group_public_key:
                raise IntegrityError(
                    "A pair state belongs to another party or wallet.",
                    next_step="use the file written for this wallet.",
                )
            pairs[state.peer] = state
        if suite.base_mul(key.signing_share) != public.verifying_shares.get(identifier):
            raise IntegrityError(
                "The share does not match its verifying share.",
                next_step="use the file written for this wallet.",
            )
        return cls(key, pairs)


def _header(wallet: str, vault_id: str, key: KeyPackage, kdf: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "wallet": wallet,
        "vault_id": vault_id,
        "identifier": key.identifier,
        "public": key.public.to_dict(),
        "kdf": kdf,
    }


def _seal(header: dict[str, Any], key: bytearray, share: Share) -> dict[str, Any]:
    nonce = aead.new_nonce()
    plain = share.secret_bytes()
    try:
        ct = aead.encrypt(key, nonce, plain, jcs.dumps(header))
    finally:
        plain[:] = bytes(len(plain))
        key[:] = bytes(len(key))
    return header | {
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ct).decode(),
    }


def _open(doc: dict[str, Any], key: bytearray, what: str) -> Share:
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
        return Share.from_secret_bytes(bytes(plain), identifier, public)
    except IntegrityError as exc:
        raise IntegrityError(
            f"The {what} is damaged or not this wallet's: {exc.what}",
            next_step="use the file written for this wallet.",
        ) from None
    finally:
        plain[:] = bytes(len(plain))


def _agent_key(token: SecretBytes, salt: bytes) -> bytearray:
    return hkdf_sha256(token.reveal(), info=_AGENT_INFO, salt=salt)


def seal_share(
    wallet: str,
    vault_id: str,
    share: Share,
    secret: SecretBytes,
    params: Argon2Params = DEFAULT_ARGON2,
) -> dict[str, Any]:
    """`share`'s file, under Argon2id(`secret`) with a fresh salt. The two files differ only
    in the secret, so one function seals both under the names of their roles below."""
    salt = secrets.token_bytes(16)
    kdf = {"name": "argon2id", "salt": salt.hex(), **params.to_dict()}
    key = argon2id(secret.reveal(), salt, params)
    return _seal(_header(wallet, vault_id, share.key, kdf), key, share)


seal_agent_share = seal_share  # the agent's share file, under the agent's share key
seal_recovery_share = seal_share  # the recovery party's file, under the owner's passphrase


def agent_share_needs_key(doc: dict[str, Any]) -> bool:
    """True when the file opens with the agent's share key; False for a file from before it,
    which opens with the agent's token."""
    return isinstance(doc.get("kdf"), dict) and doc["kdf"].get("name") != "hkdf-sha256"


def open_agent_share(doc: dict[str, Any], secret: SecretBytes) -> Share:
    """Open with the agent's share key (or, for a file from before it, the agent's token)."""
    _check_format(doc, "agent share file")
    if not agent_share_needs_key(doc):
        salt = bytes.fromhex(str(doc["kdf"]["salt"]))
        return _open(doc, _agent_key(secret, salt), "agent share file")
    return _open(doc, _argon2_key(doc, secret, "agent share file"), "agent share file")


def _argon2_key(doc: dict[str, Any], secret: SecretBytes, what: str) -> bytearray:
    kdf = doc["kdf"]
    try:
        params = Argon2Params.from_dict(
            {k: kdf[k] for k in ("memory_kib", "time_cost", "parallelism", "length")}
        )
        salt = bytes.fromhex(str(kdf["salt"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedRequestError(
            f"The {what}'s key derivation settings are not usable ({exc}).",
            next_step=f"use the {what} keysafe wrote; this one was altered.",
        ) from None
    return argon2id(secret.reveal(), salt, params)


def open_recovery_share(doc: dict[str, Any], passphrase: SecretBytes) -> Share:
    _check_format(doc, "recovery file")
    return _open(doc, _argon2_key(doc, passphrase, "recovery file"), "recovery file")


def _check_format(doc: Any, what: str) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise MalformedRequestError(
            f"That is not a keysafe {what} (format {FORMAT} v{VERSION}).",
            next_step="pass the file `keysafe wallet create … --threshold 2-of-3` wrote.",
        )


def ban_marker(path: Path) -> Path:
    """The file beside an agent share file that says the vault failed a DKLs23 check with it:
    that share never signs with the vault again (a reshare's new share replaces both)."""
    return path.with_name(path.name + ".banned")


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
