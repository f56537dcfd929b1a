"""Which shares each keysafe process a test started loaded (see sitecustomize.py here)."""

from __future__ import annotations

import os
from pathlib import Path

DIR = Path(__file__).resolve().parent
LOG_VAR = "KS_TEST_SHARE_LOG"  # not KEYSAFE_*: cli_env passes it through


def audited(env: dict[str, str], log: Path) -> dict[str, str]:
    """`env` for a keysafe process whose share loads are recorded in `log`."""
    path = os.pathsep.join(filter(None, (str(DIR), env.get("PYTHONPATH"))))
    return env | {"PYTHONPATH": path, LOG_VAR: str(log)}


def two_shares_in_one_process(log: Path) -> tuple[set[str], dict[tuple[str, str, str], set[int]]]:
    """The commands seen, and every (process, command, wallet key) that loaded two or more
    parties' shares of that wallet."""
    loads: dict[tuple[str, str, str], set[int]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        process, command, group_key, identifier = line.split("\t")
        loads.setdefault((process, command, group_key), set()).add(int(identifier))
    commands = {command for _, command, _ in loads}
    return commands, {key: parties for key, parties in loads.items() if len(parties) > 1}


EXPECTED = (
    "keysafe serve",
    "keysafe mcp",
    "keysafe wallet sign-message",
    "keysafe wallet recover-sign",
    "party.py",
    "keysafe wallet create",
    "keysafe agent threshold",
)


def assert_one_share_per_process(log: Path) -> None:
    """Every process in `log` made or loaded at most one share of a wallet (keygens and
    reshares included); every kind of process that loads shares was seen, so the check is not
    vacuous."""
    commands, two = two_shares_in_one_process(log)
    for expected in EXPECTED:
        assert any(c.startswith(expected) for c in commands), (expected, commands)
    assert not two, two
