"""2-of-3 threshold wallets in process (keysafe.service.threshold): the vault's preprocessed
commitments and its co-signature, resharing, and the wallet list's address check.

Rules under test: a vault commitment signs at most once (even when the agent's part is bad, even
under concurrent requests), expires after NONCE_TTL_S, is capped per agent, is dropped when the
vault locks and when the wallet is reshared (the generation goes up); only the wallet's own,
active agent gets one; a bad agent share is named (culprit 1); an edited threshold address is
caught by list_wallets(verify=True); through the signing service the policy decides before the
vault adds its part.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import VerifyKey
from solders.hash import Hash
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from sqlalchemy import select, update

from keysafe.agent_models import KeygenPost
from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    IntegrityError,
    KeysafeError,
    MalformedRequestError,
    NotFoundError,
    PolicyDeniedError,
    VaultLockedError,
)
from keysafe.mcp_server.threshold import message_of
from keysafe.mpc import share_file
from keysafe.mpc.frost import cosigner, signing
from keysafe.mpc.frost.groups import ED25519
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER, KeyPackage
from keysafe.service import (
    agents,
    keygen,
    policies,
    threshold,
    threshold_owner,
    threshold_records,
    threshold_state,
    wallets,
)
from keysafe.service import signing as sign_service
from keysafe.service.models import SignTransactionRequest
from keysafe.service.record_meta import ThresholdWallet
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from tests.unit.service import ceremony_support

PASSPHRASE = b"passphrase-123"
RECOVERY_PASSPHRASE = b"recovery passphrase for the tests"
SHARE_KEY = "the agent share key, kept on the agent host only"
MESSAGE = b"a solana message the agent built"


def _secret(value: str | bytes) -> SecretBytes:
    return SecretBytes(bytearray(value.encode() if isinstance(value, str) else value))


class World:
    """An unlocked vault with agents `bot` (wallet `team`) and `bob` (wallet `bobs`), both
    2-of-3."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.vault, _ = init_vault(
            Home(root / "h"),
            _secret(PASSPHRASE),
            kdf=CHEAP_KDF,
            clock=lambda: datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        )
        self.tokens: dict[str, str] = {}
        for name in ("bot", "bob"):
            _, token = agents.add_agent(self.vault, name)
            assert token is not None
            self.tokens[name] = bytes(token.reveal()).decode()
        self.keys: dict[str, KeyPackage] = {}
        self.addresses: dict[str, str] = {}
        for wallet, agent in (("team", "bot"), ("bobs", "bob")):
            self.addresses[wallet] = ceremony_support.create(
                self.vault,
                wallet,
                Chain.SOLANA,
                agent,
                agent_file=root / f"{wallet}-agent.json",
                recovery_file=root / f"{wallet}-recovery.json",
                share_key=SHARE_KEY,
                recovery_passphrase=RECOVERY_PASSPHRASE,
            )
            self.keys[wallet] = self.agent_key(root / f"{wallet}-agent.json", agent)

    def agent_key(self, path: Path, agent: str) -> KeyPackage:
        doc = share_file.read(path, "agent share file")
        return share_file.open_agent_share(doc, _secret(SHARE_KEY)).key

    def info(self, wallet: str = "team") -> ThresholdWallet:
        return threshold_records.threshold_wallet(self.vault, wallet)

    def preprocess(self, agent: str = "bot", wallet: str = "team") -> dict[str, Any]:
        return threshold.preprocess(self.vault, agent, wallet)

    def cosign(
        self,
        pre: dict[str, Any],
        *,
        agent: str = "bot",
        wallet: str = "team",
        key: KeyPackage | None = None,
        message: bytes = MESSAGE,
        edit: Callable[[dict[str, str]], None] | None = None,
    ) -> bytes:
        fields = agent_fields(pre, key or self.keys[wallet], message)
        if edit is not None:
            edit(fields)
        return threshold.cosign(self.vault, agent, self.info(wallet), message, fields)

    def open_sessions(self) -> dict[bytes, Any]:
        return dict(self.vault.volatile.get("frost_nonces", {}))


def agent_fields(pre: dict[str, Any], key: KeyPackage, message: bytes) -> dict[str, str]:
    """What keysafe's agent client sends (mcp_server.threshold.agent_part), for a given vault
    commitment: fresh agent nonces, the signing package for `message`, the agent's share."""
    vault_commitment = signing.SigningCommitment(
        USER, bytes.fromhex(pre["hiding"]), bytes.fromhex(pre["binding"])
    )
    nonces, mine = signing.commit(key)
    share = signing.sign(key, nonces, message, (mine, vault_commitment))
    return {
        "session_id": pre["session_id"],
        "hiding": mine.hiding.hex(),
        "binding": mine.binding.hex(),
        "share": share.hex(),
    }


def assert_signs(world: World, signature: bytes, wallet: str = "team") -> None:
    VerifyKey(bytes(Pubkey.from_string(world.addresses[wallet]))).verify(MESSAGE, signature)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    real, real_agent = share_file.seal_recovery_share, share_file.seal_agent_share

    def cheap_recovery(*args: Any, **kw: Any) -> dict[str, Any]:
        return real(*args, **kw, params=CHEAP_KDF)  # the 64 MiB Argon2 adds nothing here

    def cheap_agent(*args: Any, **kw: Any) -> dict[str, Any]:
        return real_agent(*args, **kw, params=CHEAP_KDF)

    monkeypatch.setattr(share_file, "seal_recovery_share", cheap_recovery)
    monkeypatch.setattr(share_file, "seal_agent_share", cheap_agent)
    return World(tmp_path)


# -- preprocess / cosign --------------------------------------------------------------------


def test_frost_preprocess_then_cosign_gives_a_signature_for_the_wallet_address(
    world: World,
) -> None:
    pre = world.preprocess()
    assert set(pre) == {"session_id", "wallet", "identifier", "hiding", "binding", "expires_in"}
    assert (pre["wallet"], pre["identifier"], pre["expires_in"]) == ("team", USER, 900)
    assert len(bytes.fromhex(pre["session_id"])) == 32
    sig = world.cosign(pre)
    assert len(sig) == 64
    assert_signs(world, sig)
    assert world.open_sessions() == {}


def test_frost_vault_commitment_is_fresh_every_time(world: World) -> None:
    seen = [world.preprocess() for _ in range(5)]
    assert len({p["session_id"] for p in seen}) == 5
    assert len({p["hiding"] for p in seen}) == 5 and len({p["binding"] for p in seen}) == 5


def test_frost_a_session_signs_once_and_the_second_use_is_refused(world: World) -> None:
    pre = world.preprocess()
    assert_signs(world, world.cosign(pre))
    with pytest.raises(MalformedRequestError, match="unknown, used, expired"):
        world.cosign(pre)  # a fresh, valid agent part for the same vault commitment


def test_frost_a_bad_agent_share_is_named_and_still_burns_the_session(world: World) -> None:
    pre = world.preprocess()

    def plus_one(fields: dict[str, str]) -> None:
        z = ED25519.deserialize_scalar(bytes.fromhex(fields["share"]))
        fields["share"] = ED25519.serialize_scalar(z + 1).hex()

    with pytest.raises(MalformedRequestError) as bad:
        world.cosign(pre, edit=plus_one)
    assert bad.value.facts.get("culprit") == AGENT
    assert "nothing was signed" in bad.value.next_step
    with pytest.raises(MalformedRequestError, match="unknown, used, expired"):
        world.cosign(pre)


@pytest.mark.parametrize("field", ["hiding", "binding"])
def test_frost_an_edited_agent_commitment_is_refused(world: World, field: str) -> None:
    pre = world.preprocess()

    def other_point(fields: dict[str, str]) -> None:
        fields[field] = ED25519.base_mul(12345).hex()

    with pytest.raises(MalformedRequestError) as bad:
        world.cosign(pre, edit=other_point)
    assert bad.value.facts.get("culprit") == AGENT


def test_frost_unknown_or_malformed_session_ids_are_refused(world: World) -> None:
    world.preprocess()
    with pytest.raises(MalformedRequestError, match="unknown, used, expired"):
        world.cosign(world.preprocess() | {"session_id": "ab" * 32})
    with pytest.raises(MalformedRequestError, match="session_id"):
        world.cosign(world.preprocess() | {"session_id": "not hex"})


def test_frost_a_session_is_bound_to_its_wallet_and_agent(world: World) -> None:
    # bot's commitment for `team`, used by bob for bob's wallet: refused.
    pre = world.preprocess("bot", "team")
    with pytest.raises(MalformedRequestError, match="not this agent's"):
        world.cosign(pre, agent="bob", wallet="bobs")
    # bob's commitment for `bobs`, used by bob for `team` (with team's agent key): refused.
    pre = world.preprocess("bob", "bobs")
    with pytest.raises(MalformedRequestError, match="not this agent's"):
        world.cosign(pre, agent="bob", wallet="team", key=world.keys["team"])


def test_attack_owner_and_agent_sessions_do_not_cross(world: World) -> None:
    # The owner's commitment (for user + recovery) is not an agent's to use, and an agent's is
    # not the owner's: each session signs only with the party it was made for.
    owner_pre = threshold_owner.owner_commit(world.vault, "team")
    with pytest.raises(MalformedRequestError, match="not this agent's"):
        world.cosign(owner_pre)
    agent_pre = world.preprocess("bot", "team")
    recovery = share_file.open_recovery_share(
        share_file.read(world.root / "team-recovery.json", "recovery file"),
        _secret(RECOVERY_PASSPHRASE),
    ).key
    part = cosigner.part(recovery, agent_pre, MESSAGE)
    with pytest.raises(MalformedRequestError, match="not the owner's"):
        threshold_owner.owner_cosign(world.vault, "team", MESSAGE, part)
    # The agent's share on the owner's session is a wrong share for party 3, and is named.
    part = cosigner.part(
        world.keys["team"], threshold_owner.owner_commit(world.vault, "team"), MESSAGE
    )
    with pytest.raises(MalformedRequestError) as bad:
        threshold_owner.owner_cosign(world.vault, "team", MESSAGE, part)
    assert bad.value.facts.get("culprit") == RECOVERY


def test_frost_concurrent_uses_of_one_session_sign_at_most_once(world: World) -> None:
    pre = world.preprocess()
    fields = [agent_fields(pre, world.keys["team"], MESSAGE) for _ in range(8)]
    info = world.info()
    barrier = threading.Barrier(len(fields))
    results: list[object] = []

    def go(f: dict[str, str]) -> None:
        barrier.wait()
        try:
            results.append(threshold.cosign(world.vault, "bot", info, MESSAGE, f))
        except KeysafeError as exc:
            results.append(exc)

    threads = [threading.Thread(target=go, args=(f,)) for f in fields]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    signatures = [r for r in results if isinstance(r, bytes)]
    assert len(results) == 8 and len(signatures) == 1, results
    assert_signs(world, signatures[0])


# -- expiry, cap, lock ------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Seconds added to time.monotonic as keysafe.service.threshold sees it."""
    offset = [0.0]
    real = time.monotonic
    monkeypatch.setattr(threshold.time, "monotonic", lambda: real() + offset[0])
    return offset


def test_frost_a_commitment_expires_after_its_ttl(world: World, clock: list[float]) -> None:
    early, late = world.preprocess(), world.preprocess()
    clock[0] = threshold_state.NONCE_TTL_S - 5
    assert_signs(world, world.cosign(early))  # still within 15 minutes
    clock[0] = threshold_state.NONCE_TTL_S + 1
    with pytest.raises(MalformedRequestError, match="expired"):
        world.cosign(late)
    assert world.open_sessions() == {}, "an expired commitment was kept"


def test_frost_expired_commitments_no_longer_count_against_the_cap(
    world: World, clock: list[float]
) -> None:
    for _ in range(threshold_state.MAX_OPEN_PER_AGENT):
        world.preprocess()
    with pytest.raises(MalformedRequestError, match="unused commitments"):
        world.preprocess()
    clock[0] = threshold_state.NONCE_TTL_S + 1
    assert_signs(world, world.cosign(world.preprocess()))


def test_frost_open_commitments_are_capped_per_agent(world: World) -> None:
    pres = [world.preprocess() for _ in range(threshold_state.MAX_OPEN_PER_AGENT)]
    with pytest.raises(MalformedRequestError, match=f"{threshold_state.MAX_OPEN_PER_AGENT} unused"):
        world.preprocess()
    assert len(world.open_sessions()) == threshold_state.MAX_OPEN_PER_AGENT
    world.preprocess("bob", "bobs")  # another agent's cap is its own
    assert_signs(world, world.cosign(pres[0]))  # using one frees a place
    world.preprocess()
    with pytest.raises(MalformedRequestError, match="unused commitments"):
        world.preprocess()


def test_frost_locking_the_vault_drops_every_commitment(world: World) -> None:
    pre = world.preprocess()
    world.vault.lock()
    assert world.open_sessions() == {}
    with pytest.raises(VaultLockedError):
        world.preprocess()
    world.vault.unlock(_secret(PASSPHRASE))
    with pytest.raises(MalformedRequestError, match="unknown, used, expired"):
        world.cosign(pre)
    assert_signs(world, world.cosign(world.preprocess()))


# -- who may ask -----------------------------------------------------------------------------


def test_frost_a_paused_agent_gets_no_commitment(world: World) -> None:
    agents.set_status(world.vault, "bot", "paused")
    with pytest.raises(PolicyDeniedError, match="paused"):
        world.preprocess()
    assert world.open_sessions() == {}
    agents.set_status(world.vault, "bot", "active")
    assert_signs(world, world.cosign(world.preprocess()))


def test_frost_only_the_wallets_agent_gets_a_commitment(world: World) -> None:
    with pytest.raises(NotFoundError, match="team"):
        world.preprocess("bob", "team")
    with pytest.raises(NotFoundError):
        world.preprocess("bot", "nowhere")
    assert world.open_sessions() == {}


def test_frost_an_ordinary_wallet_has_no_commitments(world: World) -> None:
    wallets.create_wallet(world.vault, "plain", Chain.SOLANA)
    with pytest.raises(MalformedRequestError, match="not a threshold wallet"):
        world.preprocess("bot", "plain")


# -- reshare -----------------------------------------------------------------------------------


def _reshare(world: World, new_agent_path: Path) -> str:
    """Vault + recovery reshare `team`; the agent's new share goes to `new_agent_path`."""
    return ceremony_support.reshare(
        world.vault,
        "team",
        (USER, RECOVERY),
        agent_file=new_agent_path,
        recovery_file=world.root / "team-recovery.json",
        share_key=SHARE_KEY,
        recovery_passphrase=RECOVERY_PASSPHRASE,
    )


def test_frost_reshare_bumps_the_generation_and_voids_open_commitments(world: World) -> None:
    before = world.info()
    assert before.info.meta["generation"] == 1
    open_team = [world.preprocess() for _ in range(3)]
    open_bob = world.preprocess("bob", "bobs")
    address = _reshare(world, world.root / "team-agent-2.json")
    after = world.info()
    assert after.info.meta["generation"] == 2
    assert address == after.info.meta["address"] == world.addresses["team"]
    assert (
        after.info.meta["public"]["group_public_key"]
        == before.info.meta["public"]["group_public_key"]
    )
    assert (
        after.info.meta["public"]["verifying_shares"]
        != before.info.meta["public"]["verifying_shares"]
    )
    new_key = world.agent_key(world.root / "team-agent-2.json", "bot")
    # Every commitment made for `team` before the reshare is dropped; none signs, even with the
    # new share.
    assert [p.wallet for p in world.open_sessions().values()] == ["bobs"]
    for pre in open_team:
        with pytest.raises(MalformedRequestError, match=r"unknown, used, expired|refreshed"):
            world.cosign(pre, key=new_key)
    # Another wallet's commitments are untouched.
    assert_signs(world, world.cosign(open_bob, agent="bob", wallet="bobs"), "bobs")
    # The old agent share and the vault's new share do not make a signature; the new one does.
    with pytest.raises(MalformedRequestError) as stale:
        world.cosign(world.preprocess())
    assert stale.value.facts.get("culprit") == AGENT
    assert_signs(world, world.cosign(world.preprocess(), key=new_key))


def test_frost_another_agent_cannot_join_a_reshare_and_nothing_changes(world: World) -> None:
    recovery_path = world.root / "team-recovery.json"
    recovery_before = recovery_path.read_bytes()
    pre = world.preprocess()
    key = base64.b64encode(bytes(32)).decode()
    started = keygen.start_reshare(world.vault, "team", (USER, RECOVERY), key)
    with pytest.raises(NotFoundError):
        keygen.agent_exchange(world.vault, "bob", started.id, KeygenPost(key=key, tag=key))
    assert recovery_path.read_bytes() == recovery_before
    assert world.info().info.meta["generation"] == 1
    assert_signs(world, world.cosign(pre))


def test_frost_a_failed_reshare_leaves_the_recovery_file_as_it_was(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    recovery_path = world.root / "team-recovery.json"
    recovery_before = recovery_path.read_bytes()

    def broken_store(*args: Any, **kw: Any) -> ThresholdWallet:
        raise KeysafeError("the database write failed", next_step="retry")

    monkeypatch.setattr(threshold_records, "_store_user_share", broken_store)
    with pytest.raises(KeysafeError, match="could not keep its share"):
        _reshare(world, world.root / "team-agent-2.json")
    assert not (world.root / "team-agent-2.json").exists()  # no half-made agent share either
    assert world.info().info.meta["generation"] == 1  # the vault kept its old share
    # The recovery file on disk must still sign with the vault's (old) share.
    recovery = share_file.open_recovery_share(
        share_file.read(recovery_path, "recovery file"), _secret(RECOVERY_PASSPHRASE)
    ).key
    answer = threshold_owner.owner_commit(world.vault, "team")
    part = cosigner.part(recovery, answer, b"still mine")
    threshold_owner.owner_cosign(world.vault, "team", b"still mine", part)
    assert recovery_path.read_bytes() == recovery_before


# -- the wallet list's address check ----------------------------------------------------------


def test_frost_list_wallets_verify_catches_an_edited_threshold_address(world: World) -> None:
    listed = {w.name: w for w in wallets.list_wallets(world.vault)}
    assert (listed["team"].source, listed["team"].address) == ("threshold", world.addresses["team"])
    attacker = str(Pubkey.from_bytes(bytes(range(32))))
    with world.vault.db.write() as conn:
        row = conn.execute(
            select(t.records).where(t.records.c.kind == "wallet", t.records.c.name == "team")
        ).one()
        meta = json.loads(row.meta) | {"address": attacker}
        conn.execute(
            update(t.records).where(t.records.c.id == row.id).values(meta=json.dumps(meta))
        )
    with pytest.raises(IntegrityError) as caught:
        wallets.list_wallets(world.vault)
    assert caught.value.facts.get("name") == "team"
    # Without the check the edited address would be shown: the check is what catches it.
    unchecked = {w.name: w.address for w in wallets.list_wallets(world.vault, verify=False)}
    assert unchecked["team"] == attacker


# -- through the signing service (policy first, then the vault's part) ------------------------

SOL_POLICY = """\
version: 1
rules:
  - name: pay-sol
    allow: [solana.transfer]
    wallets: [team]
    chains: [solana]
    assets: [SOL]
    max_per_tx: {SOL: "1"}
"""


def _sol_tx(address: str, lamports: int) -> str:
    payer = Pubkey.from_string(address)
    to = Pubkey.from_bytes(bytes([9] * 32))
    ix = transfer(TransferParams(from_pubkey=payer, to_pubkey=to, lamports=lamports))
    msg = MessageV0.try_compile(payer, [ix], [], Hash.default())
    return base64.b64encode(
        bytes(VersionedTransaction.populate(msg, [Signature.default()]))
    ).decode()


def _sign(world: World, lamports: int) -> Any:
    tx = _sol_tx(world.addresses["team"], lamports)
    fields = agent_fields(world.preprocess(), world.keys["team"], message_of(tx))
    return sign_service.sign_transaction(
        world.vault, "bot", SignTransactionRequest(wallet="team", transaction=tx, threshold=fields)
    )


@pytest.fixture
def with_policy(world: World) -> World:
    policies.set_policy(world.vault, "bot", SOL_POLICY)
    return world


def test_frost_sign_transaction_applies_the_policy_before_the_vault_signs(
    with_policy: World,
) -> None:
    world = with_policy
    res = _sign(world, 10**8)
    assert (res.status, res.address) == ("signed", world.addresses["team"])
    signed = VersionedTransaction.from_bytes(base64.b64decode(res.signed_transaction or ""))
    assert signed.verify_with_results() == [True]
    with pytest.raises(PolicyDeniedError):
        _sign(world, 2 * 10**9)


def test_frost_denied_requests_do_not_lock_the_agent_out(with_policy: World) -> None:
    world = with_policy
    for _ in range(threshold_state.MAX_OPEN_PER_AGENT):
        with pytest.raises(PolicyDeniedError):
            _sign(world, 2 * 10**9)
    assert _sign(world, 10**8).status == "signed"
