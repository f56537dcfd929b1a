"""Rotation policies for what agents hold: their tokens, their Ed25519 keys and credential
placeholders are due for replacement after an age (`rotate_after`) or a number of uses
(`rotate_after_uses`), both owner settings sealed in the vault.

Nothing here rotates by itself: the agent holds the token, key or placeholder, so replacing it
without the owner would cut the agent off. Due rotations are listed (`keysafe status`,
`keysafe rotation-policy`, the web page) with the command that does each.

When each was issued and how often it was used are read from the audit log, the record of both
(`agent.add`, `agent.rotate_token`, `placeholder.issue`; the `decide.…` entry the gate writes
for each request): no second bookkeeping to drift from it. A placeholder's uses are its agent's
calls of its credential since it was issued (the entry each call writes under the credential's
name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel
from sqlalchemy import Connection, and_, func, select

from keysafe.audit.outcome import Outcome
from keysafe.errors import IntegrityError, MalformedRequestError
from keysafe.service import sealed_state
from keysafe.store import tables as t
from keysafe.vault.seals import Seal
from keysafe.vault.vault import Vault

AFTER_SETTING: Final = "rotate_after"
USES_SETTING: Final = "rotate_after_uses"
# Unless the owner says otherwise: what an agent holds is replaced at least every 90 days, and
# no use count applies (a busy agent is not made to rotate weekly by default).
DEFAULT_AFTER: Final = timedelta(days=90)
MAX_AFTER: Final = timedelta(days=3650)
_DURATION: Final = re.compile(r"([1-9][0-9]{0,5})([hd])")

What = Literal["agent token", "agent key", "placeholder"]


@dataclass(frozen=True)
class RotationPolicy:
    after: timedelta
    after_uses: int | None  # None: no use count applies

    def describe(self) -> str:
        days = self.after.total_seconds() / 86400
        age = f"{days:g}d" if days >= 1 else f"{self.after.total_seconds() / 3600:g}h"
        return f"after {age}" + (
            f" or {self.after_uses} uses" if self.after_uses is not None else ""
        )


class DueRotation(BaseModel):
    """One thing an agent holds that the policy says to replace."""

    what: What
    agent: str
    credential: str | None = None  # for a placeholder
    issued_at: str
    uses: int
    why: str  # "older than 30d", "used 10000 times"
    fix: str  # the command that replaces it


def parse_after(text: str) -> timedelta:
    """A policy age: `30d` or `12h`.

    Raises:
        MalformedRequestError: not such a duration, or longer than ten years.
    """
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise MalformedRequestError(
            f"'{text[:20]}' is not a rotation age.", next_step="use days or hours: 30d, 12h."
        )
    after = timedelta(hours=int(m.group(1)) * (24 if m.group(2) == "d" else 1))
    if after > MAX_AFTER:
        raise MalformedRequestError(
            "A rotation age over ten years is no policy.", next_step="use at most 3650d."
        )
    return after


def set_policy(vault: Vault, after: timedelta | None, after_uses: int | None) -> RotationPolicy:
    """Store the rotation policy (each part only when given); sealed, so needs the owner's key.

    `after_uses` 0 removes the use count.

    Raises:
        VaultLockedError: the vault is locked.
        MalformedRequestError: a negative use count.
    """
    vault.require_unlocked()
    if after_uses is not None and after_uses < 0:
        raise MalformedRequestError("A use count cannot be negative.", next_step="use 0 or more.")
    with vault.db.write() as conn:
        if after is not None:
            sealed_state.write_setting(vault, conn, AFTER_SETTING, str(int(after.total_seconds())))
        if after_uses is not None:
            sealed_state.write_setting(vault, conn, USES_SETTING, str(after_uses))
        vault.audit(
            conn,
            actor="owner",
            action="rotation.policy",
            target="vault",
            outcome=Outcome.SUCCESS,
            details={
                "after_s": None if after is None else int(after.total_seconds()),
                "after_uses": after_uses,
            },
        )
        return policy(vault, conn)


def policy(vault: Vault, conn: Connection) -> RotationPolicy:
    """The owner's rotation policy, or the default.

    A setting without the owner's seal (written into the file) is honoured only where it is
    stricter than the default; one whose seal does not verify is refused.

    Raises:
        IntegrityError: a setting was changed outside keysafe.
    """
    rows = {
        r.key: r
        for r in conn.execute(
            select(t.settings).where(t.settings.c.key.in_((AFTER_SETTING, USES_SETTING)))
        )
    }
    after, uses = DEFAULT_AFTER, None
    for key, row in rows.items():
        # Locked, a seal cannot be checked: the row is read as unsealed, in the strict direction
        # only (a listing that shows more as due is harmless; one that shows less is not).
        state = sealed_state.setting_seal_state(vault, row) if vault.is_unlocked else Seal.UNSEALED
        if state is Seal.BROKEN or not row.value.isdigit():
            raise IntegrityError(
                f"The vault's {key} setting was changed outside keysafe.",
                next_step="set the rotation policy again (`keysafe rotation-policy --after …`) "
                "with the vault unlocked, and keep a copy of the home as evidence.",
            )
        sealed = state is Seal.SEALED
        if key == AFTER_SETTING:
            value = timedelta(seconds=int(row.value))
            after = value if sealed else min(value, DEFAULT_AFTER)
        elif int(row.value) > 0:
            # A use count only ever makes rotations due sooner, so an unsealed one is honoured
            # too; removing it (0) is the loosening, and 0 means "none" either way.
            uses = int(row.value)
    return RotationPolicy(after, uses)


def due(vault: Vault) -> tuple[RotationPolicy, list[DueRotation]]:
    """The policy, and what it says to rotate now, oldest first.

    Raises:
        IntegrityError: a policy setting was changed outside keysafe.
    """
    now = vault.clock()
    with vault.db.read() as conn:
        pol = policy(vault, conn)
        found = [*_agents_due(conn, pol, now), *_placeholders_due(conn, pol, now)]
    return pol, sorted(found, key=lambda d: d.issued_at)


@dataclass(frozen=True)
class _Issued:
    seq: int
    time: str


def _last_issue(conn: Connection, agent: str, actions: tuple[str, ...]) -> _Issued | None:
    row = conn.execute(
        select(t.audit.c.seq, t.audit.c.time)
        .where(
            and_(
                t.audit.c.target == f"agent:{agent}",
                t.audit.c.action.in_(actions),
                t.audit.c.outcome == "success",
            )
        )
        .order_by(t.audit.c.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else _Issued(int(row.seq), str(row.time))


# One use is one request the gate judged: it writes exactly one `decide.<action>` entry for each
# (allowed, asked or denied), and its other entries (the outcome, an approval) are not uses.
_DECIDED: Final = t.audit.c.action.startswith("decide.")


def _uses_since(conn: Connection, agent: str, seq: int) -> int:
    cond = and_(t.audit.c.actor == f"agent:{agent}", _DECIDED, t.audit.c.seq > seq)
    return int(conn.execute(select(func.count()).select_from(t.audit).where(cond)).scalar_one())


def _calls_since(conn: Connection, agent: str, credential: str, since: str) -> int:
    # The gate's decision entry names the agent, not the credential; the call's own entry
    # (`http.request`, whatever its outcome) names the credential: one per call that ran.
    cond = and_(
        t.audit.c.actor == f"agent:{agent}",
        ~_DECIDED,
        t.audit.c.target == f"credential:{credential}",
        t.audit.c.time >= since,
    )
    return int(conn.execute(select(func.count()).select_from(t.audit).where(cond)).scalar_one())


def _why(pol: RotationPolicy, issued: str, uses: int, now: datetime) -> str | None:
    age = now - datetime.fromisoformat(issued.replace("Z", "+00:00"))
    if age >= pol.after:
        return f"older than {pol.describe().split(' or ')[0].removeprefix('after ')}"
    if pol.after_uses is not None and uses >= pol.after_uses:
        return f"used {uses} times"
    return None


def _agents_due(conn: Connection, pol: RotationPolicy, now: datetime) -> list[DueRotation]:
    found = []
    agents = conn.execute(
        select(
            t.agents.c.name, t.agents.c.token_hash, t.agents.c.public_key, t.agents.c.created_at
        ).where(t.agents.c.status != "revoked")
    ).all()
    for a in agents:
        held: list[tuple[What, tuple[str, ...], str]] = []
        if a.token_hash:
            held.append(
                (
                    "agent token",
                    ("agent.add", "agent.rotate_token"),
                    f"keysafe agent rotate-token {a.name}",
                )
            )
        if a.public_key:
            # A key is set only when the agent is added: replacing it is a new agent.
            held.append(
                (
                    "agent key",
                    ("agent.add",),
                    f"keysafe agent add {a.name}-2 --public-key NEW; then revoke {a.name}",
                )
            )
        for what, actions, fix in held:
            issued = _last_issue(conn, a.name, actions)
            seq, when = (issued.seq, issued.time) if issued else (0, str(a.created_at))
            uses = _uses_since(conn, a.name, seq)
            why = _why(pol, when, uses, now)
            if why is not None:
                found.append(
                    DueRotation(
                        what=what, agent=a.name, issued_at=when, uses=uses, why=why, fix=fix
                    )
                )
    return found


def _placeholders_due(conn: Connection, pol: RotationPolicy, now: datetime) -> list[DueRotation]:
    found = []
    for p in conn.execute(select(t.placeholders).order_by(t.placeholders.c.created_at)).all():
        uses = _calls_since(conn, p.agent, p.credential, str(p.created_at))
        why = _why(pol, str(p.created_at), uses, now)
        if why is not None:
            found.append(
                DueRotation(
                    what="placeholder",
                    agent=p.agent,
                    credential=p.credential,
                    issued_at=str(p.created_at),
                    uses=uses,
                    why=why,
                    fix=f"keysafe credential placeholder {p.credential} --agent {p.agent} "
                    "--replace",
                )
            )
    return found
