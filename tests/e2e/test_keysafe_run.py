"""`keysafe run --credential NAME:ENV -- cmd…` end to end, against a real `keysafe serve --unlock`.

Acceptance (agent surfaces, the `keysafe run` bullets): a release always waits for the owner,
even under an `allow` rule; once approved the value is put in the child's environment (never
keysafe's own output, never the agent token), the child's exit code is keysafe's; a denial exits
4 without running the child; no rule covering `credential.release` exits 4 at once with nothing
parked; the release is audited without the value and delivered once.

The vault is built once per module in-process (fast KDF) and served from a copy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keysafe.crypto.secret import SecretBytes
from keysafe.service import agents, credentials, policies
from keysafe.service.models import Attachment
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from tests.conftest import PASSPHRASE
from tests.e2e.server_fixture import KEYSAFE, Server, cli_env, keysafe_server

SECRET = "ghp_RUNCANARY" + os.urandom(16).hex()
OTHER_SECRET = "sk-other-RUNCANARY" + os.urandom(16).hex()
EXIT_CODE = 7

POLICIES = {
    # allow, yet every release still waits for the owner
    "runner": "version: 1\nrules:\n  - name: release-gh\n    allow: [credential.release]\n"
    "    credentials: [gh]\n",
    # no rule covers credential.release at all
    "norule": "version: 1\nrules:\n  - name: http\n    allow: [http.request]\n"
    "    credentials: [gh]\n",
    # like runner; paused and resumed by one test
    "pauser": "version: 1\nrules:\n  - name: release-gh\n    allow: [credential.release]\n"
    "    credentials: [gh]\n",
    # deny wins over allow
    "denier": "version: 1\nrules:\n  - name: release-gh\n    allow: [credential.release]\n"
    "    credentials: [gh]\n  - name: never\n    deny: [credential.release]\n"
    "    credentials: [gh]\n",
}

# The child: records what it was given (length and hash of $GH_TOKEN, never the value itself)
# and exits with a code keysafe must pass on.
CHILD = f"""\
import hashlib, json, os, sys
v = os.environ.get("GH_TOKEN")
with open(sys.argv[1], "w") as f:
    json.dump({{
        "present": v is not None,
        "len": len(v or ""),
        "sha256": hashlib.sha256((v or "").encode()).hexdigest(),
        "keysafe_vars": sorted(k for k in os.environ if k.startswith("KEYSAFE_")),
    }}, f)
sys.exit({EXIT_CODE})
"""


@dataclass(frozen=True)
class Built:
    home: Path
    tokens: dict[str, str]


@dataclass
class Stack:
    server: Server
    tokens: dict[str, str]
    agent_home: Path
    session: str = ""

    def owner(self) -> dict[str, str]:
        self.session = self.session or self.server.login()
        return {"authorization": f"Bearer {self.session}"}

    def env(self, agent: str | None) -> dict[str, str]:
        """The agent side: KEYSAFE_URL and the agent's token, no passphrase, no vault files."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
        env |= {"KEYSAFE_URL": self.server.url, "KEYSAFE_HOME": str(self.agent_home)}
        if agent is not None:
            env["KEYSAFE_AGENT_TOKEN"] = self.tokens[agent]
        return env

    def agent(self, name: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[name]}"}

    def approvals(self) -> list[dict[str, Any]]:
        r = httpx.get(
            f"{self.server.url}/v1/owner/approvals",
            params={"all": "true"},
            headers=self.owner(),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        rows: list[dict[str, Any]] = r.json()
        return rows

    def decide(self, approval_id: str, verdict: str) -> dict[str, Any]:
        r = httpx.post(
            f"{self.server.url}/v1/owner/approvals/{approval_id}/{verdict}",
            headers=self.owner(),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def audit(self) -> list[dict[str, Any]]:
        r = httpx.get(
            f"{self.server.url}/v1/owner/audit",
            params={"limit": 1000},
            headers=self.owner(),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        rows: list[dict[str, Any]] = r.json()
        return rows


def _build(root: Path) -> Built:
    home = Home(root / "home")
    vault, phrase = init_vault(home, SecretBytes(bytearray(PASSPHRASE.encode())), kdf=CHEAP_KDF)
    phrase.wipe()
    with vault:
        for name, value in (("gh", SECRET), ("other", OTHER_SECRET)):
            credentials.add_credential(
                vault,
                name,
                SecretBytes(bytearray(value.encode())),
                hosts=["api.github.com"],
                attach=Attachment.bearer(),
            )
        tokens: dict[str, str] = {}
        for agent, policy in POLICIES.items():
            _, token = agents.add_agent(vault, agent)
            assert token is not None
            tokens[agent] = bytes(token.reveal()).decode()
            policies.set_policy(vault, agent, policy)
    os.chmod(home.path, 0o700)
    for child in home.path.iterdir():
        os.chmod(child, 0o600)
    return Built(home.path, tokens)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = _build(tmp_path_factory.mktemp("run-vault"))
    root = tmp_path_factory.mktemp("run-server")
    home = root / "home"
    shutil.copytree(built.home, home)
    agent_home = root / "agent-side"
    agent_home.mkdir(mode=0o700)
    with keysafe_server(cli_env(home), "--unlock", log_dir=root) as server:
        yield Stack(server, built.tokens, agent_home)


def _forms(value: str) -> list[str]:
    return [value, base64.b64encode(value.encode()).decode(), value.encode().hex()]


def _assert_no_value(text: str, where: str) -> None:
    for secret in (SECRET, OTHER_SECRET):
        for form in _forms(secret):
            assert form not in text, f"a credential value appears in {where}"


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str
    approval_id: str | None
    elapsed: float


def _run(
    stack: Stack,
    agent: str | None,
    args: list[str],
    *,
    decide: str | None = None,
    before_decision: Any = None,
    timeout: float = 60,
) -> Finished:
    """Run `keysafe run ARGS`; if it asks the owner, `decide` (approve/deny) once it waits."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [KEYSAFE, "run", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=stack.env(agent),
        text=True,
    )
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        approval_id = None
        early: list[str] = []
        if decide is not None:
            assert proc.stderr is not None
            for line in proc.stderr:  # the waiting line names the approval
                early.append(line)
                m = re.search(r"apr_[0-9a-f]+", line)
                if m:
                    approval_id = m.group(0)
                    break
            assert approval_id, f"keysafe run did not wait for an approval: {''.join(early)}"
            if before_decision is not None:
                before_decision(approval_id)
            stack.decide(approval_id, decide)
        out, err = proc.communicate(timeout=timeout)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Finished(
        proc.returncode, out, "".join(early) + err, approval_id, time.monotonic() - start
    )


def _child(marker: Path) -> list[str]:
    return ["--", sys.executable, "-c", CHILD, str(marker)]


# -- the approve path ----------------------------------------------------------------------------


def test_approved_release_reaches_the_child_only_and_its_exit_code_is_keysafes(
    stack: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "child.json"
    parked: list[dict[str, Any]] = []

    def while_pending(approval_id: str) -> None:
        # An `allow` rule, yet the release waits for the owner, and the child has not run.
        [row] = [a for a in stack.approvals() if a["approval_id"] == approval_id]
        parked.append(row)
        assert not marker.exists()

    done = _run(
        stack,
        "runner",
        ["--credential", "gh:GH_TOKEN", *_child(marker)],
        decide="approve",
        before_decision=while_pending,
    )
    assert done.code == EXIT_CODE, done.stderr
    [row] = parked
    assert row["status"] == "pending" and row["kind"] == "release_credential"
    assert row["agent"] == "runner" and row["request"]["credential"] == "gh"
    seen = json.loads(marker.read_text())
    assert seen["present"] is True
    assert seen["len"] == len(SECRET)
    assert seen["sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()
    # The child gets the value, not the agent's own credential.
    assert "KEYSAFE_AGENT_TOKEN" not in seen["keysafe_vars"]
    # keysafe's own output and log never show the value.
    assert done.approval_id is not None and done.approval_id in done.stderr
    _assert_no_value(done.stdout + done.stderr, "keysafe run's output")
    log = stack.agent_home / "keysafe.log"
    if log.exists():
        _assert_no_value(log.read_text(errors="replace"), "the agent side's log")

    # Audited as a release, by this agent, without the value.
    audit = stack.audit()
    releases = [
        a
        for a in audit
        if a["action"] == "credential.release" and a["details"].get("agent") == "runner"
    ]
    assert releases and releases[-1]["outcome"] == "success"
    assert releases[-1]["target"] == "credential:gh"
    assert releases[-1]["actor"] == "agent:runner"
    _assert_no_value(json.dumps(audit), "the audit log")

    # Delivered once: asking for the approval again gives its status, never the value again.
    again = httpx.get(
        f"{stack.server.url}/v1/agent/approvals/{done.approval_id}",
        headers={"authorization": f"Bearer {stack.tokens['runner']}"},
        timeout=30,
    )
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "approved"
    assert "result" not in again.json()
    _assert_no_value(again.text, "the second collection")
    # …and the owner's views never held it either.
    _assert_no_value(json.dumps(stack.approvals()), "the owner's approvals list")
    _assert_no_value(stack.server.log(), "the server's output")


def test_a_zero_exit_code_is_passed_on_too(stack: Stack, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = (
        f"import os, pathlib; pathlib.Path({str(marker)!r}).write_text(str(len(os.environ['TOK'])))"
    )
    done = _run(
        stack,
        "runner",
        ["--credential", "gh:TOK", "--", sys.executable, "-c", code],
        decide="approve",
    )
    assert done.code == 0, done.stderr
    assert marker.read_text() == str(len(SECRET))


# -- the release over the agent API ---------------------------------------------------------------


def _ask(stack: Stack, agent: str, credential: str = "gh") -> str:
    r = httpx.post(
        f"{stack.server.url}/v1/agent/credential-release",
        json={"credential": credential, "purpose": "api test"},
        headers=stack.agent(agent),
        timeout=30,
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "pending_approval" and body["approval_id"].startswith("apr_")
    _assert_no_value(r.text, "the release request's answer")
    approval_id: str = body["approval_id"]
    return approval_id


def _collect(stack: Stack, agent: str, approval_id: str) -> httpx.Response:
    return httpx.get(
        f"{stack.server.url}/v1/agent/approvals/{approval_id}",
        headers=stack.agent(agent),
        timeout=30,
    )


def test_an_approved_release_is_delivered_once_and_only_to_the_agent_that_asked(
    stack: Stack,
) -> None:
    approval_id = _ask(stack, "runner")
    decided = stack.decide(approval_id, "approve")
    assert decided["status"] == "approved"
    _assert_no_value(json.dumps(decided), "the owner's approval answer")
    stranger = _collect(stack, "norule", approval_id)
    assert stranger.status_code == 404, stranger.text
    _assert_no_value(stranger.text, "another agent's look at the approval")
    first = _collect(stack, "runner", approval_id)
    assert first.status_code == 200, first.text
    assert first.json()["result"] == {"status": "released", "credential": "gh", "value": SECRET}
    second = _collect(stack, "runner", approval_id)
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "approved" and "result" not in second.json()
    _assert_no_value(second.text, "the second collection")


def test_approving_for_a_while_never_skips_the_next_release_question(stack: Stack) -> None:
    first = _ask(stack, "runner")
    # A grant could never let a release pass, so "approve for a while" is refused outright
    # (the page does not offer it) and the approval still waits for a decision.
    r = httpx.post(
        f"{stack.server.url}/v1/owner/approvals/{first}/approve",
        json={"for_seconds": 3600},
        headers=stack.owner(),
        timeout=30,
    )
    assert r.status_code == 400, r.text
    assert "cannot be approved for a while" in r.json()["error"]["message"]
    [waiting] = [a for a in stack.approvals() if a["approval_id"] == first]
    assert waiting["status"] == "pending" and waiting["grantable"] is False
    stack.decide(first, "approve")
    assert _collect(stack, "runner", first).json()["result"]["value"] == SECRET
    second = _ask(stack, "runner")  # parked again, despite the grant
    assert second != first
    [row] = [a for a in stack.approvals() if a["approval_id"] == second]
    assert row["status"] == "pending"
    stack.decide(second, "deny")


def test_a_release_is_judged_again_when_collected(stack: Stack) -> None:
    approval_id = _ask(stack, "pauser")
    stack.decide(approval_id, "approve")
    paused = httpx.post(
        f"{stack.server.url}/v1/owner/agents/pauser/pause", headers=stack.owner(), timeout=30
    )
    assert paused.status_code == 200, paused.text
    try:
        r = _collect(stack, "pauser", approval_id)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "POLICY_DENIED"
        _assert_no_value(r.text, "a paused agent's collection")
    finally:
        httpx.post(
            f"{stack.server.url}/v1/owner/agents/pauser/resume", headers=stack.owner(), timeout=30
        )


# -- refusals ------------------------------------------------------------------------------------


def test_denied_release_exits_4_and_the_child_never_runs(stack: Stack, tmp_path: Path) -> None:
    marker = tmp_path / "child.json"
    done = _run(stack, "runner", ["--credential", "gh:GH_TOKEN", *_child(marker)], decide="deny")
    assert done.code == 4, done.stderr
    assert not marker.exists()
    assert "POLICY_DENIED" in done.stderr and "denied" in done.stderr
    [row] = [a for a in stack.approvals() if a["approval_id"] == done.approval_id]
    assert row["status"] == "denied"
    _assert_no_value(done.stdout + done.stderr, "keysafe run's output")


@pytest.mark.parametrize(
    ("agent", "spec"),
    [
        ("norule", "gh:GH_TOKEN"),  # no rule covers credential.release
        ("denier", "gh:GH_TOKEN"),  # an allow rule, but a deny rule wins
        ("runner", "other:GH_TOKEN"),  # the rule names another credential
    ],
)
def test_without_a_rule_covering_the_release_it_exits_4_at_once_and_parks_nothing(
    stack: Stack, tmp_path: Path, agent: str, spec: str
) -> None:
    marker = tmp_path / "child.json"
    before = {a["approval_id"] for a in stack.approvals()}
    done = _run(stack, agent, ["--credential", spec, *_child(marker)], timeout=30)
    assert done.code == 4, done.stderr
    assert "POLICY_DENIED" in done.stderr
    assert "waiting for the owner" not in done.stderr and "apr_" not in done.stderr
    assert done.elapsed < 20  # answered at once, not after a wait for the owner
    assert not marker.exists()
    parked = [a for a in stack.approvals() if a["approval_id"] not in before]
    assert parked == []
    _assert_no_value(done.stdout + done.stderr, "keysafe run's output")


def test_when_the_owner_does_not_decide_in_time_it_exits_4_and_runs_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "child.json"
    done = _run(stack, "runner", ["--wait", "1", "--credential", "gh:GH_TOKEN", *_child(marker)])
    assert done.code == 4, done.stderr
    assert "pending" in done.stderr
    assert not marker.exists()
    ids = re.findall(r"apr_[0-9a-f]+", done.stderr)
    assert ids
    stack.decide(ids[0], "deny")  # tidy: nothing is left waiting for the owner


def test_without_an_agent_token_it_exits_1_and_runs_nothing(stack: Stack, tmp_path: Path) -> None:
    marker = tmp_path / "child.json"
    done = _run(stack, None, ["--credential", "gh:GH_TOKEN", *_child(marker)], timeout=30)
    assert done.code == 1, done.stderr
    assert "NOT_AUTHENTICATED" in done.stderr and "KEYSAFE_AGENT_TOKEN" in done.stderr
    assert not marker.exists()


# -- usage errors (no vault needed) --------------------------------------------------------------


def _plain(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    env |= {"KEYSAFE_URL": "http://127.0.0.1:9", "KEYSAFE_AGENT_TOKEN": "ks_agent_unused"}
    return subprocess.run(
        [KEYSAFE, "run", *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize("spec", ["nocolon", "gh:", "gh:1TOKEN"])
def test_a_bad_credential_spec_exits_1_naming_the_form(spec: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    r = _plain(["--credential", spec, "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
    assert r.returncode == 1, r.stderr
    assert "CREDENTIAL:ENV_VAR" in r.stderr
    assert not marker.exists()


def test_no_command_exits_1() -> None:
    r = _plain(["--credential", "gh:GH_TOKEN"])
    assert r.returncode == 1, r.stderr
    assert "No command to run" in r.stderr
