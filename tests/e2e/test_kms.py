"""KMS providers end to end (issue 18): the real `keysafe` against a real OpenBao dev server and
moto's AWS KMS, both started here.

A KMS vault is made and unlocked with no passphrase anywhere in the environment; it signs and
reads through `keysafe serve`; with the KMS down, unlocking fails with KMS_UNAVAILABLE and a
message that says what to do, and nothing changes; a header carrying another vault's or another
key's wrapped key does not open (tests/unit/vault/test_kms.py, in process); the recovery phrase
rebuilds access with the KMS down; the KMS token appears in no output, log, audit row or database
file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from tests.conftest import Cli, Result
from tests.e2e.server_fixture import (
    R1,
    STANDARD_POLICY,
    add_agent,
    agent_headers,
    evm_tx,
    keysafe_server,
)
from tests.kms_servers import Moto, OpenBao, moto_server, openbao_server

POLICY = (
    STANDARD_POLICY
    + """\
  - name: read-profile
    allow: [data.read]
    data: [profile]
"""
)
NEW_PASSPHRASE = "kms gone, phrase back, fresh staple"
PROFILE = {"city": "Lyon", "email": "owner@example.com"}


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    with openbao_server() as server:
        yield server


@pytest.fixture(scope="module")
def aws() -> Iterator[Moto]:
    with moto_server() as server:
        yield server


def _cli(tmp_path: Path, **env: str) -> Cli:
    """A CLI on an empty home with NO passphrase anywhere: a KMS vault must not need one."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KEYSAFE_", "AWS_", "BAO_", "VAULT_"))
    }
    return Cli(tmp_path / "home", clean | {"KEYSAFE_HOME": str(tmp_path / "home")} | env)


def _json(r: Result) -> Any:
    return json.loads(r.stdout)


def _error(r: Result, code: str) -> str:
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert f"[{code}]" in r.stderr, r.stderr
    return r.stderr


def _header(home: Path) -> dict[str, Any]:
    with sqlite3.connect(home / "vault.db") as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM vault").fetchone())


def _state(home: Path) -> tuple[Any, ...]:
    """What must not change when an unlock fails: the header, the audit log, the epochs."""
    with sqlite3.connect(home / "vault.db") as db:
        return (
            db.execute("SELECT * FROM vault").fetchall(),
            db.execute("SELECT seq, hash FROM audit ORDER BY seq").fetchall(),
            db.execute("SELECT * FROM epochs").fetchall(),
            db.execute("SELECT id, version FROM records ORDER BY id").fetchall(),
        )


def _init_bao(cli: Cli, bao: OpenBao) -> dict[str, Any]:
    out: dict[str, Any] = _json(
        cli.ok("init", "--kms", "openbao", "--kms-url", bao.url, "--kms-key", bao.key, "--json")
    )
    return out


def _everything_written(cli: Cli, *logs: Path) -> str:
    """Every byte the test can see: CLI output, the home's files (database, WAL, log), logs."""
    seen = list(cli.outputs)
    for path in [*cli.home.iterdir(), *logs]:
        if path.is_file():
            seen.append(path.read_bytes().decode("latin-1"))
    return "\n".join(seen)


def _serve_sign_and_read(
    cli: Cli, address: str, bot: str, tmp_path: Path, *, relock: bool = True
) -> Path:
    """`keysafe serve --unlock` through the KMS; an agent signs and reads; the owner locks and
    unlocks again with `keysafe unlock` (a challenge, not a passphrase). Returns the server log."""
    with keysafe_server(cli.env, "--unlock", log_dir=tmp_path) as server, server.client() as c:
        r = c.post(
            "/v1/agent/sign-transaction",
            headers=agent_headers(bot),
            json={"wallet": "main", "transaction": evm_tx(10**15, to=R1)},
        )
        assert r.status_code == 200, r.text
        assert Account.recover_transaction(r.json()["signed_transaction"]) == address
        r = c.post("/v1/agent/read-data", headers=agent_headers(bot), json={"name": "profile"})
        assert r.status_code == 200, r.text
        assert r.json()["value"] == PROFILE
        if not relock:
            return server.log_path
        owner = server.cli()
        owner.env = cli.env | {"KEYSAFE_URL": server.url}
        owner.ok("lock")
        assert c.get("/v1/health").json()["unlocked"] is False
        assert "Vault unlocked" in owner.ok("unlock").stdout
        assert c.get("/v1/health").json()["unlocked"] is True
        cli.outputs += owner.outputs
        return server.log_path


def _stock(cli: Cli, tmp_path: Path) -> tuple[str, str]:
    """A wallet, a data record and agent `bot`: every one needs the vault unlocked."""
    address = _json(cli.ok("wallet", "create", "main", "--chain", "evm", "--json"))["address"]
    cli.ok("data", "set", "profile", input=json.dumps(PROFILE))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    return address, add_agent(cli, "bot", policy)


def test_openbao_vault_unlocks_signs_and_reads_with_no_passphrase(
    bao: OpenBao, tmp_path: Path
) -> None:
    cli = _cli(tmp_path, KEYSAFE_KMS_TOKEN=bao.token, KEYSAFE_KMS_URL=bao.url)
    _init_bao(cli, bao)
    head = _header(cli.home)
    assert (head["kms_kind"], head["kms_url"], head["kms_key"]) == ("openbao", bao.url, bao.key)
    assert head["kms_blob"].startswith(b"vault:v1:")
    address, bot = _stock(cli, tmp_path)
    status = _json(cli.ok("status", "--json"))
    assert status["kms"] == {"kind": "openbao", "url": bao.url, "key": bao.key}
    log = _serve_sign_and_read(cli, address, bot, tmp_path)
    # canary: the token is nowhere (database, WAL, keysafe.log, server log, every output)
    assert bao.token not in _everything_written(cli, log)
    assert _json(cli.ok("audit", "verify", "--json"))["keyed"] is True  # opened via the KMS
    refused = _error(cli("passphrase", "change"), "MALFORMED_REQUEST")
    assert "has no passphrase" in refused and "keysafe recover" in refused


def test_aws_kms_vault_unlocks_signs_and_reads_with_no_passphrase(
    aws: Moto, tmp_path: Path
) -> None:
    cli = _cli(tmp_path, **aws.env)
    cli.ok("init", "--kms", "aws-kms", "--kms-url", aws.url, "--kms-key", aws.key_id, "--json")
    assert _header(cli.home)["kms_kind"] == "aws-kms"
    address, bot = _stock(cli, tmp_path)
    assert _json(cli.ok("status", "--json"))["kms"] == {
        "kind": "aws-kms",
        "url": aws.url,
        "key": aws.key_id,
    }
    log = _serve_sign_and_read(cli, address, bot, tmp_path, relock=False)
    # the (dummy) AWS credentials are nowhere keysafe writes
    assert aws.env["AWS_SECRET_ACCESS_KEY"] not in _everything_written(cli, log)


def test_kms_down_or_refusing_unlock_fails_clearly_and_the_phrase_still_recovers(
    tmp_path: Path,
) -> None:
    with openbao_server() as bao:
        cli = _cli(tmp_path, KEYSAFE_KMS_TOKEN=bao.token, KEYSAFE_KMS_URL=bao.url)
        phrase = _init_bao(cli, bao)["recovery_phrase"]
        _json(cli.ok("wallet", "create", "main", "--chain", "evm", "--json"))
        audited = len(_state(cli.home)[1])

        # the KMS answers, but not to this token: "refused", with what to check (and audited)
        denied = _error(
            cli("wallet", "create", "w2", "--chain", "evm", env={"KEYSAFE_KMS_TOKEN": "nope"}),
            "KMS_UNAVAILABLE",
        )
        assert "refused" in denied and "token" in denied and "keysafe recover" in denied
        assert len(_state(cli.home)[1]) == audited + 1
        before = _state(cli.home)
        bao.stop()

    # the KMS is gone: "did not answer", start it or recover; nothing changed
    down = _error(cli("wallet", "create", "w2", "--chain", "evm"), "KMS_UNAVAILABLE")
    assert "did not answer" in down and "start the KMS" in down and "keysafe recover" in down
    assert "refused" not in down
    assert _state(cli.home) == before  # header, audit, epochs, records: untouched

    # the recovery phrase needs no KMS: the vault comes back as a passphrase vault
    out = cli.ok("recover", input=phrase + "\n", env={"KEYSAFE_NEW_PASSPHRASE": NEW_PASSPHRASE})
    assert "no longer uses the KMS" in out.stdout
    assert (_header(cli.home)["kms_kind"], _header(cli.home)["kms_blob"]) == (None, None)
    wallets = cli.ok("wallet", "list", "--json", env={"KEYSAFE_PASSPHRASE": NEW_PASSPHRASE})
    assert [w["name"] for w in _json(wallets)] == ["main"]
    assert bao.token not in _everything_written(cli)


def test_attack_plain_http_kms_on_another_host_is_refused_at_init(tmp_path: Path) -> None:
    cli = _cli(tmp_path, KEYSAFE_KMS_TOKEN="x")
    r = cli("init", "--kms", "openbao", "--kms-url", "http://bao.example:8200", "--kms-key", "k")
    assert "in clear" in _error(r, "MALFORMED_REQUEST")
    assert not (cli.home / "vault.db").exists()
