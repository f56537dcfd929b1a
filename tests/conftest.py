"""Shared fixtures. Black-box tests run the real `keysafe` console script in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

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
