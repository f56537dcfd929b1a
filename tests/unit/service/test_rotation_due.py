"""Rotation policies (service/rotation_due.py): agents' tokens, Ed25519 keys and placeholders are
listed as due after the owner's age or use count, with the command that replaces each; a
replacement clears it; a policy edited into the file cannot loosen the owner's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from sqlalchemy import update

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import IntegrityError, MalformedRequestError, VaultLockedError
from keysafe.service import agents, credentials, owner_ops, placeholders, rotation_due
from keysafe.service.models import Attachment
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF, ManualClock
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def vault(tmp_path: Path, clock: ManualClock) -> Vault:
    made, _ = init_vault(
        Home(tmp_path / "h"),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
        clock=clock,
    )
    agents.add_agent(made, "bot")
    key = SigningKey.generate().verify_key.encode().hex()
    agents.add_agent(made, "signer", public_key=key, with_token=False)
    credentials.add_credential(
        made,
        "openai",
        SecretBytes(bytearray(b"sk-canary")),
        hosts=["api.openai.com"],
        attach=Attachment.bearer(),
    )
    placeholders.issue(made, "openai", "bot").wipe()
    return made


def _used(vault: Vault, agent: str, times: int, target: str = "wallet:w") -> None:
    """What the gate writes for each request an agent makes (service/gate.py): one decision,
    then the outcome (which is not a second use)."""
    with vault.db.write() as conn:
        for _ in range(times):
            for action, outcome, where in (
                ("decide.http.request", "allow", f"agent:{agent}"),  # request_audit.audit_decision
                ("http.request", "success", target),
            ):
                vault.audit(
                    conn,
                    actor=f"agent:{agent}",
                    action=action,
                    target=where,
                    outcome=outcome,
                    details={"agent": agent},
                )


def _due(vault: Vault) -> set[tuple[str, str]]:
    return {(d.what, d.agent) for d in rotation_due.due(vault)[1]}


def test_nothing_is_due_until_the_default_age_then_everything_an_agent_holds_is(
    vault: Vault, clock: ManualClock
) -> None:
    pol, due = rotation_due.due(vault)
    assert pol.after == rotation_due.DEFAULT_AFTER and pol.after_uses is None and due == []
    clock.now += timedelta(days=91)
    assert _due(vault) == {("agent token", "bot"), ("agent key", "signer"), ("placeholder", "bot")}
    fixes = {d.what: d.fix for d in rotation_due.due(vault)[1]}
    assert fixes["agent token"] == "keysafe agent rotate-token bot"
    assert fixes["placeholder"] == "keysafe credential placeholder openai --agent bot --replace"


def test_the_owners_age_and_use_count_decide_and_a_rotation_clears_it(
    vault: Vault, clock: ManualClock
) -> None:
    rotation_due.set_policy(vault, timedelta(days=30), 100)
    clock.now += timedelta(days=10)
    _used(vault, "bot", 99)
    assert _due(vault) == set()
    _used(vault, "bot", 1)
    [d] = rotation_due.due(vault)[1]
    assert (d.what, d.uses, d.why) == ("agent token", 100, "used 100 times")
    agents.rotate_token(vault, "bot").wipe()
    assert _due(vault) == set()  # uses count from the new token
    clock.now += timedelta(days=21)  # 31 days: the key and the placeholder, not the new token
    assert _due(vault) == {("agent key", "signer"), ("placeholder", "bot")}


def test_a_placeholder_counts_its_credentials_calls_and_replace_rotates_it(
    vault: Vault, clock: ManualClock
) -> None:
    rotation_due.set_policy(vault, None, 5)
    _used(vault, "bot", 4, target="credential:openai")
    _used(vault, "bot", 3, target="wallet:w")  # the token's uses, not the placeholder's
    assert _due(vault) == {("agent token", "bot")}
    _used(vault, "bot", 1, target="credential:openai")
    assert ("placeholder", "bot") in _due(vault)
    clock.now += timedelta(seconds=1)
    op = owner_ops.IssuePlaceholder(credential="openai", agent="bot", replace=True)
    op.run(vault)
    with vault.db.read() as conn:
        assert len(conn.execute(t.placeholders.select()).all()) == 1  # the old one is gone
    assert ("placeholder", "bot") not in _due(vault)


def test_a_revoked_agent_has_nothing_due(vault: Vault, clock: ManualClock) -> None:
    agents.set_status(vault, "bot", "revoked")
    placeholders.revoke_all(vault, "openai")
    clock.now += timedelta(days=365)
    assert _due(vault) == {("agent key", "signer")}


def test_attack_a_policy_edited_into_the_file_cannot_loosen_the_owners(
    vault: Vault, clock: ManualClock
) -> None:
    rotation_due.set_policy(vault, timedelta(days=30), 10)
    clock.now += timedelta(days=31)
    assert _due(vault)
    with vault.db.write() as conn:  # an edit that keeps the seal column: a broken seal
        conn.execute(
            update(t.settings)
            .where(t.settings.c.key == rotation_due.AFTER_SETTING)
            .values(value=str(3650 * 86400))
        )
    with pytest.raises(IntegrityError, match="rotate_after"):
        rotation_due.due(vault)
    with vault.db.write() as conn:  # no seal at all: honoured only up to the default
        conn.execute(
            update(t.settings)
            .where(t.settings.c.key == rotation_due.AFTER_SETTING)
            .values(value=str(3650 * 86400), mac=None)
        )
        conn.execute(
            update(t.settings)
            .where(t.settings.c.key == rotation_due.USES_SETTING)
            .values(value="0", mac=None)
        )
    assert rotation_due.due(vault)[0].after == rotation_due.DEFAULT_AFTER
    clock.now += timedelta(days=60)  # 91 days
    assert ("agent token", "bot") in _due(vault)


def test_setting_a_policy_needs_the_owners_key_and_a_real_duration(vault: Vault) -> None:
    for bad in ("30", "0d", "1y", "-3d", "99999999d"):
        with pytest.raises(MalformedRequestError):
            rotation_due.parse_after(bad)
    assert rotation_due.parse_after("12h") == timedelta(hours=12)
    vault.lock()
    with pytest.raises(VaultLockedError):
        rotation_due.set_policy(vault, timedelta(days=1), None)
