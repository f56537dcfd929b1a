"""Faults are reported as what they are, and the server recovers from them without a restart
(issue 13, hole 11). Reproduced before: a full disk gave 500 INTERNAL or a closed connection and
the server then failed every request until restarted; a read-only home was called "not a
readable keysafe vault … rebuild with keysafe recover"; a unlock killed inside Argon2 counted as
a wrong passphrase, so five interrupted unlocks locked the owner out.

The disks are real: small tmpfs mounts (root only; skipped with the reason where mounting is not
allowed, e.g. a container without CAP_SYS_ADMIN).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from keysafe.crypto.kdf import Argon2Params
from keysafe.crypto.secret import SecretBytes
from keysafe.service.vault_admin import init_vault
from keysafe.vault.home import Home
from tests.conftest import PASSPHRASE, Cli
from tests.e2e.server_fixture import (
    KEYSAFE,
    R1,
    agent_headers,
    cli_env,
    copy_home,
    error_of,
    evm_tx,
    keysafe_server,
    standard_vault,
)

Mount = Callable[[int], Path]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """mount(size_bytes) -> an empty folder on a tmpfs of that size, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()[:120]})")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _sign(url: str, token: str, nonce: int) -> httpx.Response:
    body = {"wallet": "main", "transaction": evm_tx(10**14, to=R1, nonce=nonce)}
    return httpx.post(
        f"{url}/v1/agent/sign-transaction", json=body, headers=agent_headers(token), timeout=60
    )


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_attack_full_disk_is_audit_failed_and_the_server_recovers(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, tmpfs: Mount
) -> None:
    pristine = standard_vault(tmp_path_factory)
    disk = tmpfs(8 * 1024 * 1024)
    home = copy_home(pristine, disk)
    token = pristine.tokens["bot"]
    with keysafe_server(cli_env(home), "--unlock", log_dir=tmp_path) as server:
        assert _sign(server.url, token, 0).status_code == 200
        filler = _fill(disk)
        for nonce in (1, 2, 3):
            r = _sign(server.url, token, nonce)
            assert r.status_code == 503, f"a full disk answered {r.status_code}: {r.text[:300]}"
            err = error_of(r)
            assert err["code"] == "AUDIT_FAILED" and "space" in err["next"], err
        filler.unlink()
        # The same server, with no restart: the next request is served and audited.
        r = _sign(server.url, token, 4)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{server.url}/v1/health", timeout=10).status_code == 200
    verify = Cli(home, cli_env(home)).ok("audit", "verify", "--json")
    assert json.loads(verify.stdout)["ok"] is True


def test_attack_read_only_home_is_not_called_damaged(
    tmp_path_factory: pytest.TempPathFactory, tmpfs: Mount
) -> None:
    disk = tmpfs(16 * 1024 * 1024)
    home = copy_home(standard_vault(tmp_path_factory), disk)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    r = Cli(home, cli_env(home))("agent", "list", "--json")
    assert r.exit_code != 0
    text = r.stderr + r.stdout
    assert "STORE_ERROR" in text and "read-only" in text, text
    assert "recover" not in text and "damaged, move" not in text, text


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def test_attack_killed_unlocks_do_not_lock_the_owner_out(tmp_path: Path) -> None:
    # A costly Argon2 (256 MiB), so each unlock is killed while it derives the key: seen by the
    # process's memory jumping past what keysafe needs without it.
    home = Home(tmp_path / "home")
    kdf = Argon2Params(memory_kib=256 * 1024, time_cost=6, parallelism=1)
    vault, phrase = init_vault(home, SecretBytes(bytearray(PASSPHRASE.encode())), kdf=kdf)
    phrase.wipe()
    vault.lock()
    vault.db.close()
    env = cli_env(home.path)
    for attempt in range(1, 7):
        proc = subprocess.Popen(
            [KEYSAFE, "pause-all"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while _rss_kib(proc.pid) < 200 * 1024 and proc.poll() is None:
            assert time.monotonic() < deadline, "the unlock never reached Argon2"
            time.sleep(0.005)
        if proc.poll() is not None:
            said = proc.communicate(timeout=30)[1].decode(errors="replace")
            pytest.fail(f"unlock {attempt} ended before Argon2 (after {attempt - 1} kills): {said}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    con = sqlite3.connect(home.db_path)
    try:
        failures = con.execute("SELECT unlock_failures FROM vault").fetchone()[0]
    finally:
        con.close()
    assert failures == 0, f"{failures} killed unlocks were counted as wrong passphrases"
    r = Cli(home.path, env)("pause-all")
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize(
    ("value", "said"), [("2", "newer keysafe"), ("0", "unknown vault format"), ("'x'", "unknown")]
)
def test_attack_vault_format_is_checked(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, value: str, said: str
) -> None:
    home = copy_home(standard_vault(tmp_path_factory), tmp_path)
    con = sqlite3.connect(home / "vault.db", isolation_level=None)
    try:
        con.execute(f"UPDATE vault SET format = {value}")
    finally:
        con.close()
    r = Cli(home, cli_env(home))("agent", "list", "--json")
    assert r.exit_code != 0 and "INTEGRITY_ERROR" in r.stderr + r.stdout, r.stdout
    assert said in r.stderr + r.stdout
