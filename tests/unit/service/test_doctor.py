"""service/doctor.py's pieces that the e2e tests cannot reach: what a URL is shown as, and the
advice for an unlock that is slow on this machine (the measured time is faked, as a clock is)."""

from __future__ import annotations

import json

import pytest

from keysafe.crypto.kdf import DEFAULT_ARGON2
from keysafe.service import doctor_local
from keysafe.service.doctor_local import key_derivation
from keysafe.service.findings import Status, where

KEY = "k3y-canary-0b9d"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://mainnet.example.io/v3/{KEY}", "https://mainnet.example.io"),
        (f"https://user:{KEY}@rpc.example.io:8443/?api-key={KEY}#x", "https://rpc.example.io:8443"),
        (f"http://127.0.0.1:8545/{KEY}?{KEY}=1", "http://127.0.0.1:8545"),
        (f"wss://ws.example.io/{KEY}", "wss://ws.example.io"),
    ],
)
def test_where_shows_scheme_host_and_port_only(url: str, shown: str) -> None:
    assert where(url) == shown
    assert KEY not in where(url)


def _params(**changes: int) -> str:
    return json.dumps(DEFAULT_ARGON2.to_dict() | changes)


def test_kdf_slow_at_the_default_cost_says_keep_the_server_unlocked_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(doctor_local, "_seconds_per_unlock", lambda params: 5.0)
    found = key_derivation(_params())
    assert found.status is Status.WARN
    assert "5.00 s per unlock" in found.summary
    assert found.fix is not None and "--idle-lock" in found.fix


def test_kdf_slow_above_the_default_cost_says_rewrap_at_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(doctor_local, "_seconds_per_unlock", lambda params: 9.0)
    found = key_derivation(_params(memory_kib=512 * 1024))
    assert found.status is Status.WARN
    assert found.fix is not None and "keysafe passphrase change" in found.fix


def test_kdf_out_of_bounds_header_fails_without_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(params: object) -> float:
        raise AssertionError("a header outside the bounds must not be run")

    monkeypatch.setattr(doctor_local, "_seconds_per_unlock", never)
    found = key_derivation(_params(memory_kib=64 * 1024 * 1024))
    assert found.status is Status.FAIL
    assert found.fix is not None and "backup" in found.fix
