"""Signing Solana transactions and messages: slots, verification, and no seed in any output."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import pytest
from nacl.signing import VerifyKey
from solders.keypair import Keypair
from solders.message import to_bytes_versioned
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from keysafe.chains.base58 import base58_decode, base58_encode
from keysafe.chains.solana import (
    SignedSolanaTx,
    intent_from_message,
    parse_transaction,
    sign_message,
    sign_transaction,
    signing,
)
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, KeysafeError, MalformedRequestError
from keysafe.policy.registry import Registry
from tests.unit.chains.solana import (
    BOB,
    MALLORY,
    SOL,
    SPONSOR,
    SPONSOR_KP,
    WALLET,
    encode,
    legacy_b64,
    legacy_message,
    price,
    program_call,
    sol_transfer,
    table,
    unsigned,
    v0_b64,
    v0_message,
    wallet_seed,
)

SOLANA = Registry.builtin().chain("solana")


def _verified(signed: SignedSolanaTx) -> VersionedTransaction:
    tx = VersionedTransaction.from_bytes(base64.b64decode(signed.base64))
    assert tx.verify_with_results() == [True] * len(tx.signatures)
    return tx


@pytest.mark.parametrize(
    "b64",
    [
        legacy_b64([sol_transfer(BOB, SOL // 2)]),
        v0_b64([price(5), sol_transfer(BOB, SOL // 2)]),
        v0_b64([sol_transfer(BOB, 1), program_call()], tables=[table(BOB)]),
    ],
    ids=["legacy", "v0", "v0 with lookup table"],
)
def test_sign_then_every_signature_verifies(b64: str) -> None:
    tx = parse_transaction(b64)
    signed = sign_transaction(tx, wallet_seed())
    out = _verified(signed)
    assert signed.signer == str(WALLET) and signed.fully_signed
    assert out.signatures[0] == Signature.from_string(signed.signature_b58)
    assert bytes(to_bytes_versioned(out.message)) == tx.message_bytes
    assert signed.transaction_id == signed.signature_b58


def test_wallet_as_fee_payer_signs_slot_zero() -> None:
    tx = parse_transaction(legacy_b64([sol_transfer(BOB, 1)]))
    assert tx.fee_payer == str(WALLET) and tx.signer_index(str(WALLET)) == 0
    signed = sign_transaction(tx, wallet_seed())
    out = _verified(signed)
    assert str(out.signatures[0]) == signed.signature_b58
    expected = Keypair.from_seed(bytes(range(1, 33))).sign_message(tx.message_bytes)
    assert out.signatures[0] == expected  # Ed25519 is deterministic


def test_sponsored_fee_payer_keeps_its_signature_and_wallet_takes_slot_one() -> None:
    message = legacy_message([sol_transfer(BOB, 1)], payer=SPONSOR)
    raw = bytes(to_bytes_versioned(message))
    presigned = VersionedTransaction.populate(
        message, [SPONSOR_KP.sign_message(raw), Signature.default()]
    )
    tx = parse_transaction(encode(presigned))
    assert tx.is_signed_by(str(SPONSOR)) and not tx.is_signed_by(str(WALLET))
    signed = sign_transaction(tx, wallet_seed())
    out = _verified(signed)
    assert out.signatures[0] == presigned.signatures[0]
    assert str(out.signatures[1]) == signed.signature_b58
    assert signed.fully_signed and signed.transaction_id == str(out.signatures[0])


def test_sponsor_signing_later_leaves_its_slot_empty() -> None:
    tx = parse_transaction(v0_b64([sol_transfer(BOB, 1)], payer=SPONSOR))
    signed = sign_transaction(tx, wallet_seed())
    out = VersionedTransaction.from_bytes(base64.b64decode(signed.base64))
    assert out.verify_with_results() == [False, True]
    assert out.signatures[0] == Signature.default()
    assert not signed.fully_signed and signed.transaction_id is None


def test_a_bad_foreign_signature_is_refused() -> None:
    message = legacy_message([sol_transfer(BOB, 1)], payer=SPONSOR)
    forged = Keypair.from_seed(bytes([9] * 32)).sign_message(bytes(message))
    tx = parse_transaction(
        encode(VersionedTransaction.populate(message, [forged, Signature.default()]))
    )
    with pytest.raises(MalformedRequestError, match=f"slot 0 \\(signer {SPONSOR}\\)"):
        sign_transaction(tx, wallet_seed())


def test_an_old_wallet_signature_is_replaced() -> None:
    stale = Keypair.from_seed(bytes([9] * 32)).sign_message(b"other message")
    tx = parse_transaction(
        encode(VersionedTransaction.populate(legacy_message([sol_transfer(BOB, 1)]), [stale]))
    )
    _verified(sign_transaction(tx, wallet_seed()))


def test_wallet_that_is_not_a_signer_is_refused() -> None:
    tx = parse_transaction(legacy_b64([sol_transfer(BOB, 1, source=MALLORY)], payer=MALLORY))
    with pytest.raises(MalformedRequestError, match="not a required signer"):
        sign_transaction(tx, wallet_seed())


def test_seed_of_wrong_size_or_type_is_a_bug_error_without_the_value() -> None:
    with pytest.raises(ValueError, match="32 bytes") as info:
        sign_transaction(
            parse_transaction(legacy_b64([sol_transfer(BOB, 1)])), SecretBytes(b"x" * 31)
        )
    assert "xxx" not in str(info.value)
    with pytest.raises(ValueError, match="SecretBytes"):
        sign_message(b"hi", bytes(32))  # type: ignore[arg-type]


# -- messages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding"),
    [("Sign in to example.com", "utf8"), (base64.b64encode(bytes(range(256))).decode(), "base64")],
    ids=["utf8", "base64 binary"],
)
def test_message_signature_is_base58_and_verifies_with_pynacl(text: str, encoding: str) -> None:
    _, raw = intent_from_message(text, encoding=encoding, chain=SOLANA)  # type: ignore[arg-type]
    signature_b58 = sign_message(raw, wallet_seed())
    signature = bytes(base58_decode(signature_b58))
    assert len(signature) == 64 and base58_encode(signature) == signature_b58
    VerifyKey(bytes(WALLET)).verify(raw, signature)  # raises if it does not verify
    assert Signature.from_string(signature_b58).verify(WALLET, raw)


# -- the seed never shows -----------------------------------------------------------------------

CANARY = b"CANARY-SEED-DO-NOT-LEAK-01234567"
assert len(CANARY) == 32


def _forms(seed: bytes) -> list[str]:
    kp = Keypair.from_seed(seed)
    return [
        seed.decode("latin-1"),
        seed.hex(),
        seed.hex().upper(),
        base58_encode(seed),
        base58_encode(bytes(kp)),
        str(kp),
        base64.b64encode(seed).decode(),
        "CANARY-SEED",
        str(list(seed))[1:-1],
    ]


def test_canary_seed_never_appears_in_results_errors_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wallet = Keypair.from_seed(CANARY).pubkey()
    outputs: list[str] = []
    seed = SecretBytes(bytearray(CANARY))
    outputs += [repr(seed), str(seed), f"{seed}"]

    good = parse_transaction(legacy_b64([sol_transfer(BOB, 1)], payer=wallet))
    signed = sign_transaction(good, SecretBytes(bytearray(CANARY)))
    outputs += [repr(signed), str(signed), signed.base64]
    outputs.append(sign_message(b"hello", SecretBytes(bytearray(CANARY))))

    sponsored = legacy_message([sol_transfer(BOB, 1, source=wallet)], payer=SPONSOR)
    bad = Keypair.from_seed(bytes([9] * 32)).sign_message(bytes(sponsored))
    forged = parse_transaction(
        encode(VersionedTransaction.populate(sponsored, [bad, Signature.default()]))
    )
    failing: list[Callable[[], object]] = [
        lambda: sign_transaction(
            parse_transaction(legacy_b64([sol_transfer(BOB, 1)])), SecretBytes(bytearray(CANARY))
        ),
        lambda: sign_transaction(forged, SecretBytes(bytearray(CANARY))),
        lambda: sign_transaction(good, SecretBytes(bytearray(CANARY[:31]))),
    ]
    for call in failing:
        with pytest.raises((KeysafeError, ValueError)) as info:
            call()
        exc = info.value
        outputs += [str(exc), repr(exc), repr(exc.args)]
        if isinstance(exc, KeysafeError):
            outputs.append(repr(exc.to_dict()))
    outputs.append(caplog.text)

    blob = "\n".join(outputs)
    for form in _forms(CANARY):
        assert form not in blob, f"seed leaked as {form[:12]}…"


@pytest.mark.parametrize("what", ["transaction", "message"])
def test_own_signature_that_fails_libsodium_is_an_integrity_error(
    what: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: a second library disagreeing must stop the result from leaving.
    monkeypatch.setattr(signing, "verify_ed25519", lambda *_: False)
    with pytest.raises(IntegrityError, match="did not verify"):
        if what == "transaction":
            sign_transaction(parse_transaction(legacy_b64([sol_transfer(BOB, 1)])), wallet_seed())
        else:
            sign_message(b"hello", wallet_seed())


def test_signing_does_not_change_the_judged_message() -> None:
    msg = v0_message([sol_transfer(BOB, 3)], tables=[table(BOB)])
    tx = parse_transaction(encode(unsigned(msg)))
    signed = parse_transaction(sign_transaction(tx, wallet_seed()).base64)
    assert signed.message_bytes == tx.message_bytes == bytes(to_bytes_versioned(msg))
