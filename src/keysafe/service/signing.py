"""Signing for agents (and the owner): transactions, messages and EIP-712 typed data.

Each use case decodes the raw material into the intent the policy judges (no blind signing:
what the agent declares must equal what is decoded), names the exact bytes it would sign, and
hands both to the gate (service/gate.py), which decides, reserves, parks or runs the act below.
The act opens the key (or, for a 2-of-3 wallet, adds the vault's share to the agent's), signs,
and verifies the result (signer recovered, transaction re-decoded) before anything is returned;
a send broadcasts through the chain's RPC.

The errors every agent use case here may raise: VaultLockedError (locked vault), NotFoundError (no
such wallet), MalformedRequestError (besides each one's own cases: the agent's 2-of-3 part
missing for a 2-of-3 wallet, or given for another), PolicyDeniedError (BudgetExceededError over
a budget) and IdempotencyConflictError (a key reused for another request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keysafe import approvals
from keysafe.approvals import Kind
from keysafe.audit.outcome import Outcome
from keysafe.chains import Chain
from keysafe.chains.evm import intents as evm_intents
from keysafe.chains.evm import signing as evm_signing
from keysafe.chains.solana import intents as sol_intents
from keysafe.chains.solana import signing as sol_signing
from keysafe.crypto import jcs
from keysafe.errors import MalformedRequestError, NotFoundError
from keysafe.policy.intent import Intent
from keysafe.policy.registry import ChainInfo, Registry
from keysafe.service import gate
from keysafe.service import threshold as threshold_frost
from keysafe.service.models import (
    RecordKind,
    SecretBytes,
    SignMessageRequest,
    SignTransactionRequest,
    SignTypedDataRequest,
    ThresholdExchangeRequest,
)
from keysafe.service.record_meta import Wallet
from keysafe.service.registry import load_registry as load_registry_of
from keysafe.service.registry import registry as load_registry
from keysafe.service.signing_gate import (
    SignResult,
    Status,
    shared_wallet,
    signed_result,
    threshold_fields,
    through_gate,
)
from keysafe.service.threshold_dkls import DklsCosigner
from keysafe.service.threshold_state import discard
from keysafe.service.transactions import (
    Decoded,
    complete_for_threshold,
    decode_transaction,
    evm_tx_of,
    resolve_chain,
)
from keysafe.vault.vault import Vault

# -- helpers -------------------------------------------------------------------------------


def wallet_record(vault: Vault, name: str) -> Wallet:
    """The wallet `name`, its metadata parsed.

    Raises:
        NotFoundError: no wallet of that name.
    """
    with vault.db.read() as conn:
        return Wallet.of(vault.get_record(conn, RecordKind.WALLET, name))


def wallet_and_registry(vault: Vault, name: str) -> tuple[Wallet, Registry]:
    """The wallet's record and the chain registry, read in one transaction (a transaction
    costs more than either read)."""
    with vault.db.read() as conn:
        return Wallet.of(vault.get_record(conn, RecordKind.WALLET, name)), load_registry_of(conn)


def sign_transaction(
    vault: Vault,
    agent: str,
    request: SignTransactionRequest,
    *,
    broadcast: bool = False,
    approval_id: str | None = None,
    dry_run: bool = False,
) -> SignResult:
    """Sign (and with `broadcast`, send through the chain's RPC) the transaction in `request`
    for `agent`.

    `approval_id` is set only when an owner-approved parked request runs (service/approvals.py).
    `request.threshold` carries the agent's part for a 2-of-3 wallet (service/threshold.py).

    Raises:
        MalformedRequestError: a malformed transaction, or one that does not do what was
            declared (besides the errors every use case here may raise: see above).
        ChainUnavailableError: with `broadcast`, the chain's RPC did not take it.
    """
    vault.require_unlocked()  # before anything is decoded or reserved
    wallet, payload, chain = request.wallet, request.transaction, request.chain
    found, reg = wallet_and_registry(vault, wallet)
    fields = threshold_fields(vault, agent, found, request.threshold, dry_run=dry_run)
    try:
        decoded = decode_transaction(
            vault, agent, found, payload, reg, chain=chain, declared=request.declared, fields=fields
        )
    except BaseException:
        discard(vault, agent, fields)  # never reaches the gate: its 2-of-3 commitment goes now
        raise
    family = str(found.chain)
    req = gate.Request(
        agent=agent,
        kind=Kind.SEND_TRANSACTION if broadcast else Kind.SIGN_TRANSACTION,
        # Parked as sent, except that an empty `declared` or `threshold` is parked as none.
        wire=request.model_copy(
            update={"declared": request.declared or None, "threshold": request.threshold or None}
        ),
        intent=decoded.intent,
        # The transaction as the agent sent it: the vault may fill nonce and fees from the chain,
        # and a retry must match its first request even after the chain moved on.
        payload=jcs.dumps(approvals.jsonable({"transaction": payload, "chain": chain})),
        target=f"wallet:{wallet}",
        audit_action=f"{family}.send_transaction" if broadcast else f"{family}.sign_transaction",
        idempotency_key=request.idempotency_key,
        approval_id=approval_id,
        reaches_out=broadcast,
        dry_run=dry_run,
    )
    act = transaction_act(vault, found, decoded, broadcast=broadcast)
    return through_gate(vault, req, found, decoded.chain.name, act, fields)


def transaction_act(
    vault: Vault, found: Wallet, decoded: Decoded, *, broadcast: bool
) -> Callable[[str], SignResult]:
    """The gate's act for a decoded transaction: open the key, sign and verify, and with
    `broadcast` send it through the chain's RPC (a send and a transfer share it)."""
    chain_info = decoded.chain

    def act(request_id: str) -> SignResult:
        with vault.db.read() as conn, vault.open_record(conn, found.info) as key:
            raw, txid = decoded.sign(key, request_id)
        status: Status = "signed"
        if broadcast:
            if chain_info.rpc is None:
                raise MalformedRequestError(
                    f"Chain '{chain_info.name}' has no RPC, so keysafe cannot send.",
                    next_step="sign only, or the owner sets an RPC with `keysafe chain add`.",
                )
            decoded.send(chain_info.rpc, raw)
            status = "sent"
        return signed_result(
            status,
            found,
            chain_info.name,
            decoded.intent,
            request_id,
            signed_transaction=raw,
            tx_hash=txid,
        )

    return act


def threshold_exchange(
    vault: Vault, agent: str, request: ThresholdExchangeRequest
) -> dict[str, str]:
    """Step 2 of an EVM 2-of-3 signature (service/threshold.py): hash what `request` says the
    session is for (the transaction, the EIP-191 message or the EIP-712 typed data) here, as
    the gate will, and run the vault's rounds 1 and 2 over that hash with the agent's round 1.

    Raises:
        NotFoundError: not a 2-of-3 EVM wallet of this agent.
        MalformedRequestError: not exactly one thing to sign, an incomplete or malformed
            transaction, or an invalid agent round (culprit 1).
    """
    vault.require_unlocked()
    wallet = request.wallet
    found, reg = wallet_and_registry(vault, wallet)
    shared = found.as_threshold()
    if shared is None or shared.meta.agent != agent or shared.meta.chain is not Chain.EVM:
        raise NotFoundError(
            f"No 2-of-3 EVM wallet '{wallet[:64]}' shared with this agent.",
            next_step="see list_capabilities for the wallets you may use.",
        )
    digest = _exchange_digest(found, reg, request)
    rounds = request.model_dump(include={"session_id", "round1", "verifying_share"})
    return DklsCosigner(vault, agent, shared).exchange(digest, rounds)


def _exchange_digest(found: Wallet, reg: Registry, request: ThresholdExchangeRequest) -> bytes:
    """The hash a 2-of-3 EVM session signs: of the transaction, typed data or message (one)."""
    transaction, message, typed_data = request.transaction, request.message, request.typed_data
    if sum(x is not None for x in (transaction, message, typed_data)) != 1:
        raise MalformedRequestError(
            "Give the transaction, the message or the typed data the session is for (one).",
            next_step="send 'transaction' (with chain), 'message' (with encoding) or 'typed_data'.",
        )
    if transaction is not None:
        tx = complete_for_threshold(evm_tx_of(transaction, reg, request.chain)[0])
        return evm_signing.transaction_hash(tx)
    if typed_data is not None:
        return evm_intents.typed_data_digest(typed_data)
    assert message is not None
    _, data = _message_intent(found, reg, message, request.encoding)
    return evm_signing.personal_digest(data)[1]


# -- messages ------------------------------------------------------------------------------


def _message_intent(
    found: Wallet, reg: Registry, message: str, encoding: str
) -> tuple[Intent, bytes]:
    if found.chain == Chain.EVM:
        return evm_intents.intent_from_personal_message(message, chain=reg.chain("ethereum"))
    if encoding not in ("utf8", "base64"):
        raise MalformedRequestError(
            "encoding is utf8 or base64.", next_step="pass encoding utf8 (default) or base64."
        )
    return sol_intents.intent_from_message(message, encoding=encoding, chain=reg.chain("solana"))


def _sign_message_bytes(found: Wallet, data: bytes, key: SecretBytes) -> str:
    if found.chain == Chain.EVM:
        signature, address = evm_signing.sign_personal_message(data, key)
        if address != found.address:
            raise MalformedRequestError("signer mismatch", next_step="report this bug.")
        return signature
    return sol_signing.sign_message(data, key)


def _message_of(
    vault: Vault, wallet: str, message: str, encoding: str
) -> tuple[Wallet, Intent, bytes]:
    """The wallet, the intent its message is judged by, and the bytes that are signed."""
    vault.require_unlocked()
    found = wallet_record(vault, wallet)
    reg = load_registry(vault)
    intent, data = _message_intent(found, reg, message, encoding)
    return found, intent.model_copy(update={"wallet": wallet}), data


def sign_message_as_owner(
    vault: Vault, wallet: str, message: str, encoding: str = "utf8"
) -> SignResult:
    """The owner (CLI, after unlocking) signs `message` as `sign_message` would: no policy, but
    audited all the same.

    Raises:
        MalformedRequestError: a 2-of-3 wallet (two parties sign its messages), or a bad
            encoding.
        NotFoundError: no wallet of that name.
    """
    found, intent, data = _message_of(vault, wallet, message, encoding)
    if found.threshold is not None:
        raise MalformedRequestError(
            f"Wallet '{found.name}' is a 2-of-3 threshold wallet; its messages are signed by two "
            "parties.",
            next_step=f"the owner signs with `keysafe wallet sign-message {found.name} MSG "
            "--recovery-file FILE`.",
        )
    with vault.db.read() as conn, vault.open_record(conn, found.info) as key:
        signature = _sign_message_bytes(found, data, key)
    with vault.db.write() as conn:
        vault.audit(
            conn,
            actor="owner",
            action="wallet.sign_message",
            target=f"wallet:{found.name}",
            outcome=Outcome.SUCCESS,
            details={"wallet": found.name, "summary": intent.summary},
        )
    return SignResult(
        status="signed",
        wallet=found.name,
        address=found.address,
        chain=None,
        summary=intent.summary or intent.action,
        request_id="",
        signature=signature,
    )


def sign_message(
    vault: Vault,
    agent: str,
    request: SignMessageRequest,
    *,
    approval_id: str | None = None,
    dry_run: bool = False,
) -> SignResult:
    """EIP-191 for EVM wallets, Ed25519 over the raw bytes for Solana (a 2-of-3 wallet with the
    agent's part in `request.threshold`), signed for `agent` as its policy allows.

    Raises:
        MalformedRequestError: a bad encoding (besides the errors every use case here may
            raise: see above).
    """
    wallet = request.wallet
    found, intent, data = _message_of(vault, wallet, request.message, request.encoding)
    fields = threshold_fields(vault, agent, found, request.threshold, dry_run=dry_run)
    req = gate.Request(
        agent=agent,
        kind=Kind.SIGN_MESSAGE,
        wire=request,
        intent=intent,
        payload=data,
        target=f"wallet:{wallet}",
        audit_action=f"{found.chain}.sign_message",
        idempotency_key=request.idempotency_key,
        approval_id=approval_id,
        dry_run=dry_run,
    )

    def act(request_id: str) -> SignResult:
        if fields is not None and found.chain == Chain.EVM:
            signable, digest = evm_signing.personal_digest(data)
            sig = DklsCosigner(vault, agent, shared_wallet(found)).cosign(digest, fields)
            signature = evm_signing.assemble_message_signature(
                signable, sig.r, sig.s, sig.recovery_id, found.address
            )
        elif fields is not None:
            raw = threshold_frost.cosign(vault, agent, shared_wallet(found), data, fields)
            signature = sol_signing.verify_message_signature(data, found.address, raw)
        else:
            with vault.db.read() as conn, vault.open_record(conn, found.info) as key:
                signature = _sign_message_bytes(found, data, key)
        return signed_result("signed", found, None, intent, request_id, signature=signature)

    return through_gate(vault, req, found, None, act, fields)


def _typed_data_intent(
    vault: Vault, wallet: str, found: Wallet, typed_data: dict[str, Any]
) -> tuple[ChainInfo, Intent]:
    """The chain the typed data names in its domain (Ethereum when it names none), and the
    intent it is judged by."""
    reg = load_registry(vault)
    domain = typed_data.get("domain") if isinstance(typed_data, dict) else None
    chain_ref = domain.get("chainId") if isinstance(domain, dict) else None
    chain_info = resolve_chain(reg, chain_ref if chain_ref is not None else "ethereum", "evm")
    intent = evm_intents.intent_from_typed_data(
        typed_data, registry=reg, chain=chain_info, wallet_address=found.address
    ).model_copy(update={"wallet": wallet})
    return chain_info, intent


def sign_typed_data(
    vault: Vault,
    agent: str,
    request: SignTypedDataRequest,
    *,
    approval_id: str | None = None,
    dry_run: bool = False,
) -> SignResult:
    """EIP-712 typed data, judged by what it grants (permits become approvals, transfers …); a
    2-of-3 wallet signs with the agent's DKLs23 rounds in `request.threshold`.

    Raises:
        MalformedRequestError: not an EVM wallet, or malformed typed data (besides the
            errors every use case here may raise: see above).
    """
    vault.require_unlocked()
    wallet, typed_data = request.wallet, request.typed_data
    found = wallet_record(vault, wallet)
    if found.chain != Chain.EVM:
        raise MalformedRequestError(
            "EIP-712 typed data is signed by EVM wallets only.", next_step="use an EVM wallet."
        )
    fields = threshold_fields(vault, agent, found, request.threshold, dry_run=dry_run)
    chain_info, intent = _typed_data_intent(vault, wallet, found, typed_data)
    req = gate.Request(
        agent=agent,
        kind=Kind.SIGN_TYPED_DATA,
        wire=request,
        intent=intent,
        payload=evm_intents.typed_data_digest(typed_data),  # the EIP-712 digest that is signed
        target=f"wallet:{wallet}",
        audit_action="evm.sign_typed_data",
        idempotency_key=request.idempotency_key,
        approval_id=approval_id,
        dry_run=dry_run,
    )

    def act(request_id: str) -> SignResult:
        if fields is not None:  # the agent's rounds and the vault's make the signature
            digest = evm_intents.typed_data_digest(typed_data)
            sig = DklsCosigner(vault, agent, shared_wallet(found)).cosign(digest, fields)
            signature = evm_signing.assemble_message_signature(
                evm_intents.encode_typed(typed_data),
                sig.r,
                sig.s,
                sig.recovery_id,
                found.address,
            )
        else:
            with vault.db.read() as conn, vault.open_record(conn, found.info) as key:
                signature = evm_signing.sign_typed_data(typed_data, key)
        return signed_result(
            "signed", found, chain_info.name, intent, request_id, signature=signature
        )

    return through_gate(vault, req, found, chain_info.name, act, fields)
