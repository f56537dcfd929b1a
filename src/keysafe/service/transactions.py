"""Transactions decoded for one wallet: the intent the policy judges, and how to sign and send.

No blind signing: what the agent declares must equal what is decoded (`check_declared`). An EVM
transaction is filled from the chain's RPC first (nonce, gas, fees), except for a 2-of-3 wallet,
which signs exactly the transaction both parties hashed. Signing verifies its result (signer
recovered, transaction re-decoded) before anything is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from keysafe.chains import Chain
from keysafe.chains.evm import intents as evm_intents
from keysafe.chains.evm import signing as evm_signing
from keysafe.chains.evm import tx as evm_tx
from keysafe.chains.evm.rpc import EvmRpc
from keysafe.chains.evm.tx import EvmTx
from keysafe.chains.solana import intents as sol_intents
from keysafe.chains.solana import signing as sol_signing
from keysafe.chains.solana import tx as sol_tx
from keysafe.chains.solana.rpc import SolanaRpc
from keysafe.errors import MalformedRequestError, PolicyDeniedError
from keysafe.policy.intent import Intent
from keysafe.policy.registry import ChainInfo, Registry, UnknownName
from keysafe.service import threshold as threshold_frost
from keysafe.service.models import SecretBytes
from keysafe.service.record_meta import ThresholdWallet, Wallet
from keysafe.service.threshold_dkls import DklsCosigner
from keysafe.vault.vault import Vault


def resolve_chain(reg: Registry, ref: str | int | None, family: str) -> ChainInfo:
    """The registry's chain `ref` (a name or an EVM chain id; Solana by default), which must be
    of the wallet's `family`.

    Raises:
        MalformedRequestError: no chain is named, or it is of another family.
        PolicyDeniedError: the chain is not in the registry (UNKNOWN_CHAIN).
    """
    default = "solana" if family == "solana" else None
    target = ref if ref is not None else default
    if target is None:
        raise MalformedRequestError(
            "The transaction does not say which chain it is for.",
            next_step="include chainId in the transaction or pass the chain name.",
        )
    try:
        info = reg.chain(target)
    except UnknownName:
        raise PolicyDeniedError(
            f"The chain '{str(target)[:40]}' is not in the chain registry. Nothing was signed.",
            next_step="the owner adds it with `keysafe chain add NAME --chain-id N --rpc URL`.",
            reason_code="UNKNOWN_CHAIN",
        ) from None
    if info.family != family:
        raise MalformedRequestError(
            f"Wallet is a {family} wallet but chain '{info.name}' is {info.family}.",
            next_step="use a wallet of the chain's family.",
        )
    return info


_DECLARABLE = ("action", "asset", "amount", "to", "spender", "contract", "chain")


def check_declared_keys(declared: Mapping[str, Any]) -> None:
    """Raises MalformedRequestError for a declared field that cannot be declared."""
    for key in declared:
        if key not in _DECLARABLE:
            raise MalformedRequestError(
                f"'{str(key)[:40]}' cannot be declared.",
                next_step="declare only action, asset, amount, to, spender, contract or chain.",
            )


def check_declared(intent: Intent, declared: Mapping[str, Any] | None) -> None:
    """No blind signing: every field the agent declared must equal the decoded one.

    Raises:
        MalformedRequestError: a field cannot be declared, or differs from the decoded one.
    """
    if not declared:
        return
    check_declared_keys(declared)
    decoded = intent.model_dump(mode="json")
    for key, value in declared.items():
        got = decoded.get(key)
        same = str(got).lower() == str(value).lower() if got is not None else value is None
        if key == "amount" and got is not None and value is not None:
            try:
                same = Decimal(str(got)) == Decimal(str(value))
            except InvalidOperation:
                same = False
        if not same:
            raise MalformedRequestError(
                f"The request declares {key} = {str(value)[:80]}, but the transaction decodes to "
                f"{key} = {str(got)[:80]} ({intent.summary or intent.action}). Nothing was signed.",
                next_step="declare exactly what the transaction does, or fix the transaction.",
                field=key,
            )


@dataclass(frozen=True, slots=True)
class Decoded:
    """A transaction decoded for one wallet: what the policy judges and how to sign it."""

    chain: ChainInfo
    intent: Intent
    sign: Callable[[SecretBytes, str], tuple[str, str]]  # (key, request id) → (raw, hash/id)
    send: Callable[[str, str], None]  # (rpc url, raw)


@dataclass(frozen=True, slots=True)
class _ToDecode:
    """What decoding one transaction takes: the wallet, the raw payload and what was declared;
    `fields` carries the agent's part when the wallet is a 2-of-3 one."""

    vault: Vault
    agent: str
    wallet: Wallet
    payload: str | dict[str, Any]
    registry: Registry
    chain: str | None
    declared: Mapping[str, Any] | None
    fields: dict[str, Any] | None

    def shared(self) -> ThresholdWallet:
        """The 2-of-3 wallet whose share signs beside the agent's (`fields` is set)."""
        wallet = self.wallet.as_threshold()
        assert wallet is not None, "an agent's part was accepted for a single-key wallet"
        return wallet


def decode_transaction(
    vault: Vault,
    agent: str,
    wallet: Wallet,
    payload: str | dict[str, Any],
    registry: Registry,
    *,
    chain: str | None,
    declared: Mapping[str, Any] | None,
    fields: dict[str, Any] | None = None,
) -> Decoded:
    """Decode `payload` for `wallet` (EVM: filled from the chain's RPC first), check it against
    what was `declared`, and say how to sign and send it.

    Raises:
        MalformedRequestError: the transaction is malformed, or does not do what was declared.
        PolicyDeniedError: its chain is not in the registry (UNKNOWN_CHAIN).
        ChainUnavailableError: the RPC that fills an EVM transaction failed.
    """
    job = _ToDecode(vault, agent, wallet, payload, registry, chain, declared, fields)
    return _evm(job) if wallet.chain is Chain.EVM else _solana(job)


def evm_tx_of(
    payload: str | dict[str, Any], reg: Registry, chain: str | None
) -> tuple[EvmTx, ChainInfo]:
    """The EVM transaction in `payload` and its registry chain (from its chainId, or `chain`)."""
    requested = resolve_chain(reg, chain, "evm") if chain is not None else None
    # parse_transaction refuses a transaction without a chain id unless one is named here.
    tx = evm_tx.parse_transaction(payload, chain_id=requested.chain_id if requested else None)
    return tx, resolve_chain(reg, tx.chain_id, "evm")


def complete_for_threshold(tx: EvmTx) -> EvmTx:
    """A 2-of-3 wallet signs exactly the transaction both parties hashed: nothing is filled.

    Raises:
        MalformedRequestError: the transaction lacks a field the RPC would fill.
    """
    if tx.missing_fields():
        raise MalformedRequestError(
            f"A 2-of-3 wallet signs exactly the transaction both parties hash, so keysafe does "
            f"not fill it in; it lacks {', '.join(tx.missing_fields())}.",
            next_step="include nonce, gas and the fees (and chainId) in the transaction.",
        )
    return tx


def _evm(job: _ToDecode) -> Decoded:
    tx, chain_info = evm_tx_of(job.payload, job.registry, job.chain)
    address = job.wallet.address
    if job.fields is not None:
        tx = complete_for_threshold(tx)
    if tx.missing_fields():
        if chain_info.rpc is None:
            raise MalformedRequestError(
                f"The transaction lacks {', '.join(tx.missing_fields())} and chain "
                f"'{chain_info.name}' has no RPC to fill them in.",
                next_step="include them, or the owner sets an RPC (`keysafe chain add NAME "
                "--chain-id N --rpc URL`).",
            )
        tx = EvmRpc(chain_info.rpc).fill(tx, address)
    intent = evm_intents.intent_from_tx(tx, registry=job.registry, chain=chain_info).model_copy(
        update={"wallet": job.wallet.name}
    )
    check_declared(intent, job.declared)
    filled = tx

    def sign(key: SecretBytes, _request_id: str) -> tuple[str, str]:
        if job.fields is not None:
            # `key` is the vault's share here: the agent's rounds and the vault's make the
            # signature, checked like any other before it is returned.
            digest = evm_signing.transaction_hash(filled)
            sig = DklsCosigner(job.vault, job.agent, job.shared()).cosign(digest, job.fields)
            signed = evm_signing.assemble_transaction(
                filled, sig.r, sig.s, sig.recovery_id, address
            )
        else:
            signed = evm_signing.sign_transaction(filled, key)
        evm_signing.verify_signed(signed, filled, address)
        return signed.raw_hex, signed.tx_hash

    def send(rpc_url: str, raw: str) -> None:
        EvmRpc(rpc_url).send_raw(raw)

    return Decoded(chain_info, intent, sign, send)


def _solana(job: _ToDecode) -> Decoded:
    if not isinstance(job.payload, str):
        raise MalformedRequestError(
            "A Solana transaction is given as base64 text.",
            next_step="serialize the transaction and base64-encode it.",
        )
    address = job.wallet.address
    chain_info = resolve_chain(job.registry, job.chain, "solana")
    tx = sol_tx.parse_transaction(job.payload)
    intent = sol_intents.intent_from_tx(
        tx, registry=job.registry, chain=chain_info, wallet_address=address
    ).model_copy(update={"wallet": job.wallet.name})
    if job.declared:
        # Solana's own check also accepts the recipient's wallet for its associated token account.
        check_declared_keys(job.declared)
        intent = sol_intents.check_declared(intent, intent.model_copy(update=dict(job.declared)))

    def sign(seed: SecretBytes, _request_id: str) -> tuple[str, str]:
        if job.fields is not None:
            # `seed` is the vault's share here: the agent's share and this one make the signature.
            signature = threshold_frost.cosign(
                job.vault, job.agent, job.shared(), tx.message_bytes, job.fields
            )
            signed = sol_signing.attach_signature(tx, address, signature)
        else:
            signed = sol_signing.sign_transaction(tx, seed)  # verifies every signature itself
        return signed.base64, signed.signature_b58

    def send(rpc_url: str, raw: str) -> None:
        with SolanaRpc(rpc_url) as rpc:
            rpc.send_transaction(raw)

    return Decoded(chain_info, intent, sign, send)
