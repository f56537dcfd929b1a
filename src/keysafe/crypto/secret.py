"""SecretBytes: key material in a wipeable bytearray with a redacted repr.

Python cannot promise that no copy of a secret survives (libraries copy into `bytes`), so wiping
is best effort; what this type does promise is that no repr, str, log line or f-string ever shows
the value. The only way out is `reveal()`, which grep can find and review can check.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import NoReturn


class SecretBytes:
    __slots__ = ("_buf",)

    def __init__(self, value: bytes | bytearray) -> None:
        # Always our own bytearray, so wipe() reaches the only copy we control.
        self._buf = bytearray(value)
        if isinstance(value, bytearray):
            value[:] = bytes(len(value))

    @classmethod
    def adopt(cls, buf: bytearray) -> SecretBytes:
        """Take ownership of `buf` without copying it (the caller must not keep using it)."""
        obj = cls.__new__(cls)
        obj._buf = buf
        return obj

    def reveal(self) -> bytearray:
        """The raw value. Every call site is reviewed: it must not log, print or return it."""
        return self._buf

    def __len__(self) -> int:
        return len(self._buf)

    def __repr__(self) -> str:
        return "SecretBytes(<redacted>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretBytes):
            return NotImplemented
        return hmac.compare_digest(bytes(self._buf), bytes(other._buf))

    # Equal secrets must not become dict keys or set members (a hash would be a side channel,
    # and a secret's buffer changes when wiped); mypy types __hash__ as a method, hence ignore.
    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretBytes cannot be pickled")

    def wipe(self) -> None:
        self._buf[:] = bytes(len(self._buf))

    def __enter__(self) -> SecretBytes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wipe()


@contextmanager
def wiped(buf: bytearray) -> Iterator[bytearray]:
    """Use a temporary bytearray and zero it on exit, error or not."""
    try:
        yield buf
    finally:
        buf[:] = bytes(len(buf))
