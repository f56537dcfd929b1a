"""Decode raw signing material into the intent a policy judges and a person reads.

Accepts an EVM transaction (JSON dict or unsigned RLP hex), an EIP-712 document (JSON with
`types` and `primaryType`) or a Solana transaction (base64). Needs no vault: the chain registry
is the built-in one unless a vault's registry is passed in.
"""

from __future__ import annotations

import json
import re
from typing import Any

from keysafe.errors import MalformedRequestError
from keysafe.policy.intent import Intent
from keysafe.policy.registry import ChainInfo, Registry, UnknownName

_HEX = re.compile(r"(0x)?[0-9a-fA-F]+")
_B64 = re.compile(r"[A-Za-z0-9+/=\s]+")


def _chain(reg: Registry, ref: str | int) -> ChainInfo:
    try:
        return reg.chain(ref)
    except UnknownName:
        raise MalformedRequestError(
            f"Unknown chain '{str(ref)[:40]}'.",
            next_step="see `keysafe chain list`, or add it with `keysafe chain add`.",
        ) from None


def decode_payload(
    text: str, *, chain: str | None = None, registry: Registry | None = None
) -> Intent:
    """What a transaction (EVM JSON or RLP hex, Solana base64) or EIP-712 typed data would
    do, as the policy engine sees it; needs no vault (the built-in registry by default).

    Raises:
        MalformedRequestError: the text is none of those, or does not decode.
    """
    reg = registry or Registry.builtin()
    stripped = text.strip()
    if not stripped:
        raise MalformedRequestError(
            "The input is empty.", next_step="pass a transaction or typed data."
        )
    if stripped[0] in "{[":
        try:
            doc: Any = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise MalformedRequestError(
                f"The input looks like JSON but does not parse ({exc.msg} at line {exc.lineno}).",
                next_step="fix the JSON.",
            ) from None
        except ValueError:  # e.g. an integer longer than Python converts
            raise MalformedRequestError(
                "The input looks like JSON but does not parse.", next_step="fix the JSON."
            ) from None
        if not isinstance(doc, dict):
            raise MalformedRequestError(
                "A JSON input must be one object: an EVM transaction or an EIP-712 document.",
                next_step='e.g. {"to": "0x…", "value": "0x1", "chainId": 8453, …}',
            )
        return _decode_json(doc, chain, reg)
    if _HEX.fullmatch(stripped):
        return _decode_evm(stripped, chain, reg)
    if _B64.fullmatch(stripped):
        from keysafe.chains.solana import intents as sol_intents
        from keysafe.chains.solana import tx as sol_tx

        info = _chain(reg, chain or "solana")
        if info.family != "solana":
            raise MalformedRequestError(
                f"The input is a Solana transaction but --chain {info.name} is an EVM chain.",
                next_step="pass a Solana chain (solana, solana-devnet, solana-local) or none.",
            )
        tx = sol_tx.parse_transaction(stripped)
        # No wallet is named when decoding: take the signer that is not a sponsoring fee payer.
        signers = tx.required_signers
        wallet = signers[1] if len(signers) == 2 else tx.fee_payer
        return sol_intents.intent_from_tx(tx, registry=reg, chain=info, wallet_address=wallet)
    raise MalformedRequestError(
        "The input is neither JSON, hex (EVM RLP) nor base64 (Solana).",
        next_step="pass an EVM transaction as JSON or RLP hex, EIP-712 JSON, or a base64 Solana "
        "transaction.",
    )


def _decode_json(doc: dict[str, Any], chain: str | None, reg: Registry) -> Intent:
    from keysafe.chains.evm import intents as evm_intents

    if "types" in doc and "primaryType" in doc:
        domain = doc.get("domain") if isinstance(doc.get("domain"), dict) else {}
        ref = chain if chain is not None else (domain or {}).get("chainId", "ethereum")
        info = _chain(reg, ref)
        return evm_intents.intent_from_typed_data(doc, registry=reg, chain=info)
    return _decode_evm(doc, chain, reg)


def _decode_evm(payload: str | dict[str, Any], chain: str | None, reg: Registry) -> Intent:
    from keysafe.chains.evm import intents as evm_intents
    from keysafe.chains.evm import tx as evm_tx

    requested = _chain(reg, chain) if chain is not None else None
    if requested is not None and requested.family != "evm":
        raise MalformedRequestError(
            f"The input is an EVM transaction but --chain {requested.name} is a Solana chain.",
            next_step="pass an EVM chain or none.",
        )
    # parse_transaction refuses a transaction without a chain id unless one is named here.
    tx = evm_tx.parse_transaction(payload, chain_id=requested.chain_id if requested else None)
    info = requested or _chain(reg, tx.chain_id)
    return evm_intents.intent_from_tx(tx, registry=reg, chain=info)


def intent_view(intent: Intent, registry: Registry | None = None) -> dict[str, Any]:
    """The stable JSON shape of `keysafe decode --json`."""
    reg = registry or Registry.builtin()
    chain_id = None
    chain_name = None
    if intent.chain is not None:
        try:
            info = reg.chain(intent.chain)
            chain_id, chain_name = info.chain_id, info.name
        except UnknownName:
            chain_name = str(intent.chain)
    out = {
        "action": intent.action,
        "chain": chain_name,
        "chain_id": chain_id,
        "asset": intent.asset,
        "amount": "unlimited" if intent.is_unlimited else intent.amount,
        "fee": intent.fee,
        "to": intent.to,
        "spender": intent.spender,
        "contract": intent.contract,
        "selector": intent.selector,
        "function": intent.function,
        "message": intent.message,
        "domain": intent.domain,
        "primary_type": intent.primary_type,
        "summary": intent.summary,
    }
    return out
