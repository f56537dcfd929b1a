"""SECURITY.md names, for each threat, test files that exist (and so run in the suite)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_file_security_md_names_exists() -> None:
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert len(rows) >= 8, "the threat table lost its rows"
    for row in rows:
        named = re.findall(r"`(tests/[\w/]+\.py)`", row)
        assert named, f"a threat without tests: {row[:80]}"
        for path in named:
            assert (ROOT / path).is_file(), f"SECURITY.md names {path}, which does not exist"
