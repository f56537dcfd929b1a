"""A sealed record's value handed to an agent through the gate: a data read, a credential release.

Rules this module enforces:
- The record is opened only inside the gate's act, after the policy (and, where the gate asks,
  the owner) allowed it; a parked request has opened nothing.
- While the owner decides, the answer is the approval alone (`pending_answer`): nothing of the
  record, not even its name, beyond what the approval's summary says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from keysafe.service import gate
from keysafe.service.models import pending_answer
from keysafe.vault.records import RecordInfo
from keysafe.vault.vault import Vault

R = TypeVar("R")

_PENDING_FIELDS = ("approval_id", "expires_at", "summary")


class MaybePending(BaseModel):
    """A gated result: done (`status` says how), or waiting for the owner's approval, when
    its wire form is only the approval (`pending_answer`)."""

    model_config = ConfigDict(frozen=True)

    status: str
    approval_id: str | None = None
    expires_at: str | None = None
    summary: str = ""

    @property
    def pending(self) -> bool:
        return self.status == "pending_approval"

    @model_serializer(mode="wrap")
    def _wire(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        if self.pending:
            return pending_answer(self.approval_id, self.expires_at, self.summary)
        done: dict[str, Any] = handler(self)
        for name in _PENDING_FIELDS:
            done.pop(name, None)
        return done


def open_through_gate(
    vault: Vault,
    req: gate.Request,
    info: RecordInfo,
    codec: gate.Codec[R],
    *,
    done: Callable[[str], R],
    parked: Callable[[gate.Pending], R],
) -> R:
    """Run `req` through the gate; its act opens record `info` and hands its text to `done`.
    A request parked for the owner answers `parked` with the approval.

    Raises:
        PolicyDeniedError: the policy denies it (or the owner did).
        VaultLockedError: the vault is locked.
    """

    def act(_request_id: str) -> R:
        with vault.db.read() as conn, vault.open_record(conn, info) as plain:
            text = bytes(plain.reveal()).decode("utf-8", "replace")
        return done(text)

    out = gate.run(vault, req, act, codec)
    if isinstance(out, gate.Parked):
        return parked(out.pending())
    return out
