"""Signing for agents (and the owner): decode, decide, reserve, sign, verify, settle, audit.

One function per use case; every surface (CLI, HTTP, MCP) calls these. The order is the request
flow of DESIGN.md: the raw material is decoded into an intent (no blind signing: what the agent
declares must equal what is decoded), the policy decides and the spend is reserved in one
transaction, the key is opened only for an allowed request, the result is verified (signer
recovered, transaction re-decoded) before anything is returned, and the reservation is committed
only when the signature (or the broadcast) succeeded; otherwise it is released.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import update

from keysafe.errors import (
    IdempotencyConflictError,
    KeysafeError,
    MalformedRequestError,
    PolicyDeniedError,
)
from keysafe.policy.intent import Intent
from keysafe.policy.registry import ChainInfo, Registry, UnknownName
from keysafe.service import policies
from keysafe.service.models import Chain, RecordKind, SecretBytes
from keysafe.service.registry import registry as load_registry
from keysafe.store import tables as t
from keysafe.vault.vault import RecordInfo, Vault

logger = logging.getLogger(__name__)

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


# -- helpers -------------------------------------------------------------------------------


def _wallet(vault: Vault, name: str) -> RecordInfo:
    with vault.db.read() as conn:
        return vault.get_record(conn, RecordKind.WALLET, name)


def _resolve_chain(reg: Registry, ref: str | int | None, family: str) -> ChainInfo:
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
            from decimal import Decimal, InvalidOperation

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


def _authorize(
    vault: Vault, agent: str, intent: Intent, idempotency_key: str | None, approved: bool = False
) -> policies.Authorization:
    auth = policies.authorize(
        vault, agent, intent, idempotency_key=idempotency_key, approved=approved
    )
    policies.raise_if_denied(auth.decision, agent)
    return auth


def _pending(
    vault: Vault,
    agent: str,
    wallet: RecordInfo,
    chain: str | None,
    intent: Intent,
    auth: policies.Authorization,
    *,
    kind: str,
    request: dict[str, Any],
    idempotency_key: str | None = None,
) -> SignResult:
    """Park the exact request for the owner; the agent gets an approval id to wait on."""
    from keysafe.service import approvals

    summary = intent.summary or intent.action
    # The decoded intent travels with the parked request, so the owner sees full addresses and
    # amounts, not only the one-line summary.
    parked = approvals.park(
        vault, agent, kind,
        request | {"action": intent.action, "intent": intent.model_dump(mode="json", exclude_none=True)},
        summary=summary, rule=auth.decision.rule,
    )  # fmt: skip
    result = SignResult(
        "pending_approval", wallet.name, wallet.meta["address"], chain, summary,
        auth.request_id, rule=auth.decision.rule, approval_id=parked.id,
        expires_at=parked.for_agent()["expires_at"],
        intent=intent.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip
    _remember(vault, agent, idempotency_key, result)
    return result


def _replay(
    vault: Vault, agent: str, key: str | None, auth: policies.Authorization
) -> SignResult | None:
    """The first result for a repeated idempotency key (authorize already checked that the
    intent is the same one; a different one raised IDEMPOTENCY_CONFLICT)."""
    if key is None or not auth.replayed:
        return None
    with vault.db.read() as conn:
        row = conn.execute(
            t.idempotency.select().where(t.idempotency.c.agent == agent, t.idempotency.c.key == key)
        ).first()
    stored = json.loads(row.result).get("result") if row is not None else None
    if not stored:
        # The first request with this key never finished: signing again now would skip the
        # budget (a replay reserves nothing), so refuse instead.
        raise IdempotencyConflictError(
            f"Idempotency key '{key[:60]}' belongs to a request that did not complete.",
            next_step="retry with a new idempotency key.",
        )
    return SignResult(**stored)


def _remember(vault: Vault, agent: str, key: str | None, result: SignResult) -> None:
    """Store the result under the request's idempotency key, for replays."""
    if key is None:
        return
    with vault.db.write() as conn:
        row = conn.execute(
            t.idempotency.select().where(t.idempotency.c.agent == agent, t.idempotency.c.key == key)
        ).first()
        if row is not None:
            stored = json.loads(row.result) | {"result": dataclasses.asdict(result)}
            conn.execute(
                update(t.idempotency)
                .where(t.idempotency.c.agent == agent, t.idempotency.c.key == key)
                .values(result=json.dumps(stored))
            )


def _finish(
    vault: Vault,
    *,
    agent: str,
    auth: policies.Authorization,
    idempotency_key: str | None,
    act: Callable[[], SignResult],
    action: str,
) -> SignResult:
    """Run the signing step; commit the reservation on success, release it on any failure."""
    try:
        result = act()
    except BaseException as exc:
        policies.settle(vault, agent, auth.request_id, success=False)
        with vault.db.write() as conn:
            vault.audit(
                conn, actor=f"agent:{agent}", action=action, target=f"agent:{agent}",
                outcome="failure",
                details={"agent": agent, "request_id": auth.request_id,
                         "code": exc.code if isinstance(exc, KeysafeError) else "INTERNAL"},
            )  # fmt: skip
        raise
    with vault.db.write() as conn:
        from keysafe.store import ledger

        ledger.settle(conn, agent, auth.request_id, state="committed")
        vault.audit(
            conn, actor=f"agent:{agent}", action=action, target=f"wallet:{result.wallet}",
            outcome="success",
            details={"agent": agent, "request_id": auth.request_id, "wallet": result.wallet,
                     "chain": result.chain, "tx_hash": result.tx_hash, "status": result.status,
                     "summary": result.summary},
        )  # fmt: skip
    _remember(vault, agent, idempotency_key, result)
    return result


# -- EVM and Solana transactions ------------------------------------------------------------


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
    approved: bool = False,
    threshold: Mapping[str, Any] | None = None,
) -> SignResult:
    """Sign (and with `broadcast`, send) a transaction for `agent` from the vault wallet.

    `approved` is set only when an owner-approved parked request is executed (approvals.py).
    `threshold` carries the agent's part for a 2-of-3 wallet (service/threshold.py).
    """
    vault.require_unlocked()  # before anything is reserved: a locked vault cannot sign
    info = _wallet(vault, wallet)
    family = info.meta["chain"]
    reg = load_registry(vault)
    call = _Call(
        agent, "send_transaction" if broadcast else "sign_transaction",
        {"wallet": wallet, "transaction": payload, "chain": chain,
         "declared": dict(declared) if declared else None, "description": description,
         "threshold": dict(threshold) if threshold else None},
        idempotency_key, approved, broadcast,
    )  # fmt: skip
    from keysafe.service import threshold as threshold_wallets

    if threshold_wallets.is_threshold(info) != (threshold is not None):
        raise MalformedRequestError(
            f"Wallet '{wallet}' is a 2-of-3 threshold wallet: the agent's share must take part."
            if threshold is None
            else f"Wallet '{wallet}' is not a threshold wallet; drop the 'threshold' field.",
            next_step="use `keysafe mcp` with KEYSAFE_AGENT_SHARE_FILE set to the agent's share "
            "file; it adds the agent's part for you."
            if threshold is None
            else "send the request without 'threshold'.",
        )
    if family == Chain.EVM:
        return _evm_transaction(vault, call, info, payload, reg=reg, chain=chain, declared=declared)
    try:
        result = _solana_transaction(
            vault, call, info, payload, reg=reg, chain=chain, declared=declared
        )
    except BaseException:
        threshold_wallets.discard(vault, agent, dict(threshold) if threshold else None)
        raise
    if result.status != "pending_approval":  # e.g. a replayed answer never used the commitment
        threshold_wallets.discard(vault, agent, dict(threshold) if threshold else None)
    return result


@dataclass(frozen=True, slots=True)
class _Call:
    """Who asks for what: enough to decide, and to park the exact request for approval."""

    agent: str
    kind: str
    request: dict[str, Any]
    idempotency_key: str | None
    approved: bool
    broadcast: bool


def send_transaction(
    vault: Vault, agent: str, wallet: str, payload: str | dict[str, Any], **kw: Any
) -> SignResult:
    return sign_transaction(vault, agent, wallet, payload, broadcast=True, **kw)


def _evm_transaction(
    vault: Vault,
    call: _Call,
    info: RecordInfo,
    payload: str | dict[str, Any],
    *,
    reg: Registry,
    chain: str | None,
    declared: Mapping[str, Any] | None,
) -> SignResult:
    from keysafe.chains.evm import intents as evm_intents
    from keysafe.chains.evm import signing as evm_signing
    from keysafe.chains.evm import tx as evm_tx
    from keysafe.chains.evm.rpc import EvmRpc

    requested = _resolve_chain(reg, chain, "evm") if chain is not None else None
    # parse_transaction refuses a transaction without a chain id unless one is named here.
    tx = evm_tx.parse_transaction(payload, chain_id=requested.chain_id if requested else None)
    chain_info = _resolve_chain(reg, tx.chain_id, "evm")
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

    def sign(key: SecretBytes) -> tuple[str, str]:
        signed = evm_signing.sign_transaction(tx, key)
        evm_signing.verify_signed(signed, tx, info.meta["address"])
        return signed.raw_hex, signed.tx_hash

    def send(rpc_url: str, raw: str) -> None:
        EvmRpc(rpc_url).send_raw(raw)

    return _transaction_flow(
        vault, call, info, chain_info, intent, sign=sign, send=send, family="evm"
    )


def _transaction_flow(
    vault: Vault,
    call: _Call,
    info: RecordInfo,
    chain_info: ChainInfo,
    intent: Intent,
    *,
    sign: Callable[[SecretBytes], tuple[str, str]],
    send: Callable[[str, str], None],
    family: str,
) -> SignResult:
    """Decide and reserve; on allow open the key, sign (the chain verifies its own result),
    broadcast when asked, and settle. `sign` returns (signed transaction, its hash or id)."""
    agent, broadcast = call.agent, call.broadcast
    auth = _authorize(vault, agent, intent, call.idempotency_key, call.approved)
    replay = _replay(vault, agent, call.idempotency_key, auth)
    if replay is not None:
        return replay
    if auth.decision.outcome == "ask":
        return _pending(
            vault, agent, info, chain_info.name, intent, auth, kind=call.kind,
            request=call.request, idempotency_key=call.idempotency_key,
        )  # fmt: skip

    def act() -> SignResult:
        with vault.db.read() as conn, vault.open_record(conn, info) as key:
            raw, txid = sign(key)
        status: Status = "signed"
        if broadcast:
            if chain_info.rpc is None:
                raise MalformedRequestError(
                    f"Chain '{chain_info.name}' has no RPC, so keysafe cannot send.",
                    next_step="sign only, or the owner sets an RPC with `keysafe chain add`.",
                )
            send(chain_info.rpc, raw)
            status = "sent"
        return SignResult(
            status, info.name, info.meta["address"], chain_info.name,
            intent.summary or intent.action, auth.request_id,
            signed_transaction=raw, tx_hash=txid,
            intent=intent.model_dump(mode="json", exclude_none=True),
        )  # fmt: skip

    return _finish(
        vault, agent=agent, auth=auth, idempotency_key=call.idempotency_key, act=act,
        action=f"{family}.send_transaction" if broadcast else f"{family}.sign_transaction",
    )  # fmt: skip


def _solana_transaction(
    vault: Vault,
    call: _Call,
    info: RecordInfo,
    payload: str | dict[str, Any],
    *,
    reg: Registry,
    chain: str | None,
    declared: Mapping[str, Any] | None,
) -> SignResult:
    from keysafe.chains.solana import intents as sol_intents
    from keysafe.chains.solana import signing as sol_signing
    from keysafe.chains.solana import tx as sol_tx
    from keysafe.chains.solana.rpc import SolanaRpc

    if not isinstance(payload, str):
        raise MalformedRequestError(
            "A Solana transaction is given as base64 text.",
            next_step="serialize the transaction and base64-encode it.",
        )
    chain_info = _resolve_chain(reg, chain, "solana")
    tx = sol_tx.parse_transaction(payload)
    intent = sol_intents.intent_from_tx(
        tx, registry=reg, chain=chain_info, wallet_address=info.meta["address"]
    ).model_copy(update={"wallet": info.name})
    if declared:
        # Solana's own check also accepts the recipient's wallet for its associated token account.
        _check_declared_keys(declared)
        intent = sol_intents.check_declared(intent, intent.model_copy(update=dict(declared)))

    def sign(seed: SecretBytes) -> tuple[str, str]:
        if call.request.get("threshold"):
            # `seed` is the vault's share here: the agent's share and this one make the signature.
            from keysafe.service import threshold as threshold_wallets

            signature = threshold_wallets.cosign(
                vault, call.agent, info, tx.message_bytes, dict(call.request["threshold"])
            )
            signed = sol_signing.attach_signature(tx, info.meta["address"], signature)
        else:
            signed = sol_signing.sign_transaction(tx, seed)  # verifies every signature itself
        return signed.base64, signed.signature_b58

    def send(rpc_url: str, raw: str) -> None:
        with SolanaRpc(rpc_url) as rpc:
            rpc.send_transaction(raw)

    return _transaction_flow(
        vault, call, info, chain_info, intent, sign=sign, send=send, family="solana"
    )


# -- messages ------------------------------------------------------------------------------


def _message_intent(
    info: RecordInfo, reg: Registry, message: str, encoding: str
) -> tuple[Intent, bytes]:
    if info.meta["chain"] == Chain.EVM:
        from keysafe.chains.evm import intents as evm_intents

        return evm_intents.intent_from_personal_message(message, chain=reg.chain("ethereum"))
    from keysafe.chains.solana import intents as sol_intents

    if encoding not in ("utf8", "base64"):
        raise MalformedRequestError(
            "encoding is utf8 or base64.", next_step="pass encoding utf8 (default) or base64."
        )
    return sol_intents.intent_from_message(message, encoding=encoding, chain=reg.chain("solana"))  # type: ignore[arg-type]


def _sign_message_bytes(info: RecordInfo, data: bytes, key: SecretBytes) -> str:
    if info.meta["chain"] == Chain.EVM:
        from keysafe.chains.evm import signing as evm_signing

        signature, address = evm_signing.sign_personal_message(data, key)
        if address != info.meta["address"]:
            raise MalformedRequestError("signer mismatch", next_step="report this bug.")
        return signature
    from keysafe.chains.solana import signing as sol_signing

    return sol_signing.sign_message(data, key)


def sign_message(
    vault: Vault,
    agent: str | None,
    wallet: str,
    message: str,
    *,
    encoding: str = "utf8",
    idempotency_key: str | None = None,
    approved: bool = False,
) -> SignResult:
    """EIP-191 for EVM wallets, Ed25519 over the raw bytes for Solana. `agent=None` is the owner
    (CLI, after unlocking): no policy, but audited all the same."""
    vault.require_unlocked()
    info = _wallet(vault, wallet)
    if info.meta.get("source") == "threshold":
        raise MalformedRequestError(
            f"Wallet '{wallet}' is a 2-of-3 threshold wallet; its messages are signed by two "
            "parties.",
            next_step=f"the owner signs with `keysafe wallet sign-message {wallet} MSG "
            "--recovery-file FILE`; agents sign transactions through sign_transaction.",
        )
    reg = load_registry(vault)
    intent, data = _message_intent(info, reg, message, encoding)
    intent = intent.model_copy(update={"wallet": wallet})
    if agent is None:
        vault.require_unlocked()
        with vault.db.read() as conn, vault.open_record(conn, info) as key:
            signature = _sign_message_bytes(info, data, key)
        with vault.db.write() as conn:
            vault.audit(
                conn, actor="owner", action="wallet.sign_message", target=f"wallet:{wallet}",
                outcome="success", details={"wallet": wallet, "summary": intent.summary},
            )  # fmt: skip
        return SignResult(
            "signed", wallet, info.meta["address"], None, intent.summary or intent.action, "",
            signature=signature,
        )  # fmt: skip
    auth = _authorize(vault, agent, intent, idempotency_key, approved)
    if auth.decision.outcome == "ask":
        request = {"wallet": wallet, "message": message, "encoding": encoding}
        return _pending(
            vault, agent, info, None, intent, auth, kind="sign_message", request=request
        )

    def act() -> SignResult:
        with vault.db.read() as conn, vault.open_record(conn, info) as key:
            signature = _sign_message_bytes(info, data, key)
        return SignResult(
            "signed", wallet, info.meta["address"], None, intent.summary or intent.action,
            auth.request_id, signature=signature,
            intent=intent.model_dump(mode="json", exclude_none=True),
        )  # fmt: skip

    return _finish(
        vault, agent=agent, auth=auth, idempotency_key=idempotency_key, act=act,
        action=f"{info.meta['chain']}.sign_message",
    )  # fmt: skip


def sign_typed_data(
    vault: Vault,
    agent: str,
    wallet: str,
    typed_data: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    approved: bool = False,
) -> SignResult:
    from keysafe.chains.evm import intents as evm_intents
    from keysafe.chains.evm import signing as evm_signing

    vault.require_unlocked()
    info = _wallet(vault, wallet)
    if info.meta["chain"] != Chain.EVM:
        raise MalformedRequestError(
            "EIP-712 typed data is signed by EVM wallets only.", next_step="use an EVM wallet."
        )
    reg = load_registry(vault)
    domain = typed_data.get("domain") if isinstance(typed_data, dict) else None
    chain_ref = domain.get("chainId") if isinstance(domain, dict) else None
    chain_info = _resolve_chain(reg, chain_ref if chain_ref is not None else "ethereum", "evm")
    intent = evm_intents.intent_from_typed_data(
        typed_data, registry=reg, chain=chain_info, wallet_address=info.meta["address"]
    ).model_copy(update={"wallet": wallet})
    auth = _authorize(vault, agent, intent, idempotency_key, approved)
    if auth.decision.outcome == "ask":
        request = {"wallet": wallet, "typed_data": typed_data}
        return _pending(
            vault,
            agent,
            info,
            chain_info.name,
            intent,
            auth,
            kind="sign_typed_data",
            request=request,
        )

    def act() -> SignResult:
        with vault.db.read() as conn, vault.open_record(conn, info) as key:
            signature = evm_signing.sign_typed_data(typed_data, key)
        return SignResult(
            "signed", wallet, info.meta["address"], chain_info.name,
            intent.summary or intent.action, auth.request_id, signature=signature,
            intent=intent.model_dump(mode="json", exclude_none=True),
        )  # fmt: skip

    return _finish(
        vault, agent=agent, auth=auth, idempotency_key=idempotency_key, act=act,
        action="evm.sign_typed_data",
    )  # fmt: skip
