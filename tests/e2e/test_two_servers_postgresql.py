"""Black-box: two real `keysafe serve` processes on one PostgreSQL database serve the same agent.

One vault is built in the database (in process, with a cheap KDF); servers A and B each run with a
home of their own (their lock and log) and the same KEYSAFE_DATABASE_URL, both unlocked. Then:

- 50 concurrent sign-transaction requests, split across A and B, for one agent whose 24h budget
  allows 20: exactly 20 signatures (counted in the answers and in the ledger), no duplicate, and
  every other answer is BUDGET_EXCEEDED. Without the vault row lock each server's transaction
  reads the window before the other's booking commits, and the two overspend together;
- the same idempotency key sent to A and B at once: one signature, returned to both;
- an approval parked through A and approved by the owner on B is executed once: one signature,
  one audited success, one committed booking, and A hands the agent B's result;
- an epoch rotation on B while A serves: A keeps signing (it opens the new epoch key itself);
- a third server starting while A waits on an upstream for an agent's HTTP call leaves that call
  alone (crash recovery runs only on a server that starts alone).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from sqlalchemy import create_engine, func, select

from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.service import agents, credentials, policies, wallets
from keysafe.service.models import Attachment
from keysafe.service.vault_admin import init_vault
from keysafe.store import tables as t
from keysafe.store.probe import database_url
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from tests.conftest import PASSPHRASE
from tests.e2e.server_fixture import (
    EVM_TX_FEE,
    MILLI_ETH,
    R1,
    R4,
    Server,
    agent_headers,
    cli_env,
    error_of,
    evm_tx,
    keysafe_server,
)

FORK_AGENTS = ("f0", "f1", "f2", "f3")
REQUESTS = 50
ALLOWED = 20
LIMIT_WEI = ALLOWED * (MILLI_ETH + EVM_TX_FEE)  # each signature books its value and max fee
POLICY = f"""\
version: 1
rules:
  - name: budget
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R1}"]
    max_per_tx: {{ETH: "0.01"}}
    limits:
      - {{window: 24h, max: {{ETH: "{Decimal(LIMIT_WEI) / 10**18}"}}}}
  - name: call-held
    allow: [http.request]
    credentials: [held]
  - name: ask-r4
    ask: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R4}"]
    max_per_tx: {{ETH: "0.01"}}
"""


@dataclass(frozen=True)
class Pair:
    a: Server
    b: Server
    url: str  # the database
    token: str  # agent `bot`, whose budget the race spends
    other: str  # agent `idem`: the same policy, its own budget (left for the later tests)
    address: str  # wallet `main`
    tokens: dict[str, str]  # every agent's

    def sign(
        self, server: Server, nonce: int, *, token: str | None = None, **extra: Any
    ) -> httpx.Response:
        body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH, nonce=nonce), **extra}
        with server.client(headers=agent_headers(token or self.token)) as c:
            return c.post("/v1/agent/sign-transaction", json=body)

    def rows(self, query: Any) -> list[Any]:
        engine = create_engine(database_url(self.url))
        try:
            with engine.connect() as conn:
                return list(conn.execute(query).all())
        finally:
            engine.dispose()


@dataclass(frozen=True)
class Held:
    """An upstream API that answers each call only once the test says so."""

    url: str
    arrived: threading.Event
    release: threading.Event


@pytest.fixture(scope="module")
def held() -> Iterator[Held]:
    arrived, release = threading.Event(), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            arrived.set()
            release.wait(60)
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Held(f"http://127.0.0.1:{server.server_address[1]}", arrived, release)
    finally:
        release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def pair(
    pg_module_url: str, held: Held, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("two-servers")
    builder = Home(root / "owner", pg_module_url)
    vault, phrase = init_vault(builder, SecretBytes(bytearray(PASSPHRASE.encode())), kdf=CHEAP_KDF)
    phrase.wipe()
    with vault:
        address = wallets.create_wallet(vault, "main", Chain.EVM).address
        credentials.add_credential(
            vault,
            "held",
            SecretBytes(bytearray(b"sk-held-upstream")),
            hosts=[held.url.removeprefix("http://")],
            attach=Attachment.bearer(),
        )
        tokens = {}
        for name in ("bot", "idem", *FORK_AGENTS):
            _, token = agents.add_agent(vault, name)
            assert token is not None
            tokens[name] = bytes(token.reveal()).decode()
            policies.set_policy(vault, name, POLICY)
    envs = [
        cli_env(root / name, KEYSAFE_DATABASE_URL=pg_module_url) for name in ("home-a", "home-b")
    ]
    with (
        keysafe_server(envs[0], "--unlock", log_dir=root) as a,
        keysafe_server(envs[1], "--unlock", log_dir=root) as b,
    ):
        yield Pair(a, b, pg_module_url, tokens["bot"], tokens["idem"], address, tokens)
        for server in (a, b):
            assert "Traceback" not in server.log(), server.log()[-4000:]


def test_two_servers_each_run_on_a_home_of_their_own(pair: Pair) -> None:
    for server in (pair.a, pair.b):
        home = Path(server.env["KEYSAFE_HOME"])
        assert (home / "serve.lock").exists()
        assert not (home / "vault.db").exists()  # the vault is in PostgreSQL
        assert os.stat(home).st_mode & 0o077 == 0


def test_attack_overspend_across_two_servers_on_one_database_is_refused(pair: Pair) -> None:
    barrier = threading.Barrier(REQUESTS)
    answers: list[tuple[int, str | None, str | None]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        server = pair.a if i % 2 else pair.b
        barrier.wait(timeout=60)
        r = pair.sign(server, nonce=1000 + i)
        code = error_of(r)["code"] if r.status_code >= 400 else None
        signed = r.json().get("signed_transaction") if r.status_code == 200 else None
        with lock:
            answers.append((r.status_code, code, signed))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(REQUESTS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert len(answers) == REQUESTS
    statuses = Counter((status, code) for status, code, _ in answers)
    assert statuses == {(200, None): ALLOWED, (403, "BUDGET_EXCEEDED"): REQUESTS - ALLOWED}
    signed = [s for _, _, s in answers if s is not None]
    assert len(set(signed)) == ALLOWED  # no signature handed out twice
    assert {Account.recover_transaction(s) for s in signed} == {pair.address}

    booked = pair.rows(
        select(t.ledger.c.state, t.ledger.c.units, t.ledger.c.request_id).where(
            t.ledger.c.agent == "bot", t.ledger.c.rule == "budget"
        )
    )
    assert {r.state for r in booked} == {"committed"}
    assert len({r.request_id for r in booked}) == ALLOWED
    assert sum(int(r.units) for r in booked) == LIMIT_WEI


def test_attack_agents_on_two_servers_cannot_fork_the_audit_chain(pair: Pair) -> None:
    """Different agents take no common agent-row lock: without the vault row lock two servers
    would both read the chain head, both write the next entry (one fails: a 5xx) or fork it."""
    barrier = threading.Barrier(4 * len(FORK_AGENTS))
    answers: list[int] = []

    def one(agent: str, i: int) -> None:
        barrier.wait(timeout=60)
        r = pair.sign(pair.a if i % 2 else pair.b, 500 + i, token=pair.tokens[agent])
        answers.append(r.status_code)

    threads = [
        threading.Thread(target=one, args=(agent, i)) for agent in FORK_AGENTS for i in range(4)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert answers == [200] * len(threads)
    owner = {"authorization": f"Bearer {pair.a.login()}"}
    with pair.a.client() as c:
        verified = c.get("/v1/owner/audit/verify", headers=owner)
    assert verified.status_code == 200, verified.text
    assert verified.json()["ok"] is True, verified.json()


def test_same_idempotency_key_on_both_servers_signs_once(pair: Pair) -> None:
    barrier = threading.Barrier(2)
    answers: dict[str, httpx.Response] = {}

    def one(name: str, server: Server) -> None:
        barrier.wait(timeout=30)
        answers[name] = pair.sign(server, 7, token=pair.other, idempotency_key="pay-once-7")

    threads = [threading.Thread(target=one, args=x) for x in (("a", pair.a), ("b", pair.b))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    bodies = {name: (r.status_code, r.json()) for name, r in answers.items()}
    assert bodies["a"] == bodies["b"], bodies  # the second one replays the first's answer
    assert bodies["a"][0] == 200 and bodies["a"][1]["status"] == "signed", bodies
    booked = pair.rows(select(t.ledger.c.request_id).where(t.ledger.c.agent == "idem"))
    assert len({r.request_id for r in booked}) == 1
    decisions = pair.rows(
        select(func.count()).select_from(t.idempotency).where(t.idempotency.c.key == "pay-once-7")
    )
    assert decisions[0][0] == 1


def _signatures(pair: Pair) -> int:
    """Audited signatures so far (each signature is audited once, as a success)."""
    rows = pair.rows(
        select(func.count())
        .select_from(t.audit)
        .where(t.audit.c.action == "evm.sign_transaction", t.audit.c.outcome == "success")
    )
    return int(rows[0][0])


def _park_and_approve(pair: Pair, parked_on: Server, approved_on: Server, nonce: int) -> str:
    """Park an always-ask transfer through `parked_on`, approve it three times at once on
    `approved_on` (a double-clicking owner); returns the signed transaction the agent collects
    from `parked_on`, after checking it was signed once."""
    before = _signatures(pair)
    body = {"wallet": "main", "transaction": evm_tx(MILLI_ETH, to=R4, nonce=nonce)}
    with parked_on.client(headers=agent_headers(pair.token)) as c:
        parked = c.post("/v1/agent/sign-transaction", json=body)
    assert parked.status_code == 202, parked.text
    approval_id = parked.json()["approval_id"]

    owner = {"authorization": f"Bearer {approved_on.login()}"}
    path = f"/v1/owner/approvals/{approval_id}/approve"
    results: list[httpx.Response] = []
    barrier = threading.Barrier(3)

    def approve() -> None:
        with approved_on.client() as c:
            barrier.wait(timeout=30)
            results.append(c.post(path, headers=owner))

    threads = [threading.Thread(target=approve) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert sorted(r.status_code for r in results)[0] == 200, [r.text for r in results]

    with parked_on.client(headers=agent_headers(pair.token)) as c:
        seen = c.get(f"/v1/agent/approvals/{approval_id}")
    assert seen.status_code == 200, seen.text
    view = seen.json()
    assert view["status"] == "approved", view
    signed = view["result"]["signed_transaction"]
    assert isinstance(signed, str)
    assert Account.recover_transaction(signed) == pair.address
    assert _signatures(pair) == before + 1  # executed exactly once
    status = pair.rows(select(t.approvals.c.status).where(t.approvals.c.id == approval_id))
    assert [s.status for s in status] == ["approved"]
    return signed


def test_approval_parked_on_a_and_approved_on_b_executes_once(pair: Pair) -> None:
    _park_and_approve(pair, pair.a, pair.b, nonce=99)


def test_rotation_on_b_while_a_serves_leaves_a_signing_under_the_new_epoch(pair: Pair) -> None:
    owner = {"authorization": f"Bearer {pair.b.login()}"}
    with pair.b.client() as c:
        r = c.post("/v1/owner/ops", json={"kind": "epoch.rotate"}, headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["destroyed"], r.json()
    epochs = pair.rows(select(t.epochs.c.number, t.epochs.c.state))
    assert [e.state for e in epochs] == ["active"]  # the old key is gone from the database
    # A unlocked before the rotation and never saw the new epoch key; it signs with it now.
    _park_and_approve(pair, pair.b, pair.a, nonce=100)


def test_attack_a_server_starting_leaves_another_servers_request_in_flight_alone(
    pair: Pair, held: Held, tmp_path: Path
) -> None:
    """A starting server settles what a crash left open. Without the check that no other server
    runs, it would settle A's live call while A still waits for the upstream: release its
    reservation, free its idempotency key (a retry would run the call a second time) and audit
    it as recovered."""
    answer: list[httpx.Response] = []
    body = {"credential": "held", "method": "POST", "url": f"{held.url}/v1/run"}

    def call() -> None:
        with pair.a.client(headers=agent_headers(pair.other), timeout=90) as c:
            answer.append(c.post("/v1/agent/http", json=body))

    caller = threading.Thread(target=call)
    caller.start()
    try:
        assert held.arrived.wait(30), "the call never reached the upstream"
        in_flight = pair.rows(select(t.inflight.c.request_id, t.inflight.c.agent))
        assert [r.agent for r in in_flight] == ["idem"]
        env = cli_env(tmp_path / "home-c", KEYSAFE_DATABASE_URL=pair.url)
        with keysafe_server(env, "--unlock", log_dir=tmp_path) as c:
            assert "another keysafe server runs on this database" in c.log()
            assert pair.rows(select(t.inflight.c.request_id)) == [
                (r.request_id,) for r in in_flight
            ]
            retry = pair.sign(c, 0, token=pair.other)  # C serves meanwhile
            assert retry.status_code == 200, retry.text
    finally:
        held.release.set()
        caller.join(timeout=60)
    assert answer and answer[0].status_code == 200, answer[0].text if answer else "no answer"
    recovered = pair.rows(select(t.audit.c.seq).where(t.audit.c.action == "request.recover"))
    assert recovered == []
    assert pair.rows(select(t.inflight.c.request_id)) == []


def test_a_nul_character_postgresql_cannot_store_is_a_malformed_request(pair: Pair) -> None:
    r = pair.sign(pair.a, 9, token=pair.other, idempotency_key="key-\u0000-nul")
    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == "MALFORMED_REQUEST"
    assert "NUL character" in error_of(r)["message"]
    assert "Traceback" not in pair.a.log()
