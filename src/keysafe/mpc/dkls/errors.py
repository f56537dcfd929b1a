"""Why a DKLs23 run stopped. Every abort is final for its session; some also end the pair."""

from __future__ import annotations

from keysafe.mpc.frost.errors import FrostError


class DklsAbort(FrostError):
    """A DKLs23 setup or signing run was aborted.

    `culprit` is the party to blame when the evidence names one. `ban` is True when the failed
    check guards reusable OT state (the OT-extension check, the multiplication check, the Γ
    checks, the final signature check): a selective failure there can leak bits of that state,
    so the pair must not sign together again until a reshare replaces it (threshold.md §2.2).
    """

    def __init__(self, what: str, *, culprit: int | None = None, ban: bool = False) -> None:
        super().__init__(
            what,
            culprit=culprit,
            next_step=(
                "this pair may not sign together again: reshare the wallet with the other two "
                "parties, then run the pair setup again"
                if ban
                else None
            ),
        )
        self.ban = ban
