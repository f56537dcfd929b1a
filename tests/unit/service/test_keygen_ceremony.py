"""A 2-of-3 keygen with each party apart: the vault's party in `service/keygen.py`, the agent
and the recovery party as `keygen_party.Party`, each in its own thread, every message through
the vault's mailbox, sealed end to end. Attacks: a relay that swaps the agent's or the recovery
party's key for its own (a vault in the middle would end up with two shares), a relayed message
altered or moved to another round, a message sent as another party, a repeated round."""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keysafe.agent_models import KeygenPost, KeygenView, Sealed
from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    AlreadyExistsError,
    IntegrityError,
    KeysafeError,
    MalformedRequestError,
    NotFoundError,
    PolicyDeniedError,
)
from keysafe.mpc import ceremony, channel, share_file
from keysafe.mpc.ceremony import CeremonyFailed, JoinCode, Party, Send, keep_and_confirm
from keysafe.mpc.channel import Channel
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import ED25519, SECP256K1
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER, lagrange
from keysafe.mpc.keygen import KeygenParty
from keysafe.mpc.share_file import Share
from keysafe.service import agents, audit, keygen, threshold_records
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault
from tests.unit.service import ceremony_support


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    v, _ = init_vault(
        Home(tmp_path / "home"),
        SecretBytes(bytearray(b"vault passphrase for tests")),
        kdf=CHEAP_KDF,
        clock=lambda: datetime.now(UTC),
    )
    agents.add_agent(v, "bot")
    yield v
    v.volatile.clear()


def _sender(vault: Vault, party: int) -> Send:
    return lambda kid, post: keygen.exchange(vault, kid, party, post, agent="bot")


@dataclass
class Run:
    shares: dict[int, Share] = field(default_factory=dict)
    addresses: dict[int, str] = field(default_factory=dict)
    errors: dict[int, BaseException] = field(default_factory=dict)


def _play(party: Party, run: Run, deadline: float = 30) -> None:
    import time

    try:
        share = party.run(time.monotonic() + deadline)
        run.shares[party.me] = share
        run.addresses[party.me] = party.confirm(time.monotonic() + deadline)
    except BaseException as exc:
        run.errors[party.me] = exc


def _keygen(
    vault: Vault,
    chain: Chain,
    *,
    agent_send: Callable[[Send], Send] = lambda s: s,
    recovery_send: Callable[[Send], Send] = lambda s: s,
    code: Callable[[str], str] = lambda c: c,
    deadline: float = 30,
) -> Run:
    """The recovery party opens the keygen, the agent joins with the code; both run apart."""
    key = channel.new_key()
    started = keygen.start(
        vault, "team", chain, "bot", base64.b64encode(channel.public_bytes(key)).decode()
    )
    recovery = Party.recovery(recovery_send(_sender(vault, RECOVERY)), key, started)
    agent = Party.agent(
        agent_send(_sender(vault, AGENT)), JoinCode.decode(code(recovery.join_code()))
    )
    return _both(recovery, agent, deadline)


def _both(recovery: Party, agent: Party, deadline: float = 30) -> Run:
    """Run the two remote parties, each in a thread of its own, to the end."""
    run = Run()
    threads = [threading.Thread(target=_play, args=(p, run, deadline)) for p in (recovery, agent)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return run


@pytest.mark.parametrize("chain", [Chain.SOLANA, Chain.EVM])
def test_three_parties_apart_make_one_wallet_and_each_holds_only_its_share(
    vault: Vault, chain: Chain
) -> None:
    run = _keygen(vault, chain)
    assert not run.errors, run.errors
    info = threshold_records.threshold_wallet(vault, "team")
    vault_share = threshold_records.vault_share(vault, info)
    assert run.addresses[AGENT] == run.addresses[RECOVERY] == info.info.meta["address"]
    suite = SECP256K1 if chain is Chain.EVM else ED25519
    assert vault_share.key.suite is suite
    shares = {AGENT: run.shares[AGENT], USER: vault_share, RECOVERY: run.shares[RECOVERY]}
    public = vault_share.key.public
    for i, s in shares.items():  # each share is its own, and checks out against the package
        assert s.key.identifier == i
        assert suite.base_mul(s.key.signing_share) == public.verifying_shares[i]
        if chain is Chain.EVM:
            assert sorted(s.pairs) == sorted(set(shares) - {i})
    # any two shares interpolate to the same key: the sharing is 2-of-3 and consistent
    secrets_ = set()
    for pair in ((AGENT, USER), (AGENT, RECOVERY), (USER, RECOVERY)):
        x = sum(lagrange(suite, i, pair) * shares[i].key.signing_share for i in pair) % suite.order
        secrets_.add(x)
    assert len(secrets_) == 1 and suite.base_mul(secrets_.pop()) == public.group_public_key
    entries = [e for e in audit.list_entries(vault) if e.action == "wallet.create"]
    assert [e.outcome for e in entries] == ["success"]


def _swap_key(party: int) -> Callable[[Send], Send]:
    """A relay that announces its own key for `party` (what a vault in the middle must do)."""
    mine = channel.new_key()

    def wrap(send: Send) -> Send:
        def relayed(kid: str, post: KeygenPost) -> KeygenView:
            view = send(kid, post)
            if party in view.keys:
                view.keys[party] = base64.b64encode(channel.public_bytes(mine)).decode()
            return view

        return relayed

    return wrap


def test_attack_relay_swapping_the_agent_key_is_refused_by_the_recovery_party(
    vault: Vault,
) -> None:
    run = _keygen(vault, Chain.EVM, recovery_send=_swap_key(AGENT))
    assert isinstance(run.errors.get(RECOVERY), IntegrityError)
    assert "tag" in str(run.errors[RECOVERY])
    assert RECOVERY not in run.shares and AGENT not in run.shares
    # nothing stored:
    with pytest.raises(KeysafeError):
        threshold_records.threshold_wallet(vault, "team")


def test_attack_relay_swapping_the_recovery_key_is_refused_by_the_agent(vault: Vault) -> None:
    run = _keygen(vault, Chain.SOLANA, agent_send=_swap_key(RECOVERY))
    assert isinstance(run.errors.get(AGENT), IntegrityError)
    assert "join code" in str(run.errors[AGENT])
    assert not run.shares


def _alter(round_: int) -> Callable[[Send], Send]:
    """A relay that flips a bit of the recovery party's message of `round_`
    every time it hands it on."""

    def wrap(send: Send) -> Send:
        def relayed(kid: str, post: KeygenPost) -> KeygenView:
            view = send(kid, post)
            for i, m in enumerate(view.messages):
                if m.round == round_ and m.sender == RECOVERY:
                    body = bytearray(base64.b64decode(m.body))
                    body[-5] ^= 1
                    view.messages[i] = Sealed(
                        round=m.round,
                        sender=m.sender,
                        receiver=m.receiver,
                        body=base64.b64encode(bytes(body)).decode(),
                    )
            return view

        return relayed

    return wrap


@pytest.mark.parametrize("round_", [1, 2, 3, 4, 5])
def test_attack_altered_message_between_agent_and_recovery_stops_the_keygen(
    vault: Vault, round_: int
) -> None:
    run = _keygen(vault, Chain.EVM, agent_send=_alter(round_))
    err = run.errors.get(AGENT)
    assert isinstance(err, IntegrityError), run.errors
    assert err.facts.get("culprit") == RECOVERY
    assert not run.addresses
    assert run.errors.get(RECOVERY) is not None  # the abort reached the other party too
    entries = [e for e in audit.list_entries(vault) if e.action == "wallet.create"]
    assert [e.outcome for e in entries] == ["failure"]


def test_attack_message_moved_to_another_round_does_not_open(vault: Vault) -> None:
    # the recovery party's round-1 message shown to the agent as round 2's: same bytes, other
    # round; HPKE's info binds the round, so it does not open
    def wrap(send: Send) -> Send:
        def relayed(kid: str, post: KeygenPost) -> KeygenView:
            view = send(kid, post)
            r1 = [m for m in view.messages if m.round == 1 and m.sender == RECOVERY]
            view.messages = [m for m in view.messages if (m.round, m.sender) != (2, RECOVERY)]
            view.messages += [m.model_copy(update={"round": 2}) for m in r1]
            return view

        return relayed

    run = _keygen(vault, Chain.SOLANA, agent_send=wrap)
    assert isinstance(run.errors.get(AGENT), IntegrityError), run.errors
    assert not run.addresses


def test_attack_party_cannot_send_as_another_or_twice_differently(vault: Vault) -> None:
    key = channel.new_key()
    started = keygen.start(
        vault, "team", Chain.SOLANA, "bot", base64.b64encode(channel.public_bytes(key)).decode()
    )
    agent_key = base64.b64encode(channel.public_bytes(channel.new_key())).decode()
    tag = base64.b64encode(bytes(32)).decode()
    keygen.exchange(vault, started.id, RECOVERY, KeygenPost(tag=tag))  # the owner's tag
    keygen.exchange(vault, started.id, AGENT, agent="bot", post=KeygenPost(key=agent_key, tag=tag))
    as_recovery = Sealed(round=1, sender=RECOVERY, receiver=USER, body="AAAA")
    with pytest.raises(MalformedRequestError, match="cannot come from party 1"):
        keygen.exchange(
            vault, started.id, AGENT, agent="bot", post=KeygenPost(messages=[as_recovery])
        )
    with pytest.raises(MalformedRequestError, match="another key"):
        other = base64.b64encode(channel.public_bytes(channel.new_key())).decode()
        keygen.exchange(vault, started.id, AGENT, agent="bot", post=KeygenPost(key=other, tag=tag))
    once = Sealed(round=1, sender=AGENT, receiver=RECOVERY, body="AAAA")
    keygen.exchange(vault, started.id, AGENT, agent="bot", post=KeygenPost(messages=[once]))
    keygen.exchange(
        vault, started.id, AGENT, agent="bot", post=KeygenPost(messages=[once])
    )  # a retry: same
    with pytest.raises(MalformedRequestError, match="sent already"):
        twice = once.model_copy(update={"body": "BBBB"})
        keygen.exchange(vault, started.id, AGENT, agent="bot", post=KeygenPost(messages=[twice]))
    with pytest.raises(NotFoundError):
        keygen.exchange(vault, "00" * 32, AGENT, KeygenPost(), agent="bot")
    with pytest.raises(NotFoundError):  # another agent does not see it
        agents.add_agent(vault, "eve")
        keygen.exchange(vault, started.id, AGENT, KeygenPost(), agent="eve")


def test_the_agent_must_tag_its_key_and_a_taken_name_is_refused(vault: Vault) -> None:
    key = base64.b64encode(channel.public_bytes(channel.new_key())).decode()
    started = keygen.start(vault, "team", Chain.SOLANA, "bot", key)
    with pytest.raises(MalformedRequestError, match="tag"):
        keygen.exchange(vault, started.id, AGENT, agent="bot", post=KeygenPost(key=key))
    with pytest.raises(AlreadyExistsError, match="already open"):
        keygen.start(vault, "team", Chain.SOLANA, "bot", key)
    assert [v.id for v in keygen.pending(vault, "bot")] == [started.id]
    assert keygen.pending(vault, "other") == []


def test_wrong_join_code_is_refused_before_anything_is_sent(vault: Vault) -> None:
    with pytest.raises(MalformedRequestError, match="join code"):
        JoinCode.decode("ksj_short")
    with pytest.raises(MalformedRequestError, match="join code"):
        JoinCode.decode("not a code")
    code = JoinCode(bytes(32), bytes(16), bytes(32))
    assert JoinCode.decode(code.encode()) == code
    assert "mac" not in repr(code).lower() and code.encode() not in repr(code)


# -- reshare: any two parties deal, all three get new shares, each in its own thread ----------


def _reshare(
    vault: Vault,
    quorum: tuple[int, int],
    old: dict[int, Share],
    *,
    agent_send: Callable[[Send], Send] = lambda s: s,
) -> Run:
    key = channel.new_key()
    started = keygen.start_reshare(
        vault, "team", quorum, base64.b64encode(channel.public_bytes(key)).decode()
    )
    recovery = Party.recovery(_sender(vault, RECOVERY), key, started, old.get(RECOVERY))
    agent = Party.agent(
        agent_send(_sender(vault, AGENT)), JoinCode.decode(recovery.join_code()), old.get(AGENT)
    )
    return _both(recovery, agent)


@pytest.mark.parametrize("chain", [Chain.SOLANA, Chain.EVM])
def test_any_two_parties_reshare_to_three_new_shares_of_the_same_key(
    vault: Vault, chain: Chain
) -> None:
    made = _keygen(vault, chain)
    shares = dict(made.shares)
    info = threshold_records.threshold_wallet(vault, "team")
    address, pk = info.info.meta["address"], info.public().group_public_key
    suite = SECP256K1 if chain is Chain.EVM else ED25519
    # evict-the-agent (vault+recovery), lost recovery file (agent+vault), rebuild the vault's
    # share (agent+recovery): the party outside the quorum gets a share without dealing one
    for quorum in ((USER, RECOVERY), (AGENT, USER), (AGENT, RECOVERY)):
        before = threshold_records.threshold_wallet(vault, "team")
        old_vault = threshold_records.vault_share(vault, before)
        old = {i: s for i, s in shares.items() if i in quorum}
        run = _reshare(vault, quorum, old)
        assert not run.errors, (quorum, run.errors)
        assert run.addresses == {AGENT: address, RECOVERY: address}
        after = threshold_records.threshold_wallet(vault, "team")
        assert after.info.meta["generation"] == before.info.meta["generation"] + 1
        new = {**run.shares, USER: threshold_records.vault_share(vault, after)}
        assert new[USER].key.signing_share != old_vault.key.signing_share
        for i in (AGENT, RECOVERY):
            assert new[i].key.signing_share != shares[i].key.signing_share
        for pair in ((AGENT, USER), (USER, RECOVERY)):
            x = sum(lagrange(suite, i, pair) * new[i].key.signing_share for i in pair)
            assert suite.base_mul(x % suite.order) == pk
        # an old share and a new one do not combine: the old generation is dead
        x = sum(
            lagrange(suite, i, (AGENT, USER))
            * (shares[i].key.signing_share if i == AGENT else new[i].key.signing_share)
            for i in (AGENT, USER)
        )
        assert suite.base_mul(x % suite.order) != pk
        shares = {AGENT: new[AGENT], RECOVERY: new[RECOVERY]}
    outcomes = [e.outcome for e in audit.list_entries(vault) if e.action == "wallet.reshare"]
    assert outcomes == ["success"] * 3


def test_attack_a_dealer_with_a_stale_share_is_refused_and_nothing_changes(vault: Vault) -> None:
    made = _keygen(vault, Chain.SOLANA)
    first = dict(made.shares)
    assert not _reshare(vault, (USER, RECOVERY), {RECOVERY: first[RECOVERY]}).errors
    before = threshold_records.threshold_wallet(vault, "team")
    # the agent (now holding a new share) tries to deal its share of the old generation
    run = _reshare(vault, (AGENT, USER), {AGENT: first[AGENT]})
    assert isinstance(run.errors.get(AGENT), IntegrityError), run.errors
    assert "another key (or generation)" in str(run.errors[AGENT])
    after = threshold_records.threshold_wallet(vault, "team")
    assert after.info.meta["generation"] == before.info.meta["generation"]


def test_attack_a_dealer_dealing_something_else_than_its_share_is_named(vault: Vault) -> None:
    made = _keygen(vault, Chain.SOLANA)
    shares = dict(made.shares)
    bent = Share(replace(shares[AGENT].key, signing_share=shares[AGENT].key.signing_share + 1))
    # mpc/frost/reshare.deal refuses a share that does not match its verifying share, so this
    # dealer must lie past it: deal from a key package whose verifying share matches the lie
    public = bent.key.public
    lie = replace(
        public,
        verifying_shares={
            **public.verifying_shares,
            AGENT: ED25519.base_mul(bent.key.signing_share),
        },
    )
    bent = Share(replace(bent.key, public=lie))

    def wrap(send: Send) -> Send:
        def relayed(kid: str, post: KeygenPost) -> KeygenView:
            view = send(kid, post)
            if view.public is not None:
                view.public = lie.to_dict()  # so this agent's own check passes
            return view

        return relayed

    run = _reshare(vault, (AGENT, USER), {AGENT: bent}, agent_send=wrap)
    assert run.errors and not run.addresses
    vault_failure = next(e for e in audit.list_entries(vault) if e.action == "wallet.reshare")
    assert vault_failure.outcome == "failure" and "party 1" in str(vault_failure.details)


@pytest.mark.parametrize("chain", [Chain.SOLANA, Chain.EVM])
def test_agent_and_recovery_rebuild_the_wallet_on_a_new_vault(
    vault: Vault, tmp_path: Path, chain: Chain
) -> None:
    """The vault is lost: a new vault (another home, another master key) gets a fresh share of
    the same wallet from the agent's and the recovery file's shares; it signs with the agent."""
    files = {"share_key": "a share key for these tests only", "recovery_passphrase": "recovery pp"}
    address = ceremony_support.create(
        vault,
        "team",
        chain,
        "bot",
        agent_file=tmp_path / "a.json",
        recovery_file=tmp_path / "r.json",
        **files,
    )
    new, _ = init_vault(
        Home(tmp_path / "new-home"),
        SecretBytes(bytearray(b"another vault passphrase")),
        kdf=CHEAP_KDF,
        clock=lambda: datetime.now(UTC),
    )
    try:
        agents.add_agent(new, "bot")
        with pytest.raises(NotFoundError, match="--agent NAME"):
            keygen.start_reshare(
                new, "team", (AGENT, RECOVERY), base64.b64encode(bytes(32)).decode()
            )
        rebuilt = ceremony_support.reshare(
            new,
            "team",
            (AGENT, RECOVERY),
            agent_file=tmp_path / "a.json",
            recovery_file=tmp_path / "r.json",
            rebuild_for="bot",
            **files,
        )
        assert rebuilt == address
        info = threshold_records.threshold_wallet(new, "team")
        assert info.info.meta["address"] == address and info.info.meta["agent"] == "bot"
        # the new vault's share and the agent's new share make the key; the old vault's share
        # (of the dead generation) does not fit with them
        suite = SECP256K1 if chain is Chain.EVM else ED25519
        agent_share = share_file.open_agent_share(
            share_file.read(tmp_path / "a.json", "agent share file"),
            SecretBytes(bytearray(files["share_key"].encode())),
        )
        pair = (AGENT, USER)
        fresh = {
            AGENT: agent_share.key.signing_share,
            USER: threshold_records.vault_share(new, info).key.signing_share,
        }
        x = sum(lagrange(suite, i, pair) * fresh[i] for i in pair) % suite.order
        assert suite.base_mul(x) == info.public().group_public_key
        old_vault = threshold_records.vault_share(
            vault, threshold_records.threshold_wallet(vault, "team")
        )
        stale = {AGENT: fresh[AGENT], USER: old_vault.key.signing_share}
        x = sum(lagrange(suite, i, pair) * stale[i] for i in pair) % suite.order
        assert suite.base_mul(x) != info.public().group_public_key
        with pytest.raises(MalformedRequestError, match="only the agent and the recovery"):
            keygen.start_reshare(
                new,
                "other",
                (USER, RECOVERY),
                base64.b64encode(bytes(32)).decode(),
                rebuild=keygen.Rebuild(public=info.info.meta["public"], agent="bot"),
            )
    finally:
        new.lock()


# -- what the attack review found (helper report, this session) --------------------------------


def _started_with_agent(vault: Vault) -> tuple[KeygenView, Channel, Channel]:
    """A keygen with all three keys in; the agent's end of the channel (as a malicious agent,
    holding the join code's MAC key, would have it) and the recovery party's."""
    rec_key, agent_key = channel.new_key(), channel.new_key()
    started = keygen.start(
        vault, "team", Chain.SOLANA, "bot", base64.b64encode(channel.public_bytes(rec_key)).decode()
    )
    code = Party.recovery(_sender(vault, RECOVERY), rec_key, started).join_code()
    mac = JoinCode.decode(code).mac_key
    pub = channel.public_bytes(agent_key)
    tag = channel.announce_tag(mac, bytes.fromhex(started.id), AGENT, pub)
    keygen.exchange(vault, started.id, RECOVERY, KeygenPost(tag=_b64(bytes(32))))
    view = keygen.exchange(
        vault, started.id, AGENT, KeygenPost(key=_b64(pub), tag=_b64(tag)), agent="bot"
    )
    keys = {int(i): base64.b64decode(k) for i, k in view.keys.items()}
    sid = bytes.fromhex(started.id)
    agent_end = Channel(
        sid, AGENT, agent_key, {j: keys[j] for j in (USER, RECOVERY)}, {RECOVERY: mac}
    )
    rec_end = Channel(sid, RECOVERY, rec_key, {j: keys[j] for j in (AGENT, USER)}, {AGENT: mac})
    return view, agent_end, rec_end


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_attack_a_deeply_nested_message_stops_the_ceremony_cleanly_naming_the_sender(
    vault: Vault,
) -> None:
    """A message nested 90,000 levels deep used to crash the parties' processes (the recursion
    limit py_ecc raises) and jam the vault's ceremony (an uncaught RecursionError): now the
    reader refuses it, the vault fails the ceremony naming the sender, and the name is free."""
    view, agent_end, rec_end = _started_with_agent(vault)
    honest = KeygenParty(ED25519, RECOVERY, bytes.fromhex(view.id)).start()[USER]
    first = Sealed(
        round=1, sender=RECOVERY, receiver=USER, body=_b64(rec_end.seal(1, USER, honest))
    )
    keygen.exchange(vault, view.id, RECOVERY, KeygenPost(messages=[first]))
    bomb = b"[" * 90_000
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # what every keysafe process pins (wire.pin_recursion_limit)
    try:
        sealed = Sealed(
            round=1, sender=AGENT, receiver=USER, body=_b64(agent_end.seal(1, USER, bomb))
        )
        after = keygen.exchange(vault, view.id, AGENT, KeygenPost(messages=[sealed]), agent="bot")
        # the recovery party's own reader refuses it too, naming the agent
        sid = bytes.fromhex(view.id)
        mine, vaults = KeygenParty(ED25519, RECOVERY, sid), KeygenParty(ED25519, USER, sid)
        mine.start()
        with pytest.raises(FrostError, match="nested too deep") as caught:
            mine.step(1, {AGENT: bomb, USER: vaults.start()[RECOVERY]})
        assert caught.value.culprit == AGENT
    finally:
        sys.setrecursionlimit(old_limit)
    assert after.status == "failed" and "party 1" in (after.failure or ""), after.failure
    assert "nested too deep" in (after.failure or "")
    failed = [e for e in audit.list_entries(vault) if e.action == "wallet.create"]
    assert [e.outcome for e in failed] == ["failure"]
    # the name is free again at once
    keygen.start(vault, "team", Chain.SOLANA, "bot", _b64(bytes(32)))


def test_attack_a_party_held_back_to_the_deadline_still_learns_the_outcome(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished ceremony used to vanish at its fixed deadline, so an agent that held its
    confirmation back to the last moment made the owner's CLI find nothing and throw its new
    share away while the vault kept the wallet. Its outcome now stays readable (no secrets)
    for SETTLED_S after it ends."""
    monkeypatch.setattr(keygen, "TTL_S", 3)  # a deadline the test can wait out

    def late(send: Send) -> Send:  # the agent confirms just before the deadline
        def relayed(kid: str, post: KeygenPost) -> KeygenView:
            if any(m.round == 4 for m in post.messages):
                time.sleep(2.4)
            return send(kid, post)

        return relayed

    def slow(send: Send) -> Send:  # the owner's CLI next asks only after the deadline
        def relayed(kid: str, post: KeygenPost) -> KeygenView:
            view = send(kid, post)
            if any(m.round == 4 for m in post.messages):
                time.sleep(3.2)
            return view

        return relayed

    run = _keygen(vault, Chain.SOLANA, agent_send=late, recovery_send=slow)
    assert not run.errors, run.errors
    assert run.addresses[RECOVERY] == run.addresses[AGENT]
    assert (
        threshold_records.threshold_wallet(vault, "team").info.meta["address"]
        == run.addresses[AGENT]
    )
    (g,) = vault.volatile["keygens"].values()
    assert g.status == "done" and not g.mail  # the mail went with the secrets


def test_a_finished_or_failed_ceremony_keeps_no_secret_of_the_vaults_party(vault: Vault) -> None:
    made = _keygen(vault, Chain.EVM)
    assert not made.errors
    _reshare(vault, (USER, RECOVERY), {RECOVERY: made.shares[RECOVERY]}, agent_send=_alter(1))
    for g in vault.volatile["keygens"].values():
        assert g.status in ("done", "failed")
        party = g.party
        assert party.share is None and party._key is None and not party._setups
        assert getattr(party, "_old_key", None) is None and getattr(party, "_own", None) is None


def test_a_paused_agent_receives_a_new_share_in_an_eviction_but_deals_in_nothing(
    vault: Vault,
) -> None:
    made = _keygen(vault, Chain.SOLANA)
    agents.set_status(vault, "bot", "paused")
    with pytest.raises(PolicyDeniedError, match="paused"):
        keygen.start_reshare(vault, "team", (AGENT, USER), _b64(bytes(32)))
    run = _reshare(vault, (USER, RECOVERY), {RECOVERY: made.shares[RECOVERY]})
    assert not run.errors, run.errors
    assert threshold_records.threshold_wallet(vault, "team").info.meta["generation"] == 2


class _Lost:
    """A party whose confirmation's answer never comes back (or says it failed)."""

    me = RECOVERY

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def confirm(self) -> str:
        raise self.exc


@pytest.mark.parametrize("replacing", [False, True])
def test_an_unknown_outcome_keeps_the_new_share_and_a_definite_failure_drops_it(
    tmp_path: Path, replacing: bool
) -> None:
    path = tmp_path / "share.json"
    if replacing:
        path.write_text("the old share")
    lost = _Lost(ConnectionError("the answer was lost"))
    with pytest.raises(IntegrityError, match="kept at") as caught:
        keep_and_confirm(lost, path, {"a": "new share"})  # type: ignore[arg-type]
    kept = Path(caught.value.what.split("kept at ")[1].rstrip("."))
    assert json.loads(kept.read_text()) == {"a": "new share"}
    if replacing:
        assert path.read_text() == "the old share" and kept != path
    kept.unlink()
    failed = _Lost(CeremonyFailed("The ceremony failed: x.", next_step="-"))
    with pytest.raises(CeremonyFailed):
        keep_and_confirm(failed, path, {"a": "new share"})  # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir()] == (["share.json"] if replacing else [])


# -- join-key mode: the agent's host joins by itself (keysafe mcp) ------------------------------


def _keyed(
    vault: Vault, owner_key: bytes, agent_key: bytes, agent_send: Callable[[Send], Send]
) -> Run:
    key = channel.new_key()
    started = keygen.start(vault, "team", Chain.EVM, "bot", _b64(channel.public_bytes(key)))
    recovery = Party.recovery(_sender(vault, RECOVERY), key, started, join_key=owner_key)
    recovery._announce()  # the owner's CLI tags its key first thing
    code = ceremony.JoinCode.from_join_key(agent_key, bytes.fromhex(started.id))
    listed = ceremony.keyed_codes(keygen.pending(vault, "bot"), agent_key)
    assert listed == ([code] if agent_key == owner_key else [])  # others' ceremonies: left alone
    agent = Party.agent(agent_send(_sender(vault, AGENT)), code)
    return _both(recovery, agent)


def test_with_a_shared_join_key_no_code_is_handed_over_and_the_wallet_is_made(
    vault: Vault,
) -> None:
    join_key = os.urandom(32)
    run = _keyed(vault, join_key, join_key, lambda s: s)
    assert not run.errors, run.errors
    assert (
        run.addresses[AGENT]
        == threshold_records.threshold_wallet(vault, "team").info.meta["address"]
    )


def test_attack_join_key_mode_a_relay_swapping_the_recovery_key_or_a_wrong_key_is_refused(
    vault: Vault,
) -> None:
    join_key = os.urandom(32)
    swapped = _keyed(vault, join_key, join_key, _swap_key(RECOVERY))
    assert isinstance(swapped.errors.get(AGENT), IntegrityError), swapped.errors
    assert "owner's tag" in str(swapped.errors[AGENT])
    assert not swapped.shares
    vault.volatile.clear()
    wrong = _keyed(vault, join_key, os.urandom(32), lambda s: s)  # another host's key
    assert isinstance(wrong.errors.get(AGENT), IntegrityError), wrong.errors
    assert not wrong.addresses


@pytest.mark.parametrize(
    "change", [{"wallet": "bot-other"}, {"kind": "reshare"}, {"chain": "solana"}]
)
def test_attack_a_vault_showing_the_agent_another_wallet_kind_or_chain_is_refused(
    vault: Vault, change: dict[str, str]
) -> None:
    """The helper's break: the owner's recovery tag covered only its key, so a vault could
    show the agent the owner's keygen as another wallet (or as a reshare) and have the agent's
    host overwrite that wallet's share file. The tag now covers what the ceremony is about."""

    def relabel(send: Send) -> Send:
        def relayed(kid: str, post: KeygenPost) -> KeygenView:
            return send(kid, post).model_copy(update=change)

        return relayed

    for join_key in (None, os.urandom(32)):
        vault.volatile.clear()
        if join_key is None:  # a join code's ceremony
            run = _keygen(vault, Chain.EVM, agent_send=relabel)
        else:
            run = _keyed(vault, join_key, join_key, relabel)
        assert isinstance(run.errors.get(AGENT), IntegrityError), run.errors
        assert "owner's tag" in str(run.errors[AGENT]) and not run.addresses


def test_a_replaced_share_file_loses_its_ban_marker(tmp_path: Path) -> None:
    """A ban belongs to the old share's pair state; the reshare's new share must sign again
    (the marker used to survive an in-place reshare and ban the new share at the next start)."""
    path = tmp_path / "agent.share"
    path.write_text("the old, banned share")
    share_file.ban_marker(path).write_text("the vault failed a check")

    class _Done:
        me = AGENT

        def confirm(self) -> str:
            return "the address"

    assert keep_and_confirm(_Done(), path, {"a": "new share"}) == "the address"  # type: ignore[arg-type]
    assert json.loads(path.read_text()) == {"a": "new share"}
    assert not share_file.ban_marker(path).exists()
