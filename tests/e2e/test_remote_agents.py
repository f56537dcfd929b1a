"""Remote agents (issue 17): a vault that only connects out, two relay instances sharing routing
through a real redis-server, and a sidecar on the "agent's host", each its own process.

The vault (`keysafe serve --relay ws://A`) is on relay A; the sidecar pairs and runs through
relay B. Through it: pairing with the words, every MCP tool (the MCP Inspector, a TypeScript-SDK
client, over stdio), an approval round trip, a relay restart mid-session with no request lost or
run twice, what the relays and Redis could see (logs, memory, traffic), and revoking the agent
cutting the sidecar off.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from playwright.sync_api import expect, sync_playwright
from solders.pubkey import Pubkey
from solders.signature import Signature

from keysafe import sidecar
from keysafe.crypto.secret import SecretBytes
from keysafe.relay import sidecar_state
from keysafe.relay.envelope import Kind, PeerKeys
from keysafe.relay.forwarded import RelayedRequest, RelayedResponse
from keysafe.relay.link import RelayLink
from keysafe.testing import free_port
from tests.conftest import Cli
from tests.e2e.keygen_fixture import create_apart, reshare_apart
from tests.e2e.mcp_fixture import (
    MCP_POLICY,
    PROFILE,
    SIWE,
    McpSession,
    McpVault,
    agent_side_env,
    build_mcp_vault,
    mcp_http_server,
    ok,
    upstream,
)
from tests.e2e.server_fixture import KEYSAFE, MILLI_ETH, R4, Server, cli_env, evm_tx, keysafe_server
from tests.e2e.test_mcp_inspector import INSPECTOR, Case, _pending_approval, _sweep, cases
from tests.e2e.test_web_page import CHROMIUM, CHROMIUM_ARGS, DOCS_SHOTS, unlock
from tests.relay_fixture import RelayProcess, redis_server, relay_process

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not INSPECTOR.exists(), reason="the MCP Inspector is installed by scripts/test"
    ),
]

SIDECAR_PASSPHRASE = "sidecar passphrase for tests 7"
RECOVERY_PASSPHRASE = "remote agent recovery passphrase, offline"
SHARE_KEY = "remote agent share key, agent host only"
GREET = """\
  - name: greet
    allow: [solana.sign_message]
    wallets: [team]
    chains: [solana]
    message_matches: "^hello"
"""


@dataclass
class Remote:
    vault: McpVault
    server: Server
    owner: Cli
    relay_a: RelayProcess
    relay_b: RelayProcess
    redis_port: int
    redis_traffic: Path
    sidecar: subprocess.Popen[bytes]
    sidecar_url: str
    sidecar_log: Path
    token: str
    words: list[str]
    upstream_port: int
    stack: ExitStack  # what a test starts anew (a restarted vault or sidecar) lives until the end
    server_args: tuple[str, ...]

    def call(self, method: str, path: str, body: object = None, **kw: object) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.sidecar_url}{path}",
            json=body,
            headers={"authorization": f"Bearer {self.token}"},
            timeout=180,
            **kw,  # type: ignore[arg-type]
        )


def _sidecar_env(home: Path) -> dict[str, str]:
    return agent_side_env(home) | {"KEYSAFE_SIDECAR_PASSPHRASE": SIDECAR_PASSPHRASE}


def _pair(owner: Cli, invite: str, home: Path) -> tuple[str, list[str], list[str]]:
    """Run `keysafe sidecar pair`, read its words, approve with them as the owner; returns the
    local token, the sidecar's words and the vault's."""
    proc = subprocess.Popen(
        [KEYSAFE, "sidecar", "pair", invite, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_sidecar_env(home),
    )
    assert proc.stderr is not None and proc.stdout is not None
    line = proc.stderr.readline().decode()
    match = re.search(r"Pairing words: ((?:[a-z]+ ){3}[a-z]+)", line)
    assert match, line
    sidecar_words = match.group(1).split()
    pending = []
    for _ in range(100):
        pending = [
            a for a in json.loads(owner.ok("approvals", "--json").stdout) if a["kind"] == "pairing"
        ]
        if pending:
            break
        time.sleep(0.1)
    assert len(pending) == 1, pending
    vault_words = pending[0]["words"]
    owner.ok("approve", pending[0]["approval_id"], "--words", " ".join(sidecar_words))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)["local_token"], sidecar_words, vault_words


def _start_sidecar(home: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`keysafe sidecar` on a free port (its output appended to `log`), once its relay link is
    up; the process and its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [KEYSAFE, "sidecar", "--port", str(port)],
        stdout=open(log, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        env=_sidecar_env(home),
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).json().get("relay"):
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return proc, url


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    root = tmp_path_factory.mktemp("remote")
    with upstream() as up, redis_server() as redis_url:
        redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
        traffic = root / "redis-monitor.txt"
        monitor = subprocess.Popen(
            ["redis-cli", "-p", str(redis_port), "monitor"],
            stdout=open(traffic, "wb"),  # noqa: SIM115
            stderr=subprocess.DEVNULL,
        )
        with relay_process(free_port(), redis_url) as a, relay_process(free_port(), redis_url) as b:
            vault = build_mcp_vault(tmp_path_factory, root / "vault", up.port)
            (root / "remote.yaml").write_text(MCP_POLICY, encoding="utf-8")
            with keysafe_server(
                cli_env(vault.home),
                "--unlock",
                "--rate-limit",
                "1000",
                "--relay",
                a.ws_url,
                log_dir=root,
            ) as server:
                # (a test may kill it and start another on the same home: see Remote.stack)
                owner = Cli(vault.home, cli_env(vault.home) | {"KEYSAFE_URL": server.url})
                invite = owner.ok(
                    "agent",
                    "invite",
                    "remote",
                    "--policy",
                    str(root / "remote.yaml"),
                    "--relay",
                    b.ws_url,
                ).stdout
                invite = re.search(r"ksi_[A-Za-z0-9_.\-]+", invite).group(0)  # type: ignore[union-attr]
                side_home = root / "agent-host"
                token, words, vault_words = _pair(owner, invite, side_home)
                assert words == vault_words
                log = root / "sidecar.log"
                sidecar, url = _start_sidecar(side_home, log)
                args = ("--unlock", "--rate-limit", "1000", "--relay", a.ws_url)
                with ExitStack() as stack:
                    made = Remote(
                        vault,
                        server,
                        owner,
                        a,
                        b,
                        redis_port,
                        traffic,
                        sidecar,
                        url,
                        log,
                        token,
                        words,
                        up.port,
                        stack,
                        args,
                    )
                    try:
                        yield made
                    finally:
                        made.sidecar.terminate()
                        made.sidecar.wait(10)
        monitor.terminate()


def test_the_sidecar_keeps_its_home_private_and_its_keys_encrypted(remote: Remote) -> None:
    home = Path(_sidecar_env(remote.sidecar_log.parent / "agent-host")["KEYSAFE_HOME"])
    assert home.stat().st_mode & 0o777 == 0o700
    state = home / "sidecar.json"
    assert state.stat().st_mode & 0o777 == 0o600
    text = state.read_text()
    assert remote.token not in text and "ks_local_" not in text
    assert json.loads(text)["sealed"]  # the private keys, only encrypted


def test_attack_the_sidecar_wants_its_local_token(remote: Remote) -> None:
    for auth in (
        {},
        {"authorization": "Bearer ks_local_guess"},
        {"authorization": f"Bearer {remote.vault.bot_token}"},
    ):
        r = httpx.get(f"{remote.sidecar_url}/v1/agent/capabilities", headers=auth, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["code"] == "NOT_AUTHENTICATED"


def test_every_mcp_tool_allowed_and_refused_through_the_sidecar(
    remote: Remote, tmp_path: Path
) -> None:
    env = agent_side_env(tmp_path / "nowhere")
    target = [
        "-e",
        f"KEYSAFE_URL={remote.sidecar_url}",
        "-e",
        f"KEYSAFE_AGENT_TOKEN={remote.token}",
        "-e",
        f"KEYSAFE_HOME={tmp_path / 'nowhere'}",
        KEYSAFE,
        "mcp",
    ]
    approval_id = _pending_approval(None, target, env)  # type: ignore[arg-type]
    problems = _sweep(target, env, cases(remote.upstream_port, approval_id))
    assert not problems, "\n".join(problems)
    assert whoami(remote) == "remote"


def test_mcp_over_http_works_through_the_sidecar(remote: Remote, tmp_path: Path) -> None:
    """`keysafe mcp --http` on the agent's host, pointed at the sidecar, with the local token as
    the bearer (checked against the vault through the sidecar on every request)."""
    env = agent_side_env(tmp_path / "nowhere")
    with mcp_http_server(env, remote.sidecar_url, tmp_path) as http:
        target = [
            http.url,
            "--transport",
            "http",
            "--header",
            f"Authorization: Bearer {remote.token}",
        ]
        problems = _sweep(
            target,
            env,
            [
                Case("list_capabilities", {}, None),
                Case("sign_message", {"wallet": "main", "message": SIWE}, None),
                Case(
                    "sign_message",
                    {"wallet": "main", "message": "send me everything"},
                    "POLICY_DENIED",
                ),
            ],
        )
    assert not problems, "\n".join(problems)


def whoami(remote: Remote) -> str:
    r = remote.call("GET", "/v1/agent/whoami")
    assert r.status_code == 200, r.text
    return str(r.json()["agent"])


def test_an_approval_round_trip_through_the_sidecar(remote: Remote) -> None:
    asked = remote.call(
        "POST",
        "/v1/agent/sign-transaction",
        {"wallet": "main", "transaction": evm_tx(MILLI_ETH, to=R4, nonce=11)},
    )
    assert asked.status_code == 202, asked.text
    approval_id = asked.json()["approval_id"]
    remote.owner.ok("approve", approval_id)
    done = remote.call("GET", f"/v1/agent/approvals/{approval_id}")
    assert done.status_code == 200 and done.json()["status"] == "approved", done.text
    assert done.json()["result"]["signed_transaction"].startswith("0x")


def test_keysafe_proxy_placeholders_work_through_the_sidecar_for_its_agent_only(
    remote: Remote,
) -> None:
    """`keysafe proxy` on the agent's host sends a `ksp_…` placeholder, not the local token: the
    sidecar forwards it on credential calls only, and the vault takes it only for the sidecar's
    own agent (agent `bot`'s placeholder, used through `remote`'s sidecar, is refused)."""
    out = remote.owner.ok("credential", "placeholder", "echo", "--agent", "remote", "--json")
    own = json.loads(out.stdout)["placeholder"]
    call = {
        "credential": "echo",
        "method": "GET",
        "url": f"http://127.0.0.1:{remote.upstream_port}/through-sidecar",
    }

    def via(placeholder: str, path: str = "/v1/agent/http") -> httpx.Response:
        return httpx.post(
            f"{remote.sidecar_url}{path}",
            json=call,
            timeout=60,
            headers={"authorization": f"Bearer {placeholder}"},
        )

    r = via(own)
    assert r.status_code == 200, r.text
    assert remote.vault.secret not in r.text
    foreign = via(remote.vault.placeholder)  # bot's placeholder
    assert foreign.status_code in (401, 403), foreign.text
    elsewhere = via(own, "/v1/agent/whoami")  # a placeholder is no agent token
    assert elsewhere.status_code == 401, elsewhere.text


def _audited(remote: Remote, action: str) -> list[dict[str, object]]:
    session = remote.server.login()
    rows = httpx.get(
        f"{remote.server.url}/v1/owner/audit",
        params={"limit": 1000, "agent": "remote", "action": action, "outcome": "success"},
        headers={"authorization": f"Bearer {session}"},
        timeout=30,
    ).json()
    assert isinstance(rows, list), rows
    return [r for r in rows if r["action"] == action and r["actor"] == "agent:remote"]


def test_a_relay_killed_mid_session_loses_and_repeats_nothing(remote: Remote) -> None:
    """kill -9 the sidecar's relay while 16 signatures are on their way, start it again: every
    request gets its answer, and each was signed exactly once (the vault answers a request id
    once; the sidecar resends a late one)."""
    before = len(_audited(remote, "evm.sign_message"))
    messages = [f"{SIWE}\nNonce: restart{i:04d}" for i in range(16)]
    results: list[httpx.Response] = []

    def sign(message: str) -> httpx.Response:
        return remote.call("POST", "/v1/agent/sign-message", {"wallet": "main", "message": message})

    killer = threading.Timer(0.05, lambda: remote.relay_b.restart(kill=True))
    killer.start()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(sign, messages))
    killer.join()
    assert [r.status_code for r in results] == [200] * len(messages), [r.text for r in results]
    signatures = {r.json()["signature"] for r in results}
    assert len(signatures) == len(messages)
    after = _audited(remote, "evm.sign_message")
    assert len(after) - before == len(messages), "a request was lost or signed twice"


def _memory(pid: int) -> bytes:
    """Every readable, writable mapping of a live process (its heap and stacks)."""
    out = bytearray()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                out += mem.read(end - start)
            except OSError:
                continue
    return bytes(out)


def test_attack_the_relays_and_redis_see_no_secret_amount_or_address(remote: Remote) -> None:
    """After every tool ran through them: the relays' logs and memory and everything Redis was
    sent hold none of the credential's secret, the data read, the addresses or the messages."""
    # Something for each to carry right now, so their buffers are warm with it.
    assert remote.call("POST", "/v1/agent/read-data", {"name": "profile"}).status_code == 200
    address = remote.vault.pristine.address  # random, and carried by every get_address
    assert remote.call("GET", "/v1/agent/address/main").json()["address"] == address
    canaries = [
        remote.vault.secret,
        PROFILE["email"],
        address[2:],
        address[2:].lower(),
        "example.com wants you to sign in",
        hex(MILLI_ETH),  # an amount that went through
        "Nonce: restart0003",
    ]
    try:
        memories = {"relay A": _memory(remote.relay_a.pid), "relay B": _memory(remote.relay_b.pid)}
    except PermissionError:
        pytest.skip("this machine does not let a test read another process's memory")
    seen = {
        "relay A log": remote.relay_a.log().encode(),
        "relay B log": remote.relay_b.log().encode(),
        "redis traffic": remote.redis_traffic.read_bytes(),
        **memories,
    }
    assert len(seen["redis traffic"]) > 10_000  # it did carry the session
    found = [(where, c) for where, blob in seen.items() for c in canaries if c.encode() in blob]
    assert not found, found


def test_a_2_of_3_wallet_is_made_reshared_and_used_through_the_sidecar(
    remote: Remote, tmp_path: Path
) -> None:
    """The threshold protocols run over the same channel: the agent's party of the key ceremony
    (`keysafe agent threshold join`) and of each signature (`keysafe mcp` with its share) talk to
    the vault only through the sidecar and the relays."""
    policy = tmp_path / "remote.yaml"
    policy.write_text(MCP_POLICY + GREET, encoding="utf-8")
    remote.owner.ok("policy", "set", "remote", str(policy))
    agent_env = agent_side_env(tmp_path / "agent-home") | {
        "KEYSAFE_URL": remote.sidecar_url,
        "KEYSAFE_AGENT_TOKEN": remote.token,
        "KEYSAFE_AGENT_SHARE_KEY": SHARE_KEY,
    }
    share, recovery = tmp_path / "team.share", tmp_path / "team.recovery"
    made = create_apart(
        remote.owner,
        "team",
        "solana",
        "remote",
        recovery_file=recovery,
        share_file=share,
        recovery_passphrase=RECOVERY_PASSPHRASE,
        agent_env=agent_env,
    )
    assert made.agent["address"] == made.owner["address"]
    reshare_apart(
        remote.owner,
        "team",
        "agent,vault",
        recovery_file=tmp_path / "team.recovery2",
        share_file=share,
        recovery_passphrase=RECOVERY_PASSPHRASE,
        agent_env=agent_env,
    )
    env = agent_env | {"KEYSAFE_AGENT_SHARE_FILE": str(share)}
    params = StdioServerParameters(command=KEYSAFE, args=["mcp"], env=env)
    with (
        open(tmp_path / "mcp-stderr.log", "w") as errlog,
        McpSession(lambda: Client(stdio_client(params, errlog=errlog))) as mcp,
    ):
        got = ok(mcp.call("sign_message", {"wallet": "team", "message": "hello remote"}))
    assert Signature.from_string(got["signature"]).verify(
        Pubkey.from_string(made.owner["address"]), b"hello remote"
    )


def test_attack_a_relayed_path_cannot_leave_the_agent_api(remote: Remote) -> None:
    """`/v1/agent/../owner/login` sent as is (no client normalises it here) must not reach the
    owner's login through the sidecar and the relay: that would let a remote agent guess the
    passphrase and lock the owner out with the unlock throttle."""
    for path in ("/v1/agent/../owner/login", "/v1/agent/%2e%2e/owner/login", "/v1/agent/../../"):
        with socket.create_connection(
            ("127.0.0.1", int(remote.sidecar_url.rsplit(":", 1)[1]))
        ) as c:
            body = b'{"passphrase": "guess"}'
            c.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                f"{remote.token}\r\nContent-Type: application/json\r\nContent-Length: "
                f"{len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            answer = b""
            while chunk := c.recv(65536):
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 404), (path, answer[:300])
    session = remote.server.login()  # the owner's login still works: no throttle was tripped
    assert session


def _sidecar_channel(remote: Remote) -> tuple[Any, Any]:
    """This test's own end with the paired sidecar's keys (the sidecar process is stopped)."""
    state = sidecar_state.load_state(remote.sidecar_log.parent / "agent-host")
    with SecretBytes(bytearray(SIDECAR_PASSPHRASE.encode())) as secret:
        me = sidecar_state.open_identity(state, secret)
    return me, PeerKeys.from_text(state.vault)


def _ask(
    remote: Remote, me: Any, vault: Any, requests: list[tuple[str, dict[str, Any]]]
) -> list[Any]:
    async def go() -> list[Any]:
        link = RelayLink(remote.relay_b.ws_url, me.sign)
        await link.start()
        channel = sidecar._Channel(me, vault, link)
        receiver = asyncio.create_task(channel.receive_forever())
        try:
            out = []
            for request_id, payload in requests:
                answer = await channel.ask(Kind.REQUEST, payload, request_id=request_id)
                out.append(RelayedResponse.model_validate(answer.payload))
            return out
        finally:
            receiver.cancel()
            await link.close()

    return asyncio.run(go())


def _post(path: str, body: dict[str, Any]) -> dict[str, Any]:
    return RelayedRequest(
        method="POST",
        path=path,
        headers={"content-type": "application/json"},
        body=base64.b64encode(json.dumps(body).encode()).decode(),
    ).model_dump(mode="json")


def test_attack_a_request_retried_after_the_vault_restarts_runs_once(remote: Remote) -> None:
    """The sidecar sends a late request again under the same id. If the vault crashed in the
    meantime, its memory of answers is gone: a signature must still be made once (the retry gets
    the first one back), and a call that cannot say what it did is refused, not run again."""
    remote.sidecar.terminate()
    remote.sidecar.wait(10)
    me, vault = _sidecar_channel(remote)
    signed_before = len(_audited(remote, "evm.sign_message"))
    message = f"{SIWE}\nNonce: once-across-restart"
    sign = (
        os.urandom(16).hex(),
        _post("/v1/agent/sign-message", {"wallet": "main", "message": message}),
    )
    read = (os.urandom(16).hex(), _post("/v1/agent/read-data", {"name": "profile"}))
    before = _ask(remote, me, vault, [sign, read])
    assert [r.status for r in before] == [200, 200], before

    remote.server.proc.kill()  # kill -9: no goodbye
    remote.server.proc.wait(10)
    remote.server = remote.stack.enter_context(
        keysafe_server(cli_env(remote.vault.home), *remote.server_args)
    )
    remote.owner = Cli(
        remote.vault.home, cli_env(remote.vault.home) | {"KEYSAFE_URL": remote.server.url}
    )
    after = _ask(remote, me, vault, [sign, read])
    assert after[0].status == 200 and after[0].body == before[0].body  # the first signature
    assert after[1].status == 409, after[1]
    assert len(_audited(remote, "evm.sign_message")) - signed_before == 1  # signed once

    # The sidecar again, for the tests after this one.
    remote.sidecar, remote.sidecar_url = _start_sidecar(
        remote.sidecar_log.parent / "agent-host", remote.sidecar_log
    )


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium (scripts/test installs it)")
def test_the_owner_approves_a_pairing_on_the_web_page_by_typing_the_words(
    remote: Remote, tmp_path: Path
) -> None:
    """The pairing card shows the vault's four words; the owner types the ones the sidecar shows
    and approves (a screenshot of the card goes to docs/screenshots/pairing-card.png)."""
    out = remote.owner.ok(
        "agent",
        "invite",
        "webbot",
        "--policy",
        str(remote.sidecar_log.parent / "remote.yaml"),
        "--relay",
        remote.relay_b.ws_url,
    ).stdout
    invite = re.search(r"ksi_[A-Za-z0-9_.\-]+", out).group(0)  # type: ignore[union-attr]
    proc = subprocess.Popen(
        [KEYSAFE, "sidecar", "pair", invite, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_sidecar_env(tmp_path / "web-host"),
    )
    assert proc.stderr is not None
    words = re.search(r"Pairing words: ((?:[a-z]+ ){3}[a-z]+)", proc.stderr.readline().decode())
    assert words is not None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(
            viewport={"width": 1200, "height": 860},
            base_url=remote.server.url,
            color_scheme="light",
        ).new_page()
        page.set_default_timeout(15_000)
        unlock(page)
        card = page.locator("article.approval", has_text="webbot")
        expect(card).to_be_visible()
        expect(card.locator(".pairing-words strong")).to_have_text(words.group(1))
        expect(card).to_contain_text("Pair a remote sidecar")
        card.screenshot(
            path=str(DOCS_SHOTS / "pairing-card.png"), animations="disabled", caret="hide"
        )
        card.get_by_label("The four words the sidecar shows").fill(words.group(1))
        card.get_by_role("button", name="Approve", exact=True).click()
        expect(page.locator("#message")).to_contain_text("Approved")
        browser.close()
    out_b, err_b = proc.communicate(timeout=60)
    assert proc.returncode == 0, err_b.decode()
    assert json.loads(out_b)["local_token"].startswith("ks_local_")


def test_revoking_the_agent_cuts_the_sidecar_off(remote: Remote) -> None:
    assert whoami(remote) == "remote"
    remote.owner.ok("agent", "revoke", "remote")
    r = remote.call("GET", "/v1/agent/whoami")
    assert r.status_code == 401 and r.json()["error"]["code"] == "NOT_AUTHENTICATED"
    assert os.path.exists(remote.sidecar_log)
