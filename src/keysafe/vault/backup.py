"""The backup file format: everything in the vault, encrypted under a key from the master key.

    KEYSAFE-BACKUP-1\n
    <header: canonical JSON, one line>\n
    <24-byte nonce><XChaCha20-Poly1305 ciphertext ‖ tag>

The header (format, vault id, creation time, counts) is the AEAD's associated data, so it cannot
be edited either. The payload holds the vault header's public fields, the wrapped epoch keys,
every record row (still envelope-encrypted, so secrets are encrypted twice) and the audit log.
Only the holder of the master key (passphrase or recovery phrase) can open it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from keysafe.crypto import aead, jcs
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, MalformedRequestError

MAGIC: Final = b"KEYSAFE-BACKUP-1\n"
FORMAT: Final = 1
MAX_HEADER: Final = 4096


@dataclass(frozen=True, slots=True)
class BackupHeader:
    vault_id: str
    created_at: str
    records: int
    entries: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "vault_id": self.vault_id, "created_at": self.created_at,
            "records": self.records, "entries": self.entries, "cipher": "xchacha20poly1305",
        }  # fmt: skip


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
        header = BackupHeader(
            str(d["vault_id"]), str(d["created_at"]), int(d["records"]), int(d["entries"])
        )
        fmt = int(d["format"])
    except (ValueError, KeyError, TypeError):
        raise _not_a_backup("its header is unreadable") from None
    if fmt != FORMAT:
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
