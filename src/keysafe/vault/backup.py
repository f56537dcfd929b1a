"""The backup file format: everything in the vault, encrypted under a key of its epoch.

    KEYSAFE-BACKUP-1\n
    <header: canonical JSON, one line>\n
    <24-byte nonce><XChaCha20-Poly1305 ciphertext ‖ tag>

The header (format, vault id, creation time, counts) is the AEAD's associated data, so it cannot
be edited either. The payload holds the vault header's public fields, the sealed epoch keys,
every record row (still envelope-encrypted, so secrets are encrypted twice) and the audit log.

Format 2 (forward secrecy, issue 18): the key is HKDF of the epoch key current when the backup
was made, and the header carries that epoch key sealed to the recovery phrase's key. So the
vault opens its backup while that epoch lives; after a rotation destroyed it, only the recovery
phrase does (a lost vault is rebuilt from a backup with its phrase). The master key never opens
it. Format 1 (before): a key of the master key; still read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from keysafe.crypto import aead, jcs
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, MalformedRequestError

MAGIC: Final = b"KEYSAFE-BACKUP-1\n"
FORMAT: Final = 2
MAX_HEADER: Final = 4096


@dataclass(frozen=True, slots=True)
class BackupHeader:
    vault_id: str
    created_at: str
    records: int
    entries: int
    epoch: int | None = None  # format 2: the epoch whose key the backup key comes from
    sealed_epoch: str | None = None  # format 2: that key sealed to the phrase's key (hex)

    @property
    def format(self) -> int:
        return 1 if self.epoch is None else FORMAT

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "vault_id": self.vault_id,
            "created_at": self.created_at,
            "records": self.records,
            "entries": self.entries,
            "cipher": "xchacha20poly1305",
        }
        if self.epoch is not None:
            out |= {"epoch": self.epoch, "sealed_epoch": self.sealed_epoch}
        return out


def seal_backup(key: SecretBytes, header: BackupHeader, payload: dict[str, Any]) -> bytes:
    head = jcs.dumps(header.to_dict())
    nonce = aead.new_nonce()
    body = aead.encrypt(key.reveal(), nonce, json.dumps(payload).encode(), MAGIC + head)
    return MAGIC + head + b"\n" + nonce + body


def _not_a_backup(why: str) -> MalformedRequestError:
    return MalformedRequestError(
        f"This file is not a keysafe backup ({why}).",
        next_step="check the path; backups are written by `keysafe backup create FILE`.",
    )


def read_header(blob: bytes) -> tuple[BackupHeader, bytes, bytes]:
    if not blob.startswith(MAGIC):
        raise _not_a_backup("it does not start with the keysafe backup marker")
    rest = blob[len(MAGIC) :]
    end = rest.find(b"\n", 0, MAX_HEADER)
    if end < 0:
        raise _not_a_backup("its header is missing or too long")
    head = rest[:end]
    try:
        d = json.loads(head)
        fmt = int(d["format"])
        header = BackupHeader(
            str(d["vault_id"]),
            str(d["created_at"]),
            int(d["records"]),
            int(d["entries"]),
            int(d["epoch"]) if fmt == 2 else None,
            str(d["sealed_epoch"]) if fmt == 2 else None,
        )
        if fmt == 2:
            bytes.fromhex(header.sealed_epoch or "")
    except (ValueError, KeyError, TypeError):
        raise _not_a_backup("its header is unreadable") from None
    if fmt not in (1, FORMAT):
        raise _not_a_backup(f"format {fmt} is not supported by this keysafe")
    return header, head, rest[end + 1 :]


def open_backup(key: SecretBytes, blob: bytes) -> tuple[BackupHeader, dict[str, Any]]:
    header, head, body = read_header(blob)
    if len(body) < aead.NONCE_SIZE + aead.TAG_SIZE:
        raise _tampered()
    try:
        plain = aead.decrypt(
            key.reveal(), body[: aead.NONCE_SIZE], body[aead.NONCE_SIZE :], MAGIC + head
        )
    except aead.DecryptionError:
        raise _tampered() from None
    with SecretBytes.adopt(plain) as p:
        payload = json.loads(bytes(p.reveal()))
    if not isinstance(payload, dict):
        raise _tampered()
    return header, payload


def _tampered() -> IntegrityError:
    return IntegrityError(
        "The backup does not open with this vault's key: it was altered or truncated, or it "
        "belongs to another vault.",
        next_step="use an intact copy of the backup made from this vault.",
    )
