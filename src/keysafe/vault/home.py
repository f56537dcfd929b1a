"""Where a vault lives on disk, and the permission rules for it.

`KEYSAFE_HOME` (default `~/.keysafe`) is a directory of mode 0700; every file in it is 0600. A
vault whose directory or files are readable by group or others refuses to open: the ciphertext is
safe, but throttling state, metadata and the audit log are not meant for other local users.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from keysafe.errors import NotInitializedError, UnsafePermissionsError

DB_NAME = "vault.db"
LOG_NAME = "keysafe.log"


@dataclass(frozen=True, slots=True)
class Home:
    path: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Home:
        env = dict(os.environ) if env is None else env
        raw = env.get("KEYSAFE_HOME") or str(Path.home() / ".keysafe")
        return cls(Path(raw).expanduser().absolute())

    @property
    def db_path(self) -> Path:
        return self.path / DB_NAME

    @property
    def log_path(self) -> Path:
        return self.path / LOG_NAME

    def exists(self) -> bool:
        """Is there a vault here? An interrupted init's empty database does not count."""
        from keysafe.store.db import probe

        return probe(self.db_path) == "vault"

    def clear_unfinished(self) -> None:
        """Remove a database an interrupted init left behind: it holds no vault, only schema."""
        from keysafe.store.db import probe

        if probe(self.db_path) in ("empty", "unfinished"):
            for suffix in ("", "-wal", "-shm"):
                self.db_path.with_name(self.db_path.name + suffix).unlink(missing_ok=True)

    def is_empty(self) -> bool:
        return not self.path.exists() or not any(self.path.iterdir())

    def create(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)

    def require(self) -> None:
        if not self.exists():
            leftover = self.db_path.exists()
            raise NotInitializedError(
                f"There is no vault in {self.path}"
                + (
                    " (only an empty database an interrupted init left behind)."
                    if leftover
                    else "."
                ),
                next_step=(
                    "run `keysafe init` to create one, `keysafe recover` to rebuild it from your "
                    "recovery phrase, or set KEYSAFE_HOME to where your vault is."
                ),
                home=str(self.path),
            )
        self.check_permissions()

    def check_permissions(self) -> None:
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            raise UnsafePermissionsError(
                f"The vault directory {self.path} is open to other users (mode {mode:04o}).",
                next_step=f"run `chmod 700 {self.path}` and retry.",
                home=str(self.path),
            )
        for child in self.path.iterdir():
            if not child.is_file():
                continue
            cmode = stat.S_IMODE(child.stat().st_mode)
            if cmode & 0o077:
                raise UnsafePermissionsError(
                    f"The vault file {child} is readable by other users (mode {cmode:04o}).",
                    next_step=f"run `chmod 600 {child}` and retry.",
                    home=str(self.path),
                )
