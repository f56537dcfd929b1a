"""The example policy shipped with keysafe (`keysafe policy example`, examples/policy.yaml).

It ships two optional parts commented out, a business-hours deny and an expiry, so a new user
does not get a policy that stops at night or in a month. `example_text(optional=True)` switches
them on exactly as the file tells a user to (delete the "# "): the tests and the benchmarks
exercise them.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Final

_OPTIONAL: Final = re.compile(
    r"^(\s*)# ((?:- name: |  deny: |  outside_hours: |expires: ).*)$", re.M
)


def example_text(*, optional: bool = False) -> str:
    """The example policy's YAML; with `optional`, its commented-out parts switched on."""
    text = (resources.files("keysafe.policy") / "example_policy.yaml").read_text(encoding="utf-8")
    return _OPTIONAL.sub(r"\1\2", text) if optional else text
