"""Personal data records (JSON or text): standard ones agents may read under policy, sensitive
ones only with the owner's approval."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keysafe.approvals import Kind
from keysafe.crypto import jcs
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError
from keysafe.policy.intent import Intent
from keysafe.service import gate
from keysafe.service.gated_value import MaybePending, open_through_gate
from keysafe.service.models import (
    DataClass,
    ReadDataRequest,
    RecordKind,
    check_name,
)
from keysafe.service.record_meta import DataMeta, data_meta, record_stamps
from keysafe.service.record_writes import put_audited
from keysafe.vault.records import RecordInfo
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

MAX_DATA_BYTES = 1024 * 1024


class DataView(BaseModel):
    """A data record as the owner sees it: its class, format and field names, never its value."""

    # `class` on the wire, a Python keyword: the field is `data_class` in code.
    model_config = ConfigDict(
        frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    name: str
    data_class: str = Field(alias="class")
    format: str
    fields: list[str]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, info: RecordInfo) -> DataView:
        meta = data_meta(info)
        return cls(
            data_class=info.data_class,
            format=meta.format,
            fields=meta.fields,
            **record_stamps(info),
        )


def set_data(vault: Vault, name: str, value: SecretBytes, *, data_class: DataClass) -> DataView:
    """Store (or replace) a piece of the owner's data, standard or sensitive, for agents to
    read as the policy allows; audited.

    Raises:
        MalformedRequestError: a bad name, the `critical` class, or a value over 1 MiB.
        VaultLockedError: the vault is locked.
    """
    check_name(name, "data")
    if data_class is DataClass.CRITICAL:
        raise MalformedRequestError(
            "Personal data can be 'standard' or 'sensitive'; 'critical' is kept for wallet keys "
            "and recovery material.",
            next_step="use --class sensitive for data only the owner may release.",
        )
    if len(value) > MAX_DATA_BYTES:
        raise MalformedRequestError("The value is over 1 MiB.", next_step="store a smaller value.")
    fmt: Literal["text", "json"] = "text"
    fields: list[str] = []
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
        info = put_audited(
            vault,
            conn,
            kind=RecordKind.DATA,
            name=name,
            data_class=data_class,
            meta=DataMeta(format=fmt, fields=fields).stored(),
            plaintext=value,
            replace=True,
            action="data.set",
            details=lambda made: {
                "name": name,
                "class": str(data_class),
                "format": fmt,
                "version": made.version,
            },
        )
    logger.info("data %s stored (version %d)", name, info.version)
    return DataView.of(info)


def list_data(vault: Vault) -> list[DataView]:
    """Every data record's name, class and version (never its value)."""
    with vault.db.read() as conn:
        return [DataView.of(i) for i in vault.list_records(conn, RecordKind.DATA)]


def remove_data(vault: Vault, name: str) -> None:
    """Remove a data record; audited.

    Raises:
        NotFoundError: no data record has that name.
    """
    vault.remove_record(RecordKind.DATA, name)
    logger.info("data %s removed", name)


class ReadResult(MaybePending):
    """An agent's read of a data record: its value (`status` "value"), or the approval the
    owner must give first ("pending_approval")."""

    name: str
    # Kept out of repr: a result that reaches a log line or a traceback shows no secret.
    value: Any = Field(default=None, repr=False)


def _read_facts(r: ReadResult) -> dict[str, Any]:
    return {"name": r.name}


# A value is never stored by the gate: reads carry no idempotency key, and an approved read is
# produced when the agent collects it (service/approvals.py).
_CODEC: gate.Codec[ReadResult] = gate.Codec(
    dump=lambda r: {"status": r.status, "name": r.name},
    load=lambda d: ReadResult(status=str(d["status"]), name=str(d["name"])),
    facts=_read_facts,
    view=lambda r: {"status": r.status, "name": r.name},
)


def read_data(
    vault: Vault,
    agent: str,
    name: str,
    *,
    fields: list[str] | None = None,
    approval_id: str | None = None,
    dry_run: bool = False,
) -> ReadResult:
    """An agent reads a data record under its policy (`data.read`). A sensitive record is
    released only with the owner's approval, even when a rule allows reading it."""
    vault.require_unlocked()
    with vault.db.read() as conn:
        info = vault.get_record(conn, RecordKind.DATA, name)
    meta = data_meta(info)
    wanted = sorted(set(fields)) if fields else None
    if wanted:
        unknown = [f for f in wanted if f not in meta.fields]
        if unknown:
            raise MalformedRequestError(
                f"Data '{name}' has no field '{unknown[0][:40]}'.",
                next_step="see the fields in /v1/agent/capabilities.",
            )
    sensitive = info.data_class == DataClass.SENSITIVE
    what = f"read {name}" + (f" (fields {', '.join(wanted)})" if wanted else "")
    intent = Intent.data_read(
        data=name,
        fields=wanted,
        summary=what + (" — sensitive" if sensitive else ""),
    )
    req = gate.Request(
        agent=agent,
        kind=Kind.READ_DATA,
        wire=ReadDataRequest(name=name, fields=wanted),
        intent=intent,
        payload=jcs.dumps({"name": name, "fields": wanted}),
        target=f"data:{name}",
        audit_action="data.read",
        approval_id=approval_id,
        always_ask=sensitive,
        facts={"name": name, "fields": wanted},
        dry_run=dry_run,
    )

    def value_of(text: str) -> ReadResult:
        value: Any = json.loads(text) if meta.format == "json" else text
        if wanted and isinstance(value, dict):
            value = {k: value[k] for k in wanted if k in value}
        return ReadResult(status="value", name=name, value=value)

    return open_through_gate(
        vault,
        req,
        info,
        _CODEC,
        done=value_of,
        parked=lambda pending: ReadResult(status="pending_approval", name=name, **pending),
    )
