"""What `keysafe doctor` reports (service/doctor.py): one finding per check, each with the one
thing to fix, and the report they make up.

A finding never holds a secret: a URL is shown only as scheme://host:port (`where`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

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

    def to_dict(self) -> dict[str, str | None]:
        return {
            "check": self.check,
            "status": str(self.status),
            "summary": self.summary,
            "fix": self.fix,
        }


@dataclass(frozen=True, slots=True)
class Report:
    home: str
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(f.status is not Status.FAIL for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"home": self.home, "ok": self.ok, "checks": [f.to_dict() for f in self.findings]}


def where(url: str) -> str:
    """A URL as scheme://host[:port], the only part of it a finding may show (the path, query and
    user info of an RPC URL often hold an API key)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "(an unparseable URL)"
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}"
