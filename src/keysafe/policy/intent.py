"""The decoded intent a policy judges: what the agent's request would actually do.

Built from decoded raw material (chains/), or, for `keysafe policy check`, from a JSON file. The
same type flows from every surface, so a rule holds everywhere at once.

Code builds an intent only through the per-action constructors below (`Intent.evm_transfer`,
`Intent.http_request`, …): each names the fields its action carries, so no decoder can set the
action to one thing and fill the fields of another. Only a JSON request file (`intent_from_json`)
and a stored approval are read back with `Intent.model_validate`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keysafe.errors import MalformedRequestError

UNLIMITED = "unlimited"


class EvmOrigin(TypedDict, total=False):
    """How an EVM intent was reached: the fee a transaction pays, or the typed data signed."""

    fee: str | None
    domain: dict[str, Any] | None
    primary_type: str | None


class EvmFields(EvmOrigin, total=False):
    """What an EVM transfer, approval or call may carry beside its chain."""

    asset: str | None
    amount: str | None
    unlimited: bool | None
    spender: str | None
    contract: str | None
    selector: str | None
    function: str | None


class SolanaMove(TypedDict, total=False):
    """What a Solana transaction moves, beside its action: the fields its decoder fills."""

    fee: str | None
    asset: str | None
    amount: str | None
    unlimited: bool | None
    to: str | None
    spender: str | None
    contract: str | None
    function: str | None


class Intent(BaseModel):
    """What a request would do, as decoded from its raw material: what a policy judges."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str = Field(min_length=1, max_length=64)
    chain: str | int | None = None
    # The vault wallet that would sign (set by the service from the request, never decoded):
    # rules scope signing actions to named wallets.
    wallet: str | None = Field(default=None, max_length=64)
    asset: str | None = Field(default=None, max_length=100)
    amount: str | None = Field(default=None, max_length=100)  # token units, or "unlimited"
    # The most the network fee can cost, in the chain's native units (EVM: gas × max fee per
    # gas; Solana: base + priority fee). Charged to native caps and windows with the value.
    fee: str | None = Field(default=None, max_length=100)
    to: str | None = Field(default=None, max_length=100)
    spender: str | None = Field(default=None, max_length=100)
    contract: str | None = Field(default=None, max_length=100)
    selector: str | None = Field(default=None, max_length=10)
    credential: str | None = Field(default=None, max_length=64)
    method: str | None = Field(default=None, max_length=16)
    url: str | None = Field(default=None, max_length=4096)
    message: str | None = Field(default=None, max_length=65536)
    function: str | None = Field(default=None, max_length=200)  # e.g. "transfer(address,uint256)"
    domain: dict[str, Any] | None = (
        None  # EIP-712 domain: name, version, chainId, verifyingContract
    )
    # EIP-712 primaryType of a typed-data request (permits too): rules can name it.
    primary_type: str | None = Field(default=None, max_length=100)
    data: str | None = Field(default=None, max_length=64)
    fields: list[str] | None = None
    unlimited: bool | None = None
    summary: str | None = Field(default=None, max_length=500)
    time: datetime | None = None  # evaluate at this moment (dry runs only)

    @field_validator("time")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v

    @property
    def is_unlimited(self) -> bool:
        """True for an unlimited amount (flagged, or the word "unlimited")."""
        return bool(self.unlimited) or (self.amount or "").strip().lower() == UNLIMITED

    def with_summary(self, summary: str) -> Intent:
        """This intent with its one-line description for the owner; the caller keeps it within
        500 characters (a copy is not validated again)."""
        return self.model_copy(update={"summary": summary})

    # -- per-action constructors (module doc) ----------------------------------------------------

    @classmethod
    def evm_transfer(cls, *, chain: str, to: str | None, **fields: Unpack[EvmFields]) -> Intent:
        """Native value or tokens leave the wallet (a transfer, a transfer authorization, …)."""
        return cls(action="evm.transfer", chain=chain, to=to, **fields)

    @classmethod
    def evm_approve(cls, *, chain: str, **fields: Unpack[EvmFields]) -> Intent:
        """`spender` may take tokens (or NFTs) of `contract` from the wallet later."""
        return cls(action="evm.approve", chain=chain, **fields)

    @classmethod
    def evm_call(cls, *, chain: str, **fields: Unpack[EvmFields]) -> Intent:
        """A call of `contract` that is not a recognised transfer or approval (`amount`
        attached)."""
        return cls(action="evm.call", chain=chain, to=fields.get("contract"), **fields)

    @classmethod
    def evm_deploy(
        cls, *, chain: str, fee: str | None, asset: str | None = None, amount: str | None = None
    ) -> Intent:
        """A contract creation (no recipient), with the native `amount` it endows."""
        return cls(action="evm.deploy", chain=chain, to=None, fee=fee, asset=asset, amount=amount)

    @classmethod
    def evm_sign_message(cls, *, chain: str, message: str) -> Intent:
        """personal_sign of `message` (text, or 0x-hex when the bytes are not text)."""
        return cls(action="evm.sign_message", chain=chain, message=message)

    @classmethod
    def evm_sign_typed_data(
        cls, *, chain: str, contract: str | None, domain: dict[str, Any], primary_type: str
    ) -> Intent:
        """EIP-712 typed data that moves no value keysafe can see."""
        return cls(
            action="evm.sign_typed_data",
            chain=chain,
            contract=contract,
            domain=domain,
            primary_type=primary_type,
        )

    @classmethod
    def solana_transfer(cls, *, chain: str, **move: Unpack[SolanaMove]) -> Intent:
        """SOL or SPL tokens leave the wallet."""
        return cls(action="solana.transfer", chain=chain, **move)

    @classmethod
    def solana_call(cls, *, chain: str, **move: Unpack[SolanaMove]) -> Intent:
        """A call to one program, with the value it also sends (if any)."""
        return cls(action="solana.call", chain=chain, **move)

    @classmethod
    def solana_approve(cls, *, chain: str, **move: Unpack[SolanaMove]) -> Intent:
        """A delegate may spend SPL tokens from one of the wallet's token accounts."""
        return cls(action="solana.approve", chain=chain, **move)

    @classmethod
    def solana_set_authority(cls, *, chain: str, **move: Unpack[SolanaMove]) -> Intent:
        """Control of an account (or a mint) passes to another key or program."""
        return cls(action="solana.set_authority", chain=chain, **move)

    @classmethod
    def solana_close_account(cls, *, chain: str, **move: Unpack[SolanaMove]) -> Intent:
        """A token account is closed and its whole lamport balance goes elsewhere."""
        return cls(action="solana.close_account", chain=chain, **move)

    @classmethod
    def solana_sign_message(cls, *, chain: str, message: str | None, summary: str) -> Intent:
        """An off-chain message (`message` is None when the bytes are not UTF-8 text)."""
        return cls(action="solana.sign_message", chain=chain, message=message, summary=summary)

    @classmethod
    def http_request(cls, *, credential: str, method: str, url: str, summary: str) -> Intent:
        """An HTTP request sent with a stored credential attached."""
        return cls(
            action="http.request", credential=credential, method=method, url=url, summary=summary
        )

    @classmethod
    def credential_release(cls, *, credential: str, summary: str) -> Intent:
        """A stored credential handed to a process: possession of the secret."""
        return cls(action="credential.release", credential=credential, summary=summary)

    @classmethod
    def data_read(cls, *, data: str, fields: list[str] | None, summary: str) -> Intent:
        """A stored data record read (all of it, or the named `fields`)."""
        return cls(action="data.read", data=data, fields=fields, summary=summary)


def intent_from_json(raw: Any, *, source: str = "request") -> Intent:
    """An intent from a JSON request (`keysafe policy check`).

    Raises:
        MalformedRequestError: not an object, or not a valid intent (the fields are named)."""
    if not isinstance(raw, dict):
        raise MalformedRequestError(
            f"{source} must be a JSON object with at least an 'action'.",
            next_step='e.g. {"action": "evm.transfer", "chain": "base", "asset": "USDC", '
            '"amount": "12.5", "to": "0x…"}',
        )
    try:
        return Intent.model_validate(raw)
    except ValidationError as exc:
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)[:5]
        ]
        raise MalformedRequestError(
            f"{source} is not a valid request: {'; '.join(parts)}.",
            next_step="fix the fields named above.",
        ) from None
