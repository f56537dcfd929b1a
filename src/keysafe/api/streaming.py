"""The credential proxy's answer as a stream (`POST /v1/agent/http?stream=true`).

The upstream's status and (scrubbed) headers, then its body as it arrives, scrubbed
(service/proxy.py); `x-keysafe-upstream: 1` tells a client (the local proxy) that this is the
upstream's answer and not keysafe's own. A body that goes over the response cap or breaks off
mid-way ends the connection without the closing chunk, so the client sees an incomplete answer
(an error), never a shorter one that looks whole; the audit says how it ended.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Final

import anyio
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.responses import StreamingResponse

from keysafe.errors import KeysafeError
from keysafe.service.proxy import HttpStream

logger = logging.getLogger(__name__)

UPSTREAM_HEADER: Final = "x-keysafe-upstream"


class StreamCut(Exception):
    """Raised into the server to end a started answer without its closing chunk."""


async def _body(stream: HttpStream) -> AsyncIterator[bytes]:
    try:
        async for chunk in iterate_in_threadpool(stream.chunks()):
            yield chunk
    except KeysafeError as exc:
        logger.warning("proxied answer cut off: %s", exc.code)
        raise StreamCut(str(exc.code)) from None
    finally:
        # The client may have gone (this task is then cancelled): settling must still happen.
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(stream.close)


def stream_response(stream: HttpStream) -> StreamingResponse:
    """The upstream's answer, streamed; keysafe's own headers from upstream are dropped."""
    headers = {k: v for k, v in stream.headers.items() if not k.lower().startswith("x-keysafe-")}
    headers[UPSTREAM_HEADER] = "1"
    return StreamingResponse(_body(stream), status_code=stream.status_code, headers=headers)
