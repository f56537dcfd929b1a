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

import logging
import stat
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Row, func, select

from keysafe.audit import log as audit_log
from keysafe.audit.record import ChainReport
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import KeysafeError
from keysafe.policy.registry import ChainInfo
from keysafe.service import doctor_local, doctor_network
from keysafe.service.findings import Finding, Report, Status
from keysafe.service.registry import load_registry
from keysafe.store import tables as t
from keysafe.store.db import SCHEMA_HEAD, Database
from keysafe.store.probe import database_url
from keysafe.vault.header import FORMAT
from keysafe.vault.home import Home
from keysafe.vault.kms import KmsKind
from keysafe.vault.seals import PAUSED_ALL

logger = logging.getLogger(__name__)

NETWORK_TIMEOUT_S: Final = 3.0


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
    findings = [doctor_local.home_folder(home)]
    if findings[0].status is Status.FAIL and not home.path.is_dir():
        return Report.of(str(home.path), findings)
    if (
        home.database_url is None
        and home.db_path.is_file()
        and stat.S_IMODE(home.db_path.stat().st_mode) & 0o077
    ):
        # SQLite gives the -wal and -shm files it creates on opening the database's own mode:
        # even a read-only look would leave two more files open to other users.
        findings.append(
            Finding(
                "vault",
                Status.WARN,
                f"{home.db_path} was not opened: it is open to other users, and opening it would "
                "create SQLite's side files just as open.",
                "fix the permissions as the home check says, then run `keysafe doctor` again.",
            )
        )
        return Report.of(str(home.path), findings)
    try:
        if home.database_url is not None:
            db = Database.open_postgresql_readonly(database_url(home.database_url))
        else:
            db = Database.open_sqlite_readonly(home.db_path)
    except KeysafeError as exc:
        findings.append(Finding("vault", Status.FAIL, exc.what, exc.next_step))
        return Report.of(str(home.path), findings)
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
    return Report.of(str(home.path), findings)


# -- the vault database -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Contents:
    """What the checks read from a vault at the current schema, in one read transaction."""

    chains: list[ChainInfo]  # chains added with an RPC to ask
    counts: dict[str, int]  # wallet, credential, data records; active agents
    switch: str | None  # the pause-all setting
    unsealed: list[str]  # rows that decide what an agent may do and carry no seal
    chain_report: ChainReport  # the audit log's hash chain
    unsealed_entries: int  # audit entries written while locked, not sealed yet
    blobs_setting: str | None  # where record ciphertext lives (S3), if not in the database
    provider: Row[Any, Any, Any]  # the key provider's kind, URL and key id


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
    if header is None or header.format != FORMAT:
        return [_unusable(home, header)]
    name = f"Vault {header.id[:12]}…"
    # Everything below runs on whatever the database holds; a network check waits meanwhile.
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="doctor") as pool:
        if revision != SCHEMA_HEAD:
            return _older_schema(
                pool,
                home,
                db,
                header,
                f"{name} is at schema {revision}",
                server_url=server_url,
                timeout=timeout,
            )
        got = _read_contents(db)
        server = pool.submit(
            doctor_network.server, home, server_url, timeout, active_agents=got.counts["active"]
        )
        rpcs = [pool.submit(doctor_network.chain_rpc, chain, timeout) for chain in got.chains]
        # Only a vault that keeps ciphertext in S3 has this check (others show what they did).
        blobs = (
            None
            if got.blobs_setting is None
            else pool.submit(doctor_network.blob_store, got.blobs_setting)
        )
        findings = [
            _vault_holds(name, revision, got.counts),
            doctor_local.write_lock(home, db),
            server.result(),
        ]
        findings += [f.result() for f in rpcs] or [
            Finding("rpc", Status.OK, "No chain RPC is configured (`keysafe chain add … --rpc`).")
        ]
        if blobs is not None:
            findings.append(blobs.result())
    if got.provider.kms_kind in (None, str(KmsKind.LOCAL)):
        findings.append(doctor_local.key_derivation(header.kdf_params))
    else:  # no passphrase, no Argon2id: the KMS is what unlocks it
        findings.append(doctor_local.key_provider(got.provider, kms_token, kms_url))
    findings.append(_unlock_failures(header.unlock_failures))
    findings.append(_pause_all(got.switch))
    findings.append(_seals(got.unsealed))
    findings.append(_audit(got.chain_report, got.unsealed_entries))
    return findings


def _unusable(home: Home, header: Row[Any, Any, Any, Any] | None) -> Finding:
    """The finding for a database with no vault in it, or one in a format this keysafe does not
    read."""
    if header is None:
        return Finding(
            "vault",
            Status.FAIL,
            f"{home.where if home.database_url else home.db_path} has no vault in it "
            "(an interrupted `keysafe init`?).",
            "run `keysafe init` (it clears what the interrupted one left), or "
            "`keysafe recover` to rebuild the vault from its recovery phrase.",
        )
    return Finding(
        "vault",
        Status.FAIL,
        f"The vault is in format {str(header.format)[:20]!r}; this keysafe reads format {FORMAT}.",
        "upgrade keysafe (`pip install -U keysafe`)"
        if isinstance(header.format, int) and header.format > FORMAT
        else "restore the database from a backup, or rebuild with `keysafe recover`.",
    )


def _older_schema(
    pool: ThreadPoolExecutor,
    home: Home,
    db: Database,
    header: Row[Any, Any, Any, Any],
    at: str,
    *,
    server_url: str,
    timeout: float,
) -> list[Finding]:
    """An older schema's vault: its contents are not read (the next command upgrades it), so
    only the lock, the server and the KDF are checked."""
    server: Future[Finding] = pool.submit(
        doctor_network.server, home, server_url, timeout, active_agents=0
    )
    return [
        Finding(
            "vault",
            Status.WARN,
            f"{at}; this keysafe (schema {SCHEMA_HEAD}) upgrades it the next time a command "
            "opens it, so the checks of its contents were skipped.",
            "run `keysafe status` once (it upgrades the schema), then `keysafe doctor`.",
        ),
        doctor_local.write_lock(home, db),
        server.result(),
        doctor_local.key_derivation(header.kdf_params),
    ]


def _read_contents(db: Database) -> _Contents:
    with db.read() as conn:
        return _Contents(
            chains=[c for c in load_registry(conn).chains if not c.builtin and c.rpc],
            counts=_counts(conn),
            switch=conn.execute(
                select(t.settings.c.value).where(t.settings.c.key == PAUSED_ALL)
            ).scalar_one_or_none(),
            unsealed=_unsealed_rows(conn),
            chain_report=audit_log.verify(conn),
            unsealed_entries=conn.execute(
                select(func.count()).select_from(t.audit).where(t.audit.c.mac.is_(None))
            ).scalar_one(),
            blobs_setting=conn.execute(select(t.vault.c.blobs)).scalar(),
            provider=conn.execute(
                select(t.vault.c.kms_kind, t.vault.c.kms_url, t.vault.c.kms_key)
            ).one(),
        )


def _vault_holds(name: str, revision: str, counts: dict[str, int]) -> Finding:
    return Finding(
        "vault",
        Status.OK,
        f"{name} (format {FORMAT}, schema {revision}): {counts['wallet']} wallet(s), "
        f"{counts['credential']} credential(s), {counts['data']} data record(s), "
        f"{counts['active']} active agent(s).",
    )


def _counts(conn: Connection) -> dict[str, int]:
    kinds: dict[str, int] = dict(
        conn.execute(select(t.records.c.kind, func.count()).group_by(t.records.c.kind)).all()
    )
    active = conn.execute(
        select(func.count()).select_from(t.agents).where(t.agents.c.status == "active")
    ).scalar_one()
    return {
        "wallet": int(kinds.get("wallet", 0)),
        "credential": int(kinds.get("credential", 0)),
        "data": int(kinds.get("data", 0)),
        "active": int(active),
    }


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


# -- what the vault's rows say ------------------------------------------------------------------


def _unlock_failures(failures: int) -> Finding:
    if not failures:
        return Finding("unlock", Status.OK, "No wrong passphrase since the last unlock.")
    return Finding(
        "unlock",
        Status.WARN,
        f"{failures} wrong passphrase(s) in a row since the last unlock.",
        "if that was not you, someone is guessing: read `keysafe audit --since 7d` "
        "(the next right passphrase resets the count).",
    )


def _pause_all(value: str | None) -> Finding:
    if value is None:
        return Finding(
            "pause-all",
            Status.FAIL,
            "The pause-all switch is missing from the database, so every agent is refused.",
            "run `keysafe agent seal`: it restores the switch as on; then `keysafe resume-all`.",
        )
    if value == "1":
        return Finding(
            "pause-all",
            Status.WARN,
            "Pause-all is on: every agent is refused.",
            "run `keysafe resume-all` when you are sure.",
        )
    return Finding("pause-all", Status.OK, "Pause-all is off.")


def _seals(unsealed: Sequence[str]) -> Finding:
    if unsealed:
        listed = ", ".join(unsealed[:5]) + (", …" if len(unsealed) > 5 else "")
        return Finding(
            "seals",
            Status.WARN,
            f"{len(unsealed)} row(s) have no owner's seal, so the vault will not honour what "
            f"they grant: {listed}.",
            "run `keysafe agent seal`, and seal them if you recognise them.",
        )
    return Finding(
        "seals",
        Status.OK,
        "Every agent, policy and setting row carries a seal (`keysafe audit verify` checks them "
        "with the passphrase).",
    )


def _audit(report: ChainReport, unsealed: int) -> Finding:
    if not report.ok:
        return Finding(
            "audit",
            Status.FAIL,
            f"The audit log was tampered with: {report.problem} (first bad entry: seq "
            f"{report.first_bad_seq}).",
            "keep a copy of the home as evidence, and compare with a backup "
            "(`keysafe backup restore` into an empty home).",
        )
    if unsealed:
        return Finding(
            "audit",
            Status.WARN,
            f"Hash chain intact ({report.entries} entries); {unsealed} were written while the "
            "vault was locked and are not sealed yet.",
            "run `keysafe audit seal` to read them; seal them if you recognise them.",
        )
    return Finding("audit", Status.OK, f"Hash chain intact, {report.entries} entries, all sealed.")


__all__ = ["NETWORK_TIMEOUT_S", "diagnose"]
