"""The example policy as most policy tests read it: with its optional parts (business hours,
expiry) switched on (keysafe/policy/examples.py)."""

from __future__ import annotations

from pathlib import Path

from keysafe.policy import examples

EXAMPLE_PATH = Path(__file__).resolve().parents[1] / "examples" / "policy.yaml"


def example_text(*, optional: bool = True) -> str:
    return examples.example_text(optional=optional)
