"""`keysafe mcp` joining by itself (mcp_server/auto_join.py): the wallet name the vault gives
becomes a file name on the agent's host, so a name that is a path is refused before anything
is joined or written; a bad join key or share key stops the server at start."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from keysafe.agent_models import KeygenPost, KeygenView
from keysafe.errors import MalformedRequestError, RequestInProgressError
from keysafe.mcp_server import auto_join
from keysafe.mcp_server.threshold import ShareBook
from keysafe.mpc.ceremony import JoinCode


class _Vault:
    """A vault that names its wallet as it pleases; records every post."""

    def __init__(self, wallet: str, kind: str = "create") -> None:
        self.wallet, self.kind, self.posts = wallet, kind, []  # type: ignore[var-annotated]

    def keygen_exchange(self, keygen_id: str, post: KeygenPost) -> KeygenView:
        self.posts.append(post)
        return KeygenView(
            id=keygen_id,
            wallet=self.wallet,
            chain="solana",
            agent="bot",
            vault_id="v",
            rounds=3,
            keys={},
            agent_tag=None,
            recovery_tag="AA==",
            messages=[],
            status="waiting",
            failure=None,
            address=None,
            expires_in=600,
            kind=self.kind,
        )


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/b", ".hidden", "x" * 65, ""])
def test_attack_a_wallet_name_that_is_a_path_is_never_joined_or_written(
    tmp_path: Path, name: str
) -> None:
    vault = _Vault(name)
    code = JoinCode.from_join_key(bytes(32), bytes(32))
    shares = ShareBook()
    auto_join._join(vault, code, "a share key of enough length", shares, tmp_path)  # type: ignore[arg-type]
    assert len(vault.posts) == 1 and vault.posts[0] == KeygenPost()  # looked, announced nothing
    assert list(tmp_path.iterdir()) == [] and shares.peek(name) is None


def test_a_bad_join_key_or_share_key_stops_the_server_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "join.key"
    bad.write_text("not hex", encoding="ascii")
    monkeypatch.setenv(auto_join.ENV, str(bad))
    with pytest.raises(MalformedRequestError, match="join key"):
        auto_join.start("ks_agent_x", "http://127.0.0.1:9", ShareBook())
    bad.write_text("00" * 32, encoding="ascii")
    for share_key in ("", "short", "ks_agent_x"):
        monkeypatch.setenv(auto_join.SHARE_KEY_ENV, share_key)
        with pytest.raises(MalformedRequestError, match="KEYSAFE_AGENT_SHARE_KEY"):
            auto_join.start("ks_agent_x", "http://127.0.0.1:9", ShareBook())
    monkeypatch.delenv(auto_join.ENV)
    assert auto_join.start("ks_agent_x", "http://127.0.0.1:9", ShareBook()) is None


def test_attack_a_signature_during_a_refresh_waits_for_the_new_share_never_pairs_the_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vault holds its new share as soon as the ceremony ends, before this process has
    opened the agent's: a signature started in that gap used the old share and failed
    ("signature share does not verify"). It now waits for the swap, then uses the new share."""
    old, new = SimpleNamespace(origin=tmp_path / "w.share"), object()
    shares = ShareBook({"w": old})  # type: ignore[dict-item]
    vault_done, may_finish = threading.Event(), threading.Event()

    def join_as_agent(*_args: Any) -> Any:
        vault_done.set()  # the vault holds its new share from here
        may_finish.wait(5)
        return SimpleNamespace(kind="reshare", wallet="w", address="a")

    monkeypatch.setattr(auto_join.ceremony, "join_as_agent", join_as_agent)
    monkeypatch.setattr(auto_join.ceremony, "check_recovery_tag", lambda *_a: None)
    monkeypatch.setattr(auto_join.share_file, "read", lambda *_a: {})
    monkeypatch.setattr(auto_join.share_file, "open_agent_share", lambda *_a: new)
    monkeypatch.setattr(auto_join, "replace", lambda share, origin: share)
    code = JoinCode.from_join_key(bytes(32), bytes(32))
    joiner = threading.Thread(
        target=auto_join._join,
        args=(_Vault("w", "reshare"), code, "a share key of enough length", shares, tmp_path),
    )
    joiner.start()
    assert vault_done.wait(5)

    async def sign_now() -> object:
        signing = asyncio.ensure_future(shares.current("w"))
        await asyncio.sleep(0.3)
        assert not signing.done()  # waits: the old share would not verify with the vault's
        may_finish.set()
        return await signing

    assert asyncio.run(sign_now()) is new
    joiner.join(5)
    assert asyncio.run(shares.current("w")) is new


def test_a_refresh_that_never_ends_makes_the_signature_say_so_not_hang() -> None:
    shares = ShareBook()
    with shares.replacing("w"), pytest.raises(RequestInProgressError, match="refreshed"):
        asyncio.run(shares.current("w", wait_s=0.1))
