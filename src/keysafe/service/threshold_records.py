"""The vault's share of each 2-of-3 wallet, as a `critical` wallet record.

Rules this module enforces:
- Key generation and reshares run with each party in its own process (`service/keygen.py`):
  this module only keeps the vault's share when a ceremony ends (`store_new_wallet`,
  `replace_vault_share`). No code path computes the group key.
- A reshare keeps the group key (checked) and raises the generation by one; it drops every
  session and ban made for the old shares.
- A rewrite of a record's metadata (a ban, a restore hold) starts from the stored dict and
  re-seals the same share in the same write transaction.
"""

from __future__ import annotations

import hmac
from typing import Any, Final

from solders.pubkey import Pubkey
from sqlalchemy import Connection

from keysafe.chains import Chain
from keysafe.chains.addresses import evm_address_from_public
from keysafe.errors import MalformedRequestError, PolicyDeniedError
from keysafe.mpc import share_file
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import SECP256K1
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER, PublicKeyPackage
from keysafe.service import threshold_state
from keysafe.service.agents import get_agent
from keysafe.service.models import DataClass, RecordKind, SecretBytes
from keysafe.service.record_meta import ThresholdMeta, ThresholdWallet, Wallet
from keysafe.service.record_writes import put_audited
from keysafe.service.vault_admin import check_new_passphrase
from keysafe.vault.records import RecordInfo
from keysafe.vault.vault import Vault

THRESHOLD: Final = "2-of-3"


def group_address(public: PublicKeyPackage) -> str:
    """The wallet address of a group key: EVM for secp256k1, Solana for Ed25519."""
    if public.suite is SECP256K1:
        return evm_address_from_public(public.group_public_key)
    return str(Pubkey.from_bytes(public.group_public_key))


def store_new_wallet(
    vault: Vault,
    name: str,
    chain: Chain,
    agent: str,
    share: share_file.Share,
    *,
    action: str = "wallet.create",
) -> ThresholdWallet:
    """Keep the vault's share of a new 2-of-3 wallet (generation 1 on this vault) and audit
    `action` (`wallet.create`, or `wallet.reshare` for a wallet rebuilt here).

    Raises:
        AlreadyExistsError: a wallet of that name exists.
    """
    public = share.key.public
    meta = ThresholdMeta(
        chain=chain,
        address=group_address(public),
        source="threshold",
        threshold=THRESHOLD,
        agent=agent,
        public=public.to_dict(),
        generation=1,
    )
    return _store_user_share(vault, name, meta.stored(), share, replace=False, action=action)


def replace_vault_share(
    vault: Vault, wallet: ThresholdWallet, share: share_file.Share
) -> ThresholdWallet:
    """Keep the vault's new share after a reshare of `wallet` (same group key, one generation
    up; audited `wallet.reshare`) and drop every session and ban made for the old shares,
    which can never sign again.

    Raises:
        FrostError: the new share is for another group key.
    """
    public = share.key.public
    if public.group_public_key != wallet.public().group_public_key:
        raise FrostError("resharing changed the group key; nothing was replaced")
    # New shares, new pair state for every pair: an old ban has nothing left to protect.
    meta = {k: v for k, v in wallet.info.meta.items() if k not in ("banned", "restored")} | {
        "public": public.to_dict(),
        "generation": wallet.meta.generation + 1,
    }
    stored = _store_user_share(
        vault, wallet.name, meta, share, replace=True, action="wallet.reshare"
    )
    threshold_state.forget_wallet(vault, wallet.name, parties=(AGENT, RECOVERY))
    return stored


def check_share_key(share_key: SecretBytes, token: SecretBytes) -> None:
    """Raises MalformedRequestError unless `share_key` is a strong passphrase apart from the
    agent's `token`."""
    check_new_passphrase(share_key, what="agent share key (KEYSAFE_AGENT_SHARE_KEY)")
    if hmac.compare_digest(bytes(share_key.reveal()), bytes(token.reveal())):
        raise MalformedRequestError(
            "The agent's share key must not be its token: the vault sees the token on every "
            "request, and the share key is what keeps the vault from opening the agent's share.",
            next_step="choose a separate secret for KEYSAFE_AGENT_SHARE_KEY and give it only to "
            "the agent's host.",
        )


def _as_threshold(info: RecordInfo) -> ThresholdWallet:
    wallet = Wallet.of(info).as_threshold()
    assert wallet is not None, "a threshold wallet's record was written without its meta"
    return wallet


def _store_user_share(
    vault: Vault,
    name: str,
    meta: dict[str, Any],
    key: share_file.Share,
    *,
    replace: bool,
    action: str,
    actor: str = "owner",
) -> ThresholdWallet:
    plain = SecretBytes(key.secret_bytes())
    with plain, vault.db.write() as conn:
        info = put_audited(
            vault,
            conn,
            kind=RecordKind.WALLET,
            name=name,
            data_class=DataClass.CRITICAL,
            meta=meta,
            plaintext=plain,
            replace=replace,
            action=action,
            details=lambda made: _share_details(_as_threshold(made)),
            actor=actor,
        )
    return _as_threshold(info)


def _share_details(stored: ThresholdWallet) -> dict[str, Any]:
    """What the audit says of a stored 2-of-3 wallet: where it signs, with whom, which shares."""
    return {
        "name": stored.name,
        "chain": str(stored.meta.chain),
        "address": stored.address,
        "source": "threshold",
        "agent": stored.meta.agent,
        "version": stored.meta.generation,
    }


def vault_share(vault: Vault, wallet: ThresholdWallet) -> share_file.Share:
    """The vault's (user) share of `wallet`, checked against its public package."""
    with vault.db.read() as conn, vault.open_record(conn, wallet.info) as plain:
        return share_file.Share.from_secret_bytes(bytes(plain.reveal()), USER, wallet.public())


def threshold_wallet(vault: Vault, name: str) -> ThresholdWallet:
    """The 2-of-3 wallet `name`.

    Raises:
        NotFoundError: no wallet of that name.
        MalformedRequestError: it is a single-key wallet.
    """
    with vault.db.read() as conn:
        wallet = Wallet.of(vault.get_record(conn, RecordKind.WALLET, name)).as_threshold()
    if wallet is None:
        raise MalformedRequestError(
            f"Wallet '{name}' is not a threshold wallet.",
            next_step="this command is for wallets made with --threshold 2-of-3.",
        )
    return wallet


def rewrite_meta(
    vault: Vault, conn: Connection, wallet: ThresholdWallet, changes: dict[str, Any]
) -> None:
    """Re-seal the wallet's share under its stored metadata with `changes` (inside `conn`'s
    write transaction, so a refresh cannot commit in between)."""
    with vault.open_record(conn, wallet.info) as plain:
        material = SecretBytes(bytearray(plain.reveal()))
    with material:
        vault.put_record(
            conn,
            kind=RecordKind.WALLET,
            name=wallet.name,
            data_class=DataClass.CRITICAL,
            meta=dict(wallet.info.meta) | changes,
            plaintext=material,
            replace=True,
        )


def hold_restored(vault: Vault, conn: Connection) -> list[str]:
    """Mark every 2-of-3 wallet of a vault just rebuilt from a backup as restored: it signs
    with nobody until a refresh. The backup may predate an eviction (a newer generation, the
    old agent share and token valid again here), and only a refresh with the current recovery
    file proves it does not. Runs inside the restore's transaction. Returns the wallets."""
    held = []
    for info in vault.list_records(conn, RecordKind.WALLET):
        wallet = Wallet.of(info).as_threshold()
        if wallet is None or wallet.meta.restored:
            continue
        rewrite_meta(vault, conn, wallet, {"restored": True})
        held.append(wallet.name)
    return held


def refuse_restored(wallet: ThresholdWallet) -> None:
    """Raises PolicyDeniedError while a wallet rebuilt from a backup waits for its refresh."""
    if wallet.meta.restored:
        raise PolicyDeniedError(
            f"Wallet '{wallet.name}' was rebuilt from a backup, which may predate a refresh that "
            "evicted a share; it signs with nobody until it is refreshed.",
            next_step=f"run `keysafe wallet refresh {wallet.name}` with the current recovery file "
            "(if the recovery file is newer than the backup, move the funds with `keysafe "
            "wallet recover-sign` and the current agent share file instead).",
        )


def require_active_agent(vault: Vault, agent: str) -> None:
    """Raises PolicyDeniedError while `agent` is paused (or revoked)."""
    with vault.db.read() as conn:
        if get_agent(conn, agent).status != "active":
            raise PolicyDeniedError(
                f"Agent '{agent}' is paused.", next_step="ask the owner to resume it."
            )
