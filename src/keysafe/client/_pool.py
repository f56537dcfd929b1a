"""An async HTTP connection pool a client owns or borrows: `aclose` (and the end of `async with`)
closes only a pool the client made itself; a shared one stays open for its owner.
"""

from __future__ import annotations

from typing import Self

import httpx


class AsyncPool:
    """A client's `httpx.AsyncClient`: `http`, or a new one with `timeout` (then owned)."""

    def __init__(self, http: httpx.AsyncClient | None, *, timeout: httpx.Timeout) -> None:
        self._owned = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless it was passed in)."""
        if self._owned:
            await self._http.aclose()
