"""`keysafe doctor`: read-only checks of a keysafe home, each finding with the one thing to fix.

    report = diagnose(Home.from_env(), server_url="http://127.0.0.1:8420")
    for f in report.findings:
        print(f.status, f.check, f.summary, f.fix or "")

Rules this module keeps:

- No passphrase, and no change to the vault: the database is opened read-only (a schema an older
  keysafe wrote is reported, never migrated), SQLite's write lock and the server lock are only
  tried for an instant, and an unlock is never attempted. Seals need the owner's key, so only
  rows that have none are counted here; `keysafe audit verify` checks the seals themselves.
- Nothing secret in a finding: RPC URLs and the server URL are shown as scheme://host:port (an
  RPC URL's path or query often holds an API key), and only the server's public health route is
  asked.
- Network checks have short timeouts and run side by side: a dead RPC costs seconds, not minutes.
- Exit status for the surfaces: any FAIL means the vault, or something configured in it, does
  not work as it stands; a WARN works but wants the owner's attention.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import httpx
from sqlalchemy import Connection, func, select

from keysafe import __version__
from keysafe.audit import log as audit_log
from keysafe.audit.record import ChainReport
from keysafe.crypto.kdf import DEFAULT_ARGON2, Argon2Params, argon2id
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import KeysafeError
from keysafe.policy.registry import ChainInfo
from keysafe.service.registry import load_registry
from keysafe.store import tables as t
from keysafe.store.db import SCHEMA_HEAD, Database
from keysafe.store.probe import database_url
from keysafe.vault.blobs import BlobConfig, S3Blobs
from keysafe.vault.header import FORMAT
from keysafe.vault.home import SERVE_LOCK_NAME, Home
from keysafe.vault.kms import KmsConfig, KmsKind, provider_for
from keysafe.vault.seals import PAUSED_ALL

logger = logging.getLogger(__name__)

NETWORK_TIMEOUT_S: Final = 3.0
# An unlock slower than this on this machine is felt every time the server's idle lock fires.
SLOW_UNLOCK_S: Final = 3.0
_WRITE_LOCK_WAIT_S: Final = 1.0  # longer than any healthy keysafe write holds the lock


class Status(StrEnum):
    OK = "ok"  # nothing to do
    WARN = "warn"  # works, but wants the owner's attention
    FAIL = "fail"  # does not work as it stands (the surfaces exit 1)


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result: what was found, and (unless ok) the one thing to do about it."""

    check: str  # home, vault, lock, server, rpc:NAME, blobs, kdf, unlock, pause-all, seals, audit
    status: Status
    summary: str
    fix: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"check": self.check, "status": str(self.status), "summary": self.summary,
                "fix": self.fix}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Report:
    home: str
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(f.status is not Status.FAIL for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"home": self.home, "ok": self.ok,
                "checks": [f.to_dict() for f in self.findings]}  # fmt: skip


def where(url: str) -> str:
    """A URL as scheme://host[:port], the only part of it a finding may show (the path, query and
    user info of an RPC URL often hold an API key)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "(an unparseable URL)"
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def diagnose(
    home: Home,
    *,
    server_url: str,
    timeout: float = NETWORK_TIMEOUT_S,
    kms_token: SecretBytes | None = None,
    kms_url: str | None = None,
) -> Report:
    """Run every check on `home` and the server at `server_url`; never raises for what it finds.

    Args:
        home: the keysafe home to look at (nothing in it is changed).
        server_url: where this home's `keysafe serve` should answer (KEYSAFE_URL).
        timeout: seconds each network check may take (the server, each chain RPC).
        kms_url: where OpenBao is (the operator's KEYSAFE_KMS_URL; the token goes nowhere else).
        kms_token: the OpenBao token, to ask a KMS vault's key provider whether its key is
            usable (read only; never shown).
    """
    findings = [_home(home)]
    if findings[0].status is Status.FAIL and not home.path.is_dir():
        return Report(str(home.path), tuple(findings))
    if (
        home.database_url is None
        and home.db_path.is_file()
        and stat.S_IMODE(home.db_path.stat().st_mode) & 0o077
    ):
        # SQLite gives the -wal and -shm files it creates on opening the database's own mode:
        # even a read-only look would leave two more files open to other users.
        findings.append(
            Finding(
                "vault", Status.WARN,
                f"{home.db_path} was not opened: it is open to other users, and opening it would "
                "create SQLite's side files just as open.",
                "fix the permissions as the home check says, then run `keysafe doctor` again.",
            )
        )  # fmt: skip
        return Report(str(home.path), tuple(findings))
    try:
        if home.database_url is not None:
            db = Database.open_postgresql_readonly(database_url(home.database_url))
        else:
            db = Database.open_sqlite_readonly(home.db_path)
    except KeysafeError as exc:
        findings.append(Finding("vault", Status.FAIL, exc.what, exc.next_step))
        return Report(str(home.path), tuple(findings))
    try:
        findings += _with_database(
            home,
            db,
            server_url=server_url,
            timeout=timeout,
            kms_token=kms_token,
            kms_url=kms_url,
        )
    finally:
        db.close()
    return Report(str(home.path), tuple(findings))


# -- the home folder ----------------------------------------------------------------------------


def _home(home: Home) -> Finding:
    path = home.path
    if not path.exists():
        return Finding(
            "home", Status.FAIL, f"There is no keysafe home at {path}.",
            "run `keysafe init` to create a vault there, or set KEYSAFE_HOME to where yours is.",
        )  # fmt: skip
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a folder"
        return Finding(
            "home", Status.FAIL, f"{path} is {what}; keysafe wants a real folder of its own.",
            "point KEYSAFE_HOME at the folder itself (or move the vault into one).",
        )  # fmt: skip
    me = os.geteuid()
    if info.st_uid != me:
        return Finding(
            "home", Status.FAIL,
            f"{path} belongs to another user (uid {info.st_uid}; you are uid {me}).",
            f"run keysafe as the user who owns it, or `chown -R {me} {path}` if it is yours.",
        )  # fmt: skip
    mode = stat.S_IMODE(info.st_mode)
    problems: list[str] = []
    fixes: list[str] = []
    if mode & 0o077:
        problems.append(f"the folder is open to other users (mode {mode:04o})")
        fixes.append(f"chmod 700 {path}")
    elif mode & 0o700 != 0o700:
        problems.append(f"the folder is mode {mode:04o}, so keysafe cannot use it fully")
        fixes.append(f"chmod 700 {path}")
    try:
        files = sorted(p for p in path.iterdir() if p.is_file() or p.is_symlink())
    except OSError as exc:
        return Finding(
            "home", Status.FAIL, f"{path} cannot be listed ({exc.strerror}).",
            f"run `chmod 700 {path}` as its owner.",
        )  # fmt: skip
    open_files = [p for p in files if stat.S_IMODE(p.lstat().st_mode) & 0o077]
    foreign = [p for p in files if p.lstat().st_uid != me]
    if open_files:
        problems.append(
            f"{len(open_files)} file(s) can be read by other users ("
            + ", ".join(f"{p.name} {stat.S_IMODE(p.lstat().st_mode):04o}" for p in open_files[:3])
            + ")"
        )
        fixes.append("chmod 600 " + " ".join(str(p) for p in open_files))
    if foreign:
        problems.append(f"{len(foreign)} file(s) belong to another user ({foreign[0].name}, …)")
        fixes.append(f"chown {me} " + " ".join(str(p) for p in foreign))
    if problems:
        return Finding(
            "home", Status.FAIL, f"{path}: " + "; ".join(problems) + ".",
            "run `" + " && ".join(fixes) + "` (keysafe refuses to open the vault until then).",
        )  # fmt: skip
    return Finding(
        "home", Status.OK, f"{path} is 0700 and yours; its {len(files)} file(s) are 0600 and yours."
    )


# -- the vault database -------------------------------------------------------------------------


def _with_database(
    home: Home,
    db: Database,
    *,
    server_url: str,
    timeout: float,
    kms_token: SecretBytes | None,
    kms_url: str | None,
) -> list[Finding]:
    revision = db.schema_revision()
    with db.read() as conn:
        # Only columns every schema since 0001 has: an older one is reported below, not read.
        header = conn.execute(
            select(t.vault.c.id, t.vault.c.format, t.vault.c.kdf_params, t.vault.c.unlock_failures)
        ).first()
    if header is None:
        return [
            Finding(
                "vault", Status.FAIL,
                f"{home.where if home.database_url else home.db_path} has no vault in it "
                "(an interrupted `keysafe init`?).",
                "run `keysafe init` (it clears what the interrupted one left), or "
                "`keysafe recover` to rebuild the vault from its recovery phrase.",
            )
        ]  # fmt: skip
    if header.format != FORMAT:
        return [
            Finding(
                "vault", Status.FAIL,
                f"The vault is in format {str(header.format)[:20]!r}; this keysafe reads format "
                f"{FORMAT}.",
                "upgrade keysafe (`pip install -U keysafe`)"
                if isinstance(header.format, int) and header.format > FORMAT
                else "restore the database from a backup, or rebuild with `keysafe recover`.",
            )
        ]  # fmt: skip
    name = f"Vault {header.id[:12]}…"
    findings: list[Finding] = []
    # Everything below runs on whatever the database holds; a network check waits meanwhile.
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="doctor") as pool:
        if revision != SCHEMA_HEAD:
            findings.append(
                Finding(
                    "vault", Status.WARN,
                    f"{name} is at schema {revision}; this keysafe (schema {SCHEMA_HEAD}) "
                    "upgrades it the next time a command opens it, so the checks of its "
                    "contents were skipped.",
                    "run `keysafe status` once (it upgrades the schema), then `keysafe doctor`.",
                )
            )  # fmt: skip
            server = pool.submit(_server, home, server_url, timeout, active_agents=0)
            findings.append(_lock(home, db))
            findings.append(server.result())
            findings.append(_kdf(header.kdf_params))
            return findings
        with db.read() as conn:
            chains = [c for c in load_registry(conn).chains if not c.builtin and c.rpc]
            counts = _counts(conn)
            switch = conn.execute(
                select(t.settings.c.value).where(t.settings.c.key == PAUSED_ALL)
            ).scalar_one_or_none()
            unsealed = _unsealed_rows(conn)
            chain_report = audit_log.verify(conn)
            unsealed_entries = conn.execute(
                select(func.count()).select_from(t.audit).where(t.audit.c.mac.is_(None))
            ).scalar_one()
            blobs_setting = conn.execute(select(t.vault.c.blobs)).scalar()
            provider = conn.execute(
                select(t.vault.c.kms_kind, t.vault.c.kms_url, t.vault.c.kms_key)
            ).one()
        server = pool.submit(_server, home, server_url, timeout, active_agents=counts["active"])
        rpcs = [pool.submit(_rpc, chain, timeout) for chain in chains]
        # Only a vault that keeps ciphertext in S3 has this check (others show what they did).
        blobs = None if blobs_setting is None else pool.submit(_blobs, blobs_setting)
        findings.append(
            Finding(
                "vault", Status.OK,
                f"{name} (format {FORMAT}, schema {revision}): {counts['wallet']} wallet(s), "
                f"{counts['credential']} credential(s), {counts['data']} data record(s), "
                f"{counts['active']} active agent(s).",
            )
        )  # fmt: skip
        findings.append(_lock(home, db))
        findings.append(server.result())
        findings += [f.result() for f in rpcs] or [
            Finding("rpc", Status.OK, "No chain RPC is configured (`keysafe chain add … --rpc`).")
        ]
        if blobs is not None:
            findings.append(blobs.result())
        if provider.kms_kind in (None, str(KmsKind.LOCAL)):
            findings.append(_kdf(header.kdf_params))
        else:  # no passphrase, no Argon2id: the KMS is what unlocks it
            findings.append(_kms(provider, kms_token, kms_url))
        findings.append(_unlock_failures(header.unlock_failures))
        findings.append(_pause_all(switch))
        findings.append(_seals(unsealed))
        findings.append(_audit(chain_report, unsealed_entries))
    return findings


def _counts(conn: Connection) -> dict[str, int]:
    kinds: dict[str, int] = dict(
        conn.execute(select(t.records.c.kind, func.count()).group_by(t.records.c.kind)).all()
    )
    active = conn.execute(
        select(func.count()).select_from(t.agents).where(t.agents.c.status == "active")
    ).scalar_one()
    return {
        "wallet": int(kinds.get("wallet", 0)), "credential": int(kinds.get("credential", 0)),
        "data": int(kinds.get("data", 0)), "active": int(active),
    }  # fmt: skip


def _unsealed_rows(conn: Connection) -> list[str]:
    """Rows that decide what an agent may do and carry no seal at all (sealed_state.py)."""
    rows = [
        f"agent {r.name}"
        for r in conn.execute(
            select(t.agents.c.name).where(t.agents.c.status != "revoked", t.agents.c.mac.is_(None))
        )
    ]
    rows += [
        f"policy of {r.agent}"
        for r in conn.execute(select(t.policies.c.agent).where(t.policies.c.mac.is_(None)))
    ]
    rows += [
        f"setting {r.key}"
        for r in conn.execute(select(t.settings.c.key).where(t.settings.c.mac.is_(None)))
    ]
    return rows


# -- locks --------------------------------------------------------------------------------------


def _lock(home: Home, db: Database) -> Finding:
    held = home.serve_lock_held()
    try:
        free = db.writer_free(wait_s=_WRITE_LOCK_WAIT_S)
    except Exception as exc:  # a diagnosis reports what it cannot check; it never stops
        logger.info("write lock check failed: %s", exc)
        return Finding(
            "lock", Status.WARN,
            f"Could not check the database's write lock ({type(exc).__name__}).",
            f"check that {home.db_path} is readable and writable by you.",
        )  # fmt: skip
    if not free:
        return Finding(
            "lock", Status.FAIL,
            f"Another process has held the vault database's write lock for over "
            f"{_WRITE_LOCK_WAIT_S:.0f} s, so every command that writes waits for it, then fails.",
            f"find it with `fuser {home.db_path}` and stop it if it hangs (a keysafe process "
            "stuck in a write); then run `keysafe doctor` again.",
        )  # fmt: skip
    if held:
        return Finding(
            "lock", Status.OK, "A running `keysafe serve` holds this home's server lock."
        )
    stale = (home.path / SERVE_LOCK_NAME).exists()
    return Finding(
        "lock", Status.OK,
        "No process holds the vault"
        + (" (serve.lock is left from a server that has stopped: harmless, nothing holds it)."
           if stale else "."),
    )  # fmt: skip


# -- the server ---------------------------------------------------------------------------------


def _server(home: Home, url: str, timeout: float, *, active_agents: int) -> Finding:
    shown = where(url)
    held = home.serve_lock_held()
    if not url.startswith(("http://", "https://")):
        return Finding(
            "server", Status.WARN, "KEYSAFE_URL is not an http(s) URL, so no server can be asked.",
            "unset KEYSAFE_URL (the default is http://127.0.0.1:8420) or set it to where "
            "`keysafe serve` runs.",
        )  # fmt: skip
    try:
        r = httpx.get(f"{url}/v1/health", timeout=timeout)
        body = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        if held:
            return Finding(
                "server", Status.WARN,
                f"A `keysafe serve` holds this home, but nothing answers at {shown} "
                f"({type(exc).__name__}).",
                "set KEYSAFE_URL to the address `keysafe serve` printed when it started "
                "(it was started with another --port or --host).",
            )  # fmt: skip
        if active_agents:
            return Finding(
                "server", Status.WARN,
                f"No keysafe server answers at {shown}, so the {active_agents} active agent(s) "
                "cannot reach the vault.",
                "start it: `keysafe serve` (then `keysafe unlock`), or set KEYSAFE_URL to "
                "where it runs.",
            )  # fmt: skip
        return Finding(
            "server",
            Status.OK,
            f"No keysafe server is running at {shown} (agents need one: `keysafe serve`).",
        )
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("ok") is not True:
        return Finding(
            "server", Status.WARN,
            f"Something that is not keysafe answers at {shown} (HTTP {r.status_code}).",
            "set KEYSAFE_URL to your keysafe server, or give `keysafe serve` another --port.",
        )  # fmt: skip
    version = str(body.get("version", "?"))[:40]
    if not held:
        return Finding(
            "server", Status.WARN,
            f"A keysafe server answers at {shown}, but no server holds this home "
            f"({home.path}): it serves another vault.",
            "set KEYSAFE_URL to this home's server, or start one with `keysafe serve --port N`.",
        )  # fmt: skip
    state = "unlocked" if body.get("unlocked") is True else "locked"
    if version != __version__:
        return Finding(
            "server", Status.WARN,
            f"keysafe serve {version} answers at {shown} ({state}); this keysafe is "
            f"{__version__}.",
            "restart the server so both run the same version.",
        )  # fmt: skip
    return Finding(
        "server", Status.OK,
        f"keysafe serve {version} answers at {shown}, vault {state}"
        + (" (agents are refused until `keysafe unlock`)." if state == "locked" else "."),
    )  # fmt: skip


# -- chain RPCs ---------------------------------------------------------------------------------


def _rpc(chain: ChainInfo, timeout: float) -> Finding:
    url = chain.rpc or ""
    check, shown = f"rpc:{chain.name}", where(url)
    if not url.startswith(("http://", "https://")):
        return Finding(
            check, Status.FAIL,
            f"{chain.name}'s RPC is {shown}; keysafe speaks JSON-RPC over http(s) only.",
            f"give it an http(s) URL: `keysafe chain add {chain.name} … --rpc https://…`.",
        )  # fmt: skip
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
            check, Status.FAIL, f"{chain.name}'s RPC URL cannot be parsed.",
            f"set it again: `keysafe chain add {chain.name} … --rpc https://…`.",
        )  # fmt: skip
    except KeysafeError as exc:
        return Finding(
            check, Status.FAIL, f"{chain.name}: {exc.what}",
            f"check the node and `keysafe chain add {chain.name} … --rpc URL`; until then "
            f"sending on {chain.name} fails.",
        )  # fmt: skip
    if expected is not None and served != expected:
        return Finding(
            check, Status.FAIL,
            f"{chain.name}'s RPC {shown} serves {what} {served}, not {expected}: it is another "
            "network.",
            f"point {chain.name} at a node of its own network (`keysafe chain add {chain.name} "
            "… --rpc URL`).",
        )  # fmt: skip
    return Finding(check, Status.OK, f"{chain.name}: {shown} answers, {what} {served}.")


def _blobs(setting: str) -> Finding:
    """Does the S3 bucket that holds the record ciphertext answer (a HEAD of the bucket: nothing
    is read or written)? Without it no record opens."""
    try:
        config = BlobConfig.from_json(setting)
        S3Blobs(config).check()
    except KeysafeError as exc:
        return Finding(
            "blobs", Status.FAIL, f"Record ciphertext store: {exc.what}",
            f"{exc.next_step} Until then no key, credential or data record can be used.",
        )  # fmt: skip
    shown = f" at {where(config.endpoint)}" if config.endpoint else ""
    return Finding("blobs", Status.OK, f"Record ciphertext is in {config.url}{shown}; it answers.")


# -- the passphrase's key derivation --------------------------------------------------------------


def _kdf(stored: str) -> Finding:
    try:
        params = Argon2Params.from_dict(json.loads(stored))
    except (KeyError, TypeError, ValueError) as exc:
        return Finding(
            "kdf", Status.FAIL, f"The vault's key derivation settings are not usable ({exc}).",
            "restore the database from a backup, or rebuild with `keysafe recover`.",
        )  # fmt: skip
    seconds = _seconds_per_unlock(params)
    cost = (
        f"Argon2id {params.memory_kib // 1024} MiB, {params.time_cost} pass(es), "
        f"{params.parallelism} lane(s): {seconds:.2f} s per unlock on this machine"
    )
    rewrap = "run `keysafe passphrase change`: it re-wraps the key at keysafe's default cost"
    if params.memory_kib < DEFAULT_ARGON2.memory_kib or params.time_cost < DEFAULT_ARGON2.time_cost:
        return Finding(
            "kdf", Status.WARN,
            f"{cost}, below keysafe's default (64 MiB, 3 passes): a stolen copy of the vault is "
            "cheaper to guess at.",
            f"{rewrap} (the same passphrase may be kept).",
        )  # fmt: skip
    if seconds > SLOW_UNLOCK_S:
        heavier = (
            params.memory_kib > DEFAULT_ARGON2.memory_kib
            or params.time_cost > DEFAULT_ARGON2.time_cost
        )
        return Finding(
            "kdf", Status.WARN, f"{cost}, slow: every unlock waits that long.",
            f"{rewrap}." if heavier else "keep the server unlocked for longer "
            "(`keysafe serve --idle-lock SECONDS`), or run keysafe on a faster machine.",
        )  # fmt: skip
    return Finding("kdf", Status.OK, f"{cost}.")


def _kms(row: Any, token: SecretBytes | None, url: str | None) -> Finding:
    """Does the vault's KMS answer, and is its key usable? (kind, URL, key id; never a token)"""
    try:
        config = KmsConfig(KmsKind(row.kms_kind), row.kms_url, row.kms_key)
    except ValueError:
        return Finding(
            "kms", Status.FAIL, f"The vault names an unknown key provider ({row.kms_kind!r}).",
            "upgrade keysafe, or rebuild the vault with `keysafe recover`.",
        )  # fmt: skip
    try:
        provider = provider_for(config, token=token, url=url)
    except KeysafeError as exc:
        return Finding(
            "kms", Status.WARN, f"{config.describe()}: not checked ({exc.what})", exc.next_step
        )
    try:
        health = provider.health()
    finally:
        provider.close()
    if health.ok:
        return Finding("kms", Status.OK, f"Key provider {health.detail}.")
    return Finding(
        "kms", Status.FAIL, f"Key provider {health.detail}: the vault cannot be unlocked now.",
        "start or reach the KMS and check the token and the key; or `keysafe recover` with the "
        "recovery phrase (it needs no KMS).",
    )  # fmt: skip


def _seconds_per_unlock(params: Argon2Params) -> float:
    # A throwaway input of the vault's cost: the time is what matters, not the key.
    start = time.perf_counter()
    argon2id(secrets.token_bytes(32), secrets.token_bytes(16), params)
    return time.perf_counter() - start


# -- what the vault's rows say ------------------------------------------------------------------


def _unlock_failures(failures: int) -> Finding:
    if not failures:
        return Finding("unlock", Status.OK, "No wrong passphrase since the last unlock.")
    return Finding(
        "unlock", Status.WARN, f"{failures} wrong passphrase(s) in a row since the last unlock.",
        "if that was not you, someone is guessing: read `keysafe audit --since 7d` "
        "(the next right passphrase resets the count).",
    )  # fmt: skip


def _pause_all(value: str | None) -> Finding:
    if value is None:
        return Finding(
            "pause-all", Status.FAIL,
            "The pause-all switch is missing from the database, so every agent is refused.",
            "run `keysafe agent seal`: it restores the switch as on; then `keysafe resume-all`.",
        )  # fmt: skip
    if value == "1":
        return Finding(
            "pause-all", Status.WARN, "Pause-all is on: every agent is refused.",
            "run `keysafe resume-all` when you are sure.",
        )  # fmt: skip
    return Finding("pause-all", Status.OK, "Pause-all is off.")


def _seals(unsealed: Sequence[str]) -> Finding:
    if unsealed:
        listed = ", ".join(unsealed[:5]) + (", …" if len(unsealed) > 5 else "")
        return Finding(
            "seals", Status.WARN,
            f"{len(unsealed)} row(s) have no owner's seal, so the vault will not honour what "
            f"they grant: {listed}.",
            "run `keysafe agent seal`, and seal them if you recognise them.",
        )  # fmt: skip
    return Finding(
        "seals",
        Status.OK,
        "Every agent, policy and setting row carries a seal (`keysafe audit verify` checks them "
        "with the passphrase).",
    )


def _audit(report: ChainReport, unsealed: int) -> Finding:
    if not report.ok:
        return Finding(
            "audit", Status.FAIL,
            f"The audit log was tampered with: {report.problem} (first bad entry: seq "
            f"{report.first_bad_seq}).",
            "keep a copy of the home as evidence, and compare with a backup "
            "(`keysafe backup restore` into an empty home).",
        )  # fmt: skip
    if unsealed:
        return Finding(
            "audit", Status.WARN,
            f"Hash chain intact ({report.entries} entries); {unsealed} were written while the "
            "vault was locked and are not sealed yet.",
            "run `keysafe audit seal` to read them; seal them if you recognise them.",
        )  # fmt: skip
    return Finding("audit", Status.OK, f"Hash chain intact, {report.entries} entries, all sealed.")


__all__ = ["Finding", "Report", "Status", "diagnose", "where"]
