"""The record recipe: envelope encryption whose AAD binds every public fact about the row."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from keysafe.crypto import aead
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError
from keysafe.vault.records import RecordRef, Sealed, open_sealed, seal

VAULT_ID = "a" * 32
OTHER_VAULT_ID = "b" * 32
EPOCH = 3
PLAINTEXT = b"CANARY-record-3b7e-ghp_secret-token"
REF = RecordRef(
    id="0123456789abcdef0123456789abcdef",
    kind="credential",
    name="github",
    data_class="sensitive",
    version=2,
    meta={"hosts": ["api.github.com"], "attach": {"type": "header", "name": "Authorization"}},
)


def _epoch_key() -> SecretBytes:
    return SecretBytes.adopt(aead.new_key())


def _seal(key: SecretBytes, ref: RecordRef = REF, plaintext: bytes = PLAINTEXT) -> Sealed:
    return seal(VAULT_ID, EPOCH, key, ref, SecretBytes(plaintext))


def test_seal_then_open_returns_plaintext() -> None:
    key = _epoch_key()
    sealed = _seal(key)
    with open_sealed(VAULT_ID, key, REF, sealed) as plain:
        assert bytes(plain.reveal()) == PLAINTEXT
    assert sealed.epoch == EPOCH


def test_seal_ciphertext_does_not_contain_plaintext() -> None:
    sealed = _seal(_epoch_key())
    for blob in (sealed.ciphertext, sealed.dek_wrapped):
        assert PLAINTEXT not in blob
    assert len(sealed.ciphertext) == len(PLAINTEXT) + aead.TAG_SIZE


def test_seal_empty_plaintext_round_trips() -> None:
    key = _epoch_key()
    sealed = _seal(key, plaintext=b"")
    with open_sealed(VAULT_ID, key, REF, sealed) as plain:
        assert bytes(plain.reveal()) == b""


@dataclass(frozen=True)
class Swap:
    """How the row is changed between seal and open; opening must then fail."""

    vault_id: str = VAULT_ID
    ref: RecordRef = REF
    sealed: Callable[[Sealed], Sealed] = lambda s: s


AAD_CASES = {
    "other vault id": Swap(vault_id=OTHER_VAULT_ID),
    "other record id": Swap(ref=dataclasses.replace(REF, id="f" * 32)),
    "other kind": Swap(ref=dataclasses.replace(REF, kind="data")),
    "renamed": Swap(ref=dataclasses.replace(REF, name="gitlab")),
    "class lowered to standard": Swap(ref=dataclasses.replace(REF, data_class="standard")),
    "version rolled back": Swap(ref=dataclasses.replace(REF, version=1)),
    "version bumped": Swap(ref=dataclasses.replace(REF, version=3)),
    "meta host edited": Swap(
        ref=dataclasses.replace(REF, meta={**REF.meta, "hosts": ["evil.example.com"]})
    ),
    "meta key added": Swap(ref=dataclasses.replace(REF, meta={**REF.meta, "extra": True})),
    "meta key removed": Swap(ref=dataclasses.replace(REF, meta={"hosts": REF.meta["hosts"]})),
    "epoch number changed": Swap(sealed=lambda s: dataclasses.replace(s, epoch=EPOCH + 1)),
    "ciphertext bit flipped": Swap(
        sealed=lambda s: dataclasses.replace(
            s, ciphertext=bytes([s.ciphertext[0] ^ 1]) + s.ciphertext[1:]
        )
    ),
    "wrapped data key bit flipped": Swap(
        sealed=lambda s: dataclasses.replace(
            s, dek_wrapped=s.dek_wrapped[:-1] + bytes([s.dek_wrapped[-1] ^ 1])
        )
    ),
    "nonce replaced": Swap(sealed=lambda s: dataclasses.replace(s, nonce=aead.new_nonce())),
    "ciphertext truncated": Swap(sealed=lambda s: dataclasses.replace(s, ciphertext=b"")),
}


@pytest.mark.parametrize("case", AAD_CASES.values(), ids=AAD_CASES.keys())
def test_open_sealed_changed_row_raises_integrity_error(case: Swap) -> None:
    key = _epoch_key()
    sealed = _seal(key)
    with pytest.raises(IntegrityError, match="failed its integrity check") as info:
        open_sealed(case.vault_id, key, case.ref, case.sealed(sealed))
    assert info.value.facts["record"] == case.ref.id
    assert PLAINTEXT.decode() not in str(info.value)


def test_open_sealed_wrong_epoch_key_raises_integrity_error() -> None:
    sealed = _seal(_epoch_key())
    with pytest.raises(IntegrityError):
        open_sealed(VAULT_ID, _epoch_key(), REF, sealed)


def test_open_sealed_ciphertext_moved_to_other_row_raises_integrity_error() -> None:
    key = _epoch_key()
    victim = _seal(key)
    other_ref = dataclasses.replace(REF, id="e" * 32, name="other")
    other = _seal(key, ref=other_ref, plaintext=b"other")
    # Paste the victim's ciphertext (and its wrapped data key) into the other row.
    pasted = dataclasses.replace(
        other,
        dek_nonce=victim.dek_nonce,
        dek_wrapped=victim.dek_wrapped,
        nonce=victim.nonce,
        ciphertext=victim.ciphertext,
    )
    with pytest.raises(IntegrityError):
        open_sealed(VAULT_ID, key, other_ref, pasted)


def test_seal_same_plaintext_twice_gives_fresh_nonces_and_ciphertexts() -> None:
    key = _epoch_key()
    a, b = _seal(key), _seal(key)
    assert a.nonce != b.nonce
    assert a.dek_nonce != b.dek_nonce
    assert a.nonce != a.dek_nonce
    assert a.ciphertext != b.ciphertext
    assert a.dek_wrapped != b.dek_wrapped


def test_seal_uses_fresh_data_key_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    key = _epoch_key()
    made: list[bytes] = []
    real_new_key = aead.new_key

    def spy() -> bytearray:
        k = real_new_key()
        made.append(bytes(k))  # copied now: seal() wipes its data key when done
        return k

    monkeypatch.setattr(aead, "new_key", spy)
    _seal(key)
    _seal(key)
    assert len(made) == 2
    assert made[0] != made[1]
    assert bytes(key.reveal()) not in made


def test_seal_wipes_data_key_after_use(monkeypatch: pytest.MonkeyPatch) -> None:
    key = _epoch_key()
    handed_out: list[bytearray] = []
    real_new_key = aead.new_key

    def spy() -> bytearray:
        k = real_new_key()
        handed_out.append(k)
        return k

    monkeypatch.setattr(aead, "new_key", spy)
    _seal(key)
    assert handed_out == [bytearray(aead.KEY_SIZE)]
