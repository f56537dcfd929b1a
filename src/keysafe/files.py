"""Private files keysafe writes outside its database: backups, share and recovery files.

Rules this module enforces, for every such file:
- written 0600 through a temporary file opened O_CREAT|O_EXCL|O_NOFOLLOW (a planted file or
  symlink at the temporary name is never followed or truncated), fsynced, then put in place;
- never over an existing file unless the caller says `replace`: without it the file is linked
  into place, which fails atomically when the name exists (no check-then-rename race);
- the directory is fsynced afterwards, so the new name survives a power loss.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from keysafe.errors import AlreadyExistsError, MalformedRequestError


def write_private(path: Path, blob: bytes, *, replace: bool = False, what: str = "file") -> None:
    """Write `blob` to `path`, 0600 and atomically.

    Raises:
        AlreadyExistsError: `path` exists and `replace` is False (nothing is written).
        MalformedRequestError: the folder is missing or not writable.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise MalformedRequestError(
            f"Cannot write the {what} to {path} ({exc.strerror}).",
            next_step="check that the folder exists and is writable, or choose another path.",
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path, what)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _link_new(tmp: Path, path: Path, what: str) -> None:
    try:
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        raise AlreadyExistsError(
            f"{path} already exists; keysafe never overwrites a {what}.",
            next_step="choose another path, or move the old file away deliberately.",
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # A file system without hard links: O_EXCL on the final name keeps "never overwrite".
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_over(src: Path, dst: Path) -> None:
    """Rename `src` over `dst` (a staged file taking its final name) and fsync the folder."""
    os.replace(src, dst)
    _fsync_dir(dst.parent)
