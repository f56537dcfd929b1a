"""eth_signTypedData_v4 requests judged as what they do, by a table of recognisers.

`_RECOGNISERS` is tried in order and the first whose matcher accepts the message builds the
intent: Seaport orders are refused, messages a relayer executes (`_relayed`) come before permits
(`_permits`), and anything left is plain `evm.sign_typed_data` with its domain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from keysafe.chains.evm.intents import _permits, _relayed
from keysafe.chains.evm.intents._common import described, refuse, require_evm
from keysafe.chains.evm.intents._eip712 import TypedMessage, read_typed
from keysafe.policy.intent import Intent
from keysafe.policy.registry import ChainInfo, Registry

logger = logging.getLogger(__name__)

Recogniser = tuple[Callable[[TypedMessage], bool], Callable[[TypedMessage], Intent]]


def _named(*names: str) -> Callable[[TypedMessage], bool]:
    return lambda t: t.primary in names


def _is_seaport(t: TypedMessage) -> bool:
    return t.primary in ("OrderComponents", "BulkOrder") or "OrderComponents" in t.types


def _refuse_seaport(t: TypedMessage) -> Intent:
    refuse(
        "This is a Seaport order: once signed, anyone can fulfil it and take what it offers, "
        "and keysafe does not judge orders.",
        next_step="trade through a transaction the policy can judge, or the owner signs "
        "the order themselves.",
    )


_RECOGNISERS: Final[tuple[Recogniser, ...]] = (
    (_is_seaport, _refuse_seaport),
    (_named(*_relayed.EIP3009_NAMES), _relayed.authorization),
    (_named("ForwardRequest"), _relayed.forwarded),
    (_named("MetaTransaction"), _relayed.meta_transaction),
    (_named("SafeTx"), _relayed.safe_transaction),
    (_permits.is_token_permit, _permits.token_permit),
    (_permits.is_permit2_allowance, _permits.permit2_allowance),
    (_permits.is_permit2_transfer, _permits.permit2_transfer),
    (_permits.looks_like_permit, _permits.loose_permit),
)


def _plain(t: TypedMessage) -> Intent:
    """Typed data that moves nothing keysafe can see: judged by its domain and type."""
    return described(
        lambda: Intent.evm_sign_typed_data(
            chain=t.chain.name, contract=t.verifying, domain=t.domain, primary_type=t.primary
        ),
        how=f'as a "{t.label}" message',
    )


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
    chain_id = require_evm(chain)
    typed = read_typed(
        doc, registry=registry, chain=chain, chain_id=chain_id, wallet_address=wallet_address
    )
    for matches, build in _RECOGNISERS:
        if matches(typed):
            return build(typed)
    return _plain(typed)
