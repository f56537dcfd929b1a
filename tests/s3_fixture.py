"""A real S3 server for tests: moto in server mode on a free loopback port (DESIGN.md: real
components, started by the test setup, never mocked away).

    with moto_s3() as s3:                      # dummy credentials put in os.environ meanwhile
        bucket = s3.new_bucket()               # versioned
        keysafe init --blobs s3://{bucket}/ks --blobs-endpoint {s3.endpoint}
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from keysafe.testing import free_port

MOTO = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self) -> Any:
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint)

    def new_bucket(self, *, versioned: bool = True) -> str:
        name = f"ks-{secrets.token_hex(6)}"
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        if versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def versions(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        """Every object version and delete marker under `prefix` (each with `Marker` set)."""
        out: list[dict[str, Any]] = []
        pages = self.client().get_paginator("list_object_versions")
        for page in pages.paginate(Bucket=bucket, Prefix=prefix):
            out += [v | {"Marker": False} for v in page.get("Versions", [])]
            out += [m | {"Marker": True} for m in page.get("DeleteMarkers", [])]
        return out


@contextmanager
def moto_s3() -> Iterator[S3Server]:
    """Start `moto_server -p FREE`, with dummy AWS credentials in os.environ; kill it after."""
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    port = free_port()
    proc = subprocess.Popen(
        [MOTO, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | AWS_ENV,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
