"""What the owner's page lists: approvals with the budget they would use, agents with their rules.

Each list joins one service's records with what another service says about them, so the HTTP
route (api/routes/owner.py) stays one call; the views are plain JSON for the page.

    approvals_for_owner(vault, pending_only=True)  # each pending card with its `budget`
    agents_for_owner(vault)                          # each agent with `rules` and `budget`
"""

from __future__ import annotations

import logging
from typing import Any

from keysafe.service import agents, approvals, capabilities
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)


def approvals_for_owner(vault: Vault, *, pending_only: bool) -> list[dict[str, Any]]:
    """Approvals (pending ones only, or all), each with the agent's description, the decoded
    intent and, while pending, the budget windows it would draw on (`budget`: left before and
    after, judged as the gate would judge the approved request now; [] when it draws on none).
    """
    out = []
    for a in approvals.list_approvals(vault, pending_only=pending_only):
        view = a.for_owner()
        if a.status is approvals.Status.PENDING:
            windows = approvals.budget_effect(vault, a)
            view["budget"] = [w.to_dict() for w in windows] if windows else []
        out.append(view)
    return out


def agents_for_owner(vault: Vault) -> list[dict[str, Any]]:
    """Every agent with its policy's rules and its budget windows (`capabilities`)."""
    out = []
    for a in agents.list_agents(vault):
        caps = capabilities.capabilities(vault, a.name)
        budget = [w.model_dump(mode="json") for w in caps.budget]
        out.append(a.model_dump(mode="json") | {"rules": caps.policy.rules, "budget": budget})
    return out
