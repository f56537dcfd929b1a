"""Why a threshold protocol run stopped. Every abort is final for that session: a party never
retries with the same nonces or shares, and a culprit, when one can be named, is named."""

from __future__ import annotations

from keysafe.errors import IntegrityError


class FrostError(IntegrityError):
    """A protocol run was aborted; `culprit` is the participant identifier to blame, if known."""

    def __init__(
        self, what: str, *, culprit: int | None = None, next_step: str | None = None
    ) -> None:
        facts: dict[str, str | int] = {"culprit": culprit} if culprit is not None else {}
        super().__init__(
            what + (f" (participant {culprit})" if culprit is not None else ""),
            next_step=next_step or "abort this session; do not retry with the same messages",
            **facts,
        )
        self.culprit = culprit


class InvalidElement(FrostError):
    """A group element failed validation (encoding, identity, subgroup)."""

    def __init__(self, what: str, *, culprit: int | None = None) -> None:
        super().__init__(what, culprit=culprit)


class InvalidScalar(FrostError):
    """A scalar failed validation (length, not below the group order)."""

    def __init__(self, what: str, *, culprit: int | None = None) -> None:
        super().__init__(what, culprit=culprit)
