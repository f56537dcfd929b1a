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

Layout: `_transactions` (transactions and the calls typed data executes, with the table of token
calls), `_messages` (personal_sign), `_eip712` (typed data read strictly), `_typed_data` (the
table of typed-data recognisers), `_permits` and `_relayed` (its entries), `_summary` (the owner's
one-line description) and `_common` (refusals, registry lookups).
"""

from __future__ import annotations

from keysafe.chains.evm.intents._common import UNLIMITED_FROM
from keysafe.chains.evm.intents._eip712 import encode_typed, typed_data_digest
from keysafe.chains.evm.intents._messages import (
    intent_from_personal_message,
    personal_message_bytes,
)
from keysafe.chains.evm.intents._summary import summarize
from keysafe.chains.evm.intents._transactions import intent_from_tx
from keysafe.chains.evm.intents._typed_data import intent_from_typed_data

__all__ = [
    "UNLIMITED_FROM",
    "encode_typed",
    "intent_from_personal_message",
    "intent_from_tx",
    "intent_from_typed_data",
    "personal_message_bytes",
    "summarize",
    "typed_data_digest",
]
