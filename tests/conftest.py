"""Shared fixtures. Black-box tests run the real `keysafe` console script in a subprocess."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.pg import Cluster, pg_bin, postgres_cluster

PASSPHRASE = "correct horse battery staple"
HARDHAT_PHRASE = "test test test test test test test test test test test junk"
HARDHAT_ADDRESS_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

_KEYSAFE = shutil.which("keysafe", path=str(Path(sys.executable).parent)) or "keysafe"


@dataclass
class Result:
    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str


class Cli:
    """Runs `keysafe …` with KEYSAFE_HOME in a temp dir; records every output for canary greps."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.outputs: list[str] = []

    def __call__(
        self,
        *args: str,
        input: str | bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Result:
        full_env = {**self.env, **(env or {})}
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [_KEYSAFE, *args],
            input=data if data is not None else b"",
            capture_output=True,
            env=full_env,
            timeout=timeout,
        )
        out, err = proc.stdout.decode(), proc.stderr.decode()
        self.outputs += [out, err]
        return Result(args, proc.returncode, out, err)

    def ok(self, *args: str, **kw: object) -> Result:
        r = self(*args, **kw)  # type: ignore[arg-type]
        assert r.exit_code == 0, f"keysafe {' '.join(args)} failed: {r.stderr}{r.stdout}"
        return r


@pytest.fixture
def keysafe(tmp_path: Path) -> Cli:
    """A CLI bound to an empty KEYSAFE_HOME; the passphrase is in KEYSAFE_PASSPHRASE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")} | {
        "KEYSAFE_HOME": str(tmp_path / "home"),
        "KEYSAFE_PASSPHRASE": PASSPHRASE,
    }
    return Cli(tmp_path / "home", env)


@pytest.fixture
def vault(keysafe: Cli) -> Cli:
    """A CLI whose KEYSAFE_HOME already holds an initialised vault."""
    keysafe.ok("init", "--json")
    return keysafe


RunCli = Callable[..., Result]


def shared_once(
    factory: pytest.TempPathFactory, name: str, build: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any]]:
    """Build `name` once per test run, even across xdist workers (file lock); reuse it after.

    Tests never run commands on what is built here: they copy it first.
    """
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by all workers of this run
    root = base / name
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = root / "info.json"
        if not info.exists():
            shutil.rmtree(root, ignore_errors=True)  # left half-built by a failed attempt
            root.mkdir()
            info.write_text(json.dumps(build(root)))
        return root, json.loads(info.read_text())


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One real PostgreSQL per test worker (tests/pg.py); skips only when it is not installed
    (scripts/test installs Debian's `postgresql`). Its data dir is in the system temp dir, not
    pytest's: as root the cluster runs as `postgres`, which cannot enter root's 0700 basetemp."""
    if pg_bin() is None:
        pytest.skip("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def pg_module_url(pg_cluster: Cluster, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for this test module: its postgresql:// URL."""
    stem = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())
    return pg_cluster.new_database(f"m_{stem}"[:60])


@pytest.fixture
def pg_url(pg_cluster: Cluster, pg_module_url: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty schema for this one test, in the module's database: its URL, with the
    schema as the connection's search_path (as a user with one database for several things
    would write it). CREATE DATABASE costs half a second; a schema, a millisecond."""
    stem = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    schema = f"t_{stem}_{next(_DB_SERIAL)}"
    return pg_cluster.new_schema(pg_module_url, schema)


_DB_SERIAL = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Run the test on both stores: None (the SQLite file in the home), then a fresh PostgreSQL
    database's URL (KEYSAFE_DATABASE_URL)."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url
