"""What a relay link tells its caller when a message cannot go: each refusal, malformed address
or silence as the keysafe error that says what to do next (relay/link.py raises them).
"""

from __future__ import annotations

import re
from typing import Final

from keysafe.errors import (
    ErrorCode,
    MalformedRequestError,
    NotAuthenticatedError,
    PayloadTooLargeError,
    RateLimitedError,
    VaultUnreachableError,
)
from keysafe.relay import routing as r

_HEX32: Final = re.compile(r"^[0-9a-f]{32}$")
_SMALLER: Final = "send a smaller body (or raise the relay's --max-body)."


def check_address(to: str, msg_id: str) -> None:
    """Raises MalformedRequestError unless both are 32 lowercase hex characters."""
    if not _HEX32.match(to) or not _HEX32.match(msg_id):
        raise MalformedRequestError(
            "A relay recipient and message id are 32 lowercase hex characters.",
            next_step="pass the peer's routing id and secrets.token_hex(16) as the id.",
        )


def check_size(size: int, max_body: int | None) -> None:
    """Raises PayloadTooLargeError for a body over the cap the relay announced (None: none)."""
    if max_body is not None and size > max_body:
        raise PayloadTooLargeError(
            f"The message is {size} bytes; the relay takes at most {max_body}.",
            next_step=_SMALLER,
        )


def wait_after(answer: r.ErrorFrame, size: int) -> float | None:
    """The wait the relay asks for before trying again after a refusal (None: its own backoff).

    Raises:
        PayloadTooLargeError: the relay refused the body as too large.
        NotAuthenticatedError: the relay refused the signature (a clock too far off).
        MalformedRequestError: any other refusal: trying again cannot help.
    """
    if answer.code == ErrorCode.PAYLOAD_TOO_LARGE:
        raise PayloadTooLargeError(
            f"The relay refused a {size}-byte message as too large.", next_step=_SMALLER
        )
    if answer.code == ErrorCode.NOT_AUTHENTICATED:
        raise NotAuthenticatedError(
            "The relay refused this link's signature.",
            next_step="check this machine's clock (the relay allows 60 s of difference).",
        )
    if answer.code in (ErrorCode.RATE_LIMITED, ErrorCode.MAILBOX_FULL):
        return answer.retry_after
    raise MalformedRequestError(
        f"The relay refused the message ({answer.code}).",
        next_step="check the relay and keysafe versions match.",
    )


def still_refused(answer: r.ErrorFrame) -> RateLimitedError:
    return RateLimitedError(
        "The relay still refused the message when the send timed out "
        + (
            "(the recipient's mailbox is full)."
            if answer.code == ErrorCode.MAILBOX_FULL
            else "(rate limit)."
        ),
        next_step="send less often, or retry later (the recipient may be offline).",
    )


def no_answer(timeout: float, http_base: str) -> VaultUnreachableError:
    return VaultUnreachableError(
        f"The relay did not confirm the message within {timeout:g} s.",
        next_step=f"check that the relay at {http_base} runs and this machine reaches it.",
    )


def link_closed() -> VaultUnreachableError:
    return VaultUnreachableError("The relay link is closed.", next_step="start a new RelayLink.")
