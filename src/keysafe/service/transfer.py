"""Transfers asked for in plain terms: wallet, asset, recipient, amount (and chain).

    >>> transfer(vault, "bot", "main", "USDC", BOB, "12.5", chain="base")   # doctest: +SKIP
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
from dataclasses import dataclass
from typing import Final

from keysafe.approvals import Kind
from keysafe.chains import Chain
from keysafe.chains.addresses import is_evm_address, is_solana_address, to_checksum
from keysafe.chains.evm import transfers as evm_transfers
from keysafe.chains.evm.rpc import EvmRpc, RpcError
from keysafe.chains.solana import transfers as sol_transfers
from keysafe.chains.solana.intents import TOKEN_2022_PROGRAM, TOKEN_PROGRAM
from keysafe.chains.solana.rpc import SolanaRpc
from keysafe.crypto import jcs
from keysafe.errors import MalformedRequestError, NotFoundError
from keysafe.policy.registry import (
    AssetInfo,
    ChainInfo,
    Registry,
    UnknownName,
    from_base_units,
    parse_decimal,
    to_base_units,
)
from keysafe.service import gate, signing
from keysafe.service.models import TransferRequest
from keysafe.service.record_meta import Wallet
from keysafe.service.transactions import Decoded, decode_transaction
from keysafe.vault.vault import Vault

__all__ = ["NATIVE", "transfer"]

logger = logging.getLogger(__name__)

NATIVE: Final = "native"
# The widest amount each family's transfer carries: ERC-20 and ETH values are uint256, SOL and
# SPL amounts u64.
_MAX_UNITS: Final = {"evm": 2**256 - 1, "solana": 2**64 - 1}
_EVM_ZERO: Final = "0x" + "0" * 40
_SPL_PROGRAMS: Final = frozenset({TOKEN_PROGRAM, TOKEN_2022_PROGRAM})
_DECIMALS_CALL: Final = bytes.fromhex("313ce567")  # ERC-20 decimals()
_FAMILY: Final = {"evm": "an EVM", "solana": "a Solana"}
_ASSET_NEXT: Final = (
    'use an asset your policy names (list_capabilities shows your rules), or "native" for '
    "the chain's own coin; the owner registers a token with `keysafe asset add`."
)


def _bad(what: str, next_step: str, field: str) -> MalformedRequestError:
    return MalformedRequestError(what, next_step=next_step, field=field)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A transfer resolved against the registry, before anything is asked of the chain."""

    chain: ChainInfo
    asset: AssetInfo
    to: str  # EVM: EIP-55; Solana: base58
    units: int

    @property
    def amount(self) -> str:
        return from_base_units(self.units, self.asset.decimals)

    @property
    def asset_ref(self) -> str:
        """How the parked request names the asset: never a symbol the owner might re-register."""
        return self.asset.address if self.asset.address is not None else NATIVE


# -- resolving the request ------------------------------------------------------------------


def _family_chains(reg: Registry, family: str) -> list[ChainInfo]:
    return [c for c in reg.chains if c.family == family]


def _matches(reg: Registry, chain: ChainInfo, ref: str) -> list[AssetInfo]:
    """The registered assets on `chain` that `ref` names (a symbol in any case, an address, or
    "native"), each once."""
    text = ref.strip()
    if text.lower() == NATIVE:
        return [a for a in reg.assets if a.chain == chain.name and a.address is None][:1]
    found: dict[str, AssetInfo] = {}
    for a in reg.assets:
        if a.chain != chain.name:
            continue
        by_symbol = a.symbol.upper() == text.upper()
        by_address = a.address is not None and (
            a.address.lower() == text.lower() if chain.family == "evm" else a.address == text
        )
        if by_symbol or by_address:
            found.setdefault(a.identity, a)
    return list(found.values())


def _chain(reg: Registry, family: str, ref: str | None, asset: str) -> ChainInfo:
    if ref is not None:
        try:
            info = reg.chain(ref)
        except UnknownName:
            names = ", ".join(c.name for c in _family_chains(reg, family))
            raise _bad(
                f"'chain' names no chain keysafe knows ('{ref[:40]}').",
                f"use one of {names}.",
                "chain",
            ) from None
        if info.family != family:
            raise _bad(
                f"'chain' is {info.name}, {_FAMILY[info.family]} chain, but wallet is "
                f"{_FAMILY[family]} wallet.",
                f"use {_FAMILY[family]} chain, or {_FAMILY[info.family]} wallet.",
                "chain",
            )
        return info
    candidates = [c for c in _family_chains(reg, family) if _matches(reg, c, asset)]
    if not candidates:
        raise NotFoundError(
            f"'asset' '{asset[:40]}' is not registered on {_FAMILY[family]} chain.",
            next_step=_ASSET_NEXT,
            field="asset",
        )
    if asset.strip().lower() == NATIVE or len(candidates) > 1:
        where = ", ".join(c.name for c in candidates)
        raise _bad(
            f"'chain' is needed: '{asset[:40]}' is on {where}.",
            "pass chain, e.g. one your policy names (list_capabilities shows your rules).",
            "chain",
        )
    return candidates[0]


def _asset(reg: Registry, chain: ChainInfo, ref: str) -> AssetInfo:
    found = _matches(reg, chain, ref)
    if len(found) > 1:
        addresses = ", ".join(a.address or NATIVE for a in found)
        raise _bad(
            f"'asset' '{ref[:40]}' names {len(found)} registered assets on {chain.name} "
            f"({addresses}).",
            "pass the token's address as asset.",
            "asset",
        )
    if not found:
        elsewhere = sorted(
            {c.name for c in _family_chains(reg, chain.family) if _matches(reg, c, ref)}
        )
        where = f" (it is on {', '.join(elsewhere)})" if elsewhere else ""
        raise NotFoundError(
            f"'asset' '{ref[:40]}' is not registered on {chain.name}{where}.",
            next_step=_ASSET_NEXT,
            field="asset",
        )
    return found[0]


def _units(amount: str, asset: AssetInfo, family: str) -> int:
    what = f"'amount' must be a plain decimal string in whole {asset.symbol}, e.g. \"0.5\""
    try:
        value = parse_decimal(amount)
    except ValueError:
        raise _bad(
            f"{what}: no sign, exponent, NaN or infinity.", "send the amount as digits.", "amount"
        ) from None
    try:
        units = to_base_units(value, asset.decimals)
    except ValueError:
        raise _bad(
            f"'amount' has more decimal places than {asset.symbol} has ({asset.decimals}).",
            f"round the amount to {asset.decimals} decimal places.",
            "amount",
        ) from None
    if units <= 0:
        raise _bad("'amount' must be more than zero.", "send a positive amount.", "amount")
    if units > _MAX_UNITS[family]:
        raise _bad(
            f"'amount' is more {asset.symbol} than {_FAMILY[family]} transfer can carry.",
            "send a smaller amount.",
            "amount",
        )
    return units


def _recipient(reg: Registry, chain: ChainInfo, to: str) -> str:
    text = to.strip()
    if chain.family == "evm":
        if not is_evm_address(text):
            raise _bad(
                "'to' is not an EVM address (0x and 40 hex digits, a valid EIP-55 checksum if "
                "mixed case).",
                "pass the recipient's address.",
                "to",
            )
        address = to_checksum(text)
        if address.lower() == _EVM_ZERO:
            raise _bad(
                "'to' is the zero address; what is sent there is lost.",
                "pass the recipient's address.",
                "to",
            )
    else:
        if not is_solana_address(text):
            raise _bad(
                "'to' is not a Solana address (base58 for 32 bytes).",
                "pass the recipient's wallet address.",
                "to",
            )
        address = text
    token = next(
        (
            a
            for a in reg.assets
            if a.chain == chain.name
            and a.address is not None
            and (
                a.address.lower() == address.lower()
                if chain.family == "evm"
                else a.address == address
            )
        ),
        None,
    )
    if token is not None:
        raise _bad(
            f"'to' is the {token.symbol} token's own "
            f"{'contract' if chain.family == 'evm' else 'mint'}"
            "; what is sent there is lost.",
            "pass the recipient's wallet address.",
            "to",
        )
    return address


def _plan(reg: Registry, found: Wallet, wire: TransferRequest) -> _Plan:
    family = str(found.chain)
    chain = _chain(reg, family, wire.chain, wire.asset)
    asset = _asset(reg, chain, wire.asset)
    units = _units(wire.amount, asset, family)
    to = _recipient(reg, chain, wire.to)
    if chain.rpc is None:
        raise _bad(
            f"Chain '{chain.name}' has no RPC, so keysafe cannot build or send a transfer there.",
            "the owner sets one with `keysafe chain add NAME --rpc URL`.",
            "chain",
        )
    return _Plan(chain, asset, to, units)


# -- building the transaction ---------------------------------------------------------------


def _check_decimals(rpc: EvmRpc, plan: _Plan, token: str) -> None:
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


def _evm_payload(plan: _Plan, found: Wallet) -> dict[str, object]:
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
        raise _bad(
            f"Wallet '{found.name}' holds {from_base_units(held, plan.asset.decimals)} "
            f"{plan.asset.symbol} on {plan.chain.name}; this transfer needs {plan.amount}.",
            "send less, or ask the user to fund the wallet.",
            "amount",
        )
    return evm_transfers.transfer_tx(
        chain_id=plan.chain.chain_id, to=plan.to, units=plan.units, token=plan.asset.address
    )


def _solana_payload(plan: _Plan, wallet_address: str) -> str:
    """Ask the RPC for a blockhash, the mint's token program and whether the recipient's token
    account exists, then build. A lying RPC can only make the transfer fail on chain: the
    accounts are derived here, and the account is created idempotently."""
    assert plan.chain.rpc is not None
    with SolanaRpc(plan.chain.rpc) as rpc:
        recipient_owner = rpc.account_owner(plan.to)
        if recipient_owner in _SPL_PROGRAMS:
            raise _bad(
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


def _decode_plan(vault: Vault, agent: str, found: Wallet, reg: Registry, plan: _Plan) -> Decoded:
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
    plan: _Plan,
    decoded: Decoded,
    *,
    idempotency_key: str | None,
    approval_id: str | None,
    dry_run: bool,
) -> gate.Request:
    """The transfer as the gate judges, parks and fingerprints it."""
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
        idempotency_key=idempotency_key,
        approval_id=approval_id,
        reaches_out=True,
        dry_run=dry_run,
    )


def transfer(
    vault: Vault,
    agent: str,
    wallet: str,
    asset: str,
    to: str,
    amount: str,
    *,
    chain: str | None = None,
    description: str | None = None,
    idempotency_key: str | None = None,
    approval_id: str | None = None,
    dry_run: bool = False,
) -> signing.SignResult:
    """Build, judge, sign and broadcast a transfer of `amount` `asset` from `wallet` to `to`.

    Args:
        vault: the unlocked vault.
        agent: the asking agent.
        wallet: the vault wallet that pays.
        asset: "native", a registered symbol, or a registered token's address.
        to: the recipient's address (for a Solana token: the owner's wallet).
        amount: a decimal string in whole units.
        chain: the chain's name; optional when the asset is on one chain of the wallet's family.
        description: why, shown to the owner on an approval.
        idempotency_key: a retry with the same key replays the first answer.
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
    wire = TransferRequest(
        wallet=wallet,
        asset=asset,
        to=to,
        amount=amount,
        chain=chain,
        description=description,
        idempotency_key=idempotency_key,
    )
    found, reg = signing.wallet_and_registry(vault, wallet)
    if found.threshold is not None:
        raise _bad(
            f"Wallet '{found.name}' is a 2-of-3 threshold wallet: its share on the agent's side "
            "must sign the exact transaction, which transfer builds inside the vault.",
            "build the transaction yourself and use send_transaction for this wallet.",
            "wallet",
        )
    plan = _plan(reg, found, wire)
    decoded = _decode_plan(vault, agent, found, reg, plan)
    req = _gate_request(
        agent,
        found,
        wire,
        plan,
        decoded,
        idempotency_key=idempotency_key,
        approval_id=approval_id,
        dry_run=dry_run,
    )
    act = signing.transaction_act(vault, found, decoded, broadcast=True)
    return signing.through_gate(vault, req, found, plan.chain.name, act, None)
