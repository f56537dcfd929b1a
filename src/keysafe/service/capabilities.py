"""What an agent may do, in plain words: its wallets, credentials, data, rules and budget left."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import select

from keysafe.agent_models import (
    BudgetWindow,
    Capabilities,
    CredentialInfo,
    DataInfo,
    PolicyInfo,
    WalletInfo,
)
from keysafe.policy.limits import Usage, window_spend
from keysafe.policy.registry import Registry, from_base_units, to_base_units
from keysafe.policy.rules import Policy, Rule, stored_policy
from keysafe.service import sealed_state
from keysafe.service.agents import get_agent
from keysafe.service.models import RecordKind
from keysafe.service.record_meta import Wallet, credential_meta, data_meta
from keysafe.service.registry import load_registry
from keysafe.store import ledger
from keysafe.store import tables as t
from keysafe.vault.vault import Vault


def _amounts(caps: Mapping[str, object]) -> str:
    return ", ".join(f"{v} {k}" for k, v in caps.items())


def describe_rule(rule: Rule) -> str:
    """One sentence per rule, for a model or a person."""
    parts = [f"{rule.verb} {', '.join(rule.actions)}"]
    if rule.wallets:
        parts.append("from wallet " + ", ".join(rule.wallets))
    if rule.chains:
        parts.append("on " + ", ".join(str(c) for c in rule.chains))
    if rule.assets:
        parts.append("of " + ", ".join(rule.assets))
    if rule.recipients:
        parts.append(f"to {len(rule.recipients)} allowed recipient(s)")
    if rule.credentials:
        parts.append("with credential " + ", ".join(rule.credentials))
    if rule.methods:
        parts.append("method " + ", ".join(rule.methods))
    if rule.urls:
        parts.append("URLs " + ", ".join(rule.urls))
    if rule.message_matches:
        parts.append(f"messages matching {rule.message_matches!r}")
    if rule.when and rule.when.unlimited:
        parts.append("when the amount is unlimited")
    if rule.outside_hours:
        h = rule.outside_hours
        parts.append(f"outside {h.from_:%H:%M}-{h.to:%H:%M} {h.tz} on {', '.join(h.days)}")
    text = " ".join(parts)
    if rule.max_per_tx:
        text += f"; at most {_amounts(rule.max_per_tx)} per transaction"
    if rule.approve_above:
        text += f"; the owner must approve above {_amounts(rule.approve_above)}"
    for lim in rule.limits or []:
        caps = []
        if lim.max:
            caps.append(_amounts(lim.max))
        if lim.max_count is not None:
            caps.append(f"{lim.max_count} actions")
        text += f"; per {lim.window}: {' and '.join(caps)}"
    return f"{rule.name}: {text}."


def _windows(policy: Policy, reg: Registry, usage: Usage, now: datetime) -> list[BudgetWindow]:
    out: list[BudgetWindow] = []
    for rule in policy.rules:
        for lim in rule.limits or []:
            since = now - timedelta(seconds=lim.seconds)
            by_key, used = usage(rule.name, since)
            if lim.max_count is not None:
                out.append(
                    BudgetWindow(
                        rule=rule.name,
                        window=lim.window,
                        asset=None,
                        limit=str(lim.max_count),
                        left=str(max(lim.max_count - used, 0)),
                    )
                )
            for sym, cap in (lim.max or {}).items():
                # Summed over every asset with this symbol, as the engine judges the window.
                spend = window_spend(by_key, sym, reg)
                if spend is None:
                    continue
                units, scale = spend
                left = max(to_base_units(cap, scale) - units, 0)
                out.append(
                    BudgetWindow(
                        rule=rule.name,
                        window=lim.window,
                        asset=sym,
                        limit=str(cap),
                        left=from_base_units(left, scale),
                    )
                )
    return out


def _wallet_entry(wallet: Wallet) -> WalletInfo:
    entry = WalletInfo(name=wallet.name, chain=str(wallet.chain), address=wallet.address)
    if wallet.threshold:  # set only here, so a plain wallet's answer has no "threshold" key
        entry.threshold = wallet.threshold.threshold
    return entry


def _signing_wallets(policy: Policy | None) -> set[tuple[str, str]]:
    """(wallet, chain family) pairs some allow/ask rule could sign with: the rule names the
    wallet and covers an action of its family (a signing rule without `wallets` signs nothing)."""
    return {
        (name, fam)
        for rule in (policy.rules if policy else [])
        if rule.verb != "deny"
        for fam in ("evm", "solana")
        if any(a == "*" or a.startswith(f"{fam}.") for a in rule.actions)
        for name in rule.wallets or []
    }


def _named(
    policy: Policy | None, action: str, names: Callable[[Rule], list[str] | None]
) -> set[str] | None:
    """The names allow/ask rules covering `action` grant, or None when one grants them all."""
    named: set[str] = set()
    for rule in policy.rules if policy else []:
        if rule.verb == "deny" or not rule.covers(action):
            continue
        granted = names(rule)
        if granted is None:
            return None
        named |= set(granted)
    return named


def capabilities(vault: Vault, agent: str) -> Capabilities:
    """What `agent` may do, as it asks with list_capabilities: its wallets, credentials and
    readable data, its policy in plain words and the budget left per window (never a secret).

    Raises:
        NotFoundError: no agent has that name.
        IntegrityError: the agent's or its policy's seal does not verify (vault unlocked).
    """
    now = vault.clock()
    with vault.db.read() as conn:
        row = get_agent(conn, agent)
        pol = conn.execute(select(t.policies).where(t.policies.c.agent == agent)).first()
        if vault.is_unlocked:  # locked, nothing can be done, and the answer says locked
            sealed_state.check_agent(vault, row)
            if pol is not None:
                sealed_state.check_policy(vault, pol)
        policy = stored_policy(pol.source) if pol is not None else None
        reg = load_registry(conn)
        wallets = [
            _wallet_entry(w)
            for w in map(Wallet.of, vault.list_records(conn, RecordKind.WALLET))
            # a 2-of-3 wallet is usable only by the agent that holds its share
            if w.threshold is None or w.threshold.agent == agent
        ]
        creds = vault.list_records(conn, RecordKind.CREDENTIAL)
        data = vault.list_records(conn, RecordKind.DATA)
        usage = ledger.usage_reader(conn, agent, now=now)
        windows = _windows(policy, reg, usage, now) if policy else []
    usable = _signing_wallets(policy)
    wallets = [w for w in wallets if (w.name, w.chain) in usable]
    named_creds = _named(policy, "http.request", lambda rule: rule.credentials)
    named_data = _named(policy, "data.read", lambda rule: rule.data)
    return Capabilities(
        agent=agent,
        status=row.status,
        wallets=wallets,
        credentials=[
            CredentialInfo(name=c.name, hosts=credential_meta(c).hosts)
            for c in creds
            if named_creds is None or c.name in named_creds
        ],
        data=[
            DataInfo(name=d.name, data_class=d.data_class, fields=data_meta(d).fields)
            for d in data
            if named_data is None or d.name in named_data
        ],
        policy=PolicyInfo(
            rules=[describe_rule(r) for r in policy.rules] if policy else [],
            expires=policy.expires.isoformat() if policy and policy.expires else None,
            summary="deny beats ask beats allow; anything no rule allows is denied",
        ),
        budget=windows,
    )
