"""Run the real `keysafe serve` in a subprocess on a free loopback port, for black-box HTTP tests.

    with keysafe_server(cli_env(home), "--unlock") as server:
        r = server.client().get("/v1/agent/capabilities", headers=agent_headers(token))

`keysafe_server` waits until GET /v1/health answers, and stops the process (SIGTERM, then
SIGKILL) on exit; the server's output goes to a log file that failures quote. `standard_vault`
builds, once per test process, a vault home with one EVM wallet, a token agent `bot` and an
Ed25519 agent `signer` under `STANDARD_POLICY`; tests work on copies (`copy_home`), so each
server has its own database and ledger.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import rfc8785
from nacl.signing import SigningKey

from keysafe.errors import ErrorCode
from keysafe.testing import start_server, stop_process
from tests.conftest import PASSPHRASE, Cli

KEYSAFE = shutil.which("keysafe", path=str(Path(sys.executable).parent)) or "keysafe"

R1 = "0x1111111111111111111111111111111111111111"  # allowed; asks above 0.005 ETH
R2 = "0x2222222222222222222222222222222222222222"  # no rule: denied
R3 = "0x3333333333333333333333333333333333333333"  # tiny 24h budget (0.002 ETH)
R4 = "0x4444444444444444444444444444444444444444"  # always asks (for session grants)

GWEI = 10**9
MILLI_ETH = 10**15
EVM_TX_FEE = 21000 * GWEI  # the max fee of `evm_tx` (gas × gasPrice): charged with its value

STANDARD_POLICY = f"""\
version: 1
rules:
  - name: pay-r1
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R1}"]
    max_per_tx: {{ETH: "0.01"}}
    approve_above: {{ETH: "0.005"}}
    limits:
      - {{window: 24h, max: {{ETH: "1"}}}}
  - name: tiny-budget-r3
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R3}"]
    max_per_tx: {{ETH: "0.01"}}
    limits:
      - {{window: 24h, max: {{ETH: "0.002"}}}}
  - name: ask-r4
    ask: [evm.transfer]
    wallets: [main]
    chains: [ethereum]
    assets: [ETH]
    recipients: ["{R4}"]
    max_per_tx: {{ETH: "0.01"}}
"""


def evm_tx(value_wei: int, *, to: str = R1, nonce: int = 0) -> dict[str, Any]:
    """A complete legacy EVM transaction for chain 1: nothing for an RPC to fill in."""
    return {
        "to": to,
        "value": hex(value_wei),
        "chainId": 1,
        "nonce": nonce,
        "gas": 21000,
        "gasPrice": hex(GWEI),
    }


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a keysafe process bound to `home` (passphrase in the environment)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    return base | {"KEYSAFE_HOME": str(home), "KEYSAFE_PASSPHRASE": PASSPHRASE} | extra


def agent_headers(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class SignedAgent:
    """An agent registered with `--public-key`: signs request envelopes with Ed25519."""

    name: str
    seed: bytes

    def envelope(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A fresh version-2 envelope naming one request: method, path with query, JSON body."""
        return {
            "version": 2,
            "agent": self.name,
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nonce": secrets.token_hex(16),
            "method": method,
            "path": path,
            "body": body,
        }

    def sign(self, envelope: dict[str, Any]) -> dict[str, str]:
        """X-Keysafe-Envelope / X-Keysafe-Signature over the RFC 8785 form of `envelope`."""
        signature = SigningKey(self.seed).sign(rfc8785.dumps(envelope)).signature
        return {
            "x-keysafe-envelope": json.dumps(envelope),
            "x-keysafe-signature": base64.b64encode(signature).decode(),
        }

    def headers(self, method: str, path: str, body: Any = None) -> dict[str, str]:
        """Signed headers for `method path` (query included, as sent) with JSON `body`."""
        return self.sign(self.envelope(method, path, body))


@dataclass(frozen=True)
class Pristine:
    """A ready vault home: wallet `main`, token agents and signed agents, all under one policy."""

    home: Path
    address: str
    tokens: dict[str, str]
    signers: dict[str, SignedAgent] = field(default_factory=dict)


def add_agent(cli: Cli, name: str, policy: Path, *, public_key: str | None = None) -> str:
    """`keysafe agent add NAME --policy FILE [--public-key HEX] --json`; returns the token."""
    extra = ("--public-key", public_key) if public_key else ()
    out = cli.ok("agent", "add", name, "--policy", str(policy), *extra, "--json").stdout
    token = json.loads(out)["token"]
    assert isinstance(token, str) and token.startswith("ks_agent_")
    return token


def build_vault(root: Path, policy_text: str = STANDARD_POLICY) -> Pristine:
    """init, `wallet create main --chain evm`, agent `bot` (token), agent `signer` (Ed25519)."""
    home = root / "home"
    cli = Cli(home, cli_env(home))
    cli.ok("init", "--json")
    address = json.loads(cli.ok("wallet", "create", "main", "--chain", "evm", "--json").stdout)[
        "address"
    ]
    policy = root / "policy.yaml"
    policy.write_text(policy_text, encoding="utf-8")
    bot = add_agent(cli, "bot", policy)
    seed = secrets.token_bytes(32)
    public = SigningKey(seed).verify_key.encode().hex()
    signer = add_agent(cli, "signer", policy, public_key=public)
    return Pristine(
        home, address, {"bot": bot, "signer": signer}, {"signer": SignedAgent("signer", seed)}
    )


_STANDARD: dict[str, Pristine] = {}


def standard_vault(factory: pytest.TempPathFactory) -> Pristine:
    """The standard vault, built once per test process (each costs a few CLI runs)."""
    if "vault" not in _STANDARD:
        _STANDARD["vault"] = build_vault(factory.mktemp("standard-vault"))
    return _STANDARD["vault"]


def copy_home(pristine: Pristine, dest: Path) -> Path:
    """A private copy of a pristine home (0700, like keysafe makes it)."""
    home = dest / "home"
    shutil.copytree(pristine.home, home)
    os.chmod(home, 0o700)
    return home


@dataclass
class Server:
    """A running `keysafe serve`."""

    url: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), **kw)

    def cli(self) -> Cli:
        """The owner's CLI pointed at this server (KEYSAFE_URL)."""
        return Cli(Path(self.env["KEYSAFE_HOME"]), self.env | {"KEYSAFE_URL": self.url})

    def login(self) -> str:
        """Open an owner session with the passphrase (POST /v1/owner/login)."""
        r = httpx.post(f"{self.url}/v1/owner/login", json={"passphrase": PASSPHRASE}, timeout=60)
        assert r.status_code == 200, r.text
        session = r.json()["session"]
        assert isinstance(session, str)
        return session


@contextmanager
def keysafe_server(
    env: Mapping[str, str],
    *args: str,
    log_dir: Path | None = None,
    timeout: float = 30,
) -> Iterator[Server]:
    """Start `keysafe serve --port FREE *args` with `env`; yield once /v1/health answers."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="keysafe-serve-"))
    started = start_server(
        lambda port: [KEYSAFE, "serve", "--port", str(port), *args], env, log_dir, timeout=timeout
    )
    try:
        yield Server(started.url, started.proc, dict(env), started.log_path)
    finally:
        stop_process(started.proc)


def error_of(r: httpx.Response) -> dict[str, Any]:
    """The `error` object of an error answer, after checking its shape {code, message, next}
    and that its code is one of keysafe's ErrorCodes."""
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict)
    for key in ("code", "message", "next"):
        assert isinstance(err.get(key), str) and err[key], (key, body)
    assert err["code"] in set(ErrorCode), f"{err['code']} is not an ErrorCode: {body}"
    return err
