"""`keysafe doctor`'s checks over the network (service/doctor.py): the server this home's
agents reach, each chain's RPC, and the S3 store of record ciphertext.

Each has a short timeout, and only what may be shown is: URLs as scheme://host:port, and only
the server's public health route is asked.
"""

from __future__ import annotations

import logging

import httpx

from keysafe import __version__
from keysafe.errors import KeysafeError
from keysafe.policy.registry import ChainInfo
from keysafe.service.findings import Finding, Status, where
from keysafe.vault.blobs import BlobConfig, S3Blobs
from keysafe.vault.home import Home

logger = logging.getLogger(__name__)


def server(home: Home, url: str, timeout: float, *, active_agents: int) -> Finding:
    """Does this home's `keysafe serve` answer at `url`, unlocked, at this keysafe's version?"""
    shown = where(url)
    held = home.serve_lock_held()
    if not url.startswith(("http://", "https://")):
        return Finding(
            "server",
            Status.WARN,
            "KEYSAFE_URL is not an http(s) URL, so no server can be asked.",
            "unset KEYSAFE_URL (the default is http://127.0.0.1:8420) or set it to where "
            "`keysafe serve` runs.",
        )
    try:
        r = httpx.get(f"{url}/v1/health", timeout=timeout)
        body = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return _no_answer(shown, type(exc).__name__, held=held, active_agents=active_agents)
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("ok") is not True:
        return Finding(
            "server",
            Status.WARN,
            f"Something that is not keysafe answers at {shown} (HTTP {r.status_code}).",
            "set KEYSAFE_URL to your keysafe server, or give `keysafe serve` another --port.",
        )
    version = str(body.get("version", "?"))[:40]
    if not held:
        return Finding(
            "server",
            Status.WARN,
            f"A keysafe server answers at {shown}, but no server holds this home "
            f"({home.path}): it serves another vault.",
            "set KEYSAFE_URL to this home's server, or start one with `keysafe serve --port N`.",
        )
    state = "unlocked" if body.get("unlocked") is True else "locked"
    if version != __version__:
        return Finding(
            "server",
            Status.WARN,
            f"keysafe serve {version} answers at {shown} ({state}); this keysafe is {__version__}.",
            "restart the server so both run the same version.",
        )
    return Finding(
        "server",
        Status.OK,
        f"keysafe serve {version} answers at {shown}, vault {state}"
        + (" (agents are refused until `keysafe unlock`)." if state == "locked" else "."),
    )


def _no_answer(shown: str, error: str, *, held: bool, active_agents: int) -> Finding:
    """Nothing answers at the server's URL: a problem if a server holds this home (it listens
    elsewhere) or agents need one; otherwise just how things are."""
    if held:
        return Finding(
            "server",
            Status.WARN,
            f"A `keysafe serve` holds this home, but nothing answers at {shown} ({error}).",
            "set KEYSAFE_URL to the address `keysafe serve` printed when it started "
            "(it was started with another --port or --host).",
        )
    if active_agents:
        return Finding(
            "server",
            Status.WARN,
            f"No keysafe server answers at {shown}, so the {active_agents} active agent(s) "
            "cannot reach the vault.",
            "start it: `keysafe serve` (then `keysafe unlock`), or set KEYSAFE_URL to "
            "where it runs.",
        )
    return Finding(
        "server",
        Status.OK,
        f"No keysafe server is running at {shown} (agents need one: `keysafe serve`).",
    )


def chain_rpc(chain: ChainInfo, timeout: float) -> Finding:
    """Does `chain`'s RPC answer, and serve that chain (its chain id or genesis hash)?"""
    url = chain.rpc or ""
    check, shown = f"rpc:{chain.name}", where(url)
    if not url.startswith(("http://", "https://")):
        return Finding(
            check,
            Status.FAIL,
            f"{chain.name}'s RPC is {shown}; keysafe speaks JSON-RPC over http(s) only.",
            f"give it an http(s) URL: `keysafe chain add {chain.name} … --rpc https://…`.",
        )
    # Imported here, only when a chain has an RPC to check: the chain clients pull in eth-account
    # and solders, half a second of every doctor run on a home that configured none.
    from keysafe.chains.evm.rpc import EvmRpc
    from keysafe.chains.solana.rpc import GENESIS, SolanaRpc

    try:
        if chain.family == "evm":
            with EvmRpc(url, timeout=timeout) as evm:
                served: str | int = evm.chain_id()
            expected: str | int | None = chain.chain_id
            what = "chain id"
        else:
            with SolanaRpc(url, timeout=timeout) as sol:
                served = sol.genesis_hash()
            expected = GENESIS.get(chain.name)
            what = "genesis hash"
    except httpx.InvalidURL:
        return Finding(
            check,
            Status.FAIL,
            f"{chain.name}'s RPC URL cannot be parsed.",
            f"set it again: `keysafe chain add {chain.name} … --rpc https://…`.",
        )
    except KeysafeError as exc:
        return Finding(
            check,
            Status.FAIL,
            f"{chain.name}: {exc.what}",
            f"check the node and `keysafe chain add {chain.name} … --rpc URL`; until then "
            f"sending on {chain.name} fails.",
        )
    if expected is not None and served != expected:
        return Finding(
            check,
            Status.FAIL,
            f"{chain.name}'s RPC {shown} serves {what} {served}, not {expected}: it is another "
            "network.",
            f"point {chain.name} at a node of its own network (`keysafe chain add {chain.name} "
            "… --rpc URL`).",
        )
    return Finding(check, Status.OK, f"{chain.name}: {shown} answers, {what} {served}.")


def blob_store(setting: str) -> Finding:
    """Does the S3 bucket that holds the record ciphertext answer (a HEAD of the bucket: nothing
    is read or written)? Without it no record opens."""
    try:
        config = BlobConfig.from_json(setting)
        S3Blobs(config).check()
    except KeysafeError as exc:
        return Finding(
            "blobs",
            Status.FAIL,
            f"Record ciphertext store: {exc.what}",
            f"{exc.next_step} Until then no key, credential or data record can be used.",
        )
    shown = f" at {where(config.endpoint)}" if config.endpoint else ""
    return Finding("blobs", Status.OK, f"Record ciphertext is in {config.url}{shown}; it answers.")
