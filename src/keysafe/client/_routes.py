"""The agent routes as the clients offer them: one builder per route, the one place its
arguments and docs are written.

Each builder takes a client method's arguments and returns the `Call` to send (_calls.py);
AgentClient and AsyncAgentClient get their methods from these builders (_methods.py), so the
two clients cannot drift apart.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal, ParamSpec, TypeVar
from urllib.parse import quote

from keysafe.agent_models import (
    Address,
    ApprovalView,
    Capabilities,
    CheckResult,
    DataValue,
    Health,
    HttpResult,
    KeygenPost,
    Keygens,
    KeygenView,
    PendingApprovals,
    ReleasedCredential,
    SignResult,
    ThresholdCommitment,
    WhoAmI,
)
from keysafe.client import _calls as calls  # calls.post: `post` is keygen_exchange's argument
from keysafe.client._calls import MAX_POLL_S, Call, Json, get, json_body

P = ParamSpec("P")
T = TypeVar("T")


def _seg(value: str) -> str:
    return quote(value, safe="")


def _sends(sign: Callable[P, Call[T]], doc: str) -> Callable[P, Call[T]]:
    """`sign`'s call posted to send-transaction instead: the same arguments and body."""

    def send_transaction(*args: P.args, **kwargs: P.kwargs) -> Call[T]:
        return dataclasses.replace(sign(*args, **kwargs), path="/v1/agent/send-transaction")

    functools.update_wrapper(send_transaction, sign)
    send_transaction.__name__ = send_transaction.__qualname__ = "send_transaction"
    send_transaction.__doc__ = doc
    return send_transaction


def health() -> Call[Health]:
    """Is the server up and the vault unlocked (GET /v1/health; needs no token)."""
    return get("/v1/health", Health)


def whoami() -> Call[str]:
    """The agent name this token authenticates (GET /v1/agent/whoami)."""
    return Call("GET", "/v1/agent/whoami", None, lambda body: WhoAmI.model_validate(body).agent)


def capabilities() -> Call[Capabilities]:
    """Wallets, credentials and data this agent may use; its rules and budget left."""
    return get("/v1/agent/capabilities", Capabilities)


def address(wallet: str) -> Call[Address]:
    """One wallet's address and chain family.

    Raises:
        NotFoundError: no wallet of that name is usable by this agent.
    """
    return get(f"/v1/agent/address/{_seg(wallet)}", Address)


def sign_transaction(
    wallet: str,
    transaction: Json | str,
    *,
    chain: str | None = None,
    description: str | None = None,
    declared: Json | None = None,
    idempotency_key: str | None = None,
    wait: float = 0,
) -> Call[SignResult]:
    """Sign a transaction (the vault decodes it and judges it by the policy); not sent.

    Args:
        wallet: the wallet's name.
        transaction: EVM: a JSON transaction or unsigned RLP hex; Solana: base64.
        chain: the chain's name (EVM reads chainId from the transaction).
        description: why, shown to the owner when approval is needed.
        declared: what you believe it does (asset, amount, to…); must match the decoding.
        idempotency_key: reuse it to retry safely (the vault acts at most once).
        wait: seconds to wait for the owner if approval is needed (0: raise at once).

    Raises:
        PolicyDeniedError, BudgetExceededError: the policy refuses it (nothing is signed).
        ApprovalRequiredError: the owner must approve (and `wait` ran out or was 0).
    """
    body = json_body(
        wallet=wallet,
        transaction=transaction,
        chain=chain,
        description=description,
        declared=declared,
        idempotency_key=idempotency_key,
    )
    return calls.post("/v1/agent/sign-transaction", body, SignResult, wait)


send_transaction = _sends(
    sign_transaction,
    """Sign and broadcast a transaction: `sign_transaction` (same arguments, same refusals),
    then sent to the chain; the answer has tx_hash.

    Raises:
        ChainUnavailableError: the chain's RPC could not take it.
    """,
)


def transfer(
    wallet: str,
    asset: str,
    to: str,
    amount: str,
    *,
    chain: str | None = None,
    description: str | None = None,
    idempotency_key: str | None = None,
    wait: float = 0,
) -> Call[SignResult]:
    """Send `amount` (a decimal string in whole units, e.g. "12.5") of `asset` ("native", a
    registered symbol, or a token address) to `to`: keysafe builds, judges, signs and
    broadcasts the transaction; the answer has tx_hash.

    Raises:
        MalformedRequestError: an amount with more decimals than the asset, a chain that does
            not fit the wallet, or a recipient keysafe refuses (e.g. the token contract).
        NotFoundError: the asset is not registered on the chain.
        PolicyDeniedError: no rule allows it, or a limit would be exceeded.
        ApprovalRequiredError: the owner must approve first.
    """
    body = json_body(
        wallet=wallet,
        asset=asset,
        to=to,
        amount=amount,
        chain=chain,
        description=description,
        idempotency_key=idempotency_key,
    )
    return calls.post("/v1/agent/transfer", body, SignResult, wait)


def sign_message(
    wallet: str,
    message: str,
    *,
    encoding: Literal["utf8", "base64"] = "utf8",
    idempotency_key: str | None = None,
    wait: float = 0,
) -> Call[SignResult]:
    """Sign a message (EIP-191 on EVM); `encoding="base64"` for bytes.

    Raises:
        PolicyDeniedError: no rule allows this message from this wallet.
        ApprovalRequiredError: the owner must approve first.
    """
    body = json_body(
        wallet=wallet, message=message, encoding=encoding, idempotency_key=idempotency_key
    )
    return calls.post("/v1/agent/sign-message", body, SignResult, wait)


def sign_typed_data(
    wallet: str, typed_data: Json, *, idempotency_key: str | None = None, wait: float = 0
) -> Call[SignResult]:
    """Sign EIP-712 typed data (permits are judged as the approvals they grant).

    Raises:
        PolicyDeniedError: no rule allows it.
        ApprovalRequiredError: the owner must approve first.
    """
    body = json_body(wallet=wallet, typed_data=typed_data, idempotency_key=idempotency_key)
    return calls.post("/v1/agent/sign-typed-data", body, SignResult, wait)


def http_request(
    credential: str,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: str | bytes | None = None,
    wait: float = 0,
) -> Call[HttpResult]:
    """Call an API with a credential the vault attaches (and scrubs from the answer). A
    `bytes` body goes as its bytes (`body_base64`); a binary answer comes back in
    `body_base64`, text in `body`.

    Raises:
        PolicyDeniedError: the policy does not allow this credential, method or URL.
        ApprovalRequiredError: the owner must approve first.
    """
    binary = isinstance(body, bytes)
    req = json_body(
        credential=credential,
        method=method,
        url=url,
        headers=dict(headers) if headers is not None else None,
        body=None if binary else body,
        body_base64=base64.b64encode(body).decode() if isinstance(body, bytes) else None,
    )
    return calls.post("/v1/agent/http-request", req, HttpResult, wait)


def read_data(name: str, *, fields: list[str] | None = None, wait: float = 0) -> Call[DataValue]:
    """Read a personal-data record (or only `fields` of a JSON record).

    Raises:
        PolicyDeniedError: no rule lets this agent read it.
        ApprovalRequiredError: sensitive data; the owner must approve first.
    """
    return calls.post("/v1/agent/read-data", json_body(name=name, fields=fields), DataValue, wait)


def threshold_commit(wallet: str) -> Call[ThresholdCommitment]:
    """The vault's round-one commitment for a 2-of-3 wallet's signature (the agent's own
    FROST part is computed by keysafe's MCP server, which holds the agent's share)."""
    return calls.post("/v1/agent/threshold/commit", {"wallet": wallet}, ThresholdCommitment)


def keygens() -> Call[list[KeygenView]]:
    """The 2-of-3 keygens waiting for this agent to join (`keysafe agent threshold join`
    runs the agent's side)."""
    path = "/v1/agent/threshold/keygens"
    return Call("GET", path, None, lambda body: Keygens.model_validate(body).keygens)


def keygen_exchange(keygen_id: str, post: KeygenPost) -> Call[KeygenView]:
    """Post the agent's part to keygen `keygen_id`; the answer holds what is there for it.

    Raises:
        NotFoundError: no such keygen open for this agent.
        MalformedRequestError: a message out of place.
    """
    path = f"/v1/agent/threshold/keygens/{_seg(keygen_id)}"
    return calls.post(path, post.model_dump(exclude_none=True), KeygenView)


def release_credential(
    credential: str, *, purpose: str | None = None, wait: float = 0
) -> Call[ReleasedCredential]:
    """Ask for a credential's value for a child process; the owner always decides, so this
    raises ApprovalRequiredError unless `wait` covers the owner's decision.

    Raises:
        ApprovalRequiredError: the owner has not approved (yet).
        PolicyDeniedError: the owner denied it, or no rule allows asking.
    """
    body = json_body(credential=credential, purpose=purpose)
    return calls.post("/v1/agent/credential-release", body, ReleasedCredential, wait)


def check(action: str, request: Mapping[str, Any]) -> Call[CheckResult]:
    """Dry run: the decision `request` (the body of the `action` route) would get now.

    Args:
        action: sign_transaction, send_transaction, sign_message, sign_typed_data,
            http_request, read_data or release_credential.
        request: that route's body, unchanged.
    """
    return calls.post("/v1/agent/check", {"action": action, "request": dict(request)}, CheckResult)


def pending_approvals() -> Call[list[ApprovalView]]:
    """This agent's requests still waiting for the owner."""
    path = "/v1/agent/approvals"
    return Call("GET", path, None, lambda body: PendingApprovals.model_validate(body).approvals)


def approval(approval_id: str, *, wait: int = 0) -> Call[ApprovalView]:
    """One approval's status (and, once approved, the original call's answer in `result`);
    `wait` long-polls up to 60 s while it is pending."""
    path = f"/v1/agent/approvals/{_seg(approval_id)}?wait={max(0, min(wait, MAX_POLL_S))}"
    return get(path, ApprovalView)
