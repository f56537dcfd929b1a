"""Unlock throttling (vault/unlock.py, Vault.unlock) under a controllable clock."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keysafe.crypto.kdf import Argon2Params, argon2id
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import UnlockThrottledError, WrongPassphraseError
from keysafe.service import audit
from keysafe.service.context import open_database
from keysafe.service.vault_admin import init_vault
from keysafe.service.vault_status import status
from keysafe.testing import CHEAP_KDF, ManualClock
from keysafe.vault import hierarchy, unlock
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

PASSPHRASE = b"correct horse battery staple"
WRONG = b"wrong horse battery staple"


@dataclass
class Setup:
    home: Home
    clock: ManualClock
    vault: Vault  # locked, opened from disk

    def reopen(self) -> Vault:
        """A new Database and Vault on the same file, as another process would have."""
        return Vault.open(open_database(self.home, create=False), clock=self.clock)


@pytest.fixture
def setup(tmp_path: Path, database_url: str | None) -> Iterator[Setup]:
    """A vault on each store: the failure counter is in the vault header, shared by every
    process (and, on PostgreSQL, every server) that opens it."""
    clock = ManualClock(datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC))
    home = Home(tmp_path / "h", database_url)
    created, phrase = init_vault(home, SecretBytes(PASSPHRASE), kdf=CHEAP_KDF, clock=clock)
    phrase.wipe()
    created.lock()
    created.db.close()
    s = Setup(home, clock, Vault.open(open_database(home, create=False), clock=clock))
    yield s
    s.vault.db.close()


def _fail(vault: Vault, times: int) -> None:
    for _ in range(times):
        with pytest.raises(WrongPassphraseError):
            vault.unlock(SecretBytes(WRONG))


def _failures(s: Setup, vault: Vault) -> int:
    return status(s.home, vault).unlock_failures


@dataclass
class Argon2Spy:
    calls: int = 0

    def counting(
        self, passphrase: bytes | bytearray, salt: bytes, params: Argon2Params
    ) -> bytearray:
        self.calls += 1
        return argon2id(passphrase, salt, params)


@pytest.fixture
def argon2_spy(monkeypatch: pytest.MonkeyPatch) -> Argon2Spy:
    """Counts Argon2 runs made by the key hierarchy (the unlock path)."""
    spy = Argon2Spy()
    monkeypatch.setattr(hierarchy, "argon2id", spy.counting)
    return spy


# -- the delay table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(0, 0), (1, 0), (4, 0), (5, 30), (6, 60), (7, 120), (8, 240), (10, 960)],
)
def test_delay_after_failures_gives_table_seconds(failures: int, seconds: float) -> None:
    assert unlock.delay_after(failures) == seconds


def test_check_not_throttled_under_free_attempts_never_refuses() -> None:
    unlock.check_not_throttled(4, blocked_until=10_000.0, now=0.0)


def test_check_not_throttled_blocked_refuses_with_wait_seconds() -> None:
    with pytest.raises(UnlockThrottledError, match=r"another 11 s") as info:
        unlock.check_not_throttled(5, blocked_until=110.0, now=99.5)
    assert info.value.facts == {"wait_seconds": 11, "failures": 5}
    assert "wait 11 s" in str(info.value)


def test_check_not_throttled_at_block_end_allows() -> None:
    unlock.check_not_throttled(5, blocked_until=130.0, now=130.0)


# -- Vault.unlock ------------------------------------------------------------------------------


def test_unlock_right_passphrase_unlocks(setup: Setup) -> None:
    setup.vault.unlock(SecretBytes(PASSPHRASE))
    assert setup.vault.is_unlocked


def test_unlock_four_wrong_then_right_passphrase_unlocks_and_resets(setup: Setup) -> None:
    _fail(setup.vault, 4)
    assert _failures(setup, setup.vault) == 4
    setup.vault.unlock(SecretBytes(PASSPHRASE))
    assert _failures(setup, setup.vault) == 0


def test_unlock_five_wrong_then_right_passphrase_is_throttled(setup: Setup) -> None:
    _fail(setup.vault, 5)
    with pytest.raises(UnlockThrottledError, match=r"refused for another \d+ s") as info:
        setup.vault.unlock(SecretBytes(PASSPHRASE))
    assert 30 <= int(info.value.facts["wait_seconds"]) <= 31
    assert "Next: wait" in str(info.value)
    assert not setup.vault.is_unlocked


def test_unlock_throttled_wrong_passphrase_is_refused_without_counting(setup: Setup) -> None:
    _fail(setup.vault, 5)
    with pytest.raises(UnlockThrottledError):
        setup.vault.unlock(SecretBytes(WRONG))
    assert _failures(setup, setup.vault) == 5


def test_unlock_just_before_block_ends_is_still_refused(setup: Setup) -> None:
    _fail(setup.vault, 5)
    setup.clock.advance(29.5)
    with pytest.raises(UnlockThrottledError, match=r"another 1 s"):
        setup.vault.unlock(SecretBytes(PASSPHRASE))


def test_unlock_after_30_s_right_passphrase_unlocks_and_resets(setup: Setup) -> None:
    _fail(setup.vault, 5)
    setup.clock.advance(30)
    setup.vault.unlock(SecretBytes(PASSPHRASE))
    assert setup.vault.is_unlocked
    assert _failures(setup, setup.vault) == 0
    # After the reset, one more mistake is a free attempt again, not a 60 s block.
    setup.vault.lock()
    _fail(setup.vault, 1)
    setup.vault.unlock(SecretBytes(PASSPHRASE))


def test_unlock_sixth_wrong_after_block_gives_60_s_block(setup: Setup) -> None:
    _fail(setup.vault, 5)
    setup.clock.advance(30)
    _fail(setup.vault, 1)
    assert _failures(setup, setup.vault) == 6
    setup.clock.advance(59)
    with pytest.raises(UnlockThrottledError) as info:
        setup.vault.unlock(SecretBytes(PASSPHRASE))
    assert info.value.facts["failures"] == 6
    setup.clock.advance(1)
    setup.vault.unlock(SecretBytes(PASSPHRASE))
    assert setup.vault.is_unlocked


def test_unlock_failure_counter_survives_reopening_from_disk(setup: Setup) -> None:
    _fail(setup.vault, 5)
    setup.vault.db.close()
    reopened = setup.reopen()
    try:
        with pytest.raises(UnlockThrottledError):
            reopened.unlock(SecretBytes(PASSPHRASE))
        setup.clock.advance(30)
        reopened.unlock(SecretBytes(PASSPHRASE))
    finally:
        reopened.db.close()


def test_unlock_throttled_attempt_does_not_run_argon2(setup: Setup, argon2_spy: Argon2Spy) -> None:
    _fail(setup.vault, 5)
    assert argon2_spy.calls == 5
    for secret in (PASSPHRASE, WRONG):
        with pytest.raises(UnlockThrottledError):
            setup.vault.unlock(SecretBytes(secret))
    assert argon2_spy.calls == 5


def test_unlock_failures_are_audited_with_count_and_block(setup: Setup) -> None:
    _fail(setup.vault, 5)
    rows = [e for e in audit.list_entries(setup.vault) if e.action == "vault.unlock"]
    assert [e.outcome for e in rows] == ["failure"] * 5
    assert [e.details["failures"] for e in rows] == [1, 2, 3, 4, 5]
    assert [e.details["blocked_seconds"] for e in rows] == [0, 0, 0, 0, 30]
    assert all(e.actor == "owner" for e in rows)
    assert all(e.target == f"vault:{setup.vault.vault_id}" for e in rows)
    assert audit.verify(setup.vault).ok


def test_unlock_failure_audit_rows_never_hold_the_passphrase(setup: Setup) -> None:
    _fail(setup.vault, 2)
    text = repr(audit.list_entries(setup.vault))
    for form in (WRONG.decode(), WRONG.hex()):
        assert form not in text


def test_unlock_concurrent_wrong_attempts_in_the_server_get_at_most_five_argon2_runs(
    setup: Setup, argon2_spy: Argon2Spy
) -> None:
    # Ten logins at once, as the server's threads would take them: attempts run one at a time
    # and each is counted before the next is checked, so the sixth on is refused unrun.
    handles = [setup.reopen() for _ in range(10)]
    barrier = threading.Barrier(10)

    def attempt(v: Vault) -> None:
        barrier.wait(timeout=30)
        with contextlib.suppress(WrongPassphraseError, UnlockThrottledError):
            v.unlock(SecretBytes(WRONG))

    threads = [threading.Thread(target=attempt, args=(v,)) for v in handles]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
    finally:
        for v in handles:
            v.db.close()
    assert argon2_spy.calls == unlock.FREE_ATTEMPTS
    assert _failures(setup, setup.vault) == unlock.FREE_ATTEMPTS


def test_unlock_concurrent_right_passphrases_never_throttle_each_other(setup: Setup) -> None:
    handles = [setup.reopen() for _ in range(12)]
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []

    def attempt(v: Vault) -> None:
        barrier.wait(timeout=30)
        try:
            v.unlock(SecretBytes(PASSPHRASE))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(v,)) for v in handles]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
        assert not errors, errors
        assert all(v.is_unlocked for v in handles)
    finally:
        for v in handles:
            v.lock()
            v.db.close()
    assert _failures(setup, setup.vault) == 0


def test_unlock_interrupted_inside_argon2_counts_nothing(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail(setup.vault, 4)

    def interrupted(passphrase: bytes | bytearray, salt: bytes, params: Argon2Params) -> bytearray:
        raise KeyboardInterrupt  # Ctrl-C while the key is being derived: nothing was learned

    monkeypatch.setattr(hierarchy, "argon2id", interrupted)
    for _ in range(3):
        with pytest.raises(KeyboardInterrupt):
            setup.vault.unlock(SecretBytes(WRONG))
    monkeypatch.undo()
    assert _failures(setup, setup.vault) == 4
    setup.vault.unlock(SecretBytes(PASSPHRASE))  # not throttled: four failures, not seven
