"""The chain and asset registry: built-ins plus what the owner added."""

from __future__ import annotations

import functools
import logging
import re
from decimal import Decimal
from typing import Final

from sqlalchemy import Connection, delete, insert, select

from keysafe.audit.outcome import Outcome
from keysafe.chains import Chain
from keysafe.errors import AlreadyExistsError, MalformedRequestError
from keysafe.policy.registry import (
    AssetInfo,
    ChainInfo,
    Registry,
    UnknownName,
    decimal_text,
    parse_decimal,
)
from keysafe.store import hot
from keysafe.store import tables as t
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

_CHAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
_SYMBOL = re.compile(r"^[A-Za-z0-9.$_-]{1,20}$")


_ChainRow = tuple[str, str, int | None, str | None, str | None]
_AssetRow = tuple[str, str, str | None, int]


def load_registry(conn: Connection) -> Registry:
    """The registry as the database holds it now. Every request reads the owner's rows (two
    small selects, so a `chain add` from any process counts at once); building the Registry from
    them is cached, which also keeps one Registry object per content for the engine's caches."""
    chains: tuple[_ChainRow, ...] = tuple(hot.rows(conn, _CHAIN_ROWS, {}))
    assets: tuple[_AssetRow, ...] = tuple(hot.rows(conn, _ASSET_ROWS, {}))
    return _registry_of(chains, assets)


# On the driver (store/hot.py): every request reads them. Ordered, so the same rows make the
# same cache key whatever order SQLite happens to return them in.
_CHAIN_ROWS: Final = (
    "SELECT name, family, chain_id, rpc, max_fee FROM registry_chains ORDER BY name"
)
_ASSET_ROWS: Final = (
    "SELECT symbol, chain, address, decimals FROM registry_assets ORDER BY chain, symbol"
)


@functools.lru_cache(maxsize=16)
def _registry_of(chains: tuple[_ChainRow, ...], assets: tuple[_AssetRow, ...]) -> Registry:
    added = [
        ChainInfo(
            name,
            Chain(family),
            chain_id,
            rpc,
            builtin=False,
            max_fee=parse_decimal(max_fee) if max_fee is not None else None,
        )
        for name, family, chain_id, rpc, max_fee in chains
    ]
    reg = Registry.builtin().with_additions(added, [])
    return reg.with_additions(
        [],
        [AssetInfo(sym, chain, address, dec, builtin=False) for sym, chain, address, dec in assets],
    )


def registry(vault: Vault) -> Registry:
    """The vault's chains and assets: the built-in ones plus those the owner added."""
    with vault.db.read() as conn:
        return load_registry(conn)


def add_chain(
    vault: Vault,
    name: str,
    *,
    family: Chain,
    chain_id: int | None,
    rpc: str | None,
    max_fee: str | None = None,
) -> ChainInfo:
    """Add or replace a chain. `max_fee`: the fee ceiling in native units (a decimal string);
    None keeps the ceiling the chain has (a built-in's default, one set before), or the family's
    default for a new chain.

    Raises:
        MalformedRequestError: a bad fee ceiling, chain name, chain id or RPC URL.
        AlreadyExistsError: the chain id is registered under another name.
    """
    name = name.strip().lower()
    ceiling = _checked_chain(name, family, chain_id, rpc, max_fee)
    with vault.db.write() as conn:
        if chain_id is not None:
            _refuse_taken_chain_id(load_registry(conn), chain_id, name)
        # Updating a chain (say, its RPC) without --max-fee keeps the ceiling the owner set.
        kept = conn.execute(
            select(t.registry_chains.c.max_fee).where(t.registry_chains.c.name == name)
        ).scalar_one_or_none()
        stored = decimal_text(ceiling) if ceiling is not None else kept
        conn.execute(delete(t.registry_chains).where(t.registry_chains.c.name == name))
        conn.execute(
            insert(t.registry_chains).values(
                name=name,
                family=family,
                chain_id=chain_id,
                rpc=rpc,
                max_fee=stored,
            )
        )
        info = load_registry(conn).chain(name)
        vault.audit(
            conn,
            actor="owner",
            action="chain.add",
            target=f"chain:{name}",
            outcome=Outcome.SUCCESS,
            details={"chain": name, "name": name, "amount": decimal_text(info.fee_ceiling)},
        )
    logger.info("chain %s registered", name)
    return info


def _checked_chain(
    name: str, family: Chain, chain_id: int | None, rpc: str | None, max_fee: str | None
) -> Decimal | None:
    """The fee ceiling asked for (None: keep the one there is), once the chain's name, id and
    RPC URL are checked.

    Raises:
        MalformedRequestError: a bad ceiling, name, chain id or RPC URL.
    """
    ceiling: Decimal | None = None
    if max_fee is not None:
        try:
            ceiling = parse_decimal(max_fee)
        except ValueError as exc:
            raise MalformedRequestError(
                f"--max-fee {exc}.", next_step='pass the ceiling in native units, e.g. "0.02".'
            ) from None
    if not _CHAIN_NAME.match(name):
        raise MalformedRequestError(
            f"'{name[:40]}' is not a chain name.",
            next_step="use lower-case letters, digits and '-', e.g. arbitrum or my-devnet.",
        )
    if family == "evm" and (chain_id is None or chain_id <= 0):
        raise MalformedRequestError(
            "An EVM chain needs its chain id.", next_step="pass --chain-id N (e.g. 42161)."
        )
    if rpc is not None and not re.match(r"^(https?|wss?)://", rpc):
        raise MalformedRequestError(
            "The RPC URL must start with http://, https://, ws:// or wss://.",
            next_step="pass --rpc https://… (or http://127.0.0.1:PORT for a local node).",
        )
    return ceiling


def _refuse_taken_chain_id(reg: Registry, chain_id: int, name: str) -> None:
    try:
        other = reg.chain(chain_id)
    except UnknownName:
        return
    if other.name != name:
        raise AlreadyExistsError(
            f"Chain id {chain_id} is already registered as '{other.name}'.",
            next_step="use that name in policies, or pick the right chain id.",
        )


def add_asset(vault: Vault, symbol: str, *, chain: str, address: str, decimals: int) -> AssetInfo:
    """Add a token the policy can name by `symbol` on `chain` (replacing one of that symbol
    there); audited.

    Raises:
        MalformedRequestError: a bad symbol, decimals outside 0 to 36, an unknown chain, or an
            EVM address that is not 0x and 40 hex digits.
    """
    if not _SYMBOL.match(symbol):
        raise MalformedRequestError(
            f"'{symbol[:20]}' is not an asset symbol.", next_step="use e.g. USDC or WETH."
        )
    if not 0 <= decimals <= 36:
        raise MalformedRequestError(
            "Decimals must be between 0 and 36.", next_step="USDC has 6, most ERC-20s 18."
        )
    with vault.db.write() as conn:
        reg = load_registry(conn)
        try:
            info = reg.chain(chain)
        except UnknownName:
            raise MalformedRequestError(
                f"Unknown chain '{chain[:40]}'.",
                next_step="see `keysafe chain list`, or add it with `keysafe chain add`.",
            ) from None
        if info.family == "evm" and not re.match(r"^0x[0-9a-fA-F]{40}$", address):
            raise MalformedRequestError(
                "An EVM token address is 0x followed by 40 hex digits.",
                next_step="copy the token contract address from a block explorer.",
            )
        conn.execute(
            delete(t.registry_assets).where(
                t.registry_assets.c.chain == info.name, t.registry_assets.c.symbol == symbol
            )
        )
        conn.execute(
            insert(t.registry_assets).values(
                chain=info.name, symbol=symbol, address=address, decimals=decimals
            )
        )
        vault.audit(
            conn,
            actor="owner",
            action="asset.add",
            target=f"asset:{info.name}:{symbol}",
            outcome=Outcome.SUCCESS,
            details={"chain": info.name, "name": symbol},
        )
    logger.info("asset %s on %s registered", symbol, info.name)
    return AssetInfo(symbol, info.name, address, decimals, builtin=False)
