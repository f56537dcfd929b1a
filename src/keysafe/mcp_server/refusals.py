"""Refusals a model can act on: the stable code first, what happened, and what to do next.

The vault's own next steps speak to the owner at a shell ("run `keysafe unlock`"), which a model
can neither run nor should suggest; `model_next` swaps those for one written for a model.
"""

from __future__ import annotations

import json
from typing import Final

from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError

from keysafe.errors import KeysafeError, MalformedRequestError

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
