"""Solana: parse transactions, decode their intent, sign and verify, broadcast over JSON-RPC.

>>> tx = parse_transaction(b64)                                              # doctest: +SKIP
>>> intent = intent_from_tx(tx, registry=reg, chain=chain, wallet_address=me)  # doctest: +SKIP
>>> signed = sign_transaction(tx, seed)          # after the policy allowed it  # doctest: +SKIP
>>> SolanaRpc(chain.rpc).send_transaction(signed.base64)                     # doctest: +SKIP
"""

from keysafe.chains.solana.intents import (
    MAX_PRIORITY_FEE_LAMPORTS,
    check_declared,
    intent_from_message,
    intent_from_tx,
)
from keysafe.chains.solana.rpc import (
    LatestBlockhash,
    SolanaRpc,
    SolanaRpcError,
    TransactionRejectedError,
)
from keysafe.chains.solana.signing import SignedSolanaTx, sign_message, sign_transaction
from keysafe.chains.solana.tx import AccountRef, SolanaTx, parse_transaction

__all__ = [
    "MAX_PRIORITY_FEE_LAMPORTS",
    "AccountRef",
    "LatestBlockhash",
    "SignedSolanaTx",
    "SolanaRpc",
    "SolanaRpcError",
    "SolanaTx",
    "TransactionRejectedError",
    "check_declared",
    "intent_from_message",
    "intent_from_tx",
    "parse_transaction",
    "sign_message",
    "sign_transaction",
]
