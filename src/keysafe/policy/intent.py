"""The decoded intent a policy judges: what the agent's request would actually do.

Built from decoded raw material (chains/), or, for `keysafe policy check`, from a JSON file. The
same type flows from every surface, so a rule holds everywhere at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keysafe.errors import MalformedRequestError

UNLIMITED = "unlimited"


class Intent(BaseModel):
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
        return bool(self.unlimited) or (self.amount or "").strip().lower() == UNLIMITED


def intent_from_json(raw: Any, *, source: str = "request") -> Intent:
    if not isinstance(raw, dict):
        raise MalformedRequestError(
            f"{source} must be a JSON object with at least an 'action'.",
            next_step='e.g. {"action": "evm.transfer", "chain": "base", "asset": "USDC", "amount": "12.5", "to": "0x…"}',
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
