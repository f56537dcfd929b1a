"""EVM 2-of-3 wallets (DKLs23) at the service layer, in one process with keysafe's own
agent-side functions: the ban after a failed check holds for every session (also ones the
agent exchanged before it), a refresh lifts it with new pair state, typed data is refused
before the gate, a paused agent gets no vault rounds."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data

from keysafe.approvals import Status
from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import KeysafeError, MalformedRequestError, PolicyDeniedError
from keysafe.mpc import share_file
from keysafe.mpc.dkls import cosigner
from keysafe.mpc.frost.keys import RECOVERY as RECOVERY_ID
from keysafe.mpc.frost.keys import USER
from keysafe.service import agents, approvals, backup, policies, threshold, threshold_records
from keysafe.service import signing as sign_service
from keysafe.service.models import (
    SignMessageRequest,
    SignTypedDataRequest,
    ThresholdExchangeRequest,
)
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from tests.unit.service import ceremony_support

SHARE_KEY = "the agent share key of the service tests"
RECOVERY = "the recovery passphrase of the service tests"
POLICY = """\
version: 1
rules:
  - name: greet
    allow: [evm.sign_message]
    wallets: [team]
    chains: [ethereum]
    message_matches: "^hello"
  - name: mail
    allow: [evm.sign_typed_data]
    wallets: [team]
    chains: [ethereum]
"""


def _secret(text: str) -> SecretBytes:
    return SecretBytes(bytearray(text.encode()))


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.vault, self.phrase = init_vault(
            Home(root / "home"),
            _secret("vault passphrase for tests"),
            kdf=CHEAP_KDF,
            clock=lambda: datetime.now(UTC),
        )
        _, token = agents.add_agent(self.vault, "bot")
        self.token = bytes(token.reveal()).decode()
        policies.set_policy(self.vault, "bot", POLICY)
        self.address = ceremony_support.create(
            self.vault,
            "team",
            Chain.EVM,
            "bot",
            agent_file=root / "agent.json",
            recovery_file=root / "recovery.json",
            share_key=SHARE_KEY,
            recovery_passphrase=RECOVERY,
        )
        self.share = self.open_share(root / "agent.json")

    def open_share(self, path: Path) -> share_file.Share:
        doc = share_file.read(path, "agent share file")
        return share_file.open_agent_share(doc, _secret(SHARE_KEY))

    def part(self, message: str) -> dict[str, str]:
        """keysafe's agent side: open a session, exchange, rounds 2 and 3."""
        opened = threshold.preprocess(self.vault, "bot", "team")
        state, first = cosigner.start(
            self.share.key, self.share.pairs[2], opened, cosigner.message_digest(message)
        )
        ask = ThresholdExchangeRequest(wallet="team", **first, message=message)
        answer = sign_service.threshold_exchange(self.vault, "bot", ask)
        return cosigner.finish(state, answer)

    def sign(self, message: str, part: dict[str, str]) -> Any:
        return sign_service.sign_message(
            self.vault, "bot", SignMessageRequest(wallet="team", message=message, threshold=part)
        )


def _bend(part: dict[str, str], field: str) -> dict[str, str]:
    raw = bytearray(base64.b64decode(part[field]))
    raw[-1] ^= 1
    return part | {field: base64.b64encode(bytes(raw)).decode()}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name in ("seal_recovery_share", "seal_agent_share"):
        real = getattr(share_file, name)
        monkeypatch.setattr(
            share_file, name, lambda *a, _real=real, **k: _real(*a, **k, params=CHEAP_KDF)
        )
    w = World(tmp_path)
    yield w
    w.vault.lock()


def test_dkls_message_signature_recovers_to_the_wallet(world: World) -> None:
    got = world.sign("hello there", world.part("hello there"))
    signable = encode_defunct(text="hello there")
    assert Account.recover_message(signable, signature=got.signature) == world.address


def test_attack_ban_holds_for_sessions_exchanged_before_it(world: World) -> None:
    """Found in review: sessions the agent exchanged before the ban still signed, and bent
    rounds on them still reached the vault's checks (more probes of the banned pair)."""
    messages = [f"hello {i}" for i in range(4)]
    parts = [world.part(m) for m in messages]  # exchanged up front
    with pytest.raises(MalformedRequestError) as caught:
        world.sign(messages[0], _bend(parts[0], "round3"))
    assert caught.value.facts.get("culprit") == 1 and caught.value.facts.get("banned")
    info = threshold_records.threshold_wallet(world.vault, "team")
    assert info.info.meta.get("banned") == [1]
    for message, part in zip(
        messages[1:], (parts[1], _bend(parts[2], "round2"), parts[3]), strict=True
    ):
        with pytest.raises(KeysafeError) as refused:
            world.sign(message, part)
        assert "signature" not in refused.value.to_dict()
        assert not refused.value.facts.get("banned"), "a banned pair's checks ran again"
    with pytest.raises(PolicyDeniedError, match="reshare"):
        threshold.preprocess(world.vault, "bot", "team")


def test_dkls_refresh_lifts_the_ban_with_new_pair_state(world: World) -> None:
    part = world.part("hello a")
    with pytest.raises(MalformedRequestError):
        world.sign("hello a", _bend(part, "round3"))
    ceremony_support.reshare(
        world.vault,
        "team",
        (USER, RECOVERY_ID),
        agent_file=world.root / "agent-2.json",
        recovery_file=world.root / "recovery.json",
        share_key=SHARE_KEY,
        recovery_passphrase=RECOVERY,
    )
    assert "banned" not in threshold_records.threshold_wallet(world.vault, "team").info.meta
    world.share = world.open_share(world.root / "agent-2.json")
    got = world.sign("hello b", world.part("hello b"))
    signable = encode_defunct(text="hello b")
    assert Account.recover_message(signable, signature=got.signature) == world.address


MAIL = {
    "types": {
        "EIP712Domain": [{"name": "name", "type": "string"}],
        "Mail": [{"name": "body", "type": "string"}],
    },
    "primaryType": "Mail",
    "domain": {"name": "x"},
    "message": {"body": "hello"},
}


def _typed_part(world: World, doc: dict[str, Any]) -> dict[str, str]:
    """keysafe's agent side for EIP-712: the digest computed here, the vault's computed there."""
    opened = threshold.preprocess(world.vault, "bot", "team")
    state, first = cosigner.start(
        world.share.key, world.share.pairs[2], opened, cosigner.typed_data_digest(doc)
    )
    ask = ThresholdExchangeRequest(wallet="team", **first, typed_data=doc)
    answer = sign_service.threshold_exchange(world.vault, "bot", ask)
    return cosigner.finish(state, answer)


def test_dkls_typed_data_signature_recovers_to_the_wallet(world: World) -> None:
    got = sign_service.sign_typed_data(
        world.vault,
        "bot",
        SignTypedDataRequest(wallet="team", typed_data=MAIL, threshold=_typed_part(world, MAIL)),
    )
    signed = encode_typed_data(full_message=MAIL)
    assert Account.recover_message(signed, signature=got.signature) == world.address


def test_attack_typed_data_swapped_after_the_exchange_is_refused_and_nothing_signed(
    world: World,
) -> None:
    part = _typed_part(world, MAIL)
    other = MAIL | {"message": {"body": "hello, send everything"}}
    with pytest.raises(MalformedRequestError, match="not the one the threshold session"):
        sign_service.sign_typed_data(
            world.vault,
            "bot",
            SignTypedDataRequest(wallet="team", typed_data=other, threshold=part),
        )
    with pytest.raises(MalformedRequestError, match="2-of-3 threshold wallet"):
        no_part = SignTypedDataRequest(wallet="team", typed_data=MAIL)  # no agent part
        sign_service.sign_typed_data(world.vault, "bot", no_part)


def test_dkls_a_paused_agent_gets_no_vault_rounds(world: World) -> None:
    opened = threshold.preprocess(world.vault, "bot", "team")
    agents.set_status(world.vault, "bot", "paused")
    _, first = cosigner.start(
        world.share.key, world.share.pairs[2], opened, cosigner.message_digest("hello")
    )
    with pytest.raises(PolicyDeniedError, match="paused"):
        ask = ThresholdExchangeRequest(wallet="team", **first, message="hello")
        sign_service.threshold_exchange(world.vault, "bot", ask)


def test_attack_an_old_backup_restored_into_an_empty_home_does_not_revive_an_evicted_share(
    world: World, tmp_path: Path
) -> None:
    """Issue 16: restoring a backup used to bring back an evicted generation silently (the old
    token and the old vault share, which sign with the evicted agent share). A vault rebuilt
    from a backup now pauses every agent and holds every 2-of-3 wallet until a refresh."""
    old_backup = tmp_path / "old.ksbackup"
    backup.create_backup(world.vault, old_backup)
    old_recovery = tmp_path / "recovery-old.json"
    old_recovery.write_bytes((world.root / "recovery.json").read_bytes())
    # the eviction: a new token, a refresh (new generation); the old agent share is dead here
    agents.rotate_token(world.vault, "bot")
    ceremony_support.reshare(
        world.vault,
        "team",
        (USER, RECOVERY_ID),
        agent_file=world.root / "agent-2.json",
        recovery_file=world.root / "recovery.json",
        share_key=SHARE_KEY + " 2",
        recovery_passphrase=RECOVERY,
    )
    # the disaster: the old backup rebuilt on a new machine
    restored, _ = backup.restore_new(
        Home(tmp_path / "rebuilt"),
        old_backup,
        world.phrase,
        _secret("another passphrase 123!"),
        kdf=CHEAP_KDF,
    )
    try:
        assert [a.status for a in agents.list_agents(restored)] == ["paused"]
        with pytest.raises(PolicyDeniedError, match="paused"):
            threshold.preprocess(restored, "bot", "team")
        agents.set_status(restored, "bot", "active")  # the owner resumes it...
        with pytest.raises(PolicyDeniedError, match="rebuilt from a backup"):
            threshold.preprocess(restored, "bot", "team")  # ...the wallet still holds
        # only a refresh lifts the hold (with a recovery file of the restored generation)
        ceremony_support.reshare(
            restored,
            "team",
            (USER, RECOVERY_ID),
            agent_file=tmp_path / "agent-3.json",
            recovery_file=old_recovery,
            share_key=SHARE_KEY,
            recovery_passphrase=RECOVERY,
        )
        assert threshold.preprocess(restored, "bot", "team")["protocol"] == "dkls23"
    finally:
        restored.lock()


ASK_FOR_MAIL = POLICY.replace("allow: [evm.sign_typed_data]", "ask: [evm.sign_typed_data]")


def test_an_approved_2_of_3_typed_data_signature_runs_with_the_agents_part(
    world: World,
) -> None:
    """The parked request keeps the agent's DKLs23 part, and the approval runs it with that part
    (it once dropped it, so every approved 2-of-3 EIP-712 signature failed as 'needs the agent's
    share')."""
    policies.set_policy(world.vault, "bot", ASK_FOR_MAIL)
    asked = sign_service.sign_typed_data(
        world.vault,
        "bot",
        SignTypedDataRequest(wallet="team", typed_data=MAIL, threshold=_typed_part(world, MAIL)),
    )
    assert asked.status == "pending_approval" and asked.approval_id is not None
    done = approvals.approve(world.vault, asked.approval_id)
    assert done.status is Status.APPROVED, done.result
    assert done.result is not None
    signed = encode_typed_data(full_message=MAIL)
    assert Account.recover_message(signed, signature=done.result["signature"]) == world.address
