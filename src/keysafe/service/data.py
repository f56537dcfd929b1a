"""Personal data records (JSON or text): standard ones agents may read under policy, sensitive
ones only with the owner's approval."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError
from keysafe.service.models import DataClass, RecordKind, check_name
from keysafe.vault.records import integrity_failure
from keysafe.vault.vault import RecordInfo, Vault

logger = logging.getLogger(__name__)

MAX_DATA_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DataView:
    name: str
    data_class: str
    format: str
    fields: list[str]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, info: RecordInfo) -> DataView:
        try:
            fmt, fields = str(info.meta["format"]), list(info.meta.get("fields", []))
        except (KeyError, TypeError, ValueError):
            raise integrity_failure(info.ref) from None
        return cls(info.name, info.data_class, fmt, fields, info.created_at, info.updated_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "class": self.data_class, "format": self.format,
            "fields": self.fields, "created_at": self.created_at, "updated_at": self.updated_at,
        }  # fmt: skip


def set_data(vault: Vault, name: str, value: SecretBytes, *, data_class: DataClass) -> DataView:
    check_name(name, "data")
    if data_class is DataClass.CRITICAL:
        raise MalformedRequestError(
            "Personal data can be 'standard' or 'sensitive'; 'critical' is kept for wallet keys "
            "and recovery material.",
            next_step="use --class sensitive for data only the owner may release.",
        )
    if len(value) > MAX_DATA_BYTES:
        raise MalformedRequestError("The value is over 1 MiB.", next_step="store a smaller value.")
    fmt, fields = "text", []
    try:
        parsed = json.loads(bytes(value.reveal()))
    except (ValueError, UnicodeDecodeError):
        parsed = None
    else:
        fmt = "json"
        if isinstance(parsed, dict):
            # Field names (not values) are public so policies can grant single fields.
            fields = sorted(str(k) for k in parsed)
    del parsed
    with vault.db.write() as conn:
        info = vault.put_record(
            conn, kind=RecordKind.DATA, name=name, data_class=data_class,
            meta={"format": fmt, "fields": fields}, plaintext=value, replace=True,
        )  # fmt: skip
        vault.audit(
            conn, actor="owner", action="data.set", target=f"data:{name}", outcome="success",
            details={"name": name, "class": str(data_class), "format": fmt,
                     "version": info.version},
        )  # fmt: skip
    logger.info("data %s stored (version %d)", name, info.version)
    return DataView.of(info)


def list_data(vault: Vault) -> list[DataView]:
    with vault.db.read() as conn:
        return [DataView.of(i) for i in vault.list_records(conn, RecordKind.DATA)]


def remove_data(vault: Vault, name: str) -> None:
    vault.remove_record(RecordKind.DATA, name)
    logger.info("data %s removed", name)
