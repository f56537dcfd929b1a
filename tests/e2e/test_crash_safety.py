"""Crash safety: SIGKILL a loop of `credential add` calls mid-way, keysafe process and all.

A bash driver runs `keysafe credential add cred-$i` for i = 1, 2, … and prints i after each add
that exited 0. The test kills the driver's whole process group (so the in-flight keysafe dies
too, wherever it was: Argon2, the write transaction, the commit) a random moment after a few
successes. Afterwards the vault opens, its audit chain verifies, every acknowledged add is
there, and records and audit entries agree one to one (a record never lands without its entry).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import Cli

KEYSAFE = shutil.which("keysafe", path=str(Path(sys.executable).parent)) or "keysafe"
DRIVER = r"""
i=0
while [ "$i" -lt 40 ]; do
  i=$((i + 1))
  if printf 'secret-%s' "$i" | "$KEYSAFE_BIN" credential add "cred-$i" \
       --host api.example.com >/dev/null 2>&1; then
    echo "$i"
  fi
done
"""


def _acknowledged(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


@pytest.mark.parametrize(
    ("successes", "window"),
    [
        pytest.param(1, (0.0, 0.4), id="early-in-next-add"),
        pytest.param(2, (0.4, 0.8), id="mid-next-add"),
        pytest.param(3, (0.8, 1.3), id="late-in-next-add"),
    ],
)
def test_credential_add_loop_when_sigkilled_keeps_every_acknowledged_add_and_a_valid_chain(
    vault: Cli, tmp_path: Path, successes: int, window: tuple[float, float]
) -> None:
    acks = tmp_path / "acks.txt"
    delay = random.uniform(*window)
    with acks.open("wb") as out:
        driver = subprocess.Popen(
            ["bash", "-c", DRIVER],
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=vault.env | {"KEYSAFE_BIN": KEYSAFE},
            start_new_session=True,  # its own process group, so one killpg reaches keysafe too
        )
    try:
        deadline = time.monotonic() + 30
        while len(_acknowledged(acks)) < successes:
            assert driver.poll() is None, "the driver stopped early"
            assert time.monotonic() < deadline, "no progress from the credential add loop"
            time.sleep(0.02)
        time.sleep(delay)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
    acked = _acknowledged(acks)
    context = f"killed {delay:.2f}s after ack #{successes}; acknowledged {acked}"

    listed = vault("credential", "list", "--json")
    verify = vault("audit", "verify", "--json")

    assert listed.exit_code == 0, f"{context}: {listed.stderr}"
    present = {c["name"] for c in json.loads(listed.stdout)}
    assert {f"cred-{i}" for i in acked} <= present, context
    last = max(acked)
    # Only the add in flight at the kill may have landed without its acknowledgement.
    assert present in ({f"cred-{i}" for i in range(1, n + 1)} for n in (last, last + 1)), context
    assert verify.exit_code == 0, f"{context}: {verify.stdout}{verify.stderr}"
    assert json.loads(verify.stdout)["ok"] is True, context
    with closing(sqlite3.connect(vault.home / "vault.db")) as c:
        audited = {
            t.removeprefix("credential:")
            for (t,) in c.execute("SELECT target FROM audit WHERE action='credential.add'")
        }
    assert audited == present, f"{context}: records and audit entries disagree"
