"""Validated inputs and typed results shared by every surface (CLI today; HTTP and MCP later)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from keysafe.crypto.secret import SecretBytes as SecretBytes  # surfaces never import crypto/
from keysafe.errors import MalformedRequestError

NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
HOST_RE: Final = re.compile(
    r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*(:\d{1,5})?$"
)


class DataClass(StrEnum):
    STANDARD = "standard"  # may be read by agents under policy
    SENSITIVE = "sensitive"  # read only with the owner's approval
    CRITICAL = "critical"  # wallet keys, recovery material: never leaves the vault


class RecordKind(StrEnum):
    CREDENTIAL = "credential"
    DATA = "data"
    WALLET = "wallet"
    HD_SEED = "hd_seed"


def check_name(name: str, what: str) -> str:
    """`name`, if it is a valid name for a `what` (1-64 letters, digits, '.', '_', '-').

    Raises:
        MalformedRequestError: it is not.
    """
    if not NAME_RE.match(name):
        raise MalformedRequestError(
            f"'{name[:80]}' is not a valid {what} name.",
            next_step="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
        )
    return name


def check_host(host: str) -> str:
    """`host` lower-cased, if it is a bare host name (with an optional port).

    Raises:
        MalformedRequestError: it has a scheme or a path, or is not a host name.
    """
    host = host.strip().lower()
    if not HOST_RE.match(host) or "://" in host:
        raise MalformedRequestError(
            f"'{host[:100]}' is not a host name.",
            next_step="give a bare host such as api.github.com or localhost:8080 (no scheme, "
            "no path).",
        )
    return host


class Attachment(BaseModel):
    """How a credential is attached to an outgoing request (the secret fills `{secret}`)."""

    # forbid: an owner operation carries it over the wire, and an unknown field is a mistake.
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str  # header | basic | query
    name: str
    template: str

    @classmethod
    def header(cls, spec: str) -> Attachment:
        name, sep, template = spec.partition(":")
        name, template = name.strip(), template.strip()
        if not sep or not name or not re.match(r"^[A-Za-z0-9-]+$", name):
            raise MalformedRequestError(
                f"'{spec[:100]}' is not a header template.",
                next_step='write it as "Name: value with {secret}", e.g. '
                '"Authorization: Bearer {secret}".',
            )
        if template.count("{secret}") != 1:
            raise MalformedRequestError(
                "A header template must contain {secret} exactly once.",
                next_step='e.g. --header "Authorization: Bearer {secret}".',
            )
        return cls(type="header", name=name, template=template)

    @classmethod
    def bearer(cls) -> Attachment:
        return cls(type="header", name="Authorization", template="Bearer {secret}")

    @classmethod
    def basic(cls, user: str) -> Attachment:
        if ":" in user:
            raise MalformedRequestError(
                "A basic-auth user name cannot contain ':'.", next_step="give the user name alone."
            )
        return cls(type="basic", name=user, template="{secret}")

    @classmethod
    def query(cls, param: str) -> Attachment:
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", param):
            raise MalformedRequestError(
                f"'{param[:64]}' is not a query parameter name.",
                next_step="use letters, digits, '_', '.' or '-'.",
            )
        return cls(type="query", name=param, template="{secret}")

    def checked(self) -> Attachment:
        """This attachment built again by its type's constructor, so one that arrived over the
        wire (an owner operation sent to the server) obeys the same rules as one typed at the CLI.

        Raises:
            MalformedRequestError: an unknown type, or parts its constructor would not make.
        """
        if self.type == "header":
            made = Attachment.header(f"{self.name}: {self.template}")
        elif self.type == "basic":
            made = Attachment.basic(self.name)
        elif self.type == "query":
            made = Attachment.query(self.name)
        else:
            raise MalformedRequestError(
                f"'{self.type[:20]}' is not a way to attach a credential.",
                next_step="use header, basic or query.",
            )
        if made != self:
            raise MalformedRequestError(
                "The credential's attachment does not match its type.",
                next_step="build it with --header, --bearer, --basic or --query.",
            )
        return made


# -- wire requests shared by HTTP, MCP and the relay ----------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignTransactionRequest(_Wire):
    wallet: str = Field(max_length=64, examples=["main"])
    transaction: dict[str, Any] | str = Field(
        description="EVM: a JSON transaction (hex or decimal values) or unsigned RLP hex; "
        "Solana: the serialized transaction, base64."
    )
    chain: str | None = Field(
        default=None,
        max_length=64,
        description="Chain name; EVM takes chainId from the transaction.",
    )
    description: str | None = Field(
        default=None, max_length=500, description="Why, in the agent's words (shown to the owner)."
    )
    declared: dict[str, Any] | None = Field(
        default=None,
        description="What the agent believes the transaction does: asset, amount, to…; must match.",
    )
    idempotency_key: str | None = Field(default=None, max_length=200)
    threshold: dict[str, str] | None = Field(
        default=None,
        description="For a 2-of-3 wallet: the agent's part (session_id, hiding, binding, share, "
        "hex), built by keysafe's agent client after POST /v1/agent/threshold/commit.",
    )


class ThresholdCommitRequest(_Wire):
    wallet: str = Field(max_length=64, examples=["team"])


class ThresholdExchangeRequest(_Wire):
    """Step 2 of a 2-of-3 EVM (DKLs23) signature: the agent's round 1 for the session it got
    from /v1/agent/threshold/commit, and what it is for (the vault hashes that itself)."""

    wallet: str = Field(max_length=64, examples=["team"])
    session_id: str = Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")
    round1: str = Field(max_length=64 * 1024, description="The agent's round-one message, base64.")
    verifying_share: str = Field(
        min_length=66,
        max_length=66,
        pattern="^0[23][0-9a-f]{64}$",
        description="The agent's verifying share (which share, which generation), hex.",
    )
    transaction: str | dict[str, Any] | None = Field(
        default=None, description="The complete unsigned EVM transaction to be signed."
    )
    chain: str | None = Field(default=None, max_length=64)
    message: str | None = Field(
        default=None, max_length=65536, description="Or: the message for sign_message."
    )
    encoding: str = Field(default="utf8", pattern="^(utf8|base64)$")
    typed_data: dict[str, Any] | None = Field(
        default=None, description="Or: the EIP-712 typed data for sign_typed_data."
    )


class SignMessageRequest(_Wire):
    wallet: str = Field(max_length=64)
    message: str = Field(max_length=65536)
    encoding: str = Field(default="utf8", pattern="^(utf8|base64)$")
    idempotency_key: str | None = Field(default=None, max_length=200)
    threshold: dict[str, str] | None = Field(
        default=None,
        description="For a 2-of-3 wallet: the agent's part over the message bytes, built by "
        "keysafe's agent client (as for sign-transaction).",
    )


class SignTypedDataRequest(_Wire):
    wallet: str = Field(max_length=64)
    typed_data: dict[str, Any]
    idempotency_key: str | None = Field(default=None, max_length=200)
    threshold: dict[str, str] | None = Field(
        default=None,
        description="For a 2-of-3 wallet: the agent's DKLs23 rounds over the EIP-712 digest, "
        "built by keysafe's agent client (as for sign-message).",
    )


class TransferRequest(_Wire):
    """Send an asset by name and amount; keysafe builds the transaction (POST /v1/agent/transfer)."""  # noqa: E501 - the OpenAPI description, kept on one line

    wallet: str = Field(max_length=64, examples=["main"])
    asset: str = Field(
        max_length=64,
        examples=["USDC"],
        description='"native" for the chain\'s own coin (ETH, SOL), a token symbol registered on '
        "the chain (e.g. USDC), or the token's contract (EVM) or mint (Solana) address.",
    )
    to: str = Field(
        max_length=64,
        description="The recipient's address; for a Solana token, the owner's wallet address "
        "(keysafe derives its token account and creates it when missing).",
    )
    amount: str = Field(
        max_length=100,
        examples=["12.5"],
        description='A decimal string in whole units: "0.5" ETH, "12.5" USDC (not base units).',
    )
    chain: str | None = Field(
        default=None,
        max_length=64,
        description="Chain name, e.g. base or solana; needed when the asset is on several chains.",
    )
    description: str | None = Field(
        default=None, max_length=500, description="Why, in the agent's words (shown to the owner)."
    )
    idempotency_key: str | None = Field(default=None, max_length=200)


class TransferSent(BaseModel):
    """A transfer that was signed and broadcast (HTTP 200)."""

    status: Literal["sent"]
    wallet: str
    address: str
    chain: str
    summary: str = Field(description="What the transaction does, as the policy judged it.")
    request_id: str
    signed_transaction: str
    tx_hash: str = Field(description="EVM transaction hash, or the Solana signature.")


def pending_answer(approval_id: str | None, expires_at: str | None, summary: str) -> dict[str, Any]:
    """The wire form of a use case's answer that waits on the owner's approval."""
    return {
        "status": "pending_approval",
        "approval_id": approval_id,
        "expires_at": expires_at,
        "summary": summary,
    }


class TransferPending(BaseModel):
    """A transfer waiting for the owner's approval (HTTP 202); follow it with GET
    /v1/agent/approvals/{approval_id}: once approved, its result is a TransferSent."""

    status: Literal["pending_approval"]
    approval_id: str
    expires_at: str
    summary: str


class ReadDataRequest(_Wire):
    name: str = Field(max_length=64, examples=["profile.email"])
    fields: list[str] | None = Field(
        default=None, max_length=100, description="Only these fields of a JSON record."
    )


class HttpRequestRequest(_Wire):
    credential: str = Field(max_length=64, examples=["github"])
    method: str = Field(max_length=10, examples=["GET"])
    url: str = Field(max_length=4096, examples=["https://api.github.com/repos/octocat/hello-world"])
    headers: dict[str, str] | None = Field(
        default=None, description="Extra headers (never Authorization)."
    )
    body: str | None = Field(default=None, max_length=512 * 1024)
    body_base64: str | None = Field(
        default=None,
        max_length=699_052,  # 512 KiB of bytes, base64-encoded
        description="A binary body (an image, a file), base64-encoded; instead of `body`.",
    )


class CheckRequest(_Wire):
    """A dry run: what `request` (the body of the `action` route) would get now."""

    action: str = Field(
        max_length=32,
        examples=["sign_transaction"],
        description="sign_transaction, send_transaction, transfer, sign_message, "
        "sign_typed_data, http_request, read_data or release_credential.",
    )
    request: dict[str, Any] = Field(description="The body that route takes, unchanged.")


class ReleaseRequest(_Wire):
    credential: str = Field(max_length=64, examples=["github"])
    purpose: str | None = Field(
        default=None, max_length=200, description="What the process is, shown to the owner."
    )


class LoginRequest(_Wire):
    """The passphrase; or, for a vault a KMS wraps (no passphrase), a challenge from
    GET /v1/login-challenge and the owner's proof over it."""

    passphrase: str | None = Field(default=None, min_length=1, max_length=1024)
    challenge: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    proof: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class ApproveRequest(_Wire):
    for_seconds: int | None = Field(
        default=None, ge=1, le=7 * 86400, description="Approve for a while."
    )
    words: str | None = Field(
        default=None,
        max_length=200,
        description="A pairing's four words, as the sidecar shows them (pairings only).",
    )


class DenyRequest(_Wire):
    reason: str | None = Field(
        default=None,
        max_length=300,  # keysafe.approvals.MAX_REASON
        description="Why, for the agent (shown to it as plain text).",
    )


class SealRequest(BaseModel):
    """The audit entries the owner reviewed and seals (`POST /v1/owner/audit/seal`)."""

    model_config = ConfigDict(extra="forbid")

    # Up to 2^53 - 1: the audit log stores them as canonical JSON (RFC 8785), which allows no more.
    seqs: list[Annotated[int, Field(ge=1, le=2**53 - 1)]] = Field(max_length=10_000)
