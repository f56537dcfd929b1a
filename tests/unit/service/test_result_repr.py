"""A data value, a released credential or a new agent token held in a result never shows in its
repr: results reach log lines and tracebacks (pytest's, a logger's `%r`), and the dataclasses the
result models replaced printed every field."""

from __future__ import annotations

from keysafe.service.agents import AgentView
from keysafe.service.data import ReadResult
from keysafe.service.owner_ops import AgentAdded, AgentToken
from keysafe.service.release import ReleaseResult

CANARY = "canary-3f9e-secret-value"


def test_attack_a_read_value_is_not_in_the_results_repr() -> None:
    read = ReadResult(status="value", name="db", value={"password": CANARY})
    assert CANARY not in repr(read) and CANARY not in str(read)
    assert read.model_dump(mode="json")["value"] == {"password": CANARY}  # the agent still gets it


def test_attack_a_released_credential_is_not_in_the_results_repr() -> None:
    released = ReleaseResult(status="released", credential="gh", value=CANARY)
    assert CANARY not in repr(released) and CANARY not in str(released)
    assert released.model_dump(mode="json")["value"] == CANARY


def test_attack_a_new_agent_token_is_not_in_the_owner_answers_repr() -> None:
    view = AgentView(
        name="bot", status="active", created_at="", last_seen=None, policy_digest=None, auth="token"
    )
    for answer in (AgentAdded(agent=view, token=CANARY), AgentToken(name="bot", token=CANARY)):
        assert CANARY not in repr(answer) and CANARY not in str(answer)
        assert answer.model_dump(mode="json")["token"] == CANARY  # the owner still sees it once
