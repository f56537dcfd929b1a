"""Black-box tests of 2-of-3 FROST wallets (issue 7): the real `keysafe` CLI, `keysafe serve` and
`keysafe mcp` over stdio driven by the MCP SDK's client.

The base vault (built once per run, copied before any use): agents `bot` and `other` under a SOL
policy (allow ≤ 1 SOL, ask above 0.5), threshold wallets `team` and `team2` of agent `bot`, their
agent share files and recovery files. Agent + vault sign transactions through MCP (the agent's
share file in KEYSAFE_AGENT_SHARE_FILE); the HTTP wire is also driven by hand with the agent side
functions to tamper with every part; the owner signs messages with the recovery file; a refresh
after rotating the agent's token evicts the old agent share; the audit log stays intact and free
of share material.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from keysafe.mcp_server.threshold import agent_part, load_shares, message_of
from keysafe.mpc import share_file
from keysafe.mpc.frost import cosigner, signing
from keysafe.mpc.frost.groups import ED25519
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER, KeyPackage
from keysafe.mpc.share_file import SecretBytes
from keysafe.remote import AgentClient
from tests.conftest import Cli, Result, shared_once
from tests.e2e import share_audit
from tests.e2e.keygen_fixture import create_apart, reshare_apart
from tests.e2e.mcp_fixture import McpSession, ok, refused
from tests.e2e.server_fixture import (
    KEYSAFE,
    Pristine,
    Server,
    add_agent,
    agent_headers,
    cli_env,
    copy_home,
    error_of,
    keysafe_server,
)

RECOVERY_PASSPHRASE = "frost recovery passphrase for the e2e tests"


def share_key_of(token: str) -> str:
    """The agent's share key in these tests (KEYSAFE_AGENT_SHARE_KEY): one per token, so a
    rotated token comes with a new share key, as an eviction should."""
    return f"agent share key {token[-16:]} stays on the agent host"


SOL = 10**9
RECIPIENT = Keypair.from_seed(bytes([7] * 32)).pubkey()
SOL_POLICY = """\
version: 1
rules:
  - name: pay-sol
    allow: [solana.transfer]
    wallets: [team, team2]
    chains: [solana]
    assets: [SOL]
    max_per_tx: {SOL: "1"}
    approve_above: {SOL: "0.5"}
  - name: greet
    allow: [solana.sign_message]
    wallets: [team]
    chains: [solana]
    message_matches: "^hello"
"""
CREATE_KEYS = {"name", "chain", "address", "threshold", "recovery_file"}


# -- the base vault ---------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def share_loads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every keysafe process this module starts records the shares it loads (the environment
    its processes inherit: PYTHONPATH and the log); the last test reads the record."""
    log = tmp_path_factory.mktemp("frost-share-audit") / "share-loads.log"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in share_audit.audited(dict(os.environ), log).items():
            if os.environ.get(key) != value:
                mp.setenv(key, value)
        yield log


def _agent_host(root: Path, url: str, token: str) -> dict[str, str]:
    """The environment of `keysafe agent threshold join` on the agent's host (no vault here)."""
    env = cli_env(root / "agent-host") | {
        "KEYSAFE_URL": url,
        "KEYSAFE_AGENT_TOKEN": token,
        "KEYSAFE_AGENT_SHARE_KEY": share_key_of(token),
    }
    env.pop("KEYSAFE_PASSPHRASE")
    return env


def _build(root: Path) -> dict[str, Any]:
    """Two 2-of-3 wallets of agent `bot`, each made by three processes: a server, the owner's
    `wallet create` and the agent host's `agent threshold join`."""
    home = root / "home"
    cli = Cli(home, cli_env(home))
    cli.ok("init", "--json")
    policy = root / "policy.yaml"
    policy.write_text(SOL_POLICY, encoding="utf-8")
    tokens = {name: add_agent(cli, name, policy) for name in ("bot", "other")}
    made = {}
    with keysafe_server(cli_env(home), "--unlock", log_dir=root) as server:
        for name in ("team", "team2"):
            made[name] = create_apart(
                cli,
                name,
                "solana",
                "bot",
                recovery_file=root / f"{name}-recovery.json",
                share_file=root / f"{name}-agent.json",
                recovery_passphrase=RECOVERY_PASSPHRASE,
                agent_env=_agent_host(root, server.url, tokens["bot"]),
            ).owner
    return {"tokens": tokens, "made": made}


@dataclass(frozen=True)
class Base:
    root: Path
    tokens: dict[str, str]
    made: dict[str, dict[str, Any]]

    @property
    def home(self) -> Path:
        return self.root / "home"

    def address(self, wallet: str = "team") -> str:
        return str(self.made[wallet]["address"])

    def agent_file(self, wallet: str = "team") -> Path:
        return self.root / f"{wallet}-agent.json"

    def recovery_file(self, wallet: str = "team") -> Path:
        return self.root / f"{wallet}-recovery.json"

    def agent_key(self, wallet: str = "team") -> KeyPackage:
        return open_agent(self.agent_file(wallet), self.tokens["bot"])

    def copy(self, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        return copy_home(Pristine(self.home, self.address(), {}), dest)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root, info = shared_once(tmp_path_factory, "frost-base-vault", _build)
    return Base(root, info["tokens"], info["made"])


# -- helpers ----------------------------------------------------------------------------------


def open_agent(path: Path, token: str) -> KeyPackage:
    doc = share_file.read(path, "agent share file")
    secret = SecretBytes(bytearray(share_key_of(token).encode()))
    return share_file.open_agent_share(doc, secret).key


def open_recovery(path: Path, passphrase: str = RECOVERY_PASSPHRASE) -> KeyPackage:
    doc = share_file.read(path, "recovery file")
    return share_file.open_recovery_share(doc, SecretBytes(bytearray(passphrase.encode()))).key


def share_forms(key: KeyPackage) -> list[str]:
    s = key.signing_share
    le, be = s.to_bytes(32, "little"), s.to_bytes(32, "big")
    return [le.hex(), be.hex(), le.hex().upper(), be.hex().upper(), str(s)]


def sol_tx(address: str, lamports: int) -> str:
    payer = Pubkey.from_string(address)
    ix = transfer(TransferParams(from_pubkey=payer, to_pubkey=RECIPIENT, lamports=lamports))
    msg = MessageV0.try_compile(payer, [ix], [], Hash.default())
    return base64.b64encode(
        bytes(VersionedTransaction.populate(msg, [Signature.default()]))
    ).decode()


def assert_signed_by(signed_b64: str, address: str, unsigned_b64: str) -> None:
    """The signed transaction is the one sent, and its one signature verifies (solders and
    libsodium) under the wallet's address."""
    tx = VersionedTransaction.from_bytes(base64.b64decode(signed_b64))
    message = bytes(to_bytes_versioned(tx.message))
    assert message == message_of(unsigned_b64), "the signed message is not the one sent"
    assert tx.verify_with_results() == [True]
    assert tx.message.account_keys[0] == Pubkey.from_string(address)
    VerifyKey(bytes(Pubkey.from_string(address))).verify(message, bytes(tx.signatures[0]))


def signed_count(home: Path, action: str = "solana.sign_transaction") -> int:
    """Successful Solana signatures in the audit log (read-only)."""
    db = sqlite3.connect(f"file:{home / 'vault.db'}?mode=ro", uri=True)
    try:
        (n,) = db.execute(
            "SELECT count(*) FROM audit WHERE action = ? AND outcome = 'success'", (action,)
        ).fetchone()
    finally:
        db.close()
    return int(n)


def message_count(home: Path) -> int:
    return signed_count(home, "solana.sign_message")


def audit_rows(home: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{home / 'vault.db'}?mode=ro", uri=True)
    try:
        return list(db.execute("SELECT * FROM audit ORDER BY seq"))
    finally:
        db.close()


def commit(server: Server, token: str, wallet: str = "team") -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/agent/threshold/commit",
        json={"wallet": wallet},
        headers=agent_headers(token),
        timeout=30,
    )


def part_for(pre: dict[str, Any], key: KeyPackage, transaction: str) -> dict[str, str]:
    """The agent's part for a given vault commitment (what agent_part builds after its commit)."""
    vault_commitment = signing.SigningCommitment(
        USER, bytes.fromhex(pre["hiding"]), bytes.fromhex(pre["binding"])
    )
    nonces, mine = signing.commit(key)
    share = signing.sign(key, nonces, message_of(transaction), (mine, vault_commitment))
    return {
        "session_id": pre["session_id"],
        "hiding": mine.hiding.hex(),
        "binding": mine.binding.hex(),
        "share": share.hex(),
    }


def agent_side_part(
    server: Server, token: str, key: KeyPackage, wallet: str, tx: str
) -> dict[str, str]:
    """keysafe's own agent client: commit over HTTP, then the agent's share."""

    async def go() -> dict[str, str]:
        async with AgentClient(token, url=server.url) as client:
            return await agent_part(client, key, wallet, message_of(tx))

    return asyncio.run(go())


def sign_http(
    server: Server, token: str, tx: str, part: dict[str, str] | None, wallet: str = "team"
) -> httpx.Response:
    body: dict[str, Any] = {"wallet": wallet, "transaction": tx}
    if part is not None:
        body["threshold"] = part
    return httpx.post(
        f"{server.url}/v1/agent/sign-transaction",
        json=body,
        headers=agent_headers(token),
        timeout=60,
    )


def assert_refused_nothing_signed(
    r: httpx.Response, home: Path, before: int, *, culprit: int | None = None
) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "MALFORMED_REQUEST", err
    if culprit is not None:
        assert err.get("culprit") == culprit, err
    assert "signed_transaction" not in r.text
    assert signed_count(home) == before, "a refused request was signed"
    return err


def stdio_session(url: str, token: str, root: Path, errlog: Any, shares: str | None) -> McpSession:
    env = {
        "KEYSAFE_URL": url,
        "KEYSAFE_AGENT_TOKEN": token,
        "KEYSAFE_AGENT_SHARE_KEY": share_key_of(token),
        "KEYSAFE_HOME": str(root / "no-vault-here"),
    }
    if shares is not None:
        env["KEYSAFE_AGENT_SHARE_FILE"] = shares
    # the share-load audit of this module (below), which the SDK's clean environment drops
    env |= {k: os.environ[k] for k in ("PYTHONPATH", share_audit.LOG_VAR) if k in os.environ}
    params = StdioServerParameters(command=KEYSAFE, args=["mcp"], env=env)
    return McpSession(lambda: Client(stdio_client(params, errlog=errlog)))


def user_error(r: Result, code: str, exit_code: int = 1) -> str:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.exit_code == exit_code, f"exit {r.exit_code}: {r.stderr}{r.stdout}"
    line = r.stderr.strip()
    assert line.startswith(f"Error [{code}]:"), line
    assert "Next:" in line, line
    return line


# -- creation ---------------------------------------------------------------------------------


def test_frost_create_prints_the_wallet_and_writes_two_sealed_0600_files(base: Base) -> None:
    made = base.made["team"]
    assert set(made) == CREATE_KEYS, made
    assert (made["name"], made["chain"], made["threshold"]) == ("team", "solana", "2-of-3")
    assert made["recovery_file"] == str(base.recovery_file())
    agent = base.agent_key()
    recovery = open_recovery(base.recovery_file())
    assert (agent.identifier, recovery.identifier) == (AGENT, RECOVERY)
    assert agent.public == recovery.public
    # The address is the group key in base58, and each share matches its verifying share.
    assert made["address"] == str(Pubkey.from_bytes(agent.public.group_public_key))
    for key in (agent, recovery):
        assert ED25519.base_mul(key.signing_share) == key.public.verifying_shares[key.identifier]
    for path in (base.agent_file(), base.recovery_file()):
        assert path.is_file()
        assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
        text = path.read_text()
        assert json.loads(text)["wallet"] == "team"
        for key in (agent, recovery):
            leaks = [f for f in share_forms(key) if f in text]
            assert not leaks, f"{path.name} holds share {key.identifier} in clear"
    # Two wallets, two unrelated keys.
    other = base.agent_key("team2")
    assert other.public.group_public_key != agent.public.group_public_key
    assert base.address("team2") != base.address()


def test_frost_create_refusals_are_clear_and_create_nothing(base: Base, tmp_path: Path) -> None:
    """Without a running server there is no vault party to run: refused before any passphrase
    is asked; an existing recovery file is never overwritten."""
    home = base.copy(tmp_path)
    cli = Cli(home, cli_env(home, KEYSAFE_RECOVERY_PASSPHRASE=RECOVERY_PASSPHRASE))
    recovery = tmp_path / "new-recovery.json"

    def create(path: Path) -> Result:
        return cli(
            "wallet",
            "create",
            "fresh",
            "--chain",
            "solana",
            "--threshold",
            "2-of-3",
            "--agent",
            "bot",
            "--recovery-file",
            str(path),
        )

    line = user_error(create(recovery), "MALFORMED_REQUEST")
    assert "keysafe serve" in line and "never both in one process" in line
    kept = tmp_path / "existing-recovery.json"
    kept.write_text("keep me")
    line = user_error(create(kept), "MALFORMED_REQUEST")
    assert str(kept) in line and "already exists" in line
    assert kept.read_text() == "keep me"
    listed = json.loads(cli.ok("wallet", "list", "--json").stdout)
    assert {w["name"]: (w["source"], w["address"]) for w in listed} == {
        "team": ("threshold", base.address()),
        "team2": ("threshold", base.address("team2")),
    }
    assert {p.name for p in tmp_path.iterdir()} == {"home", "existing-recovery.json"}


# -- agent + vault over MCP -------------------------------------------------------------------


@dataclass
class World:
    base: Base
    home: Path
    server: Server
    _owner: list[str]

    def owner(self, path: str) -> httpx.Response:
        if not self._owner:
            self._owner.append(self.server.login())
        headers = {"authorization": f"Bearer {self._owner[0]}"}
        return httpx.post(f"{self.server.url}{path}", headers=headers, timeout=60)


@pytest.fixture(scope="module")
def world(base: Base, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("frost-world")
    home = base.copy(root)
    with keysafe_server(cli_env(home), "--unlock", "--rate-limit", "1000", log_dir=root) as server:
        yield World(base, home, server, [])


@pytest.fixture(scope="module")
def session(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpSession]:
    """`keysafe mcp` as agent `bot`, with both its share files (KEYSAFE_AGENT_SHARE_FILE)."""
    root = tmp_path_factory.mktemp("frost-mcp")
    shares = os.pathsep.join(str(world.base.agent_file(w)) for w in ("team", "team2"))
    with (
        open(root / "mcp-stderr.log", "w") as errlog,
        stdio_session(world.server.url, world.base.tokens["bot"], root, errlog, shares) as s,
    ):
        yield s
    assert not (root / "no-vault-here").exists()


def test_frost_allowed_transfer_over_mcp_is_signed_by_agent_and_vault(
    world: World, session: McpSession
) -> None:
    before = signed_count(world.home)
    for n, wallet in enumerate(("team", "team2")):
        address = world.base.address(wallet)
        tx = sol_tx(address, SOL // 10 + n)
        got = ok(session.call("sign_transaction", {"wallet": wallet, "transaction": tx}))
        assert (got["status"], got["wallet"], got["address"]) == ("signed", wallet, address)
        assert_signed_by(got["signed_transaction"], address, tx)
        sig = VersionedTransaction.from_bytes(base64.b64decode(got["signed_transaction"]))
        assert got["tx_hash"] == str(sig.signatures[0])
    assert signed_count(world.home) == before + 2


def test_frost_transfer_over_max_per_tx_is_denied_and_nothing_signed(
    world: World, session: McpSession
) -> None:
    before = signed_count(world.home)
    tx = sol_tx(world.base.address(), 2 * SOL)
    result = session.call("sign_transaction", {"wallet": "team", "transaction": tx})
    err = refused(result, "POLICY_DENIED")
    assert (err["reason_code"], err["rule"]) == ("OVER_PER_TX_LIMIT", "pay-sol")
    assert "signed_transaction" not in result.model_dump_json()
    assert signed_count(world.home) == before


def test_frost_transfer_above_approve_above_is_signed_once_the_owner_approves(
    world: World, session: McpSession
) -> None:
    before = signed_count(world.home)
    tx = sol_tx(world.base.address(), 7 * SOL // 10)
    pending = ok(session.call("sign_transaction", {"wallet": "team", "transaction": tx}))
    assert pending["status"] == "pending_approval", pending
    assert "signed_transaction" not in pending
    approval_id = pending["approval_id"]
    assert signed_count(world.home) == before
    r = world.owner(f"/v1/owner/approvals/{approval_id}/approve")
    assert r.status_code == 200, r.text
    view = ok(session.call("approval_status", {"approval_id": approval_id, "wait_seconds": 10}))
    assert view["status"] == "approved", view
    result = view["result"]
    assert (result["status"], result["wallet"]) == ("signed", "team")
    assert_signed_by(result["signed_transaction"], world.base.address(), tx)
    assert signed_count(world.home) == before + 1


def test_attack_threshold_wallet_signs_messages_over_mcp_under_policy(
    world: World, session: McpSession
) -> None:
    """Issue 12, hole 10: agents could not sign messages with a 2-of-3 wallet at all. Now the
    agent's share and the vault's sign the message's bytes, under the policy like any request."""
    before = message_count(world.home)
    got = ok(session.call("sign_message", {"wallet": "team", "message": "hello vault"}))
    assert got["status"] == "signed", got
    address = world.base.address()
    assert Signature.from_string(got["signature"]).verify(
        Pubkey.from_string(address), b"hello vault"
    ), "the threshold signature does not verify for the wallet's address"
    raw = base64.b64encode(b"hello raw bytes").decode()
    got = ok(session.call("sign_message", {"wallet": "team", "message": raw, "encoding": "base64"}))
    assert Signature.from_string(got["signature"]).verify(
        Pubkey.from_string(address), b"hello raw bytes"
    )
    denied = session.call("sign_message", {"wallet": "team", "message": "bye"})
    refused(denied, "POLICY_DENIED")
    assert "signature" not in (denied.structured_content or {})
    assert message_count(world.home) == before + 2


def test_frost_without_the_agent_share_file_mcp_refuses_naming_the_variable(
    world: World, tmp_path: Path
) -> None:
    before = signed_count(world.home)
    tx = sol_tx(world.base.address(), SOL // 10)
    with (
        open(tmp_path / "mcp-stderr.log", "w") as errlog,
        stdio_session(world.server.url, world.base.tokens["bot"], tmp_path, errlog, None) as s,
    ):
        result = s.call("sign_transaction", {"wallet": "team", "transaction": tx})
    err = refused(result, "MALFORMED_REQUEST")
    assert "KEYSAFE_AGENT_SHARE_FILE" in result.content[0].text  # type: ignore[union-attr]
    assert "2-of-3" in err["message"]
    assert signed_count(world.home) == before


def test_frost_another_agent_cannot_use_the_wallet(world: World) -> None:
    server, home = world.server, world.home
    bot, other = world.base.tokens["bot"], world.base.tokens["other"]
    before = signed_count(home)
    r = commit(server, other)
    assert r.status_code == 404, r.text
    assert error_of(r)["code"] == "NOT_FOUND"
    # Even with a complete, valid part built by `bot` for its own commitment.
    tx = sol_tx(world.base.address(), SOL // 10)
    part = agent_side_part(server, bot, world.base.agent_key(), "team", tx)
    err = assert_refused_nothing_signed(sign_http(server, other, tx, part), home, before)
    assert "not this agent's" in err["message"]
    # And without any part it is refused as well.
    r = sign_http(server, other, tx, None)
    assert_refused_nothing_signed(r, home, before)
    assert "2-of-3" in error_of(r)["message"]


# -- the HTTP wire, tampered with -------------------------------------------------------------


def test_frost_tampered_agent_share_is_refused_naming_the_agent(world: World) -> None:
    server, home, bot = world.server, world.home, world.base.tokens["bot"]
    before = signed_count(home)
    tx = sol_tx(world.base.address(), SOL // 10)
    part = agent_side_part(server, bot, world.base.agent_key(), "team", tx)
    z = ED25519.deserialize_scalar(bytes.fromhex(part["share"]))
    bad = part | {"share": ED25519.serialize_scalar(z + 1).hex()}
    err = assert_refused_nothing_signed(sign_http(server, bot, tx, bad), home, before, culprit=1)
    assert "agent's part" in err["message"]
    # The vault's commitment was consumed by the refused attempt: the honest part is refused too.
    assert_refused_nothing_signed(sign_http(server, bot, tx, part), home, before)
    # A share for another message (the agent signed something else) is named the same way.
    other_tx = sol_tx(world.base.address(), SOL // 10 + 1)
    part = agent_side_part(server, bot, world.base.agent_key(), "team", other_tx)
    r = sign_http(server, bot, tx, part)
    assert_refused_nothing_signed(r, home, before, culprit=1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hiding", ED25519.base_mul(424242).hex()),
        ("binding", ED25519.base_mul(424242).hex()),
        ("hiding", "01" + "00" * 31),  # the identity: never a valid commitment
        ("binding", "ff" * 32),  # not a point
    ],
)
def test_frost_tampered_agent_commitment_is_refused(world: World, field: str, value: str) -> None:
    server, home, bot = world.server, world.home, world.base.tokens["bot"]
    before = signed_count(home)
    tx = sol_tx(world.base.address(), SOL // 10)
    part = agent_side_part(server, bot, world.base.agent_key(), "team", tx)
    err = assert_refused_nothing_signed(
        sign_http(server, bot, tx, part | {field: value}), home, before, culprit=1
    )
    assert "agent's part" in err["message"]


def test_frost_a_session_id_is_used_once(world: World) -> None:
    server, home, bot = world.server, world.home, world.base.tokens["bot"]
    key = world.base.agent_key()
    r = commit(server, bot)
    assert r.status_code == 200, r.text
    pre = r.json()
    before = signed_count(home)
    tx = sol_tx(world.base.address(), SOL // 10)
    first = sign_http(server, bot, tx, part_for(pre, key, tx))
    assert first.status_code == 200, first.text
    assert_signed_by(first.json()["signed_transaction"], world.base.address(), tx)
    assert signed_count(home) == before + 1
    # A fresh agent part for the same vault commitment, for another transaction: refused.
    tx2 = sol_tx(world.base.address(), SOL // 10 + 7)
    err = assert_refused_nothing_signed(
        sign_http(server, bot, tx2, part_for(pre, key, tx2)), home, before + 1
    )
    assert "unknown, used, expired" in err["message"]


def test_frost_an_unknown_session_id_is_refused(world: World) -> None:
    server, home, bot = world.server, world.home, world.base.tokens["bot"]
    before = signed_count(home)
    tx = sol_tx(world.base.address(), SOL // 10)
    part = agent_side_part(server, bot, world.base.agent_key(), "team", tx)
    err = assert_refused_nothing_signed(
        sign_http(server, bot, tx, part | {"session_id": os.urandom(32).hex()}), home, before
    )
    assert "unknown" in err["message"]


def test_frost_a_session_for_one_wallet_does_not_sign_for_another(world: World) -> None:
    server, home, bot = world.server, world.home, world.base.tokens["bot"]
    r = commit(server, bot, "team2")
    assert r.status_code == 200, r.text
    pre = r.json()
    assert pre["wallet"] == "team2"
    before = signed_count(home)
    tx = sol_tx(world.base.address("team"), SOL // 10)
    part = part_for(pre, world.base.agent_key("team"), tx)
    err = assert_refused_nothing_signed(sign_http(server, bot, tx, part), home, before)
    assert "unknown, used, expired" in err["message"]


def test_frost_vault_commitments_die_with_the_server(base: Base, tmp_path: Path) -> None:
    home = base.copy(tmp_path)
    bot, key = base.tokens["bot"], base.agent_key()
    tx = sol_tx(base.address(), SOL // 10)
    with keysafe_server(cli_env(home), "--unlock", log_dir=tmp_path) as first:
        r = commit(first, bot)
        assert r.status_code == 200, r.text
        pre = r.json()
    with keysafe_server(cli_env(home), "--unlock", log_dir=tmp_path) as second:
        before = signed_count(home)
        err = assert_refused_nothing_signed(
            sign_http(second, bot, tx, part_for(pre, key, tx)), home, before
        )
        assert "unknown, used, expired" in err["message"]
        # The restarted vault itself signs with a fresh commitment.
        r = sign_http(second, bot, tx, agent_side_part(second, bot, key, "team", tx))
        assert r.status_code == 200, r.text
        assert_signed_by(r.json()["signed_transaction"], base.address(), tx)


# -- the owner: vault + recovery --------------------------------------------------------------


@pytest.fixture(scope="module")
def owner_server(base: Base, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A running, unlocked server on a copy of the base vault: the vault's share signs there,
    the recovery share in the owner's CLI."""
    root = tmp_path_factory.mktemp("frost-owner")
    home = base.copy(root)
    with keysafe_server(cli_env(home), "--unlock", "--rate-limit", "1000", log_dir=root) as s:
        yield s


@pytest.fixture
def owner(owner_server: Server) -> Cli:
    home = Path(owner_server.env["KEYSAFE_HOME"])
    return Cli(home, cli_env(home, KEYSAFE_RECOVERY_PASSPHRASE=RECOVERY_PASSPHRASE))


def test_frost_owner_signs_a_message_with_the_recovery_file(base: Base, owner: Cli) -> None:
    out = json.loads(
        owner.ok(
            "wallet",
            "sign-message",
            "team",
            "I own this wallet",
            "--recovery-file",
            str(base.recovery_file()),
            "--json",
        ).stdout
    )
    assert out["address"] == base.address() and out["signers"] == "user+recovery"
    signature = bytes(Signature.from_string(out["signature"]))
    VerifyKey(bytes(Pubkey.from_string(base.address()))).verify(b"I own this wallet", signature)
    with pytest.raises(BadSignatureError):
        VerifyKey(bytes(Pubkey.from_string(base.address()))).verify(b"I own that", signature)


def test_attack_owner_signing_never_puts_both_shares_in_one_process(
    base: Base, tmp_path: Path
) -> None:
    # Without a server the CLI could only sign by opening the vault's share beside the
    # recovery share in its own process; it refuses, before asking for the recovery passphrase,
    # and says what to run.
    home = base.copy(tmp_path)
    cli = Cli(home, cli_env(home, KEYSAFE_RECOVERY_PASSPHRASE=RECOVERY_PASSPHRASE))
    r = cli("wallet", "sign-message", "team", "hello", "--recovery-file", str(base.recovery_file()))
    line = user_error(r, "MALFORMED_REQUEST")
    assert "keysafe serve" in line and "never both in one process" in line
    assert "signature" not in r.stdout and "Recovery passphrase" not in r.stderr
    assert not [row for row in audit_rows(home) if "wallet.sign_message" in row]


def test_frost_owner_signature_runs_as_two_parties_over_the_owner_api(
    base: Base, owner_server: Server
) -> None:
    # The same two calls the CLI makes, by hand: the server answers a commitment and never a
    # share; a share from the wrong party or a reused session signs nothing.
    session = owner_server.login()
    ops = f"{owner_server.url}/v1/owner/ops"
    headers = {"authorization": f"Bearer {session}"}

    def commit() -> dict[str, Any]:
        r = httpx.post(
            ops,
            json={"kind": "wallet.threshold-commit", "wallet": "team"},
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        assert set(answer) == {
            "session_id",
            "wallet",
            "identifier",
            "protocol",
            "hiding",
            "binding",
            "expires_in",
            "public",
        }
        return answer

    def cosign(answer: dict[str, Any], key: KeyPackage, message: str) -> httpx.Response:
        fields = cosigner.part(key, answer, message.encode())
        body = {"kind": "wallet.threshold-cosign", "wallet": "team", "message": message, **fields}
        return httpx.post(ops, json=body, headers=headers, timeout=30)

    recovery = share_file.open_recovery_share(
        share_file.read(base.recovery_file(), "recovery file"),
        SecretBytes(bytearray(RECOVERY_PASSPHRASE.encode())),
    ).key
    answer = commit()
    r = cosign(answer, recovery, "two processes")
    assert r.status_code == 200, r.text
    VerifyKey(bytes(Pubkey.from_string(base.address()))).verify(
        b"two processes", bytes(Signature.from_string(r.json()["signature"]))
    )
    again = cosign(answer, recovery, "two processes")  # the session was used
    assert again.status_code == 400 and "unknown, used" in again.text, again.text
    # The agent's share answering the owner's session is a wrong share for party 3: named.
    wrong = cosign(commit(), base.agent_key(), "not the recovery share")
    assert wrong.status_code == 400, wrong.text
    assert error_of(wrong).get("culprit") == RECOVERY, wrong.text
    # Both refusals are in the audit log as failures naming the party; no share is.
    home = Path(owner_server.env["KEYSAFE_HOME"])
    failed = [
        json.loads(row[6])
        for row in audit_rows(home)
        if row[3] == "wallet.sign_message" and row[5] == "failure"
    ]
    assert [f.get("culprit") for f in failed][-2:] == [None, RECOVERY], failed
    assert all(set(f) <= {"name", "signer", "code", "culprit"} for f in failed), failed


def test_frost_the_owner_alone_cannot_sign(base: Base, owner: Cli) -> None:
    line = user_error(owner("wallet", "sign-message", "team", "alone"), "MALFORMED_REQUEST")
    assert "2-of-3" in line and "--recovery-file" in line
    # Nor with another wallet's recovery file.
    r = owner(
        "wallet",
        "sign-message",
        "team",
        "alone",
        "--recovery-file",
        str(base.recovery_file("team2")),
    )
    line = user_error(r, "MALFORMED_REQUEST")
    assert "not for wallet 'team'" in line
    assert "signature" not in r.stdout


def test_frost_a_wrong_recovery_passphrase_is_refused(base: Base, owner: Cli) -> None:
    r = owner(
        "wallet",
        "sign-message",
        "team",
        "hello",
        "--recovery-file",
        str(base.recovery_file()),
        env={"KEYSAFE_RECOVERY_PASSPHRASE": "not the recovery passphrase"},
    )
    user_error(r, "WRONG_PASSPHRASE")
    assert "signature" not in r.stdout


@pytest.mark.parametrize("edit", ["ciphertext", "verifying_share"])
def test_frost_a_tampered_recovery_file_is_refused(
    base: Base, owner: Cli, tmp_path: Path, edit: str
) -> None:
    doc = json.loads(base.recovery_file().read_text())
    if edit == "ciphertext":
        raw = bytearray(base64.b64decode(doc["ciphertext"]))
        raw[0] ^= 1
        doc["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    else:
        doc["public"]["verifying_shares"]["3"] = ED25519.base_mul(99).hex()
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    r = owner("wallet", "sign-message", "team", "hello", "--recovery-file", str(tampered))
    assert r.exit_code == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(("Error [WRONG_PASSPHRASE]", "Error [INTEGRITY_ERROR]")), r.stderr
    assert "signature" not in r.stdout


# -- refresh: evicting the agent's old share --------------------------------------------------


@dataclass
class Refreshed:
    base: Base
    root: Path
    home: Path
    server: Server
    old_token: str
    new_token: str
    out: dict[str, Any]
    recovery: Path  # rewritten in place by the refresh
    old_recovery: Path  # a copy kept from before
    new_agent_file: Path
    cli: Cli


def _build_refreshed(base: Base) -> Callable[[Path], dict[str, Any]]:
    """rotate-token, then `wallet refresh team`, on a copy of the base vault (built once)."""

    def build(root: Path) -> dict[str, Any]:
        home = base.copy(root)
        recovery = root / "team-recovery.json"
        shutil.copy2(base.recovery_file(), recovery)
        shutil.copy2(base.recovery_file(), root / "team-recovery-old.json")
        cli = Cli(home, cli_env(home, KEYSAFE_RECOVERY_PASSPHRASE=RECOVERY_PASSPHRASE))
        new_token = json.loads(cli.ok("agent", "rotate-token", "bot", "--json").stdout)["token"]
        with keysafe_server(cli_env(home), "--unlock", log_dir=root) as server:
            # the agent's new host joins with the new token and a new share key
            out = reshare_apart(
                cli,
                "team",
                "vault,recovery",
                recovery_file=recovery,
                share_file=root / "team-agent-new.json",
                recovery_passphrase=RECOVERY_PASSPHRASE,
                agent_env=_agent_host(root, server.url, new_token),
            )
        out.owner["agent_share_file"] = out.agent["share_file"]
        return {"new_token": new_token, "out": out.owner}

    return build


@pytest.fixture(scope="module")
def refreshed(base: Base, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Refreshed]:
    """The refreshed vault, copied, with a server on it that has signed one transaction with
    the new agent share (so the audit log holds every kind of row)."""
    shared, info = shared_once(tmp_path_factory, "frost-refreshed-vault", _build_refreshed(base))
    new_token = info["new_token"]
    assert new_token != base.tokens["bot"]
    root = tmp_path_factory.mktemp("frost-refresh")
    home = copy_home(Pristine(shared / "home", base.address(), {}), root)
    cli = Cli(home, cli_env(home, KEYSAFE_RECOVERY_PASSPHRASE=RECOVERY_PASSPHRASE))
    new_agent_file = shared / "team-agent-new.json"
    with keysafe_server(cli_env(home), "--unlock", "--rate-limit", "1000", log_dir=root) as server:
        tx = sol_tx(base.address(), SOL // 10)
        key = open_agent(new_agent_file, new_token)
        r = sign_http(server, new_token, tx, agent_side_part(server, new_token, key, "team", tx))
        assert r.status_code == 200, r.text
        yield Refreshed(
            base,
            root,
            home,
            server,
            base.tokens["bot"],
            new_token,
            info["out"],
            shared / "team-recovery.json",
            shared / "team-recovery-old.json",
            new_agent_file,
            cli,
        )


def test_frost_refresh_keeps_the_address_and_the_new_share_signs_over_mcp(
    refreshed: Refreshed,
) -> None:
    out, address = refreshed.out, refreshed.base.address()
    assert set(out) == {"name", "with", "address", "recovery_file", "agent_share_file"}
    assert (out["address"], out["agent_share_file"]) == (address, str(refreshed.new_agent_file))
    assert refreshed.new_agent_file.stat().st_mode & 0o777 == 0o600
    assert refreshed.recovery.read_bytes() != refreshed.old_recovery.read_bytes()
    new = open_agent(refreshed.new_agent_file, refreshed.new_token)
    old = refreshed.base.agent_key()
    assert new.public.group_public_key == old.public.group_public_key
    assert new.signing_share != old.signing_share
    tx = sol_tx(address, SOL // 10 + 3)
    root = refreshed.root / "mcp-new"
    root.mkdir()
    with (
        open(root / "mcp-stderr.log", "w") as errlog,
        stdio_session(
            refreshed.server.url, refreshed.new_token, root, errlog, str(refreshed.new_agent_file)
        ) as s,
    ):
        got = ok(s.call("sign_transaction", {"wallet": "team", "transaction": tx}))
    assert got["status"] == "signed"
    assert_signed_by(got["signed_transaction"], address, tx)


def test_frost_refresh_old_share_file_does_not_open_with_the_new_token(
    refreshed: Refreshed,
) -> None:
    from keysafe.errors import WrongPassphraseError

    with pytest.raises(WrongPassphraseError):
        load_shares(
            refreshed.new_token,
            str(refreshed.base.agent_file()),
            share_key=share_key_of(refreshed.new_token),
        )
    # The old token is dead at the vault too.
    r = commit(refreshed.server, refreshed.old_token)
    assert r.status_code == 401, r.text


def test_frost_refresh_old_agent_key_package_no_longer_signs_with_the_vault(
    refreshed: Refreshed,
) -> None:
    """The real property: even opened with the old token, the old share and the vault's new
    share make no signature. The agent's part is built by keysafe's own agent client."""
    server, home = refreshed.server, refreshed.home
    old_key = open_agent(refreshed.base.agent_file(), refreshed.old_token)
    before = signed_count(home)
    for n in range(2):
        tx = sol_tx(refreshed.base.address(), SOL // 10 + 10 + n)
        part = agent_side_part(server, refreshed.new_token, old_key, "team", tx)
        r = sign_http(server, refreshed.new_token, tx, part)
        assert_refused_nothing_signed(r, home, before, culprit=1)


def test_frost_refresh_old_recovery_copy_no_longer_signs(refreshed: Refreshed) -> None:
    cli = refreshed.cli
    r = cli("wallet", "sign-message", "team", "old", "--recovery-file", str(refreshed.old_recovery))
    assert r.exit_code == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("Error ["), r.stderr
    assert "signature" not in r.stdout
    # The rewritten recovery file does sign, under the unchanged address.
    out = json.loads(
        cli.ok(
            "wallet",
            "sign-message",
            "team",
            "new",
            "--recovery-file",
            str(refreshed.recovery),
            "--json",
        ).stdout
    )
    VerifyKey(bytes(Pubkey.from_string(refreshed.base.address()))).verify(
        b"new", bytes(Signature.from_string(out["signature"]))
    )


def test_frost_refresh_old_recovery_copy_is_named_stale(refreshed: Refreshed) -> None:
    r = refreshed.cli(
        "wallet", "sign-message", "team", "old", "--recovery-file", str(refreshed.old_recovery)
    )
    line = user_error(r, "MALFORMED_REQUEST")
    assert "from before" in line and "refreshed" in line


# -- audit ------------------------------------------------------------------------------------


def test_frost_audit_log_verifies_and_holds_no_share_material(refreshed: Refreshed) -> None:
    report = json.loads(refreshed.cli.ok("audit", "verify", "--json").stdout)
    assert report["ok"] is True, report
    text_rows = [json.dumps(r, default=str) for r in audit_rows(refreshed.home)]
    for action in ("wallet.create", "wallet.reshare", "solana.sign_transaction"):
        assert any(f'"{action}"' in t for t in text_rows), (action, text_rows)
    assert sum('"wallet.create"' in t for t in text_rows) == 2  # team and team2
    keys = [
        refreshed.base.agent_key(),
        open_agent(refreshed.new_agent_file, refreshed.new_token),
        open_recovery(refreshed.old_recovery),
        open_recovery(refreshed.recovery),
    ]
    db_bytes = b"".join(
        p.read_bytes() for p in refreshed.home.iterdir() if p.is_file() and p.name != ".lock"
    )
    for key in keys:
        for form in share_forms(key):
            assert not any(form in t for t in text_rows), f"share {key.identifier} in the audit"
            assert form.encode() not in db_bytes, f"share {key.identifier} in the vault home"
        raw = key.signing_share.to_bytes(32, "little")
        assert raw not in db_bytes and raw[::-1] not in db_bytes


def test_frost_dry_run_asks_the_policy_without_the_agents_part(
    world: World, session: McpSession
) -> None:
    """check_policy signs nothing, so a 2-of-3 wallet answers it like any other wallet."""
    before = signed_count(world.home)
    for lamports, decision in ((SOL // 10, "allow"), (7 * SOL // 10, "ask"), (2 * SOL, "deny")):
        tx = sol_tx(world.base.address(), lamports)
        request = {"wallet": "team", "transaction": tx}
        got = ok(session.call("check_policy", {"tool": "sign_transaction", "arguments": request}))
        assert got["decision"] == decision, got
    assert signed_count(world.home) == before


# -- recover-sign: agent + recovery with no vault, as two processes -----------------------------


def _recover_cli(base: Base, tmp_path: Path, token: str | None = None) -> Cli:
    """The CLI on a machine where the vault is gone: an empty home, the two files, their
    secrets in the environment."""
    home = tmp_path / "no-vault"
    home.mkdir(parents=True)
    return Cli(
        home,
        cli_env(
            home,
            KEYSAFE_RECOVERY_PASSPHRASE=RECOVERY_PASSPHRASE,
            KEYSAFE_AGENT_SHARE_KEY=share_key_of(token or base.tokens["bot"]),
        ),
    )


def test_frost_recover_sign_without_any_vault_signs_messages_and_transactions(
    base: Base, tmp_path: Path
) -> None:
    cli = _recover_cli(base, tmp_path)
    files = (
        "--agent-share-file",
        str(base.agent_file()),
        "--recovery-file",
        str(base.recovery_file()),
    )
    out = json.loads(
        cli.ok("wallet", "recover-sign", *files, "--message", "moving out", "--json").stdout
    )
    assert out["address"] == base.address() and out["signers"] == "agent+recovery"
    assert out["wallet"] == "team"
    VerifyKey(bytes(Pubkey.from_string(base.address()))).verify(
        b"moving out", bytes(Signature.from_string(out["signature"]))
    )
    tx = sol_tx(base.address(), SOL // 3)
    r = cli.ok("wallet", "recover-sign", *files, "--transaction", tx, "--json")
    assert_signed_by(json.loads(r.stdout)["signed_transaction"], base.address(), tx)
    # The token crossed a pipe to the child; neither it nor the passphrase shows anywhere.
    for canary in (base.tokens["bot"], RECOVERY_PASSPHRASE):
        assert canary not in r.stdout + r.stderr


def test_frost_recover_sign_refuses_a_wrong_token_or_files_of_two_wallets(
    base: Base, tmp_path: Path
) -> None:
    wrong = _recover_cli(base, tmp_path, token=base.tokens["other"])
    r = wrong(
        "wallet",
        "recover-sign",
        "--agent-share-file",
        str(base.agent_file()),
        "--recovery-file",
        str(base.recovery_file()),
        "--message",
        "x",
    )
    user_error(r, "WRONG_PASSPHRASE")
    assert "signature" not in r.stdout
    assert base.tokens["other"] not in r.stdout + r.stderr
    mixed = _recover_cli(base, tmp_path / "mixed")
    r = mixed(
        "wallet",
        "recover-sign",
        "--agent-share-file",
        str(base.agent_file()),
        "--recovery-file",
        str(base.recovery_file("team2")),
        "--message",
        "x",
    )
    assert "not the agent's and the recovery share of one wallet" in user_error(
        r, "MALFORMED_REQUEST"
    )
    assert "signature" not in r.stdout


def test_attack_recover_sign_never_opens_the_agent_share_beside_the_recovery_share(
    base: Base, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this (the coordinating) process, opening an agent share fails; the signature still
    # comes out, so the agent's share was opened and used only in the child process.
    from keysafe.service import threshold_offline

    def refuse(*_: Any) -> KeyPackage:
        raise AssertionError("the agent share was opened in the process holding the recovery share")

    monkeypatch.setattr(share_file, "open_agent_share", refuse)
    out = threshold_offline.sign_without_vault(
        base.agent_file(),
        SecretBytes(bytearray(share_key_of(base.tokens["bot"]).encode())),
        share_file.read(base.recovery_file(), "recovery file"),
        SecretBytes(bytearray(RECOVERY_PASSPHRASE.encode())),
        message=b"separate processes",
    )
    VerifyKey(bytes(Pubkey.from_string(base.address()))).verify(
        b"separate processes", bytes(Signature.from_string(out.signature or ""))
    )


def test_attack_no_process_ever_loads_two_shares_of_a_wallet(share_loads: Path) -> None:
    """Issue 16, acceptance 1, for Solana: every share load of every keysafe process this
    module started was recorded; none holds two shares of a wallet, except `wallet refresh`
    (the vault's and the recovery party's parts still run in the owner's process)."""
    share_audit.assert_one_share_per_process(share_loads)
