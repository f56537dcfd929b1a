"""Properties of the gate under random sequences of agent and owner actions (hypothesis).

One vault, one EVM wallet, two agents under one policy (per-tx cap, a 24h ETH window, an
approve_above ask; count windows on messages and typed data; an always-ask message rule).
Hypothesis draws sequences of: sign_transaction / sign_message / sign_typed_data with idempotency
keys from a pool of three (so they collide) and payloads from small sets (so bytes repeat),
exact repeats of earlier requests, owner approve / deny of a pending approval, pause / resume of
an agent, and clock advances. After every step:

- every signature an agent received (directly, or as an approval's result) is by the wallet, over
  exactly the bytes that request named, within the policy (recipient, per-tx cap; above the ask
  threshold only through an approval), and the audit holds a `decide.*` allow for its request id;
- no window is exceeded (live units and counts inside each window within its limit), and nothing
  is left reserved, in flight or with its idempotency key "in flight";
- an idempotency key, once it answered (a signature or a parked approval), answers the same
  bytes with exactly that answer and any other bytes with IDEMPOTENCY_CONFLICT, for ever;
- a paused agent gets nothing signed, not even a stored replay, and an approval the owner
  approves while its agent is paused signs nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    BudgetExceededError,
    IdempotencyConflictError,
    PolicyDeniedError,
)
from keysafe.service import agents, approvals, policies, signing, wallets
from keysafe.service.context import open_vault
from keysafe.service.models import SignMessageRequest, SignTransactionRequest, SignTypedDataRequest
from keysafe.service.signing_gate import SignResult
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF, ManualClock
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

PASSPHRASE = b"passphrase-123"
ETH = 10**18
BOB = "0x1111111111111111111111111111111111111111"
CAROL = "0x2222222222222222222222222222222222222222"
EVE = "0x9999999999999999999999999999999999999999"  # no rule names her: denied
AGENTS = ("bot1", "bot2")
CAP = ETH  # max_per_tx
ASK_ABOVE = 4 * ETH // 10  # approve_above
WINDOW = 6 * ETH // 10  # 24h
MESSAGES_PER_HOUR = 2
MAILS_PER_DAY = 2
POLICY = f"""
version: 1
rules:
  - name: pay
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{BOB}", "{CAROL}"]
    max_per_tx: {{ETH: "1"}}
    approve_above: {{ETH: "0.4"}}
    limits: [{{window: 24h, max: {{ETH: "0.6"}}}}]
  - name: hello
    allow: [evm.sign_message]
    wallets: [main]
    message_matches: "^hello"
    limits: [{{window: 1h, max_count: {MESSAGES_PER_HOUR}}}]
  - name: please
    ask: [evm.sign_message]
    wallets: [main]
    message_matches: "^please"
  - name: mail
    allow: [evm.sign_typed_data]
    wallets: [main]
    limits: [{{window: 24h, max_count: {MAILS_PER_DAY}}}]
"""
# rule -> (window seconds, max units or None, max count or None)
WINDOWS = {
    "pay": (86400, WINDOW, None),
    "hello": (3600, None, MESSAGES_PER_HOUR),
    "mail": (86400, None, MAILS_PER_DAY),
}
KEYS = (None, None, "k1", "k2", "k3", "k4", "k5", "k6")  # few: keys collide
AMOUNTS = (ETH // 20, 3 * ETH // 10, 3 * ETH // 10, ETH // 2, 9 * ETH // 10, 12 * ETH // 10)
MESSAGES = ("hello 1", "hello 2", "please 1", "please 2", "bye")
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def mail(contents: str) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "Mail": [{"name": "contents", "type": "string"}],
        },
        "primaryType": "Mail",
        "domain": {"name": "Ether Mail", "chainId": 1},
        "message": {"contents": contents},
    }


@dataclass(frozen=True)
class Template:
    home: Path
    address: str


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The vault, built once; every example works on a copy of its home."""
    home = Home(tmp_path_factory.mktemp("gate-props") / "h")
    vault, phrase = init_vault(
        home,
        SecretBytes(bytearray(PASSPHRASE)),
        kdf=CHEAP_KDF,
        clock=ManualClock(START),
    )
    phrase.wipe()
    with vault:
        address = wallets.create_wallet(vault, "main", Chain.EVM).address
        for name in AGENTS:
            agents.add_agent(vault, name)
            policies.set_policy(vault, name, POLICY)
    return Template(home.path, address)


@pytest.fixture
def copies() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="gate-props-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


# -- operations -------------------------------------------------------------------------------

Request = tuple[Any, ...]  # ("tx", to, value, nonce) | ("msg", text) | ("typed", contents)

agent_st = st.sampled_from(AGENTS)
key_st = st.sampled_from(KEYS)
# Weights by repetition in a sampled list (one_of would not weigh repeated branches): mostly
# signing and transactions, so windows fill, keys collide and approvals come up.
REQUESTS = {
    "tx": st.tuples(
        st.just("tx"),
        st.sampled_from((BOB, CAROL, BOB, EVE)),
        st.sampled_from(AMOUNTS),
        st.integers(0, 2),
    ),
    "msg": st.tuples(st.just("msg"), st.sampled_from(MESSAGES)),
    "typed": st.tuples(st.just("typed"), st.sampled_from(("a", "b"))),
}
request_st = st.sampled_from(("tx", "tx", "tx", "msg", "typed")).flatmap(REQUESTS.__getitem__)
OPS = {
    "sign": st.tuples(st.just("sign"), agent_st, key_st, request_st),
    "repeat": st.tuples(st.just("repeat"), st.integers(0, 1000)),  # an earlier call, exactly
    "approve": st.tuples(st.just("approve"), st.integers(0, 5)),
    "deny": st.tuples(st.just("deny"), st.integers(0, 5)),
    "pause": st.tuples(st.just("pause"), agent_st),
    "resume": st.tuples(st.just("resume"), agent_st),
    "advance": st.tuples(
        st.just("advance"), st.sampled_from((60, 1800, 3 * 3600, 12 * 3600, 25 * 3600))
    ),
}
KINDS = ("sign",) * 7 + ("repeat",) * 2 + ("approve",) * 3 + ("resume",) * 2
KINDS += ("deny", "pause", "advance")
op_st = st.sampled_from(KINDS).flatmap(OPS.__getitem__)


@dataclass
class Model:
    """What the test knows independently of the vault."""

    address: str
    paused: set[str] = field(default_factory=set)
    # (agent, key) -> (request, answer): the first signature or parked approval for the key.
    bound: dict[tuple[str, str], tuple[Request, dict[str, Any]]] = field(default_factory=dict)
    calls: list[tuple[str, str | None, Request]] = field(default_factory=list)
    approvals: dict[str, tuple[str, Request]] = field(default_factory=dict)  # id -> agent, req


def call(vault: Vault, agent: str, key: str | None, req: Request) -> SignResult:
    if req[0] == "tx":
        _, to, value, nonce = req
        tx = {
            "to": to,
            "value": hex(value),
            "chainId": 1,
            "nonce": nonce,
            "gas": 21000,
            "gasPrice": 10**9,
        }
        return signing.sign_transaction(
            vault, agent, SignTransactionRequest(wallet="main", transaction=tx, idempotency_key=key)
        )
    if req[0] == "msg":
        return signing.sign_message(
            vault, agent, SignMessageRequest(wallet="main", message=req[1], idempotency_key=key)
        )
    return signing.sign_typed_data(
        vault,
        agent,
        SignTypedDataRequest(wallet="main", typed_data=mail(req[1]), idempotency_key=key),
    )


def check_signature(
    vault: Vault, model: Model, req: Request, result: dict[str, Any], *, approved: bool
) -> None:
    """A signature someone received: by the wallet, over exactly `req`, within the policy,
    and decided `allow` in the audit under its request id."""
    if req[0] == "tx":
        _, to, value, nonce = req
        raw = bytes.fromhex(result["signed_transaction"].removeprefix("0x"))
        assert Account.recover_transaction(raw) == model.address
        f_nonce, _price, _gas, f_to, f_value, _data, _v, _r, _s = rlp.decode(raw)
        assert ("0x" + f_to.hex(), int.from_bytes(f_value), int.from_bytes(f_nonce)) == (
            to,
            value,
            nonce,
        ), "the signature is over other bytes than the request named"
        assert to in (BOB, CAROL) and value <= CAP, f"signed outside the policy: {req}"
        assert approved or value <= ASK_ABOVE, f"signed above approve_above unasked: {req}"
        action = "decide.evm.transfer"
    elif req[0] == "msg":
        signed = encode_defunct(text=req[1])
        assert Account.recover_message(signed, signature=result["signature"]) == model.address
        assert re.match("^hello" if not approved else "^(hello|please)", req[1]), req
        action = "decide.evm.sign_message"
    else:
        signed = encode_typed_data(full_message=mail(req[1]))
        assert Account.recover_message(signed, signature=result["signature"]) == model.address
        action = "decide.evm.sign_typed_data"
    with vault.db.read() as conn:
        rows = conn.execute(
            select(t.audit.c.details).where(
                t.audit.c.action == action, t.audit.c.outcome == "allow"
            )
        ).all()
    allowed = {json.loads(r.details).get("request_id") for r in rows}
    assert result["request_id"] in allowed, f"no allow decision audited for {result}"


def check_books(vault: Vault, now: datetime) -> None:
    """Nothing half done, and every window within its limit right now."""
    with vault.db.read() as conn:
        assert conn.execute(select(t.inflight)).first() is None
        states = {r.state for r in conn.execute(select(t.ledger.c.state))}
        assert "reserved" not in states
        for r in conn.execute(select(t.idempotency.c.result)):
            assert json.loads(r.result)["state"] == "done", r.result
        for agent in AGENTS:
            for rule, (seconds, max_units, max_count) in WINDOWS.items():
                rows = conn.execute(
                    select(t.ledger.c.units).where(
                        t.ledger.c.agent == agent,
                        t.ledger.c.rule == rule,
                        t.ledger.c.state.in_(("reserved", "committed")),
                        t.ledger.c.at >= (now - timedelta(seconds=seconds)).timestamp(),
                    )
                ).all()
                if max_units is not None:
                    assert sum(int(r.units) for r in rows) <= max_units, (agent, rule)
                if max_count is not None:
                    assert len(rows) <= max_count, (agent, rule)


def sign(vault: Vault, model: Model, agent: str, key: str | None, req: Request) -> None:
    model.calls.append((agent, key, req))
    bound = model.bound.get((agent, key)) if key is not None else None
    try:
        res = call(vault, agent, key, req).model_dump(mode="json")
    except (PolicyDeniedError, BudgetExceededError) as exc:
        if agent in model.paused:
            assert exc.facts.get("reason_code") == "AGENT_PAUSED", exc.to_dict()
            event("refused: paused")
            return
        # A bound key answers before the policy is asked: a refusal means the key was free.
        assert bound is None, f"{agent}/{key} was refused, but it answered {bound} before"
        event(f"refused: {exc.facts.get('reason_code')}")
        return
    except IdempotencyConflictError:
        assert agent not in model.paused, "a paused agent's key was looked up"
        assert bound is not None and bound[0] != req, f"conflict on a free key: {bound}"
        event("idempotency conflict")
        return
    assert agent not in model.paused, f"a paused agent got an answer: {res}"
    if bound is not None:
        assert bound[0] == req, f"{agent}/{key} answered {req}, but it is bound to {bound[0]}"
        assert res == bound[1], f"a replay differs: {res} != {bound[1]}"
        event("replayed")
    if res["status"] == "pending_approval":
        model.approvals.setdefault(res["approval_id"], (agent, req))
        assert model.approvals[res["approval_id"]] == (agent, req)
    else:
        check_signature(vault, model, req, res, approved=False)
    if key is not None:
        model.bound.setdefault((agent, key), (req, res))


def decide(vault: Vault, model: Model, index: int, *, approve: bool) -> None:
    pending = approvals.list_approvals(vault)
    if not pending:
        return
    target = pending[index % len(pending)]
    agent, req = model.approvals[target.id]
    if not approve:
        assert approvals.deny(vault, target.id).status == "denied"
        return
    done = approvals.approve(vault, target.id)
    if agent in model.paused:
        assert done.status == "failed", f"a paused agent's approval ran: {done.result}"
        assert done.result is not None and "error" in done.result
        event("approved while paused")
        return
    assert done.status in ("approved", "failed"), done
    event(f"approval {done.status}")
    if done.status == "approved":
        assert done.result is not None
        check_signature(vault, model, req, done.result, approved=True)


def step(vault: Vault, clock: ManualClock, model: Model, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "sign":
        sign(vault, model, op[1], op[2], op[3])
    elif kind == "repeat" and model.calls:
        sign(vault, model, *model.calls[op[1] % len(model.calls)])
    elif kind in ("approve", "deny"):
        decide(vault, model, op[1], approve=kind == "approve")
    elif kind == "pause":
        agents.set_status(vault, op[1], "paused")
        model.paused.add(op[1])
    elif kind == "resume":
        agents.set_status(vault, op[1], "active")
        model.paused.discard(op[1])
    elif kind == "advance":
        clock.now += timedelta(seconds=op[1])


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(op_st, min_size=15, max_size=45))
def test_gate_keeps_keys_windows_and_pauses_under_any_sequence(
    template: Template, copies: Path, ops: list[tuple[Any, ...]]
) -> None:
    home = Path(tempfile.mkdtemp(dir=copies)) / "h"
    shutil.copytree(template.home, home)
    clock = ManualClock(START)
    vault = open_vault(Home(home), clock=clock)
    vault.unlock(SecretBytes(bytearray(PASSPHRASE)))
    model = Model(template.address)
    try:
        with vault:
            for op in ops:
                step(vault, clock, model, op)
                check_books(vault, clock.now)
    finally:
        vault.db.close()
