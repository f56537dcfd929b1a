"""A real PostgreSQL for the tests: Debian's binaries, a throwaway cluster in a temp dir.

    with postgres_cluster(tmp) as cluster:
        url = cluster.new_database("ledger")    # postgresql://keysafe@127.0.0.1:PORT/ledger

The cluster listens on loopback at a free port (and on a Unix socket in its own directory), with
`trust` authentication for the one user `keysafe`. For tests durability is off (fsync,
synchronous_commit, full_page_writes): a test cluster is thrown away, and the tests check
behaviour, not the disk. The benchmarks ask for `durable=True`: PostgreSQL's defaults, so a commit
waits for its WAL flush as SQLite's synchronous=FULL waits for its fsync.
PostgreSQL refuses to run as root, so as root the binaries run as the `postgres` user (runuser).
`pg_bin()` is None when the binaries are not installed (the fixtures then skip, saying so).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from keysafe.testing import free_port, wait_until

USER = "keysafe"
_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def pg_bin() -> Path | None:
    """Where `initdb`, `pg_ctl` and `postgres` are (the newest installed major), or None."""
    for candidate in _CANDIDATES:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_owner(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; Debian's package makes the `postgres` user.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str]) -> None:
    done = subprocess.run(_as_owner(argv), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")


@dataclass(frozen=True)
class Cluster:
    """A running test cluster."""

    port: int
    socket_dir: Path

    def accepts(self) -> bool:
        """A connection to the cluster succeeds now."""
        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def url(self, database: str) -> str:
        """The URL a user would put in KEYSAFE_DATABASE_URL."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        """Create an empty database `name` (dropped first if a rerun left it); its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def new_schema(self, database_url: str, schema: str) -> str:
        """Create the schema `schema` in the database at `database_url`; the URL that makes it
        the connection's search_path (so keysafe's tables are made and found there)."""
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return f"{database_url}?options=-csearch_path%3D{schema}"


@contextmanager
def postgres_cluster(root: Path | None = None, *, durable: bool = False) -> Iterator[Cluster]:
    """initdb, start, yield, stop (immediate shutdown) and remove the cluster."""
    binaries = pg_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    base = Path(tempfile.mkdtemp(prefix="keysafe-pg-", dir=root))
    os.chmod(base, 0o755)  # the postgres user must reach its data dir inside
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    _run(
        [
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ]
    )
    port = free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} "
        "-c max_connections=200"
    )
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    log = base / "server.log"
    if os.geteuid() == 0:
        log.touch()
        shutil.chown(log, "postgres")
    _run(
        [
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "start",
        ]
    )
    cluster = Cluster(port, sockets)
    try:
        # pg_ctl -w has seen the server ready; wait until a client connects over loopback too.
        if not wait_until(cluster.accepts, time.monotonic() + 30, every=0.1):
            raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text()}")
        yield cluster
    finally:
        subprocess.run(
            _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)
