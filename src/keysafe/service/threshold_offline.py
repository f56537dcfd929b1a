"""Agent + recovery: signing when the vault is gone.

The two share files and their secrets are enough, and still no key is formed: the agent's share
is opened and signs in a child process (`mpc/frost/party.py`); this process holds the recovery
share and coordinates, so no process holds both. Solana wallets sign with FROST, EVM wallets
with DKLs23.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from solders.signature import Signature

from keysafe.chains.evm import signing as evm_signing
from keysafe.chains.evm import tx as evm_tx
from keysafe.chains.solana import signing as sol_signing
from keysafe.chains.solana import tx as sol_tx
from keysafe.errors import MalformedRequestError
from keysafe.mpc import share_file
from keysafe.mpc.dkls import cosigner as dkls_cosigner
from keysafe.mpc.dkls import signing as dkls_signing
from keysafe.mpc.dkls.errors import DklsAbort
from keysafe.mpc.frost import party, session
from keysafe.mpc.frost.groups import SECP256K1
from keysafe.mpc.frost.keys import AGENT, RECOVERY, KeyPackage
from keysafe.service.models import SecretBytes
from keysafe.service.threshold_owner import owner_message_digest
from keysafe.service.threshold_records import group_address
from keysafe.service.threshold_state import BASE64


class OfflineSignature(BaseModel):
    """What the agent and recovery shares signed with no vault: the wallet, its address, and
    the message's signature or the signed transaction (only the fields that apply are set;
    the CLI prints them in this order)."""

    model_config = ConfigDict(frozen=True)

    wallet: str
    address: str
    signers: Literal["agent+recovery"] = "agent+recovery"
    signature: str | None = None
    signed_transaction: str | None = None
    tx_hash: str | None = None


def sign_without_vault(
    agent_share_path: Path,
    agent_secret: SecretBytes,
    recovery_doc: dict[str, Any],
    recovery_passphrase: SecretBytes,
    *,
    message: bytes | None = None,
    transaction: str | None = None,
) -> OfflineSignature:
    """Agent + recovery sign a message or a transaction with no vault at all (it was lost):
    the two share files and their secrets are enough, and still no key is formed. The agent's
    share is opened and signs in a child process (`mpc/frost/party.py`); this process holds the
    recovery share and coordinates, so no process holds both. Solana wallets sign with FROST,
    EVM wallets with DKLs23 (a message as personal_sign text; a transaction complete, as JSON
    or unsigned RLP hex)."""
    if (message is None) == (transaction is None):
        raise MalformedRequestError(
            "Give a message or a transaction (one of them).", next_step="pick what to sign."
        )
    rec_share = share_file.open_recovery_share(recovery_doc, recovery_passphrase)
    if rec_share.key.suite is SECP256K1:
        return _sign_without_vault_evm(
            agent_share_path, agent_secret, rec_share, message=message, transaction=transaction
        )
    return _sign_without_vault_solana(
        agent_share_path, agent_secret, rec_share.key, message=message, transaction=transaction
    )


def _check_pair(agent: party.PipeSigner, rec: KeyPackage) -> None:
    if (agent.identifier, rec.identifier) != (AGENT, RECOVERY) or (
        agent.public.group_public_key != rec.public.group_public_key
    ):
        raise MalformedRequestError(
            "These share files are not the agent's and the recovery share of one wallet "
            "(of the same generation).",
            next_step="use the current agent share file and recovery file of the same wallet.",
        )


def _sign_without_vault_evm(
    agent_share_path: Path,
    agent_secret: SecretBytes,
    rec: share_file.Share,
    *,
    message: bytes | None,
    transaction: str | None,
) -> OfflineSignature:
    what: dict[str, Any]
    tx: evm_tx.EvmTx | None = None
    if transaction is not None:
        payload: Any = (
            json.loads(transaction) if transaction.lstrip().startswith("{") else transaction
        )
        tx = evm_tx.parse_transaction(payload)
        digest = dkls_cosigner.transaction_digest(payload)  # refuses an incomplete one
        what = {"transaction": payload}
    else:
        text = (message or b"").decode("utf-8")
        signable, digest = owner_message_digest(text)
        what = {"message": text}
    with party.PipeSigner(agent_share_path, agent_secret, evm=what) as agent:
        _check_pair(agent, rec.key)
        address = group_address(agent.public)
        sig = _dkls_rounds_with_agent(agent, rec, digest)
        wallet = agent.wallet
    if tx is not None:
        signed = evm_signing.assemble_transaction(tx, sig.r, sig.s, sig.recovery_id, address)
        return OfflineSignature(
            wallet=wallet,
            address=address,
            signed_transaction=signed.raw_hex,
            tx_hash=signed.tx_hash,
        )
    return OfflineSignature(
        wallet=wallet,
        address=address,
        signature=evm_signing.assemble_message_signature(
            signable, sig.r, sig.s, sig.recovery_id, address
        ),
    )


def _dkls_rounds_with_agent(
    agent: party.PipeSigner, rec: share_file.Share, digest: bytes
) -> dkls_signing.Signature:
    """The recovery share's DKLs23 rounds against the agent's child process, over `digest`.

    Raises:
        MalformedRequestError: the agent share is of another generation, or its part of the
            signature fails a check (culprit 1).
    """
    nonce = secrets.token_bytes(32)
    theirs = agent.dkls_round1(nonce)
    if theirs.get("verifying_share") != rec.key.public.verifying_shares[AGENT].hex():
        raise MalformedRequestError(
            "The agent share is not of the recovery file's generation.",
            next_step="use the agent share file and recovery file of the same refresh.",
        )
    state, first = dkls_signing.round1(rec.key, rec.pairs[AGENT], digest, nonce)
    try:
        second = dkls_signing.round2(state, BASE64.read(theirs, "round1"))
        rest = agent.dkls_rounds(
            {
                "session_id": nonce.hex(),
                "round1": base64.b64encode(first).decode(),
                "round2": base64.b64encode(second).decode(),
            }
        )
        dkls_signing.round3(state, BASE64.read(rest, "round2"))
        sig = dkls_signing.finish(state, BASE64.read(rest, "round3"))
    except DklsAbort as exc:
        raise MalformedRequestError(
            f"The agent's part of the threshold signature is invalid: {exc.what}",
            next_step="nothing was signed; check the agent share file.",
            culprit=AGENT,
        ) from None
    return sig


def _sign_without_vault_solana(
    agent_share_path: Path,
    agent_secret: SecretBytes,
    rec: KeyPackage,
    *,
    message: bytes | None,
    transaction: str | None,
) -> OfflineSignature:
    tx = None
    if transaction is not None:
        tx = sol_tx.parse_transaction(transaction)
        message = tx.message_bytes
    assert message is not None
    signed = message
    with party.PipeSigner(agent_share_path, agent_secret, signed) as agent:
        _check_pair(agent, rec)
        address = group_address(agent.public)
        mine = session.Signer(
            rec, session.MemoryNonceStore(), check_message=lambda r: r.message == signed
        )
        sig = session.Coordinator(rec.public, [AGENT, RECOVERY], signed).run(
            {AGENT: agent, RECOVERY: mine}
        )
        wallet = agent.wallet
    return OfflineSignature(
        wallet=wallet,
        address=address,
        signature=str(Signature.from_bytes(sig)),
        signed_transaction=(
            None if tx is None else sol_signing.attach_signature(tx, address, sig).base64
        ),
    )
