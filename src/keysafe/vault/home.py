"""Where a vault lives on disk, and the permission rules for it.

`KEYSAFE_HOME` (default `~/.keysafe`) is a directory of mode 0700; every file in it is 0600. A
vault whose directory or files are readable by group or others refuses to open: the ciphertext is
safe, but throttling state, metadata and the audit log are not meant for other local users.

With `KEYSAFE_DATABASE_URL` set (PostgreSQL), the vault's rows live in that database and the home
keeps only this machine's files: the server lock (which names the running server's URL), the log.
Each `keysafe serve` on a shared database has a home of its own (docs/postgresql.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from keysafe.errors import AlreadyExistsError, NotInitializedError, UnsafePermissionsError
from keysafe.store.probe import database_url as parse_database_url
from keysafe.store.probe import probe, probe_url, redacted

DB_NAME = "vault.db"
LOG_NAME = "keysafe.log"
SERVE_LOCK_NAME = "serve.lock"


@dataclass(frozen=True, slots=True)
class Home:
    path: Path
    # KEYSAFE_DATABASE_URL as given (None: the SQLite file in `path`). Never logged as it is: it
    # may hold a password (`where` redacts it).
    database_url: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Home:
        env = dict(os.environ) if env is None else env
        raw = env.get("KEYSAFE_HOME") or str(Path.home() / ".keysafe")
        return cls(Path(raw).expanduser().absolute(), env.get("KEYSAFE_DATABASE_URL") or None)

    @property
    def where(self) -> str:
        """Where the vault is, for messages: the home, or the database (password hidden)."""
        if self.database_url is None:
            return str(self.path)
        return redacted(parse_database_url(self.database_url))

    def _probe(self) -> str:
        if self.database_url is None:
            return probe(self.db_path)
        return probe_url(parse_database_url(self.database_url))

    @property
    def db_path(self) -> Path:
        return self.path / DB_NAME

    @property
    def log_path(self) -> Path:
        return self.path / LOG_NAME

    def hold_serve_lock(self) -> int:
        """Take this home's server lock for the life of the process (one `keysafe serve` per
        home: two would each think they own the vault's in-flight requests and sessions).
        Returns the descriptor that holds it.

        Raises:
            AlreadyExistsError: another process serves this home.
        """
        fd = os.open(self.path / SERVE_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyExistsError(
                f"keysafe serve is already running on {self.path}.",
                next_step="use the running server (its URL is in KEYSAFE_URL), or stop it first.",
            ) from None
        return fd

    @staticmethod
    def advertise_server(lock_fd: int, url: str) -> None:
        """Write the running server's URL into the serve lock it holds, so the owner's commands
        on this home find that server (and no other) while the lock is held."""
        blob = json.dumps({"url": url, "pid": os.getpid()}).encode()
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, blob, 0)

    def serving_url(self) -> str | None:
        """The URL of the `keysafe serve` running on this home right now, or None.

        A server holds the serve lock for as long as it runs, so a lock anyone can take means no
        server, whatever the file says (a killed server leaves the file behind, never the lock).
        """
        held, blob = self._serve_lock()
        if not held:
            return None
        try:
            url = json.loads(blob).get("url")
        except (ValueError, AttributeError):
            return None  # a server still writing it
        return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None

    def serve_lock_held(self) -> bool:
        """Does a live process hold this home's server lock?"""
        return self._serve_lock()[0]

    def _serve_lock(self) -> tuple[bool, bytes]:
        """(held, what the holder wrote). The lock is flock(2), which dies with its process; it is
        tried shared and non-blocking, for an instant, so it never keeps a server from starting."""
        try:
            fd = os.open(self.path / SERVE_LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False, b""
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True, os.pread(fd, 4096, 0)
            return False, b""
        finally:
            os.close(fd)

    def exists(self) -> bool:
        """Is there a vault here? An interrupted init's empty database does not count."""
        return self._probe() == "vault"

    def clear_unfinished(self) -> None:
        """Remove a database an interrupted init left behind: it holds no vault, only schema.
        (PostgreSQL: an init writes its vault in one transaction, so an interrupted one left
        only the empty schema, which the next init uses as it is.)"""
        if self.database_url is None and probe(self.db_path) in ("empty", "unfinished"):
            for suffix in ("", "-wal", "-shm"):
                self.db_path.with_name(self.db_path.name + suffix).unlink(missing_ok=True)

    def is_empty(self) -> bool:
        return not self.path.exists() or not any(self.path.iterdir())

    def create(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)

    def require(self) -> None:
        if not self.exists():
            leftover = self.database_url is None and self.db_path.exists()
            raise NotInitializedError(
                f"There is no vault in {self.where}"
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
        if self.database_url is not None:
            # A second server's home on a shared database starts empty: it holds only this
            # machine's lock and log, made here as keysafe makes every home.
            self.create()
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
