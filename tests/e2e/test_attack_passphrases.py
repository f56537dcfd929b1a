"""Passphrases someone chooses must resist an offline attack on a stolen copy (issue 13, hole 7):
at least 12 characters and a zxcvbn score of 3 or more, for the vault and for recovery files."""

from __future__ import annotations

import json

import pytest

from keysafe.mpc.ceremony import JoinCode
from tests.conftest import Cli


@pytest.mark.parametrize(
    ("passphrase", "why"),
    [
        ("hunter2hunt", "too short"),
        ("password1234", "too easy to guess"),
        ("aaaaaaaaaaaaaaaa", "too easy to guess"),
        ("qwertyuiop123", "too easy to guess"),
    ],
)
def test_attack_init_refuses_a_guessable_passphrase(
    keysafe: Cli, passphrase: str, why: str
) -> None:
    r = keysafe("init", "--json", env={"KEYSAFE_PASSPHRASE": passphrase})
    assert r.exit_code != 0
    out = r.stdout + r.stderr
    assert "MALFORMED_REQUEST" in out and why in out, out
    assert passphrase not in out  # the reason never repeats the passphrase
    assert not (keysafe.home / "vault.db").exists()


def test_attack_passphrase_change_refuses_a_guessable_one(vault: Cli) -> None:
    r = vault("passphrase", "change", env={"KEYSAFE_NEW_PASSPHRASE": "password1234"})
    assert r.exit_code != 0 and "too easy to guess" in r.stdout + r.stderr
    vault.ok("wallet", "list", "--json")  # the old passphrase still unlocks


def test_attack_an_agent_share_key_that_is_weak_or_is_the_token_is_refused(vault: Cli) -> None:
    """The share key keeps the vault (which sees the token on every request) from opening the
    agent's share file: it may be neither guessable nor the token itself. The agent's host
    refuses it before it contacts the vault. (The recovery passphrase's rule, which needs a
    running server: tests/e2e/test_keygen_apart.py.)"""
    token = json.loads(vault.ok("agent", "add", "bot2", "--json").stdout)["token"]
    code = JoinCode(bytes(32), bytes(16), bytes(32)).encode()
    for share_key, says in (("1234", "agent share key"), (token, "must not be its token")):
        r = vault(
            "agent",
            "threshold",
            "join",
            "--share-file",
            str(vault.home.parent / "agent2.json"),
            env={
                "KEYSAFE_AGENT_TOKEN": token,
                "KEYSAFE_AGENT_SHARE_KEY": share_key,
                "KEYSAFE_JOIN_CODE": code,
                "KEYSAFE_URL": "http://127.0.0.1:9",
            },
        )
        assert r.exit_code != 0 and says in r.stdout + r.stderr, r.stdout + r.stderr
        assert token not in r.stdout + r.stderr
        assert not (vault.home.parent / "agent2.json").exists()
