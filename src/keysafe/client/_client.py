"""AgentClient: the synchronous client, one method per agent route, typed answers.

Each method builds one `Call` (keysafe/client/_calls.py) and sends it; AsyncAgentClient
(_async.py) is its asynchronous twin.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import httpx

from keysafe.agent_models import (
    Address,
    ApprovalView,
    Capabilities,
    CheckResult,
    DataValue,
    Health,
    HttpResult,
    KeygenPost,
    KeygenView,
    PendingApproval,
    ReleasedCredential,
    SignResult,
    ThresholdCommitment,
)
from keysafe.client import _calls as calls
from keysafe.client._errors import ApprovalRequiredError, unreachable

T = TypeVar("T")


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
        self.url = calls.url_from(url)
        self._token = calls.token_from(token)
        self._owned = http is None
        self._http = http or httpx.Client(timeout=calls.TIMEOUT)

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

    def _send(self, call: calls.Call[T]) -> T | PendingApproval:
        request = calls.build_request(self._http, self.url, self._token, call)
        try:
            r = self._http.send(request)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        return calls.read(call, r)

    def _run(self, call: calls.Call[T], wait: float = 0) -> T:
        out = self._send(call)
        if not isinstance(out, PendingApproval):
            return out
        if wait <= 0:
            raise ApprovalRequiredError(out)
        return calls.settle(call, self.wait_for_approval(out.approval_id, timeout=wait))

    # -- routes -----------------------------------------------------------------------------

    def health(self) -> Health:
        """Is the server up and the vault unlocked (GET /v1/health; needs no token)."""
        return self._run(calls.HEALTH)

    def whoami(self) -> str:
        """The agent name this token authenticates (GET /v1/agent/whoami)."""
        return self._run(calls.WHOAMI).agent

    def capabilities(self) -> Capabilities:
        """Wallets, credentials and data this agent may use; its rules and budget left."""
        return self._run(calls.CAPABILITIES)

    def address(self, wallet: str) -> Address:
        """One wallet's address and chain family.

        Raises:
            NotFoundError: no wallet of that name is usable by this agent.
        """
        return self._run(calls.address(wallet))

    def sign_transaction(
        self,
        wallet: str,
        transaction: calls.Json | str,
        *,
        chain: str | None = None,
        description: str | None = None,
        declared: calls.Json | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> SignResult:
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
        call = calls.sign_transaction(
            "sign-transaction", wallet, transaction, chain, description, declared, idempotency_key
        )
        return self._run(call, wait)

    def send_transaction(
        self,
        wallet: str,
        transaction: calls.Json | str,
        *,
        chain: str | None = None,
        description: str | None = None,
        declared: calls.Json | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> SignResult:
        """Sign and broadcast a transaction: `sign_transaction` (same arguments, same
        refusals), then sent to the chain; the answer has tx_hash.

        Raises:
            ChainUnavailableError: the chain's RPC could not take it.
        """
        call = calls.sign_transaction(
            "send-transaction", wallet, transaction, chain, description, declared, idempotency_key
        )
        return self._run(call, wait)

    def transfer(
        self,
        wallet: str,
        asset: str,
        to: str,
        amount: str,
        *,
        chain: str | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> SignResult:
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
        call = calls.transfer(wallet, asset, to, amount, chain, description, idempotency_key)
        return self._run(call, wait)

    def sign_message(
        self,
        wallet: str,
        message: str,
        *,
        encoding: Literal["utf8", "base64"] = "utf8",
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> SignResult:
        """Sign a message (EIP-191 on EVM); `encoding="base64"` for bytes.

        Raises:
            PolicyDeniedError: no rule allows this message from this wallet.
            ApprovalRequiredError: the owner must approve first.
        """
        call = calls.sign_message(wallet, message, encoding, idempotency_key)
        return self._run(call, wait)

    def sign_typed_data(
        self,
        wallet: str,
        typed_data: calls.Json,
        *,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> SignResult:
        """Sign EIP-712 typed data (permits are judged as the approvals they grant).

        Raises:
            PolicyDeniedError: no rule allows it.
            ApprovalRequiredError: the owner must approve first.
        """
        call = calls.sign_typed_data(wallet, typed_data, idempotency_key)
        return self._run(call, wait)

    def http_request(
        self,
        credential: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: str | bytes | None = None,
        wait: float = 0,
    ) -> HttpResult:
        """Call an API with a credential the vault attaches (and scrubs from the answer). A
        `bytes` body goes as its bytes (`body_base64`); a binary answer comes back in
        `body_base64`, text in `body`.

        Raises:
            PolicyDeniedError: the policy does not allow this credential, method or URL.
            ApprovalRequiredError: the owner must approve first.
        """
        return self._run(calls.http_request(credential, method, url, headers, body), wait)

    def read_data(
        self, name: str, *, fields: list[str] | None = None, wait: float = 0
    ) -> DataValue:
        """Read a personal-data record (or only `fields` of a JSON record).

        Raises:
            PolicyDeniedError: no rule lets this agent read it.
            ApprovalRequiredError: sensitive data; the owner must approve first.
        """
        return self._run(calls.read_data(name, fields), wait)

    def threshold_commit(self, wallet: str) -> ThresholdCommitment:
        """The vault's round-one commitment for a 2-of-3 wallet's signature (the agent's own
        FROST part is computed by keysafe's MCP server, which holds the agent's share)."""
        return self._run(calls.threshold_commit(wallet))

    def keygens(self) -> list[KeygenView]:
        """The 2-of-3 keygens waiting for this agent to join (`keysafe agent threshold join`
        runs the agent's side)."""
        return self._run(calls.KEYGENS).keygens

    def keygen_exchange(self, keygen_id: str, post: KeygenPost) -> KeygenView:
        """Post the agent's part to keygen `keygen_id`; the answer holds what is there for it.

        Raises:
            NotFoundError: no such keygen open for this agent.
            MalformedRequestError: a message out of place.
        """
        return self._run(calls.keygen_exchange(keygen_id, post))

    def release_credential(
        self, credential: str, *, purpose: str | None = None, wait: float = 0
    ) -> ReleasedCredential:
        """Ask for a credential's value for a child process; the owner always decides, so this
        raises ApprovalRequiredError unless `wait` covers the owner's decision.

        Raises:
            ApprovalRequiredError: the owner has not approved (yet).
            PolicyDeniedError: the owner denied it, or no rule allows asking.
        """
        return self._run(calls.release_credential(credential, purpose), wait)

    def check(self, action: str, request: Mapping[str, Any]) -> CheckResult:
        """Dry run: the decision `request` (the body of the `action` route) would get now.

        Args:
            action: sign_transaction, send_transaction, sign_message, sign_typed_data,
                http_request, read_data or release_credential.
            request: that route's body, unchanged.
        """
        return self._run(calls.check(action, request))

    def pending_approvals(self) -> list[ApprovalView]:
        """This agent's requests still waiting for the owner."""
        return self._run(calls.PENDING_APPROVALS).approvals

    def approval(self, approval_id: str, *, wait: int = 0) -> ApprovalView:
        """One approval's status (and, once approved, the original call's answer in `result`);
        `wait` long-polls up to 60 s while it is pending."""
        return self._run(calls.approval(approval_id, wait))

    def wait_for_approval(self, approval_id: str, *, timeout: float = 300) -> ApprovalView:
        """Poll until the owner decides or `timeout` seconds pass; the last view either way."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.approval(approval_id, wait=calls.poll_seconds(deadline))
            if view.status != "pending" or time.monotonic() >= deadline:
                return view
