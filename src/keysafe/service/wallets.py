"""Wallets: keys generated from the vault's HD seed (or imported) that never leave the vault.

EVM wallets follow BIP-44 `m/44'/60'/0'/0/i` and Solana wallets SLIP-10 `m/44'/501'/i'/0'`, so the
same recovery phrase gives the same addresses in MetaMask and Phantom. The private key is a
`critical` record: no command, API or export prints it.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection

from keysafe.chains import Chain, addresses
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, MalformedRequestError
from keysafe.mpc.frost.keys import USER
from keysafe.mpc.share_file import Share
from keysafe.policy.registry import from_base_units
from keysafe.service.models import DataClass, RecordKind, check_name
from keysafe.service.record_meta import Wallet, WalletMeta
from keysafe.service.record_writes import put_audited
from keysafe.service.registry import registry
from keysafe.service.threshold_records import group_address
from keysafe.vault.records import RecordInfo
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)


class WalletView(BaseModel):
    """A wallet as the owner sees it: never its key."""

    model_config = ConfigDict(frozen=True)

    name: str
    chain: str
    address: str
    source: str
    index: int | None
    created_at: str

    @classmethod
    def of(cls, info: RecordInfo) -> WalletView:
        m = Wallet.of(info).meta
        index = m.index if isinstance(m, WalletMeta) else None
        return cls(
            name=info.name,
            chain=str(m.chain),
            address=m.address,
            source=m.source,
            index=index,
            created_at=info.created_at,
        )


def _stored_address(wallet: Wallet, key: SecretBytes) -> str:
    """The address the record's secret proves: for a threshold wallet, the group key's, once the
    user share is checked against its verifying share in the public package."""
    shared = wallet.as_threshold()
    if shared is None:
        return _address_of(wallet.chain, key)
    public = shared.public()
    try:  # the share (and, on EVM, its pair states) must match the public package
        Share.from_secret_bytes(bytes(key.reveal()), USER, public)
    except IntegrityError:
        return ""
    return group_address(public)


def _address_of(chain: Chain, key: SecretBytes) -> str:
    if chain is Chain.EVM:
        return addresses.evm_address_from_private(key)
    return addresses.solana_address_from_seed(key)


def _next_index(vault: Vault, conn: Any, chain: Chain) -> int:
    metas = [Wallet.of(w).meta for w in vault.list_records(conn, RecordKind.WALLET)]
    used = [
        m.index
        for m in metas
        if isinstance(m, WalletMeta)
        and m.chain == chain
        and m.source == "derived"
        and m.index is not None
    ]
    return max(used) + 1 if used else 0


def _put_wallet(
    vault: Vault,
    conn: Connection,
    name: str,
    meta: WalletMeta,
    key: SecretBytes,
    *,
    action: str,
) -> RecordInfo:
    """Keep a new single-key wallet's key as a `critical` record, audited with what `meta` says
    of it (its chain, address, source and, when derived, index)."""
    index = {} if meta.index is None else {"index": meta.index}
    details = {
        "name": name,
        "chain": str(meta.chain),
        "address": meta.address,
        **index,
        "source": meta.source,
    }
    return put_audited(
        vault,
        conn,
        kind=RecordKind.WALLET,
        name=name,
        data_class=DataClass.CRITICAL,
        meta=meta.stored(),
        plaintext=key,
        replace=False,
        action=action,
        details=lambda _info: details,
    )


def create_wallet(vault: Vault, name: str, chain: Chain, *, index: int | None = None) -> WalletView:
    """Derive the next (or the given) account index of `chain` from the vault's seed."""
    check_name(name, "wallet")
    if index is not None and not 0 <= index < 2**31:
        raise MalformedRequestError(
            "A wallet index is between 0 and 2^31-1.", next_step="give --index 0, 1, 2 …"
        )
    with vault.db.write() as conn:
        seed_info = vault.get_record(conn, RecordKind.HD_SEED, "default")
        i = _next_index(vault, conn, chain) if index is None else index
        with vault.open_record(conn, seed_info) as seed:
            if chain is Chain.EVM:
                key, address = addresses.derive_evm(seed.reveal(), i)
                path = addresses.EVM_PATH.format(index=i)
            else:
                key, address = addresses.derive_solana(seed.reveal(), i)
                path = addresses.SOLANA_PATH.format(index=i)
        with key:
            meta = WalletMeta(chain=chain, address=address, source="derived", index=i, path=path)
            info = _put_wallet(vault, conn, name, meta, key, action="wallet.create")
    logger.info("wallet %s created on %s at index %d", name, chain, i)
    return WalletView.of(info)


def import_wallet(vault: Vault, name: str, chain: Chain, key_text: SecretBytes) -> WalletView:
    """Import an existing private key as wallet `name` on `chain`; audited. The key text is
    never shown again.

    Raises:
        MalformedRequestError: a bad name, or the text is not a private key of that chain.
        AlreadyExistsError: the name is taken.
        VaultLockedError: the vault is locked.
    """
    check_name(name, "wallet")
    text = bytes(key_text.reveal()).decode("utf-8", "replace").strip()
    try:
        if chain is Chain.EVM:
            key = addresses.parse_evm_private_key(text)
        else:
            key = addresses.parse_solana_private_key(text)
    except ValueError as exc:
        raise MalformedRequestError(
            f"That is not a {chain} private key: {exc}",
            next_step=(
                "for EVM give 64 hex digits (0x optional); for Solana the base58 key Phantom "
                "exports, a solana-keygen JSON array, or 64 hex digits."
            ),
        ) from None
    finally:
        del text
    with key, vault.db.write() as conn:
        address = _address_of(chain, key)
        meta = WalletMeta(chain=chain, address=address, source="imported")
        info = _put_wallet(vault, conn, name, meta, key, action="wallet.import")
    logger.info("wallet %s imported on %s", name, chain)
    return WalletView.of(info)


def list_wallets(vault: Vault, *, verify: bool = True) -> list[WalletView]:
    """List wallets; with `verify` (needs the vault unlocked) re-derive each address from its key,
    so an address edited in the database is caught before anyone sends funds to it."""
    with vault.db.read() as conn:
        infos = vault.list_records(conn, RecordKind.WALLET)
        if verify:
            for info in infos:
                wallet = Wallet.of(info)
                with vault.open_record(conn, info) as key:
                    if _stored_address(wallet, key) != wallet.address:
                        raise IntegrityError(
                            f"Wallet '{info.name}' does not match its stored address.",
                            next_step="restore the vault from a backup "
                            "(`keysafe backup restore FILE`).",
                            name=info.name,
                        )
    return [WalletView.of(i) for i in infos]


def balances(vault: Vault, view: WalletView, *, timeout: float = 2.0) -> list[dict[str, Any]]:
    """The wallet's native balance on every chain of its family that has an RPC configured.

    A chain whose node does not answer is reported with an error, not raised: the owner's page
    shows what it can.
    """
    out: list[dict[str, Any]] = []
    for chain in registry(vault).chains:
        if chain.family != view.chain or chain.rpc is None:
            continue
        try:
            if chain.family == "evm":
                from keysafe.chains.evm.rpc import EvmRpc

                units = EvmRpc(chain.rpc, timeout=timeout).balance(view.address)
                amount = from_base_units(units, 18)
            else:
                from keysafe.chains.solana.rpc import SolanaRpc

                with SolanaRpc(chain.rpc, timeout=timeout) as rpc:
                    amount = from_base_units(rpc.get_balance(view.address), 9)
            out.append({"chain": chain.name, "asset": chain.native, "balance": amount})
        except Exception:
            out.append({"chain": chain.name, "asset": chain.native, "error": "node unavailable"})
    return out
