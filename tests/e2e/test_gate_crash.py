"""Crash safety of the gate: SIGKILL the real server under load, many times, and check the books.

Three agents (each its own token, one policy: a 24h ETH window on R1, an always-ask rule with its
own window on R4) send sign-transaction requests from two threads each, with idempotency keys
that are sometimes new, sometimes an exact retry and sometimes reused for other bytes; an owner
thread approves every pending approval as it appears (each restart parks a few new ones first).
A signature is decided, signed and booked in one transaction, so an approved one executes for a
few milliseconds: a random kill seldom lands inside it, and never once the ask window is spent.
So each restart also parks an API call to an upstream that answers nobody, and a second owner
thread approves it as the load starts: it stays `executing`, its request in flight, until the
kill. A random 20–400 ms after the load starts the server is killed with SIGKILL, then started
again (`keysafe serve` runs `gate.recover` before it answers anyone). After every restart:

- every signature a client received (HTTP 200, or an approval the owner saw approved) is
  committed in the ledger, audited as an `evm.sign_transaction` success with its request id, and
  stored for its idempotency key;
- every committed spend is audited and every audited success is committed (one to one);
- nothing is left half done: no `inflight` row, no `reserved` ledger row, no `executing`
  approval, no idempotency key still "in flight"; each approval the crash cut is audited as
  `approval.fail` (a sign-transaction decides, signs and books in one transaction, so a kill
  leaves all of it or none; the reserve/settle path that `request.recover` finishes is cut at
  each point in tests/unit/service/test_gate_paths.py);
- a key once answered keeps its answer for ever (the same stored result, byte for byte); a retry
  returns it, and a request the crash cut runs again under a new request id;
- no window is exceeded (committed units per agent and rule within the limit).

The seed is printed; rerun one with KEYSAFE_CRASH_SEED=N.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.service import agents, credentials, policies, wallets
from keysafe.service.models import Attachment
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF, answers_ok, free_port, wait_until
from keysafe.vault.home import DB_NAME, Home
from tests.conftest import PASSPHRASE, Cli
from tests.e2e.server_fixture import MILLI_ETH, R1, R4, agent_headers, cli_env, evm_tx

pytestmark = pytest.mark.slow

AGENTS = ("a0", "a1", "a2")
KILLS = 30
MAX_KILLS = 90
PAY_WINDOW = 300 * MILLI_ETH  # per agent, rule pay-r1, 24h
ASK_WINDOW = 40 * MILLI_ETH  # per agent, rule ask-r4, 24h
LIMITS = {"pay-r1": PAY_WINDOW, "ask-r4": ASK_WINDOW}
POLICY = f"""\
version: 1
rules:
  - name: ask-slow
    ask: [http.request]
    credentials: [slow]
  - name: pay-r1
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R1}"]
    max_per_tx: {{ETH: "0.01"}}
    limits:
      - {{window: 24h, max: {{ETH: "{Decimal(PAY_WINDOW) / 10**18}"}}}}
  - name: ask-r4
    ask: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R4}"]
    max_per_tx: {{ETH: "0.01"}}
    limits:
      - {{window: 24h, max: {{ETH: "{Decimal(ASK_WINDOW) / 10**18}"}}}}
"""
WORKERS_PER_AGENT = 2
REQUESTS_PER_WORKER = 40  # per cycle: bounds a cycle even if the kill comes late
# Answers a request may get while the server runs (anything else, e.g. a 500, is a finding).
EXPECTED = {200, 202, 403, 409}

Key = tuple[str, str]  # (agent, idempotency key)


@dataclass(frozen=True)
class Built:
    home: Path
    tokens: dict[str, str]
    slow_url: str  # the held upstream, reached through the credential `slow`


@pytest.fixture
def held_upstream() -> Iterator[str]:
    """An API that reads each request and answers nobody until the test ends: an approved call
    to it stays `executing`, in flight, until the kill cuts it."""
    done = threading.Event()

    class Hold(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            done.wait(120)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hold)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        done.set()
        server.shutdown()
        server.server_close()


def _build(root: Path, slow_url: str) -> Built:
    home = Home(root / "home")
    vault, phrase = init_vault(home, SecretBytes(bytearray(PASSPHRASE.encode())), kdf=CHEAP_KDF)
    phrase.wipe()
    tokens: dict[str, str] = {}
    with vault:
        wallets.create_wallet(vault, "main", Chain.EVM)
        credentials.add_credential(
            vault,
            "slow",
            SecretBytes(bytearray(b"sk-held-upstream")),
            hosts=[slow_url.removeprefix("http://")],
            attach=Attachment.bearer(),
        )
        for name in AGENTS:
            _, token = agents.add_agent(vault, name)
            assert token is not None
            tokens[name] = bytes(token.reveal()).decode()
            policies.set_policy(vault, name, POLICY)
    os.chmod(home.path, 0o700)
    return Built(home.path, tokens, slow_url)


@dataclass
class Book:
    """What the clients saw, shared by the load threads (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # Bodies sent per key, in order, so a worker can retry one exactly or reuse its key.
    sent: dict[Key, list[str]] = field(default_factory=lambda: defaultdict(list))
    # The first 200 per key: the body it answered and the result.
    acked: dict[Key, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    # The first 202 per key: the body and its approval id.
    parked: dict[Key, tuple[str, str]] = field(default_factory=dict)
    # Approvals the owner saw approved (their result is a signature someone received).
    approved: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Requests whose answer the kill cut (transport error): retried after the restart.
    cut: list[tuple[Key, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    # The parked call to the held upstream that the next load approves (then it waits for the kill).
    held: str | None = None
    statuses: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def record(self, key: Key, body: str, r: httpx.Response, *, after_restart: bool) -> None:
        """Check one answer against everything seen before (call with `lock` held)."""
        code = r.status_code
        err = r.json().get("error", {}) if code >= 400 else {}
        self.statuses[f"{code} {err.get('code', '')}".strip()] += 1
        if code not in EXPECTED:
            self.violations.append(f"{key}: unexpected {code}: {r.text[:300]}")
            return
        if code == 409 and err.get("code") == "REQUEST_IN_PROGRESS" and after_restart:
            self.violations.append(f"{key}: still in progress after a restart: {r.text[:200]}")
        if code == 200:
            result = r.json()
            first = self.acked.get(key)
            if key in self.parked:
                self.violations.append(f"{key}: signed after the key parked {self.parked[key]}")
            if first is None:
                self.acked[key] = (body, result)
            elif first[0] != body:
                self.violations.append(f"{key}: answered {body} after answering {first[0]}")
            elif first[1] != result:
                self.violations.append(f"{key}: a retry got {result}, the first got {first[1]}")
        elif code == 202:
            approval = r.json()["approval_id"]
            first_parked = self.parked.setdefault(key, (body, approval))
            if first_parked != (body, approval):
                self.violations.append(f"{key}: parked {body}/{approval} after {first_parked}")
            if key in self.acked:
                self.violations.append(f"{key}: parked after a signature for this key")


# -- the server, forked from a warm interpreter -----------------------------------------------

# `keysafe serve` spends seconds importing (FastAPI, uvicorn, the chain libraries) before it opens
# the vault; thirty restarts would be spent mostly there. This zygote imports keysafe once and
# forks one child per start, which runs the real CLI entry point (`keysafe serve …`) in its own
# process: the test SIGKILLs that process, so nothing of it (finally blocks, atexit, the vault
# lock on shutdown) runs, exactly as with a freshly exec'd server.
ZYGOTE = r"""
import json, os, signal, sys
import uvicorn
import keysafe.api
from keysafe.cli import main

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # dead children are reaped by the kernel
for line in sys.stdin:
    order = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.argv = ["keysafe", *order["argv"]]
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os._exit(code)
    print(pid, flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Live:
    """One running `keysafe serve` child of the zygote."""

    url: str
    pid: int
    log_path: Path

    def client(self, timeout: float = 20) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def login(self) -> str:
        r = httpx.post(f"{self.url}/v1/owner/login", json={"passphrase": PASSPHRASE}, timeout=60)
        assert r.status_code == 200, r.text
        session: str = r.json()["session"]
        return session

    def running(self) -> bool:
        return _alive(self.pid)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.running():
            os.kill(self.pid, sig)
        gone = wait_until(lambda: not self.running(), time.monotonic() + 20, every=0.005)
        assert gone, f"keysafe serve {self.pid} did not die"


@dataclass
class Zygote:
    proc: subprocess.Popen[str]
    log_dir: Path

    @classmethod
    @contextmanager
    def running(cls, env: dict[str, str], log_dir: Path) -> Iterator[Zygote]:
        proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            yield cls(proc, log_dir)
        finally:
            proc.kill()
            proc.wait(timeout=10)

    @contextmanager
    def serve(self, *args: str) -> Iterator[Live]:
        """`keysafe serve --port FREE *args`, once /v1/health answers; killed on exit."""
        for attempt in range(3):  # a free port can be taken between probing and binding
            port = free_port()
            log = self.log_dir / f"serve-{port}.log"
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(
                json.dumps({"argv": ["serve", "--port", str(port), *args], "log": str(log)}) + "\n"
            )
            self.proc.stdin.flush()
            live = Live(f"http://127.0.0.1:{port}", int(self.proc.stdout.readline()), log)
            if _healthy(live):
                break
            live.kill()
            text = log.read_text(errors="replace")
            if "address already in use" not in text.lower() or attempt == 2:
                raise RuntimeError(f"keysafe serve did not become healthy:\n{text}")
        try:
            yield live
        finally:
            live.kill(signal.SIGTERM)


def _healthy(live: Live) -> bool:
    health = f"{live.url}/v1/health"
    return wait_until(
        lambda: answers_ok(health), time.monotonic() + 60, running=live.running, every=0.02
    )


@dataclass
class Load:
    """One cycle's threads: agents' workers and the owner, each with its own HTTP client (made
    once for the whole test: building one costs more than the kill delay)."""

    server: Live
    tokens: dict[str, str]
    book: Book
    seed: int
    clients: list[httpx.Client]
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, session: str) -> None:
        """Start every thread; returns once all are about to send their first request."""
        ready = threading.Barrier(len(self.clients) + 1)
        clients = iter(self.clients)
        for agent in AGENTS:
            for w in range(WORKERS_PER_AGENT):
                rng = random.Random(f"{self.seed}-{agent}-{w}")
                args = (agent, rng, next(clients), ready)
                self.threads.append(threading.Thread(target=self._guard(self._worker), args=args))
        args_owner = (session, next(clients), ready)
        self.threads.append(threading.Thread(target=self._guard(self._owner), args=args_owner))
        args_slow = (session, next(clients), ready)
        self.threads.append(threading.Thread(target=self._guard(self._slow_owner), args=args_slow))
        for th in self.threads:
            th.start()
        ready.wait(timeout=30)

    def _guard(self, target: Callable[..., None]) -> Callable[..., None]:
        """A thread's exception becomes a violation the test reports (not a lost warning)."""

        def run(*args: Any) -> None:
            try:
                target(*args)
            except Exception as exc:
                with self.book.lock:
                    self.book.violations.append(f"load thread failed: {exc!r}")

        return run

    def join(self) -> None:
        self.stop.set()
        for th in self.threads:
            th.join(timeout=30)
            assert not th.is_alive(), "a load thread hung"

    def _body(self, agent: str, rng: random.Random) -> tuple[Key, str]:
        """A new request, an exact retry, or a known key with other bytes."""
        with self.book.lock:
            known = [k for k in self.book.sent if k[0] == agent]
            roll = rng.random()
            if known and roll < 0.1:  # the newest key: often still running in the other thread
                return known[-1], self.book.sent[known[-1]][-1]
            if known and roll < 0.2:
                key = rng.choice(known)
                return key, rng.choice(self.book.sent[key])
            key = rng.choice(known) if known and roll < 0.3 else (agent, secrets.token_hex(6))
        return key, _fresh(key, rng, R4 if rng.random() < 0.2 else R1)

    def _worker(
        self, agent: str, rng: random.Random, client: httpx.Client, ready: threading.Barrier
    ) -> None:
        headers = agent_headers(self.tokens[agent]) | {"content-type": "application/json"}
        url = f"{self.server.url}/v1/agent/sign-transaction"
        ready.wait(timeout=30)
        for _ in range(REQUESTS_PER_WORKER):
            if self.stop.is_set():
                return
            key, body = self._body(agent, rng)
            with self.book.lock:
                if body not in self.book.sent[key]:
                    self.book.sent[key].append(body)
            try:
                r = client.post(url, content=body, headers=headers)
            except httpx.TransportError:
                with self.book.lock:
                    self.book.cut.append((key, body))
                return  # the server is gone
            with self.book.lock:
                self.book.record(key, body, r, after_restart=False)

    def _owner(self, session: str, client: httpx.Client, ready: threading.Barrier) -> None:
        ready.wait(timeout=30)
        while not self.stop.is_set():
            try:
                _approve_pending(client, self.server.url, session, self.book)
            except httpx.TransportError:
                return
            time.sleep(0.01)

    def _slow_owner(self, session: str, client: httpx.Client, ready: threading.Barrier) -> None:
        """Approves the parked calls to the held upstream: each answer waits for the kill."""
        ready.wait(timeout=30)
        with self.book.lock:
            approval, self.book.held = self.book.held, None
        if approval is None:
            return
        url = f"{self.server.url}/v1/owner/approvals/{approval}/approve"
        try:
            r = client.post(url, headers={"authorization": f"Bearer {session}"})
        except httpx.TransportError:
            return  # the kill cut the approval while it executed, as intended
        with self.book.lock:
            self.book.violations.append(f"the held call {approval} was answered: {r.text[:300]}")


def _fresh(key: Key, rng: random.Random, to: str) -> str:
    """A new request body: 1–10 mETH to R1 (allowed), 1–2 mETH to R4 (asks)."""
    milli = rng.randint(1, 2) if to == R4 else rng.randint(1, 10)
    tx = evm_tx(milli * MILLI_ETH, to=to, nonce=rng.randint(0, 10**6))
    return json.dumps({"wallet": "main", "transaction": tx, "idempotency_key": key[1]})


def _approve_pending(
    client: httpx.Client, url: str, session: str, book: Book, limit: int | None = None
) -> None:
    """The owner approves pending signatures (at most `limit`), recording what it saw approved
    (the calls to the held upstream are left to `Load._slow_owner`)."""
    headers = {"authorization": f"Bearer {session}"}
    base = f"{url}/v1/owner/approvals"
    pending = client.get(base, headers=headers).json()
    for a in [a for a in pending if a["kind"] != "http_request"][:limit]:
        approval = a["approval_id"]
        r = client.post(f"{base}/{approval}/approve", headers=headers)
        view = r.json()
        with book.lock:
            if r.status_code != 200:
                book.violations.append(f"approve {approval}: {r.text[:300]}")
            elif view["status"] == "approved":
                book.approved[approval] = view["result"]


# -- reading the database as the crash (or the restart) left it ------------------------------------


@contextmanager
def _db(home: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(f"file:{home / DB_NAME}?mode=ro", uri=True, timeout=30)) as c:
        yield c


@dataclass(frozen=True)
class Snapshot:
    inflight: list[tuple[str, str, str | None]]  # request_id, agent, key
    reserved: int
    executing: set[str]
    ledger: dict[str, set[str]]  # request_id -> states of its rows
    spent: dict[tuple[str, str], int]  # (agent, rule) -> live units
    keys: dict[Key, dict[str, Any]]  # idempotency rows, parsed
    approvals: dict[str, tuple[str, dict[str, Any] | None]]  # id -> (status, result)
    audited: dict[str, set[str]]  # action -> request ids of its success entries
    failed_approvals: set[str]  # approval.fail entries' request ids


def _snapshot(home: Path) -> Snapshot:
    with _db(home) as c:
        inflight = c.execute("SELECT request_id, agent, idempotency_key FROM inflight").fetchall()
        ledger: dict[str, set[str]] = defaultdict(set)
        spent: dict[tuple[str, str], int] = defaultdict(int)
        reserved = 0
        for request_id, agent, rule, units, state in c.execute(
            "SELECT request_id, agent, rule, units, state FROM ledger"
        ):
            ledger[request_id].add(state)
            reserved += state == "reserved"
            if state in ("reserved", "committed"):
                spent[(agent, rule)] += int(units)
        keys = {
            (agent, key): json.loads(result)
            for agent, key, result in c.execute("SELECT agent, key, result FROM idempotency")
        }
        approvals = {
            a: (status, json.loads(result) if result else None)
            for a, status, result in c.execute("SELECT id, status, result FROM approvals")
        }
        audited: dict[str, set[str]] = defaultdict(set)
        failed: set[str] = set()
        for action, outcome, details in c.execute("SELECT action, outcome, details FROM audit"):
            request_id = json.loads(details).get("request_id")
            if outcome == "success":
                audited[action].add(request_id)
            if action == "approval.fail":
                failed.add(request_id)
    executing = {a for a, (status, _) in approvals.items() if status == "executing"}
    return Snapshot(inflight, reserved, executing, ledger, spent, keys, approvals, audited, failed)


def _check_restart(
    before: Snapshot, after: Snapshot, book: Book, answered: dict[Key, dict[str, Any]]
) -> list[str]:
    """Everything `_snapshot` can prove after one kill and restart; returns the violations."""
    bad: list[str] = []
    if after.inflight:
        bad.append(f"in-flight rows left: {after.inflight}")
    if after.reserved:
        bad.append(f"{after.reserved} ledger rows still reserved")
    if after.executing:
        bad.append(f"approvals still executing: {after.executing}")
    recovered = after.audited["request.recover"]
    for request_id, _agent, _key in before.inflight:
        if request_id not in recovered:
            bad.append(f"in-flight {request_id} was not audited as recovered")
        if "committed" in after.ledger.get(request_id, set()):
            bad.append(f"in-flight {request_id} (a signature, never returned) is counted as spent")
    for approval in before.executing:
        status = after.approvals[approval][0]
        if status != "failed" or approval not in after.failed_approvals:
            bad.append(f"approval {approval} cut while executing is {status}, not failed+audited")
    signed = after.audited["evm.sign_transaction"]
    committed = {rid for rid, states in after.ledger.items() if states == {"committed"}}
    if committed != signed:
        bad.append(
            f"committed spends and audited signatures differ: committed only "
            f"{sorted(committed - signed)[:5]}, audited only {sorted(signed - committed)[:5]}"
        )
    for key, (_body, result) in book.acked.items():
        rid = result["request_id"]
        if rid not in committed:
            bad.append(f"{key}: acknowledged {rid} is not committed ({after.ledger.get(rid)})")
        stored = after.keys.get(key, {})
        if stored.get("state") != "done" or not _holds(stored.get("result"), result):
            bad.append(f"{key}: the key does not hold the acknowledged result: {stored}")
    for approval, result in book.approved.items():
        status, stored_result = after.approvals[approval]
        if status != "approved" or stored_result != result:
            bad.append(f"approval {approval} acknowledged approved is {status}: {stored_result}")
        if result.get("request_id") not in committed:
            bad.append(
                f"approval {approval}: its signature {result.get('request_id')} is not spent"
            )
    for key in answered.keys() - after.keys.keys():
        bad.append(f"idempotency key {key} lost its answer {answered[key]}")
    for key, value in after.keys.items():
        if value.get("state") != "done":
            bad.append(f"idempotency key {key} left as {value}")
        first = answered.setdefault(key, value)
        if first != value:
            bad.append(f"idempotency key {key} changed its answer: {first} -> {value}")
    for (agent, rule), units in after.spent.items():
        if units > LIMITS[rule]:
            bad.append(f"{agent}/{rule}: {units} wei live in the 24h window, limit {LIMITS[rule]}")
    return bad


def _holds(stored: dict[str, Any] | None, answer: dict[str, Any]) -> bool:
    """The HTTP answer is SignResult's JSON; the key stores every field (more fields)."""
    return stored is not None and all(stored.get(k) == v for k, v in answer.items())


def _after_restart(
    server: Live,
    tokens: dict[str, str],
    slow_url: str,
    book: Book,
    before: Snapshot,
    session: str,
    rng: random.Random,
) -> int:
    """Before the next load: retry every request the kill cut, and some answered ones; approve
    two pending approvals undisturbed (so later kills have approved signatures to keep); park
    a call to the held upstream, and two new requests per agent (so the owner threads are busy
    approving when the kill comes).
    Returns how many cut requests ran again under a new request id."""
    cut_ids = {(agent, key): rid for rid, agent, key in before.inflight if key is not None}
    ran_again = 0
    with book.lock:
        todo = list(dict.fromkeys(book.cut))
        book.cut.clear()
        todo += [(k, body) for k, (body, _) in list(book.acked.items())[-5:]]
        todo += [(k, body) for k, (body, _) in list(book.parked.items())[-3:]]
    with server.client(timeout=20) as client:
        for key, body in todo:
            r = _post(client, tokens, key, body)
            with book.lock:
                book.record(key, body, r, after_restart=True)
            if key in cut_ids and r.status_code == 200:
                if r.json()["request_id"] == cut_ids[key]:
                    book.violations.append(f"{key}: the cut request {cut_ids[key]} came back")
                ran_again += 1
        _approve_pending(client, server.url, session, book, limit=2)
        held = client.post(
            "/v1/agent/http",
            headers=agent_headers(tokens[AGENTS[0]]),
            json={
                "credential": "slow",
                "method": "POST",
                "url": f"{slow_url}/v1/run/{secrets.token_hex(4)}",
            },  # a new approval each time
        )
        with book.lock:
            if held.status_code == 202:
                book.held = held.json()["approval_id"]
            else:
                book.violations.append(f"the call to the held upstream did not park: {held.text}")
        for agent in AGENTS:
            for _ in range(2):
                key = (agent, secrets.token_hex(6))
                body = _fresh(key, rng, R4)
                with book.lock:
                    book.sent[key].append(body)
                r = _post(client, tokens, key, body)
                with book.lock:
                    book.record(key, body, r, after_restart=True)
    return ran_again


def _post(client: httpx.Client, tokens: dict[str, str], key: Key, body: str) -> httpx.Response:
    headers = agent_headers(tokens[key[0]]) | {"content-type": "application/json"}
    return client.post("/v1/agent/sign-transaction", content=body, headers=headers)


def test_sigkill_under_load_keeps_signatures_budgets_and_keys_consistent(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, held_upstream: str
) -> None:
    seed = int(os.environ.get("KEYSAFE_CRASH_SEED", secrets.randbelow(10**9)))
    print(f"crash test seed: {seed} (rerun with KEYSAFE_CRASH_SEED={seed})")
    rng = random.Random(seed)
    built = _build(tmp_path_factory.mktemp("crash-vault"), held_upstream)
    home = tmp_path / "home"
    shutil.copytree(built.home, home)
    env = cli_env(home)
    book = Book()
    answered: dict[Key, dict[str, Any]] = {}
    stats: dict[str, int] = defaultdict(int)
    started = time.monotonic()
    clients = [httpx.Client(timeout=20) for _ in range(len(AGENTS) * WORKERS_PER_AGENT + 2)]
    with Zygote.running(env, tmp_path) as zygote:
        for cycle in range(MAX_KILLS + 1):
            context = f"seed {seed}, after kill {cycle}"
            before = _snapshot(home)
            stats["kills with requests in flight"] += bool(before.inflight)
            stats["requests cut in flight"] += len(before.inflight)
            stats["kills while an approval executed"] += bool(before.executing)
            with zygote.serve("--unlock", "--rate-limit", "1000") as server:
                problems = _check_restart(before, _snapshot(home), book, answered)
                assert not problems, f"{context}: " + "\n".join(problems[:20])
                session = server.login()
                ran_again = _after_restart(
                    server, built.tokens, built.slow_url, book, before, session, rng
                )
                stats["cut requests run again"] += ran_again
                assert not book.violations, f"{context}: " + "\n".join(book.violations[:20])
                # At least KILLS kills; more (up to MAX_KILLS) until the kills have hit the
                # gate mid-request and an approval mid-run, which random timing may take longer
                # to do on a loaded machine.
                hit = (
                    stats["kills that cut requests"] >= 3
                    and stats["kills while an approval executed"] >= 1
                    and stats["kills with requests in flight"] >= 1
                )
                if (cycle >= KILLS and hit) or cycle == MAX_KILLS:
                    break
                load = Load(server, built.tokens, book, seed * 1000 + cycle, clients)
                load.start(session)
                time.sleep(rng.uniform(0.02, 0.4))
                server.kill()
                load.join()
                with book.lock:
                    stats["kills that cut requests"] += bool(book.cut)
                    stats["requests cut"] += len(book.cut)
            assert not book.violations, f"{context}: " + "\n".join(book.violations[:20])
    for client in clients:
        client.close()
    verify = Cli(home, env).ok("audit", "verify", "--json")
    assert json.loads(verify.stdout)["ok"] is True, verify.stdout
    stats["signatures acknowledged"] = len(book.acked)
    stats["approvals acknowledged"] = len(book.approved)
    print(f"{time.monotonic() - started:.0f}s, {dict(stats)}, answers {dict(book.statuses)}")
    print(f"live units per agent/rule: {dict(_snapshot(home).spent)}")
    # The kills must have hit the gate mid-request, or the checks above proved little.
    assert stats["kills that cut requests"] >= 3, stats
    assert stats["kills while an approval executed"] >= 1, stats
    assert stats["kills with requests in flight"] >= 1, stats
    assert book.acked and book.approved, stats
