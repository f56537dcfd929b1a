"""keysafe.client against a real `keysafe serve`: every agent route, sync and async, allowed and
refused; the typed exceptions carry the server's stable code; the token never shows. The
server's /openapi.json then goes through openapi-typescript, and tsc type-checks a typed agent
call against the generated types, so a response-schema regression fails here.

One server for the module, on a vault built in-process with a cheap KDF (service calls, as
tests/e2e/test_local_proxy.py does): the MCP tests' world (tests/e2e/mcp_fixture.py) without
their CLI runs. Wallets `main` and `spare` (named by no rule), data `profile` (standard) and
`medical` (sensitive), credential `echo` bound to a local upstream that also answers JSON-RPC
for chain `local`, agent `bot` under MCP_POLICY.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from keysafe import errors
from keysafe.chains import Chain
from keysafe.client import (
    AgentClient,
    ApiError,
    ApprovalRequiredError,
    AsyncAgentClient,
    BudgetExceededError,
    MalformedRequestError,
    NotAuthenticatedError,
    NotFoundError,
    PolicyDeniedError,
    SignResult,
    VaultLockedError,
    VaultUnreachableError,
)
from keysafe.crypto.secret import SecretBytes
from keysafe.service import agents, credentials, data, policies, registry, wallets
from keysafe.service.models import Attachment, DataClass
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF, free_port
from keysafe.vault.home import Home
from tests.conftest import PASSPHRASE
from tests.e2e.mcp_fixture import (
    LOCAL_CHAIN_ID,
    MCP_POLICY,
    MEDICAL,
    PROFILE,
    SIWE,
    McpVault,
    Upstream,
    local_tx,
    mail_typed_data,
    upstream,
)
from tests.e2e.server_fixture import (
    MILLI_ETH,
    R1,
    R2,
    R3,
    R4,
    Pristine,
    Server,
    cli_env,
    evm_tx,
    keysafe_server,
)

ROOT = Path(__file__).resolve().parents[2]
OPENAPI_TOOLS = ROOT / "tests" / "tools" / "openapi"
T = TypeVar("T")

# The MCP tests' policy (an allow rule per tool, STANDARD_POLICY's budgets and asks), plus
# asking for the credential's value (the owner always decides that one).
POLICY = (
    MCP_POLICY
    + """\
  - name: release-echo
    allow: [credential.release]
    credentials: [echo]
"""
)
assert "tiny-budget-r3" in POLICY and "ask-r4" in POLICY  # the refusals below rely on them


@dataclass
class World:
    vault: McpVault
    server: Server
    up: Upstream
    owner: httpx.Client  # an owner session, for approving and denying

    @property
    def token(self) -> str:
        return self.vault.bot_token

    def client(self) -> AgentClient:
        return AgentClient(self.token, url=self.server.url)

    def decide(self, verb: str, *, timeout: float = 30) -> str:
        """Wait for one pending approval of `bot` and `verb` it ("approve" or "deny")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = self.owner.get("/v1/owner/approvals").json()
            if pending:
                approval_id = str(pending[0]["approval_id"])
                r = self.owner.post(f"/v1/owner/approvals/{approval_id}/{verb}")
                assert r.status_code == 200, r.text
                return approval_id
            time.sleep(0.1)
        raise AssertionError("no approval became pending")


def _build(root: Path, up: Upstream) -> McpVault:
    home = Home(root / "home")
    vault, phrase = init_vault(home, SecretBytes(bytearray(PASSPHRASE.encode())), kdf=CHEAP_KDF)
    phrase.wipe()
    secret = "canary-client-" + secrets.token_hex(16)
    with vault:
        address = wallets.create_wallet(vault, "main", Chain.EVM).address
        wallets.create_wallet(vault, "spare", Chain.EVM)
        for name, value, cls in (
            ("profile", PROFILE, DataClass.STANDARD),
            ("medical", MEDICAL, DataClass.SENSITIVE),
        ):
            raw = SecretBytes(bytearray(json.dumps(value).encode()))
            data.set_data(vault, name, raw, data_class=cls)
        registry.add_chain(
            vault, "local", family="evm", chain_id=LOCAL_CHAIN_ID, rpc=f"{up.base}/rpc"
        )
        credentials.add_credential(
            vault,
            "echo",
            SecretBytes(bytearray(secret.encode())),
            hosts=[f"127.0.0.1:{up.port}"],
            attach=Attachment.bearer(),
        )
        _, token = agents.add_agent(vault, "bot")
        assert token is not None
        policies.set_policy(vault, "bot", POLICY)
        bot = bytes(token.reveal()).decode()
    os.chmod(home.path, 0o700)  # the modes keysafe gives a home (the server refuses looser)
    for child in home.path.iterdir():
        if child.is_file():
            os.chmod(child, 0o600)
    return McpVault(Pristine(home.path, address, {"bot": bot}), secret, "", "", "")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("agent-client")
    with upstream() as up:
        vault = _build(root, up)
        env = cli_env(vault.home)
        with keysafe_server(env, "--unlock", "--rate-limit", "1000", log_dir=root) as server:
            session = server.login()
            headers = {"authorization": f"Bearer {session}"}
            with server.client(headers=headers) as owner:
                yield World(vault, server, up, owner)


def _raises(cls: type[ApiError], fn: Callable[[], object]) -> ApiError:
    with pytest.raises(cls) as caught:
        fn()
    return caught.value


def _in_thread(fn: Callable[[], T]) -> Future[T]:
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn)
    finally:
        pool.shutdown(wait=False)


# -- sync: reads and signing -----------------------------------------------------------------------


def test_client_reads_health_identity_capabilities_and_addresses(world: World) -> None:
    with world.client() as ks:
        health = ks.health()
        assert (health.ok, health.unlocked) == (True, True)
        assert ks.whoami() == "bot"
        caps = ks.capabilities()
        assert caps.agent == "bot"
        assert [w.name for w in caps.wallets] == ["main"]
        assert {d.name: d.data_class for d in caps.data} == {
            "profile": "standard",
            "medical": "sensitive",
        }
        assert any(b.rule == "tiny-budget-r3" and b.asset == "ETH" for b in caps.budget)
        address = ks.address("main")
        assert (address.address, address.chain) == (world.vault.pristine.address, "evm")
        missing = _raises(NotFoundError, lambda: ks.address("spare"))  # named by no rule
        assert (missing.code, missing.status) == ("NOT_FOUND", 404)
        assert isinstance(missing, errors.NotFoundError)  # one vocabulary with the server


def test_client_signs_within_policy_and_raises_typed_refusals(world: World) -> None:
    with world.client() as ks:
        signed = ks.sign_transaction("main", evm_tx(MILLI_ETH), description="pay r1")
        assert isinstance(signed, SignResult)
        assert (signed.status, signed.wallet, signed.chain) == ("signed", "main", "ethereum")
        assert signed.signed_transaction and signed.signed_transaction.startswith("0x")

        denied = _raises(PolicyDeniedError, lambda: ks.sign_transaction("main", evm_tx(1, to=R2)))
        assert (denied.code, denied.status, denied.exit_code) == ("POLICY_DENIED", 403, 4)
        assert "Nothing was signed" in str(denied)
        assert isinstance(denied, errors.PolicyDeniedError)

        ks.sign_transaction("main", evm_tx(MILLI_ETH * 3 // 2, to=R3))
        over = _raises(
            BudgetExceededError, lambda: ks.sign_transaction("main", evm_tx(MILLI_ETH, to=R3))
        )
        assert (over.code, over.facts.get("rule")) == ("BUDGET_EXCEEDED", "tiny-budget-r3")
        assert isinstance(over, PolicyDeniedError)  # a budget refusal is a policy refusal

        sent = ks.send_transaction("main", local_tx(MILLI_ETH), chain="local")
        assert sent.status == "sent" and sent.tx_hash
        assert world.up.raw_txs, "the upstream's RPC received the transaction"

        paid = ks.transfer("main", "ETH", R1, "0.001", chain="local")
        assert (paid.status, paid.chain) == ("sent", "local") and paid.tx_hash
        assert world.up.raw_txs[-1] == paid.signed_transaction
        inexact = _raises(
            MalformedRequestError, lambda: ks.transfer("main", "ETH", R1, "1e-3", chain="local")
        )
        assert inexact.code == "MALFORMED_REQUEST"

        message = ks.sign_message("main", f"{SIWE}:\n0xabc")
        assert message.signature and message.address == world.vault.pristine.address
        other = _raises(PolicyDeniedError, lambda: ks.sign_message("main", "gimme"))
        assert other.code == "POLICY_DENIED"

        typed = ks.sign_typed_data("main", mail_typed_data(1))
        assert typed.status == "signed" and typed.signature

        bad = _raises(MalformedRequestError, lambda: ks.sign_message("main", "x", encoding="hex"))  # type: ignore[arg-type]
        assert (bad.code, bad.status) == ("MALFORMED_REQUEST", 400)


def test_client_calls_apis_reads_data_and_dry_runs(world: World) -> None:
    with world.client() as ks:
        answer = ks.http_request("echo", "GET", f"{world.up.base}/hello")
        assert answer.status_code == 200 and answer.body is not None
        assert json.loads(answer.body)["path"] == "/hello"
        assert world.vault.secret not in answer.model_dump_json()  # scrubbed by the vault

        profile = ks.read_data("profile", fields=["city"])
        assert (profile.status, profile.value) == ("value", {"city": PROFILE["city"]})

        check = ks.check("sign_transaction", {"wallet": "main", "transaction": evm_tx(1, to=R2)})
        assert check.decision == "deny"
        allowed = ks.check("sign_message", {"wallet": "main", "message": SIWE})
        assert (allowed.decision, allowed.rule) == ("allow", "sign-in")

        not_threshold = _raises(ApiError, lambda: ks.threshold_commit("main"))
        assert not_threshold.code in ("MALFORMED_REQUEST", "NOT_FOUND", "POLICY_DENIED")
        assert not_threshold.status in (400, 403, 404)


# -- approvals ---------------------------------------------------------------------------------


def test_client_pending_approval_raises_then_waits_for_the_owner(world: World) -> None:
    with world.client() as ks:
        ask = _raises(ApprovalRequiredError, lambda: ks.sign_transaction("main", evm_tx(1, to=R4)))
        assert isinstance(ask, ApprovalRequiredError)
        assert (ask.code, ask.status, ask.exit_code) == ("APPROVAL_REQUIRED", 202, 3)
        assert ask.approval_id in str(ask)
        assert [a.approval_id for a in ks.pending_approvals()] == [ask.approval_id]
        assert ks.approval(ask.approval_id).status == "pending"
        assert world.decide("approve") == ask.approval_id
        view = ks.wait_for_approval(ask.approval_id, timeout=10)
        assert view.status == "approved" and view.result is not None
        assert view.result["status"] == "signed"

        # wait=: the call itself returns the approved answer, typed as the route's.
        later = _in_thread(lambda: ks.sign_transaction("main", evm_tx(2, to=R4), wait=30))
        world.decide("approve")
        signed = later.result(60)
        assert isinstance(signed, SignResult) and signed.status == "signed"

        sensitive = _in_thread(lambda: ks.read_data("medical", wait=30))
        world.decide("deny")
        with pytest.raises(PolicyDeniedError, match="denied"):
            sensitive.result(60)

        release = _raises(ApprovalRequiredError, lambda: ks.release_credential("echo"))
        assert release.approval_id
        assert world.decide("deny") == release.approval_id
        assert ks.pending_approvals() == []


# -- async -----------------------------------------------------------------------------------------


def test_async_client_covers_every_agent_route(world: World) -> None:
    async def run() -> None:
        async with AsyncAgentClient(world.token, url=world.server.url) as ks:
            assert (await ks.health()).ok
            assert await ks.whoami() == "bot"
            assert (await ks.capabilities()).wallets[0].name == "main"
            assert (await ks.address("main")).address == world.vault.pristine.address
            assert (
                await ks.sign_transaction("main", evm_tx(MILLI_ETH, nonce=7))
            ).signed_transaction
            assert (await ks.send_transaction("main", local_tx(MILLI_ETH, nonce=1))).tx_hash
            assert (await ks.sign_message("main", SIWE)).signature
            assert (await ks.sign_typed_data("main", mail_typed_data(1))).signature
            assert (await ks.http_request("echo", "GET", f"{world.up.base}/a")).status_code == 200
            assert (await ks.read_data("profile")).value == PROFILE
            assert (await ks.check("read_data", {"name": "profile"})).decision == "allow"
            with pytest.raises(ApiError):
                await ks.threshold_commit("main")
            with pytest.raises(PolicyDeniedError) as denied:
                await ks.sign_transaction("main", evm_tx(1, to=R2))
            assert denied.value.code == "POLICY_DENIED"
            with pytest.raises(ApprovalRequiredError) as ask:
                await ks.release_credential("echo", purpose="a test")
            assert [a.approval_id for a in await ks.pending_approvals()] == [ask.value.approval_id]
            decided = asyncio.get_running_loop().run_in_executor(None, world.decide, "approve")
            view = await ks.wait_for_approval(ask.value.approval_id, timeout=30)
            await decided
            assert view.status == "approved"
            assert view.result == {
                "status": "released",
                "credential": "echo",
                "value": world.vault.secret,
            }
            assert (await ks.approval(ask.value.approval_id)).result is None  # handed out once

    asyncio.run(run())


# -- authentication, reachability, secrecy ---------------------------------------------------------


def test_attack_client_token_never_shows_in_repr_str_or_errors(world: World) -> None:
    forged = "ks_agent_" + "f" * 40
    with AgentClient(forged, url=world.server.url) as bad:
        refused = _raises(NotAuthenticatedError, bad.whoami)
        shown = [repr(bad), str(bad), repr(refused), str(refused), json.dumps(refused.to_dict())]
    assert (refused.code, refused.status) == ("NOT_AUTHENTICATED", 401)
    with world.client() as ks:
        ask = _raises(ApprovalRequiredError, lambda: ks.read_data("medical"))
        denied = _raises(PolicyDeniedError, lambda: ks.sign_transaction("main", evm_tx(1, to=R2)))
        shown += [repr(ks), str(ks), repr(ask), str(ask), repr(denied), str(denied)]
        shown += [json.dumps(ask.to_dict()), json.dumps(denied.to_dict()), repr(ks.__dict__)]
    world.decide("deny")
    for text in shown:
        assert forged not in text and world.token not in text
        assert world.token.removeprefix("ks_agent_") not in text


def test_client_without_token_or_server_fails_with_what_to_do(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEYSAFE_AGENT_TOKEN", raising=False)
    none = _raises(NotAuthenticatedError, lambda: AgentClient(url=world.server.url))
    assert "KEYSAFE_AGENT_TOKEN" in none.next_step
    monkeypatch.setenv("KEYSAFE_AGENT_TOKEN", world.token)
    nowhere = f"http://127.0.0.1:{free_port()}"
    with AgentClient(url=nowhere) as ks:
        down = _raises(VaultUnreachableError, ks.capabilities)
    assert (down.code, down.status) == ("VAULT_UNREACHABLE", 0)
    assert "keysafe serve" in down.next_step
    with AgentClient(url=world.server.url) as ks:  # token from the environment
        assert ks.whoami() == "bot"


def test_client_on_a_locked_vault_raises_vault_locked_until_the_owner_unlocks(
    world: World,
) -> None:
    assert world.owner.post("/v1/owner/lock").status_code == 200
    try:
        with world.client() as ks:
            assert ks.health().unlocked is False
            locked = _raises(VaultLockedError, lambda: ks.sign_message("main", SIWE))
            assert (locked.code, locked.status) == ("VAULT_LOCKED", 423)
            assert isinstance(locked, errors.VaultLockedError)
    finally:
        world.server.login()  # unlocks again (the cheap KDF of this vault)
    with world.client() as ks:
        assert ks.sign_message("main", SIWE).signature


# -- the OpenAPI document, as a TypeScript client sees it -----------------------------------------

TS_CHECK = """\
import type { components, paths } from "./keysafe";

type SignMessageBody =
  paths["/v1/agent/sign-message"]["post"]["requestBody"]["content"]["application/json"];
type Signed =
  paths["/v1/agent/sign-message"]["post"]["responses"][200]["content"]["application/json"];
type Pending =
  paths["/v1/agent/sign-message"]["post"]["responses"][202]["content"]["application/json"];
type Refused =
  paths["/v1/agent/sign-message"]["post"]["responses"][403]["content"]["application/json"];
type Caps =
  paths["/v1/agent/capabilities"]["get"]["responses"][200]["content"]["application/json"];
type View =
  paths["/v1/agent/approvals/{approval_id}"]["get"]["responses"][200]["content"]["application/json"];

const body: SignMessageBody = { wallet: "main", message: "hello" };

function handle(status: number, answer: Signed | Pending | Refused): string {
  if (status === 200) {
    const signed = answer as Signed;
    const kind: "signed" | "sent" = signed.status;
    return `${kind} by ${signed.address}: ${signed.signature ?? ""}`;
  }
  if (status === 202) {
    const pending = answer as Pending;
    const id: string = pending.approval_id;
    return `waiting on ${id}`;
  }
  const refused = answer as Refused;
  const code: string = refused.error.code;
  return `${code}: ${refused.error.message} Next: ${refused.error.next}`;
}

function wallets(caps: Caps): string[] {
  return caps.wallets.map((w: components["schemas"]["WalletInfo"]) => `${w.name}@${w.address}`);
}

function settled(view: View): boolean {
  const done: "approved" | "denied" | "expired" | "failed" | "pending" = view.status;
  return done !== "pending";
}

const auth: { Authorization: `Bearer ks_agent_${string}` } = { Authorization: "Bearer ks_agent_x" };
export const used = [body, handle, wallets, settled, auth];
"""

TS_MUST_FAIL = """\
import type { paths } from "./keysafe";
type Signed =
  paths["/v1/agent/sign-message"]["post"]["responses"][200]["content"]["application/json"];
export const nope: number = (null as unknown as Signed).address;
"""

TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "target": "es2022",
        "module": "es2022",
        "moduleResolution": "bundler",
        "lib": ["es2022"],  # no DOM: it doubles tsc's time and the check needs none of it
        "skipLibCheck": True,
    },
    "files": ["check.ts", "must_fail.ts"],
}


def _bin(name: str) -> Path:
    return OPENAPI_TOOLS / "node_modules" / ".bin" / name


@pytest.mark.skipif(
    not _bin("tsc").exists() or shutil.which("node") is None,
    reason="openapi-typescript and tsc are installed by scripts/test (npm ci --prefix "
    "tests/tools/openapi)",
)
def test_openapi_generates_typescript_types_that_type_check(world: World, tmp_path: Path) -> None:
    schema = httpx.get(f"{world.server.url}/openapi.json", timeout=30).json()
    agent_ops = [
        (path, op)
        for path, methods in schema["paths"].items()
        if path.startswith("/v1/agent/")
        for op in methods.values()
    ]
    assert len(agent_ops) >= 15
    for path, op in agent_ops:  # every agent route: a real answer schema and the bearer scheme
        ok = op["responses"].get("200") or op["responses"]["202"]
        assert ok["content"]["application/json"]["schema"], path
        assert {"agentToken": []} in op["security"], path
    assert schema["components"]["securitySchemes"]["agentToken"]["scheme"] == "bearer"

    (tmp_path / "openapi.json").write_text(json.dumps(schema), encoding="utf-8")
    (tmp_path / "tsconfig.json").write_text(json.dumps(TSCONFIG), encoding="utf-8")
    (tmp_path / "check.ts").write_text(TS_CHECK, encoding="utf-8")
    (tmp_path / "must_fail.ts").write_text(TS_MUST_FAIL, encoding="utf-8")
    # Request fields with a default stay optional (openapi-typescript makes them required by
    # default, which suits answers, not request bodies).
    gen = subprocess.run(
        [
            str(_bin("openapi-typescript")),
            "openapi.json",
            "-o",
            "keysafe.ts",
            "--default-non-nullable",
            "false",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gen.returncode == 0, gen.stderr
    # One tsc run over both files (it is slow to start): check.ts must be clean, and the one
    # error is the one planted in must_fail.ts, so the check is not passing vacuously.
    tsc = subprocess.run(
        [str(_bin("tsc")), "-p", "tsconfig.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors_at = [line for line in tsc.stdout.splitlines() if "error TS" in line]
    assert tsc.returncode != 0 and len(errors_at) == 1, tsc.stdout + tsc.stderr
    assert errors_at[0].startswith("must_fail.ts(4,")
    assert "Type 'string' is not assignable to type 'number'" in errors_at[0]  # a typed field
