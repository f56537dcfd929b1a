"""Black-box tests of what goes wrong around the vault: a missing, foreign or corrupted database,
unsafe file modes, wrong passphrases and unlock throttling, and where the passphrase comes from.

Every error must be exit 1 with exactly one stderr line `Error [CODE]: … Next: …` naming the fix,
never a traceback. `vault` copies one freshly initialised vault per module into the test's home.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _KEYSAFE, HARDHAT_PHRASE, PASSPHRASE, Cli, Result, shared_once

WRONG = "not the passphrase at all"


# -- helpers -------------------------------------------------------------------------------------


def cli_at(home: Path, *, passphrase: str | None = PASSPHRASE) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    env["KEYSAFE_HOME"] = str(home)
    if passphrase is not None:
        env["KEYSAFE_PASSPHRASE"] = passphrase
    return Cli(home, env)


def assert_user_error(r: Result, code: str) -> str:
    """Exit 1 and exactly one stderr line `Error [CODE]: … Next: …`, no traceback. Returns it."""
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert r.exit_code == 1, f"exit {r.exit_code}: {r.stderr}{r.stdout}"
    assert r.stderr.endswith("\n") and r.stderr.count("\n") == 1, repr(r.stderr)
    line = r.stderr.rstrip("\n")
    assert line.startswith(f"Error [{code}]:"), line
    assert "Next:" in line, line
    return line


def as_json(r: Result) -> Any:
    return json.loads(r.stdout)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def private_home(home: Path) -> Path:
    home.mkdir(mode=0o700, parents=True)
    os.chmod(home, 0o700)
    return home


def foreign_db(path: Path) -> None:
    """An ordinary (rollback-journal) SQLite database of some other application, 0600."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('shopping list')")
    conn.commit()
    conn.close()
    os.chmod(path, 0o600)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vault_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One freshly initialised vault for the whole run (tests copy it, never use it)."""

    def build(root: Path) -> dict[str, Any]:
        return as_json(cli_at(root / "home").ok("init", "--json"))

    root, _ = shared_once(tmp_path_factory, "keysafe-test-errors-vault", build)
    return root / "home"


@pytest.fixture
def vault(keysafe: Cli, vault_template: Path) -> Cli:
    """Overrides conftest's `vault`: a copy of one freshly initialised vault (same files, modes)."""
    shutil.copytree(vault_template, keysafe.home)
    return keysafe


# -- missing, foreign and corrupted databases -----------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("credential", "list"), ("wallet", "list")],
    ids=" ".join,
)
def test_command_on_missing_home_is_refused_naming_keysafe_init(
    keysafe: Cli, command: tuple[str, ...]
) -> None:
    line = assert_user_error(keysafe(*command), "NOT_INITIALIZED")
    assert "keysafe init" in line
    assert str(keysafe.home) in line
    assert not keysafe.home.exists(), "a refused command must not create KEYSAFE_HOME"


def test_foreign_sqlite_db_is_refused_with_one_line(keysafe: Cli) -> None:
    foreign_db(private_home(keysafe.home) / "vault.db")
    line = assert_user_error(keysafe("credential", "list"), "STORE_ERROR")
    assert "KEYSAFE_HOME" in line
    assert "not a readable keysafe vault" in line


def test_foreign_sqlite_db_is_left_unchanged_by_the_refusal(keysafe: Cli) -> None:
    db = private_home(keysafe.home) / "vault.db"
    foreign_db(db)
    before = sha256(db)
    assert_user_error(keysafe("status"), "STORE_ERROR")
    conn = sqlite3.connect(db)
    try:
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    assert journal == "delete", f"keysafe switched someone else's database to {journal}"
    assert sha256(db) == before


def test_corrupted_db_is_refused_with_one_line_and_left_unchanged(keysafe: Cli) -> None:
    db = private_home(keysafe.home) / "vault.db"
    db.write_bytes(os.urandom(16384))
    os.chmod(db, 0o600)
    before = sha256(db)
    line = assert_user_error(keysafe("credential", "list"), "STORE_ERROR")
    assert "keysafe recover" in line
    assert sha256(db) == before


def test_empty_db_file_error_names_a_fix_that_works(keysafe: Cli) -> None:
    db = private_home(keysafe.home) / "vault.db"
    db.touch(mode=0o600)
    os.chmod(db, 0o600)
    line = assert_user_error(keysafe("credential", "list"), "NOT_INITIALIZED")
    assert "keysafe recover" in line
    assert db.stat().st_size == 0  # a read-only command leaves the leftover untouched
    # Follow the advice given.
    keysafe.ok("recover", "--json", input=HARDHAT_PHRASE + "\n")


# -- file permissions ----------------------------------------------------------------------------


def test_init_makes_home_0700_and_every_file_0600_after_a_write(keysafe: Cli) -> None:
    keysafe.ok("init", "--json")
    keysafe.ok("credential", "add", "gh", "--host", "api.github.com", input="s3cret-token")
    assert mode(keysafe.home) == 0o700
    files = sorted(p for p in keysafe.home.iterdir())
    assert keysafe.home / "vault.db" in files
    for f in files:
        assert f.is_file(), f
        assert mode(f) == 0o600, f"{f.name} is {mode(f):04o}"


def test_wal_and_shm_files_are_0600_while_a_command_holds_the_vault(vault: Cli) -> None:
    # `keysafe serve` holds the vault open while it runs, so SQLite's -wal and -shm files exist
    # beside vault.db. (The owner commands that used to wait on stdin with the vault open read
    # their input first now, so they can hand the change to a running server.)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [_KEYSAFE, "serve", "--port", str(port), "--unlock"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=vault.env,
    )
    try:
        sidecars = {vault.home / "vault.db-wal", vault.home / "vault.db-shm"}
        deadline = time.monotonic() + 60
        while not all(p.exists() for p in sidecars) and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        modes = {p.name: mode(p) for p in vault.home.iterdir() if p.is_file()}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert {"vault.db-wal", "vault.db-shm"} <= set(modes), (modes, err.decode()[-2000:])
    assert all(m == 0o600 for m in modes.values()), {k: f"{v:04o}" for k, v in modes.items()}
    assert mode(vault.home) == 0o700


def test_group_readable_home_is_refused_naming_chmod_700(vault: Cli) -> None:
    os.chmod(vault.home, 0o755)
    line = assert_user_error(vault("credential", "list"), "UNSAFE_PERMISSIONS")
    assert f"chmod 700 {vault.home}" in line


@pytest.mark.parametrize("name", ["vault.db", "keysafe.log"])
def test_world_readable_file_in_home_is_refused_naming_chmod_600(vault: Cli, name: str) -> None:
    target = vault.home / name
    if not target.exists():
        target.touch(mode=0o600)
    os.chmod(target, 0o644)
    line = assert_user_error(vault("credential", "list"), "UNSAFE_PERMISSIONS")
    assert f"chmod 600 {target}" in line


# -- passphrases and throttling ------------------------------------------------------------------


def test_wrong_passphrase_is_refused_with_wrong_passphrase_code(vault: Cli) -> None:
    line = assert_user_error(
        vault("wallet", "list", env={"KEYSAFE_PASSPHRASE": WRONG}), "WRONG_PASSPHRASE"
    )
    assert "keysafe recover" in line
    assert WRONG not in line


def test_five_wrong_passphrases_refuse_even_the_right_one_in_a_new_process(vault: Cli) -> None:
    for _ in range(5):
        assert_user_error(
            vault("wallet", "list", env={"KEYSAFE_PASSPHRASE": WRONG}), "WRONG_PASSPHRASE"
        )
    # Every call is a new process: the counter lives in the vault, not in memory.
    line = assert_user_error(vault("wallet", "list"), "UNLOCK_THROTTLED")
    m = re.search(r"(\d+) s\b", line)
    assert m, line
    assert 1 <= int(m.group(1)) <= 30, line
    assert "wait" in line.lower()
    st = as_json(vault.ok("status", "--json"))
    assert st["unlock_failures"] == 5


def test_right_passphrase_resets_the_failure_counter(vault: Cli) -> None:
    for _ in range(2):
        assert_user_error(
            vault("wallet", "list", env={"KEYSAFE_PASSPHRASE": WRONG}), "WRONG_PASSPHRASE"
        )
    vault.ok("wallet", "list")
    assert as_json(vault.ok("status", "--json"))["unlock_failures"] == 0


@pytest.mark.parametrize(
    ("command", "needs_vault"),
    [(("wallet", "list"), True), (("init",), False)],
    ids=["unlock", "init"],
)
def test_no_passphrase_and_no_terminal_is_refused_naming_keysafe_passphrase(
    keysafe: Cli, vault_template: Path, command: tuple[str, ...], needs_vault: bool
) -> None:
    if needs_vault:
        shutil.copytree(vault_template, keysafe.home)
    bare = cli_at(keysafe.home, passphrase=None)
    line = assert_user_error(bare(*command), "MALFORMED_REQUEST")
    assert "KEYSAFE_PASSPHRASE" in line
    assert "--passphrase-file" in line
    if not needs_vault:
        assert not (keysafe.home / "vault.db").exists()


def test_passphrase_file_unlocks_without_the_environment_variable(
    vault: Cli, tmp_path: Path
) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSPHRASE + "\n")
    os.chmod(pw_file, 0o600)
    bare = cli_at(vault.home, passphrase=None)
    out = bare.ok("wallet", "list", "--json", "--passphrase-file", str(pw_file))
    assert as_json(out) == []


def test_passphrase_file_with_wrong_passphrase_is_refused(vault: Cli, tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text(WRONG)
    r = vault("wallet", "list", "--passphrase-file", str(pw_file))
    assert_user_error(r, "WRONG_PASSPHRASE")


def test_missing_passphrase_file_is_refused_with_one_line(vault: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    line = assert_user_error(
        vault("wallet", "list", "--passphrase-file", str(missing)), "MALFORMED_REQUEST"
    )
    assert str(missing) in line
