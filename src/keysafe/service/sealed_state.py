"""The rules for the sealed state rows: which agents, policies and settings are honoured.

Every row that decides what an agent may do carries a seal under the owner's key
(vault/seals.py), written when the owner changes it and checked on every read that decides:

- A row whose seal does not verify was edited outside keysafe: INTEGRITY_ERROR, always.
- A row with no seal was written while the vault was locked, by a keysafe older than the seals,
  or by someone editing the database file. It is honoured only when it can only restrict:
  a paused or revoked agent, pause-all switched on, an approval lifetime no longer than the
  default. Anything that grants (an active agent, a policy, pause-all switched off) is refused
  until the owner has seen it and sealed it (`keysafe agent seal`), so the emergency brakes
  work while the vault is locked and nothing permissive slips in without the key.
- The pause-all switch always has a row once sealed state exists: deleting the row is not a way
  to switch it off.

Pausing an agent while the vault is locked keeps the seal it had (over "active"): the pause takes
effect at once, and someone able to write the database file could undo it until the owner's next
unlocked change to that agent. A pause made while unlocked is sealed as "paused".
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, insert, select, update

from keysafe.crypto import jcs
from keysafe.errors import IntegrityError
from keysafe.service import owner_audit
from keysafe.store import hot
from keysafe.store import tables as t
from keysafe.vault import seals
from keysafe.vault.seals import PAUSED_ALL, Seal
from keysafe.vault.vault import Vault

# Less restrictive first: a row sealed under one of the earlier statuses and now at a later one
# was restricted without the key (a locked pause) and is still the owner's row.
_STATUSES: Final = ("active", "paused")


def _agent_fields(row: Any, status: str | None = None) -> seals.Fields:
    return seals.agent_fields(
        name=row.name,
        status=status or row.status,
        token_hash=row.token_hash,
        public_key=row.public_key,
        created_at=row.created_at,
    )


def agent_seal(vault: Vault, row: Any, status: str | None = None) -> str | None:
    """The seal for an agent row as it will be written (with `status` if given); None if locked."""
    return vault.seal_row("agents", _agent_fields(row, status))


def agent_seal_state(vault: Vault, row: Any) -> Seal:
    """SEALED if the row's seal verifies under its status or a less restrictive one."""
    if row.mac is None:
        return Seal.UNSEALED
    upto = _STATUSES.index(row.status) + 1 if row.status in _STATUSES else len(_STATUSES)
    for status in reversed(_STATUSES[:upto]):
        if vault.check_row("agents", _agent_fields(row, status), row.mac) is Seal.SEALED:
            return Seal.SEALED
    return Seal.BROKEN


def check_agent(vault: Vault, row: Any) -> None:
    """Refuse an agent row that was edited, or that grants without a seal.

    Raises:
        IntegrityError: the seal does not verify, or an active agent has none.
        VaultLockedError: checking needs the owner's key.
    """
    if row.status == "revoked":
        return  # a revoked agent can do nothing, whatever else the row says
    if row.status == "paused" and row.mac is None:
        return  # restricts: honoured without a seal (a locked pause of an unsealed row)
    require_sealed_agent(vault, row)


def require_sealed_agent(vault: Vault, row: Any) -> None:
    """For what grants (using, resuming, a new token): the row's seal must verify.

    Raises:
        IntegrityError: the seal does not verify, or there is none.
        VaultLockedError: checking needs the owner's key.
    """
    state = agent_seal_state(vault, row)
    if state is not Seal.SEALED:
        raise _refused(
            f"agent '{row.name}'",
            state,
            fix=f"`keysafe agent revoke {row.name}`, then add it again",
        )


def policy_seal(vault: Vault, agent: str, source: str, digest: str, set_at: str) -> str | None:
    """The seal of a policy row (None while the vault is locked)."""
    return vault.seal_row("policies", seals.policy_fields(agent, source, digest, set_at))


def check_policy(vault: Vault, row: Any) -> None:
    """Raises IntegrityError unless the policy row's seal verifies (a policy always grants)."""
    fields = seals.policy_fields(row.agent, row.source, row.digest, row.set_at)
    state = vault.check_row("policies", fields, row.mac)
    if state is not Seal.SEALED:
        raise _refused(
            f"the policy of agent '{row.agent}'",
            state,
            fix=f"set it again (`keysafe policy set {row.agent} FILE`)",
        )


def setting_seal(vault: Vault, key: str, value: str) -> str | None:
    """The seal of a settings row (None while the vault is locked)."""
    return vault.seal_row("settings", seals.setting_fields(key, value))


def write_setting(vault: Vault, conn: Connection, key: str, value: str) -> None:
    """Insert or replace one setting, sealed when the vault is unlocked."""
    mac = setting_seal(vault, key, value)
    found = conn.execute(select(t.settings.c.key).where(t.settings.c.key == key)).first()
    if found is None:
        conn.execute(insert(t.settings).values(key=key, value=value, mac=mac))
    else:
        conn.execute(update(t.settings).where(t.settings.c.key == key).values(value=value, mac=mac))


def setting_seal_state(vault: Vault, row: Any) -> Seal:
    """Whether a settings row's seal verifies, is missing, or is wrong."""
    return vault.check_row("settings", seals.setting_fields(row.key, row.value), row.mac)


# Read on every agent request (store/hot.py): the columns of `t.settings`.
_SETTING_ROW: Final = "SELECT key, value, mac FROM settings WHERE key = :key"


def paused_all(vault: Vault, conn: Connection, *, verify: bool) -> bool:
    """Whether pause-all is on. Switched on, it is honoured sealed or not; switched off, only
    with a seal that verifies (`verify=False` reads it without the key, for dry runs).

    Raises:
        IntegrityError: the switch is missing, or "off" without a valid seal.
        VaultLockedError: `verify` and the vault is locked.
    """
    found = hot.named(conn, _SETTING_ROW, {"key": PAUSED_ALL})
    row = found[0] if found else None
    if row is not None and row.value == "1":
        return True
    if not verify:
        return False
    if row is None:
        raise IntegrityError(
            "The vault's pause-all switch is missing (it was deleted from the database file, or "
            "the vault was restored from an old backup), so every agent is refused.",
            next_step="run `keysafe agent seal`: it restores the switch as ON; then "
            "`keysafe resume-all` when you are sure.",
        )
    state = setting_seal_state(vault, row)
    if state is not Seal.SEALED:
        raise _refused(
            "the pause-all switch (off)",
            state,
            fix="`keysafe pause-all`, then `keysafe resume-all`",
        )
    return False


def _refused(what: str, state: Seal, *, fix: str) -> IntegrityError:
    if state is Seal.UNSEALED:
        return IntegrityError(
            f"The vault will not use {what}: it has no owner's seal (written by an older "
            "keysafe, or edited in the database file).",
            next_step="review and seal it with `keysafe agent seal` if you recognise it; "
            f"otherwise {fix}.",
        )
    return IntegrityError(
        f"The vault will not use {what}: its seal does not verify, so it was changed outside "
        "keysafe.",
        next_step=f"keep a copy of the home as evidence; then {fix}.",
    )


# -- review and seal (`keysafe agent seal`) -------------------------------------------------


class StateRow(BaseModel):
    """One state row the owner has to look at: unsealed (can be sealed) or broken (cannot)."""

    # The owner sends rows back to seal them (owner_ops.SealRows): a row with more is not one.
    model_config = ConfigDict(frozen=True, extra="forbid")

    table: Literal["agents", "policies", "settings"]
    key: str  # agent name, or setting name
    summary: str
    state: str  # unsealed | broken | missing
    fingerprint: str  # of the row as shown: a row changed since the listing is not sealed


def _row(
    table: Literal["agents", "policies", "settings"],
    key: str,
    summary: str,
    state: str,
    fields: seals.Fields | None,
) -> StateRow:
    """A row to show, fingerprinted from its table and its sealed `fields` as they are now."""
    fingerprint = _fingerprint(table, fields)
    return StateRow(table=table, key=key, summary=summary, state=state, fingerprint=fingerprint)


def _fingerprint(table: str, fields: seals.Fields | None) -> str:
    return hashlib.sha256(jcs.dumps({"table": table, "row": fields})).hexdigest()


def review(vault: Vault) -> list[StateRow]:
    """Every agent, policy and setting row without a valid seal (the vault must be unlocked).

    Raises:
        VaultLockedError: checking needs the owner's key.
    """
    vault.require_unlocked()
    with vault.db.read() as conn:
        return review_in(vault, conn)


def review_in(vault: Vault, conn: Connection) -> list[StateRow]:
    """`review` inside the caller's transaction."""
    out: list[StateRow] = []
    for a in conn.execute(select(t.agents).order_by(t.agents.c.name)):
        if a.status == "revoked":
            continue
        state = agent_seal_state(vault, a)
        if state is not Seal.SEALED:
            auth = "+".join(x for x, v in (("token", a.token_hash), ("ed25519", a.public_key)) if v)
            out.append(
                _row(
                    "agents",
                    a.name,
                    f"agent {a.name}: {a.status}, {auth or 'no credential'}",
                    state.value,
                    _agent_fields(a),
                )
            )
    for p in conn.execute(select(t.policies).order_by(t.policies.c.agent)):
        fields = seals.policy_fields(p.agent, p.source, p.digest, p.set_at)
        state = vault.check_row("policies", fields, p.mac)
        if state is not Seal.SEALED:
            out.append(
                _row(
                    "policies",
                    p.agent,
                    f"policy of {p.agent}: sha256 {p.digest[:16]}…, set {p.set_at[:19]}",
                    state.value,
                    fields,
                )
            )
    switch = None
    for s in conn.execute(select(t.settings).order_by(t.settings.c.key)):
        if s.key == PAUSED_ALL:
            switch = s
        state = setting_seal_state(vault, s)
        if state is not Seal.SEALED:
            fields = seals.setting_fields(s.key, s.value)
            out.append(
                _row(
                    "settings",
                    s.key,
                    f"setting {s.key} = {s.value[:40]}",
                    state.value,
                    fields,
                )
            )
    if switch is None:
        out.append(
            _row(
                "settings",
                PAUSED_ALL,
                "setting paused_all is missing (it will be sealed ON)",
                "missing",
                None,
            )
        )
    return out


def seal(vault: Vault, shown: list[StateRow]) -> int:
    """Seal the unsealed rows the owner was shown (`review`), exactly as they were; audited.

    A broken row is never sealed (that would launder an edit), nor one changed since the
    listing. A missing pause-all switch is written as ON.

    Raises:
        VaultLockedError: sealing needs the owner's key.
    """
    vault.require_unlocked()
    wanted = {(r.table, r.key, r.fingerprint) for r in shown if r.state != "broken"}
    done: list[str] = []
    with vault.db.write() as conn:
        for r in review_in(vault, conn):
            if (r.table, r.key, r.fingerprint) not in wanted or r.state == "broken":
                continue
            if r.table == "agents":
                a = conn.execute(select(t.agents).where(t.agents.c.name == r.key)).one()
                conn.execute(
                    update(t.agents)
                    .where(t.agents.c.name == r.key)
                    .values(mac=agent_seal(vault, a))
                )
            elif r.table == "policies":
                p = conn.execute(select(t.policies).where(t.policies.c.agent == r.key)).one()
                conn.execute(
                    update(t.policies)
                    .where(t.policies.c.agent == r.key)
                    .values(mac=policy_seal(vault, p.agent, p.source, p.digest, p.set_at))
                )
            elif r.state == "missing":
                write_setting(vault, conn, PAUSED_ALL, "1")
            else:
                s = conn.execute(select(t.settings).where(t.settings.c.key == r.key)).one()
                write_setting(vault, conn, s.key, s.value)
            done.append(r.summary)
        if done:
            facts = {"sealed": len(done), "rows": done[:200]}
            owner_audit.vault_changed(vault, conn, "state.seal", facts)
    return len(done)
