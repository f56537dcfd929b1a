"""BIP-39 (english) via the `mnemonic` package against trezor/python-mnemonic vectors.json."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import mnemonic
import pytest
from mnemonic import Mnemonic

from tests.vectors import load_json, read_bytes

# SHA-256 of bip-0039/english.txt, as stated in the vectors README (bip39/ section).
ENGLISH_SHA256 = "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"

M = Mnemonic("english")


def _english() -> list[Any]:
    vectors = load_json("bip39/vectors.json")["english"]
    assert len(vectors) == 24
    return [pytest.param(*v, id=f"{i}-{len(v[1].split())}words") for i, v in enumerate(vectors)]


@pytest.mark.parametrize(("entropy", "words", "seed", "xprv"), _english())
def test_entropy_to_mnemonic(entropy: str, words: str, seed: str, xprv: str) -> None:
    assert M.to_mnemonic(bytes.fromhex(entropy)) == words


@pytest.mark.parametrize(("entropy", "words", "seed", "xprv"), _english())
def test_mnemonic_to_entropy(entropy: str, words: str, seed: str, xprv: str) -> None:
    assert M.check(words)
    assert bytes(M.to_entropy(words)) == bytes.fromhex(entropy)


@pytest.mark.parametrize(("entropy", "words", "seed", "xprv"), _english())
def test_bad_checksum_rejected(entropy: str, words: str, seed: str, xprv: str) -> None:
    # The lowest bit of the last word is always a checksum bit (checksum is 4-8 bits), so
    # flipping it keeps the entropy and breaks the checksum, deterministically.
    parts = words.split()
    parts[-1] = M.wordlist[M.wordlist.index(parts[-1]) ^ 1]
    bad = " ".join(parts)
    assert not M.check(bad)
    with pytest.raises(ValueError, match="checksum"):
        M.to_entropy(bad)


@pytest.mark.parametrize(("entropy", "words", "seed", "xprv"), _english())
def test_seed_with_passphrase_trezor(entropy: str, words: str, seed: str, xprv: str) -> None:
    derived = Mnemonic.to_seed(words, passphrase="TREZOR")
    assert derived == bytes.fromhex(seed)
    assert Mnemonic.to_seed(words, passphrase="") != derived  # the passphrase is used


@pytest.mark.parametrize(("entropy", "words", "seed", "xprv"), _english())
def test_seed_to_master_xprv(entropy: str, words: str, seed: str, xprv: str) -> None:
    assert M.to_hd_master_key(bytes.fromhex(seed)) == xprv


def test_wordlist_sha256_matches_readme() -> None:
    raw = read_bytes("bip39/english.txt")
    assert hashlib.sha256(raw).hexdigest() == ENGLISH_SHA256
    assert ENGLISH_SHA256 in read_bytes("README.md").decode("utf-8")
    words = raw.decode("ascii").split("\n")
    assert words[-1] == ""  # LF-terminated, no CR
    assert len(words[:-1]) == 2048


def test_wordlist_equals_mnemonic_package_list() -> None:
    raw = read_bytes("bip39/english.txt")
    assert M.wordlist == raw.decode("ascii").splitlines()
    package_file = Path(mnemonic.__file__).parent / "wordlist" / "english.txt"
    assert hashlib.sha256(package_file.read_bytes()).hexdigest() == ENGLISH_SHA256
