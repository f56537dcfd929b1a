"""One table from a request's kind to its wire model and its use case.

Two callers run an agent's request from its kind and its JSON rather than from a route: an
approved request runs again (service/approvals.py), and a dry run asks what a request would get
(service/checks.py). Both go through `run`, so every kind is decoded and judged by exactly the
code its own route uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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
from keysafe.vault.vault import Vault


@dataclass(frozen=True, slots=True)
class How:
    """How this run differs from the route's: an approved request, or a dry run."""

    approval_id: str | None = None
    dry_run: bool = False


Runner = Callable[[Vault, str, Any, How], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Entry:
    wire: type[BaseModel]
    run: Runner


def _sign_tx(send: bool) -> Runner:
    def run(vault: Vault, agent: str, r: SignTransactionRequest, how: How) -> dict[str, Any]:
        return signing.sign_transaction(
            vault,
            agent,
            r.wallet,
            r.transaction,
            chain=r.chain,
            description=r.description,
            declared=r.declared,
            broadcast=send,
            approval_id=how.approval_id,
            threshold=r.threshold,
            dry_run=how.dry_run,
        ).model_dump(mode="json")

    return run


def _transfer(vault: Vault, agent: str, r: TransferRequest, how: How) -> dict[str, Any]:
    # Without its idempotency key, as every kind here: this run is not the agent's retry.
    request = r.model_copy(update={"idempotency_key": None})
    return transfer.transfer(
        vault, agent, request, approval_id=how.approval_id, dry_run=how.dry_run
    ).model_dump(mode="json")


def _sign_message(vault: Vault, agent: str, r: SignMessageRequest, how: How) -> dict[str, Any]:
    return signing.sign_message(
        vault,
        agent,
        r.wallet,
        r.message,
        encoding=r.encoding,
        approval_id=how.approval_id,
        threshold=r.threshold,
        dry_run=how.dry_run,
    ).model_dump(mode="json")


def _sign_typed(vault: Vault, agent: str, r: SignTypedDataRequest, how: How) -> dict[str, Any]:
    return signing.sign_typed_data(
        vault, agent, r.wallet, r.typed_data, approval_id=how.approval_id, dry_run=how.dry_run
    ).model_dump(mode="json")


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
    Kind.SIGN_TRANSACTION: _Entry(SignTransactionRequest, _sign_tx(send=False)),
    Kind.SEND_TRANSACTION: _Entry(SignTransactionRequest, _sign_tx(send=True)),
    Kind.TRANSFER: _Entry(TransferRequest, _transfer),
    Kind.SIGN_MESSAGE: _Entry(SignMessageRequest, _sign_message),
    Kind.SIGN_TYPED_DATA: _Entry(SignTypedDataRequest, _sign_typed),
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


__all__ = ["How", "kind_of", "run", "wire_of"]
