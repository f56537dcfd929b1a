"""The README's "PostgreSQL, S3 and a KMS" lines, end to end with the real parts: one PostgreSQL
database, moto's S3 server and an OpenBao dev server, started here. `keysafe init` puts the
vault in PostgreSQL, its record ciphertext in S3 and its key under OpenBao's transit key; two
`keysafe serve` (each its own home) unlock through OpenBao with no passphrase anywhere, and an
agent reads and signs through either; the database rows hold pointers, not ciphertext."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from eth_account import Account

from tests.conftest import Cli
from tests.e2e.server_fixture import (
    R1,
    STANDARD_POLICY,
    add_agent,
    agent_headers,
    evm_tx,
    keysafe_server,
)
from tests.kms_servers import OpenBao, openbao_server
from tests.s3_fixture import AWS_ENV, S3Server, moto_s3

POLICY = STANDARD_POLICY + "  - name: read-profile\n    allow: [data.read]\n    data: [profile]\n"
PROFILE = {"city": "Lyon"}


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    with openbao_server() as server:
        yield server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3() as server:
        yield server


def test_a_vault_on_postgresql_with_s3_blobs_and_openbao_serves_from_two_servers(
    pg_url: str, s3: S3Server, bao: OpenBao, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith(("KEYSAFE_", "BAO_", "VAULT_"))}
        | AWS_ENV
        | {
            "KEYSAFE_DATABASE_URL": pg_url,
            "KEYSAFE_KMS_TOKEN": bao.token,
            "KEYSAFE_KMS_URL": bao.url,
        }
    )

    def cli(home: str) -> Cli:
        return Cli(tmp_path / home, env | {"KEYSAFE_HOME": str(tmp_path / home)})

    owner = cli("owner")
    owner.ok(
        "init",
        "--kms",
        "openbao",
        "--kms-url",
        bao.url,
        "--kms-key",
        bao.key,
        "--blobs",
        f"s3://{bucket}/keysafe",
        "--blobs-endpoint",
        s3.endpoint,
        "--json",
    )
    address = json.loads(owner.ok("wallet", "create", "main", "--chain", "evm", "--json").stdout)
    owner.ok("data", "set", "profile", input=json.dumps(PROFILE))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    bot = add_agent(owner, "bot", policy)
    status = json.loads(owner.ok("status", "--json").stdout)
    assert status["kms"]["kind"] == "openbao" and bucket in status["blobs"]

    with psycopg.connect(pg_url.split("?")[0], options=_search_path(pg_url)) as conn:
        rows = conn.execute("SELECT ciphertext, blob_key, blob_sha256 FROM records").fetchall()
    assert rows and all(ct == b"" and key and digest for ct, key, digest in rows)
    assert len(s3.versions(bucket)) == len(rows)

    with (
        keysafe_server(cli("a").env, "--unlock", log_dir=tmp_path) as a,
        keysafe_server(cli("b").env, "--unlock", log_dir=tmp_path) as b,
    ):
        for server, nonce in ((a, 0), (b, 1)):
            with server.client() as c:
                r = c.post(
                    "/v1/agent/read-data", headers=agent_headers(bot), json={"name": "profile"}
                )
                assert r.status_code == 200 and r.json()["value"] == PROFILE, r.text
                r = c.post(
                    "/v1/agent/sign-transaction",
                    headers=agent_headers(bot),
                    json={"wallet": "main", "transaction": evm_tx(10**15, to=R1, nonce=nonce)},
                )
                assert r.status_code == 200, r.text
                signed = r.json()["signed_transaction"]
                assert Account.recover_transaction(signed) == address["address"]
    assert "passphrase" not in " ".join(k.lower() for k in env)


def _search_path(url: str) -> str:
    return "-c search_path=" + url.split("search_path%3D")[1] if "search_path" in url else ""
