"""Fail closed: when the audit entry cannot be written, the action does not happen.

A SQLite trigger makes every INSERT into `audit` abort, as a full or failing disk would. Each
write command must then exit 1 with AUDIT_FAILED and leave records, audit chain and files as
they were.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli

EVM_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
NO_AUDIT = (
    "CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk says no'); END;"
)


def _sql(home: Path, statement: str) -> None:
    with closing(sqlite3.connect(home / "vault.db")) as c:
        c.execute(statement)
        c.commit()


def _state(home: Path) -> dict[str, Any]:
    with closing(sqlite3.connect(home / "vault.db")) as c:
        return {
            "records": c.execute("SELECT kind, name, version FROM records ORDER BY id").fetchall(),
            "audit": c.execute("SELECT seq, hash FROM audit ORDER BY seq").fetchall(),
            "head": c.execute("SELECT audit_head_seq, audit_head_hash FROM vault").fetchall(),
        }


def _assert_audit_failed(r: Any, action: str) -> None:
    assert r.exit_code == 1, f"the action ran without its audit entry: {r.stdout}{r.stderr}"
    assert r.stderr.startswith("Error [AUDIT_FAILED]: "), r.stderr
    assert f"'{action}' was not carried out" in r.stderr, r.stderr


def test_credential_add_when_audit_insert_fails_exits_audit_failed_and_stores_nothing(
    vault: Cli,
) -> None:
    before = _state(vault.home)
    _sql(vault.home, NO_AUDIT)

    r = vault("credential", "add", "github", "--host", "api.github.com", input="ghp_x")

    _assert_audit_failed(r, "credential.add")
    _sql(vault.home, "DROP TRIGGER no_audit")
    listed = json.loads(vault.ok("credential", "list", "--json").stdout)
    assert listed == []
    assert _state(vault.home) == before


@pytest.mark.parametrize(
    ("args", "stdin", "action"),
    [
        pytest.param(("data", "set", "profile"), '{"email":"a@b.c"}', "data.set", id="data-set"),
        pytest.param(
            ("wallet", "create", "w1", "--chain", "evm"), None, "wallet.create", id="wallet-create"
        ),
        pytest.param(
            ("wallet", "import", "hot", "--chain", "evm"),
            EVM_KEY,
            "wallet.import",
            id="wallet-import",
        ),
        pytest.param(("backup", "create", "{backup}"), None, "backup.create", id="backup-create"),
    ],
)
def test_write_command_when_audit_insert_fails_changes_nothing(
    vault: Cli, tmp_path: Path, args: tuple[str, ...], stdin: str | None, action: str
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [a.format(backup=out_dir / "vault.backup") for a in args]
    before = _state(vault.home)
    _sql(vault.home, NO_AUDIT)

    r = vault(*argv, input=stdin)

    _assert_audit_failed(r, action)
    _sql(vault.home, "DROP TRIGGER no_audit")
    assert _state(vault.home) == before
    assert list(out_dir.iterdir()) == [], "a backup file was left although it was not audited"
