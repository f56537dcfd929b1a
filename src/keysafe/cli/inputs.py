"""Reading passphrases, phrases and secrets: from files, the environment, stdin or a hidden prompt.

Order for a passphrase: `--passphrase-file`, then the environment variable, then a hidden prompt
on the terminal; otherwise a clear error (scripts must say where the secret is). The prompt asks
on the process's terminal (/dev/tty) even when stdin is a pipe, so
`printf %s "$TOKEN" | keysafe credential add …` can still ask for the passphrase.
Secrets never pass through argv, where `ps` would show them.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from keysafe.errors import MalformedRequestError
from keysafe.service.models import SecretBytes


def _strip_newline(buf: bytearray) -> bytearray:
    while buf and buf[-1] in (0x0A, 0x0D):
        del buf[-1]
    return buf


def _from_file(path: Path) -> SecretBytes:
    try:
        data = bytearray(path.read_bytes())
    except OSError as exc:
        raise MalformedRequestError(
            f"Cannot read the passphrase file {path} ({exc.strerror}).",
            next_step="check the path and its permissions.",
        ) from None
    return SecretBytes.adopt(_strip_newline(data))


def secret_file(path: Path, what: str) -> SecretBytes:
    """A secret kept in a file (a bot token): its bytes, surrounding whitespace dropped.

    Raises:
        MalformedRequestError: unreadable or empty.
    """
    try:
        data = bytearray(path.read_bytes().strip())
    except OSError as exc:
        raise MalformedRequestError(
            f"Cannot read the {what} file {path} ({exc.strerror}).",
            next_step="check the path and its permissions.",
        ) from None
    if not data:
        raise MalformedRequestError(
            f"The {what} file {path} is empty.", next_step=f"put the {what} in it."
        )
    return SecretBytes.adopt(data)


def _has_terminal() -> bool:
    """Whether a person can be asked: stdin is a terminal, or the process has one (/dev/tty),
    which is where getpass asks even when stdin carries a piped secret."""
    if sys.stdin.isatty():
        return True
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _prompt(label: str, *, confirm: bool) -> SecretBytes:
    first = getpass.getpass(f"{label}: ")
    if confirm:
        second = getpass.getpass(f"{label} (again): ")
        if first != second:
            raise MalformedRequestError(
                "The two entries do not match.", next_step="run the command again."
            )
    return SecretBytes(bytearray(first.encode()))


def passphrase(
    file: Path | None,
    *,
    env: tuple[str, ...] = ("KEYSAFE_PASSPHRASE",),
    label: str = "Vault passphrase",
    confirm: bool = False,
) -> SecretBytes:
    if file is not None:
        return _from_file(file)
    for name in env:
        value = os.environ.get(name)
        if value:
            return SecretBytes(bytearray(value.encode()))
    if _has_terminal():
        return _prompt(label, confirm=confirm)
    raise MalformedRequestError(
        f"No {label.lower()} given and no terminal to ask on.",
        next_step=f"set {env[0]} or pass --passphrase-file FILE.",
    )


def recovery_passphrase(*, confirm: bool = False) -> SecretBytes:
    """The passphrase of a 2-of-3 wallet's recovery file: KEYSAFE_RECOVERY_PASSPHRASE, else a
    hidden prompt (asked twice with `confirm`, for a new file)."""
    return passphrase(
        None, env=("KEYSAFE_RECOVERY_PASSPHRASE",), label="Recovery passphrase", confirm=confirm
    )


@contextmanager
def phrase_and_new_passphrase(file: Path | None) -> Iterator[tuple[SecretBytes, SecretBytes]]:
    """The recovery phrase (`stdin_line`) and then a new vault passphrase (`file`,
    KEYSAFE_NEW_PASSPHRASE, KEYSAFE_PASSPHRASE or a prompt, asked twice): what rebuilding a vault
    from its phrase needs. Both are wiped on leaving the block.

    Raises:
        MalformedRequestError: no passphrase given and no terminal to ask on.
    """
    with (
        stdin_line("Recovery phrase") as phrase,
        passphrase(
            file,
            env=("KEYSAFE_NEW_PASSPHRASE", "KEYSAFE_PASSPHRASE"),
            label="New vault passphrase",
            confirm=True,
        ) as new,
    ):
        yield phrase, new


def kms_token(file: Path | None) -> SecretBytes | None:
    """The KMS token (OpenBao): `--kms-token-file`, then KEYSAFE_KMS_TOKEN_FILE, then
    KEYSAFE_KMS_TOKEN; None when none is given (AWS takes boto3's own credential chain). Never
    prompted for: a KMS vault is the one that unlocks without a person."""
    path = file or (Path(p) if (p := os.environ.get("KEYSAFE_KMS_TOKEN_FILE")) else None)
    if path is not None:
        try:
            return SecretBytes.adopt(_strip_newline(bytearray(path.read_bytes())))
        except OSError as exc:
            raise MalformedRequestError(
                f"Cannot read the KMS token file {path} ({exc.strerror}).",
                next_step="check the path and its permissions.",
            ) from None
    value = os.environ.get("KEYSAFE_KMS_TOKEN", "").strip()
    return SecretBytes(bytearray(value.encode())) if value else None


def kms_url() -> str | None:
    """Where OpenBao is, as the operator says with the token (KEYSAFE_KMS_URL): the token is sent
    there only, never to the address the vault's database names (vault/kms.provider_for)."""
    return os.environ.get("KEYSAFE_KMS_URL", "").strip() or None


def stdin_secret(label: str) -> SecretBytes:
    """A secret value: the whole of stdin when piped, else a hidden prompt."""
    if sys.stdin.isatty():
        return _prompt(label, confirm=False)
    data = bytearray(sys.stdin.buffer.read())
    return SecretBytes.adopt(_strip_newline(data))


def stdin_line(label: str) -> SecretBytes:
    """One line from stdin when piped (the recovery phrase), else a hidden prompt."""
    if sys.stdin.isatty():
        return _prompt(label, confirm=False)
    line = bytearray(sys.stdin.buffer.readline())
    return SecretBytes.adopt(_strip_newline(line))


def confirm(question: str, *, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if sys.stdin.isatty():
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    if not _has_terminal():
        raise MalformedRequestError(
            f"{question} needs confirmation and there is no terminal to ask on.",
            next_step="pass --yes to confirm.",
        )
    with open("/dev/tty", "r+", encoding="utf-8") as tty:  # stdin is a pipe: ask the person
        tty.write(f"{question} [y/N] ")
        tty.flush()
        return tty.readline().strip().lower() in ("y", "yes")


def read_text(path: Path) -> str:
    """A file the command was given (a policy), as UTF-8 text.

    Raises:
        MalformedRequestError: it cannot be read, or is not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MalformedRequestError(
            f"Cannot read {path} ({exc}).", next_step="check the file."
        ) from None


_DURATION = re.compile(r"^(\d+)([smhd])$")


def duration_seconds(text: str) -> int:
    """A duration the owner typed (`15m`, `1h`, `7d`) in seconds.

    Raises:
        MalformedRequestError: it is not a number and one of s, m, h, d.
    """
    m = _DURATION.match(text.strip())
    if not m:
        raise MalformedRequestError(
            f"'{text[:20]}' is not a duration.", next_step="use e.g. 15m, 1h or 1d."
        )
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
