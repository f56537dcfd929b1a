"""Signing for agents (and the owner): transactions, messages and EIP-712 typed data.

Each use case decodes the raw material into the intent the policy judges (no blind signing:
what the agent declares must equal what is decoded), names the exact bytes it would sign, and
hands both to the gate (service/gate.py), which decides, reserves, parks or runs the act below.
The act opens the key (or, for a 2-of-3 wallet, adds the vault's share to the agent's), signs,
and verifies the result (signer recovered, transaction re-decoded) before anything is returned;
a send broadcasts through the chain's RPC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from keysafe import approvals
from keysafe.approvals import Kind
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
from keysafe.crypto import jcs
from keysafe.errors import MalformedRequestError, NotFoundError, PolicyDeniedError
from keysafe.policy.intent import Intent
from keysafe.policy.registry import ChainInfo, Registry, UnknownName
from keysafe.service import gate
from keysafe.service import threshold as threshold_wallets
from keysafe.service.models import (
    RecordKind,
    SecretBytes,
    SignMessageRequest,
    SignTransactionRequest,
    SignTypedDataRequest,
)
from keysafe.service.registry import load_registry as load_registry_of
from keysafe.service.registry import registry as load_registry
from keysafe.vault.records import RecordInfo
from keysafe.vault.vault import Vault

Status = Literal["signed", "sent", "pending_approval"]


@dataclass(frozen=True, slots=True)
class SignResult:
    status: Status
    wallet: str
    address: str
    chain: str | None
    summary: str
    request_id: str
    signed_transaction: str | None = None
    tx_hash: str | None = None
    signature: str | None = None
    rule: str | None = None
    approval_id: str | None = None
    expires_at: str | None = None
    intent: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status, "wallet": self.wallet, "address": self.address,
            "chain": self.chain, "summary": self.summary, "request_id": self.request_id,
        }  # fmt: skip
        for k in (
            "signed_transaction",
            "tx_hash",
            "signature",
            "rule",
            "approval_id",
            "expires_at",
        ):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out


def _load(d: dict[str, Any]) -> SignResult:
    return SignResult(**d)


def _facts(r: SignResult) -> dict[str, Any]:
    return {"wallet": r.wallet, "chain": r.chain, "tx_hash": r.tx_hash, "status": r.status,
            "summary": r.summary}  # fmt: skip


CODEC: gate.Codec[SignResult] = gate.Codec(
    dump=dataclasses.asdict, load=_load, facts=_facts, view=SignResult.to_dict
)


# -- helpers -------------------------------------------------------------------------------


def wallet_record(vault: Vault, name: str) -> RecordInfo:
    with vault.db.read() as conn:
        return vault.get_record(conn, RecordKind.WALLET, name)


def wallet_and_registry(vault: Vault, name: str) -> tuple[RecordInfo, Registry]:
    """The wallet's record and the chain registry, read in one transaction (a transaction
    costs more than either read)."""
    with vault.db.read() as conn:
        return vault.get_record(conn, RecordKind.WALLET, name), load_registry_of(conn)


def resolve_chain(reg: Registry, ref: str | int | None, family: str) -> ChainInfo:
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


def _check_declared_keys(declared: Mapping[str, Any]) -> None:
    for key in declared:
        if key not in _DECLARABLE:
            raise MalformedRequestError(
                f"'{str(key)[:40]}' cannot be declared.",
                next_step="declare only action, asset, amount, to, spender, contract or chain.",
            )


def check_declared(intent: Intent, declared: Mapping[str, Any] | None) -> None:
    """No blind signing: every field the agent declared must equal the decoded one."""
    if not declared:
        return
    _check_declared_keys(declared)
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


def _pending(info: RecordInfo, chain: str | None, parked: gate.Parked) -> SignResult:
    a = parked.approval
    return SignResult(
        "pending_approval", info.name, info.meta["address"], chain, a.summary, "",
        rule=a.rule, approval_id=a.id, expires_at=a.for_agent()["expires_at"],
        intent=parked.intent.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip


def _threshold_fields(
    vault: Vault,
    agent: str,
    info: RecordInfo,
    threshold: Mapping[str, Any] | None,
    *,
    dry_run: bool = False,
) -> dict[str, Any] | None:
    """A 2-of-3 wallet signs only with the agent's part; a plain wallet never takes one. A dry
    run signs nothing, so it asks the policy about a 2-of-3 wallet without the agent's part."""
    if dry_run and threshold is None:
        return None
    if threshold_wallets.is_threshold(info) == (threshold is not None):
        return dict(threshold) if threshold is not None else None
    threshold_wallets.discard(vault, agent, dict(threshold) if threshold else None)
    if threshold is None:
        raise MalformedRequestError(
            f"Wallet '{info.name}' is a 2-of-3 threshold wallet: the agent's share must take part "
            "(keysafe mcp adds it when KEYSAFE_AGENT_SHARE_FILE names the agent's share file).",
            next_step="use `keysafe mcp` with KEYSAFE_AGENT_SHARE_FILE set to the agent's share "
            "file; it adds the agent's part for you.",
        )
    raise MalformedRequestError(
        f"Wallet '{info.name}' is not a threshold wallet; drop the 'threshold' field.",
        next_step="send the request without 'threshold'.",
    )


def through_gate(
    vault: Vault,
    req: gate.Request,
    info: RecordInfo,
    chain: str | None,
    act: Callable[[str], SignResult],
    threshold: dict[str, Any] | None,
) -> SignResult:
    """Run the request through the gate. A 2-of-3 wallet's vault commitment is dropped unless
    the request is parked with it (approving then uses it while it is alive)."""
    try:
        out = gate.run(vault, req, act, CODEC)
    except BaseException:
        threshold_wallets.discard(vault, req.agent, threshold)
        if threshold is not None:
            threshold_wallets.persist_bans(vault)  # a failed DKLs23 check, now out of the gate
        raise
    if isinstance(out, gate.Parked):
        return _pending(info, chain, out)
    threshold_wallets.discard(vault, req.agent, threshold)  # e.g. a replay never used it
    return out


# -- EVM and Solana transactions ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decoded:
    """A transaction decoded for one wallet: what the policy judges and how to sign it."""

    chain: ChainInfo
    intent: Intent
    sign: Callable[[SecretBytes, str], tuple[str, str]]  # (key, request id) → (raw, hash/id)
    send: Callable[[str, str], None]  # (rpc url, raw)


def sign_transaction(
    vault: Vault,
    agent: str,
    wallet: str,
    payload: str | dict[str, Any],
    *,
    chain: str | None = None,
    description: str | None = None,
    declared: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    broadcast: bool = False,
    approval_id: str | None = None,
    threshold: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> SignResult:
    """Sign (and with `broadcast`, send) a transaction for `agent` from the vault wallet.

    `approval_id` is set only when an owner-approved parked request runs (service/approvals.py).
    `threshold` carries the agent's part for a 2-of-3 wallet (service/threshold.py).
    """
    vault.require_unlocked()  # before anything is decoded or reserved
    wire = SignTransactionRequest(
        wallet=wallet, transaction=payload, chain=chain, description=description,
        declared=dict(declared) if declared else None, idempotency_key=idempotency_key,
        threshold=dict(threshold) if threshold else None,
    )  # fmt: skip
    info, reg = wallet_and_registry(vault, wallet)
    fields = _threshold_fields(vault, agent, info, threshold, dry_run=dry_run)
    try:
        decoded = decode_transaction(
            vault, agent, info, payload, registry=reg, chain=chain, declared=declared,
            fields=fields,
        )  # fmt: skip
    except BaseException:
        threshold_wallets.discard(vault, agent, fields)
        raise
    family = str(info.meta["chain"])
    req = gate.Request(
        agent=agent, kind=Kind.SEND_TRANSACTION if broadcast else Kind.SIGN_TRANSACTION,
        wire=wire, intent=decoded.intent,
        # The transaction as the agent sent it: the vault may fill nonce and fees from the chain,
        # and a retry must match its first request even after the chain moved on.
        payload=jcs.dumps(approvals.jsonable({"transaction": payload, "chain": chain})),
        target=f"wallet:{wallet}",
        audit_action=f"{family}.send_transaction" if broadcast else f"{family}.sign_transaction",
        idempotency_key=idempotency_key, approval_id=approval_id, reaches_out=broadcast,
        dry_run=dry_run,
    )  # fmt: skip
    act = transaction_act(vault, info, decoded, broadcast=broadcast)
    return through_gate(vault, req, info, decoded.chain.name, act, fields)


def transaction_act(
    vault: Vault, info: RecordInfo, decoded: Decoded, *, broadcast: bool
) -> Callable[[str], SignResult]:
    """The gate's act for a decoded transaction: open the key, sign and verify, and with
    `broadcast` send it through the chain's RPC (send_transaction and transfer share it)."""
    chain_info = decoded.chain

    def act(request_id: str) -> SignResult:
        with vault.db.read() as conn, vault.open_record(conn, info) as key:
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
        return SignResult(
            status, info.name, info.meta["address"], chain_info.name,
            decoded.intent.summary or decoded.intent.action, request_id,
            signed_transaction=raw, tx_hash=txid,
            intent=decoded.intent.model_dump(mode="json", exclude_none=True),
        )  # fmt: skip

    return act


def send_transaction(
    vault: Vault, agent: str, wallet: str, payload: str | dict[str, Any], **kw: Any
) -> SignResult:
    return sign_transaction(vault, agent, wallet, payload, broadcast=True, **kw)


def decode_transaction(
    vault: Vault,
    agent: str,
    info: RecordInfo,
    payload: str | dict[str, Any],
    *,
    registry: Registry,
    chain: str | None,
    declared: Mapping[str, Any] | None,
    fields: dict[str, Any] | None = None,
) -> Decoded:
    """Decode `payload` for the wallet `info` (EVM: filled from the chain's RPC first), check it
    against what was `declared`, and say how to sign and send it.

    Raises:
        MalformedRequestError: the transaction is malformed, or does not do what was declared.
        PolicyDeniedError: its chain is not in the registry (UNKNOWN_CHAIN).
        ChainUnavailableError: the RPC that fills an EVM transaction failed.
    """
    if info.meta["chain"] == Chain.EVM:
        return _evm(
            vault, agent, info, payload, registry, chain=chain, declared=declared, fields=fields
        )
    return _solana(
        vault, agent, info, payload, registry, chain=chain, declared=declared, fields=fields
    )


def _evm_tx(
    payload: str | dict[str, Any], reg: Registry, chain: str | None
) -> tuple[EvmTx, ChainInfo]:
    requested = resolve_chain(reg, chain, "evm") if chain is not None else None
    # parse_transaction refuses a transaction without a chain id unless one is named here.
    tx = evm_tx.parse_transaction(payload, chain_id=requested.chain_id if requested else None)
    return tx, resolve_chain(reg, tx.chain_id, "evm")


def _complete_for_threshold(tx: EvmTx) -> EvmTx:
    """A 2-of-3 wallet signs exactly the transaction both parties hashed: nothing is filled."""
    if tx.missing_fields():
        raise MalformedRequestError(
            f"A 2-of-3 wallet signs exactly the transaction both parties hash, so keysafe does "
            f"not fill it in; it lacks {', '.join(tx.missing_fields())}.",
            next_step="include nonce, gas and the fees (and chainId) in the transaction.",
        )
    return tx


def threshold_exchange(
    vault: Vault, agent: str, wallet: str, fields: dict[str, Any], *,
    transaction: str | dict[str, Any] | None = None, chain: str | None = None,
    message: str | None = None, encoding: str = "utf8",
    typed_data: dict[str, Any] | None = None,
) -> dict[str, str]:  # fmt: skip
    """Step 2 of an EVM 2-of-3 signature (service/threshold.py): hash the transaction (or the
    EIP-191 message, or the EIP-712 typed data) here, as the gate will, and run the vault's
    rounds 1 and 2 over that hash.

    Raises:
        MalformedRequestError: not a 2-of-3 EVM wallet of this agent, an incomplete or malformed
            transaction, or an invalid agent round (culprit 1).
    """
    vault.require_unlocked()
    info, reg = wallet_and_registry(vault, wallet)
    if (
        not threshold_wallets.is_threshold(info)
        or info.meta.get("agent") != agent
        or (info.meta["chain"] != Chain.EVM)
    ):
        raise NotFoundError(
            f"No 2-of-3 EVM wallet '{wallet[:64]}' shared with this agent.",
            next_step="see list_capabilities for the wallets you may use.",
        )
    if sum(x is not None for x in (transaction, message, typed_data)) != 1:
        raise MalformedRequestError(
            "Give the transaction, the message or the typed data the session is for (one).",
            next_step="send 'transaction' (with chain), 'message' (with encoding) or 'typed_data'.",
        )
    if transaction is not None:
        tx = _complete_for_threshold(_evm_tx(transaction, reg, chain)[0])
        digest = evm_signing.transaction_hash(tx)
    elif typed_data is not None:
        digest = evm_intents.typed_data_digest(typed_data)
    else:
        assert message is not None
        _, data = _message_intent(info, reg, message, encoding)
        digest = evm_signing.personal_digest(data)[1]
    return threshold_wallets.dkls_exchange(vault, agent, info, digest, fields)


def _evm(
    vault: Vault,
    agent: str,
    info: RecordInfo,
    payload: str | dict[str, Any],
    reg: Registry,
    *,
    chain: str | None,
    declared: Mapping[str, Any] | None,
    fields: dict[str, Any] | None,
) -> Decoded:
    tx, chain_info = _evm_tx(payload, reg, chain)
    if fields is not None:
        tx = _complete_for_threshold(tx)
    if tx.missing_fields():
        if chain_info.rpc is None:
            raise MalformedRequestError(
                f"The transaction lacks {', '.join(tx.missing_fields())} and chain "
                f"'{chain_info.name}' has no RPC to fill them in.",
                next_step="include them, or the owner sets an RPC (`keysafe chain add NAME --chain-id N --rpc URL`).",
            )
        tx = EvmRpc(chain_info.rpc).fill(tx, info.meta["address"])
    intent = evm_intents.intent_from_tx(tx, registry=reg, chain=chain_info).model_copy(
        update={"wallet": info.name}
    )
    check_declared(intent, declared)
    filled = tx

    def sign(key: SecretBytes, _request_id: str) -> tuple[str, str]:
        if fields is not None:
            # `key` is the vault's share here: the agent's rounds and the vault's make the
            # signature, checked like any other before it is returned.
            digest = evm_signing.transaction_hash(filled)
            sig = threshold_wallets.cosign_ecdsa(vault, agent, info, digest, fields)
            signed = evm_signing.assemble_transaction(
                filled, sig.r, sig.s, sig.recovery_id, info.meta["address"]
            )
        else:
            signed = evm_signing.sign_transaction(filled, key)
        evm_signing.verify_signed(signed, filled, info.meta["address"])
        return signed.raw_hex, signed.tx_hash

    def send(rpc_url: str, raw: str) -> None:
        EvmRpc(rpc_url).send_raw(raw)

    return Decoded(chain_info, intent, sign, send)


def _solana(
    vault: Vault,
    agent: str,
    info: RecordInfo,
    payload: str | dict[str, Any],
    reg: Registry,
    *,
    chain: str | None,
    declared: Mapping[str, Any] | None,
    fields: dict[str, Any] | None,
) -> Decoded:
    if not isinstance(payload, str):
        raise MalformedRequestError(
            "A Solana transaction is given as base64 text.",
            next_step="serialize the transaction and base64-encode it.",
        )
    chain_info = resolve_chain(reg, chain, "solana")
    tx = sol_tx.parse_transaction(payload)
    intent = sol_intents.intent_from_tx(
        tx, registry=reg, chain=chain_info, wallet_address=info.meta["address"]
    ).model_copy(update={"wallet": info.name})
    if declared:
        # Solana's own check also accepts the recipient's wallet for its associated token account.
        _check_declared_keys(declared)
        intent = sol_intents.check_declared(intent, intent.model_copy(update=dict(declared)))

    def sign(seed: SecretBytes, _request_id: str) -> tuple[str, str]:
        if fields is not None:
            # `seed` is the vault's share here: the agent's share and this one make the signature.
            signature = threshold_wallets.cosign(vault, agent, info, tx.message_bytes, fields)
            signed = sol_signing.attach_signature(tx, info.meta["address"], signature)
        else:
            signed = sol_signing.sign_transaction(tx, seed)  # verifies every signature itself
        return signed.base64, signed.signature_b58

    def send(rpc_url: str, raw: str) -> None:
        with SolanaRpc(rpc_url) as rpc:
            rpc.send_transaction(raw)

    return Decoded(chain_info, intent, sign, send)


# -- messages ------------------------------------------------------------------------------


def _message_intent(
    info: RecordInfo, reg: Registry, message: str, encoding: str
) -> tuple[Intent, bytes]:
    if info.meta["chain"] == Chain.EVM:
        return evm_intents.intent_from_personal_message(message, chain=reg.chain("ethereum"))
    if encoding not in ("utf8", "base64"):
        raise MalformedRequestError(
            "encoding is utf8 or base64.", next_step="pass encoding utf8 (default) or base64."
        )
    return sol_intents.intent_from_message(message, encoding=encoding, chain=reg.chain("solana"))


def _sign_message_bytes(info: RecordInfo, data: bytes, key: SecretBytes) -> str:
    if info.meta["chain"] == Chain.EVM:
        signature, address = evm_signing.sign_personal_message(data, key)
        if address != info.meta["address"]:
            raise MalformedRequestError("signer mismatch", next_step="report this bug.")
        return signature
    return sol_signing.sign_message(data, key)


def _owner_sign_message(vault: Vault, info: RecordInfo, intent: Intent, data: bytes) -> SignResult:
    """The owner (CLI, after unlocking) signs: no policy, but audited all the same."""
    if threshold_wallets.is_threshold(info):
        raise MalformedRequestError(
            f"Wallet '{info.name}' is a 2-of-3 threshold wallet; its messages are signed by two "
            "parties.",
            next_step=f"the owner signs with `keysafe wallet sign-message {info.name} MSG "
            "--recovery-file FILE`.",
        )
    with vault.db.read() as conn, vault.open_record(conn, info) as key:
        signature = _sign_message_bytes(info, data, key)
    with vault.db.write() as conn:
        vault.audit(
            conn, actor="owner", action="wallet.sign_message", target=f"wallet:{info.name}",
            outcome="success", details={"wallet": info.name, "summary": intent.summary},
        )  # fmt: skip
    return SignResult(
        "signed", info.name, info.meta["address"], None, intent.summary or intent.action, "",
        signature=signature,
    )  # fmt: skip


def sign_message(
    vault: Vault,
    agent: str | None,
    wallet: str,
    message: str,
    *,
    encoding: str = "utf8",
    idempotency_key: str | None = None,
    approval_id: str | None = None,
    threshold: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> SignResult:
    """EIP-191 for EVM wallets, Ed25519 over the raw bytes for Solana (a 2-of-3 wallet with the
    agent's part in `threshold`). `agent=None` is the owner: no policy, audited all the same."""
    vault.require_unlocked()
    info = wallet_record(vault, wallet)
    reg = load_registry(vault)
    intent, data = _message_intent(info, reg, message, encoding)
    intent = intent.model_copy(update={"wallet": wallet})
    if agent is None:
        return _owner_sign_message(vault, info, intent, data)
    fields = _threshold_fields(vault, agent, info, threshold, dry_run=dry_run)
    wire = SignMessageRequest(
        wallet=wallet, message=message, encoding=encoding, idempotency_key=idempotency_key,
        threshold=fields,
    )  # fmt: skip
    req = gate.Request(
        agent=agent, kind=Kind.SIGN_MESSAGE, wire=wire, intent=intent, payload=data,
        target=f"wallet:{wallet}", audit_action=f"{info.meta['chain']}.sign_message",
        idempotency_key=idempotency_key, approval_id=approval_id, dry_run=dry_run,
    )  # fmt: skip

    def act(request_id: str) -> SignResult:
        if fields is not None and info.meta["chain"] == Chain.EVM:
            signable, digest = evm_signing.personal_digest(data)
            sig = threshold_wallets.cosign_ecdsa(vault, agent, info, digest, fields)
            signature = evm_signing.assemble_message_signature(
                signable, sig.r, sig.s, sig.recovery_id, info.meta["address"]
            )
        elif fields is not None:
            raw = threshold_wallets.cosign(vault, agent, info, data, fields)
            signature = sol_signing.verify_message_signature(data, info.meta["address"], raw)
        else:
            with vault.db.read() as conn, vault.open_record(conn, info) as key:
                signature = _sign_message_bytes(info, data, key)
        return SignResult(
            "signed", wallet, info.meta["address"], None, intent.summary or intent.action,
            request_id, signature=signature,
            intent=intent.model_dump(mode="json", exclude_none=True),
        )  # fmt: skip

    return through_gate(vault, req, info, None, act, fields)


def sign_typed_data(
    vault: Vault,
    agent: str,
    wallet: str,
    typed_data: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    approval_id: str | None = None,
    threshold: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> SignResult:
    """EIP-712 typed data, judged by what it grants (permits become approvals, transfers …); a
    2-of-3 wallet signs with the agent's DKLs23 rounds in `threshold`."""
    vault.require_unlocked()
    info = wallet_record(vault, wallet)
    if info.meta["chain"] != Chain.EVM:
        raise MalformedRequestError(
            "EIP-712 typed data is signed by EVM wallets only.", next_step="use an EVM wallet."
        )
    fields = _threshold_fields(vault, agent, info, threshold, dry_run=dry_run)
    reg = load_registry(vault)
    domain = typed_data.get("domain") if isinstance(typed_data, dict) else None
    chain_ref = domain.get("chainId") if isinstance(domain, dict) else None
    chain_info = resolve_chain(reg, chain_ref if chain_ref is not None else "ethereum", "evm")
    intent = evm_intents.intent_from_typed_data(
        typed_data, registry=reg, chain=chain_info, wallet_address=info.meta["address"]
    ).model_copy(update={"wallet": wallet})
    wire = SignTypedDataRequest(
        wallet=wallet, typed_data=typed_data, idempotency_key=idempotency_key, threshold=fields
    )
    req = gate.Request(
        agent=agent, kind=Kind.SIGN_TYPED_DATA, wire=wire, intent=intent,
        payload=evm_intents.typed_data_digest(typed_data),  # the EIP-712 digest that is signed
        target=f"wallet:{wallet}", audit_action="evm.sign_typed_data",
        idempotency_key=idempotency_key, approval_id=approval_id, dry_run=dry_run,
    )  # fmt: skip

    def act(request_id: str) -> SignResult:
        if fields is not None:  # the agent's rounds and the vault's make the signature
            digest = evm_intents.typed_data_digest(typed_data)
            sig = threshold_wallets.cosign_ecdsa(vault, agent, info, digest, fields)
            signature = evm_signing.assemble_message_signature(
                evm_intents.encode_typed(typed_data), sig.r, sig.s, sig.recovery_id,
                info.meta["address"],
            )  # fmt: skip
        else:
            with vault.db.read() as conn, vault.open_record(conn, info) as key:
                signature = evm_signing.sign_typed_data(typed_data, key)
        return SignResult(
            "signed", wallet, info.meta["address"], chain_info.name,
            intent.summary or intent.action, request_id, signature=signature,
            intent=intent.model_dump(mode="json", exclude_none=True),
        )  # fmt: skip

    return through_gate(vault, req, info, chain_info.name, act, fields)
