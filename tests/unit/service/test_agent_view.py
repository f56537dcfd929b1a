"""An agent's policy digest has one name on every surface: `policy_hash` (the agent list, the
CLI's --json, the audit rows of policy.set, and the answers of /v1/owner/ops)."""

from __future__ import annotations

from fastapi.encoders import jsonable_encoder

from keysafe.service.agents import AgentView
from keysafe.service.owner_ops import AgentAdded

VIEW = AgentView(
    name="bot",
    status="active",
    created_at="2026-12-07T10:00:00Z",
    last_seen=None,
    policy_digest="ab" * 32,
    auth="token",
)


def test_every_dump_names_the_digest_policy_hash() -> None:
    keys = ["name", "status", "created_at", "last_seen", "policy_hash", "auth"]
    assert list(VIEW.model_dump(mode="json")) == keys  # the agent list and the CLI
    # What FastAPI sends for an /v1/owner/ops answer (it used to say policy_digest here).
    answer = jsonable_encoder(AgentAdded(agent=VIEW, token=None))
    assert answer["agent"]["policy_hash"] == "ab" * 32 and "policy_digest" not in answer["agent"]


def test_the_cli_reads_an_ops_answer_back_from_either_name() -> None:
    sent = jsonable_encoder(AgentAdded(agent=VIEW, token=None))
    assert AgentAdded.model_validate(sent).agent == VIEW
    older = sent | {"agent": {**sent["agent"], "policy_digest": "cd" * 32}}
    del older["agent"]["policy_hash"]
    assert AgentAdded.model_validate(older).agent.policy_digest == "cd" * 32  # an older server
