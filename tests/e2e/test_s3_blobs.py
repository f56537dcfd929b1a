"""S3 blobs through the real entry points (issue 18): `keysafe init --blobs s3://…` against
moto's S3 server, a record added by the owner and read back by an agent over HTTP, an
unreachable bucket reported as STORE_ERROR, and kill -9 during a rotation sweep."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keysafe.crypto.secret import SecretBytes
from keysafe.service import epochs
from keysafe.service.context import open_vault
from keysafe.service.models import DataClass
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF, free_port
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault
from tests.conftest import PASSPHRASE, Cli
from tests.e2e.server_fixture import KEYSAFE, add_agent, agent_headers, cli_env, keysafe_server
from tests.s3_fixture import AWS_ENV, S3Server, moto_s3

# A distinctive secret key (moto takes any): it must never be written or printed by keysafe.
AWS_CANARY = "canary-aws-secret-5f3e9d"
POLICY = """\
version: 1
rules:
  - name: profile
    allow: [data.read]
    data: [profile]
"""


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3() as server:
        yield server


def _env(home: Path) -> dict[str, str]:
    return cli_env(home) | AWS_ENV | {"AWS_SECRET_ACCESS_KEY": AWS_CANARY}


def test_init_with_blobs_then_an_agent_reads_a_record_from_the_bucket(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    home = tmp_path / "home"
    cli = Cli(home, _env(home))
    made = json.loads(
        cli.ok(
            "init", "--blobs", f"s3://{bucket}/team", "--blobs-endpoint", s3.endpoint, "--json"
        ).stdout
    )
    assert made["blobs"].startswith(f"s3://{bucket}/team")
    profile = {"name": "Ada", "city": "canary-city-4411"}
    cli.ok("data", "set", "profile", "--class", "standard", input=json.dumps(profile))
    (tmp_path / "policy.yaml").write_text(POLICY)
    token = add_agent(cli, "bot", tmp_path / "policy.yaml")
    assert json.loads(cli.ok("status", "--json").stdout)["blobs"] == made["blobs"]

    keys = [v["Key"] for v in s3.versions(bucket, f"team/{made['vault_id']}/data/1/")]
    assert len(keys) == 1 and keys[0].endswith(".v1.enc")
    db = (home / "vault.db").read_bytes()
    assert b"canary-city-4411" not in db and AWS_CANARY.encode() not in db

    with keysafe_server(_env(home), "--unlock") as server:
        r = server.client().post(
            "/v1/agent/read-data", json={"name": "profile"}, headers=agent_headers(token)
        )
        assert r.status_code == 200, r.text
        assert r.json()["value"] == profile
    assert not any(AWS_CANARY in out for out in cli.outputs)


def test_an_unreachable_bucket_is_a_store_error_with_a_next_step(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    home = tmp_path / "home"
    cli = Cli(home, _env(home))
    _cheap_vault(Home(home), bucket, s3).lock()
    with sqlite3.connect(home / "vault.db") as conn:  # the server moved away
        setting = json.loads(conn.execute("SELECT blobs FROM vault").fetchone()[0])
        setting["endpoint"] = f"http://127.0.0.1:{free_port()}"
        conn.execute("UPDATE vault SET blobs = ?", (json.dumps(setting),))
    r = cli("backup", "create", str(tmp_path / "b.ksbackup"))
    assert r.exit_code == 1, r.stdout + r.stderr
    assert "STORE_ERROR" in r.stderr or "unreachable" in r.stderr
    assert "is unreachable" in r.stderr and "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "b.ksbackup").exists()


RECORDS = 100
KILLS = 3


def _cheap_vault(home: Home, bucket: str, s3: S3Server) -> Vault:
    made, _ = init_vault(
        home,
        SecretBytes(bytearray(PASSPHRASE.encode())),
        kdf=CHEAP_KDF,
        blobs_url=f"s3://{bucket}/crash",
        blobs_endpoint=s3.endpoint,
    )
    return made


@pytest.mark.slow
def test_kill_9_during_an_s3_rotation_sweep_leaves_every_record_readable(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    home = Home(tmp_path / "home")
    with _cheap_vault(home, bucket, s3) as vault, vault.db.write() as conn:
        for i in range(RECORDS):
            value = SecretBytes(bytearray(f"record {i:05d}".encode()))
            vault.put_record(
                conn,
                kind="data",
                name=f"r{i}",
                data_class=DataClass.STANDARD,
                meta={},
                plaintext=value,
                replace=False,
            )
    env = _env(home.path)
    rng = random.Random(18)
    mid_sweep, longest = 0, 1.0
    for _ in range(KILLS * 3):
        if mid_sweep == KILLS:
            break
        started = _top_epoch(home)
        proc = subprocess.Popen(
            [KEYSAFE, "rotate", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # Kill once the new epoch is committed (the sweep has begun), at a random point of the
        # sweep: timing from the start alone misses it on a loaded machine.
        deadline = time.monotonic() + 30
        while _top_epoch(home) == started and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, longest))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        if _check(home):
            mid_sweep += 1
        else:  # the sweep finished first: a faster machine, so kill sooner next time
            longest /= 2
    assert mid_sweep == KILLS, f"only {mid_sweep} kills landed mid-sweep: the test proves little"
    done = subprocess.run([KEYSAFE, "rotate", "--json"], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert _check(home) == ()
    current = json.loads(done.stdout)["epoch"]
    left = {v["Key"].split("/")[-2] for v in s3.versions(bucket, "crash/")}
    assert left == {str(current)}, f"objects of destroyed epochs remain: {left}"


def _top_epoch(home: Home) -> int:
    with sqlite3.connect(f"{home.db_path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT max(number) FROM epochs").fetchone()[0])


def _check(home: Home) -> tuple[int, ...]:
    """Open, unlock and decrypt every record; the epochs still being swept."""
    with open_vault(home) as vault:
        with SecretBytes(bytearray(PASSPHRASE.encode())) as secret:
            vault.unlock(secret)
        opened = 0
        with vault.db.read() as conn:
            for info in vault.list_records(conn, "data"):
                with vault.open_record(conn, info) as plain:
                    assert bytes(plain.reveal()) == f"record {int(info.name[1:]):05d}".encode()
                opened += 1
        assert opened == RECORDS
        return epochs.state(vault).retired
