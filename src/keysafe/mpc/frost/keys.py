"""What a participant holds after key generation or resharing, and the helpers every protocol
in this package shares: identifiers, Lagrange coefficients, transcripts.

Identifiers are fixed for life in keysafe's 2-of-3 wallets: agent = 1, user = 2, recovery = 3.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import SUITES, Suite

AGENT: Final = 1
USER: Final = 2
RECOVERY: Final = 3
PARTIES: Final = (AGENT, USER, RECOVERY)
MIN_SIGNERS: Final = 2
MAX_SIGNERS: Final = 3


@dataclass(frozen=True, slots=True)
class PublicKeyPackage:
    """The public result of key generation: the group key and every participant's verifying
    share X_i = x_i·G. The same for all participants (they confirm it before the key is active)."""

    suite: Suite
    group_public_key: bytes
    verifying_shares: dict[int, bytes]

    def digest(self, session_id: bytes) -> bytes:
        """H(sid, PK, X_1, X_2, X_3): what every party confirms."""
        parts = [session_id, self.group_public_key]
        parts += [self.verifying_shares[i] for i in sorted(self.verifying_shares)]
        return transcript_hash(b"keysafe/frost/confirm", self.suite.name.encode(), *parts)

    def to_dict(self) -> dict[str, object]:
        return {
            "suite": self.suite.name,
            "group_public_key": self.group_public_key.hex(),
            "verifying_shares": {str(i): x.hex() for i, x in sorted(self.verifying_shares.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PublicKeyPackage:
        suite = SUITES[str(data["suite"])]
        shares = data["verifying_shares"]
        assert isinstance(shares, dict)
        return cls(
            suite,
            suite.deserialize_element(bytes.fromhex(str(data["group_public_key"]))),
            {int(k): suite.deserialize_element(bytes.fromhex(str(v))) for k, v in shares.items()},
        )


@dataclass(frozen=True, slots=True)
class KeyPackage:
    """One participant's long-term secret share x_i with the public package. Secret: store it
    encrypted, never log it."""

    identifier: int
    signing_share: int
    public: PublicKeyPackage

    @property
    def suite(self) -> Suite:
        return self.public.suite

    def __repr__(self) -> str:  # never print the share
        return f"KeyPackage(identifier={self.identifier}, suite={self.suite.name})"


def check_identifier(i: int, *, what: str = "identifier") -> int:
    if i not in PARTIES:
        raise FrostError(f"{what} {i!r} is not one of the participants {PARTIES}")
    return i


def lagrange(suite: Suite, i: int, participants: list[int] | tuple[int, ...]) -> int:
    """λ_i for interpolating at 0 over `participants` (RFC 9591 derive_interpolating_value)."""
    if i not in participants or len(set(participants)) != len(participants):
        raise FrostError("invalid participant list for interpolation")
    num, den = 1, 1
    for j in participants:
        if j == i:
            continue
        num = num * j % suite.order
        den = den * (j - i) % suite.order
    return num * pow(den, -1, suite.order) % suite.order


def transcript_hash(tag: bytes, *parts: bytes) -> bytes:
    """SHA-256 over a domain tag and length-prefixed parts: no two different part lists hash
    alike (the ambiguity TSSHOCK exploited)."""
    h = hashlib.sha256()
    for p in (tag, *parts):
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.digest()
