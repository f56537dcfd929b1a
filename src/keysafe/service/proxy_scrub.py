"""Takes a credential's secret out of what an upstream answers (service/proxy.py): its headers
as text, its body as bytes chunk by chunk, with the secret split across chunks caught too.

    scrubber = Scrubber(forms)  # the secret's forms, longest first
    for chunk in body:
        send(scrubber.feed(chunk))
    send(scrubber.flush())  # only at the end of a complete body
"""

from __future__ import annotations

import logging
from typing import Final

logger = logging.getLogger(__name__)

REDACTED: Final = "[redacted by keysafe]"
_REDACTED_BYTES: Final = REDACTED.encode()


def scrub(text: str, forms: list[str]) -> str:
    """`text` with every form of the secret replaced by REDACTED."""
    for f in forms:
        text = text.replace(f, REDACTED)
    return text


class Scrubber:
    """Takes every secret form out of a byte stream, however the stream is cut into chunks.

    Each chunk is scrubbed together with what was held back from the one before; then the
    longest tail that is the start of a form (and only that) is held back again, since the next
    chunk may complete it. A form that ends inside the buffer has been replaced, and one that
    runs past its end starts inside the held tail, so no form reaches the output whole. Text
    that cannot start a form (an SSE event's closing blank line) is never held: events still
    arrive as they are sent.
    """

    def __init__(self, forms: list[str]) -> None:
        self._forms = [
            f.encode() for f in forms
        ]  # longest first, as proxy._secret_forms sorts them
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        """The scrubbed bytes of `chunk` that are safe to pass on now."""
        buf = self._held + chunk
        for f in self._forms:
            buf = buf.replace(f, _REDACTED_BYTES)
        keep = self._start_of_form(buf)
        self._held = buf[len(buf) - keep :] if keep else b""
        return buf[: len(buf) - keep]

    def flush(self) -> bytes:
        """What is still held at the end of a complete body (the start of a form, never a whole
        one). A body cut short (over the cap, or broken) is not flushed."""
        out, self._held = self._held, b""
        return out

    def _start_of_form(self, buf: bytes) -> int:
        """The length of the longest tail of `buf` that is a proper prefix of a form."""
        if not buf:
            return 0
        best, last = 0, buf[-1:]
        for f in self._forms:
            # Only the prefixes that end in buf's last byte can match: find those, not all.
            k = f.find(last, 0, len(f) - 1)
            while k != -1:
                n = k + 1
                if n > best and n <= len(buf) and buf.endswith(f[:n]):
                    best = n
                k = f.find(last, k + 1, len(f) - 1)
        return best
