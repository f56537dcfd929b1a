"""A cheap-KDF vault for the notification tests: wallet `main`, agent `bot` under the standard
policy (R1 asks above 0.005 ETH, R2 is denied, R4 always asks), built in-process once per test
process and copied per server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.service import agents, policies, wallets
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from tests.conftest import PASSPHRASE
from tests.e2e.server_fixture import STANDARD_POLICY

_BUILT: dict[str, tuple[Path, str]] = {}


def notify_vault(factory: pytest.TempPathFactory, dest: Path) -> tuple[Path, str]:
    """A private copy of the notification vault's home, and agent `bot`'s token."""
    if "vault" not in _BUILT:
        home = Home(factory.mktemp("notify-vault") / "home")
        vault, phrase = init_vault(home, SecretBytes(bytearray(PASSPHRASE.encode())), kdf=CHEAP_KDF)
        phrase.wipe()
        with vault:
            wallets.create_wallet(vault, "main", Chain.EVM)
            _, token = agents.add_agent(vault, "bot")
            assert token is not None
            policies.set_policy(vault, "bot", STANDARD_POLICY)
            _BUILT["vault"] = (home.path, bytes(token.reveal()).decode())
    src, token = _BUILT["vault"]
    copy = dest / "home"
    shutil.copytree(src, copy)
    os.chmod(copy, 0o700)
    return copy, token
