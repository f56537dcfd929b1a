"""EIP-712 typed data (eth_signTypedData_v4) read strictly: its shape, its encoding by the encoder
that signs it, its domain, and the typed values a recogniser reads from its message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from eth_account._utils.encode_typed_data.encoding_and_hashing import get_primary_type
from eth_account.messages import SignableMessage, _hash_eip191_message, encode_typed_data

from keysafe.chains.addresses import checksum_or_none
from keysafe.chains.evm.intents._common import bad
from keysafe.chains.evm.intents._summary import clean
from keysafe.chains.evm.tx import UINT256_MAX
from keysafe.policy.intent import EvmOrigin
from keysafe.policy.registry import ChainInfo, Registry

logger = logging.getLogger(__name__)

MAX_TYPED_DATA_CHARS: Final = 256 * 1024
Shape = tuple[tuple[str, str], ...]  # a struct's (name, type) fields, in order

_TOP_KEYS: Final = frozenset({"types", "primaryType", "domain", "message"})
_TYPE_NAME: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,99}")
# EIP-712's domain fields, in the order eth-account hashes them.
_DOMAIN_FIELDS: Final = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("salt", "bytes32"),
)


def _check_top(doc: Any) -> None:
    if not isinstance(doc, Mapping):
        bad("typed data must be a JSON object with types, primaryType, domain and message.")
    unknown = sorted(str(k)[:40] for k in doc if k not in _TOP_KEYS)
    if unknown:
        bad(
            f"typed data has unknown field(s): {', '.join(unknown[:5])}.",
            next_step="send only types, primaryType, domain and message.",
        )
    for key in ("types", "domain", "message"):
        if not isinstance(doc.get(key), Mapping):
            bad(f"typed data needs '{key}' as a JSON object.")
    if "primaryType" in doc and not isinstance(doc["primaryType"], str):
        bad("typed data 'primaryType' must be a string.")
    try:
        size = len(json.dumps(doc))
    except (TypeError, ValueError):
        bad("typed data must contain only JSON values.")
    if size > MAX_TYPED_DATA_CHARS:
        bad(f"typed data is larger than {MAX_TYPED_DATA_CHARS} characters.")


def _check_types(types: Mapping[str, Any]) -> None:
    for name, fields in types.items():
        if not isinstance(fields, list) or not all(
            isinstance(f, Mapping)
            and set(f) == {"name", "type"}
            and isinstance(f["name"], str)
            and isinstance(f["type"], str)
            for f in fields
        ):
            bad(f"typed data type '{clean(str(name), 40)}' must be a list of {{name, type}}.")


def _check_domain_fields(types: Mapping[str, Any], domain: Mapping[str, Any]) -> None:
    allowed = dict(_DOMAIN_FIELDS)
    unknown_domain = sorted(str(k)[:40] for k in domain if k not in allowed)
    if unknown_domain:
        bad(f"typed data domain has unknown field(s): {', '.join(unknown_domain[:5])}.")
    if "EIP712Domain" in types:
        # eth-account hashes the domain with the canonical field types and order whatever
        # `types.EIP712Domain` says; a different declaration would make the signature differ from
        # what the app verifies, so it is refused rather than silently signed differently.
        declared = [(f["name"], f["type"]) for f in types["EIP712Domain"]]
        canonical = [(n, t) for n, t in _DOMAIN_FIELDS if n in domain]
        if declared != canonical:
            bad(
                "typed data types.EIP712Domain must list the domain's fields in the order name, "
                "version, chainId, verifyingContract, salt with types string, string, uint256, "
                "address, bytes32."
            )


def encode_typed(doc: Mapping[str, Any]) -> SignableMessage:
    """Validate typed data and encode it with eth-account (the encoder that signs it).

    Raises:
        MalformedRequestError: not EIP-712 typed data v4, or rejected by the encoder.
    """
    _check_top(doc)
    _check_types(doc["types"])
    _check_domain_fields(doc["types"], doc["domain"])
    failure: str | None = None
    try:
        signable = encode_typed_data(full_message=dict(doc))
    except Exception as exc:  # the encoder raises ValueError, TypeError, eth-abi errors, …
        failure = clean(str(exc), 100) or type(exc).__name__
    if failure is not None:
        bad(
            f"typed data is not valid EIP-712: {failure}",
            next_step="fix the types or message so that every field matches its declared type.",
        )
    return signable


def typed_data_digest(doc: Mapping[str, Any]) -> bytes:
    """keccak256(0x19 0x01 ‖ domainSeparator ‖ hashStruct(message)): the 32 bytes signed.

    Raises:
        MalformedRequestError: as `encode_typed`.
    """
    return bytes(_hash_eip191_message(encode_typed(doc)))


# --------------------------------------------------------------------------------------------
# Typed values, read the way eth-account encodes them


def read_uint(name: str, value: Any) -> int:
    """A uint from typed data, read the way eth-account encodes it, or refused."""
    if isinstance(value, bool):
        bad(f"typed data field {name} must be a number.")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{1,64}", value):
        number = int(value, 16)
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,78}", value):
        number = int(value)
    else:
        bad(f"typed data field {name} must be a whole number (decimal or 0x hex).")
    if not 0 <= number <= UINT256_MAX:
        bad(f"typed data field {name} is outside 0..2^256-1.")
    return number


def read_address(name: str, value: Any) -> str:
    """An address from typed data, EIP-55 checksummed, or refused."""
    address = checksum_or_none(value)
    if address is None:
        valid = "is not a valid address" if isinstance(value, str) else "must be an address"
        bad(f"typed data field {name} {valid}.")
    return address


def read_bytes(name: str, value: Any) -> bytes:
    """0x-prefixed hex bytes from typed data, or refused."""
    if not isinstance(value, str) or not re.fullmatch(r"0x(?:[0-9a-fA-F]{2})*", value):
        bad(f"typed data field {name} must be 0x-prefixed hex bytes.")
    return bytes.fromhex(value[2:])


def _read_domain(doc: Mapping[str, Any], chain: ChainInfo, chain_id: int) -> dict[str, Any]:
    raw = doc["domain"]
    out: dict[str, Any] = {}
    for key in ("name", "version"):
        if key in raw:
            if not isinstance(raw[key], str):
                bad(f"typed data domain {key} must be a string.")
            out[key] = raw[key][:200]
    if "chainId" in raw:
        out["chainId"] = read_uint("domain.chainId", raw["chainId"])
        if out["chainId"] != chain_id:
            bad(
                f"the typed data is for chain id {out['chainId']}, but the request is for "
                f"{chain.name} (chain id {chain_id}).",
                next_step="sign it on the chain it names.",
            )
    if "verifyingContract" in raw:
        out["verifyingContract"] = read_address(
            "domain.verifyingContract", raw["verifyingContract"]
        )
    if "salt" in raw:
        out["salt"] = str(raw["salt"])[:66]
    return out


@dataclass(frozen=True, slots=True)
class TypedMessage:
    """Valid typed data, as its recognisers read it, and where it is to be signed."""

    primary: str
    types: Mapping[str, Any]  # without EIP712Domain
    domain: dict[str, Any]  # read: chainId checked, verifyingContract checksummed
    message: Mapping[str, Any]
    registry: Registry
    chain: ChainInfo
    wallet_address: str | None  # the signing wallet; None when only decoding for display

    @property
    def shape(self) -> Shape:
        """The (name, type) fields of the primary type."""
        return self.fields(self.primary)

    @property
    def verifying(self) -> str | None:
        """The domain's verifyingContract, if it names one."""
        return self.domain.get("verifyingContract")

    @property
    def origin(self) -> EvmOrigin:
        """What every intent of this message carries: its domain and primaryType."""
        return {"domain": self.domain, "primary_type": self.primary}

    @property
    def label(self) -> str:
        """The primary type's name, cleaned for a summary."""
        return clean(self.primary, 40)

    def fields(self, name: str) -> Shape:
        """The (name, type) fields of struct `name`; empty when it is not declared."""
        return tuple((f["name"], f["type"]) for f in self.types.get(name, ()))

    def uint(self, name: str) -> int:
        """Message field `name` as a uint, or refused."""
        return read_uint(name, self.message.get(name))

    def address(self, name: str) -> str:
        """Message field `name` as a checksummed address, or refused."""
        return read_address(name, self.message.get(name))

    def bytes_of(self, name: str) -> bytes:
        """Message field `name` as hex bytes, or refused."""
        return read_bytes(name, self.message.get(name))


def read_typed(
    doc: Mapping[str, Any],
    *,
    registry: Registry,
    chain: ChainInfo,
    chain_id: int,
    wallet_address: str | None,
) -> TypedMessage:
    """`doc` validated and encoded (`encode_typed`), its domain read against `chain`.

    Raises:
        MalformedRequestError: invalid typed data, a bad primaryType, or a domain chainId for
            another chain.
    """
    encode_typed(doc)
    types = {k: v for k, v in doc["types"].items() if k != "EIP712Domain"}
    primary = doc.get("primaryType")
    if primary is None:
        primary = get_primary_type(types)  # encode_typed succeeded, so this does too
    if not _TYPE_NAME.fullmatch(primary):
        bad("typed data primaryType must be a struct name of at most 100 letters, digits, _ or $.")
    return TypedMessage(
        primary=primary,
        types=types,
        domain=_read_domain(doc, chain, chain_id),
        message=doc["message"],
        registry=registry,
        chain=chain,
        wallet_address=wallet_address,
    )
