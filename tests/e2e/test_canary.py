"""Canary tests: secrets stored through the CLI never appear outside their ciphertext.

A full session plants fresh random canaries (a credential secret, a data value, an imported
wallet key, the vault passphrase itself and a wrong passphrase), then greps for each one as raw
bytes, hex and Base64 (all three alignments, standard and URL-safe) in: every stdout and stderr,
the log file, every raw audit column, the raw bytes of the SQLite database with its -wal and -shm
files, and the backup file.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import Cli

HOST = "api.example.com"


def _b64_cores(secret: bytes) -> Iterator[bytes]:
    """The part of base64(x + secret + y) that is the same for any x and y, at each alignment."""
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret)
        start = -(-8 * shift // 6)  # first character built only from the secret's bits
        core = encoded[start:-4]
        yield core
        yield core.translate(bytes.maketrans(b"+/", b"-_"))


def _forms(secret: bytes) -> dict[str, bytes]:
    forms = {"raw": secret, "hex": secret.hex().encode(), "HEX": secret.hex().upper().encode()}
    for i, core in enumerate(_b64_cores(secret)):
        forms[f"base64#{i}"] = core
    return forms


def _leaks(canaries: dict[str, bytes], where: str, blob: bytes) -> list[str]:
    found = []
    for label, secret in canaries.items():
        for form, needle in _forms(secret).items():
            if needle in blob:
                found.append(f"{label} as {form} in {where}")
    return found


@pytest.fixture
def canaries() -> dict[str, bytes]:
    key = secrets.token_bytes(31)  # a valid secp256k1 scalar: 0 < k < n
    return {
        "credential secret": f"ghp_canaryCRED{secrets.token_hex(16)}".encode(),
        "data value": f"canaryDATA-{secrets.token_hex(16)}".encode(),
        "wallet key (text)": (b"01" + key.hex().encode()),
        "wallet key (bytes)": b"\x01" + key,
        "passphrase": f"canary pass {secrets.token_hex(12)}".encode(),
        "wrong passphrase": f"canary wrong {secrets.token_hex(12)}".encode(),
        "malformed wallet key": f"0x{secrets.token_hex(31)}f".encode(),
    }


def test_full_session_when_canaries_stored_never_shows_them_anywhere(
    keysafe: Cli, canaries: dict[str, bytes], tmp_path: Path
) -> None:
    cli, home = keysafe, keysafe.home
    cli.env["KEYSAFE_PASSPHRASE"] = canaries["passphrase"].decode()
    secret = canaries["credential secret"]
    profile = json.dumps({"ssn": canaries["data value"].decode(), "city": "Lyon"}).encode()
    backup = tmp_path / "session.backup"

    cli.ok("init", "--json")
    # Hold a connection open so the -wal file outlives each command and can be grepped too.
    with closing(sqlite3.connect(home / "vault.db")) as watcher:
        watcher.execute("SELECT count(*) FROM vault").fetchone()
        cli.ok("credential", "add", "github", "--host", HOST, "--bearer", input=secret)
        dup = cli("credential", "add", "github", "--host", HOST, input=secret)
        bad_host = cli("credential", "add", "other", "--host", "https://x/y", input=secret)
        cli.ok("data", "set", "profile", "--class", "sensitive", input=profile)
        cli.ok("wallet", "import", "hot", "--chain", "evm", input=canaries["wallet key (text)"])
        bad_key = cli(
            "wallet", "import", "bad", "--chain", "evm", input=canaries["malformed wallet key"]
        )
        for listing in (
            ("credential", "list"),
            ("credential", "list", "--json"),
            ("data", "list", "--json"),
            ("wallet", "list", "--json"),
            ("status", "--json"),
            ("audit",),
            ("audit", "--json"),
            ("audit", "verify"),
            ("backup", "create", str(backup), "--json"),
        ):
            cli.ok(*listing)
        wrong = cli(
            "credential",
            "add",
            "late",
            "--host",
            HOST,
            input=secret,
            env={"KEYSAFE_PASSPHRASE": canaries["wrong passphrase"].decode()},
        )
        audit_rows = watcher.execute("SELECT * FROM audit ORDER BY seq").fetchall()
        files_live = {p.name: p.read_bytes() for p in sorted(home.iterdir()) if p.is_file()}

    assert "Error [ALREADY_EXISTS]" in dup.stderr
    assert "Error [MALFORMED_REQUEST]" in bad_host.stderr
    assert "Error [MALFORMED_REQUEST]" in bad_key.stderr
    assert "Error [WRONG_PASSPHRASE]" in wrong.stderr
    assert "vault.db-wal" in files_live, "the -wal file was not kept for inspection"
    assert len(audit_rows) >= 5
    files_after = {p.name: p.read_bytes() for p in sorted(home.iterdir()) if p.is_file()}

    leaks: list[str] = []
    for i, text in enumerate(cli.outputs):
        leaks += _leaks(canaries, f"output #{i}", text.encode())
    for row in audit_rows:
        leaks += _leaks(canaries, f"audit row {row[0]}", repr(row).encode())
    for name, blob in files_live.items():
        leaks += _leaks(canaries, f"{name} (while in use)", blob)
    for name, blob in files_after.items():
        leaks += _leaks(canaries, name, blob)
    leaks += _leaks(canaries, "backup file", backup.read_bytes())
    assert "keysafe.log" in files_after
    assert not leaks, leaks


def test_credential_add_when_two_credentials_share_a_secret_audit_rows_do_not_link_them(
    vault: Cli,
) -> None:
    shared = f"canary-shared-{secrets.token_hex(16)}".encode()
    vault.ok("credential", "add", "first", "--host", "a.example.com", input=shared)
    vault.ok("credential", "add", "second", "--host", "a.example.com", input=shared)

    with closing(sqlite3.connect(vault.home / "vault.db")) as c:
        rows = c.execute(
            "SELECT details FROM audit WHERE action='credential.add' ORDER BY seq"
        ).fetchall()
    first, second = (json.loads(r[0]) for r in rows)
    common = {k for k, v in first.items() if k not in ("hosts", "version") and second.get(k) == v}

    assert not common, f"audit details repeat a secret-derived value: {common}"
