"""2-of-3 EVM wallets (DKLs23) end to end, as three OS processes: the wallet is made by a keygen
of the owner's `keysafe wallet create` (recovery party), `keysafe serve` (the vault's) and the
agent host's `keysafe agent threshold join`; `keysafe serve` holds the vault's share, `keysafe mcp`
over stdio (driven by the MCP SDK's client) holds the agent's share and runs the agent's rounds; the
transaction lands on a real local EVM node (ganache) with the wallet as sender.

Also over HTTP by hand, with keysafe's own agent-side functions: a transaction swapped after
the exchange is refused naming the agent; a bent final message is refused naming the agent and
bans the pair, so the vault signs nothing more with that agent share.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from keysafe.errors import MalformedRequestError, WrongPassphraseError
from keysafe.mpc import share_file
from keysafe.mpc.dkls import cosigner
from keysafe.mpc.dkls.wire import N
from keysafe.mpc.frost.groups import SECP256K1
from keysafe.mpc.frost.keys import AGENT, RECOVERY, lagrange
from keysafe.mpc.share_file import SecretBytes, Share
from keysafe.remote import AgentClient
from tests.conftest import Cli
from tests.e2e import share_audit
from tests.e2e.keygen_fixture import create_apart, reshare_apart
from tests.e2e.mcp_fixture import McpSession, ok, refused
from tests.e2e.server_fixture import (
    KEYSAFE,
    Server,
    add_agent,
    agent_headers,
    cli_env,
    error_of,
    keysafe_server,
)
from tests.evm_node import Node
from tests.evm_node import evm_node_fixture as evm_node_fixture  # the session fixture `evm_node`

RECOVERY_PASSPHRASE = "dkls recovery passphrase for the e2e tests"
SHARE_KEY = "dkls agent share key, on the agent host only"
BOB = "0x1111111111111111111111111111111111111111"
ETH = 10**18
POLICY = """\
version: 1
rules:
  - name: pay-bob
    allow: [evm.transfer]
    wallets: [team]
    chains: [local]
    assets: [ETH]
    recipients: ["0x1111111111111111111111111111111111111111"]
    max_per_tx: {ETH: "1"}
  - name: greet
    allow: [evm.sign_message]
    wallets: [team]
    chains: [ethereum]
    message_matches: "^hello"
  - name: mail
    allow: [evm.sign_typed_data]
    wallets: [team]
    chains: [ethereum]
"""
MAIL = {
    "types": {
        "EIP712Domain": [{"name": "name", "type": "string"}],
        "Mail": [{"name": "body", "type": "string"}],
    },
    "primaryType": "Mail",
    "domain": {"name": "keysafe e2e"},
    "message": {"body": "hello"},
}


def audited(env: dict[str, str], root: Path) -> dict[str, str]:
    """`env` for a keysafe process whose share loads are recorded (tests/e2e/share_audit)."""
    return share_audit.audited(env, root / "share-loads.log")


@dataclass
class World:
    root: Path
    node: Node
    server: Server
    token: str
    address: str
    made: dict[str, Any]

    @property
    def agent_file(self) -> Path:
        return self.root / "team-agent.json"

    def share(self) -> Share:
        doc = share_file.read(self.agent_file, "agent share file")
        return share_file.open_agent_share(doc, SecretBytes(bytearray(SHARE_KEY.encode())))

    def tx(self, value: int, **over: Any) -> dict[str, Any]:
        return {
            "type": 2,
            "chainId": 31337,
            "nonce": self.node.nonce(self.address),
            "to": BOB,
            "value": value,
            "gas": 21000,
            "maxFeePerGas": 3 * 10**9,
            "maxPriorityFeePerGas": 10**9,
        } | over


@pytest.fixture(scope="module")
def world(evm_node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("dkls")
    home = root / "home"
    cli = Cli(home, audited(cli_env(home), root))
    cli.ok("init", "--json")
    cli.ok("chain", "add", "local", "--chain-id", "31337", "--rpc", evm_node.url)
    policy = root / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    token = add_agent(cli, "bot", policy)
    server_env = audited(cli_env(home), root)
    with keysafe_server(server_env, "--unlock", "--rate-limit", "1000", log_dir=root) as server:
        # the agent's host: its own home (no vault), the vault's URL, its token and share key
        agent_env = audited(cli_env(root / "agent-host"), root) | {
            "KEYSAFE_URL": server.url,
            "KEYSAFE_AGENT_TOKEN": token,
            "KEYSAFE_AGENT_SHARE_KEY": SHARE_KEY,
        }
        made = create_apart(
            cli,
            "team",
            "evm",
            "bot",
            recovery_file=root / "team-recovery.json",
            share_file=root / "team-agent.json",
            recovery_passphrase=RECOVERY_PASSPHRASE,
            agent_env=agent_env,
        ).owner
        evm_node.send_from_node({"to": made["address"], "value": hex(5 * ETH)})
        yield World(root, evm_node, server, token, made["address"], made)


@pytest.fixture(scope="module")
def session(world: World) -> Iterator[McpSession]:
    """`keysafe mcp` as agent `bot`, its share file in KEYSAFE_AGENT_SHARE_FILE."""
    env = {
        "KEYSAFE_URL": world.server.url,
        "KEYSAFE_AGENT_TOKEN": world.token,
        "KEYSAFE_HOME": str(world.root / "no-vault-here"),
        "KEYSAFE_AGENT_SHARE_FILE": str(world.agent_file),
        "KEYSAFE_AGENT_SHARE_KEY": SHARE_KEY,
    }
    params = StdioServerParameters(command=KEYSAFE, args=["mcp"], env=audited(env, world.root))
    with (
        open(world.root / "mcp-stderr.log", "w") as errlog,
        McpSession(lambda: Client(stdio_client(params, errlog=errlog))) as s,
    ):
        yield s


def test_dkls_create_prints_an_evm_wallet_and_writes_two_sealed_files(world: World) -> None:
    assert world.made["chain"] == "evm" and world.made["threshold"] == "2-of-3"
    assert world.address.startswith("0x") and len(world.address) == 42
    for name in ("team-agent.json", "team-recovery.json"):
        path = world.root / name
        assert path.stat().st_mode & 0o777 == 0o600
        doc = json.loads(path.read_text())
        assert doc["public"]["suite"] == "secp256k1"
    share = world.share()
    assert sorted(share.pairs) == [2, 3]  # the agent's pair state with the vault and recovery


def test_attack_the_agent_token_the_vault_sees_does_not_open_the_agent_share(
    world: World,
) -> None:
    """A compromised vault sees the agent's token on every request and could read the share
    file; the share key, which the vault never receives, is what opens it."""
    doc = share_file.read(world.agent_file, "agent share file")
    with pytest.raises(WrongPassphraseError):
        share_file.open_agent_share(doc, SecretBytes(bytearray(world.token.encode())))
    logs = b"".join(p.read_bytes() for p in world.root.glob("serve-*.log"))
    db = (world.root / "home" / "vault.db").read_bytes()
    assert SHARE_KEY.encode() not in logs + db


def test_dkls_eip1559_transfer_over_mcp_lands_on_the_node_from_the_wallet(
    world: World, session: McpSession
) -> None:
    before = world.node.balance(BOB)
    tx = world.tx(ETH // 10)
    got = ok(
        session.call("send_transaction", {"wallet": "team", "transaction": tx, "chain": "local"})
    )
    assert got["status"] == "sent", got
    assert Account.recover_transaction(got["signed_transaction"]) == world.address
    receipt = world.node.wait(got["tx_hash"])
    assert int(receipt["status"], 16) == 1
    assert receipt["from"].lower() == world.address.lower()
    assert world.node.balance(BOB) == before + ETH // 10


def test_dkls_legacy_transfer_over_mcp_lands_on_the_node_from_the_wallet(
    world: World, session: McpSession
) -> None:
    """A pre-EIP-1559 (type 0, EIP-155) transaction from the 2-of-3 wallet: same rounds, the
    legacy signing hash; eth-account recovers the wallet and the node accepts it."""
    before = world.node.balance(BOB)
    tx = {
        "type": 0,
        "chainId": 31337,
        "nonce": world.node.nonce(world.address),
        "to": BOB,
        "value": ETH // 20,
        "gas": 21000,
        "gasPrice": 3 * 10**9,
    }
    got = ok(
        session.call("send_transaction", {"wallet": "team", "transaction": tx, "chain": "local"})
    )
    assert Account.recover_transaction(got["signed_transaction"]) == world.address
    receipt = world.node.wait(got["tx_hash"])
    assert int(receipt["status"], 16) == 1 and receipt["from"].lower() == world.address.lower()
    assert world.node.balance(BOB) == before + ETH // 20


def test_dkls_over_limit_transfer_is_denied_and_nothing_is_sent(
    world: World, session: McpSession
) -> None:
    nonce = world.node.nonce(world.address)
    refused(
        session.call(
            "send_transaction",
            {"wallet": "team", "transaction": world.tx(2 * ETH), "chain": "local"},
        ),
        "POLICY_DENIED",
    )
    assert world.node.nonce(world.address) == nonce


def test_dkls_incomplete_transaction_is_refused_before_any_round(
    world: World, session: McpSession
) -> None:
    tx = {"chainId": 31337, "to": BOB, "value": 1}
    err = refused(
        session.call("sign_transaction", {"wallet": "team", "transaction": tx}), "MALFORMED_REQUEST"
    )
    assert "complete" in err["message"], err


def test_dkls_message_signature_over_mcp_recovers_to_the_wallet(
    world: World, session: McpSession
) -> None:
    got = ok(session.call("sign_message", {"wallet": "team", "message": "hello from two shares"}))
    signable = encode_defunct(text="hello from two shares")
    assert Account.recover_message(signable, signature=got["signature"]) == world.address
    refused(session.call("sign_message", {"wallet": "team", "message": "bye"}), "POLICY_DENIED")


def test_the_agent_hosts_own_policy_copy_refuses_what_the_vault_would_allow(
    world: World, tmp_path: Path
) -> None:
    """Defence in depth: `keysafe mcp` with KEYSAFE_AGENT_POLICY_FILE, a copy of the agent's
    policy without the `greet` rule (as if the vault's copy had been loosened behind the
    owner's back): the message the vault's policy allows is refused on the agent's host before
    its share is used, and logged there; a transfer both copies allow still lands."""
    copy = tmp_path / "bot-own-copy.yaml"
    copy.write_text(POLICY.split("  - name: greet")[0], encoding="utf-8")
    env = {
        "KEYSAFE_URL": world.server.url,
        "KEYSAFE_AGENT_TOKEN": world.token,
        "KEYSAFE_HOME": str(tmp_path / "no-vault-here"),
        "KEYSAFE_AGENT_SHARE_FILE": str(world.agent_file),
        "KEYSAFE_AGENT_SHARE_KEY": SHARE_KEY,
        "KEYSAFE_AGENT_POLICY_FILE": str(copy),
    }
    params = StdioServerParameters(command=KEYSAFE, args=["mcp"], env=audited(env, world.root))
    log = tmp_path / "mcp-stderr.log"
    with (
        open(log, "w") as errlog,
        McpSession(lambda: Client(stdio_client(params, errlog=errlog))) as own,
    ):
        error = refused(
            own.call("sign_message", {"wallet": "team", "message": "hello from the copy"}),
            "POLICY_DENIED",
        )
        assert "own copy of its policy" in error["message"] and error.get("side") == "agent"
        tx = world.tx(ETH // 50)
        got = ok(
            own.call("send_transaction", {"wallet": "team", "transaction": tx, "chain": "local"})
        )
        assert world.node.wait(got["tx_hash"])["from"].lower() == world.address.lower()
    assert "agent-side policy" in log.read_text(encoding="utf-8")


def test_dkls_eip712_typed_data_over_mcp_recovers_to_the_wallet(session: McpSession) -> None:
    got = ok(session.call("sign_typed_data", {"wallet": "team", "typed_data": MAIL}))
    signed = encode_typed_data(full_message=MAIL)
    assert got["address"] == Account.recover_message(signed, signature=got["signature"])


def test_dkls_owner_signs_a_message_with_the_recovery_file_as_two_processes(
    world: World,
) -> None:
    """Vault + recovery: the owner's CLI holds the recovery share, the running server the
    vault's; the message is hashed on both sides and the signature recovers to the wallet."""
    home = world.root / "home"
    cli = Cli(
        home,
        audited(
            cli_env(
                home, KEYSAFE_RECOVERY_PASSPHRASE=RECOVERY_PASSPHRASE, KEYSAFE_URL=world.server.url
            ),
            world.root,
        ),
    )
    out = json.loads(
        cli.ok(
            "wallet",
            "sign-message",
            "team",
            "owner says hi",
            "--recovery-file",
            str(world.root / "team-recovery.json"),
            "--json",
        ).stdout
    )
    assert out["address"] == world.address and out["signers"] == "user+recovery"
    signable = encode_defunct(text="owner says hi")
    assert Account.recover_message(signable, signature=out["signature"]) == world.address


def test_dkls_recover_sign_without_any_vault_signs_a_message_and_a_transfer_that_lands(
    world: World, tmp_path: Path
) -> None:
    """Agent + recovery when the vault is gone: the CLI holds the recovery share, a child
    process the agent's (opened with its share key), no vault anywhere."""
    home = tmp_path / "no-vault"
    home.mkdir()
    cli = Cli(
        home,
        audited(
            cli_env(
                home,
                KEYSAFE_RECOVERY_PASSPHRASE=RECOVERY_PASSPHRASE,
                KEYSAFE_AGENT_SHARE_KEY=SHARE_KEY,
            ),
            world.root,
        ),
    )
    files = (
        "--agent-share-file",
        str(world.agent_file),
        "--recovery-file",
        str(world.root / "team-recovery.json"),
    )
    out = json.loads(
        cli.ok("wallet", "recover-sign", *files, "--message", "moving out", "--json").stdout
    )
    assert out["signers"] == "agent+recovery" and out["address"] == world.address
    signable = encode_defunct(text="moving out")
    assert Account.recover_message(signable, signature=out["signature"]) == world.address
    before = world.node.balance(BOB)
    tx = json.dumps(world.tx(ETH // 50))
    out = json.loads(cli.ok("wallet", "recover-sign", *files, "--transaction", tx, "--json").stdout)
    sent = world.node.rpc("eth_sendRawTransaction", out["signed_transaction"])
    receipt = world.node.wait(sent)
    assert receipt["from"].lower() == world.address.lower()
    assert world.node.balance(BOB) == before + ETH // 50
    outputs = "".join(cli.outputs)  # neither secret in anything the CLI printed
    assert SHARE_KEY not in outputs and RECOVERY_PASSPHRASE not in outputs


# -- by hand over HTTP: a cheating agent -------------------------------------------------------


def _part(world: World, tx: dict[str, Any]) -> dict[str, str]:
    """keysafe's agent side, step by step: commit, exchange, finish."""
    share = world.share()

    async def go() -> dict[str, str]:
        async with AgentClient(world.token, url=world.server.url) as client:
            opened = await client.threshold_commit("team")
            state, first = cosigner.start(
                share.key, share.pairs[2], opened, cosigner.transaction_digest(tx)
            )
            answer = await client.threshold_exchange(
                {"wallet": "team", **first, "transaction": tx, "chain": "local"}
            )
            return cosigner.finish(state, answer)

    return asyncio.run(go())


def _sign(world: World, tx: dict[str, Any], part: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{world.server.url}/v1/agent/sign-transaction",
        json={"wallet": "team", "transaction": tx, "chain": "local", "threshold": part},
        headers=agent_headers(world.token),
        timeout=60,
    )


def test_attack_transaction_swapped_after_the_exchange_is_refused_naming_the_agent(
    world: World,
) -> None:
    """The vault hashes the gated transaction itself; it must be the one the session was
    opened for, whatever the agent's rounds say. The session is then spent."""
    tx = world.tx(ETH // 100)
    part = _part(world, tx)
    nonce = world.node.nonce(world.address)
    r = _sign(world, world.tx(ETH // 50), part)  # allowed by the policy, but another amount
    assert r.status_code == 400, r.text
    assert error_of(r).get("culprit") == 1, r.text
    assert "not the one the threshold session was opened for" in r.text
    r = _sign(world, tx, part)  # the session died with the refusal
    assert r.status_code == 400 and "used" in r.text, r.text
    assert world.node.nonce(world.address) == nonce


def test_attack_bent_final_round_is_refused_and_bans_the_agent_share(world: World) -> None:
    """Runs last in this module: it bans the pair, as a failed final check must."""
    tx = world.tx(ETH // 100)
    part = _part(world, tx)
    raw = bytearray(base64.b64decode(part["round3"]))
    raw[-1] ^= 1
    r = _sign(world, tx, part | {"round3": base64.b64encode(bytes(raw)).decode()})
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err.get("culprit") == 1 and err.get("banned") is True, err
    assert "signed_transaction" not in r.text
    # the vault will not open another session with that share
    r = httpx.post(
        f"{world.server.url}/v1/agent/threshold/commit",
        json={"wallet": "team"},
        headers=agent_headers(world.token),
        timeout=30,
    )
    assert r.status_code == 403, r.text
    assert "reshare" in error_of(r)["next"], r.text
    assert os.path.exists(world.agent_file)


def test_dkls_refresh_after_a_ban_gives_a_new_agent_share_that_signs_again(
    world: World, tmp_path: Path
) -> None:
    """Vault + recovery reshare as three processes (the owner's `wallet refresh`, the running
    server, the agent host's `agent threshold join` writing a new share file): same address,
    new shares, new pair state for every pair; the ban is gone with the old pair state, the old
    agent share is dead, the new one signs a transfer that lands."""
    home = world.root / "home"
    new_file = world.root / "team-agent-2.json"
    cli = Cli(home, audited(cli_env(home), world.root))
    agent_env = audited(cli_env(world.root / "agent-host"), world.root) | {
        "KEYSAFE_URL": world.server.url,
        "KEYSAFE_AGENT_TOKEN": world.token,
        "KEYSAFE_AGENT_SHARE_KEY": SHARE_KEY,
    }
    out = reshare_apart(
        cli,
        "team",
        "vault,recovery",
        recovery_file=world.root / "team-recovery.json",
        share_file=new_file,
        recovery_passphrase=RECOVERY_PASSPHRASE,
        agent_env=agent_env,
    ).owner
    assert out["address"] == world.address
    env = {
        "KEYSAFE_URL": world.server.url,
        "KEYSAFE_AGENT_TOKEN": world.token,
        "KEYSAFE_HOME": str(tmp_path / "no-vault-here"),
        "KEYSAFE_AGENT_SHARE_FILE": str(new_file),
        "KEYSAFE_AGENT_SHARE_KEY": SHARE_KEY,
    }
    params = StdioServerParameters(command=KEYSAFE, args=["mcp"], env=audited(env, world.root))
    with (
        open(tmp_path / "mcp-stderr.log", "w") as errlog,
        McpSession(lambda: Client(stdio_client(params, errlog=errlog))) as fresh,
    ):
        tx = world.tx(ETH // 20)
        got = ok(
            fresh.call("send_transaction", {"wallet": "team", "transaction": tx, "chain": "local"})
        )
        receipt = world.node.wait(got["tx_hash"])
        assert receipt["from"].lower() == world.address.lower()
    # the old agent share is refused as stale before the vault's OT state meets it: no ban,
    # the new share keeps signing
    r = httpx.post(
        f"{world.server.url}/v1/agent/threshold/commit",
        json={"wallet": "team"},
        headers=agent_headers(world.token),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    with pytest.raises(MalformedRequestError, match="not the wallet's current one"):
        _part(world, world.tx(ETH // 100))
    with (
        open(tmp_path / "mcp-stderr-2.log", "w") as errlog,
        McpSession(lambda: Client(stdio_client(params, errlog=errlog))) as fresh,
    ):
        got = ok(fresh.call("sign_message", {"wallet": "team", "message": "hello again"}))
        signable = encode_defunct(text="hello again")
        assert Account.recover_message(signable, signature=got["signature"]) == world.address


def test_attack_no_process_ever_loads_two_shares_of_the_wallet(world: World) -> None:
    """Issue 16, acceptance 1: every share load of every keysafe process this module started
    (the server, `keysafe mcp`, the owner's CLI, recover-sign and its child) was recorded;
    none holds two shares of the wallet, except `wallet refresh`, which still runs the
    vault's and the recovery party's parts in the owner's process (not built yet)."""
    share_audit.assert_one_share_per_process(world.root / "share-loads.log")


def test_attack_the_wallet_key_and_the_shares_appear_in_no_file_or_log(world: World) -> None:
    """Acceptance 4 for DKLs23, over the processes of this module: the private key (computed
    here only, from the agent's and the recovery share, outside keysafe) and those shares are
    in none of the files they left under the module's root: the server's log, the MCP stderr,
    the share-load record, the vault database, the share files, the policy."""
    agent = world.share().key
    recovery = share_file.open_recovery_share(
        share_file.read(world.root / "team-recovery.json", "recovery file"),
        SecretBytes(bytearray(RECOVERY_PASSPHRASE.encode())),
    ).key
    if agent.public.group_public_key != recovery.public.group_public_key or (
        agent.public.verifying_shares != recovery.public.verifying_shares
    ):  # the refresh rewrote the recovery file: take the agent share of the same generation
        doc = share_file.read(world.root / "team-agent-2.json", "agent share file")
        agent = share_file.open_agent_share(doc, SecretBytes(bytearray(SHARE_KEY.encode()))).key
    x = (
        lagrange(SECP256K1, AGENT, (AGENT, RECOVERY)) * agent.signing_share
        + lagrange(SECP256K1, RECOVERY, (AGENT, RECOVERY)) * recovery.signing_share
    ) % N
    assert SECP256K1.base_mul(x) == agent.public.group_public_key  # the key, from outside

    def forms(s: int) -> list[bytes]:
        be, le = s.to_bytes(32, "big"), s.to_bytes(32, "little")
        return [be, le, be.hex().encode(), le.hex().encode(), str(s).encode()]

    needles = forms(x) + forms(agent.signing_share) + forms(recovery.signing_share)
    blobs = {p: p.read_bytes() for p in world.root.rglob("*") if p.is_file()}
    assert len(blobs) >= 8, sorted(blobs)  # logs, the database, share files, the policy
    assert (
        any(p.name.startswith("serve-") for p in blobs)
        and (world.root / "home" / "vault.db") in blobs
    )

    def scan(files: dict[Path, bytes]) -> list[tuple[str, bytes]]:
        return [(p.name, n[:8]) for p, data in files.items() for n in needles if n in data]

    assert scan(blobs) == [], scan(blobs)
    planted = {Path("serve-planted.log"): b"log line " + x.to_bytes(32, "big").hex().encode()}
    assert scan(planted), "negative control: the scan finds a key that is there"
