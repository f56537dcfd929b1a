"""The owner's side of approvals, and the one executor that runs an approved request.

Rules this module enforces (the storage rules are in keysafe/approvals):
- Only the owner decides: the surfaces (HTTP owner routes, CLI) authenticate the owner before
  calling approve/deny/revoke_grant; agent credentials never reach these functions.
- Approving runs the parked request again exactly as it was sent, through the gate, with
  `approved=True`: the asks are satisfied, every deny and limit still holds at that moment. The
  parked JSON is validated again as its kind's wire model before it runs; a kind dispatches
  through one table, so every kind runs the same way.
- A value (a data read, a credential release) is produced when the asking agent collects it,
  once, and never stored in the approvals table.
- "Approve for a while" writes a grant bound to the shape of the request the owner saw.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import update

from keysafe import approvals as store
from keysafe.approvals import (
    DELIVERED_ON_COLLECT,
    MAX_GRANT_S,
    Approval,
    Grant,
    Kind,
    Status,
    shape_of,
)
from keysafe.errors import KeysafeError, MalformedRequestError
from keysafe.policy.intent import Intent
from keysafe.service import data, proxy, release, signing
from keysafe.service.models import (
    HttpRequestRequest,
    ReadDataRequest,
    ReleaseRequest,
    SignMessageRequest,
    SignTransactionRequest,
    SignTypedDataRequest,
)
from keysafe.store import tables as t
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

__all__ = [
    "DELIVERED_ON_COLLECT",
    "MAX_GRANT_S",
    "Approval",
    "Grant",
    "Kind",
    "Status",
    "agent_view",
    "approve",
    "deny",
    "get",
    "list_approvals",
    "list_grants",
    "revoke_grant",
]


# -- the executor ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    wire: type[BaseModel]
    run: Callable[[Vault, Approval, Any], dict[str, Any]]


def _sign_tx(send: bool) -> Callable[[Vault, Approval, Any], dict[str, Any]]:
    def run(vault: Vault, a: Approval, r: SignTransactionRequest) -> dict[str, Any]:
        return signing.sign_transaction(
            vault, a.agent, r.wallet, r.transaction, chain=r.chain, description=r.description,
            declared=r.declared, broadcast=send, approval_id=a.id, threshold=r.threshold,
        ).to_dict()  # fmt: skip

    return run


def _sign_message(vault: Vault, a: Approval, r: SignMessageRequest) -> dict[str, Any]:
    return signing.sign_message(
        vault, a.agent, r.wallet, r.message, encoding=r.encoding, approval_id=a.id,
        threshold=r.threshold,
    ).to_dict()  # fmt: skip


def _sign_typed(vault: Vault, a: Approval, r: SignTypedDataRequest) -> dict[str, Any]:
    return signing.sign_typed_data(
        vault, a.agent, r.wallet, r.typed_data, approval_id=a.id
    ).to_dict()


def _http(vault: Vault, a: Approval, r: HttpRequestRequest) -> dict[str, Any]:
    return proxy.http_request(
        vault, a.agent, r.credential, r.method, r.url, headers=r.headers, body=r.body,
        approval_id=a.id,
    ).to_dict()  # fmt: skip


def _read(vault: Vault, a: Approval, r: ReadDataRequest) -> dict[str, Any]:
    return data.read_data(vault, a.agent, r.name, fields=r.fields, approval_id=a.id).to_dict()


def _release(vault: Vault, a: Approval, r: ReleaseRequest) -> dict[str, Any]:
    return release.release(
        vault, a.agent, r.credential, purpose=r.purpose or "", approval_id=a.id
    ).to_dict()


_EXECUTORS: dict[Kind, _Entry] = {
    Kind.SIGN_TRANSACTION: _Entry(SignTransactionRequest, _sign_tx(send=False)),
    Kind.SEND_TRANSACTION: _Entry(SignTransactionRequest, _sign_tx(send=True)),
    Kind.SIGN_MESSAGE: _Entry(SignMessageRequest, _sign_message),
    Kind.SIGN_TYPED_DATA: _Entry(SignTypedDataRequest, _sign_typed),
    Kind.HTTP_REQUEST: _Entry(HttpRequestRequest, _http),
    Kind.READ_DATA: _Entry(ReadDataRequest, _read),
    Kind.RELEASE_CREDENTIAL: _Entry(ReleaseRequest, _release),
}


def _parked_wire(a: Approval) -> BaseModel:
    """The parked request, validated again as its kind's wire model (display-only fields — the
    decoded intent the owner saw — are dropped: the request is decoded again when it runs)."""
    entry = _EXECUTORS[a.kind]
    fields = {k: v for k, v in a.request.items() if k not in ("action", "intent")}
    fields.pop("idempotency_key", None)  # the approval itself is the request's one use
    try:
        return entry.wire.model_validate(fields)
    except ValidationError:
        raise MalformedRequestError(
            f"Approval {a.id} holds a request keysafe cannot read any more.",
            next_step="deny it; the agent can ask again.",
        ) from None


def _execute(vault: Vault, a: Approval) -> dict[str, Any]:
    return _EXECUTORS[a.kind].run(vault, a, _parked_wire(a))


# -- the owner's decisions ------------------------------------------------------------------------


def get(vault: Vault, approval_id: str, *, agent: str | None = None) -> Approval:
    with vault.db.read() as conn:
        return store.get(conn, approval_id, vault.clock().timestamp(), agent=agent)


def list_approvals(vault: Vault, *, pending_only: bool = True) -> list[Approval]:
    now = vault.clock().timestamp()
    with vault.db.write() as conn:
        store.notice_expired(vault, conn, now)
        return store.list_approvals(conn, now, pending_only=pending_only)


def deny(vault: Vault, approval_id: str) -> Approval:
    now = vault.clock().timestamp()
    with vault.db.write() as conn:
        store.notice_expired(vault, conn, now)
        store.decide(vault, conn, approval_id, Status.DENIED, now)
    return get(vault, approval_id)


def approve(vault: Vault, approval_id: str, *, grant_seconds: int | None = None) -> Approval:
    """Approve once (or for a while), then run the parked request exactly and store its result."""
    if grant_seconds is not None and not 0 < grant_seconds <= MAX_GRANT_S:
        raise MalformedRequestError(
            "A session approval lasts between 1 second and 7 days.",
            next_step="pass --for 15m, 1h or 1d.",
        )
    now = vault.clock().timestamp()
    with vault.db.write() as conn:
        store.notice_expired(vault, conn, now)
        approval = store.decide(vault, conn, approval_id, Status.EXECUTING, now)
        if grant_seconds is not None:
            intent = Intent.model_validate(approval.request.get("intent") or {"action": "?"})
            store.add_grant(vault, conn, approval, shape_of(intent), grant_seconds, now)
    if approval.kind in DELIVERED_ON_COLLECT:
        # The value is handed to the agent when it asks (agent_view), never stored here.
        _finish(vault, approval_id, Status.APPROVED, {"status": "approved", "delivered": False})
        return get(vault, approval_id)
    try:
        result = _execute(vault, approval)
        status = Status.APPROVED
    except KeysafeError as exc:
        result, status = {"error": exc.to_dict()}, Status.FAILED
    except BaseException:
        # A bug must not leave the approval "executing" for ever: record it failed, re-raise.
        _finish(vault, approval_id, Status.FAILED, {"error": {"code": "INTERNAL"}})
        raise
    _finish(vault, approval_id, status, result)
    logger.info("approval %s executed: %s", approval_id, status)
    return get(vault, approval_id)


def _finish(vault: Vault, approval_id: str, status: Status, result: dict[str, Any]) -> None:
    with vault.db.write() as conn:
        store.set_result(conn, approval_id, status, result)


def agent_view(vault: Vault, approval_id: str, agent: str) -> dict[str, Any]:
    """The asking agent's view; an approved value is released here, once, and not stored."""
    a = get(vault, approval_id, agent=agent)
    view = a.for_agent()
    if a.kind not in DELIVERED_ON_COLLECT:
        return view
    view.pop("result", None)
    if a.status is not Status.APPROVED or not a.result or a.result.get("delivered"):
        return view
    with vault.db.write() as conn:
        claimed = conn.execute(
            update(t.approvals)
            .where(t.approvals.c.id == approval_id, t.approvals.c.result == json.dumps(a.result))
            .values(result=json.dumps({"status": "approved", "delivered": True}))
        ).rowcount
    if not claimed:  # another poll took it first: a value is released once
        return view
    return view | {"result": _execute(vault, a)}


# -- grants ---------------------------------------------------------------------------------------


def list_grants(vault: Vault) -> list[Grant]:
    with vault.db.read() as conn:
        return store.list_grants(conn, vault.clock().timestamp())


def revoke_grant(vault: Vault, grant_id: int) -> Grant:
    with vault.db.write() as conn:
        return store.revoke_grant(vault, conn, grant_id, vault.clock().timestamp())
