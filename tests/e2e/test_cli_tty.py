"""The owner at a real terminal (a pseudo-terminal, stdlib `pty`: what pexpect drives) with a
secret piped on stdin: the passphrase is asked on the terminal, not read from the pipe, and
neither secret is echoed (issue 14, item 9: "no terminal to ask on" before)."""

from __future__ import annotations

import json
import os
import pty
import select
import shlex
import signal
import time

from tests.conftest import PASSPHRASE, Cli
from tests.e2e.server_fixture import KEYSAFE

TOKEN = "ghp_canary0123456789abcdefTTYtest"


def _in_pty(command: str, env: dict[str, str], answers: list[tuple[str, str]]) -> tuple[int, str]:
    """Run `bash -c command` with a pty as its terminal; answer each prompt as it appears."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvpe("bash", ["bash", "-c", command], env)
    seen, pending, deadline = b"", list(answers), time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if pending and pending[0][0].encode() in seen:
                os.write(fd, pending.pop(0)[1].encode() + b"\n")
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"timed out; the terminal showed: {seen.decode(errors='replace')}")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_credential_add_with_piped_secret_asks_the_passphrase_on_the_terminal(vault: Cli) -> None:
    env = {k: v for k, v in vault.env.items() if k != "KEYSAFE_PASSPHRASE"}
    env["TOKEN"] = TOKEN
    code, screen = _in_pty(
        f'printf %s "$TOKEN" | {shlex.quote(KEYSAFE)} credential add gh --host api.github.com '
        "--bearer",
        env,
        [("Vault passphrase:", PASSPHRASE)],
    )
    assert code == 0, screen
    assert "Vault passphrase:" in screen and "no terminal" not in screen
    assert PASSPHRASE not in screen and TOKEN not in screen  # nothing echoed
    listed = json.loads(vault.ok("credential", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["gh"]
