"""RFC 8785 canonical JSON (via the `rfc8785` library): the bytes every hash and AAD is built on."""

from __future__ import annotations

from typing import Any

import rfc8785


def dumps(value: Any) -> bytes:
    """Canonical UTF-8 bytes. Floats are refused by callers' types: money is never a float."""
    return rfc8785.dumps(value)
