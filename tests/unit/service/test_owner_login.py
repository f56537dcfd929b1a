"""The owner's login proof at a running server (service/owner_login.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keysafe.crypto.kdf import Argon2Params
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError, NotAuthenticatedError, WrongPassphraseError
from keysafe.service.models import LoginRequest
from keysafe.service.owner_login import prove_owner
from keysafe.service.vault_admin import init_vault
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

CHEAP = Argon2Params(memory_kib=1024, time_cost=1, parallelism=1)
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    made, _ = init_vault(Home(tmp_path / "h"), SecretBytes(PASSPHRASE.encode()), kdf=CHEAP)
    yield made
    made.lock()
    made.db.close()


def _no_challenge(challenge: str) -> bool:
    raise AssertionError("a passphrase login never takes a challenge")


def test_prove_owner_passphrase_unlocks_a_locked_vault(vault: Vault) -> None:
    vault.lock()
    prove_owner(
        vault,
        LoginRequest(passphrase=PASSPHRASE),
        take_challenge=_no_challenge,
        kms_token=None,
        kms_url=None,
    )
    assert vault.is_unlocked


def test_prove_owner_wrong_passphrase_leaves_an_unlocked_vault_unlocked(vault: Vault) -> None:
    assert vault.is_unlocked
    with pytest.raises(WrongPassphraseError):
        prove_owner(
            vault,
            LoginRequest(passphrase="not it"),
            take_challenge=_no_challenge,
            kms_token=None,
            kms_url=None,
        )
    assert vault.is_unlocked


def test_prove_owner_without_passphrase_or_proof_is_malformed(vault: Vault) -> None:
    with pytest.raises(MalformedRequestError, match="challenge and its proof"):
        prove_owner(
            vault,
            LoginRequest(challenge="a" * 64),
            take_challenge=_no_challenge,
            kms_token=None,
            kms_url=None,
        )


def test_prove_owner_unknown_challenge_is_refused_before_the_kms(vault: Vault) -> None:
    taken: list[str] = []

    def take(challenge: str) -> bool:
        taken.append(challenge)
        return False

    with pytest.raises(NotAuthenticatedError, match="unknown, used or expired"):
        prove_owner(
            vault,
            LoginRequest(challenge="a" * 64, proof="b" * 64),
            take_challenge=take,
            kms_token=None,
            kms_url="http://127.0.0.1:1",  # never reached
        )
    assert taken == ["a" * 64]
