"""The MCP tools an agent sees: the same agent API as HTTP, described for a model.

Each tool is one call to the running vault (`keysafe serve`) through `AgentClient`; nothing here
decides anything. A refusal comes back as a tool error (`is_error`) whose text starts with the
stable code and says what to do next, followed by the vault's error object as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keysafe import __version__
from keysafe.errors import KeysafeError, MalformedRequestError
from keysafe.mcp_server import threshold
from keysafe.mcp_server.own_policy import OwnPolicy
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
changes nothing. Errors start with a stable code: POLICY_DENIED and BUDGET_EXCEEDED mean the owner's policy refuses it;
change the request, do not repeat it."""


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class WalletOut(_Out):
    name: str
    chain: str
    address: str


class CredentialOut(_Out):
    name: str
    hosts: list[str]


class DataOut(_Out):
    name: str
    class_: str = Field(alias="class")
    fields: list[str] = []


class BudgetOut(_Out):
    rule: str
    window: str
    asset: str | None
    limit: str
    left: str


class PolicyOut(_Out):
    rules: list[str]
    expires: str | None
    summary: str


class Capabilities(_Out):
    agent: str
    status: str
    wallets: list[WalletOut]
    credentials: list[CredentialOut]
    data: list[DataOut]
    policy: PolicyOut
    budget: list[BudgetOut]


class Address(_Out):
    wallet: str
    address: str
    chain: str


class Pending(_Out):
    """Fields present when the owner must approve first."""

    approval_id: str | None = None
    expires_at: str | None = None
    summary: str | None = None


class TransactionResult(Pending):
    status: Literal["signed", "sent", "pending_approval"]
    signed_transaction: str | None = None
    tx_hash: str | None = None
    wallet: str | None = None
    address: str | None = None
    chain: str | None = None


class SignatureResult(Pending):
    status: Literal["signed", "pending_approval"]
    signature: str | None = None
    address: str | None = None


class HttpResult(Pending):
    status: Literal["pending_approval"] | None = None
    status_code: int | None = None
    headers: dict[str, str] | None = None
    body: str | None = None
    body_base64: str | None = None


class DataResult(Pending):
    status: Literal["value", "pending_approval"]
    name: str | None = None
    value: Any = None


class ApprovalResult(_Out):
    approval_id: str
    status: Literal["pending", "approved", "denied", "expired", "failed"]
    summary: str | None = None
    expires_at: str | None = None
    result: dict[str, Any] | None = None
    reason: str | None = None  # the owner's words with a denial (plain text)


class CheckResult(_Out):
    decision: Literal["allow", "ask", "deny"]
    rule: str | None = None
    code: str | None = None
    reason: str


class PendingItem(_Out):
    approval_id: str
    status: str
    summary: str | None = None
    expires_at: str | None = None


class PendingList(_Out):
    approvals: list[PendingItem]


# Argument types shared by several tools (module level: the SDK resolves annotations by name).
Wallet = Annotated[str, Field(description='Wallet name, e.g. "main".', max_length=64)]
Transaction = Annotated[
    dict[str, Any] | str,
    Field(
        description="EVM: a JSON object such as "
        '{"to": "0x1111…", "value": "0x2386f26fc10000", "chainId": 8453} (nonce, gas and '
        "fees are filled in when an RPC is configured) or unsigned RLP hex. Solana: the "
        "serialized transaction, base64."
    ),
]
Description = Annotated[
    str | None,
    Field(description="Why, in one sentence; shown to the owner if approval is needed.",
          max_length=500),
]  # fmt: skip
IdemKey = Annotated[
    str | None,
    Field(description="Reuse the same key to retry safely: the vault acts at most once.",
          max_length=200),
]  # fmt: skip
ChainName = Annotated[
    str | None,
    Field(description='Chain name, e.g. "base" or "solana"; EVM reads chainId if omitted.',
          max_length=64),
]  # fmt: skip


# A JSON value, or text. Models send a JSON body either way, and the SDK turns a string that
# looks like JSON into an object before validation: `str` alone refused every JSON body.
JsonValue = dict[str, Any] | list[Any] | str | int | float | bool
Body = Annotated[
    JsonValue | None,
    Field(description="Request body: text is sent as it is; a JSON object or array is sent as "
          "JSON (Content-Type application/json unless you set one)."),
]  # fmt: skip


def request_body(
    body: JsonValue | None, headers: dict[str, str] | None
) -> tuple[str | None, dict[str, str] | None]:
    """The body as the bytes' text, serialised once; a JSON body gets its content type."""
    if body is None or isinstance(body, str):
        return body, headers
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if not any(k.lower() == "content-type" for k in headers or {}):
        headers = {**(headers or {}), "Content-Type": "application/json"}
    return text, headers


def _ok(data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, separators=(",", ":")))],
        structured_content=data,
    )


# What a model should do next, by code: the vault's own next steps speak to the owner at a shell
# ("run `keysafe unlock`"), which a model can neither run nor should suggest.
MODEL_NEXT: Final[dict[str, str]] = {
    "MALFORMED_REQUEST": "fix the arguments as the message says and call again; if it names "
    "something only the user can set up, tell the user.",
    "NOT_FOUND": "call list_capabilities for the names you may use.",
    "POLICY_DENIED": "the owner's policy refuses this; change the request to fit it "
    "(list_capabilities describes it) or tell the user. Do not repeat the same request.",
    "BUDGET_EXCEEDED": "the budget for this is spent for now; list_capabilities shows what is "
    "left per window. Tell the user; do not retry.",
    "APPROVAL_REQUIRED": "wait for the owner with approval_status.",
    "IDEMPOTENCY_CONFLICT": "this idempotency_key was used for a different request; use a new "
    "key for a new request.",
    "REQUEST_IN_PROGRESS": "the first request with this idempotency_key is still running; call "
    "again with the same key in a few seconds.",
    "RATE_LIMITED": "wait a few seconds, then try once more.",
    "NOT_AUTHENTICATED": "keysafe does not accept this agent's token (wrong or revoked); tell "
    "the user, who manages agents in keysafe.",
    "VAULT_LOCKED": "the vault is locked; tell the user that the owner must unlock it, then "
    "try again.",
    "PAYLOAD_TOO_LARGE": "send less: split the request or shorten the body.",
    "CHAIN_UNAVAILABLE": "the chain's RPC did not answer; try again later or tell the user.",
    "UPSTREAM_UNAVAILABLE": "the API the call was for did not answer or broke off; try again "
    "later or tell the user.",
    "VAULT_UNREACHABLE": "keysafe is not running or not reachable; tell the user.",
    "KMS_UNAVAILABLE": "the vault's key provider (KMS) is down or refusing, so the vault stays "
    "locked; tell the user that the owner must fix the KMS.",
}
_GENERIC_NEXT: Final = "tell the user what happened (quote the message); do not retry blindly."


def model_next(code: str, vault_next: str) -> str:
    """The next step for a model: the vault's own when it names nothing a model cannot do (a
    command, a flag, an environment variable, a URL), else the one for its code."""
    shell = ("`", "keysafe ", "KEYSAFE_", "--", "http://", "https://", "/v1/")
    if vault_next and not any(mark in vault_next for mark in shell):
        return vault_next
    return MODEL_NEXT.get(code, _GENERIC_NEXT)


def argument_error(tool: str, exc: ValidationError) -> MalformedRequestError:
    """One line per wrong argument (which and why); never the value sent, nor pydantic's links."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"'{where}': {err['msg']}")
    return MalformedRequestError(
        f"{tool} was called with a wrong argument: {'; '.join(parts)}.",
        next_step=f"fix that argument and call {tool} again.",
    )


def refusal(exc: KeysafeError) -> CallToolResult:
    """A tool error a model can act on: code first, then what happened, then what to do.

    No structured content: a host built on the TypeScript SDK (Claude Desktop, Cursor, the MCP
    Inspector) validates structured content against the tool's output schema even on an error,
    rejects the whole result when it does not match, and the model never sees the refusal. The
    error object travels as a second text block (JSON) for programs that want the fields.
    """
    err = exc.to_dict()
    err["next"] = model_next(str(err["code"]), str(err["next"]))
    text = f"{err['code']}: {err['message']} Next: {err['next']}"
    return CallToolResult(
        content=[
            TextContent(type="text", text=text),
            TextContent(type="text", text=json.dumps({"error": err}, separators=(",", ":"))),
        ],
        is_error=True,
    )


def _drop_none(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


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

    async def run(
        ctx: Context, call: Callable[[AgentClient], Awaitable[dict[str, Any]]]
    ) -> CallToolResult:
        try:
            client = client_for(ctx)
            try:
                return _ok(await call(client))
            finally:
                await client.aclose()
        except KeysafeError as exc:
            return refusal(exc)

    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    acts = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)

    @mcp.tool(annotations=read_only)
    async def list_capabilities(ctx: Context) -> Annotated[CallToolResult, Capabilities]:
        """What you may do: your wallets (name, chain, address), the API credentials you may
        use (name, hosts), data you may read, your policy in plain words, and the budget left
        per rule and window. Call this first; it costs nothing and changes nothing."""
        return await run(ctx, lambda c: c.capabilities())

    @mcp.tool(annotations=read_only)
    async def get_address(
        ctx: Context,
        wallet: Annotated[str, Field(description='Wallet name, e.g. "main".', max_length=64)],
    ) -> Annotated[CallToolResult, Address]:
        """The public address of one of your wallets and its chain family (evm or solana)."""
        return await run(ctx, lambda c: c.address(wallet))

    def transaction_tool(send: bool) -> Callable[..., Awaitable[CallToolResult]]:
        async def tool(
            ctx: Context,
            wallet: Wallet,
            transaction: Transaction,
            description: Description = None,
            idempotency_key: IdemKey = None,
            chain: ChainName = None,
        ) -> Annotated[CallToolResult, TransactionResult]:
            body = _drop_none(
                wallet=wallet, transaction=transaction, description=description,
                idempotency_key=idempotency_key, chain=chain,
            )  # fmt: skip

            async def act(c: AgentClient) -> dict[str, Any]:
                share = await shares_for(ctx).current(wallet)
                if share is not None:  # a 2-of-3 wallet: the agent's share takes part
                    body["threshold"] = await threshold.transaction_part(
                        c, share, wallet, transaction, chain, own_policy
                    )
                return await c.sign_transaction(body, send=send)

            return await run(ctx, act)

        return tool

    mcp.add_tool(
        transaction_tool(send=False),
        name="sign_transaction",
        annotations=acts,
        description="Sign a transaction with a vault wallet, if the owner's policy allows it. "
        'Returns status "signed" with signed_transaction and tx_hash (not broadcast), or status '
        '"pending_approval" with approval_id: then call approval_status.',
    )
    mcp.add_tool(
        transaction_tool(send=True),
        name="send_transaction",
        annotations=acts,
        description="Sign and broadcast a transaction through the chain's configured RPC. "
        'Returns status "sent" with tx_hash, or "pending_approval" with approval_id (then call '
        "approval_status). Pass an idempotency_key so a retry never pays twice.",
    )

    @mcp.tool(annotations=acts)
    async def transfer(
        ctx: Context,
        wallet: Wallet,
        asset: Annotated[
            str,
            Field(
                description='"native" for the chain\'s own coin (ETH, SOL), or a token symbol '
                'your policy names, e.g. "USDC" (or the token\'s contract or mint address).',
                max_length=64,
            ),
        ],
        to: Annotated[
            str,
            Field(
                description="The recipient's address. For a Solana token give the owner's "
                "wallet address, not a token account.",
                max_length=64,
            ),
        ],
        amount: Annotated[
            str,
            Field(
                description='How much, as a decimal string in whole units: "0.5" ETH, '
                '"12.5" USDC (not base units, not a number type).',
                max_length=100,
            ),
        ],
        chain: Annotated[
            str | None,
            Field(
                description='Chain name, e.g. "base" or "solana". Needed for the native coin '
                "and for tokens on several chains.",
                max_length=64,
            ),
        ] = None,
        description: Description = None,
        idempotency_key: IdemKey = None,
    ) -> Annotated[CallToolResult, TransactionResult]:
        """Send coins or tokens without building a transaction: keysafe builds it (an ERC-20
        or SPL transfer, creating the recipient's token account if needed; nonce, fees and
        blockhash from the chain), judges it by your policy, signs and broadcasts it. Returns
        status "sent" with tx_hash, or "pending_approval" with approval_id (then call
        approval_status). Pass an idempotency_key so a retry never pays twice."""
        body = _drop_none(
            wallet=wallet, asset=asset, to=to, amount=amount, chain=chain,
            description=description, idempotency_key=idempotency_key,
        )  # fmt: skip
        return await run(ctx, lambda c: c.transfer(body))

    @mcp.tool(annotations=acts)
    async def sign_message(
        ctx: Context,
        wallet: Wallet,
        message: Annotated[
            str,
            Field(description="The message, e.g. a Sign-In with Ethereum text.", max_length=65536),
        ],
        encoding: Annotated[
            Literal["utf8", "base64"],
            Field(description='"utf8" (default) or "base64" for raw bytes.'),
        ] = "utf8",
    ) -> Annotated[CallToolResult, SignatureResult]:
        """Sign a message (EIP-191 personal_sign on EVM, ed25519 on Solana). Returns the
        signature, or pending_approval with approval_id."""
        body: dict[str, Any] = {"wallet": wallet, "message": message, "encoding": encoding}

        async def act(c: AgentClient) -> dict[str, Any]:
            share = await shares_for(ctx).current(wallet)
            if share is not None:  # a 2-of-3 wallet: the agent's share signs the same bytes
                body["threshold"] = await threshold.message_part(
                    c, share, wallet, message, encoding, own_policy
                )
            return await c.sign_message(body)

        return await run(ctx, act)

    @mcp.tool(annotations=acts)
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
        body: dict[str, Any] = {"wallet": wallet, "typed_data": typed_data}

        async def act(c: AgentClient) -> dict[str, Any]:
            share = await shares_for(ctx).current(wallet)
            if share is not None:  # a 2-of-3 wallet: the agent's rounds over the same digest
                body["threshold"] = await threshold.typed_data_part(
                    c, share, wallet, typed_data, own_policy
                )
            return await c.sign_typed_data(body)

        return await run(ctx, act)

    @mcp.tool(annotations=acts)
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
        req = _drop_none(credential=credential, method=method, url=url, headers=headers, body=text)
        return await run(ctx, lambda c: c.http_request(req))

    @mcp.tool(annotations=read_only)
    async def read_data(
        ctx: Context,
        name: Annotated[str, Field(description='Data name, e.g. "profile.email".')],
        fields: Annotated[
            list[str] | None, Field(description="Only these fields of a JSON record.")
        ] = None,
    ) -> Annotated[CallToolResult, DataResult]:
        """Read a piece of the owner's data your policy allows (status "value" with the value).
        Sensitive data always needs the owner's approval first (pending_approval)."""
        req = _drop_none(name=name, fields=fields)
        return await run(ctx, lambda c: c.read_data(req))

    @mcp.tool(annotations=read_only)
    async def approval_status(
        ctx: Context,
        approval_id: Annotated[str, Field(description='From a pending answer, "apr_…".')],
        wait_seconds: Annotated[
            int, Field(ge=0, le=60, description="Wait up to this long for a decision (0-60).")
        ] = 0,
    ) -> Annotated[CallToolResult, ApprovalResult]:
        """Where an approval stands: pending, approved (with result: exactly what the original
        tool returns), denied, expired, or failed. Pass wait_seconds to wait for the owner."""
        return await run(ctx, lambda c: c.approval(approval_id, wait=wait_seconds))

    @mcp.tool(annotations=read_only)
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
    ) -> Annotated[CallToolResult, CheckResult]:
        """Ask before you act: would this call be allowed, need the owner's approval (ask), or
        be denied, and by which rule and why? Nothing is signed, sent, reserved or recorded."""
        body = dict(arguments)
        if tool == "http_request":
            body["body"], body["headers"] = request_body(body.get("body"), body.get("headers"))
        return await run(ctx, lambda c: c.check(tool, _drop_none(**body)))

    @mcp.tool(annotations=read_only)
    async def list_pending_approvals(ctx: Context) -> Annotated[CallToolResult, PendingList]:
        """Your requests still waiting for the owner: approval_id, summary and expiry of each.
        Follow one with approval_status."""
        return await run(ctx, lambda c: c.pending_approvals())

    return mcp
