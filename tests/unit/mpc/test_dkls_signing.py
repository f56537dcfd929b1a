"""DKLs23 signing between any two of the three parties: signatures that eth-account accepts
for transactions and messages, and a cheating co-signer that never gets a wrong signature out
of an honest party: every bent field of every message aborts, naming it."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace

import pytest
from coincurve import PublicKey
from eth_account import Account
from eth_account.messages import encode_defunct

from keysafe.chains.addresses import evm_address_from_public
from keysafe.chains.evm import signing as evm_signing
from keysafe.chains.evm.tx import parse_transaction
from keysafe.mpc.dkls import multiply, ote, setup, signing
from keysafe.mpc.dkls.errors import DklsAbort
from keysafe.mpc.dkls.wire import HEADER_LEN, N, hash_to_scalar
from keysafe.mpc.frost.groups import SECP256K1
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER, lagrange
from tests.unit.mpc.dkls_helpers import Wallet, make_wallet, run_session, set_up_pair
from tests.unit.mpc.test_frost_dkg import run_reshare

PAIRS = [(AGENT, USER), (USER, AGENT), (AGENT, RECOVERY), (RECOVERY, USER)]


@pytest.fixture(scope="module")
def wallet() -> Wallet:
    return make_wallet(b"dkls-signing")


def _address(wallet: Wallet) -> str:
    return evm_address_from_public(wallet.public_key)


@pytest.mark.parametrize(("honest", "other"), PAIRS)
def test_every_pair_signs_and_eth_account_recovers_the_wallet(
    wallet: Wallet, honest: int, other: int
) -> None:
    digest = hashlib.sha3_256(f"{honest}{other}".encode()).digest()
    outcome, _ = run_session(wallet, honest, other, digest)
    sig = outcome.signature
    assert sig is not None and outcome.abort is None
    assert 0 < sig.s <= N // 2  # low S (EIP-2)
    recovered = PublicKey.from_signature_and_message(sig.to_bytes(), digest, hasher=None)
    assert recovered.format(compressed=True) == wallet.public_key
    vrs = (sig.recovery_id + 27, sig.r, sig.s)
    assert Account._recover_hash(digest, vrs=vrs) == _address(wallet)


def test_eip1559_legacy_and_personal_message_signatures_verify_with_eth_account(
    wallet: Wallet,
) -> None:
    address = _address(wallet)
    for fields in (
        {"type": 2, "maxFeePerGas": 3 * 10**9, "maxPriorityFeePerGas": 10**9},
        {"type": 0, "gasPrice": 2 * 10**9},
    ):
        tx = parse_transaction(
            {
                "to": "0x000000000000000000000000000000000000dEaD",
                "value": 12345,
                "nonce": 7,
                "gas": 21000,
                "chainId": 31337,
                **fields,
            }
        )
        digest = evm_signing.transaction_hash(tx)
        sig = run_session(wallet, AGENT, USER, digest)[0].signature
        assert sig is not None
        signed = evm_signing.assemble_transaction(tx, sig.r, sig.s, sig.recovery_id, address)
        assert Account.recover_transaction(signed.raw_hex) == address
    signable = encode_defunct(text="hello from a key that never existed")
    sig = run_session(wallet, RECOVERY, USER, evm_signing.message_hash(signable))[0].signature
    assert sig is not None
    text = evm_signing.assemble_message_signature(signable, sig.r, sig.s, sig.recovery_id, address)
    assert Account.recover_message(signable, signature=bytes.fromhex(text[2:])) == address


# -- a cheating co-signer ----------------------------------------------------------------------

ROUND1 = {
    "commitment": 0,
    "ote nonce": 32,
    "ote u[0]": 64,
    "ote u[last]": 64 + 24063,
    "ote x~": 24128,
    "ote t~": 24160,
}
ROUND2 = {
    "gamma u": 0,
    "gamma v": 33,
    "pk": 66,
    "R": 99,
    "psi": 132,
    "salt": 164,
    "mul salt": 196,
    "mul tau[0]": 228,
    "mul tau[last]": 228 + 53247,
    "mul r[0]": 53476,
    "mul r[last]": 53476 + 13311,
    "mul u[0]": 66788,
    "mul u[1]": 66820 + 31,
}
ROUND3 = {"u": 0, "w": 32 + 31}
FIELDS = (
    [(1, f, o) for f, o in ROUND1.items()]
    + [(2, f, o) for f, o in ROUND2.items()]
    + [(3, f, o) for f, o in ROUND3.items()]
)


def _flip_at(offset: int, mask: int = 0x01):  # type: ignore[no-untyped-def]
    def edit(message: bytes) -> bytes:
        at = HEADER_LEN + offset
        return message[:at] + bytes([message[at] ^ mask]) + message[at + 1 :]

    return edit


@pytest.mark.parametrize(("round_", "field", "offset"), FIELDS, ids=[f[1] for f in FIELDS])
def test_attack_any_bent_field_aborts_naming_the_sender_and_never_yields_a_signature(
    wallet: Wallet, round_: int, field: str, offset: int
) -> None:
    digest = secrets.token_bytes(32)
    outcome, _ = run_session(wallet, AGENT, USER, digest, edit={round_: _flip_at(offset)})
    assert outcome.signature is None, f"a bent {field} still gave a signature"
    assert outcome.abort is not None and outcome.abort.culprit == USER
    # a bent value that parses is caught by a check on reusable state: the pair is done
    if field in {"ote nonce", "ote u[0]", "ote u[last]", "ote x~", "ote t~", "psi", "u", "w"} or (
        field.startswith("mul")
    ):
        assert outcome.abort.ban, outcome.abort


def test_attack_wrong_key_share_is_caught_by_the_public_key_check(wallet: Wallet) -> None:
    """A co-signer that multiplies with a share that is not its own (consistently, so the Γ
    checks pass) is caught because its pk_j no longer adds up to the wallet's key."""
    bad = Wallet(dict(wallet.keys), dict(wallet.pairs))
    bad.keys[USER] = replace(
        wallet.keys[USER], signing_share=(wallet.keys[USER].signing_share + 1) % N
    )
    outcome, _ = run_session(bad, AGENT, USER, secrets.token_bytes(32))
    assert outcome.signature is None and outcome.abort is not None
    assert outcome.abort.culprit == USER and outcome.abort.ban
    assert "do not add up" in str(outcome.abort)


def test_attack_message_from_another_session_or_party_is_refused(wallet: Wallet) -> None:
    digest, nonce = secrets.token_bytes(32), secrets.token_bytes(32)
    mine, _ = signing.round1(wallet.keys[AGENT], wallet.pairs[(AGENT, USER)], digest, nonce)
    _, other_session = signing.round1(
        wallet.keys[USER], wallet.pairs[(USER, AGENT)], digest, secrets.token_bytes(32)
    )
    with pytest.raises(DklsAbort, match="another session") as caught:
        signing.round2(mine, other_session)
    assert caught.value.culprit == USER and not caught.value.ban

    mine, _ = signing.round1(wallet.keys[AGENT], wallet.pairs[(AGENT, USER)], digest, nonce)
    _, from_recovery = signing.round1(
        wallet.keys[RECOVERY], wallet.pairs[(RECOVERY, AGENT)], digest, nonce
    )
    with pytest.raises(DklsAbort):  # another pair's session id, and the wrong sender
        signing.round2(mine, from_recovery)


def test_attack_replayed_round_is_refused(wallet: Wallet) -> None:
    digest, nonce = secrets.token_bytes(32), secrets.token_bytes(32)
    mine, first = signing.round1(wallet.keys[AGENT], wallet.pairs[(AGENT, USER)], digest, nonce)
    theirs, their_first = signing.round1(
        wallet.keys[USER], wallet.pairs[(USER, AGENT)], digest, nonce
    )
    signing.round2(mine, their_first)
    with pytest.raises(DklsAbort, match="already used"):
        signing.round2(mine, their_first)
    del theirs, first


def test_parties_given_different_messages_never_reach_a_secret_step(wallet: Wallet) -> None:
    nonce = secrets.token_bytes(32)
    mine, _ = signing.round1(wallet.keys[AGENT], wallet.pairs[(AGENT, USER)], b"a" * 32, nonce)
    _, theirs = signing.round1(wallet.keys[USER], wallet.pairs[(USER, AGENT)], b"b" * 32, nonce)
    with pytest.raises(DklsAbort, match="another session"):
        signing.round2(mine, theirs)


def test_a_banned_pair_refuses_to_start(wallet: Wallet) -> None:
    with pytest.raises(DklsAbort, match="banned") as caught:
        signing.round1(wallet.keys[AGENT], wallet.pairs[(AGENT, USER)].ban(), b"x" * 32, b"n" * 32)
    assert caught.value.culprit == USER and caught.value.ban


def test_key_never_exists_in_any_message_or_pair_state(wallet: Wallet) -> None:
    """The wallet's private key (computed here, outside the protocol, from two shares) and each
    party's share appear in no message of setup or signing and in no saved pair state; a
    negative control shows the scan would find them."""
    x = (
        sum(
            lagrange(SECP256K1, i, (AGENT, USER)) * wallet.keys[i].signing_share
            for i in (AGENT, USER)
        )
        % N
    )
    assert SECP256K1.base_mul(x) == wallet.public_key
    needles = [x.to_bytes(32, "big"), x.to_bytes(32, "little")]
    for key in wallet.keys.values():
        needles += [key.signing_share.to_bytes(32, "big"), key.signing_share.to_bytes(32, "little")]
    captured: list[bytes] = [state.to_bytes() for state in wallet.pairs.values()]
    sid = secrets.token_bytes(32)
    sa, ma = setup.round1(wallet.public_key, sid, AGENT, USER)
    sb, mb = setup.round1(wallet.public_key, sid, USER, AGENT)
    ra, rb = setup.round2(sa, mb), setup.round2(sb, ma)
    captured += [ma, mb, ra, rb, setup.finish(sa, rb).to_bytes(), setup.finish(sb, ra).to_bytes()]
    for honest, other in PAIRS:
        outcome, _ = run_session(wallet, honest, other, secrets.token_bytes(32), wire=captured)
        assert outcome.signature is not None
    assert len(captured) == 6 + 6 + 6 * len(PAIRS)  # states, setup, every session message
    # a reshare by user + recovery (its wire), new pair setups, and a signature with the new
    # shares: still the same key, still nowhere
    reshared = run_reshare({i: wallet.keys[i] for i in (USER, RECOVERY)}, (USER, RECOVERY))
    captured += reshared.wire
    fresh = Wallet(dict(reshared.keys), {})
    sid = secrets.token_bytes(32)
    for a, b in ((AGENT, USER), (AGENT, RECOVERY), (USER, RECOVERY)):
        fresh.pairs[(a, b)], fresh.pairs[(b, a)] = set_up_pair(wallet.public_key, sid, a, b)
    captured += [state.to_bytes() for state in fresh.pairs.values()]
    assert fresh.public_key == wallet.public_key
    outcome, _ = run_session(fresh, AGENT, RECOVERY, secrets.token_bytes(32), wire=captured)
    assert outcome.signature is not None
    for key in fresh.keys.values():
        needles += [key.signing_share.to_bytes(32, "big"), key.signing_share.to_bytes(32, "little")]

    def leaks(blob: bytes) -> bool:
        return any(n in blob for n in needles)

    blob = b"".join(captured)
    assert not leaks(blob)
    assert leaks(blob[:1000] + needles[0] + blob[1000:])  # negative control


def test_attack_replayed_session_with_flipped_choices_does_not_reveal_the_share(
    wallet: Wallet,
) -> None:
    """Found in review: the same session id run twice (a replayed request, a retry), with the
    cheater repeating its OT-extension nonce and flipping every choice bit. The honest sender's
    pads used to swap roles, so τ + τ' = 2·α gave away sk_i and, with ζ, the share. The sender's
    fresh salt in the pads stops it: the sum is noise."""
    honest, evil = AGENT, USER
    digest, nonce = secrets.token_bytes(32), secrets.token_bytes(32)
    ote_nonce = secrets.token_bytes(32)
    choices = secrets.token_bytes(ote.ROW_BYTES)

    def evil_rng(choice_bytes: bytes):  # type: ignore[no-untyped-def]
        queue = [
            secrets.token_bytes(64),
            secrets.token_bytes(64),
            secrets.token_bytes(32),
            choice_bytes,
            ote_nonce,
        ]
        return lambda n: queue.pop(0)

    taus = []
    for cb in (choices, bytes(b ^ 0xFF for b in choices)):
        mine, _ = signing.round1(wallet.keys[honest], wallet.pairs[(honest, evil)], digest, nonce)
        _, theirs = signing.round1(
            wallet.keys[evil], wallet.pairs[(evil, honest)], digest, nonce, rng=evil_rng(cb)
        )
        answer = signing.round2(mine, theirs)  # the check passes: the choices are consistent
        tau = answer[HEADER_LEN + 4 * 33 + 32 + 32 + multiply.SALT_LEN :]
        taus.append([int.from_bytes(tau[i : i + 32], "big") for i in range(0, 4 * 32, 32)])
    sk = (taus[0][1] + taus[1][1]) * pow(2, -1, N) % N
    sid = signing.session_id(wallet.public_key, digest, (honest, evil), nonce)
    zeta = hash_to_scalar(b"keysafe/dkls23/sign/zero", wallet.pairs[(evil, honest)].zero_seed, sid)
    share = (sk - zeta) * pow(lagrange(SECP256K1, honest, (honest, evil)), -1, N) % N
    assert share != wallet.keys[honest].signing_share


def test_attack_an_aborted_session_refuses_every_later_round(wallet: Wallet) -> None:
    """Found in review: after a failed check the state went on to the next round (and died
    with an IndexError). Now an abort kills the session: every later round is refused cleanly."""
    digest, nonce = secrets.token_bytes(32), secrets.token_bytes(32)
    mine, first = signing.round1(wallet.keys[AGENT], wallet.pairs[(AGENT, USER)], digest, nonce)
    theirs, their_first = signing.round1(
        wallet.keys[USER], wallet.pairs[(USER, AGENT)], digest, nonce
    )
    bent = their_first[:-1] + bytes([their_first[-1] ^ 1])  # t~: the OT-extension check fails
    with pytest.raises(DklsAbort, match="consistency check"):
        signing.round2(mine, bent)
    their_second = signing.round2(theirs, first)
    with pytest.raises(DklsAbort, match="aborted"):
        signing.round3(mine, their_second)
    with pytest.raises(DklsAbort, match="aborted"):
        signing.finish(mine, b"")
    assert (mine.r_i, mine.phi, mine.sk) == (0, 0, 0)  # the secrets are dropped
