"""What `keysafe doctor` reports (service/doctor.py): one finding per check, each with the one
thing to fix, and the report they make up.

A finding never holds a secret: a URL is shown only as scheme://host:port (`where`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import httpx
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)


class Status(StrEnum):
    OK = "ok"  # nothing to do
    WARN = "warn"  # works, but wants the owner's attention
    FAIL = "fail"  # does not work as it stands (the surfaces exit 1)


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result: what was found, and (unless ok) the one thing to do about it."""

    check: str  # home, vault, lock, server, rpc:NAME, blobs, kdf, unlock, pause-all, seals, audit
    status: Status
    summary: str
    fix: str | None = None


class Report(BaseModel):
    """Every check's finding for one keysafe home; `ok` unless one failed (warnings allowed)."""

    model_config = ConfigDict(frozen=True)

    home: str
    ok: bool
    findings: tuple[Finding, ...] = Field(serialization_alias="checks")

    @classmethod
    def of(cls, home: str, findings: Iterable[Finding]) -> Report:
        """The report of `findings`, in the order the checks ran."""
        found = tuple(findings)
        return cls(home=home, ok=all(f.status is not Status.FAIL for f in found), findings=found)


def where(url: str) -> str:
    """A URL as scheme://host[:port], the only part of it a finding may show (the path, query and
    user info of an RPC URL often hold an API key)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "(an unparseable URL)"
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}"
