"""Access to the published known-answer vectors in `tests/vectors/` (sources and licences in its
README.md; copied byte for byte from the project's shared vector set, so a fresh clone tests
without anything beside it). A missing folder is a broken checkout, not a reason to skip, so
importing this module fails loudly instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VECTORS: Path = (PROJECT_ROOT / "tests" / "vectors").resolve()

if not (VECTORS / "README.md").is_file():
    raise RuntimeError(
        f"test vectors not found at {VECTORS}; they are part of the repository "
        "(tests/vectors): restore them with git. Tests never skip on missing vectors."
    )


def vector_path(relpath: str) -> Path:
    """The absolute path of `relpath` inside the vectors folder; it must exist."""
    path = (VECTORS / relpath).resolve()
    if not path.is_relative_to(VECTORS):
        raise ValueError(f"{relpath!r} escapes the vectors folder")
    if not path.is_file():
        raise FileNotFoundError(f"missing test vector file: {path}")
    return path


def read_bytes(relpath: str) -> bytes:
    """The exact bytes of a vector file (JCS outputs and word lists are byte-exact)."""
    return vector_path(relpath).read_bytes()


def load_json(relpath: str) -> Any:
    """Parse a JSON vector file, e.g. `load_json("wycheproof/ed25519_test.json")`."""
    return json.loads(read_bytes(relpath))
