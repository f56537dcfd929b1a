"""The `outcome` of an audit entry: what became of the action the entry records.

The values are stored in every audit row and covered by its hash, so a member's value never
changes; being a `StrEnum`, a member equals its old string (and `audit.log.append` stores it as
a plain string, so the row's canonical JSON is the same bytes).
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    SUCCESS = "success"  # the action was carried out
    FAILURE = "failure"  # it was tried and failed (or the proof for it was wrong)
    DENIED = "denied"  # refused before it was tried: an unknown sender, a misused placeholder
    PENDING = "pending"  # parked until the owner approves or denies it
    # A policy decision (`decide.*` entries) records the engine's outcome itself.
    ALLOW = "allow"
    ASK = "ask"
    DENY = "deny"
