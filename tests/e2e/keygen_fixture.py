"""Create a 2-of-3 wallet as three OS processes: `keysafe serve` (the vault's party, already
running), the owner's `keysafe wallet create --threshold 2-of-3` (the recovery party) and the
agent's `keysafe agent threshold join` (the agent's party), which gets the join code the owner's
CLI wrote to a file, as a script on the owner's side would hand it over. Reshares run the same
way (`keysafe wallet refresh --with …`)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import Cli
from tests.e2e.server_fixture import KEYSAFE


@dataclass
class Created:
    owner: dict[str, Any]  # the owner's `--json`
    agent: dict[str, Any]  # the agent's `--json`
    owner_stderr: str
    agent_stderr: str


def create_apart(
    owner: Cli,
    name: str,
    chain: str,
    agent: str,
    *,
    recovery_file: Path,
    share_file: Path,
    recovery_passphrase: str,
    agent_env: dict[str, str],
    timeout: float = 120,
) -> Created:
    """Run the owner's create and the agent's join side by side; both must succeed."""
    args = [
        "wallet",
        "create",
        name,
        "--chain",
        chain,
        "--threshold",
        "2-of-3",
        "--agent",
        agent,
        "--recovery-file",
        str(recovery_file),
    ]
    return run_apart(
        owner,
        args,
        share_file=share_file,
        recovery_passphrase=recovery_passphrase,
        agent_env=agent_env,
        timeout=timeout,
    )


def reshare_apart(
    owner: Cli,
    name: str,
    with_parties: str,
    *,
    recovery_file: Path,
    share_file: Path,
    recovery_passphrase: str,
    agent_env: dict[str, str],
    timeout: float = 120,
) -> Created:
    """`keysafe wallet refresh NAME --with …` and the agent's join, side by side."""
    args = [
        "wallet",
        "refresh",
        name,
        "--with",
        with_parties,
        "--recovery-file",
        str(recovery_file),
    ]
    return run_apart(
        owner,
        args,
        share_file=share_file,
        recovery_passphrase=recovery_passphrase,
        agent_env=agent_env,
        timeout=timeout,
    )


def run_apart(
    owner: Cli,
    args: list[str],
    *,
    share_file: Path,
    recovery_passphrase: str,
    agent_env: dict[str, str],
    timeout: float = 120,
) -> Created:
    """The owner's ceremony command (`args`, given --join-code-file and --json here) in the
    background; the agent's `keysafe agent threshold join` once the code is written."""
    code_file = share_file.with_name(f".{share_file.name}.join-code")
    code_file.unlink(missing_ok=True)
    full = [KEYSAFE, *args, "--join-code-file", str(code_file), "--json"]
    env = owner.env | {"KEYSAFE_RECOVERY_PASSPHRASE": recovery_passphrase}
    proc = subprocess.Popen(full, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not code_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate(timeout=10)
                raise AssertionError(f"the owner's command opened no ceremony: {err!r}{out!r}")
            time.sleep(0.05)
        code = code_file.read_text(encoding="utf-8")
        joined = subprocess.run(
            [KEYSAFE, "agent", "threshold", "join", "--share-file", str(share_file), "--json"],
            env=agent_env | {"KEYSAFE_JOIN_CODE": code},
            capture_output=True,
            timeout=timeout,
        )
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    agent_out, agent_err = joined.stdout.decode(), joined.stderr.decode()
    owner.outputs += [out.decode(), err.decode(), agent_out, agent_err]
    assert proc.returncode == 0, f"owner's {args[:2]} failed: {err.decode()}{out.decode()}"
    assert joined.returncode == 0, f"agent's join failed: {agent_err}{agent_out}"
    code_file.unlink()
    return Created(json.loads(out), json.loads(agent_out), err.decode(), agent_err)


def run_owner_only(
    owner: Cli, args: list[str], *, recovery_passphrase: str, timeout: float = 120
) -> dict[str, Any]:
    """The owner's ceremony command alone (`--json` added): the agent's host joins by itself
    (`keysafe mcp` with the join key)."""
    env = owner.env | {"KEYSAFE_RECOVERY_PASSPHRASE": recovery_passphrase}
    proc = subprocess.run([KEYSAFE, *args, "--json"], env=env, capture_output=True, timeout=timeout)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    owner.outputs += [out, err]
    assert proc.returncode == 0, f"owner's {args[:2]} failed: {err}{out}"
    made: dict[str, Any] = json.loads(out)
    return made
