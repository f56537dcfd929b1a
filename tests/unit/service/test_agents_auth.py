"""Agents, in process: tokens shown once and stored hashed, pause/resume/revoke, pause-all, and
Ed25519-signed request envelopes (clock skew, once-only nonces, tampering)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey
from sqlalchemy import update

from keysafe.crypto import jcs
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError, NotAuthenticatedError, ReplayError
from keysafe.policy.intent import Intent
from keysafe.service import agent_auth, agents, policies
from keysafe.service.context import open_vault
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF, ManualClock
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault
from tests.unit.service.gate_support import authorize

PASSPHRASE = b"correct horse battery staple"
MONDAY_9AM = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
RECIPIENT = "0x1111111111111111111111111111111111111111"
REFUSED = "The agent could not be authenticated."
SIGN = "/v1/agent/sign-transaction"
SEND = "/v1/agent/send-transaction"

POLICY = f"""\
version: 1
rules:
  - name: small-eth
    allow: [evm.transfer]
    wallets: [main]
    chains: [base]
    assets: [ETH]
    recipients: ["{RECIPIENT}"]
    max_per_tx: {{ETH: "0.01"}}
"""

SMALL = Intent(
    action="evm.transfer", chain="base", wallet="main", asset="ETH", amount="0.001", to=RECIPIENT
)


@dataclass
class Made:
    home: Home
    vault: Vault
    clock: ManualClock


@pytest.fixture
def made(tmp_path: Path) -> Iterator[Made]:
    clock = ManualClock(MONDAY_9AM)
    home = Home(tmp_path / "h")
    vault, phrase = init_vault(home, SecretBytes(PASSPHRASE), kdf=CHEAP_KDF, clock=clock)
    phrase.wipe()
    yield Made(home, vault, clock)
    vault.lock()
    vault.db.close()


def _token(secret: SecretBytes | None) -> str:
    assert secret is not None
    return bytes(secret.reveal()).decode()


def _add(made: Made, name: str, *, policy: bool = True, public_key: str | None = None) -> str:
    view, token = agents.add_agent(made.vault, name, public_key=public_key)
    if policy:
        policies.set_policy(made.vault, name, POLICY)
    assert view.name == name
    return _token(token)


def _auth(made: Made, token: str) -> Any:
    with made.vault.db.read() as conn:
        return agent_auth.authenticate_token(conn, token)


def _store_bytes(home: Home) -> bytes:
    """Every byte keysafe keeps on disk for this vault: the database, its WAL and shm files."""
    return b"".join(p.read_bytes() for p in sorted(home.path.iterdir()) if p.is_file())


# -- bearer tokens ---------------------------------------------------------------------------


def test_add_agent_token_shown_once_only_sha256_is_stored(made: Made) -> None:
    token = _add(made, "bot")
    assert token.startswith("ks_agent_")
    assert len(token) > len("ks_agent_") + 32
    on_disk = _store_bytes(made.home)
    assert token.encode() not in on_disk
    assert token.removeprefix("ks_agent_").encode() not in on_disk
    assert hashlib.sha256(token.encode()).hexdigest().encode() in on_disk
    view = next(v for v in agents.list_agents(made.vault) if v.name == "bot")
    assert token not in repr(view.model_dump(mode="json"))
    assert view.model_dump(mode="json")["auth"] == "token"


def test_add_agent_twice_tokens_differ(made: Made) -> None:
    assert _add(made, "one") != _add(made, "two")


def test_authenticate_token_valid_returns_agent_row(made: Made) -> None:
    token = _add(made, "bot")
    assert _auth(made, token).name == "bot"


def test_authenticate_token_works_from_a_fresh_locked_handle(made: Made) -> None:
    token = _add(made, "bot")
    with open_vault(made.home) as other, other.db.read() as conn:
        assert agent_auth.authenticate_token(conn, token).name == "bot"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("ks_agent_" + "A" * 43, id="unknown-token"),
        pytest.param("xx_agent_" + "A" * 43, id="wrong-prefix"),
        pytest.param("", id="empty"),
        pytest.param("ks_agent_", id="prefix-only"),
        pytest.param("ks_agent_" + "A" * 300, id="too-long"),
        pytest.param("KS_AGENT_" + "A" * 43, id="upper-case-prefix"),
    ],
)
def test_authenticate_token_bad_token_refused_with_fixed_message(made: Made, bad: str) -> None:
    _add(made, "bot")
    with pytest.raises(NotAuthenticatedError) as exc:
        _auth(made, bad)
    assert exc.value.what == REFUSED


def test_authenticate_token_real_token_with_wrong_prefix_refused(made: Made) -> None:
    token = _add(made, "bot")
    with pytest.raises(NotAuthenticatedError) as exc:
        _auth(made, "ks_token_" + token.removeprefix("ks_agent_"))
    assert exc.value.what == REFUSED


def test_authenticate_token_truncated_or_extended_token_refused(made: Made) -> None:
    token = _add(made, "bot")
    for bad in (token[:-1], token + "x", token.upper()):
        with pytest.raises(NotAuthenticatedError) as exc:
            _auth(made, bad)
        assert exc.value.what == REFUSED


def test_authenticate_token_paused_agent_still_authenticates(made: Made) -> None:
    # Pausing is a decision (AGENT_PAUSED), not an authentication failure.
    token = _add(made, "bot")
    agents.set_status(made.vault, "bot", "paused")
    assert _auth(made, token).status == "paused"


def test_rotate_token_old_token_fails_new_token_works(made: Made) -> None:
    old = _add(made, "bot")
    new = _token(agents.rotate_token(made.vault, "bot"))
    assert new != old
    assert new.startswith("ks_agent_")
    assert _auth(made, new).name == "bot"
    with pytest.raises(NotAuthenticatedError) as exc:
        _auth(made, old)
    assert exc.value.what == REFUSED
    on_disk = _store_bytes(made.home)
    assert new.encode() not in on_disk
    assert hashlib.sha256(new.encode()).hexdigest().encode() in on_disk


def test_rotate_token_other_agents_unaffected(made: Made) -> None:
    a, b = _add(made, "a"), _add(made, "b")
    agents.rotate_token(made.vault, "a")
    assert _auth(made, b).name == "b"
    with pytest.raises(NotAuthenticatedError):
        _auth(made, a)


def test_revoke_token_fails_immediately_with_fixed_message(made: Made) -> None:
    token = _add(made, "bot")
    with open_vault(made.home) as other:  # a second handle that was open before the revoke
        agents.set_status(made.vault, "bot", "revoked")
        with pytest.raises(NotAuthenticatedError) as exc, other.db.read() as conn:
            agent_auth.authenticate_token(conn, token)
    assert exc.value.what == REFUSED
    view = next(v for v in agents.list_agents(made.vault) if v.name == "bot")
    assert view.status == "revoked"


@pytest.mark.parametrize("status", ["active", "paused", "revoked"])
def test_set_status_after_revoke_refused(made: Made, status: agents.Status) -> None:
    token = _add(made, "bot")
    agents.set_status(made.vault, "bot", "revoked")
    with pytest.raises(MalformedRequestError, match="revoked"):
        agents.set_status(made.vault, "bot", status)
    with pytest.raises(NotAuthenticatedError):
        _auth(made, token)


def test_rotate_token_after_revoke_refused(made: Made) -> None:
    _add(made, "bot")
    agents.set_status(made.vault, "bot", "revoked")
    with pytest.raises(MalformedRequestError, match="revoked"):
        agents.rotate_token(made.vault, "bot")


def test_revoke_authorize_denies_agent_revoked(made: Made) -> None:
    _add(made, "bot")
    agents.set_status(made.vault, "bot", "revoked")
    auth = authorize(made.vault, "bot", SMALL)
    assert (auth.decision.outcome, auth.decision.code) == ("deny", "AGENT_REVOKED")


# -- pause / resume / pause-all ----------------------------------------------------------------


def test_pause_authorize_denies_agent_paused_resume_allows_again(made: Made) -> None:
    _add(made, "bot")
    assert authorize(made.vault, "bot", SMALL).decision.outcome == "allow"
    agents.set_status(made.vault, "bot", "paused")
    auth = authorize(made.vault, "bot", SMALL)
    assert (auth.decision.outcome, auth.decision.code) == ("deny", "AGENT_PAUSED")
    assert policies.check(made.vault, "bot", SMALL).code == "AGENT_PAUSED"
    agents.set_status(made.vault, "bot", "active")
    assert authorize(made.vault, "bot", SMALL).decision.outcome == "allow"


def test_pause_one_agent_others_still_allowed(made: Made) -> None:
    _add(made, "a")
    _add(made, "b")
    agents.set_status(made.vault, "a", "paused")
    assert authorize(made.vault, "b", SMALL).decision.outcome == "allow"


def test_pause_all_every_agent_denied_paused_all_resume_all_allows(made: Made) -> None:
    names = ["a", "b", "c"]
    for n in names:
        _add(made, n)
    agents.set_paused_all(made.vault, True)
    for n in names:
        d = authorize(made.vault, n, SMALL).decision
        assert (d.outcome, d.code) == ("deny", "PAUSED_ALL")
    # A fresh handle (another process) sees the kill switch too.
    with open_vault(made.home, clock=made.clock) as other:
        other.unlock(SecretBytes(PASSPHRASE))  # the gate checks the owner's seals with the key
        assert authorize(other, "a", SMALL).decision.code == "PAUSED_ALL"
    agents.set_paused_all(made.vault, False)
    for n in names:
        assert authorize(made.vault, n, SMALL).decision.outcome == "allow"


def test_pause_all_then_resume_all_individual_pause_still_applies(made: Made) -> None:
    _add(made, "a")
    agents.set_status(made.vault, "a", "paused")
    agents.set_paused_all(made.vault, True)
    agents.set_paused_all(made.vault, False)
    assert authorize(made.vault, "a", SMALL).decision.code == "AGENT_PAUSED"


def test_pause_all_is_audited(made: Made) -> None:
    from keysafe.service import audit

    agents.set_paused_all(made.vault, True)
    agents.set_paused_all(made.vault, False)
    actions = [e.action for e in audit.list_entries(made.vault)]
    assert actions[-2:] == ["agents.pause_all", "agents.resume_all"]


# -- signed requests ---------------------------------------------------------------------------


@dataclass
class Signer:
    name: str
    key: SigningKey

    def envelope(
        self,
        body: Any,
        *,
        at: datetime,
        nonce: str | None = None,
        method: str = "POST",
        path: str = SIGN,
    ) -> dict[str, Any]:
        return {
            "version": 2,
            "agent": self.name,
            "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nonce": nonce or secrets.token_hex(16),
            "method": method,
            "path": path,
            "body": body,
        }

    def sign(self, envelope: dict[str, Any]) -> str:
        return base64.b64encode(self.key.sign(jcs.dumps(envelope)).signature).decode()


@pytest.fixture
def signer(made: Made) -> Signer:
    key = SigningKey.generate()
    view, token = agents.add_agent(made.vault, "signer", public_key=key.verify_key.encode().hex())
    if token is not None:
        token.wipe()
    assert "ed25519" in view.auth
    return Signer("signer", key)


def _as_sent(envelope: dict[str, Any]) -> agent_auth.SignedRequest:
    """The request the envelope says it signs (what an honest client sends with it)."""
    return agent_auth.SignedRequest(
        envelope.get("method", "POST"), envelope.get("path", SIGN), envelope.get("body")
    )


def _verify(
    made: Made,
    envelope: dict[str, Any],
    sig: str,
    *,
    now: datetime | None = None,
    request: agent_auth.SignedRequest | None = None,
) -> Any:
    with made.vault.db.write() as conn:
        return agent_auth.authenticate_signed(
            conn, envelope, sig, request=request or _as_sent(envelope), now=now or made.clock()
        )


BODY = {"action": "evm.transfer", "chain": "base", "asset": "ETH", "amount": "0.001"}


def test_signed_valid_envelope_passes(made: Made, signer: Signer) -> None:
    env = signer.envelope(BODY, at=made.clock())
    assert _verify(made, env, signer.sign(env)).name == "signer"


def test_signed_base64_public_key_accepted(made: Made) -> None:
    key = SigningKey.generate()
    pub = base64.b64encode(key.verify_key.encode()).decode()
    agents.add_agent(made.vault, "b64", public_key=pub)
    s = Signer("b64", key)
    env = s.envelope(BODY, at=made.clock())
    assert _verify(made, env, s.sign(env)).name == "b64"


def test_signed_replay_same_envelope_raises_replay_error(made: Made, signer: Signer) -> None:
    env = signer.envelope(BODY, at=made.clock())
    sig = signer.sign(env)
    _verify(made, env, sig)
    with pytest.raises(ReplayError):
        _verify(made, env, sig)


def test_signed_replay_through_another_handle_raises_replay_error(
    made: Made, signer: Signer
) -> None:
    env = signer.envelope(BODY, at=made.clock())
    sig = signer.sign(env)
    _verify(made, env, sig)
    with open_vault(made.home) as other, pytest.raises(ReplayError), other.db.write() as conn:
        agent_auth.authenticate_signed(
            conn, env, sig, request=_as_sent(env), now=made.clock() + timedelta(minutes=1)
        )


def test_signed_same_nonce_new_body_raises_replay_error(made: Made, signer: Signer) -> None:
    nonce = secrets.token_hex(16)
    first = signer.envelope(BODY, at=made.clock(), nonce=nonce)
    _verify(made, first, signer.sign(first))
    second = signer.envelope({**BODY, "amount": "0.002"}, at=made.clock(), nonce=nonce)
    with pytest.raises(ReplayError):
        _verify(made, second, signer.sign(second))


def test_signed_fresh_nonces_each_pass(made: Made, signer: Signer) -> None:
    for _ in range(3):
        env = signer.envelope(BODY, at=made.clock())
        _verify(made, env, signer.sign(env))


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_signed_timestamp_six_minutes_off_refused(
    made: Made, signer: Signer, offset: timedelta
) -> None:
    env = signer.envelope(BODY, at=made.clock() + offset)
    with pytest.raises(NotAuthenticatedError):
        _verify(made, env, signer.sign(env))


@pytest.mark.parametrize("offset", [timedelta(minutes=-4), timedelta(minutes=4)])
def test_signed_timestamp_four_minutes_off_passes(
    made: Made, signer: Signer, offset: timedelta
) -> None:
    env = signer.envelope(BODY, at=made.clock() + offset)
    assert _verify(made, env, signer.sign(env)).name == "signer"


def test_signed_skew_refusal_does_not_burn_the_nonce(made: Made, signer: Signer) -> None:
    env = signer.envelope(BODY, at=made.clock())
    sig = signer.sign(env)
    with pytest.raises(NotAuthenticatedError):
        _verify(made, env, sig, now=made.clock() + timedelta(minutes=6))
    assert _verify(made, env, sig).name == "signer"


@pytest.mark.parametrize(
    "field,value",
    [
        ("body", {**BODY, "amount": "10"}),
        ("agent", "someone-else"),
        ("timestamp", (MONDAY_9AM + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("nonce", "f" * 32),
        ("method", "GET"),
        ("path", SEND),
    ],
)
def test_signed_tampered_envelope_refused_with_fixed_message(
    made: Made, signer: Signer, field: str, value: Any
) -> None:
    env = signer.envelope(BODY, at=made.clock())
    sig = signer.sign(env)
    with pytest.raises(NotAuthenticatedError) as exc:
        _verify(made, {**env, field: value}, sig)
    assert exc.value.what == REFUSED


def test_signed_extra_field_after_signing_refused(made: Made, signer: Signer) -> None:
    env = signer.envelope(BODY, at=made.clock())
    sig = signer.sign(env)
    with pytest.raises(NotAuthenticatedError):
        _verify(made, {**env, "extra": 1}, sig)


def test_signed_signature_by_another_key_refused(made: Made, signer: Signer) -> None:
    env = signer.envelope(BODY, at=made.clock())
    other = Signer("signer", SigningKey.generate())
    with pytest.raises(NotAuthenticatedError) as exc:
        _verify(made, env, other.sign(env))
    assert exc.value.what == REFUSED


def test_signed_unknown_agent_refused_with_fixed_message(made: Made, signer: Signer) -> None:
    ghost = Signer("ghost", SigningKey.generate())
    env = ghost.envelope(BODY, at=made.clock())
    with pytest.raises(NotAuthenticatedError) as exc:
        _verify(made, env, ghost.sign(env))
    assert exc.value.what == REFUSED


def test_signed_token_only_agent_refused(made: Made) -> None:
    _add(made, "tokenonly")
    s = Signer("tokenonly", SigningKey.generate())
    env = s.envelope(BODY, at=made.clock())
    with pytest.raises(NotAuthenticatedError) as exc:
        _verify(made, env, s.sign(env))
    assert exc.value.what == REFUSED


def test_signed_revoked_agent_refused(made: Made, signer: Signer) -> None:
    agents.set_status(made.vault, "signer", "revoked")
    env = signer.envelope(BODY, at=made.clock())
    with pytest.raises(NotAuthenticatedError) as exc:
        _verify(made, env, signer.sign(env))
    assert exc.value.what == REFUSED


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda e: {k: v for k, v in e.items() if k != "nonce"}, id="no-nonce"),
        pytest.param(lambda e: {k: v for k, v in e.items() if k != "agent"}, id="no-agent"),
        pytest.param(lambda e: {**e, "nonce": "short"}, id="short-nonce"),
        pytest.param(lambda e: {**e, "timestamp": "not a time"}, id="bad-timestamp"),
        pytest.param(lambda e: {**e, "timestamp": "2026-11-23T09:00:00"}, id="naive-timestamp"),
        pytest.param(lambda e: {k: v for k, v in e.items() if k != "method"}, id="no-method"),
        pytest.param(lambda e: {k: v for k, v in e.items() if k != "path"}, id="no-path"),
        pytest.param(lambda e: {k: v for k, v in e.items() if k != "body"}, id="no-body"),
        pytest.param(lambda e: {**e, "route": "any"}, id="unknown-field-signed"),
    ],
)
def test_signed_malformed_envelope_refused_with_fixed_message(
    made: Made, signer: Signer, mutate: Any
) -> None:
    env = mutate(signer.envelope(BODY, at=made.clock()))
    with pytest.raises(NotAuthenticatedError) as exc:
        _verify(made, env, signer.sign(env))
    assert exc.value.what == REFUSED


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(agent_auth.SignedRequest("POST", SEND, BODY), id="another-route"),
        pytest.param(agent_auth.SignedRequest("PUT", SIGN, BODY), id="another-method"),
        pytest.param(agent_auth.SignedRequest("POST", SIGN + "?x=1", BODY), id="added-query"),
        pytest.param(
            agent_auth.SignedRequest("POST", SIGN, {**BODY, "amount": "1"}), id="other-body"
        ),
        pytest.param(agent_auth.SignedRequest("POST", SIGN, None), id="no-body"),
    ],
)
def test_signed_envelope_for_another_request_refused_and_nonce_kept(
    made: Made, signer: Signer, sent: agent_auth.SignedRequest
) -> None:
    env = signer.envelope(BODY, at=made.clock())
    sig = signer.sign(env)
    with pytest.raises(NotAuthenticatedError) as exc:
        _verify(made, env, sig, request=sent)
    assert exc.value.what == REFUSED
    # Refused before the nonce is burnt: the request it names still goes through.
    assert _verify(made, env, sig).name == "signer"


def test_signed_envelope_query_must_match_exactly(made: Made, signer: Signer) -> None:
    path = "/v1/agent/approvals/apr_1?wait=5"
    env = signer.envelope(None, at=made.clock(), method="GET", path=path)
    sig = signer.sign(env)
    for other in ("/v1/agent/approvals/apr_1", "/v1/agent/approvals/apr_1?wait=60"):
        with pytest.raises(NotAuthenticatedError):
            _verify(made, env, sig, request=agent_auth.SignedRequest("GET", other, None))
    assert _verify(made, env, sig, request=agent_auth.SignedRequest("GET", path, None))


@pytest.mark.parametrize(
    "version",
    [
        pytest.param(None, id="v1-no-version"),
        pytest.param(1, id="v1"),
        pytest.param("2", id="string-2"),
        pytest.param(True, id="bool"),
    ],
)
def test_signed_old_envelope_format_refused_saying_update_the_client(
    made: Made, signer: Signer, version: Any
) -> None:
    env = signer.envelope(BODY, at=made.clock())
    old = {k: v for k, v in env.items() if k not in ("version", "method", "path")}
    if version is not None:
        old["version"] = version
    with pytest.raises(NotAuthenticatedError) as exc:
        _verify(made, old, signer.sign(old), request=_as_sent(env))
    assert "old envelope format" in exc.value.what
    assert "does not sign the HTTP method and path" in exc.value.what
    assert "update the agent's client" in exc.value.next_step


def test_signed_newer_envelope_version_refused_saying_update_the_vault(
    made: Made, signer: Signer
) -> None:
    env = {**signer.envelope(BODY, at=made.clock()), "version": 3}
    with pytest.raises(NotAuthenticatedError) as exc:
        _verify(made, env, signer.sign(env))
    assert "version 3" in exc.value.what
    assert "update keysafe on the vault's host" in exc.value.next_step


@pytest.mark.parametrize("sig", ["not base64!!", "", base64.b64encode(b"\0" * 64).decode()])
def test_signed_malformed_signature_refused(made: Made, signer: Signer, sig: str) -> None:
    env = signer.envelope(BODY, at=made.clock())
    with pytest.raises(NotAuthenticatedError) as exc:
        _verify(made, env, sig)
    assert exc.value.what == REFUSED


@pytest.mark.parametrize("bad", ["00" * 31, "zz" * 32, "00" * 33])
def test_add_agent_bad_public_key_refused(made: Made, bad: str) -> None:
    with pytest.raises(MalformedRequestError):
        agents.add_agent(made.vault, "bad", public_key=bad)
    assert agents.list_agents(made.vault) == []


def test_bearer_auth_records_last_seen_at_most_once_a_second(made: Made) -> None:
    token = _add(made, "bot")

    def seen() -> str | None:
        return next(v for v in agents.list_agents(made.vault) if v.name == "bot").last_seen

    assert seen() is None
    assert agent_auth.authenticate(made.vault, bearer=token) == "bot"
    first = seen()
    assert first is not None and first.startswith("2026-11-23T09:00:00")
    made.clock.now = MONDAY_9AM + timedelta(milliseconds=500)
    agent_auth.authenticate(made.vault, bearer=token)
    assert seen() == first  # within the second: no write
    made.clock.now = MONDAY_9AM + timedelta(seconds=2)
    agent_auth.authenticate(made.vault, bearer=token)
    assert seen() is not None and seen() != first and seen().startswith("2026-11-23T09:00:02")  # type: ignore[union-attr]
    agents.set_status(made.vault, "bot", "revoked")
    with pytest.raises(NotAuthenticatedError):
        agent_auth.authenticate(made.vault, bearer=token)


# -- the quick bearer check (the server's event loop) --------------------------------------------


def _other_handle(made: Made) -> Vault:
    """The same vault file opened separately, as another process (the owner's CLI) would."""
    other = open_vault(made.home)
    other.unlock(SecretBytes(PASSPHRASE))
    return other


def test_quick_check_answers_only_for_a_row_whose_seal_verifies(made: Made) -> None:
    token = _add(made, "bot")
    assert agent_auth.authenticate_token_quick(made.vault, token) is None  # last_seen never written
    assert agent_auth.authenticate(made.vault, bearer=token) == "bot"
    assert agent_auth.authenticate_token_quick(made.vault, token) == "bot"
    assert agent_auth.authenticate_token_quick(made.vault, token + "x") is None
    made.clock.now += timedelta(seconds=2)  # last_seen is due: the full check writes it
    assert agent_auth.authenticate_token_quick(made.vault, token) is None
    assert agent_auth.authenticate(made.vault, bearer=token) == "bot"
    assert agent_auth.authenticate_token_quick(made.vault, token) == "bot"
    made.vault.lock()  # no key, no seal check: the full path answers (and refuses)
    assert agent_auth.authenticate_token_quick(made.vault, token) is None
    made.vault.unlock(SecretBytes(PASSPHRASE))  # the seal is checked again with the key
    assert agent_auth.authenticate_token_quick(made.vault, token) == "bot"
    with made.vault.db.write() as conn:  # a row whose seal no longer verifies goes the full way
        conn.execute(update(t.agents).where(t.agents.c.name == "bot").values(mac="00" * 32))
    assert agent_auth.authenticate_token_quick(made.vault, token) is None


@pytest.mark.parametrize("change", ["revoke", "rotate"])
def test_attack_quick_check_refuses_at_once_after_another_handle_changes_the_agent(
    made: Made, change: str
) -> None:
    token = _add(made, "bot")
    agent_auth.authenticate(made.vault, bearer=token)
    assert agent_auth.authenticate_token_quick(made.vault, token) == "bot"
    other = _other_handle(made)
    try:
        if change == "revoke":
            agents.set_status(other, "bot", "revoked")
        else:
            agents.rotate_token(other, "bot").wipe()
    finally:
        other.lock()
        other.db.close()
    assert agent_auth.authenticate_token_quick(made.vault, token) is None
    with pytest.raises(NotAuthenticatedError):
        agent_auth.authenticate(made.vault, bearer=token)


def test_attack_quick_check_does_not_honour_a_row_edited_after_it_was_verified(
    made: Made,
) -> None:
    """Someone with write access to the file points a verified agent's row at their own token
    (the seal unchanged): the quick check must not trust the row it remembers."""
    token = _add(made, "bot")
    agent_auth.authenticate(made.vault, bearer=token)
    forged = agents.TOKEN_PREFIX + secrets.token_urlsafe(32)
    with made.vault.db.write() as conn:
        conn.exec_driver_sql(
            "UPDATE agents SET token_hash = ? WHERE name = 'bot'",
            (hashlib.sha256(forged.encode()).hexdigest(),),
        )
    assert agent_auth.authenticate_token_quick(made.vault, forged) is None
    assert agent_auth.authenticate_token_quick(made.vault, token) is None
