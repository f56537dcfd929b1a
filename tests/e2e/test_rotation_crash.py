"""kill -9 during an epoch rotation (issue 18, acceptance 2): `keysafe rotate` is killed 20 times
at random points of its sweep, and 20 times inside its epoch destroy; after each kill the vault
opens, every record decrypts and `audit verify` passes; then a rotation run to its end leaves
one epoch."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from keysafe.crypto.secret import SecretBytes
from keysafe.service import audit, data, epochs
from keysafe.service.context import open_vault
from keysafe.service.models import DataClass
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from tests.conftest import PASSPHRASE
from tests.e2e.mcp_fixture import agent_side_env
from tests.e2e.server_fixture import KEYSAFE

pytestmark = pytest.mark.slow

RECORDS = 1500
KILLS = 20
KINDS = ("data", "wallet", "credential", "hd_seed")


def _check(home: Home, records: int = RECORDS) -> tuple[int, tuple[int, ...]]:
    """Open, unlock, decrypt every record, verify the audit chain; the current epoch and those
    still being swept."""
    with open_vault(home) as vault:
        with SecretBytes(bytearray(PASSPHRASE.encode())) as secret:
            vault.unlock(secret)
        opened = 0
        with vault.db.read() as conn:
            for kind in KINDS:
                for info in vault.list_records(conn, kind):
                    with vault.open_record(conn, info) as plain:
                        assert len(plain.reveal()) > 0
                    opened += 1
        assert opened >= records
        report = audit.verify(vault)
        assert report.ok, report.problem
        state = epochs.state(vault)
        return state.current, state.retired


def _wait_for_sweep(home: Home, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    uri = f"{home.db_path.resolve().as_uri()}?mode=ro"
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=0.05)) as conn:
                if conn.execute("SELECT count(*) FROM epochs").fetchone()[0] >= 2:
                    return
        except sqlite3.OperationalError:
            pass  # busy: the rotation holds the write lock
        time.sleep(0.02)


def test_kill_9_during_rotations_leaves_a_vault_that_opens_whole(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    vault, _ = init_vault(
        home,
        SecretBytes(bytearray(PASSPHRASE.encode())),
        kdf=CHEAP_KDF,
    )
    with vault:
        for i in range(RECORDS):
            value = SecretBytes(bytearray(f"record {i:05d}".encode()))
            data.set_data(vault, f"r{i}", value, data_class=DataClass.STANDARD)
    env = agent_side_env(tmp_path / "unused") | {
        "KEYSAFE_HOME": str(home.path),
        "KEYSAFE_PASSPHRASE": PASSPHRASE,
    }
    rng = random.Random(18)
    mid_sweep = 0
    for i in range(KILLS):
        proc = subprocess.Popen(
            [KEYSAFE, "rotate", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if i % 2 == 0:
            # Every other kill waits until the sweep is seen under way (two epochs in the
            # file), then lands a moment into it: a loaded machine (slow start-up) cannot push
            # them all before or after the sweep.
            _wait_for_sweep(home, proc)
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            time.sleep(rng.uniform(0.6, 1.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        _, unfinished = _check(home)
        mid_sweep += bool(unfinished)
    assert mid_sweep >= 5, f"only {mid_sweep} kills landed mid-sweep: the test proves little"
    done = subprocess.run([KEYSAFE, "rotate", "--json"], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    current, unfinished = _check(home)
    assert json.loads(done.stdout)["epoch"] == current and unfinished == ()
    with open_vault(home) as vault:
        assert epochs.state(vault).retired == ()


# The child rotates, and SIGKILLs itself at one point of the epoch destroy: inside its
# transaction (after an epoch key row is gone, before the commit), or after the commit and
# before the WAL checkpoint. A timer cannot land there reliably (the destroy takes
# milliseconds), so the kill is placed by wrapping the two steps; what runs is keysafe's own
# code, in its own process, killed as the OS would kill it.
_DIE_IN_DESTROY = """
import os, signal, sys
from pathlib import Path
from keysafe.crypto.secret import SecretBytes
from keysafe.service import epochs
from keysafe.service.context import open_vault
from keysafe.store.db import Database
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

where = sys.argv[2]
def die(*_a, **_k):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "in-transaction":
    real = Vault.destroy_epoch
    def destroy(self, conn, number):
        real(self, conn, number)
        die()
    Vault.destroy_epoch = destroy
else:
    Database.checkpoint = die
vault = open_vault(Home(Path(sys.argv[1])))
vault.unlock(SecretBytes(bytearray(os.environ["KEYSAFE_PASSPHRASE"].encode())))
epochs.rotate(vault, reason="owner")
sys.exit(3)  # not killed: the destroy never ran
"""


def test_kill_9_during_epoch_destroys_leaves_a_vault_that_opens_whole(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    vault, _ = init_vault(
        home,
        SecretBytes(bytearray(PASSPHRASE.encode())),
        kdf=CHEAP_KDF,
    )
    with vault:
        for i in range(RECORDS // 10):
            value = SecretBytes(bytearray(f"record {i:05d}".encode()))
            data.set_data(vault, f"r{i}", value, data_class=DataClass.STANDARD)
    env = agent_side_env(tmp_path / "unused") | {"KEYSAFE_PASSPHRASE": PASSPHRASE}
    seen_retired = 0
    for i in range(KILLS):
        where = "in-transaction" if i % 2 == 0 else "before-checkpoint"
        child = subprocess.run(
            [sys.executable, "-c", _DIE_IN_DESTROY, str(home.path), where],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
        current, retired = _check(home, RECORDS // 10)
        # Killed inside the transaction: nothing of the destroy happened, the old epoch waits.
        seen_retired += bool(retired)
        assert bool(retired) == (where == "in-transaction"), (i, current, retired)
    assert seen_retired == KILLS // 2
    done = subprocess.run(
        [KEYSAFE, "rotate", "--json"],
        env=env | {"KEYSAFE_HOME": str(home.path)},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    current, retired = _check(home, RECORDS // 10)
    assert retired == () and json.loads(done.stdout)["epoch"] == current
