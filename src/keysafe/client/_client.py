"""AgentClient (sync) and AsyncAgentClient: one method per agent route, typed answers.

Each method builds one `_Call` (route, JSON body, the model its answer parses into); the two
classes differ only in how they send it. An answer is one of three things: the route's model
(HTTP 200), a pending approval (HTTP 202: raised as ApprovalRequiredError, or waited for when
the call says `wait=`), or an error body (raised as the class `ERRORS` maps its code to).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

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
    PendingApproval,
    PendingApprovals,
    ReleasedCredential,
    SignResult,
    ThresholdCommitment,
    WhoAmI,
)
from keysafe.client._errors import (
    ApprovalRequiredError,
    InternalError,
    NotAuthenticatedError,
    NotFoundError,
    PolicyDeniedError,
    error_from_answer,
    unreachable,
)

DEFAULT_URL: Final = "http://127.0.0.1:8420"
# Approvals long-poll for up to 60 s per request, so reads may take that long.
TIMEOUT: Final = httpx.Timeout(90.0, connect=5.0)
MAX_POLL_S: Final = 60  # the server's cap on one long poll

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Json = dict[str, Any]


class _Token:
    """The agent's token, kept out of every repr, str and error (only the header carries it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def header(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._value}"}

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


def _token(token: str | None) -> _Token:
    value = token if token is not None else os.environ.get("KEYSAFE_AGENT_TOKEN", "")
    if not value.strip():
        raise NotAuthenticatedError(
            "No agent token was given.",
            next_step="pass token='ks_agent_…' or set KEYSAFE_AGENT_TOKEN "
            "(the owner creates one with `keysafe agent add NAME`).",
            status=0,
        )
    return _Token(value.strip())


def _url(url: str | None) -> str:
    return (url or os.environ.get("KEYSAFE_URL") or DEFAULT_URL).rstrip("/")


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    method: str
    path: str
    body: Json | None
    parse: Callable[[Json], T]


def _model(model: type[M]) -> Callable[[Json], M]:
    return model.model_validate


def _body(**fields: Any) -> Json:
    """A request body without the options left unset (the server applies its defaults)."""
    return {k: v for k, v in fields.items() if v is not None}


def _seg(value: str) -> str:
    return quote(value, safe="")


def _read(call: _Call[T], r: httpx.Response) -> T | PendingApproval:
    """The route's answer, a pending approval, or the raised error."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code >= 400 or not isinstance(body, dict):
        raise error_from_answer(body, r.status_code)
    try:
        if r.status_code == 202 and body.get("status") == "pending_approval":
            return PendingApproval.model_validate(body)
        return call.parse(body)
    except ValidationError:
        raise _unexpected(call.path) from None


def _unexpected(path: str) -> InternalError:
    # The answer's content is not echoed: it may hold a data value or an API response.
    return InternalError(
        f"The vault's answer to {path} does not have the expected shape.",
        next_step="use a keysafe client of the same version as the server (`keysafe --version`).",
        status=200,
    )


def _settle(call: _Call[T], view: ApprovalView) -> T:
    """The original call's answer from its approval, or the error that says why there is none."""
    if view.status == "pending":
        pending = PendingApproval(
            status="pending_approval", approval_id=view.approval_id,
            expires_at=view.expires_at, summary=view.summary,
        )  # fmt: skip
        raise ApprovalRequiredError(pending)
    if view.status == "denied":
        raise PolicyDeniedError(
            f"The owner denied approval {view.approval_id} ({view.summary}); nothing was done.",
            next_step="do not resend the same request: change it, or ask the owner.",
            status=200, approval_id=view.approval_id,
        )  # fmt: skip
    if view.status == "expired":
        raise PolicyDeniedError(
            f"Approval {view.approval_id} expired before the owner decided; nothing was done.",
            next_step="send the request again if it is still needed (the owner is asked again).",
            status=200, approval_id=view.approval_id,
        )  # fmt: skip
    result = view.result
    if result is None:
        raise NotFoundError(
            f"Approval {view.approval_id} was approved, but its value was already collected "
            "(a value is handed out once).",
            next_step="send the request again if you still need the value.",
            status=200, approval_id=view.approval_id,
        )  # fmt: skip
    if "error" in result:  # approved, but the request failed when it ran
        raise error_from_answer(result, 200)
    try:
        return call.parse(result)
    except ValidationError:
        raise _unexpected(call.path) from None


class _Routes:
    """The agent routes as `_Call`s (shared by the sync and async clients)."""

    @staticmethod
    def health() -> _Call[Health]:
        return _Call("GET", "/v1/health", None, _model(Health))

    @staticmethod
    def whoami() -> _Call[WhoAmI]:
        return _Call("GET", "/v1/agent/whoami", None, _model(WhoAmI))

    @staticmethod
    def capabilities() -> _Call[Capabilities]:
        return _Call("GET", "/v1/agent/capabilities", None, _model(Capabilities))

    @staticmethod
    def address(wallet: str) -> _Call[Address]:
        return _Call("GET", f"/v1/agent/address/{_seg(wallet)}", None, _model(Address))

    @staticmethod
    def sign(route: str, body: Json) -> _Call[SignResult]:
        return _Call("POST", f"/v1/agent/{route}", body, _model(SignResult))

    @staticmethod
    def http_request(body: Json) -> _Call[HttpResult]:
        return _Call("POST", "/v1/agent/http-request", body, _model(HttpResult))

    @staticmethod
    def read_data(body: Json) -> _Call[DataValue]:
        return _Call("POST", "/v1/agent/read-data", body, _model(DataValue))

    @staticmethod
    def threshold_commit(wallet: str) -> _Call[ThresholdCommitment]:
        body = {"wallet": wallet}
        return _Call("POST", "/v1/agent/threshold/commit", body, _model(ThresholdCommitment))

    @staticmethod
    def keygens() -> _Call[Keygens]:
        return _Call("GET", "/v1/agent/threshold/keygens", None, _model(Keygens))

    @staticmethod
    def keygen_exchange(keygen_id: str, post: KeygenPost) -> _Call[KeygenView]:
        path = f"/v1/agent/threshold/keygens/{_seg(keygen_id)}"
        return _Call("POST", path, post.model_dump(exclude_none=True), _model(KeygenView))

    @staticmethod
    def release_credential(body: Json) -> _Call[ReleasedCredential]:
        return _Call("POST", "/v1/agent/credential-release", body, _model(ReleasedCredential))

    @staticmethod
    def check(action: str, request: Mapping[str, Any]) -> _Call[CheckResult]:
        body = {"action": action, "request": dict(request)}
        return _Call("POST", "/v1/agent/check", body, _model(CheckResult))

    @staticmethod
    def pending_approvals() -> _Call[PendingApprovals]:
        return _Call("GET", "/v1/agent/approvals", None, _model(PendingApprovals))

    @staticmethod
    def approval(approval_id: str, wait: int) -> _Call[ApprovalView]:
        path = f"/v1/agent/approvals/{_seg(approval_id)}?wait={max(0, min(wait, MAX_POLL_S))}"
        return _Call("GET", path, None, _model(ApprovalView))


def _sign_tx_body(
    wallet: str, transaction: Json | str, chain: str | None, description: str | None,
    declared: Json | None, idempotency_key: str | None,
) -> Json:  # fmt: skip
    return _body(
        wallet=wallet, transaction=transaction, chain=chain, description=description,
        declared=declared, idempotency_key=idempotency_key,
    )  # fmt: skip


def _transfer_body(
    wallet: str, asset: str, to: str, amount: str, chain: str | None, description: str | None,
    idempotency_key: str | None,
) -> Json:  # fmt: skip
    return _body(
        wallet=wallet, asset=asset, to=to, amount=amount, chain=chain, description=description,
        idempotency_key=idempotency_key,
    )  # fmt: skip


def _http_body(
    credential: str, method: str, url: str, headers: Mapping[str, str] | None,
    body: str | bytes | None,
) -> Json:  # fmt: skip
    binary = isinstance(body, bytes)
    return _body(
        credential=credential, method=method, url=url,
        headers=dict(headers) if headers is not None else None,
        body=None if binary else body,
        body_base64=base64.b64encode(body).decode() if isinstance(body, bytes) else None,
    )  # fmt: skip


def _poll_seconds(deadline: float) -> int:
    return int(max(0.0, min(MAX_POLL_S, deadline - time.monotonic())))


class AgentClient:
    """A synchronous client for the agent routes of `keysafe serve`.

    Args:
        token: the agent's token `ks_agent_…` (default: KEYSAFE_AGENT_TOKEN).
        url: the vault server (default: KEYSAFE_URL, else http://127.0.0.1:8420).
        http: an httpx.Client to share a connection pool; it is not closed by `close()`.

    Raises:
        NotAuthenticatedError: no token given and none in the environment.

    Every method raises the `ApiError` subclass of the server's stable code (PolicyDeniedError,
    BudgetExceededError, NotFoundError, VaultLockedError, …), VaultUnreachableError when no
    answer came, and ApprovalRequiredError when the owner must approve first; a call given
    `wait=SECONDS` instead waits that long for the owner and returns the approved answer.
    """

    def __init__(
        self, token: str | None = None, *, url: str | None = None, http: httpx.Client | None = None
    ) -> None:
        self.url = _url(url)
        self._token = _token(token)
        self._owned = http is None
        self._http = http or httpx.Client(timeout=TIMEOUT)

    def __repr__(self) -> str:
        return f"AgentClient(url={self.url!r}, token=<redacted>)"

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (unless it was passed in)."""
        if self._owned:
            self._http.close()

    def _send(self, call: _Call[T]) -> T | PendingApproval:
        try:
            r = self._http.request(
                call.method, self.url + call.path, json=call.body, headers=self._token.header(),
                timeout=TIMEOUT,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        return _read(call, r)

    def _run(self, call: _Call[T], wait: float = 0) -> T:
        out = self._send(call)
        if not isinstance(out, PendingApproval):
            return out
        if wait <= 0:
            raise ApprovalRequiredError(out)
        return _settle(call, self.wait_for_approval(out.approval_id, timeout=wait))

    # -- routes -----------------------------------------------------------------------------

    def health(self) -> Health:
        """Is the server up and the vault unlocked (GET /v1/health; needs no token)."""
        return self._run(_Routes.health())

    def whoami(self) -> str:
        """The agent name this token authenticates (GET /v1/agent/whoami)."""
        return self._run(_Routes.whoami()).agent

    def capabilities(self) -> Capabilities:
        """Wallets, credentials and data this agent may use; its rules and budget left."""
        return self._run(_Routes.capabilities())

    def address(self, wallet: str) -> Address:
        """One wallet's address and chain family.

        Raises:
            NotFoundError: no wallet of that name is usable by this agent.
        """
        return self._run(_Routes.address(wallet))

    def sign_transaction(
        self, wallet: str, transaction: Json | str, *, chain: str | None = None,
        description: str | None = None, declared: Json | None = None,
        idempotency_key: str | None = None, wait: float = 0,
    ) -> SignResult:  # fmt: skip
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
        body = _sign_tx_body(wallet, transaction, chain, description, declared, idempotency_key)
        return self._run(_Routes.sign("sign-transaction", body), wait)

    def send_transaction(
        self, wallet: str, transaction: Json | str, *, chain: str | None = None,
        description: str | None = None, declared: Json | None = None,
        idempotency_key: str | None = None, wait: float = 0,
    ) -> SignResult:  # fmt: skip
        """Sign and broadcast a transaction; as `sign_transaction`, and the answer has tx_hash.

        Raises:
            ChainUnavailableError: the chain's RPC could not take it.
        """
        body = _sign_tx_body(wallet, transaction, chain, description, declared, idempotency_key)
        return self._run(_Routes.sign("send-transaction", body), wait)

    def transfer(
        self, wallet: str, asset: str, to: str, amount: str, *, chain: str | None = None,
        description: str | None = None, idempotency_key: str | None = None, wait: float = 0,
    ) -> SignResult:  # fmt: skip
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
        body = _transfer_body(wallet, asset, to, amount, chain, description, idempotency_key)
        return self._run(_Routes.sign("transfer", body), wait)

    def sign_message(
        self, wallet: str, message: str, *, encoding: Literal["utf8", "base64"] = "utf8",
        idempotency_key: str | None = None, wait: float = 0,
    ) -> SignResult:  # fmt: skip
        """Sign a message (EIP-191 on EVM); `encoding="base64"` for bytes.

        Raises:
            PolicyDeniedError: no rule allows this message from this wallet.
            ApprovalRequiredError: the owner must approve first.
        """
        body = _body(
            wallet=wallet, message=message, encoding=encoding, idempotency_key=idempotency_key
        )
        return self._run(_Routes.sign("sign-message", body), wait)

    def sign_typed_data(
        self, wallet: str, typed_data: Json, *, idempotency_key: str | None = None,
        wait: float = 0,
    ) -> SignResult:  # fmt: skip
        """Sign EIP-712 typed data (permits are judged as the approvals they grant).

        Raises:
            PolicyDeniedError: no rule allows it.
            ApprovalRequiredError: the owner must approve first.
        """
        body = _body(wallet=wallet, typed_data=typed_data, idempotency_key=idempotency_key)
        return self._run(_Routes.sign("sign-typed-data", body), wait)

    def http_request(
        self, credential: str, method: str, url: str, *, headers: Mapping[str, str] | None = None,
        body: str | bytes | None = None, wait: float = 0,
    ) -> HttpResult:  # fmt: skip
        """Call an API with a credential the vault attaches (and scrubs from the answer). A
        `bytes` body goes as its bytes (`body_base64`); a binary answer comes back in
        `body_base64`, text in `body`.

        Raises:
            PolicyDeniedError: the policy does not allow this credential, method or URL.
            ApprovalRequiredError: the owner must approve first.
        """
        req = _http_body(credential, method, url, headers, body)
        return self._run(_Routes.http_request(req), wait)

    def read_data(
        self, name: str, *, fields: list[str] | None = None, wait: float = 0
    ) -> DataValue:
        """Read a personal-data record (or only `fields` of a JSON record).

        Raises:
            PolicyDeniedError: no rule lets this agent read it.
            ApprovalRequiredError: sensitive data; the owner must approve first.
        """
        return self._run(_Routes.read_data(_body(name=name, fields=fields)), wait)

    def threshold_commit(self, wallet: str) -> ThresholdCommitment:
        """The vault's round-one commitment for a 2-of-3 wallet's signature (the agent's own
        FROST part is computed by keysafe's MCP server, which holds the agent's share)."""
        return self._run(_Routes.threshold_commit(wallet))

    def keygens(self) -> list[KeygenView]:
        """The 2-of-3 keygens waiting for this agent to join (`keysafe agent threshold join`
        runs the agent's side)."""
        return self._run(_Routes.keygens()).keygens

    def keygen_exchange(self, keygen_id: str, post: KeygenPost) -> KeygenView:
        """Post the agent's part to keygen `keygen_id`; the answer holds what is there for it.

        Raises:
            NotFoundError: no such keygen open for this agent.
            MalformedRequestError: a message out of place.
        """
        return self._run(_Routes.keygen_exchange(keygen_id, post))

    def release_credential(
        self, credential: str, *, purpose: str | None = None, wait: float = 0
    ) -> ReleasedCredential:
        """Ask for a credential's value for a child process; the owner always decides, so this
        raises ApprovalRequiredError unless `wait` covers the owner's decision.

        Raises:
            ApprovalRequiredError: the owner has not approved (yet).
            PolicyDeniedError: the owner denied it, or no rule allows asking.
        """
        call = _Routes.release_credential(_body(credential=credential, purpose=purpose))
        return self._run(call, wait)

    def check(self, action: str, request: Mapping[str, Any]) -> CheckResult:
        """Dry run: the decision `request` (the body of the `action` route) would get now.

        Args:
            action: sign_transaction, send_transaction, sign_message, sign_typed_data,
                http_request, read_data or release_credential.
            request: that route's body, unchanged.
        """
        return self._run(_Routes.check(action, request))

    def pending_approvals(self) -> list[ApprovalView]:
        """This agent's requests still waiting for the owner."""
        return self._run(_Routes.pending_approvals()).approvals

    def approval(self, approval_id: str, *, wait: int = 0) -> ApprovalView:
        """One approval's status (and, once approved, the original call's answer in `result`);
        `wait` long-polls up to 60 s while it is pending."""
        return self._run(_Routes.approval(approval_id, wait))

    def wait_for_approval(self, approval_id: str, *, timeout: float = 300) -> ApprovalView:
        """Poll until the owner decides or `timeout` seconds pass; the last view either way."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.approval(approval_id, wait=_poll_seconds(deadline))
            if view.status != "pending" or time.monotonic() >= deadline:
                return view


class AsyncAgentClient:
    """The asynchronous twin of AgentClient: the same methods, awaited (docs: AgentClient).

    Args:
        token: the agent's token `ks_agent_…` (default: KEYSAFE_AGENT_TOKEN).
        url: the vault server (default: KEYSAFE_URL, else http://127.0.0.1:8420).
        http: an httpx.AsyncClient to share a connection pool; not closed by `aclose()`.

    Raises:
        NotAuthenticatedError: no token given and none in the environment.
    """

    def __init__(
        self, token: str | None = None, *, url: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:  # fmt: skip
        self.url = _url(url)
        self._token = _token(token)
        self._owned = http is None
        self._http = http or httpx.AsyncClient(timeout=TIMEOUT)

    def __repr__(self) -> str:
        return f"AsyncAgentClient(url={self.url!r}, token=<redacted>)"

    async def __aenter__(self) -> AsyncAgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless it was passed in)."""
        if self._owned:
            await self._http.aclose()

    async def _send(self, call: _Call[T]) -> T | PendingApproval:
        try:
            r = await self._http.request(
                call.method, self.url + call.path, json=call.body, headers=self._token.header(),
                timeout=TIMEOUT,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        return _read(call, r)

    async def _run(self, call: _Call[T], wait: float = 0) -> T:
        out = await self._send(call)
        if not isinstance(out, PendingApproval):
            return out
        if wait <= 0:
            raise ApprovalRequiredError(out)
        return _settle(call, await self.wait_for_approval(out.approval_id, timeout=wait))

    async def health(self) -> Health:
        return await self._run(_Routes.health())

    async def whoami(self) -> str:
        return (await self._run(_Routes.whoami())).agent

    async def capabilities(self) -> Capabilities:
        return await self._run(_Routes.capabilities())

    async def address(self, wallet: str) -> Address:
        return await self._run(_Routes.address(wallet))

    async def sign_transaction(
        self, wallet: str, transaction: Json | str, *, chain: str | None = None,
        description: str | None = None, declared: Json | None = None,
        idempotency_key: str | None = None, wait: float = 0,
    ) -> SignResult:  # fmt: skip
        body = _sign_tx_body(wallet, transaction, chain, description, declared, idempotency_key)
        return await self._run(_Routes.sign("sign-transaction", body), wait)

    async def send_transaction(
        self, wallet: str, transaction: Json | str, *, chain: str | None = None,
        description: str | None = None, declared: Json | None = None,
        idempotency_key: str | None = None, wait: float = 0,
    ) -> SignResult:  # fmt: skip
        body = _sign_tx_body(wallet, transaction, chain, description, declared, idempotency_key)
        return await self._run(_Routes.sign("send-transaction", body), wait)

    async def transfer(
        self, wallet: str, asset: str, to: str, amount: str, *, chain: str | None = None,
        description: str | None = None, idempotency_key: str | None = None, wait: float = 0,
    ) -> SignResult:  # fmt: skip
        body = _transfer_body(wallet, asset, to, amount, chain, description, idempotency_key)
        return await self._run(_Routes.sign("transfer", body), wait)

    async def sign_message(
        self, wallet: str, message: str, *, encoding: Literal["utf8", "base64"] = "utf8",
        idempotency_key: str | None = None, wait: float = 0,
    ) -> SignResult:  # fmt: skip
        body = _body(
            wallet=wallet, message=message, encoding=encoding, idempotency_key=idempotency_key
        )
        return await self._run(_Routes.sign("sign-message", body), wait)

    async def sign_typed_data(
        self, wallet: str, typed_data: Json, *, idempotency_key: str | None = None,
        wait: float = 0,
    ) -> SignResult:  # fmt: skip
        body = _body(wallet=wallet, typed_data=typed_data, idempotency_key=idempotency_key)
        return await self._run(_Routes.sign("sign-typed-data", body), wait)

    async def http_request(
        self, credential: str, method: str, url: str, *, headers: Mapping[str, str] | None = None,
        body: str | bytes | None = None, wait: float = 0,
    ) -> HttpResult:  # fmt: skip
        req = _http_body(credential, method, url, headers, body)
        return await self._run(_Routes.http_request(req), wait)

    async def read_data(
        self, name: str, *, fields: list[str] | None = None, wait: float = 0
    ) -> DataValue:
        return await self._run(_Routes.read_data(_body(name=name, fields=fields)), wait)

    async def threshold_commit(self, wallet: str) -> ThresholdCommitment:
        return await self._run(_Routes.threshold_commit(wallet))

    async def keygens(self) -> list[KeygenView]:
        return (await self._run(_Routes.keygens())).keygens

    async def keygen_exchange(self, keygen_id: str, post: KeygenPost) -> KeygenView:
        return await self._run(_Routes.keygen_exchange(keygen_id, post))

    async def release_credential(
        self, credential: str, *, purpose: str | None = None, wait: float = 0
    ) -> ReleasedCredential:
        call = _Routes.release_credential(_body(credential=credential, purpose=purpose))
        return await self._run(call, wait)

    async def check(self, action: str, request: Mapping[str, Any]) -> CheckResult:
        return await self._run(_Routes.check(action, request))

    async def pending_approvals(self) -> list[ApprovalView]:
        return (await self._run(_Routes.pending_approvals())).approvals

    async def approval(self, approval_id: str, *, wait: int = 0) -> ApprovalView:
        return await self._run(_Routes.approval(approval_id, wait))

    async def wait_for_approval(self, approval_id: str, *, timeout: float = 300) -> ApprovalView:
        deadline = time.monotonic() + timeout
        while True:
            view = await self.approval(approval_id, wait=_poll_seconds(deadline))
            if view.status != "pending" or time.monotonic() >= deadline:
                return view
