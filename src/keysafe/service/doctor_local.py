"""`keysafe doctor`'s checks of this machine (service/doctor.py): the home folder's owner and
modes, the database's write lock, and what unlocking costs (Argon2id) or needs (a KMS).

Nothing is changed: the write lock is only tried for an instant, and the KDF is timed on a
throwaway input of the vault's cost, never on the passphrase.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any, Final

from keysafe.crypto.kdf import DEFAULT_ARGON2, Argon2Params, argon2id
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import KeysafeError
from keysafe.service.findings import Finding, Status
from keysafe.store.db import Database
from keysafe.vault.home import SERVE_LOCK_NAME, Home
from keysafe.vault.kms import KmsConfig, KmsKind, provider_for

logger = logging.getLogger(__name__)

# An unlock slower than this on this machine is felt every time the server's idle lock fires.
SLOW_UNLOCK_S: Final = 3.0
_WRITE_LOCK_WAIT_S: Final = 1.0  # longer than any healthy keysafe write holds the lock


def home_folder(home: Home) -> Finding:
    """Is the home a real folder of this user's, closed to others, with files to match?"""
    path = home.path
    if not path.exists():
        return Finding(
            "home",
            Status.FAIL,
            f"There is no keysafe home at {path}.",
            "run `keysafe init` to create a vault there, or set KEYSAFE_HOME to where yours is.",
        )
    info = path.lstat()
    me = os.geteuid()
    refused = _not_my_folder(path, info, me)
    if refused is not None:
        return refused
    problems, fixes = _folder_mode_problems(path, stat.S_IMODE(info.st_mode))
    try:
        files = sorted(p for p in path.iterdir() if p.is_file() or p.is_symlink())
    except OSError as exc:
        return Finding(
            "home",
            Status.FAIL,
            f"{path} cannot be listed ({exc.strerror}).",
            f"run `chmod 700 {path}` as its owner.",
        )
    _add_file_problems(files, me, problems, fixes)
    if problems:
        return Finding(
            "home",
            Status.FAIL,
            f"{path}: " + "; ".join(problems) + ".",
            "run `" + " && ".join(fixes) + "` (keysafe refuses to open the vault until then).",
        )
    return Finding(
        "home", Status.OK, f"{path} is 0700 and yours; its {len(files)} file(s) are 0600 and yours."
    )


def _not_my_folder(path: Path, info: os.stat_result, me: int) -> Finding | None:
    """The failure when the home is a link, not a folder, or another user's (checked first:
    its modes mean nothing then), or None."""
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a folder"
        return Finding(
            "home",
            Status.FAIL,
            f"{path} is {what}; keysafe wants a real folder of its own.",
            "point KEYSAFE_HOME at the folder itself (or move the vault into one).",
        )
    if info.st_uid != me:
        return Finding(
            "home",
            Status.FAIL,
            f"{path} belongs to another user (uid {info.st_uid}; you are uid {me}).",
            f"run keysafe as the user who owns it, or `chown -R {me} {path}` if it is yours.",
        )
    return None


def _folder_mode_problems(path: Path, mode: int) -> tuple[list[str], list[str]]:
    """What is wrong with the folder's own mode, and the commands that fix it."""
    problems: list[str] = []
    fixes: list[str] = []
    if mode & 0o077:
        problems.append(f"the folder is open to other users (mode {mode:04o})")
        fixes.append(f"chmod 700 {path}")
    elif mode & 0o700 != 0o700:
        problems.append(f"the folder is mode {mode:04o}, so keysafe cannot use it fully")
        fixes.append(f"chmod 700 {path}")
    return problems, fixes


def _add_file_problems(files: list[Path], me: int, problems: list[str], fixes: list[str]) -> None:
    """Add what is wrong with the home's files (open to others, another user's) and the fixes,
    after the folder's own, so the owner reads them in that order."""
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


def write_lock(home: Home, db: Database) -> Finding:
    """Does anything hold the database's write lock (or the server lock) too long?"""
    held = home.serve_lock_held()
    try:
        free = db.writer_free(wait_s=_WRITE_LOCK_WAIT_S)
    except Exception as exc:  # a diagnosis reports what it cannot check; it never stops
        logger.info("write lock check failed: %s", exc)
        return Finding(
            "lock",
            Status.WARN,
            f"Could not check the database's write lock ({type(exc).__name__}).",
            f"check that {home.db_path} is readable and writable by you.",
        )
    if not free:
        return Finding(
            "lock",
            Status.FAIL,
            f"Another process has held the vault database's write lock for over "
            f"{_WRITE_LOCK_WAIT_S:.0f} s, so every command that writes waits for it, then fails.",
            f"find it with `fuser {home.db_path}` and stop it if it hangs (a keysafe process "
            "stuck in a write); then run `keysafe doctor` again.",
        )
    if held:
        return Finding(
            "lock", Status.OK, "A running `keysafe serve` holds this home's server lock."
        )
    stale = (home.path / SERVE_LOCK_NAME).exists()
    return Finding(
        "lock",
        Status.OK,
        "No process holds the vault"
        + (
            " (serve.lock is left from a server that has stopped: harmless, nothing holds it)."
            if stale
            else "."
        ),
    )


def key_derivation(stored: str) -> Finding:
    """Is the vault's Argon2id cost at keysafe's default, and fast enough on this machine?"""
    try:
        params = Argon2Params.from_dict(json.loads(stored))
    except (KeyError, TypeError, ValueError) as exc:
        return Finding(
            "kdf",
            Status.FAIL,
            f"The vault's key derivation settings are not usable ({exc}).",
            "restore the database from a backup, or rebuild with `keysafe recover`.",
        )
    seconds = _seconds_per_unlock(params)
    cost = (
        f"Argon2id {params.memory_kib // 1024} MiB, {params.time_cost} pass(es), "
        f"{params.parallelism} lane(s): {seconds:.2f} s per unlock on this machine"
    )
    rewrap = "run `keysafe passphrase change`: it re-wraps the key at keysafe's default cost"
    if params.memory_kib < DEFAULT_ARGON2.memory_kib or params.time_cost < DEFAULT_ARGON2.time_cost:
        return Finding(
            "kdf",
            Status.WARN,
            f"{cost}, below keysafe's default (64 MiB, 3 passes): a stolen copy of the vault is "
            "cheaper to guess at.",
            f"{rewrap} (the same passphrase may be kept).",
        )
    if seconds > SLOW_UNLOCK_S:
        heavier = (
            params.memory_kib > DEFAULT_ARGON2.memory_kib
            or params.time_cost > DEFAULT_ARGON2.time_cost
        )
        return Finding(
            "kdf",
            Status.WARN,
            f"{cost}, slow: every unlock waits that long.",
            f"{rewrap}."
            if heavier
            else "keep the server unlocked for longer "
            "(`keysafe serve --idle-lock SECONDS`), or run keysafe on a faster machine.",
        )
    return Finding("kdf", Status.OK, f"{cost}.")


def key_provider(row: Any, token: SecretBytes | None, url: str | None) -> Finding:
    """Does the vault's KMS answer, and is its key usable? (kind, URL, key id; never a token)"""
    try:
        config = KmsConfig(KmsKind(row.kms_kind), row.kms_url, row.kms_key)
    except ValueError:
        return Finding(
            "kms",
            Status.FAIL,
            f"The vault names an unknown key provider ({row.kms_kind!r}).",
            "upgrade keysafe, or rebuild the vault with `keysafe recover`.",
        )
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
        "kms",
        Status.FAIL,
        f"Key provider {health.detail}: the vault cannot be unlocked now.",
        "start or reach the KMS and check the token and the key; or `keysafe recover` with the "
        "recovery phrase (it needs no KMS).",
    )


def _seconds_per_unlock(params: Argon2Params) -> float:
    # A throwaway input of the vault's cost: the time is what matters, not the key.
    start = time.perf_counter()
    argon2id(secrets.token_bytes(32), secrets.token_bytes(16), params)
    return time.perf_counter() - start
