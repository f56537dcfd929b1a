"""The parts under DKLs23 signing: the GF(2^256) arithmetic of the OT-extension check, the
pair setup (base OTs both ways, zero-share seed), the OT extension and the multiplication, each
checked for what it must compute and for what a cheating peer can and cannot get past it."""

from __future__ import annotations

import random
import secrets

import pytest

from keysafe.mpc.dkls import gf2, multiply, ote, setup
from keysafe.mpc.dkls.errors import DklsAbort
from keysafe.mpc.dkls.wire import HEADER_LEN, Kind, N, Reader, pack
from tests.unit.mpc.dkls_helpers import Wallet, make_wallet


@pytest.fixture(scope="module")
def wallet() -> Wallet:
    return make_wallet(b"dkls-parts")


# -- GF(2^256) ---------------------------------------------------------------------------------


def _poly_mod(a: int, b: int) -> int:
    while a.bit_length() >= b.bit_length():
        a ^= b << (a.bit_length() - b.bit_length())
    return a


def test_gf2_modulus_is_irreducible() -> None:
    """Rabin's test for degree 2^8: x^(2^256) ≡ x (mod f) and gcd(x^(2^128) − x, f) = 1."""
    x = 2
    power = x
    for _ in range(128):
        power = gf2.multiply(power, power)
    half = power
    for _ in range(128):
        power = gf2.multiply(power, power)
    assert power == x
    a, b = gf2.MODULUS, half ^ x
    while b:
        a, b = b, _poly_mod(a, b)
    assert a == 1


def test_gf2_table_multiplier_and_hashes_match_the_schoolbook_product() -> None:
    rng = random.Random(7)
    for _ in range(20):
        c, a, b = (rng.getrandbits(256) for _ in range(3))
        times_c = gf2.Multiplier(c)
        assert times_c(a) == gf2.multiply(c, a) == gf2.multiply(a, c)
        assert times_c(a ^ b) == times_c(a) ^ times_c(b)
    values = [rng.getrandbits(256) for _ in range(40)]
    expected = 0
    for v in values:
        expected = gf2.multiply(expected, c) ^ v
    assert times_c.horner(values) == expected
    bits = rng.getrandbits(64)
    assert gf2.horner_bits(times_c, bits, 64) == times_c.horner((bits >> k) & 1 for k in range(64))


def test_transpose_puts_column_bits_into_rows() -> None:
    rng = random.Random(3)
    columns = [rng.getrandbits(ote.ROWS) for _ in range(ote.KAPPA)]
    rows = ote.transpose(columns)
    assert len(rows) == ote.ROWS
    for k, i in ((0, 0), (5, 7), (ote.ROWS - 1, ote.KAPPA - 1), (400, 200)):
        assert (rows[k] >> i) & 1 == (columns[i] >> k) & 1


# -- pair setup ------------------------------------------------------------------------------


def test_setup_gives_each_direction_a_correct_ot_correlation(wallet: Wallet) -> None:
    """For every ordered pair: the OT-extension sender's seed of column i is the receiver's seed
    for Δ_i, and not the other one; both sides hold the same zero-share seed."""
    for (me, peer), state in wallet.pairs.items():
        other = wallet.pairs[(peer, me)]
        assert state.zero_seed == other.zero_seed
        bits = ote.delta_bits(state.sender.delta)
        assert 0 < sum(bits) < ote.KAPPA
        for i, seed in enumerate(state.sender.seeds):
            pair = other.receiver.seeds[i]
            assert seed == pair[bits[i]] != pair[1 - bits[i]]


def test_pair_state_round_trips_and_refuses_a_truncated_copy(wallet: Wallet) -> None:
    state = wallet.pairs[(1, 2)]
    assert setup.PairState.from_bytes(state.to_bytes()) == state
    banned = state.ban()
    assert setup.PairState.from_bytes(banned.to_bytes()).banned
    with pytest.raises(DklsAbort):
        setup.PairState.from_bytes(state.to_bytes()[:-1])
    assert "seed" not in repr(state) and state.zero_seed.hex() not in repr(state)


SETUP1_FIELDS = {"z": 0, "proof commitment": 33, "proof response": 66, "seed commitment": 98}
SETUP2_FIELDS = {
    "h[0]": 0,
    "c0[0]": 33,
    "c1[0]": 65,
    "z0[0]": 97,
    "z1[0]": 129,
    "h[200]": 200 * 161,
    "z1[255]": 255 * 161 + 129,
    "seed opening": 256 * 161,
}


def _flip(message: bytes, offset: int) -> bytes:
    at = HEADER_LEN + offset
    return message[:at] + bytes([message[at] ^ 0x01]) + message[at + 1 :]


@pytest.mark.parametrize("field", [*SETUP1_FIELDS, *SETUP2_FIELDS])
def test_attack_tampered_setup_message_aborts_naming_the_sender(wallet: Wallet, field: str) -> None:
    pk, sid = wallet.public_key, secrets.token_bytes(32)
    honest, cheat = setup.round1(pk, sid, 1, 2), setup.round1(pk, sid, 2, 1)
    first = honest[1]
    cheat_first = cheat[1]
    if field in SETUP1_FIELDS:
        cheat_first = _flip(cheat_first, SETUP1_FIELDS[field])
    with pytest.raises(DklsAbort) as caught:
        setup.round2(honest[0], cheat_first)
        cheat_second = setup.round2(cheat[0], first)
        if field in SETUP2_FIELDS:
            cheat_second = _flip(cheat_second, SETUP2_FIELDS[field])
        setup.finish(honest[0], cheat_second)
    assert caught.value.culprit == 2


def test_attack_replayed_setup_message_is_refused(wallet: Wallet) -> None:
    pk = wallet.public_key
    state, _ = setup.round1(pk, secrets.token_bytes(32), 1, 2)
    _, old_first = setup.round1(pk, secrets.token_bytes(32), 2, 1)  # another run's message
    with pytest.raises(DklsAbort, match="another session") as caught:
        setup.round2(state, old_first)
    assert caught.value.culprit == 2
    _, first = setup.round1(pk, state.session_id[:0] + secrets.token_bytes(32), 2, 1)
    with pytest.raises(DklsAbort, match="already used"):
        setup.round2(state, first)  # the state was consumed by the refused attempt


# -- OT extension ------------------------------------------------------------------------------


def _reader(message: bytes, kind: Kind, body_len: int, sid: bytes) -> Reader:
    return Reader(message, kind=kind, body_len=body_len, session_id=sid, sender=2, receiver=1)


def test_ot_extension_rows_are_correlated_by_delta(wallet: Wallet) -> None:
    alice, bob = wallet.pairs[(1, 2)], wallet.pairs[(2, 1)]
    sid = secrets.token_bytes(32)
    choices = secrets.randbits(ote.ROWS)
    t_rows, body = ote.extend_receiver(bob.receiver, sid, choices, secrets.token_bytes)
    q_rows = ote.extend_sender(
        alice.sender, sid, _reader(pack(Kind.SIGN1, sid, 2, 1, body), Kind.SIGN1, len(body), sid)
    )
    delta = alice.sender.delta
    for k in range(ote.ROWS):
        assert q_rows[k] == t_rows[k] ^ (delta if (choices >> k) & 1 else 0)


def test_attack_inconsistent_choice_bit_is_caught_exactly_when_delta_would_leak(
    wallet: Wallet,
) -> None:
    """A receiver that flips its choice bit k in column i only: the check fails (and bans) when
    Δ_i = 1; when Δ_i = 0 the sender never reads that column of u and nothing changes. That
    one-bit selective failure is why a failed check bans the pair instead of allowing a retry."""
    alice, bob = wallet.pairs[(1, 2)], wallet.pairs[(2, 1)]
    bits = ote.delta_bits(alice.sender.delta)
    sid = secrets.token_bytes(32)
    choices = secrets.randbits(ote.ROWS)
    t_rows, body = ote.extend_receiver(bob.receiver, sid, choices, secrets.token_bytes)
    nonce, u = (
        body[: ote.NONCE_LEN],
        body[ote.NONCE_LEN : ote.NONCE_LEN + ote.KAPPA * ote.ROW_BYTES],
    )
    for i in (bits.index(1), bits.index(0)):
        at = i * ote.ROW_BYTES + 3  # column i, a byte of rows 24..31
        bent = u[:at] + bytes([u[at] ^ 0x10]) + u[at + 1 :]
        # the cheater recomputes the check values for its bent message, as its claim x, t
        chi = ote._challenge(sid, nonce, bent)
        x_tilde, t_tilde = gf2.horner_bits(chi, choices, ote.ROWS), chi.horner(t_rows)
        cheat = nonce + bent + x_tilde.to_bytes(32, "little") + t_tilde.to_bytes(32, "little")
        reader = _reader(pack(Kind.SIGN1, sid, 2, 1, cheat), Kind.SIGN1, len(cheat), sid)
        if bits[i]:
            with pytest.raises(DklsAbort, match="consistency check") as caught:
                ote.extend_sender(alice.sender, sid, reader)
            assert caught.value.culprit == 2 and caught.value.ban
        else:
            honest = _reader(pack(Kind.SIGN1, sid, 2, 1, body), Kind.SIGN1, len(body), sid)
            assert ote.extend_sender(alice.sender, sid, reader) == ote.extend_sender(
                alice.sender, sid, honest
            )


def test_attack_bent_ot_extension_message_without_recomputed_check_is_always_caught(
    wallet: Wallet,
) -> None:
    """The check's challenge hashes u, so any change a cheater does not answer fails it."""
    alice, bob = wallet.pairs[(1, 2)], wallet.pairs[(2, 1)]
    sid = secrets.token_bytes(32)
    _, body = ote.extend_receiver(
        bob.receiver, sid, secrets.randbits(ote.ROWS), secrets.token_bytes
    )
    for at in (0, ote.NONCE_LEN + 5, len(body) - 64, len(body) - 1):
        bent = body[:at] + bytes([body[at] ^ 0x80]) + body[at + 1 :]
        with pytest.raises(DklsAbort, match="consistency check") as caught:
            ote.extend_sender(
                alice.sender,
                sid,
                _reader(pack(Kind.SIGN1, sid, 2, 1, bent), Kind.SIGN1, len(bent), sid),
            )
        assert caught.value.ban


# -- multiplication ----------------------------------------------------------------------------


def test_multiplication_shares_add_up_to_the_products(wallet: Wallet) -> None:
    alice, bob = wallet.pairs[(1, 2)], wallet.pairs[(2, 1)]
    for _ in range(3):
        sid = secrets.token_bytes(32)
        state, body = multiply.receiver_start(bob.receiver, sid, secrets.token_bytes)
        inputs = [secrets.randbelow(N), secrets.randbelow(N)]
        c, answer = multiply.sender_respond(
            alice.sender,
            sid,
            inputs,
            _reader(pack(Kind.SIGN1, sid, 2, 1, body), Kind.SIGN1, len(body), sid),
            secrets.token_bytes,
        )
        d = multiply.receiver_finish(
            state,
            Reader(
                pack(Kind.SIGN2, sid, 1, 2, answer),
                kind=Kind.SIGN2,
                body_len=len(answer),
                session_id=sid,
                sender=1,
                receiver=2,
            ),
        )
        assert 0 < state.b < N
        assert [(ci + di) % N for ci, di in zip(c, d, strict=True)] == [
            a * state.b % N for a in inputs
        ]
