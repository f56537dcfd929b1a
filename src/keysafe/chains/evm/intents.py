"""What an EVM request would actually do, as the `Intent` a policy judges (DESIGN.md step 2).

Rules this module enforces:

- The intent is decoded from the raw material only; nothing the agent declares is trusted.
- A transaction is for the chain the policy evaluates: its chain id must equal the chain's.
- Token amounts are in token units (the registry's decimals). A token the registry does not know
  keeps its amount as the raw base-unit integer and its address as `asset`: the policy engine
  then refuses to judge it (UNKNOWN_ASSET), which is the safe outcome, and the owner can add the
  token to the registry to allow it. The summary says "base units of unknown token".
- An approval of 2^128 base units or more (including max uint256 and Permit2's max uint160),
  and setApprovalForAll(…, true), is unlimited: `amount="unlimited"`, `unlimited=True`.
- A token transfer or approval that also carries native value is not reduced to the token
  movement: it becomes an `evm.call` with the native amount, so no value is hidden.
- A transaction's intent carries its most expensive network fee, gas × (maxFeePerGas or
  gasPrice), in ETH (`fee`): the engine charges it to native caps and windows and holds it to the
  chain's fee ceiling. An L2's L1 data fee is not in the transaction and is not counted.
- EIP-712 typed data is validated with eth-account's encoder (the one that will sign it), its
  domain chainId must match the chain, and messages that move value are judged as what they do:
  permits (EIP-2612, DAI, ERC-4494, Permit2) become approvals or transfers; EIP-3009
  Transfer/ReceiveWithAuthorization (USDC, x402) become transfers of the token; ERC-2771
  ForwardRequest, MetaTransaction and Safe SafeTx become the inner call, decoded like a
  transaction's calldata. Each names its chain (domain chainId; MetaTransaction may use the salt).
  A typed message that looks like a permit but has an unknown shape is treated as an unlimited
  approval, never as harmless text; a value-moving type with an unknown shape is refused.
- Refused outright (PolicyDeniedError, UNJUDGEABLE_TYPED_DATA): Seaport orders, Safe delegatecalls
  and Safe transactions that refund gas (an amount keysafe cannot bound). An authorization or
  forwarded call whose `from` is not the signing wallet is refused as malformed.
- Every typed-data intent carries its `primary_type`; the engine refuses plain typed data for a
  registered token's contract unless a rule names that type and contract.
- Every intent carries a one-line summary for the owner; text from the request (domain names,
  messages) is cleaned of control and bidi characters and shortened before it is shown.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from eth_account._utils.encode_typed_data.encoding_and_hashing import get_primary_type
from eth_account.messages import SignableMessage, _hash_eip191_message, encode_typed_data
from pydantic import ValidationError

from keysafe.chains.addresses import to_checksum
from keysafe.chains.evm.abi import PERMIT2_ADDRESS, DecodedCall, decode_call, lookup
from keysafe.chains.evm.tx import UINT256_MAX, EvmTx
from keysafe.errors import MalformedRequestError, PolicyDeniedError
from keysafe.policy.intent import UNLIMITED, Intent
from keysafe.policy.registry import (
    AssetInfo,
    ChainInfo,
    Registry,
    UnknownName,
    from_base_units,
)

__all__ = [
    "UNLIMITED_FROM",
    "encode_typed",
    "intent_from_personal_message",
    "intent_from_tx",
    "intent_from_typed_data",
    "summarize",
    "typed_data_digest",
]

logger = logging.getLogger(__name__)

# Approvals at or above this many base units are unlimited. 2^128 is far beyond any real token
# supply, and wallets commonly approve max uint256 or max uint160 (Permit2): all are "unlimited".
UNLIMITED_FROM: Final = 2**128
MAX_MESSAGE_CHARS: Final = 65536  # Intent.message's limit
MAX_TYPED_DATA_CHARS: Final = 256 * 1024

_SIWE: Final = re.compile(r"\A(?P<domain>\S{1,253}) wants you to sign in\b")
_HEX_MESSAGE: Final = re.compile(r"0x(?:[0-9a-fA-F]{2})+")


def _bad(what: str, next_step: str = "fix the request and send it again.") -> NoReturn:
    raise MalformedRequestError(what, next_step=next_step)


def _refuse(what: str, next_step: str) -> NoReturn:
    """Well-formed, but keysafe cannot bound what signing it would give away."""
    raise PolicyDeniedError(
        f"{what} Nothing was signed.", next_step=next_step, reason_code="UNJUDGEABLE_TYPED_DATA"
    )


# --------------------------------------------------------------------------------------------
# Display helpers


def _short(address: str | None) -> str:
    if not address:
        return "nobody"
    return f"{address[:6]}…{address[-4:]}" if len(address) == 42 else _clean(address, 20)


def _clean(text: str, limit: int = 60) -> str:
    """Request text made safe to show: no control, format (bidi) or line characters, shortened."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        out.append(" " if cat[0] == "C" or cat in ("Zl", "Zp") else ch)
    cleaned = " ".join("".join(out).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _chain_label(chain: str | int | None) -> str:
    if chain is None:
        return "an unnamed chain"
    return str(chain).replace("-", " ").title() if isinstance(chain, str) else f"chain {chain}"


def _is_address(text: str | None) -> bool:
    return bool(text) and len(text or "") == 42 and (text or "").startswith("0x")


def _asset_name(i: Intent) -> str:
    if _is_address(i.asset):
        return f"unknown token {_short(i.asset)}"
    return i.asset or "tokens"


def _where(i: Intent) -> str:
    chain = _chain_label(i.chain)
    if not i.contract or i.contract == i.asset:  # an unknown token is already named by address
        return f"on {chain}"
    return f"{_short(i.contract)} on {chain}"


def _amount_phrase(i: Intent) -> str:
    chain = _chain_label(i.chain)
    if i.is_unlimited:
        return f"UNLIMITED {_asset_name(i)} ({_where(i)})"
    if _is_address(i.asset):
        return f"{i.amount} base units of unknown token {_short(i.asset)} on {chain}"
    if i.contract:
        return f"{i.amount} {i.asset} ({_short(i.contract)} on {chain})"
    return f"{i.amount} {i.asset} on {chain}"


def summarize(intent: Intent, *, how: str | None = None) -> str:
    """A one-line description of `intent` for the owner, built from the intent's own fields.

    e.g. "send 25 USDC (0x8335…2913 on Base) to 0x1111…1111, max fee 0.00042 ETH", "APPROVE
    UNLIMITED USDC to 0xdead…beef (0x8335…2913 on Base)", "sign in to example.com". `how` adds a
    note on the mechanism ("by EIP-2612 permit signature").
    """
    i = intent
    chain = _chain_label(i.chain)
    if i.action == "evm.transfer":
        text = f"send {_amount_phrase(i)} to {_short(i.to)}"
    elif i.action == "evm.approve":
        if i.function == "setApprovalForAll(address,bool)":
            text = (
                f"APPROVE ALL NFTs of {_short(i.contract)} on {chain} to {_short(i.spender)}"
                if i.is_unlimited
                else f"revoke {_short(i.spender)}'s approval for all NFTs of "
                f"{_short(i.contract)} on {chain}"
            )
        elif i.is_unlimited:
            text = f"APPROVE UNLIMITED {_asset_name(i)} to {_short(i.spender)} ({_where(i)})"
        elif i.amount is None:
            text = f"approve {_short(i.spender)} ({_where(i)})"
        elif _is_address(i.asset):
            text = (
                f"approve {i.amount} base units of unknown token {_short(i.asset)} to "
                f"{_short(i.spender)} on {chain}"
            )
        else:
            text = f"approve {i.amount} {i.asset} to {_short(i.spender)} ({_where(i)})"
    elif i.action == "evm.call":
        what = i.function or f"unknown function {i.selector}"
        text = f"call {what} on {_short(i.contract)} on {chain}"
        if i.amount is not None:
            text += f" with {i.amount} {i.asset} attached"
    elif i.action == "evm.deploy":
        text = f"deploy a contract on {chain}"
        if i.amount is not None:
            text += f" with {i.amount} {i.asset}"
    elif i.action == "evm.sign_message":
        m = _SIWE.match(i.message or "")
        if m:
            text = f"sign in to {_clean(m.group('domain'), 80)}"
        else:
            text = f'sign the message "{_clean(i.message or "", 80)}"'
    elif i.action == "evm.sign_typed_data":
        d = i.domain or {}
        name = _clean(str(d.get("name", "")), 40) or "an unnamed app"
        text = f'sign typed data for "{name}" ({_where(i)})'
    else:
        text = f"{i.action} on {chain}"
    if how:
        text = f"{text} {how}"
    if i.fee is not None:
        text = f"{text}, max fee {i.fee} ETH"  # EVM fees are paid in ETH on every EVM chain
    return text if len(text) <= 500 else text[:499] + "…"


def _intent(how: str | None = None, summary: str | None = None, **fields: Any) -> Intent:
    try:
        draft = Intent(**fields)
        return draft.model_copy(update={"summary": summary or summarize(draft, how=how)})
    except ValidationError:
        # Field limits (message length, …) are checked before this point; reaching here is a bug.
        _bad("the decoded request does not fit an intent.", next_step="report this as a bug.")


# --------------------------------------------------------------------------------------------
# Registry lookups


def _require_evm(chain: ChainInfo) -> int:
    if chain.family != "evm" or chain.chain_id is None:
        _bad(f"{chain.name} is not an EVM chain.", next_step="name an EVM chain for this request.")
    return chain.chain_id


@dataclass(frozen=True, slots=True)
class _Token:
    address: str
    info: AssetInfo | None

    @property
    def asset(self) -> str:
        return self.info.symbol if self.info else self.address

    def amount(self, units: int) -> str:
        return from_base_units(units, self.info.decimals) if self.info else str(units)


def _token(registry: Registry, chain: ChainInfo, address: str) -> _Token:
    try:
        info = registry.asset(chain, address)
    except UnknownName:
        return _Token(address, None)
    # A symbol that happens to look like an address must not stand in for another token.
    if info.address is None or info.address.lower() != address.lower():
        return _Token(address, None)
    return _Token(address, info)


def _native(registry: Registry, chain: ChainInfo) -> AssetInfo:
    try:
        info = registry.asset(chain, chain.native)
    except UnknownName:
        return AssetInfo(chain.native, chain.name, None, 18)
    return info if info.address is None else AssetInfo(chain.native, chain.name, None, 18)


# --------------------------------------------------------------------------------------------
# Transactions


def intent_from_tx(tx: EvmTx, *, registry: Registry, chain: ChainInfo) -> Intent:
    """Decode what `tx` would do on `chain`.

    Raises:
        MalformedRequestError: the transaction is for another chain, or its calldata is
            malformed (shorter than a selector, truncated arguments of a known function).
    """
    chain_id = _require_evm(chain)
    if tx.chain_id != chain_id:
        _bad(
            f"the transaction is for chain id {tx.chain_id}, but the request is for "
            f"{chain.name} (chain id {chain_id}).",
            next_step="sign it on the chain it was built for, or rebuild it for this chain.",
        )
    native = _native(registry, chain)
    fee = _max_fee(tx, native)
    if tx.to is None:
        attached: dict[str, Any] = (
            {"asset": native.symbol, "amount": from_base_units(tx.value, native.decimals)}
            if tx.value
            else {}
        )
        return _intent(
            how=f"({len(tx.data)} bytes of init code)",
            action="evm.deploy",
            to=None,
            chain=chain.name,
            fee=fee,
            **attached,
        )
    return _call_intent(tx.to, tx.value, tx.data, registry, chain, fee=fee)


def _max_fee(tx: EvmTx, native: AssetInfo) -> str | None:
    """gas × (maxFeePerGas or gasPrice) in ETH: the most the transaction can cost in fees.
    None while the RPC has yet to fill gas or the price (the signing flow fills them first)."""
    price = tx.max_fee_per_gas if tx.type == 2 else tx.gas_price
    if tx.gas is None or price is None:
        return None
    return from_base_units(tx.gas * price, native.decimals)


def _call_intent(
    to: str,
    value: int,
    data: bytes,
    registry: Registry,
    chain: ChainInfo,
    *,
    how: str | None = None,
    **extra: Any,
) -> Intent:
    """What calling `to` with `value` wei and `data` does: a native or token transfer, an
    approval, or a call. Shared by transactions and by typed data that executes a call."""
    native = _native(registry, chain)
    attached: dict[str, Any] = (
        {"asset": native.symbol, "amount": from_base_units(value, native.decimals)} if value else {}
    )
    call = decode_call(data)
    if call is None:
        return _intent(
            how=how,
            action="evm.transfer",
            to=to,
            asset=native.symbol,
            amount=from_base_units(value, native.decimals),
            chain=chain.name,
            **extra,
        )
    if value == 0:
        token_intent = _token_call(call, to, registry, chain, how=how, **extra)
        if token_intent is not None:
            return token_intent
    notes = [n for n in (_call_note(call), how) if n]
    return _intent(
        how=" ".join(notes) or None,
        action="evm.call",
        to=to,
        contract=to,
        selector=call.selector,
        function=call.function,
        chain=chain.name,
        **attached,
        **extra,
    )


def _call_note(call: DecodedCall) -> str | None:
    """For batching calls, name the inner functions so the owner sees what is batched."""
    inner: list[bytes] = []
    args = call.args
    if call.name == "multicall":
        inner = list(args.get("data", ()))
    elif call.name in ("aggregate", "tryAggregate"):
        inner = [c[1] for c in args.get("calls", ())]
    elif call.name == "aggregate3":
        inner = [c[2] for c in args.get("calls", ())]
    if not inner:
        return None
    names = []
    for data in inner[:5]:
        spec = lookup("0x" + bytes(data[:4]).hex()) if len(data) >= 4 else None
        names.append(spec.name if spec else "unknown")
    more = f" and {len(inner) - 5} more" if len(inner) > 5 else ""
    return f"({len(inner)} inner calls: {', '.join(names)}{more})"


def _token_call(
    call: DecodedCall,
    contract: str,
    registry: Registry,
    chain: ChainInfo,
    *,
    how: str | None = None,
    **extra: Any,
) -> Intent | None:
    """Token transfers and approvals; None for any other call. `how` notes the mechanism."""
    a = call.args
    common: dict[str, Any] = {
        "chain": chain.name,
        "selector": call.selector,
        "function": call.function,
        **extra,
    }

    def note(text: str | None) -> str | None:
        return " ".join(n for n in (text, how) if n) or None

    if call.function == "transfer(address,uint256)":
        token = _token(registry, chain, contract)
        return _intent(
            how=note(None),
            action="evm.transfer",
            to=a["to"],
            contract=contract,
            asset=token.asset,
            amount=token.amount(a["amount"]),
            **common,
        )
    if call.function == "transferFrom(address,address,uint256)":
        token = _token(registry, chain, contract)
        return _intent(
            how=note(f"taken from {_short(a['from'])} (transferFrom)"),
            action="evm.transfer",
            to=a["to"],
            contract=contract,
            asset=token.asset,
            amount=token.amount(a["amount"]),
            **common,
        )
    if call.function in ("approve(address,uint256)", "increaseAllowance(address,uint256)"):
        token = _token(registry, chain, contract)
        more = (
            "more (increaseAllowance adds to the allowance)"
            if call.name == "increaseAllowance"
            else None
        )
        return _approval(token, a["spender"], a["amount"], contract, how=note(more), **common)
    if call.function == "setApprovalForAll(address,bool)":
        approved = bool(a["approved"])
        return _intent(
            how=note(None),
            action="evm.approve",
            spender=a["operator"],
            contract=contract,
            amount=UNLIMITED if approved else None,
            unlimited=approved,
            **common,
        )
    if call.function == "approve(address,address,uint160,uint48)" and contract == PERMIT2_ADDRESS:
        token = _token(registry, chain, a["token"])
        return _approval(
            token, a["spender"], a["amount"], a["token"], how=note("via Permit2"), **common
        )
    return None


def _approval(
    token: _Token, spender: str, units: int, contract: str, *, how: str | None, **fields: Any
) -> Intent:
    unlimited = units >= UNLIMITED_FROM
    return _intent(
        how=how,
        action="evm.approve",
        spender=spender,
        contract=contract,
        asset=token.asset,
        amount=UNLIMITED if unlimited else token.amount(units),
        unlimited=unlimited,
        **fields,
    )


# --------------------------------------------------------------------------------------------
# personal_sign (EIP-191 version 0x45)


def _as_text(payload: bytes) -> str | None:
    """The payload as text when it is UTF-8 without control characters (other than newlines)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\r\t" for ch in text):
        return None
    return text


def personal_message_bytes(message: str) -> bytes:
    """The bytes personal_sign signs for `message`: "0x" + an even number of hex digits is
    bytes (as MetaMask reads it), anything else UTF-8 text. The agent's side of a 2-of-3
    wallet reads a message with this same rule.

    Raises:
        MalformedRequestError: not a string, too long, not valid Unicode, or empty.
    """
    if not isinstance(message, str):
        _bad("the message to sign must be a string (text, or 0x-prefixed hex for bytes).")
    if len(message) > MAX_MESSAGE_CHARS:
        _bad(f"the message is longer than {MAX_MESSAGE_CHARS} characters.")
    if _HEX_MESSAGE.fullmatch(message):
        payload = bytes.fromhex(message[2:])
    else:
        try:
            payload = message.encode("utf-8")
        except UnicodeEncodeError:
            _bad("the message is not valid Unicode text (it has lone surrogates).")
    if not payload:
        _bad("the message is empty; there is nothing to sign.")
    return payload


def intent_from_personal_message(message: str, *, chain: ChainInfo) -> tuple[Intent, bytes]:
    """Decode a personal_sign request.

    As MetaMask does, a message of the form "0x" + hex digits (an even number) is bytes; any
    other string is UTF-8 text. Hex that decodes to plain text is judged as that text, so a
    policy's `message_matches` sees "example.com wants you to sign in" however it was sent.

    Returns:
        The intent, and the message bytes to sign. `sign_personal_message` adds the EIP-191
        prefix "\\x19Ethereum Signed Message:\\n" + length itself.
    """
    _require_evm(chain)
    payload = personal_message_bytes(message)
    text = _as_text(payload) if _HEX_MESSAGE.fullmatch(message) else message
    if text is not None:
        intent = _intent(action="evm.sign_message", chain=chain.name, message=text)
    else:
        hex_text = "0x" + payload.hex()
        intent = _intent(
            summary=f"sign {len(payload)} bytes of binary data ({hex_text[:10]}…{hex_text[-4:]}) "
            f"on {_chain_label(chain.name)}: blind signing, the data cannot be shown as text",
            action="evm.sign_message",
            chain=chain.name,
            message=hex_text,
        )
    return intent, payload


# --------------------------------------------------------------------------------------------
# EIP-712 typed data (eth_signTypedData_v4)

_TOP_KEYS: Final = frozenset({"types", "primaryType", "domain", "message"})
# EIP-712's domain fields, in the order eth-account hashes them.
_DOMAIN_FIELDS: Final = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("salt", "bytes32"),
)


def _check_shape(doc: Any) -> None:
    if not isinstance(doc, Mapping):
        _bad("typed data must be a JSON object with types, primaryType, domain and message.")
    unknown = sorted(str(k)[:40] for k in doc if k not in _TOP_KEYS)
    if unknown:
        _bad(
            f"typed data has unknown field(s): {', '.join(unknown[:5])}.",
            next_step="send only types, primaryType, domain and message.",
        )
    for key in ("types", "domain", "message"):
        if not isinstance(doc.get(key), Mapping):
            _bad(f"typed data needs '{key}' as a JSON object.")
    if "primaryType" in doc and not isinstance(doc["primaryType"], str):
        _bad("typed data 'primaryType' must be a string.")
    try:
        size = len(json.dumps(doc))
    except (TypeError, ValueError):
        _bad("typed data must contain only JSON values.")
    if size > MAX_TYPED_DATA_CHARS:
        _bad(f"typed data is larger than {MAX_TYPED_DATA_CHARS} characters.")
    types = doc["types"]
    for name, fields in types.items():
        if not isinstance(fields, list) or not all(
            isinstance(f, Mapping)
            and set(f) == {"name", "type"}
            and isinstance(f["name"], str)
            and isinstance(f["type"], str)
            for f in fields
        ):
            _bad(f"typed data type '{_clean(str(name), 40)}' must be a list of {{name, type}}.")
    domain = doc["domain"]
    allowed = dict(_DOMAIN_FIELDS)
    unknown_domain = sorted(str(k)[:40] for k in domain if k not in allowed)
    if unknown_domain:
        _bad(f"typed data domain has unknown field(s): {', '.join(unknown_domain[:5])}.")
    if "EIP712Domain" in types:
        # eth-account hashes the domain with the canonical field types and order whatever
        # `types.EIP712Domain` says; a different declaration would make the signature differ from
        # what the app verifies, so it is refused rather than silently signed differently.
        declared = [(f["name"], f["type"]) for f in types["EIP712Domain"]]
        canonical = [(n, t) for n, t in _DOMAIN_FIELDS if n in domain]
        if declared != canonical:
            _bad(
                "typed data types.EIP712Domain must list the domain's fields in the order name, "
                "version, chainId, verifyingContract, salt with types string, string, uint256, "
                "address, bytes32."
            )


def encode_typed(doc: Mapping[str, Any]) -> SignableMessage:
    """Validate typed data and encode it with eth-account (the encoder that signs it).

    Raises:
        MalformedRequestError: not EIP-712 typed data v4, or rejected by the encoder.
    """
    _check_shape(doc)
    failure: str | None = None
    try:
        signable = encode_typed_data(full_message=dict(doc))
    except Exception as exc:  # the encoder raises ValueError, TypeError, eth-abi errors, …
        failure = _clean(str(exc), 100) or type(exc).__name__
    if failure is not None:
        _bad(
            f"typed data is not valid EIP-712: {failure}",
            next_step="fix the types or message so that every field matches its declared type.",
        )
    return signable


def typed_data_digest(doc: Mapping[str, Any]) -> bytes:
    """keccak256(0x19 0x01 ‖ domainSeparator ‖ hashStruct(message)): the 32 bytes signed."""
    return bytes(_hash_eip191_message(encode_typed(doc)))


def _uint(name: str, value: Any) -> int:
    """A uint from typed data, read the way eth-account encodes it, or refused."""
    if isinstance(value, bool):
        _bad(f"typed data field {name} must be a number.")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{1,64}", value):
        number = int(value, 16)
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,78}", value):
        number = int(value)
    else:
        _bad(f"typed data field {name} must be a whole number (decimal or 0x hex).")
    if not 0 <= number <= UINT256_MAX:
        _bad(f"typed data field {name} is outside 0..2^256-1.")
    return number


def _addr(name: str, value: Any) -> str:
    if not isinstance(value, str):
        _bad(f"typed data field {name} must be an address.")
    try:
        return to_checksum(value)
    except ValueError:
        _bad(f"typed data field {name} is not a valid address.")


def _domain(doc: Mapping[str, Any], chain: ChainInfo, chain_id: int) -> dict[str, Any]:
    raw = doc["domain"]
    out: dict[str, Any] = {}
    for key in ("name", "version"):
        if key in raw:
            if not isinstance(raw[key], str):
                _bad(f"typed data domain {key} must be a string.")
            out[key] = raw[key][:200]
    if "chainId" in raw:
        out["chainId"] = _uint("domain.chainId", raw["chainId"])
        if out["chainId"] != chain_id:
            _bad(
                f"the typed data is for chain id {out['chainId']}, but the request is for "
                f"{chain.name} (chain id {chain_id}).",
                next_step="sign it on the chain it names.",
            )
    if "verifyingContract" in raw:
        out["verifyingContract"] = _addr("domain.verifyingContract", raw["verifyingContract"])
    if "salt" in raw:
        out["salt"] = str(raw["salt"])[:66]
    return out


def _fields(types: Mapping[str, Any], name: str) -> tuple[tuple[str, str], ...]:
    return tuple((f["name"], f["type"]) for f in types.get(name, ()))


_EIP2612: Final = (
    ("owner", "address"),
    ("spender", "address"),
    ("value", "uint256"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
)
_DAI: Final = (
    ("holder", "address"),
    ("spender", "address"),
    ("nonce", "uint256"),
    ("expiry", "uint256"),
    ("allowed", "bool"),
)
_ERC4494: Final = (
    ("spender", "address"),
    ("tokenId", "uint256"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
)
_P2_DETAILS: Final = (
    ("token", "address"),
    ("amount", "uint160"),
    ("expiration", "uint48"),
    ("nonce", "uint48"),
)
_P2_PERMISSIONS: Final = (("token", "address"), ("amount", "uint256"))
_P2_SINGLE: Final = (
    ("details", "PermitDetails"),
    ("spender", "address"),
    ("sigDeadline", "uint256"),
)
_P2_BATCH: Final = (
    ("details", "PermitDetails[]"),
    ("spender", "address"),
    ("sigDeadline", "uint256"),
)
_P2_TRANSFER_HEAD: Final = (("spender", "address"), ("nonce", "uint256"), ("deadline", "uint256"))


def intent_from_typed_data(
    doc: Mapping[str, Any],
    *,
    registry: Registry,
    chain: ChainInfo,
    wallet_address: str | None = None,
) -> Intent:
    """Decode an eth_signTypedData_v4 request.

    Permits become `evm.approve` (EIP-2612, DAI, ERC-4494, Permit2 PermitSingle/PermitBatch) or
    `evm.transfer` (Permit2 signature transfers, where `to` is the spender: it picks the final
    recipient); EIP-3009 authorizations become `evm.transfer` of the token; ForwardRequest,
    MetaTransaction and SafeTx become their inner call; anything else is `evm.sign_typed_data`
    with its domain. Every intent carries `primary_type`.

    `wallet_address` is the signing wallet's address (None when only decoding for display): an
    authorization or forwarded call must be `from` it.

    Raises:
        MalformedRequestError: invalid typed data, a domain chainId for another chain, a permit
            with unreadable values, a Permit2 batch over several tokens (one intent judges one
            asset; sign such batches one token at a time), a value-moving type of an unknown
            shape or without its chain, or `from` another address than the wallet's.
        PolicyDeniedError: a Seaport order, a Safe delegatecall or a Safe gas refund.
    """
    chain_id = _require_evm(chain)
    encode_typed(doc)
    types = {k: v for k, v in doc["types"].items() if k != "EIP712Domain"}
    primary = doc.get("primaryType")
    if primary is None:
        primary = get_primary_type(types)  # encode_typed succeeded, so this does too
    if not _TYPE_NAME.fullmatch(primary):
        _bad("typed data primaryType must be a struct name of at most 100 letters, digits, _ or $.")
    domain = _domain(doc, chain, chain_id)
    message = doc["message"]
    verifying = domain.get("verifyingContract")
    common: dict[str, Any] = {"chain": chain.name, "domain": domain, "primary_type": primary}
    shape = _fields(types, primary)

    if primary in ("OrderComponents", "BulkOrder") or "OrderComponents" in types:
        _refuse(
            "This is a Seaport order: once signed, anyone can fulfil it and take what it offers, "
            "and keysafe does not judge orders.",
            next_step="trade through a transaction the policy can judge, or the owner signs "
            "the order themselves.",
        )
    executed = _typed_call(primary, shape, message, domain, registry, chain, wallet_address)
    if executed is not None:
        return executed

    if primary == "Permit" and shape in (_EIP2612, _DAI, _ERC4494):
        if verifying is None:
            _bad("a permit without domain.verifyingContract cannot name its token.")
        if shape == _EIP2612:
            token = _token(registry, chain, verifying)
            units = _uint("value", message.get("value"))
            return _approval(
                token,
                _addr("spender", message.get("spender")),
                units,
                verifying,
                how="by EIP-2612 permit signature",
                **common,
            )
        if shape == _DAI:
            allowed = message.get("allowed")
            if not isinstance(allowed, bool):
                _bad("typed data field allowed must be true or false.")
            token = _token(registry, chain, verifying)
            return _intent(
                how="by DAI-style permit signature",
                action="evm.approve",
                spender=_addr("spender", message.get("spender")),
                contract=verifying,
                asset=token.asset,
                amount=UNLIMITED if allowed else "0",
                unlimited=allowed,
                **common,
            )
        token_id = _uint("tokenId", message.get("tokenId"))
        spender = _addr("spender", message.get("spender"))
        return _intent(
            summary=f"approve {_short(spender)} to take NFT #{str(token_id)[:40]} of "
            f"{_short(verifying)} on {_chain_label(chain.name)} by permit signature",
            action="evm.approve",
            spender=spender,
            contract=verifying,
            unlimited=False,
            **common,
        )

    if primary in ("PermitSingle", "PermitBatch") and (
        shape in (_P2_SINGLE, _P2_BATCH) and _fields(types, "PermitDetails") == _P2_DETAILS
    ):
        entries = _entries(message.get("details"), many=primary == "PermitBatch")
        token_addr, units = _one_token(entries)
        token = _token(registry, chain, token_addr)
        return _approval(
            token,
            _addr("spender", message.get("spender")),
            units,
            token_addr,
            how="via Permit2 signature",
            **common,
        )

    if (
        primary in _P2_TRANSFER_NAMES
        and shape[:1]
        in ((("permitted", "TokenPermissions"),), (("permitted", "TokenPermissions[]"),))
        and shape[1:4] == _P2_TRANSFER_HEAD
        and (len(shape) == 4 or (len(shape) == 5 and shape[4][0] == "witness"))
        and _fields(types, "TokenPermissions") == _P2_PERMISSIONS
    ):
        entries = _entries(message.get("permitted"), many=shape[0][1] == "TokenPermissions[]")
        token_addr, units = _one_token(entries)
        token = _token(registry, chain, token_addr)
        spender = _addr("spender", message.get("spender"))
        unlimited = units >= UNLIMITED_FROM
        return _intent(
            how="by Permit2 signature transfer (the spender picks the final recipient)",
            action="evm.transfer",
            to=spender,
            spender=spender,
            contract=token_addr,
            asset=token.asset,
            amount=UNLIMITED if unlimited else token.amount(units),
            unlimited=unlimited,
            **common,
        )

    if "permit" in primary.lower() or verifying == PERMIT2_ADDRESS:
        # Something permit-like we cannot read exactly: judge it as the worst it could be.
        spender_raw = message.get("spender")
        loose_spender = _addr("spender", spender_raw) if isinstance(spender_raw, str) else None
        return _intent(
            summary=f'APPROVE UNLIMITED: unrecognised permit "{_clean(primary, 40)}" for '
            f"{_short(verifying)} on {_chain_label(chain.name)}, judged as an unlimited approval",
            action="evm.approve",
            spender=loose_spender,
            contract=verifying,
            amount=UNLIMITED,
            unlimited=True,
            **common,
        )

    return _intent(
        how=f'as a "{_clean(primary, 40)}" message',
        action="evm.sign_typed_data",
        contract=verifying,
        **common,
    )


_P2_TRANSFER_NAMES: Final = frozenset(
    {
        "PermitTransferFrom",
        "PermitBatchTransferFrom",
        "PermitWitnessTransferFrom",
        "PermitBatchWitnessTransferFrom",
    }
)


def _entries(value: Any, *, many: bool) -> list[Any]:
    if many:
        if not isinstance(value, list):
            _bad("the Permit2 message must list its token entries.")
        return value
    return [value]


def _one_token(entries: list[Any]) -> tuple[str, int]:
    """(token, total amount) of Permit2 entries, which must all name the same token."""
    if not entries:
        _bad("the Permit2 message names no token.")
    tokens: dict[str, int] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            _bad("a Permit2 entry must be an object with token and amount.")
        address = _addr("token", entry.get("token"))
        tokens[address] = tokens.get(address, 0) + _uint("amount", entry.get("amount"))
    if len(tokens) > 1:
        _bad(
            f"this Permit2 batch covers {len(tokens)} different tokens; one request is judged "
            "for one asset.",
            next_step="sign one Permit2 permit per token.",
        )
    ((address, units),) = tokens.items()
    return address, units


_TYPE_NAME: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,99}")
_EIP3009: Final = (
    ("from", "address"),
    ("to", "address"),
    ("value", "uint256"),
    ("validAfter", "uint256"),
    ("validBefore", "uint256"),
    ("nonce", "bytes32"),
)
_EIP3009_NAMES: Final = frozenset({"TransferWithAuthorization", "ReceiveWithAuthorization"})
# ERC-2771 forwarders: OpenZeppelin's MinimalForwarder (no deadline) and ERC2771Forwarder (uint48
# deadline before data). Compared as name → type: the order only changes the hash, which the
# forwarder checks, not what the call does.
_FORWARD: Final = {
    "from": "address",
    "to": "address",
    "value": "uint256",
    "gas": "uint256",
    "nonce": "uint256",
    "data": "bytes",
}
_META_TX: Final = (("nonce", "uint256"), ("from", "address"), ("functionSignature", "bytes"))
_SAFE_TX: Final = (
    ("to", "address"),
    ("value", "uint256"),
    ("data", "bytes"),
    ("operation", "uint8"),
    ("safeTxGas", "uint256"),
    ("baseGas", "uint256"),
    ("gasPrice", "uint256"),
    ("gasToken", "address"),
    ("refundReceiver", "address"),
    ("nonce", "uint256"),
)
_EXECUTING: Final = frozenset({*_EIP3009_NAMES, "ForwardRequest", "MetaTransaction", "SafeTx"})


def _hex_bytes(name: str, value: Any) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"0x(?:[0-9a-fA-F]{2})*", value):
        _bad(f"typed data field {name} must be 0x-prefixed hex bytes.")
    return bytes.fromhex(value[2:])


def _bound_to_chain(primary: str, domain: Mapping[str, Any], chain: ChainInfo) -> None:
    """A value-moving message must name its chain, or its signature is valid wherever the
    contract exists at that address (Safe before 1.3 signs no chain id)."""
    if "chainId" in domain:
        return  # _domain already held it to the request's chain
    salt = domain.get("salt")
    if (
        primary == "MetaTransaction"
        and isinstance(salt, str)
        and re.fullmatch(r"0x[0-9a-fA-F]{64}", salt)
    ):
        # Biconomy-style meta transactions put the chain id in the domain salt.
        if int(salt, 16) != chain.chain_id:
            _bad(
                f"the typed data is for chain id {int(salt, 16)} (domain salt), but the request is "
                f"for {chain.name} (chain id {chain.chain_id}).",
                next_step="sign it on the chain it names.",
            )
        return
    _bad(
        f'the "{primary}" message names no chain (domain chainId), so its signature would be '
        "valid on every chain where the contract exists.",
        next_step="add domain.chainId (and the EIP712Domain field for it).",
    )


def _own(field: str, address: str, wallet_address: str | None, primary: str) -> None:
    """Refuse moving value out of an account other than the signing wallet."""
    if wallet_address is not None and address.lower() != wallet_address.lower():
        _bad(
            f'the "{primary}" message acts for {address} ({field}), which is not the signing '
            f"wallet {to_checksum(wallet_address)}.",
            next_step=f"set {field} to the wallet's own address.",
        )


def _typed_call(
    primary: str,
    shape: tuple[tuple[str, str], ...],
    message: Mapping[str, Any],
    domain: Mapping[str, Any],
    registry: Registry,
    chain: ChainInfo,
    wallet_address: str | None,
) -> Intent | None:
    """Typed data that transfers or executes a call when a relayer submits it; None otherwise."""
    if primary not in _EXECUTING:
        return None
    verifying = domain.get("verifyingContract")
    label = _clean(primary, 40)
    tag: dict[str, Any] = {"domain": dict(domain), "primary_type": primary}
    if primary in _EIP3009_NAMES:
        if shape != _EIP3009:
            _bad(
                f'"{label}" does not have the EIP-3009 fields (from, to, value, validAfter, '
                "validBefore, nonce), so keysafe cannot tell what it moves."
            )
        if verifying is None:
            _bad("a transfer authorization without domain.verifyingContract cannot name its token.")
        _bound_to_chain(primary, domain, chain)
        sender = _addr("from", message.get("from"))
        _own("from", sender, wallet_address, primary)
        token = _token(registry, chain, verifying)
        how = f"by EIP-3009 signed authorization ({label}) from {_short(sender)}"
        return _intent(
            how=how,
            action="evm.transfer",
            to=_addr("to", message.get("to")),
            contract=verifying,
            asset=token.asset,
            amount=token.amount(_uint("value", message.get("value"))),
            chain=chain.name,
            **tag,
        )
    if primary == "ForwardRequest":
        fields = dict(shape)
        extra = {k: v for k, v in fields.items() if k not in _FORWARD}
        if (
            len(fields) != len(shape)
            or any(fields.get(k) != t for k, t in _FORWARD.items())
            or extra not in ({}, {"deadline": "uint48"}, {"deadline": "uint256"})
        ):
            _bad(
                "this ForwardRequest is not an ERC-2771 forwarder request (from, to, value, gas, "
                "nonce, data and an optional deadline), so keysafe cannot tell what it runs."
            )
        _bound_to_chain(primary, domain, chain)
        sender = _addr("from", message.get("from"))
        _own("from", sender, wallet_address, primary)
        return _call_intent(
            _addr("to", message.get("to")),
            _uint("value", message.get("value")),
            _hex_bytes("data", message.get("data")),
            registry,
            chain,
            how=f"by ERC-2771 forwarded call from {_short(sender)}",
            **tag,
        )
    if primary == "MetaTransaction":
        if shape != _META_TX:
            _bad(
                "this MetaTransaction does not have the fields nonce, from, functionSignature, "
                "so keysafe cannot tell what it runs."
            )
        if verifying is None:
            _bad("a MetaTransaction without domain.verifyingContract cannot name its contract.")
        _bound_to_chain(primary, domain, chain)
        sender = _addr("from", message.get("from"))
        _own("from", sender, wallet_address, primary)
        return _call_intent(
            verifying,
            0,
            _hex_bytes("functionSignature", message.get("functionSignature")),
            registry,
            chain,
            how=f"by meta-transaction from {_short(sender)}",
            **tag,
        )
    # SafeTx: the Safe at verifyingContract runs the call with its own funds.
    if shape != _SAFE_TX:
        _bad(
            "this SafeTx does not have the fields of a Safe 1.3+ transaction (to, value, data, "
            "operation, safeTxGas, baseGas, gasPrice, gasToken, refundReceiver, nonce)."
        )
    if verifying is None:
        _bad("a SafeTx without domain.verifyingContract cannot name its Safe.")
    _bound_to_chain(primary, domain, chain)
    operation = _uint("operation", message.get("operation"))
    if operation not in (0, 1):
        _bad("SafeTx operation must be 0 (call) or 1 (delegatecall).")
    if operation == 1:
        _refuse(
            "This Safe transaction is a delegatecall: the target's code would run as the Safe "
            "and could do anything with its funds and settings.",
            next_step="send a plain call (operation 0), or the Safe's owners sign it themselves.",
        )
    if _uint("gasPrice", message.get("gasPrice")) != 0:
        _refuse(
            "This Safe transaction refunds gas (gasPrice is not 0): the Safe would pay "
            "(gas used + baseGas) × gasPrice to the refund receiver, an amount keysafe cannot "
            "bound.",
            next_step="set gasPrice to 0 and pay gas from the executing account.",
        )
    return _call_intent(
        _addr("to", message.get("to")),
        _uint("value", message.get("value")),
        _hex_bytes("data", message.get("data")),
        registry,
        chain,
        how=f"by Safe transaction of Safe {_short(verifying)} (nonce "
        f"{str(_uint('nonce', message.get('nonce')))[:20]})",
        **tag,
    )
