"""End-to-end envelopes: only the receiver reads one, only the sender writes one, and the
receiver refuses what is tampered, forged, misdirected, replayed, reordered or stale."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from keysafe.crypto import jcs
from keysafe.relay import envelope
from keysafe.relay.envelope import (
    FRESH_MS,
    EnvelopeRefused,
    Freshness,
    Identity,
    Kind,
    Message,
    Sender,
    now_ms,
    open_sealed,
    seal,
)

CANARY = "0xCANARYrecipient00000000000000000000dead"


@pytest.fixture
def ends() -> tuple[Identity, Identity]:
    return Identity.generate(), Identity.generate()  # a sidecar, a vault


def _request(sidecar: Identity, vault: Identity, sender: Sender | None = None) -> Message:
    sender = sender or Sender(sidecar)
    return sender.message(Kind.REQUEST, vault.rid, "ab" * 16, {"to": CANARY, "amount": "1.5"})


def _open(
    vault: Identity, sidecar: Identity, sealed: bytes, *, sender: str | None = None
) -> Message:
    return open_sealed(
        vault,
        sealed,
        sender=sender or sidecar.rid,
        key_of=lambda m: bytes(sidecar.sign.verify_key) if m.sender == sidecar.rid else None,
    )


def test_a_sealed_message_opens_as_itself_for_its_receiver_only(
    ends: tuple[Identity, Identity],
) -> None:
    sidecar, vault = ends
    message = _request(sidecar, vault)
    sealed = seal(sidecar, vault.public, message)
    assert CANARY.encode() not in sealed and b"1.5" not in sealed  # the relay reads nothing
    assert _open(vault, sidecar, sealed) == message
    stranger = Identity.generate()
    with pytest.raises(EnvelopeRefused) as refused:
        open_sealed(stranger, sealed, sender=sidecar.rid, key_of=lambda m: None)
    assert refused.value.reason == "tampered"


def test_attack_every_flipped_byte_is_refused(ends: tuple[Identity, Identity]) -> None:
    sidecar, vault = ends
    sealed = seal(sidecar, vault.public, _request(sidecar, vault))
    for i in range(0, len(sealed), max(1, len(sealed) // 64)):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises(EnvelopeRefused) as refused:
            _open(vault, sidecar, bytes(bad))
        assert refused.value.reason == "tampered"


def test_attack_a_relay_cannot_claim_another_sender(ends: tuple[Identity, Identity]) -> None:
    """The relay says who sent an envelope; lying about it makes the envelope fail to open."""
    sidecar, vault = ends
    other = Identity.generate()
    sealed = seal(sidecar, vault.public, _request(sidecar, vault))
    with pytest.raises(EnvelopeRefused) as refused:
        _open(vault, sidecar, sealed, sender=other.rid)
    assert refused.value.reason == "tampered"


def test_attack_anyone_can_seal_to_the_vault_but_not_sign_as_the_sidecar(
    ends: tuple[Identity, Identity],
) -> None:
    """HPKE base mode lets anyone who knows the vault's public key write to it, under any
    sender's routing id: the signature inside is what proves the sidecar wrote it."""
    sidecar, vault = ends
    forger = Identity.generate()
    message = _request(sidecar, vault)  # names the sidecar as sender
    plain = jcs.dumps(message.model_dump(mode="json"))
    signature = forger.sign.sign(b"keysafe/relay/v1/envelope\n" + plain).signature
    sealed = envelope._SUITE.encrypt(
        signature + plain,
        X25519PublicKey.from_public_bytes(vault.public.kem),
        info=envelope._info(sidecar.rid, vault.rid),
    )
    with pytest.raises(EnvelopeRefused) as refused:
        _open(vault, sidecar, sealed)
    assert refused.value.reason == "forged"
    with pytest.raises(ValueError, match="names its sender"):
        seal(forger, vault.public, message)  # and seal() itself will not write as another


def test_attack_a_message_sealed_for_another_vault_is_misdirected_or_unopenable(
    ends: tuple[Identity, Identity],
) -> None:
    sidecar, vault = ends
    other_vault = Identity.generate()
    sealed = seal(sidecar, other_vault.public, _request(sidecar, other_vault))
    with pytest.raises(EnvelopeRefused):
        _open(vault, sidecar, sealed)


def test_attack_replayed_envelopes_are_refused(ends: tuple[Identity, Identity]) -> None:
    sidecar, vault = ends
    fresh = Freshness()
    sealed = seal(sidecar, vault.public, _request(sidecar, vault))
    fresh.check(_open(vault, sidecar, sealed))
    with pytest.raises(EnvelopeRefused) as refused:
        fresh.check(_open(vault, sidecar, sealed))
    assert refused.value.reason == "replayed"


def test_attack_reordered_envelopes_are_refused(ends: tuple[Identity, Identity]) -> None:
    sidecar, vault = ends
    fresh = Freshness()
    numbering = Sender(sidecar)
    first = seal(sidecar, vault.public, _request(sidecar, vault, numbering))
    second = seal(sidecar, vault.public, _request(sidecar, vault, numbering))
    fresh.check(_open(vault, sidecar, second))
    with pytest.raises(EnvelopeRefused) as refused:
        fresh.check(_open(vault, sidecar, first))
    assert refused.value.reason == "reordered"
    # A new sender session (the sidecar restarted) starts its own numbering.
    fresh.check(_open(vault, sidecar, seal(sidecar, vault.public, _request(sidecar, vault))))


def test_attack_stale_envelopes_are_refused(ends: tuple[Identity, Identity]) -> None:
    sidecar, vault = ends
    message = _request(sidecar, vault)
    fresh = Freshness(started_ms=message.ts - 10 * FRESH_MS)
    with pytest.raises(EnvelopeRefused) as refused:
        fresh.check(message, now=message.ts + FRESH_MS + 1)
    assert refused.value.reason == "stale"
    # One captured before the receiver (re)started, replayed after: its memory is gone, but
    # the message is older than the receiver itself.
    restarted = Freshness(started_ms=now_ms() + 60_000)
    with pytest.raises(EnvelopeRefused) as refused:
        restarted.check(message, now=message.ts + 61_000)
    assert refused.value.reason == "stale"


def test_the_memory_of_accepted_messages_stays_bounded(ends: tuple[Identity, Identity]) -> None:
    sidecar, vault = ends
    fresh = Freshness(started_ms=0)
    numbering = Sender(sidecar)
    t0 = now_ms()
    for i in range(200):
        m = _request(sidecar, vault, numbering)
        fresh.check(Message(**(m.model_dump() | {"ts": t0 + i * 1000})), now=t0 + i * 1000)
    assert len(fresh._nonces) <= FRESH_MS // 1000 + 2
