"""Files keysafe writes or reads outside its database, attacked through the CLI (issue 13, hole 6,
and from hole 11: the backup overwrite, special characters in KEYSAFE_HOME, a second server)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from keysafe import files
from keysafe.errors import AlreadyExistsError
from keysafe.testing import free_port
from keysafe.vault.home import DB_NAME
from tests.conftest import Cli
from tests.e2e.server_fixture import keysafe_server


def _error(r: object) -> str:
    text = f"{getattr(r, 'stdout', '')}{getattr(r, 'stderr', '')}"
    assert "Traceback" not in text, text
    return text


def test_attack_backup_create_never_overwrites_an_existing_file(vault: Cli, tmp_path: Path) -> None:
    target = tmp_path / "vault.ksbackup"
    vault.ok("backup", "create", str(target), "--json")
    first = target.read_bytes()
    r = vault("backup", "create", str(target), "--json")
    assert r.exit_code != 0
    assert "ALREADY_EXISTS" in _error(r)
    assert target.read_bytes() == first


def test_attack_backup_create_over_a_symlink_leaves_its_target_alone(
    vault: Cli, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "backup-link"
    link.symlink_to(victim)
    r = vault("backup", "create", str(link), "--json")
    assert r.exit_code != 0 and "ALREADY_EXISTS" in _error(r)
    assert victim.read_text() == "precious" and link.is_symlink()


def test_attack_backup_of_a_tampered_vault_is_refused(vault: Cli, tmp_path: Path) -> None:
    vault.ok("wallet", "create", "main", "--chain", "evm", "--json")
    with sqlite3.connect(vault.home / DB_NAME) as c:
        c.execute("UPDATE records SET ciphertext = zeroblob(length(ciphertext)) WHERE name='main'")
    target = tmp_path / "tampered.ksbackup"
    r = vault("backup", "create", str(target), "--json")
    assert r.exit_code != 0
    assert "INTEGRITY_ERROR" in _error(r)
    assert not target.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [("memory_kib", 2**40), ("time_cost", 10**9), ("parallelism", 2**24), ("length", 2**20)],
)
def test_attack_crafted_argon2_costs_in_the_header_are_refused_not_run(
    vault: Cli, field: str, value: int
) -> None:
    with sqlite3.connect(vault.home / DB_NAME) as c:
        params = json.loads(c.execute("SELECT kdf_params FROM vault").fetchone()[0])
        params[field] = value
        c.execute("UPDATE vault SET kdf_params = ?", (json.dumps(params),))
    r = vault("wallet", "list", "--json", timeout=30)
    assert r.exit_code != 0
    assert "INTEGRITY_ERROR" in _error(r)


def test_a_private_file_never_replaces_one_that_appeared_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "share.json"
    path.write_text("someone else's")
    with pytest.raises(AlreadyExistsError):
        files.write_private(path, b"ours", what="share file")
    assert path.read_text() == "someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["share.json"]  # no temporary left behind
    files.write_private(path, b"ours", replace=True)
    assert path.read_bytes() == b"ours" and (os.stat(path).st_mode & 0o777) == 0o600


def test_attack_special_characters_in_keysafe_home_keep_the_vault_inside_it(
    keysafe: Cli, tmp_path: Path
) -> None:
    # Before: '?' started an SQLite URI query, so the vault went to a file named "we" beside
    # the home, and '#'/'%' broke the path.
    home = tmp_path / "we?ird#home%41 x"
    cli = Cli(home, keysafe.env | {"KEYSAFE_HOME": str(home)})
    cli.ok("init", "--json")
    cli.ok("wallet", "create", "main", "--chain", "evm", "--json")
    assert (home / DB_NAME).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [home.name]
    assert "main" in cli.ok("wallet", "list", "--json").stdout


def test_attack_a_second_serve_on_the_same_home_is_refused(vault: Cli, tmp_path: Path) -> None:
    with keysafe_server(vault.env, "--unlock", log_dir=tmp_path) as server:
        r = vault("serve", "--port", str(free_port()), timeout=60)
        assert r.exit_code != 0
        assert "ALREADY_EXISTS" in _error(r) and "already running" in r.stderr
        assert server.proc.poll() is None


def test_attack_a_row_of_invalid_utf8_is_an_integrity_error_not_internal(vault: Cli) -> None:
    with sqlite3.connect(vault.home / DB_NAME) as c:
        c.execute("UPDATE audit SET actor = CAST(x'ff00fe' AS TEXT) WHERE seq = 1")
    r = vault("audit", "--json")
    assert r.exit_code != 0
    out = _error(r)
    assert "INTEGRITY_ERROR" in out and "INTERNAL" not in out, out
