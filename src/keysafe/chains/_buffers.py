"""Zeroing scratch buffers that held key material (best effort: see `SecretBytes`)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def wipe(buf: bytearray) -> None:
    """Overwrite `buf` with zeros in place."""
    buf[:] = bytes(len(buf))
