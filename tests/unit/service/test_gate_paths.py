"""The gate's two ways through: an in-process act decides, signs and books in one transaction;
an act that reaches the network reserves, acts and settles, and `recover` finishes what a crash
between the two left open.

The SIGKILL test (tests/e2e/test_gate_crash.py) kills the real server under sign-transaction
load, which takes the one-transaction path; here the reserve/settle path is cut at each point a
crash can cut it, and the vault is reopened from its files as `keysafe serve` would after one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from keysafe.approvals import Kind
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import BudgetExceededError, RequestInProgressError
from keysafe.policy.intent import Intent
from keysafe.service import agents, gate, in_flight, policies
from keysafe.service.context import open_vault
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault
from tests.unit.service.gate_support import Probe

PASS = b"passphrase-123"
ETH = 10**18
BOB = "0x1111111111111111111111111111111111111111"
POLICY = f"""
version: 1
rules:
  - name: pay
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{BOB}"]
    limits: [{{window: 24h, max: {{ETH: "1"}}}}]
"""
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    h = Home(tmp_path / "h")
    v, _ = init_vault(
        h,
        SecretBytes(bytearray(PASS)),
        kdf=CHEAP_KDF,
        clock=lambda: NOW,
    )
    with v:
        agents.add_agent(v, "bot")
        policies.set_policy(v, "bot", POLICY)
    yield h


def _open(home: Home) -> Vault:
    v = open_vault(home, clock=lambda: NOW)
    v.unlock(SecretBytes(bytearray(PASS)))
    return v


def _request(kind: Kind, eth: float, key: str | None, *, reaches_out: bool) -> gate.Request:
    intent = Intent(
        action="evm.transfer",
        chain="ethereum",
        wallet="main",
        asset="ETH",
        amount=str(eth),
        to=BOB,
        summary=f"send {eth} ETH",
    )
    return gate.Request(
        agent="bot",
        kind=kind,
        wire=Probe(intent={"eth": eth}),
        intent=intent,
        payload=f"{kind}:{eth}".encode(),
        target="wallet:main",
        audit_action="test.act",
        idempotency_key=key,
        reaches_out=reaches_out,
    )


def _ledger(v: Vault) -> list[tuple[str, str, int]]:
    with v.db.read() as conn:
        rows = conn.execute(select(t.ledger.c.request_id, t.ledger.c.state, t.ledger.c.units))
        return [(r.request_id, r.state, int(r.units)) for r in rows]


def _audited(v: Vault, action: str) -> list[str]:
    with v.db.read() as conn:
        rows = conn.execute(select(t.audit.c.outcome).where(t.audit.c.action == action))
        return [r.outcome for r in rows]


def test_an_in_process_act_books_committed_in_the_transaction_that_decides(home: Home) -> None:
    with _open(home) as v:
        req = _request(Kind.SIGN_TRANSACTION, 0.6, "k1", reaches_out=False)
        seen: list[list[tuple[str, str, int]]] = []

        def act(rid: str) -> dict[str, str]:
            seen.append(_ledger(v))  # what another connection sees while the act runs
            return {"rid": rid}

        codec: gate.Codec[dict[str, str]] = gate.Codec(
            dump=dict, load=dict, facts=lambda r: {}, view=dict
        )
        out = gate.run(v, req, act, codec)
        assert isinstance(out, dict)
        assert seen == [[]]  # nothing visible until the one commit
        assert _ledger(v) == [(out["rid"], "committed", 6 * ETH // 10)]
        with v.db.read() as conn:
            assert conn.execute(select(t.inflight)).all() == []
        # The same key and bytes replay the stored result; the window counts it once.
        assert gate.run(v, req, act, codec) == out and len(seen) == 1
        with pytest.raises(BudgetExceededError):
            gate.run(v, _request(Kind.SIGN_TRANSACTION, 0.6, None, reaches_out=False), act, codec)


def test_a_failing_in_process_act_books_nothing_and_frees_its_key(home: Home) -> None:
    with _open(home) as v:
        req = _request(Kind.SIGN_TRANSACTION, 0.6, "k1", reaches_out=False)

        def boom(_rid: str) -> dict[str, str]:
            raise RuntimeError("the key did not open")

        codec: gate.Codec[dict[str, str]] = gate.Codec(
            dump=dict, load=dict, facts=lambda r: {}, view=dict
        )
        with pytest.raises(RuntimeError):
            gate.run(v, req, boom, codec)
        assert _ledger(v) == []
        assert _audited(v, "test.act") == ["failure"]
        assert _audited(v, "decide.evm.transfer") == ["allow"]
        # The key was never stored: the same request runs again.
        again = gate.run(v, req, lambda rid: {"rid": rid}, codec)
        assert isinstance(again, dict) and again["rid"]


@pytest.mark.parametrize(
    ("kind", "kept"),
    [(Kind.SEND_TRANSACTION, True), (Kind.TRANSFER, True), (Kind.HTTP_REQUEST, False)],
)
def test_a_crash_between_reserve_and_settle_is_finished_by_recover(
    home: Home, kind: Kind, kept: bool
) -> None:
    v = _open(home)
    req = _request(kind, 0.6, "k1", reaches_out=True)
    admission = gate.admit(v, req)
    assert admission.allowed
    # The act is on the network when the process dies: the retry meanwhile is told to wait.
    with pytest.raises(RequestInProgressError):
        gate.admit(v, req)
    v.db.close()  # the process is gone; nothing settled

    with _open(home) as again:
        recovered = in_flight.recover(again)
        assert (recovered.kept, recovered.released) == ((1, 0) if kept else (0, 1))
        state = "committed" if kept else "released"
        assert _ledger(again) == [(admission.request_id, state, 6 * ETH // 10)]
        assert _audited(again, "request.recover") == ["success"]
        with again.db.read() as conn:
            assert conn.execute(select(t.inflight)).all() == []
            assert conn.execute(select(t.idempotency)).all() == []  # the retry may run again
        # A send that may be on the chain still counts: the retry does not fit the window then.
        retry = gate.admit(again, req)
        assert retry.allowed != kept
        # …and a retry that fits is in flight again: the next recover releases it.
        assert in_flight.recover(again).released == (0 if kept else 1)


def test_settle_commits_or_releases_a_reservation_once(home: Home) -> None:
    with _open(home) as v:
        req = _request(Kind.HTTP_REQUEST, 0.6, None, reaches_out=True)
        first = gate.admit(v, req)
        assert gate.settle(v, req, first.request_id, result={}) == 1
        assert gate.settle(v, req, first.request_id, result={}) == 0
        second = gate.admit(v, _request(Kind.HTTP_REQUEST, 0.3, None, reaches_out=True))
        assert gate.settle(v, req, second.request_id, failure=RuntimeError("upstream down")) == 1
        assert sorted(s for _, s, _ in _ledger(v)) == ["committed", "released"]


def test_request_ids_sort_by_time_and_keep_80_random_bits() -> None:
    # Ids made one after another share the ledger index page the previous one dirtied (a random
    # id dirtied a random page of an index that grows with history); the random tail keeps an id
    # unguessable, even among ids made in the same millisecond.
    start = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    ids = [in_flight.new_request_id(start + timedelta(milliseconds=i // 3)) for i in range(300)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)
    assert ids[0][:12] == f"{int(start.timestamp() * 1000):012x}"
    assert len({i[12:] for i in ids}) == len(ids)
