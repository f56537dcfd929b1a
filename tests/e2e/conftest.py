"""Fixtures several e2e modules share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.server_fixture import copy_home, standard_vault


@pytest.fixture
def standard_home(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A private copy of the standard vault's home, and agent `bot`'s token."""
    pristine = standard_vault(tmp_path_factory)
    return copy_home(pristine, tmp_path), pristine.tokens["bot"]
