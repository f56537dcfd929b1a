"""Decode what a Solana transaction or message would do, as the `Intent` a policy judges.

    >>> tx = parse_transaction(b64)                                        # doctest: +SKIP
    >>> intent = intent_from_tx(tx, registry=reg, chain=sol, wallet_address=me)  # doctest: +SKIP
    >>> intent.action, intent.asset, intent.amount, intent.summary         # doctest: +SKIP
    ('solana.transfer', 'SOL', '0.5', 'send 0.5 SOL to 9xQe…WdKp')

Rules this module enforces (each refusal is a `MalformedRequestError`: nothing gets signed):

Signers
    The wallet must be one of the transaction's required signers. Any other required signer is
    refused, except the fee payer (the first key): a sponsor may pay the fee and sign for it.

Instructions, one by one
    * System `transfer` → a SOL transfer. Trailing data bytes are ignored exactly as the System
      program ignores them, so padding cannot turn a transfer into an unknown call.
    * SPL Token and Token-2022 `transfer` ([3] + u64) and `transferChecked` ([12] + u64 + u8):
      token transfers. `transferChecked` names the mint and decimals: the amount is in token units
      and the asset is the registry's symbol for that mint on this chain, or the mint address when
      the registry does not know it (policy then denies: unknown asset). If the registry knows the
      mint with other decimals than the instruction states, the request is refused.
    * Plain SPL `transfer` names no mint (its destination is a token account), so the asset is
      unknown: `asset` is None, `amount` stays in base units and the summary says so. The policy
      engine cannot judge an amount without an asset, so it denies ("cannot be judged").
    * Other System instructions that move lamports are SOL transfers too: `createAccount`,
      `createAccountWithSeed` and `createAccountAllowPrefund` (funding account → the new
      account), `transferWithSeed` (the base key's derived account → recipient; the base key
      signs, so it is that signer's money) and `withdrawNonceAccount` (nonce account →
      recipient). Seeds over 32 bytes or not UTF-8, and short data, are refused.
    * SPL `approve` ([4] + u64) and `approveChecked` ([13] + u64 + u8) → `solana.approve`:
      `spender` = the delegate, asset and amount as for transfers (approveChecked names the mint;
      plain approve does not, so its amount stays in base units and the engine denies it). From
      `SPL_UNLIMITED_FROM` (2^63) base units up, including u64::MAX, the amount is `unlimited`,
      so caps, windows and `when: {unlimited: …}` treat it like an unlimited ERC-20 approval.
    * Handing over control → `solana.set_authority` (`contract` = the account, `to` and
      `spender` = the new authority, None when removed; the authority type is in the summary):
      SPL `setAuthority`, System `assign`/`assignWithSeed` (the account's new owner program can
      take its lamports), `authorizeNonceAccount`, and `createAccountAllowPrefund` of the wallet
      itself. Control carries everything the account holds or can mint, so the amount is
      `unlimited` (asset SOL for System accounts, none for SPL ones): no cap can allow it.
    * SPL `closeAccount` to anyone but the wallet → `solana.close_account` (`to` = destination):
      the account's whole lamport balance moves (rent, and for wrapped SOL the wrapped amount),
      but the instruction does not say how much, so it is `unlimited` SOL: only a rule that
      names the action without a SOL cap or window allows it.
    * Compute-budget instructions set the fee: the largest priority fee the transaction can pay is
      computed, shown in the summary, and refused above `max_priority_fee_lamports` when the
      wallet pays the fee. Malformed or repeated ones are refused (the runtime would fail them).
    * Helpers that move no value away from the wallet and do not change the action: memos (text
      goes into the summary), associated-token-account `create`/`createIdempotent`, SPL
      `syncNative`, and SPL `closeAccount` whose rent goes back to the wallet.
    * Any other instruction is a call to its program.

Address lookup tables (v0)
    Accounts loaded from a lookup table cannot be resolved offline (the table's contents live on
    chain), and keysafe never guesses them. A transfer with any account (source, destination,
    mint, authority) from a lookup table is therefore *not* decoded as a transfer: it counts as a
    call to its program (System or SPL Token), so the intent is `solana.call`, never
    `solana.transfer`. What can be read is still reported: the amount (in SOL for System
    transfers, in base units with no asset for SPL ones) so that caps still apply, and `to`
    stays None, so no recipient rule can match. Program ids are always static keys (the runtime
    requires it), so the called program is always known.

The intent of the whole transaction
    * Transfers in one transaction must move one asset to one recipient; their amounts add up.
      Several assets or recipients are refused (a policy judges one amount and one recipient).
    * No calls: `solana.transfer`. One called program: `solana.call` with `contract` = that
      program, carrying the transfer's asset, amount and recipient too, so caps still apply.
      Calls to several programs are refused (a policy names one contract per request).
    * Only helpers: `solana.call` to the helper's program (e.g. a memo). No instruction: refused.
    * An approval, authority change or closing is judged alone: with any transfer, call or
      second one beside it the transaction is refused, so no value move hides behind another.
      Its accounts must be static keys (a lookup-table account is refused: whom it hands
      value to could not be told).
    * `fee`: the most the wallet pays for the network fee, in SOL: 5000 lamports per signature
      (the transaction's and those its Ed25519/secp256k1/secp256r1 precompile instructions
      verify) plus the priority fee (compute-unit price × limit / 10^6, rounded up). "0" when a
      sponsor pays. The summary shows it.

Messages
    Ed25519 over the exact bytes (UTF-8 text or base64 input). Bytes that read as a Solana
    transaction message are refused: signing them would sign a transaction blind.

Layout: `_decode` turns each instruction into a step (`_steps`), with a table per program for
the System program (`_system`) and SPL Token (`_token`), reading data with `_reader`; `_value`
sums fees and transfers; `_judge` decides what the whole transaction is; `_transactions`
builds its intent; `_declared` holds a declaration against it; `_messages` reads off-chain
messages. Program ids and runtime constants are in `_programs`.
"""

from __future__ import annotations

from keysafe.chains.solana.intents._declared import check_declared
from keysafe.chains.solana.intents._messages import intent_from_message
from keysafe.chains.solana.intents._programs import (
    ASSOCIATED_TOKEN_PROGRAM,
    COMPUTE_BUDGET_PROGRAM,
    MAX_MESSAGE_SIZE,
    MAX_PRIORITY_FEE_LAMPORTS,
    MEMO_PROGRAM,
    MEMO_V1_PROGRAM,
    SPL_UNLIMITED_FROM,
    SYSTEM_PROGRAM,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
)
from keysafe.chains.solana.intents._transactions import intent_from_tx

__all__ = [
    "ASSOCIATED_TOKEN_PROGRAM",
    "COMPUTE_BUDGET_PROGRAM",
    "MAX_MESSAGE_SIZE",
    "MAX_PRIORITY_FEE_LAMPORTS",
    "MEMO_PROGRAM",
    "MEMO_V1_PROGRAM",
    "SPL_UNLIMITED_FROM",
    "SYSTEM_PROGRAM",
    "TOKEN_2022_PROGRAM",
    "TOKEN_PROGRAM",
    "check_declared",
    "intent_from_message",
    "intent_from_tx",
]
