"""The keygen's end-to-end channel (mpc/channel.py): only the receiver opens a message, only
as the round, sender and session it was sealed for; between agent and recovery a message the
relay made (without the join code's MAC key) is refused even though it can seal to their keys."""

from __future__ import annotations

import secrets

import pytest

from keysafe.mpc import channel
from keysafe.mpc.channel import Channel, ChannelError

SID = secrets.token_bytes(32)


def _parties(sid: bytes = SID, mac: bytes | None = None) -> dict[int, Channel]:
    keys = {i: channel.new_key() for i in (1, 2, 3)}
    pubs = {i: channel.public_bytes(k) for i, k in keys.items()}
    mac = mac or secrets.token_bytes(32)
    macs = {1: {3: mac}, 2: {}, 3: {1: mac}}
    return {
        i: Channel(sid, i, keys[i], {j: p for j, p in pubs.items() if j != i}, macs[i])
        for i in keys
    }


def test_each_pair_round_trips_and_the_sealed_bytes_hide_the_payload() -> None:
    c = _parties()
    for a in c:
        for b in c:
            if a != b:
                sealed = c[a].seal(4, b, b"payload %d->%d" % (a, b))
                assert b"payload" not in sealed
                assert c[b].open(4, a, sealed) == b"payload %d->%d" % (a, b)


@pytest.mark.parametrize(
    ("round_", "sender", "opener"),
    [(5, 1, 3), (4, 2, 3), (4, 1, 2)],  # another round, another claimed sender, another receiver
)
def test_attack_a_message_moved_to_another_round_sender_or_receiver_does_not_open(
    round_: int, sender: int, opener: int
) -> None:
    c = _parties()
    sealed = c[1].seal(4, 3, b"for 3 in round 4")
    with pytest.raises(ChannelError) as caught:
        c[opener].open(round_, sender, sealed)
    assert caught.value.culprit == sender


def test_attack_a_message_from_another_session_does_not_open() -> None:
    mine, other = _parties(), _parties(secrets.token_bytes(32))
    # same keys, other session id: the receiver's channel binds its own session
    replay = Channel(
        secrets.token_bytes(32), 1, mine[1].key, dict(mine[1].peers), dict(mine[1].macs)
    ).seal(1, 3, b"x")
    with pytest.raises(ChannelError):
        mine[3].open(1, 1, replay)
    assert other  # a second, unrelated ceremony opens nothing of the first either:
    with pytest.raises(ChannelError):
        other[3].open(1, 1, mine[1].seal(1, 3, b"x"))


def test_attack_the_relay_cannot_forge_between_agent_and_recovery_without_the_code() -> None:
    c = _parties()
    # the relay knows every public key and can seal to 3 as "1", but has no MAC key
    relay = Channel(SID, 1, channel.new_key(), dict(c[1].peers), {})
    forged = relay.seal(2, 3, b"evil round 2 share")
    with pytest.raises(ChannelError, match="MAC"):
        c[3].open(2, 1, forged)
    wrong_mac = Channel(SID, 1, channel.new_key(), dict(c[1].peers), {3: secrets.token_bytes(32)})
    with pytest.raises(ChannelError, match="MAC"):
        c[3].open(2, 1, wrong_mac.seal(2, 3, b"evil"))
    # to and from the vault there is no MAC: the vault is the other end
    assert c[2].open(2, 1, c[1].seal(2, 2, b"to the vault")) == b"to the vault"


def test_attack_one_flipped_bit_anywhere_is_refused() -> None:
    c = _parties()
    sealed = c[1].seal(3, 3, b"confirmation")
    for i in range(len(sealed)):
        bent = bytearray(sealed)
        bent[i] ^= 0x01
        with pytest.raises(ChannelError):
            c[3].open(3, 1, bytes(bent))


def test_announce_tag_binds_session_party_and_key() -> None:
    mac, key = secrets.token_bytes(32), channel.public_bytes(channel.new_key())
    tag = channel.announce_tag(mac, SID, 1, key)
    assert tag != channel.announce_tag(mac, secrets.token_bytes(32), 1, key)
    assert tag != channel.announce_tag(mac, SID, 3, key)
    assert tag != channel.announce_tag(mac, SID, 1, channel.public_bytes(channel.new_key()))
    assert tag != channel.announce_tag(secrets.token_bytes(32), SID, 1, key)
