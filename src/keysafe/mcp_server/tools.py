"""The MCP tools an agent sees: the same agent API as HTTP, described for a model.

Each tool is one call to the running vault (`keysafe serve`) through `AgentClient`; nothing here
decides anything. A refusal comes back as a tool error (`is_error`) whose text starts with the
stable code and says what to do next, followed by the vault's error object as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError

from keysafe import __version__
from keysafe import agent_models as answers
from keysafe.client import _routes as routes
from keysafe.errors import KeysafeError
from keysafe.mcp_server import threshold
from keysafe.mcp_server.arguments import (
    Amount,
    Asset,
    Body,
    ChainName,
    Description,
    Encoding,
    IdemKey,
    Message,
    Recipient,
    Transaction,
    TransferChain,
    Wallet,
    body_of,
    drop_none,
    request_body,
)
from keysafe.mcp_server.outputs import DataResult, HttpResult, SignatureResult, TransactionResult
from keysafe.mcp_server.own_policy import OwnPolicy
from keysafe.mcp_server.refusals import argument_error, refusal
from keysafe.remote import AgentClient

INSTRUCTIONS = """\
keysafe holds this agent's wallet keys, API keys and the owner's data; you use them through
these tools and never see a key. Start with list_capabilities: it names your wallets,
credentials, readable data, your policy in plain words and the budget left. Some requests need
the owner's approval: they return status "pending_approval" with an approval_id; call
approval_status with wait_seconds (up to 60) until it is "approved" (the result is then exactly
what the original tool returns) or "denied" (with the owner's reason, if given) / "expired"
(do not retry the same request); list_pending_approvals lists those still waiting. Unsure
whether a call is allowed? check_policy answers allow, ask or deny with the rule and reason, and
changes nothing. Errors start with a stable code: POLICY_DENIED and BUDGET_EXCEEDED mean the
owner's policy refuses it; change the request, do not repeat it."""

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ACTS = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)

Call = Callable[[AgentClient], Awaitable[dict[str, Any]]]


def _ok(data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, separators=(",", ":")))],
        structured_content=data,
    )


class _KeysafeMCP(MCPServer):
    """The SDK's server, with argument errors answered like every other refusal: the SDK's own
    is pydantic's multi-line report with documentation links, which a model reads poorly."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                return refusal(argument_error(name, exc.__cause__))
            raise


@dataclass(frozen=True, slots=True)
class _Vault:
    """How a tool reaches the vault for the calling agent: its client, its 2-of-3 shares, and
    this host's own copy of its policy (a 2-of-3 signature must pass it first)."""

    client_for: Callable[[Context], AgentClient]
    shares_for: Callable[[Context], threshold.ShareBook]
    own_policy: OwnPolicy | None

    async def run(self, ctx: Context, call: Call) -> CallToolResult:
        """One call to the vault; a refusal becomes a tool error the model can act on."""
        try:
            client = self.client_for(ctx)
            try:
                return _ok(await call(client))
            finally:
                await client.aclose()
        except KeysafeError as exc:
            return refusal(exc)

    async def sign(
        self,
        ctx: Context,
        wallet: str,
        body: dict[str, Any],
        part: threshold.Part,
        send: Callable[[AgentClient, dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> CallToolResult:
        """A signing call: with a 2-of-3 wallet the agent's share takes part (`part`), over
        exactly what is sent."""

        async def act(c: AgentClient) -> dict[str, Any]:
            share = await self.shares_for(ctx).current(wallet)
            if share is not None:
                body["threshold"] = await part(c, share)
            return await send(c, body)

        return await self.run(ctx, act)


def build_server(
    client_for: Callable[[Context], AgentClient],
    shares_for: Callable[[Context], threshold.ShareBook] = lambda ctx: threshold.ShareBook(),
    own_policy: OwnPolicy | None = None,
) -> MCPServer:
    """The keysafe MCP server; `client_for` gives the vault client for the calling agent,
    `shares_for` its threshold-wallet shares (agent side of 2-of-3 wallets), by wallet name;
    `own_policy` this host's own copy of the agent's policy, which a 2-of-3 signature must pass
    before the agent's share is used."""
    mcp = _KeysafeMCP(
        "keysafe",
        title="keysafe vault",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    vault = _Vault(client_for, shares_for, own_policy)
    _add_reading_tools(mcp, vault)
    _add_transaction_tools(mcp, vault)
    _add_transfer_tool(mcp, vault)
    _add_message_tools(mcp, vault)
    _add_http_and_data_tools(mcp, vault)
    _add_approval_tools(mcp, vault)
    return mcp


def _add_reading_tools(mcp: MCPServer, vault: _Vault) -> None:
    @mcp.tool(annotations=READ_ONLY)
    async def list_capabilities(ctx: Context) -> Annotated[CallToolResult, answers.Capabilities]:
        """What you may do: your wallets (name, chain, address), the API credentials you may
        use (name, hosts), data you may read, your policy in plain words, and the budget left
        per rule and window. Call this first; it costs nothing and changes nothing."""
        return await vault.run(ctx, lambda c: c.capabilities())

    @mcp.tool(annotations=READ_ONLY)
    async def get_address(
        ctx: Context,
        wallet: Annotated[str, Field(description='Wallet name, e.g. "main".', max_length=64)],
    ) -> Annotated[CallToolResult, answers.Address]:
        """The public address of one of your wallets and its chain family (evm or solana)."""
        return await vault.run(ctx, lambda c: c.address(wallet))


def _add_transaction_tools(mcp: MCPServer, vault: _Vault) -> None:
    def transaction_tool(send: bool) -> Callable[..., Awaitable[CallToolResult]]:
        async def tool(
            ctx: Context,
            wallet: Wallet,
            transaction: Transaction,
            description: Description = None,
            idempotency_key: IdemKey = None,
            chain: ChainName = None,
        ) -> Annotated[CallToolResult, TransactionResult]:
            ask = routes.sign_transaction(
                wallet,
                transaction,
                chain=chain,
                description=description,
                idempotency_key=idempotency_key,
            )
            return await vault.sign(
                ctx,
                wallet,
                body_of(ask),
                lambda c, share: threshold.transaction_part(
                    c, share, wallet, transaction, chain, vault.own_policy
                ),
                lambda c, b: c.sign_transaction(b, send=send),
            )

        return tool

    mcp.add_tool(
        transaction_tool(send=False),
        name="sign_transaction",
        annotations=ACTS,
        description="Sign a transaction with a vault wallet, if the owner's policy allows it. "
        'Returns status "signed" with signed_transaction and tx_hash (not broadcast), or status '
        '"pending_approval" with approval_id: then call approval_status.',
    )
    mcp.add_tool(
        transaction_tool(send=True),
        name="send_transaction",
        annotations=ACTS,
        description="Sign and broadcast a transaction through the chain's configured RPC. "
        'Returns status "sent" with tx_hash, or "pending_approval" with approval_id (then call '
        "approval_status). Pass an idempotency_key so a retry never pays twice.",
    )


def _add_transfer_tool(mcp: MCPServer, vault: _Vault) -> None:
    @mcp.tool(annotations=ACTS)
    async def transfer(
        ctx: Context,
        wallet: Wallet,
        asset: Asset,
        to: Recipient,
        amount: Amount,
        chain: TransferChain = None,
        description: Description = None,
        idempotency_key: IdemKey = None,
    ) -> Annotated[CallToolResult, TransactionResult]:
        """Send coins or tokens without building a transaction: keysafe builds it (an ERC-20
        or SPL transfer, creating the recipient's token account if needed; nonce, fees and
        blockhash from the chain), judges it by your policy, signs and broadcasts it. Returns
        status "sent" with tx_hash, or "pending_approval" with approval_id (then call
        approval_status). Pass an idempotency_key so a retry never pays twice."""
        ask = routes.transfer(
            wallet,
            asset,
            to,
            amount,
            chain=chain,
            description=description,
            idempotency_key=idempotency_key,
        )
        return await vault.run(ctx, lambda c: c.transfer(body_of(ask)))


def _add_message_tools(mcp: MCPServer, vault: _Vault) -> None:
    @mcp.tool(annotations=ACTS)
    async def sign_message(
        ctx: Context,
        wallet: Wallet,
        message: Message,
        encoding: Encoding = "utf8",
    ) -> Annotated[CallToolResult, SignatureResult]:
        """Sign a message (EIP-191 personal_sign on EVM, ed25519 on Solana). Returns the
        signature, or pending_approval with approval_id."""
        return await vault.sign(
            ctx,
            wallet,
            {"wallet": wallet, "message": message, "encoding": encoding},
            lambda c, share: threshold.message_part(
                c, share, wallet, message, encoding, vault.own_policy
            ),
            lambda c, body: c.sign_message(body),
        )

    @mcp.tool(annotations=ACTS)
    async def sign_typed_data(
        ctx: Context,
        wallet: Wallet,
        typed_data: Annotated[
            dict[str, Any],
            Field(description="EIP-712 typed data: {types, primaryType, domain, message}."),
        ],
    ) -> Annotated[CallToolResult, SignatureResult]:
        """Sign EIP-712 typed data (EVM wallets). Permits and unlimited approvals are judged by
        what they grant. Returns the signature, or pending_approval with approval_id."""
        return await vault.sign(
            ctx,
            wallet,
            {"wallet": wallet, "typed_data": typed_data},
            lambda c, share: threshold.typed_data_part(
                c, share, wallet, typed_data, vault.own_policy
            ),
            lambda c, body: c.sign_typed_data(body),
        )


def _add_http_and_data_tools(mcp: MCPServer, vault: _Vault) -> None:
    @mcp.tool(annotations=ACTS)
    async def http_request(
        ctx: Context,
        credential: Annotated[
            str, Field(description='Credential name from list_capabilities, e.g. "github".')
        ],
        method: Annotated[str, Field(description='"GET", "POST", …', max_length=10)],
        url: Annotated[
            str,
            Field(
                description="Full https URL on one of the credential's hosts, e.g. "
                "https://api.github.com/repos/octocat/hello-world",
                max_length=4096,
            ),
        ],
        headers: Annotated[
            dict[str, str] | None,
            Field(description="Extra headers; the credential is attached for you."),
        ] = None,
        body: Body = None,
    ) -> Annotated[CallToolResult, HttpResult]:
        """Call an API with a stored credential attached by the vault; you never see the key
        (it is scrubbed from the response too). Returns status_code, headers and body (text;
        body_base64 when the answer is binary), or pending_approval with approval_id. An
        answer over the vault's response cap (10 MiB unless the owner set it) is an error."""
        text, headers = request_body(body, headers)
        req = drop_none(credential=credential, method=method, url=url, headers=headers, body=text)
        return await vault.run(ctx, lambda c: c.http_request(req))

    @mcp.tool(annotations=READ_ONLY)
    async def read_data(
        ctx: Context,
        name: Annotated[str, Field(description='Data name, e.g. "profile.email".')],
        fields: Annotated[
            list[str] | None, Field(description="Only these fields of a JSON record.")
        ] = None,
    ) -> Annotated[CallToolResult, DataResult]:
        """Read a piece of the owner's data your policy allows (status "value" with the value).
        Sensitive data always needs the owner's approval first (pending_approval)."""
        req = drop_none(name=name, fields=fields)
        return await vault.run(ctx, lambda c: c.read_data(req))


def _add_approval_tools(mcp: MCPServer, vault: _Vault) -> None:
    @mcp.tool(annotations=READ_ONLY)
    async def approval_status(
        ctx: Context,
        approval_id: Annotated[str, Field(description='From a pending answer, "apr_…".')],
        wait_seconds: Annotated[
            int, Field(ge=0, le=60, description="Wait up to this long for a decision (0-60).")
        ] = 0,
    ) -> Annotated[CallToolResult, answers.ApprovalView]:
        """Where an approval stands: pending, approved (with result: exactly what the original
        tool returns), denied, expired, or failed. Pass wait_seconds to wait for the owner."""
        return await vault.run(ctx, lambda c: c.approval(approval_id, wait=wait_seconds))

    @mcp.tool(annotations=READ_ONLY)
    async def check_policy(
        ctx: Context,
        tool: Annotated[
            Literal[
                "sign_transaction",
                "send_transaction",
                "transfer",
                "sign_message",
                "sign_typed_data",
                "http_request",
                "read_data",
            ],
            Field(description="The tool you are thinking of calling."),
        ],
        arguments: Annotated[
            dict[str, Any], Field(description="The arguments you would call it with.")
        ],
    ) -> Annotated[CallToolResult, answers.CheckResult]:
        """Ask before you act: would this call be allowed, need the owner's approval (ask), or
        be denied, and by which rule and why? Nothing is signed, sent, reserved or recorded."""
        body = dict(arguments)
        if tool == "http_request":
            body["body"], body["headers"] = request_body(body.get("body"), body.get("headers"))
        return await vault.run(ctx, lambda c: c.check(tool, drop_none(**body)))

    @mcp.tool(annotations=READ_ONLY)
    async def list_pending_approvals(
        ctx: Context,
    ) -> Annotated[CallToolResult, answers.PendingApprovals]:
        """Your requests still waiting for the owner: approval_id, summary and expiry of each.
        Follow one with approval_status."""
        return await vault.run(ctx, lambda c: c.pending_approvals())
