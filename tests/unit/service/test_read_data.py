"""Agents read data under policy; sensitive records only after the owner approves."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError, PolicyDeniedError
from keysafe.service import agents, approvals, data, policies
from keysafe.service.models import DataClass
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

POLICY = """
version: 1
rules:
  - name: profile
    allow: [data.read]
    data: [profile, email]
"""


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    v, _ = init_vault(
        Home(tmp_path / "h"),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
        clock=lambda: datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    )
    data.set_data(
        v,
        "profile",
        SecretBytes(bytearray(b'{"name": "Ada", "city": "London"}')),
        data_class=DataClass.STANDARD,
    )
    data.set_data(
        v, "email", SecretBytes(bytearray(b"ada@example.com")), data_class=DataClass.SENSITIVE
    )
    data.set_data(v, "diary", SecretBytes(bytearray(b"private")), data_class=DataClass.STANDARD)
    agents.add_agent(v, "bot")
    policies.set_policy(v, "bot", POLICY)
    return v


def test_standard_record_allowed_by_policy_is_returned(vault: Vault) -> None:
    assert data.read_data(vault, "bot", "profile").value == {"name": "Ada", "city": "London"}


def test_fields_select_part_of_a_json_record(vault: Vault) -> None:
    assert data.read_data(vault, "bot", "profile", fields=["city"]).value == {"city": "London"}


def test_unknown_field_is_malformed(vault: Vault) -> None:
    with pytest.raises(MalformedRequestError, match="no field"):
        data.read_data(vault, "bot", "profile", fields=["ssn"])


def test_record_the_policy_does_not_name_is_denied(vault: Vault) -> None:
    with pytest.raises(PolicyDeniedError):
        data.read_data(vault, "bot", "diary")


def test_sensitive_record_needs_approval_then_is_released(vault: Vault) -> None:
    pending = data.read_data(vault, "bot", "email")
    assert pending.status == "pending_approval" and pending.value is None
    done = approvals.approve(vault, pending.approval_id or "")
    assert "ada@example.com" not in str(done.for_owner())  # the value is not kept for the page
    first = approvals.agent_view(vault, pending.approval_id or "", "bot")
    assert first["result"] == {"status": "value", "name": "email", "value": "ada@example.com"}
    again = approvals.agent_view(vault, pending.approval_id or "", "bot")
    assert again["status"] == "approved" and "result" not in again  # released once


def test_denied_sensitive_read_releases_nothing(vault: Vault) -> None:
    pending = data.read_data(vault, "bot", "email")
    denied = approvals.deny(vault, pending.approval_id or "")
    assert denied.status == "denied" and "result" not in denied.for_agent()


def test_read_that_fails_to_decrypt_leaves_no_spend(vault: Vault) -> None:
    import sqlite3

    from keysafe.errors import IntegrityError
    from keysafe.store import tables as t

    policies.set_policy(
        vault,
        "bot",
        "version: 1\nrules:\n  - name: profile\n    allow: [data.read]\n    data: [profile]\n"
        "    limits: [{window: 1h, max_count: 5}]\n",
    )
    db = vault.db.path
    assert db is not None
    with sqlite3.connect(db) as c:
        c.execute(
            "UPDATE records SET ciphertext = zeroblob(length(ciphertext)) WHERE name = 'profile'"
        )
    with pytest.raises(IntegrityError):
        data.read_data(vault, "bot", "profile")
    with vault.db.read() as conn:
        states = [r.state for r in conn.execute(t.ledger.select())]
        outcomes = [
            (r.action, r.outcome)
            for r in conn.execute(t.audit.select().order_by(t.audit.c.seq))
            if r.action in ("decide.data.read", "data.read")
        ]
    # The read ran in the transaction that decided: nothing is booked, and both the decision and
    # the failure are audited.
    assert states == []
    assert outcomes == [("decide.data.read", "allow"), ("data.read", "failure")]
