"""A fresh clone needs nothing beside it (issue 14, item 15).

The vectors the tests read live in tests/vectors; no tracked file may point outside the checkout
(the sibling `shared` folder this project grew up next to exists on no one else's machine).
`.ci/run` proves the rest: it clones the repository into an empty directory and runs the README's
first command there, then runs its second command.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A path that leaves the checkout for a sibling folder (`..` then shared or vectors).
OUTSIDE = re.compile(r"(?<![\w.])\.\./(?:\.\./)*(shared|vectors)\b")


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (an sdist): nothing tracked to check")
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_tracked_file_points_outside_the_checkout() -> None:
    offenders = []
    for path in _tracked():
        if path.suffix in {".png", ".lock"} or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == [], "a fresh clone has nothing beside it:\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_is_for() -> None:
    # So the test above cannot pass by matching nothing.
    up = "../"  # spelled apart so this file itself holds no such path
    assert OUTSIDE.search(f"see {up}shared/DESIGN.md")
    assert OUTSIDE.search(f'Path("{up}{up}shared" / "x.json")')
    assert not OUTSIDE.search("tests/vectors/README.md")


def test_every_vector_folder_names_its_source_and_licence() -> None:
    readme = (ROOT / "tests" / "vectors" / "README.md").read_text()
    folders = sorted(p.name for p in (ROOT / "tests" / "vectors").iterdir() if p.is_dir())
    assert folders, "tests/vectors holds no vectors"
    missing = [name for name in folders if name not in readme]
    assert missing == [], f"tests/vectors/README.md does not describe {missing}"
    assert "licen" in readme.lower()


def test_ci_runs_the_readme_commands_on_a_fresh_clone() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("bash scripts/demo", "bash scripts/test"):
        assert f"\n{command}\n" in readme, f"README's quickstart no longer says `{command}`"
        script = command.removeprefix("bash ")
        code = "\n".join(line.split("#")[0] for line in ci.splitlines())  # not in a comment
        ran = re.search(r"\bbash (\./)?" + re.escape(script) + r"\b", code)
        assert ran, f".ci/run does not run the README's `{command}`"
    assert "git clone" in ci, ".ci/run must run the first command on a fresh clone"
