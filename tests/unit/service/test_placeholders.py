"""Placeholders, in process: `ksp_…` stand-ins for a credential, usable by one agent.

Rules under test (keysafe.service.placeholders): only the SHA-256 of a placeholder is stored (the
token itself is nowhere in the database files); it authenticates its own agent and credential and
nothing else; an unknown, wrongly prefixed or over-long token is refused; revoking the agent,
withdrawing the placeholders or removing the credential ends it (re-adding a credential under the
same name does not revive it); misuse is refused with PLACEHOLDER_MISUSED and audited.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from keysafe.audit.redact import hmac_value
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    MalformedRequestError,
    NotAuthenticatedError,
    NotFoundError,
    PolicyDeniedError,
)
from keysafe.local_proxy import _PLACEHOLDER
from keysafe.service import agents, credentials, placeholders
from keysafe.service.models import Attachment
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SECRET = "sk-PLACEHOLDER-CANARY-3b9f1e"


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    v, _ = init_vault(
        Home(tmp_path / "h"),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
        clock=lambda: NOW,
    )
    for name in ("api", "other"):
        credentials.add_credential(
            v,
            name,
            SecretBytes(bytearray(f"{SECRET}-{name}".encode())),
            hosts=["api.example.com"],
            attach=Attachment.bearer(),
        )
    agents.add_agent(v, "bot")
    agents.add_agent(v, "bob")
    return v


def _issue(vault: Vault, credential: str = "api", agent: str = "bot") -> str:
    return bytes(placeholders.issue(vault, credential, agent).reveal()).decode()


def _rows(vault: Vault) -> list[dict[str, Any]]:
    with vault.db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(t.placeholders))]


def _audit(vault: Vault, action: str) -> list[dict[str, Any]]:
    with vault.db.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(t.audit.select().order_by(t.audit.c.seq))]
    return [r | {"details": json.loads(r["details"])} for r in rows if r["action"] == action]


def _db_bytes(vault: Vault) -> bytes:
    path = vault.db.path
    assert path is not None
    return b"".join(
        p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )


def _insert(vault: Vault, token: str, agent: str = "bot", credential: str = "api") -> None:
    """A row as `issue` would write it, for a token of our choosing (boundary tests)."""
    with vault.db.write() as conn:
        conn.execute(
            insert(t.placeholders).values(
                token_hash=hashlib.sha256(token.encode()).hexdigest(),
                agent=agent,
                credential=credential,
                created_at=NOW.isoformat(),
            )
        )


# -- issue -----------------------------------------------------------------------------------


def test_issue_returns_a_fresh_ksp_token_the_local_proxy_recognises(vault: Vault) -> None:
    first, second = _issue(vault), _issue(vault)
    for token in (first, second):
        assert token.startswith(placeholders.PREFIX)
        assert _PLACEHOLDER.fullmatch(token), token  # the proxy finds it wherever the SDK puts it
        assert 40 <= len(token) <= 200
        assert SECRET not in token
    assert first != second


def test_only_the_hash_is_stored_never_the_token(vault: Vault) -> None:
    token = _issue(vault)
    [row] = _rows(vault)
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert (row["agent"], row["credential"]) == ("bot", "api")
    assert token not in json.dumps(row, default=str)
    raw = _db_bytes(vault)
    assert raw, "the database files are empty"
    assert row["token_hash"].encode() in raw  # the check below does look at the written data
    assert token.encode() not in raw
    assert token.removeprefix(placeholders.PREFIX).encode() not in raw


def test_issue_is_audited_without_the_token(vault: Vault) -> None:
    token = _issue(vault)
    [row] = _audit(vault, "placeholder.issue")
    assert row["actor"] == "owner" and row["target"] == "credential:api"
    assert row["details"] == {"agent": "bot", "name": "api"}
    assert token not in json.dumps(_audit(vault, "placeholder.issue"))


def test_issue_refuses_an_unknown_credential_or_agent_and_a_bad_name(vault: Vault) -> None:
    with pytest.raises(NotFoundError):
        placeholders.issue(vault, "nope", "bot")
    with pytest.raises(NotFoundError):
        placeholders.issue(vault, "api", "ghost")
    with pytest.raises(MalformedRequestError):
        placeholders.issue(vault, "../api", "bot")
    assert _rows(vault) == []


def test_issue_to_a_revoked_agent_is_refused(vault: Vault) -> None:
    agents.set_status(vault, "bob", "revoked")
    with pytest.raises(PolicyDeniedError, match="revoked"):
        placeholders.issue(vault, "api", "bob")
    assert _rows(vault) == []


# -- authenticate ------------------------------------------------------------------------------


def test_authenticate_gives_the_agent_and_credential_it_was_issued_for(vault: Vault) -> None:
    for_bot, for_bob = _issue(vault, "api", "bot"), _issue(vault, "other", "bob")
    assert placeholders.authenticate(vault, for_bot) == placeholders.Holder("bot", "api")
    assert placeholders.authenticate(vault, for_bob) == placeholders.Holder("bob", "other")


def test_an_unknown_placeholder_is_refused(vault: Vault) -> None:
    _issue(vault)
    with pytest.raises(NotAuthenticatedError, match="not valid"):
        placeholders.authenticate(vault, placeholders.PREFIX + secrets.token_urlsafe(32))


def test_wrong_prefixes_and_the_stored_hash_are_refused(vault: Vault) -> None:
    token = _issue(vault)
    body = token.removeprefix(placeholders.PREFIX)
    [row] = _rows(vault)
    for wrong in (
        body,  # no prefix
        "ksq_" + body,
        "KSP_" + body,
        " " + token,
        "ks_agent_" + body,
        row["token_hash"],  # what the database holds is not a credential
        placeholders.PREFIX + row["token_hash"],
        "",
    ):
        with pytest.raises(NotAuthenticatedError):
            placeholders.authenticate(vault, wrong)
    assert placeholders.authenticate(vault, token).agent == "bot"  # the real one still works


def test_a_token_without_the_prefix_is_refused_even_if_its_hash_were_stored(
    vault: Vault,
) -> None:
    bare = secrets.token_urlsafe(32)
    _insert(vault, bare)
    _insert(vault, "ks_agent_" + bare)
    for token in (bare, "ks_agent_" + bare):
        with pytest.raises(NotAuthenticatedError):
            placeholders.authenticate(vault, token)


def test_a_token_over_200_characters_is_refused_even_if_stored(vault: Vault) -> None:
    at_cap = placeholders.PREFIX + "a" * (200 - len(placeholders.PREFIX))
    over = placeholders.PREFIX + "b" * (201 - len(placeholders.PREFIX))
    _insert(vault, at_cap)
    _insert(vault, over)
    assert placeholders.authenticate(vault, at_cap) == placeholders.Holder("bot", "api")
    with pytest.raises(NotAuthenticatedError):
        placeholders.authenticate(vault, over)
    with pytest.raises(NotAuthenticatedError):
        placeholders.authenticate(vault, placeholders.PREFIX + "c" * 100_000)


def test_a_revoked_agents_placeholder_is_refused(vault: Vault) -> None:
    token = _issue(vault, "api", "bob")
    assert placeholders.authenticate(vault, token).agent == "bob"
    agents.set_status(vault, "bob", "revoked")
    with pytest.raises(NotAuthenticatedError):
        placeholders.authenticate(vault, token)


def test_a_placeholder_whose_agent_does_not_exist_is_refused(vault: Vault) -> None:
    token = _issue(vault)
    _insert(vault, placeholders.PREFIX + "x" * 40, agent="nobody")
    with pytest.raises(NotAuthenticatedError):
        placeholders.authenticate(vault, placeholders.PREFIX + "x" * 40)
    assert placeholders.authenticate(vault, token).agent == "bot"


# -- revoke_all and credential removal ---------------------------------------------------------


def test_revoke_all_withdraws_every_placeholder_of_the_credential_only(vault: Vault) -> None:
    bot_api, bob_api, bot_other = (
        _issue(vault, "api", "bot"),
        _issue(vault, "api", "bob"),
        _issue(vault, "other", "bot"),
    )
    assert placeholders.revoke_all(vault, "api") == 2
    for token in (bot_api, bob_api):
        with pytest.raises(NotAuthenticatedError):
            placeholders.authenticate(vault, token)
    assert placeholders.authenticate(vault, bot_other) == placeholders.Holder("bot", "other")
    [row] = _audit(vault, "placeholder.revoke")
    assert row["target"] == "credential:api" and row["details"]["count"] == 2
    assert placeholders.revoke_all(vault, "api") == 0


def test_revoke_all_for_one_agent_leaves_the_others(vault: Vault) -> None:
    bot_api, bob_api = _issue(vault, "api", "bot"), _issue(vault, "api", "bob")
    assert placeholders.revoke_all(vault, "api", "bob") == 1
    with pytest.raises(NotAuthenticatedError):
        placeholders.authenticate(vault, bob_api)
    assert placeholders.authenticate(vault, bot_api).agent == "bot"
    [row] = _audit(vault, "placeholder.revoke")
    assert row["details"]["agent"] == "bob" and row["details"]["count"] == 1


def test_removing_the_credential_kills_its_placeholders_and_re_adding_does_not_revive_them(
    vault: Vault,
) -> None:
    old = _issue(vault, "api", "bot")
    credentials.remove_credential(vault, "api")
    with pytest.raises(NotAuthenticatedError):
        placeholders.authenticate(vault, old)
    credentials.add_credential(
        vault,
        "api",
        SecretBytes(bytearray(b"sk-new-value-123")),
        hosts=["api.example.com"],
        attach=Attachment.bearer(),
    )
    with pytest.raises(NotAuthenticatedError):
        placeholders.authenticate(vault, old)
    new = _issue(vault, "api", "bot")
    assert placeholders.authenticate(vault, new) == placeholders.Holder("bot", "api")
    assert [r["token_hash"] for r in _rows(vault)] == [hashlib.sha256(new.encode()).hexdigest()]


# -- refuse_use --------------------------------------------------------------------------------


def test_refuse_use_audits_the_misuse_and_returns_placeholder_misused(vault: Vault) -> None:
    token = _issue(vault)
    holder = placeholders.authenticate(vault, token)
    wanted = "/v1/agent/capabilities" + "/x" * 100  # long: kept to 64 characters
    err = placeholders.refuse_use(vault, holder, wanted=wanted, why="not a credential call")
    assert isinstance(err, PolicyDeniedError)
    body = err.to_dict()
    assert body["code"] == "POLICY_DENIED"
    assert body["reason_code"] == "PLACEHOLDER_MISUSED"
    assert "'api'" in err.what and wanted[:64] in err.what and wanted[:65] not in err.what
    assert "/api/" in err.next_step
    [row] = _audit(vault, "placeholder.refused")
    assert row["actor"] == "agent:bot" and row["outcome"] == "denied"
    assert row["target"] == "credential:api"
    details = row["details"]
    assert details["agent"] == "bot" and details["name"] == "api"
    assert details["reason"] == "not a credential call"
    key = vault.subkey("audit-hmac")
    try:  # free text is kept only as an HMAC, of the truncated value
        assert details["wanted"] == hmac_value(key.reveal(), wanted[:64])
    finally:
        key.wipe()
    assert token not in json.dumps(_audit(vault, "placeholder.refused"))
    # Refusing does not withdraw it: the placeholder still works for its own call.
    assert placeholders.authenticate(vault, token) == holder
