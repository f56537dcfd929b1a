"""One table from a request's kind to its wire model and its use case.

Two callers run an agent's request from its kind and its JSON rather than from a route: an
approved request runs again (service/approvals.py), and a dry run asks what a request would get
(service/checks.py). Both go through `run`, so every kind is decoded and judged by exactly the
code its own route uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel

from keysafe.approvals import Kind
from keysafe.errors import MalformedRequestError
from keysafe.service import data, pairing, proxy, release, signing, transfer
from keysafe.service.models import (
    HttpRequestRequest,
    ReadDataRequest,
    ReleaseRequest,
    SignMessageRequest,
    SignTransactionRequest,
    SignTypedDataRequest,
    TransferRequest,
)
from keysafe.service.signing_gate import SignResult
from keysafe.vault.vault import Vault

# The wire models that carry an idempotency key.
_Keyed = TypeVar(
    "_Keyed", SignTransactionRequest, TransferRequest, SignMessageRequest, SignTypedDataRequest
)


@dataclass(frozen=True, slots=True)
class How:
    """How this run differs from a plain one: an approved request, a dry run, or (from a route)
    the idempotency key the agent sent."""

    approval_id: str | None = None
    dry_run: bool = False
    idempotency_key: str | None = None

    def keyed(self, r: _Keyed) -> _Keyed:
        """`r` with this run's idempotency key (a route's, or none when an approved or dry run
        repeats the request)."""
        return r.model_copy(update={"idempotency_key": self.idempotency_key})


Runner = Callable[[Vault, str, Any, How], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Entry:
    wire: type[BaseModel]
    run: Runner


def sign_transaction(
    vault: Vault, agent: str, r: SignTransactionRequest, how: How, *, broadcast: bool
) -> SignResult:
    """Sign (with `broadcast`, and send) the transaction in `r` as `agent`."""
    return signing.sign_transaction(
        vault,
        agent,
        how.keyed(r),
        broadcast=broadcast,
        approval_id=how.approval_id,
        dry_run=how.dry_run,
    )


def transfer_asset(vault: Vault, agent: str, r: TransferRequest, how: How) -> SignResult:
    """Build, judge, sign and send the transfer in `r` as `agent`."""
    return transfer.transfer(
        vault, agent, how.keyed(r), approval_id=how.approval_id, dry_run=how.dry_run
    )


def sign_message(vault: Vault, agent: str, r: SignMessageRequest, how: How) -> SignResult:
    """Sign the message in `r` as `agent`."""
    return signing.sign_message(
        vault, agent, how.keyed(r), approval_id=how.approval_id, dry_run=how.dry_run
    )


def _dumped(run: Callable[[Vault, str, Any, How], SignResult]) -> Runner:
    """`run`, answering its result as JSON."""
    return lambda vault, agent, r, how: run(vault, agent, r, how).model_dump(mode="json")


def sign_typed_data(vault: Vault, agent: str, r: SignTypedDataRequest, how: How) -> SignResult:
    """Sign the EIP-712 typed data in `r` as `agent` (with the agent's DKLs23 part on a 2-of-3
    wallet: an approved run needs it as much as the first one)."""
    return signing.sign_typed_data(
        vault, agent, how.keyed(r), approval_id=how.approval_id, dry_run=how.dry_run
    )


def _http(vault: Vault, agent: str, r: HttpRequestRequest, how: How) -> dict[str, Any]:
    return proxy.http_request(
        vault, agent, r, approval_id=how.approval_id, dry_run=how.dry_run
    ).model_dump(mode="json")


def _read(vault: Vault, agent: str, r: ReadDataRequest, how: How) -> dict[str, Any]:
    return data.read_data(
        vault, agent, r.name, fields=r.fields, approval_id=how.approval_id, dry_run=how.dry_run
    ).model_dump(mode="json")


def _release(vault: Vault, agent: str, r: ReleaseRequest, how: How) -> dict[str, Any]:
    return release.release(
        vault,
        agent,
        r.credential,
        purpose=r.purpose or "",
        approval_id=how.approval_id,
        dry_run=how.dry_run,
    ).model_dump(mode="json")


def _pair(vault: Vault, agent: str, r: pairing.PairingRequest, how: How) -> dict[str, Any]:
    # Only the owner's approval makes an agent: never a dry run, never without an approval.
    if how.dry_run or how.approval_id is None:
        raise MalformedRequestError(
            "A pairing is approved by the owner, not asked for.", next_step="list_capabilities."
        )
    return pairing.complete(vault, agent, r)


_ENTRIES: dict[Kind, _Entry] = {
    Kind.SIGN_TRANSACTION: _Entry(
        SignTransactionRequest, _dumped(partial(sign_transaction, broadcast=False))
    ),
    Kind.SEND_TRANSACTION: _Entry(
        SignTransactionRequest, _dumped(partial(sign_transaction, broadcast=True))
    ),
    Kind.TRANSFER: _Entry(TransferRequest, _dumped(transfer_asset)),
    Kind.SIGN_MESSAGE: _Entry(SignMessageRequest, _dumped(sign_message)),
    Kind.SIGN_TYPED_DATA: _Entry(SignTypedDataRequest, _dumped(sign_typed_data)),
    Kind.HTTP_REQUEST: _Entry(HttpRequestRequest, _http),
    Kind.READ_DATA: _Entry(ReadDataRequest, _read),
    Kind.RELEASE_CREDENTIAL: _Entry(ReleaseRequest, _release),
    Kind.PAIRING: _Entry(pairing.PairingRequest, _pair),
}
_AGENT_KINDS = tuple(k for k in Kind if k is not Kind.PAIRING)


def wire_of(kind: Kind, fields: Mapping[str, Any]) -> BaseModel:
    """`fields` validated as `kind`'s wire model.

    Raises:
        ValidationError: the fields do not fit it (callers say what that means for them).
    """
    return _ENTRIES[kind].wire.model_validate(dict(fields))


def run(vault: Vault, agent: str, kind: Kind, wire: BaseModel, how: How) -> dict[str, Any]:
    """Run `wire` as `agent`'s request of `kind`, through the use case its route calls."""
    return _ENTRIES[kind].run(vault, agent, wire, how)


def kind_of(name: str) -> Kind:
    """The kind named `name` (e.g. "sign_transaction").

    Raises:
        MalformedRequestError: no such kind.
    """
    kind = next((k for k in _AGENT_KINDS if k.value == name), None)
    if kind is None:
        raise MalformedRequestError(
            f"'{name[:40]}' is not a kind of request keysafe judges.",
            next_step=f"use one of {', '.join(k.value for k in _AGENT_KINDS)}.",
        )
    return kind


__all__ = [
    "How",
    "kind_of",
    "run",
    "sign_message",
    "sign_transaction",
    "transfer_asset",
    "wire_of",
]
