"""`keysafe mcp` joining by itself (mcp_server/auto_join.py): the wallet name the vault gives
becomes a file name on the agent's host, so a name that is a path is refused before anything
is joined or written; a bad join key or share key stops the server at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keysafe.agent_models import KeygenPost, KeygenView
from keysafe.errors import MalformedRequestError
from keysafe.mcp_server import auto_join
from keysafe.mpc.ceremony import JoinCode


class _Vault:
    """A vault that names its wallet as it pleases; records every post."""

    def __init__(self, wallet: str) -> None:
        self.wallet, self.posts = wallet, []  # type: ignore[var-annotated]

    def keygen_exchange(self, keygen_id: str, post: KeygenPost) -> KeygenView:
        self.posts.append(post)
        return KeygenView(
            id=keygen_id, wallet=self.wallet, chain="solana", agent="bot", vault_id="v",
            rounds=3, keys={}, agent_tag=None, recovery_tag="AA==", messages=[],
            status="waiting", failure=None, address=None, expires_in=600,
        )  # fmt: skip


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/b", ".hidden", "x" * 65, ""])
def test_attack_a_wallet_name_that_is_a_path_is_never_joined_or_written(
    tmp_path: Path, name: str
) -> None:
    vault = _Vault(name)
    code = JoinCode.from_join_key(bytes(32), bytes(32))
    shares: dict[str, Any] = {}
    auto_join._join(vault, code, "a share key of enough length", shares, tmp_path)  # type: ignore[arg-type]
    assert len(vault.posts) == 1 and vault.posts[0] == KeygenPost()  # looked, announced nothing
    assert list(tmp_path.iterdir()) == [] and shares == {}


def test_a_bad_join_key_or_share_key_stops_the_server_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "join.key"
    bad.write_text("not hex", encoding="ascii")
    monkeypatch.setenv(auto_join.ENV, str(bad))
    with pytest.raises(MalformedRequestError, match="join key"):
        auto_join.start("ks_agent_x", "http://127.0.0.1:9", {})
    bad.write_text("00" * 32, encoding="ascii")
    for share_key in ("", "short", "ks_agent_x"):
        monkeypatch.setenv(auto_join.SHARE_KEY_ENV, share_key)
        with pytest.raises(MalformedRequestError, match="KEYSAFE_AGENT_SHARE_KEY"):
            auto_join.start("ks_agent_x", "http://127.0.0.1:9", {})
    monkeypatch.delenv(auto_join.ENV)
    assert auto_join.start("ks_agent_x", "http://127.0.0.1:9", {}) is None
