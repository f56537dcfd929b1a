"""Transfers asked for in plain terms: wallet, asset, recipient, amount (and chain).

    >>> ask = TransferRequest(wallet="main", asset="USDC", to=BOB, amount="12.5", chain="base")
    >>> transfer(vault, "bot", ask)   # doctest: +SKIP
    SignResult(status='sent', …, summary='send 12.5 USDC to 0x1111…1111 on base; …')

keysafe builds the transaction itself, so a model never hand-encodes calldata:

- EVM: the chain's coin as a plain value transfer, a token as ERC-20 `transfer(to, amount)`; an
  EIP-1559 transaction whose nonce, gas and fees the chain's RPC fills, as for send_transaction.
- Solana: SOL as a System transfer; an SPL token as `transferChecked` between the two owners'
  associated token accounts, led by `CreateIdempotent` when the RPC says the recipient's account
  does not exist yet; the recent blockhash comes from the RPC.

The built transaction then takes send_transaction's path: the same decoders turn it into the
intent the policy judges (never the request's words), that intent must equal what was asked
(asset, amount, recipient, chain: a builder bug cannot send anything else), and the gate decides,
reserves, parks or signs, verifies and broadcasts it. Budgets count the decoded amount and fee.

Rules enforced before anything is built or asked of the RPC (one line each, naming the field):

- amount: a plain decimal string ("0.5"), above zero, with at most the asset's decimals; no sign,
  exponent, NaN or infinity; no more than the chain's amount field carries;
- asset: "native" (or the coin's symbol, ETH or SOL), a symbol registered on the chain, or a
  registered token's address; a symbol two registered tokens share on one chain is ambiguous;
  an ERC-20 whose own `decimals()` differs from the registry's is refused (the amount would be
  off by powers of ten; an SPL `transferChecked` carries the decimals, which the token program
  itself checks);
- chain: a chain of the wallet's family; left out, the one such chain where the asset is
  registered (several: the agent must name one);
- to: an address of the chain's family; never the zero address or a registered token contract
  (EVM), a mint or token account (Solana): tokens sent there are lost. The RPC is asked whether a
  Solana recipient is a token account.

An ask parks the request resolved (chain name, token address, amount as digits), not the built
bytes: approving builds it again with a fresh nonce or blockhash (a Solana blockhash lives about a
minute), and the fingerprint that binds approval and idempotency key is over those resolved
fields, so a retry with the same key replays the first answer instead of sending twice.
"""

from __future__ import annotations

import logging
from typing import Final

from keysafe.approvals import Kind
from keysafe.chains import Chain
from keysafe.chains.evm import transfers as evm_transfers
from keysafe.chains.evm.rpc import EvmRpc, RpcError
from keysafe.chains.solana import transfers as sol_transfers
from keysafe.chains.solana.intents import TOKEN_2022_PROGRAM, TOKEN_PROGRAM
from keysafe.chains.solana.rpc import SolanaRpc
from keysafe.crypto import jcs
from keysafe.errors import MalformedRequestError
from keysafe.policy.registry import Registry, from_base_units
from keysafe.service import gate, signing, signing_gate
from keysafe.service.models import TransferRequest
from keysafe.service.record_meta import Wallet
from keysafe.service.signing_gate import SignResult
from keysafe.service.transactions import Decoded, decode_transaction
from keysafe.service.transfer_plan import NATIVE, Plan, field_error, plan_transfer
from keysafe.vault.vault import Vault

__all__ = ["NATIVE", "transfer"]

logger = logging.getLogger(__name__)

_SPL_PROGRAMS: Final = frozenset({TOKEN_PROGRAM, TOKEN_2022_PROGRAM})
_DECIMALS_CALL: Final = bytes.fromhex("313ce567")  # ERC-20 decimals()


# -- building the transaction ---------------------------------------------------------------


def _check_decimals(rpc: EvmRpc, plan: Plan, token: str) -> None:
    """Refuse when the token's own `decimals()` differs from the registry's: the policy would
    judge "1" as 10^registry base units while the token counts 10^actual, off by powers of ten.
    A token without `decimals()` (it is optional in EIP-20) is taken as registered."""
    try:
        answer = rpc.call(token, _DECIMALS_CALL)
    except RpcError:
        return
    if len(answer) != 32:
        return
    actual = int.from_bytes(answer, "big")
    if actual != plan.asset.decimals:
        raise MalformedRequestError(
            f"The {plan.asset.symbol} token on {plan.chain.name} says it has {actual} decimals, "
            f"but keysafe's registry says {plan.asset.decimals}; the amount cannot be judged. "
            "Nothing was signed.",
            next_step="the owner corrects the asset (`keysafe asset add SYMBOL --chain CHAIN "
            "--address ADDRESS --decimals N`).",
            field="asset",
        )


def _evm_payload(plan: Plan, found: Wallet) -> dict[str, object]:
    """The transfer as send_transaction takes it, after checking the wallet holds the amount:
    the node's gas estimate of a transfer it cannot pay fails, and would read as an RPC fault."""
    assert plan.chain.chain_id is not None and plan.chain.rpc is not None  # checked in _plan
    with EvmRpc(plan.chain.rpc) as rpc:
        address = found.address
        token = plan.asset.address
        if token is not None:
            _check_decimals(rpc, plan, token)
        held = rpc.balance(address) if token is None else rpc.erc20_balance(token, address)
    if held < plan.units:
        raise field_error(
            f"Wallet '{found.name}' holds {from_base_units(held, plan.asset.decimals)} "
            f"{plan.asset.symbol} on {plan.chain.name}; this transfer needs {plan.amount}.",
            "send less, or ask the user to fund the wallet.",
            "amount",
        )
    return evm_transfers.transfer_tx(
        chain_id=plan.chain.chain_id, to=plan.to, units=plan.units, token=plan.asset.address
    )


def _solana_payload(plan: Plan, wallet_address: str) -> str:
    """Ask the RPC for a blockhash, the mint's token program and whether the recipient's token
    account exists, then build. A lying RPC can only make the transfer fail on chain: the
    accounts are derived here, and the account is created idempotently."""
    assert plan.chain.rpc is not None
    with SolanaRpc(plan.chain.rpc) as rpc:
        recipient_owner = rpc.account_owner(plan.to)
        if recipient_owner in _SPL_PROGRAMS:
            raise field_error(
                "'to' is a token account or mint, not a wallet; tokens sent to it are lost.",
                "pass the recipient's wallet address (keysafe derives its token account).",
                "to",
            )
        token: sol_transfers.SplToken | None = None
        create = False
        if plan.asset.address is not None:
            program = rpc.account_owner(plan.asset.address)
            if program not in _SPL_PROGRAMS:
                raise MalformedRequestError(
                    f"The {plan.asset.symbol} mint {plan.asset.address} is not a token mint on "
                    f"{plan.chain.name} (its owner is {program or 'nobody: no such account'}).",
                    next_step="the owner checks the asset's address (`keysafe asset add`).",
                    field="asset",
                )
            token = sol_transfers.SplToken(plan.asset.address, plan.asset.decimals, program)
            destination = sol_transfers.associated_account(plan.to, token)
            create = rpc.account_owner(destination) is None
        blockhash = rpc.latest_blockhash().blockhash
    return sol_transfers.build_transfer(
        wallet=wallet_address,
        to=plan.to,
        units=plan.units,
        blockhash=blockhash,
        token=token,
        create_account=create,
    )


# -- the use case ---------------------------------------------------------------------------


def _decode_plan(vault: Vault, agent: str, found: Wallet, reg: Registry, plan: Plan) -> Decoded:
    """Build the planned transfer's transaction and decode it as any agent's would be."""
    payload = (
        _evm_payload(plan, found)
        if found.chain == Chain.EVM
        else _solana_payload(plan, found.address)
    )
    family = str(found.chain)
    # What was asked, as the decoded transaction must say it (no blind signing, even of our own
    # bytes). A Solana token's recipient decodes as its token account; declaring the owner's
    # wallet is accepted when that account is the wallet's associated one, and the intent then
    # names the wallet, so recipient rules see the person, as for send_transaction.
    declared = {
        "action": f"{family}.transfer",
        "asset": plan.asset.symbol,
        "amount": plan.amount,
        "to": plan.to,
        "chain": plan.chain.name,
    }
    return decode_transaction(
        vault, agent, found, payload, registry=reg, chain=plan.chain.name, declared=declared
    )


def _gate_request(
    agent: str,
    found: Wallet,
    wire: TransferRequest,
    plan: Plan,
    decoded: Decoded,
    *,
    approval_id: str | None,
    dry_run: bool,
) -> gate.Request:
    """The transfer as the gate judges, parks and fingerprints it (its idempotency key is the
    one in `wire`)."""
    family = str(found.chain)
    # The request as it will be parked and fingerprinted: resolved, so approving it later and
    # retrying it with its idempotency key both mean exactly this transfer.
    resolved = wire.model_copy(
        update={
            "asset": plan.asset_ref,
            "to": plan.to,
            "amount": plan.amount,
            "chain": plan.chain.name,
        }
    )
    return gate.Request(
        agent=agent,
        kind=Kind.TRANSFER,
        wire=resolved,
        intent=decoded.intent,
        payload=jcs.dumps(
            {
                "transfer": {
                    "wallet": found.name,
                    "chain": plan.chain.name,
                    "asset": plan.asset.identity,
                    "to": plan.to,
                    "units": str(plan.units),
                }
            }
        ),
        target=f"wallet:{found.name}",
        audit_action=f"{family}.transfer",
        idempotency_key=wire.idempotency_key,
        approval_id=approval_id,
        reaches_out=True,
        dry_run=dry_run,
    )


def transfer(
    vault: Vault,
    agent: str,
    request: TransferRequest,
    *,
    approval_id: str | None = None,
    dry_run: bool = False,
) -> SignResult:
    """Build, judge, sign and broadcast the transfer `request` asks for: its `amount` of `asset`
    from the vault wallet `wallet` to `to` (service/models.py says what each field takes); a
    retry with the same `idempotency_key` replays the first answer.

    Args:
        vault: the unlocked vault.
        agent: the asking agent.
        request: the transfer as the agent asked for it.
        approval_id: set only when an owner-approved parked transfer runs (service/approvals.py).
        dry_run: decide only (service/checks.py).

    Raises:
        MalformedRequestError: a field is wrong (the error's `field` names it), or the built
            transaction does not decode to the transfer asked for.
        NotFoundError: no such wallet, or the asset is not registered on the chain.
        PolicyDeniedError / BudgetExceededError: the policy refuses the decoded transfer.
        ChainUnavailableError: the chain's RPC failed (nothing was signed).
    """
    vault.require_unlocked()
    found, reg = signing.wallet_and_registry(vault, request.wallet)
    plan = plan_transfer(reg, found, request)
    decoded = _decode_plan(vault, agent, found, reg, plan)
    req = _gate_request(
        agent, found, request, plan, decoded, approval_id=approval_id, dry_run=dry_run
    )
    act = signing.transaction_act(vault, found, decoded, broadcast=True)
    return signing_gate.through_gate(vault, req, found, plan.chain.name, act, None)
