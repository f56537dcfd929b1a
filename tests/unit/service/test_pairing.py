"""Pairing a sidecar (service/pairing.py): the invite is signed and used once, both ends show
the same four words, the owner's approval needs them, and the paired agent is cut off when
revoked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import AlreadyExistsError, MalformedRequestError
from keysafe.relay.envelope import Identity
from keysafe.relay.pairing import Claim, Invite, commitment, decode_invite, pairing_words
from keysafe.service import agents, approvals, dispatch, pairing
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

RELAY = "ws://127.0.0.1:9"
POLICY = """
version: 1
rules:
  - name: read
    allow: [data.read]
    data: [profile.email]
"""


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    made, _ = init_vault(
        Home(tmp_path / "h"),
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
    )
    return made


def _invite(vault: Vault, agent: str = "remote") -> tuple[str, Invite]:
    text = pairing.create_invite(vault, agent, relay=RELAY, policy=POLICY, policy_source="p.yaml")
    return text, decode_invite(text, now=time.time())


def _claim(
    vault: Vault, invite: Invite, sidecar: Identity, nonce: bytes = b"n" * 16
) -> tuple[Claim, list[str]]:
    """Commit, learn the vault's nonce, reveal: the pairing is parked with its words, which are
    the ones the sidecar computes."""
    claim = Claim(
        invite=invite, sidecar=sidecar.public.to_text(), host="vps-1", commitment=commitment(nonce)
    )
    first = pairing.claim(vault, claim, sidecar.rid)
    assert first.status == "reveal" and first.nonce and first.words is None
    assert approvals.list_approvals(vault) == []  # nothing parked before the reveal
    claim = claim.model_copy(update={"reveal": nonce.hex()})
    answer = pairing.claim(vault, claim, sidecar.rid)
    assert answer.status == "pending" and answer.approval_id and answer.words
    ours = pairing_words(
        invite, invite.vault_keys, sidecar.public, nonce, bytes.fromhex(first.nonce)
    )
    assert answer.words == ours
    return claim, answer.words


def test_both_ends_show_the_same_words_and_the_right_words_pair(vault: Vault) -> None:
    _, invite = _invite(vault)
    sidecar = Identity.generate()
    claim, vault_words = _claim(vault, invite, sidecar)
    pending = approvals.list_approvals(vault)
    assert [a.kind.value for a in pending] == ["pairing"]
    view = pending[0].for_owner()
    assert view["words"] == vault_words and " ".join(vault_words) in view["summary"]
    assert view["grantable"] is False

    with pytest.raises(MalformedRequestError, match="four words"):
        approvals.approve(vault, pending[0].id)  # without the words: nothing happens
    approvals.approve(vault, pending[0].id, words=" ".join(vault_words).upper())
    assert pairing.claim(vault, claim, sidecar.rid).status == "paired"

    bound = pairing.sidecar_agent(vault, sidecar.rid)
    assert bound is not None and bound[0] == "remote" and bound[1] == sidecar.public
    made = next(a for a in agents.list_agents(vault) if a.name == "remote")
    assert made.status == "active" and made.policy_digest


def test_attack_wrong_words_deny_the_pairing_for_good(vault: Vault) -> None:
    """A relay that swapped in its own keys makes the vault show other words than the sidecar;
    the owner types the sidecar's words, they do not match, and the pairing is denied."""
    _, invite = _invite(vault)
    in_between = Identity.generate()
    claim, vault_words = _claim(vault, invite, in_between)
    honest_words = pairing_words(
        invite, invite.vault_keys, Identity.generate().public, b"s" * 16, b"v" * 16
    )
    assert honest_words != vault_words
    approval_id = approvals.list_approvals(vault)[0].id
    with pytest.raises(MalformedRequestError, match="not the words"):
        approvals.approve(vault, approval_id, words=" ".join(honest_words))
    assert approvals.get(vault, approval_id).status.value == "denied"
    with pytest.raises(MalformedRequestError, match="already denied"):
        approvals.approve(vault, approval_id, words=" ".join(vault_words))
    assert pairing.claim(vault, claim, in_between.rid).status == "denied"
    assert pairing.sidecar_agent(vault, in_between.rid) is None
    assert "remote" not in {a.name for a in agents.list_agents(vault)}


def test_attack_a_reused_invite_is_refused(vault: Vault) -> None:
    _, invite = _invite(vault)
    _claim(vault, invite, Identity.generate())
    second = Identity.generate()
    other = Claim(invite=invite, sidecar=second.public.to_text(), commitment=commitment(b"x" * 16))
    answer = pairing.claim(vault, other, second.rid)
    assert answer.status == "refused" and "already used" in (answer.message or "")
    assert not pairing.claim_admissible(vault, other)
    assert len(approvals.list_approvals(vault)) == 1


def test_attack_the_first_claimer_cannot_change_its_commitment_or_reveal_another_nonce(
    vault: Vault,
) -> None:
    """With the vault's nonce known, someone in between would like to pick its nonce (or keys)
    again until the words match the honest sidecar's: the commitment is fixed by the first
    claim, and a reveal that does not match it spends the invite."""
    _, invite = _invite(vault)
    sidecar = Identity.generate()
    claim = Claim(invite=invite, sidecar=sidecar.public.to_text(), commitment=commitment(b"a" * 16))
    assert pairing.claim(vault, claim, sidecar.rid).status == "reveal"
    again = claim.model_copy(update={"commitment": commitment(b"b" * 16)})
    assert pairing.claim(vault, again, sidecar.rid).status == "refused"
    assert not pairing.claim_admissible(vault, again)
    lying = claim.model_copy(update={"reveal": (b"b" * 16).hex()})
    assert pairing.claim(vault, lying, sidecar.rid).status == "refused"
    honest = claim.model_copy(update={"reveal": (b"a" * 16).hex()})
    assert pairing.claim(vault, honest, sidecar.rid).status == "expired"  # spent
    assert approvals.list_approvals(vault) == []


def test_attack_an_invite_with_a_guessed_secret_or_changed_terms_is_refused(vault: Vault) -> None:
    _, invite = _invite(vault)
    sidecar = Identity.generate()
    for forged in (
        Invite(**(invite.model_dump() | {"secret": "00" * 16})),
        Invite(**(invite.model_dump() | {"agent": "admin"})),
        Invite(**(invite.model_dump() | {"expires": invite.expires + 86400})),
    ):
        claim = Claim(
            invite=forged, sidecar=sidecar.public.to_text(), commitment=commitment(b"c" * 16)
        )
        assert not pairing.claim_admissible(vault, claim)
        assert pairing.claim(vault, claim, sidecar.rid).status == "refused"
    assert approvals.list_approvals(vault) == []


def test_attack_an_altered_or_expired_invite_does_not_decode(vault: Vault) -> None:
    text, invite = _invite(vault)
    body, _, sig = text.partition(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(MalformedRequestError):
        decode_invite(flipped + "." + sig, now=time.time())
    with pytest.raises(MalformedRequestError, match="expired"):
        decode_invite(text, now=invite.expires + 1)


def test_revoking_the_agent_cuts_the_sidecar_off(vault: Vault) -> None:
    _, invite = _invite(vault)
    sidecar = Identity.generate()
    _, words = _claim(vault, invite, sidecar)
    approvals.approve(vault, approvals.list_approvals(vault)[0].id, words=" ".join(words))
    assert pairing.sidecar_agent(vault, sidecar.rid) is not None
    agents.set_status(vault, "remote", "revoked")
    assert pairing.sidecar_agent(vault, sidecar.rid) is None
    assert pairing.sidecar_binding(vault, sidecar.rid) is not None  # still known, to tell it


def test_an_invite_names_a_new_agent(vault: Vault) -> None:
    agents.add_agent(vault, "taken")
    with pytest.raises(AlreadyExistsError):
        pairing.create_invite(vault, "taken", relay=RELAY, policy=None, policy_source=None)


def test_the_vault_identity_comes_from_the_master_key(vault: Vault) -> None:
    first = pairing.vault_identity(vault)
    vault.volatile.clear()
    assert pairing.vault_identity(vault).public == first.public


def test_attack_an_agent_cannot_dry_run_a_pairing(vault: Vault) -> None:
    with pytest.raises(MalformedRequestError):
        dispatch.kind_of("pairing")
