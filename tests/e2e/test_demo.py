"""`keysafe demo`, the README's first command, end to end: a real MCP stdio session on a throwaway
vault, finished without prompts, leaving nothing behind and showing no secret."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.e2e.server_fixture import KEYSAFE


def test_demo_runs_the_whole_story_and_leaves_nothing_behind(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    home = tmp_path / "real-home"  # the user's own vault location must stay untouched
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    env |= {"KEYSAFE_HOME": str(home), "TMPDIR": str(scratch), "COLUMNS": "200"}
    proc = subprocess.run(
        [KEYSAFE, "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out

    # every step of the story happened, in order
    positions = [out.index(f"\n{n}. ") for n in range(1, 13)]
    assert positions == sorted(positions)
    assert "MCP client connected over stdio; 12 tools" in out
    assert re.search(
        r"signed: send 5 USDC .* to 0x1111…1111, max fee [0-9.]+ ETH; tx 0x[0-9a-f]{16}", out
    )  # the summary shows the fee the owner's caps are charged
    assert re.search(r"pending_approval: apr_[0-9a-f]{24}", out)
    assert "approval_status → approved; result signed" in out
    assert "refused=True: POLICY_DENIED (OVER_PER_TX_LIMIT)" in out
    assert "refused=True: POLICY_DENIED (NO_MATCHING_RULE)" in out  # from wallet savings
    assert "wallet main (evm)" in out and "wallet savings (evm)" not in out  # capabilities
    assert "[redacted by keysafe]" in out  # the upstream's echo of the key, scrubbed
    assert "refused=True: NOT_AUTHENTICATED" in out  # after revoke
    assert "chain ok: True" in out

    # the API key is shown only as a 10-character prefix, never whole
    assert not re.search(r"sk-demo-[0-9a-f]{24}", out)
    # no prompt, no traceback, nothing left in the temp dir, the real home not created
    assert "Traceback" not in out
    assert list(scratch.iterdir()) == []
    assert not home.exists()


def test_demo_keep_leaves_a_vault_that_verifies(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    env |= {"TMPDIR": str(tmp_path), "KEYSAFE_HOME": str(tmp_path / "unused")}
    proc = subprocess.run(
        [KEYSAFE, "demo", "--keep"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kept = re.search(r"Demo vault kept in (\S+) \(passphrase in (\S+)\)", proc.stdout)
    assert kept, proc.stdout
    vault_home, pw_file = Path(kept.group(1)), Path(kept.group(2))
    check = subprocess.run(
        [KEYSAFE, "audit", "verify", "--passphrase-file", str(pw_file)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env | {"KEYSAFE_HOME": str(vault_home)},
    )
    assert check.returncode == 0, check.stdout + check.stderr
