"""2-of-3 wallet creation as three OS processes, for Solana (FROST) and EVM (DKLs23): the vault's
party in `keysafe serve`, the recovery party in the owner's `keysafe wallet create`, the agent's
in `keysafe agent threshold join` on the "agent's host" (its own KEYSAFE_HOME, no vault). Each
process makes exactly one share (the share audit records every share made or loaded); the
agent's share opens only under its share key; the owner's CLI never sees that key, and the
vault's log, the outputs and the audit log show no share; then the new wallet signs (vault +
recovery, two processes) and the same name cannot be created twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from solders.pubkey import Pubkey
from solders.signature import Signature

from keysafe.mpc import share_file
from keysafe.mpc.frost.keys import AGENT, RECOVERY, lagrange
from keysafe.mpc.share_file import SecretBytes
from tests.conftest import Cli
from tests.e2e import share_audit
from tests.e2e.keygen_fixture import (
    Created,
    create_apart,
    reshare_apart,
    run_apart,
    run_owner_only,
)
from tests.e2e.mcp_fixture import McpSession, ok
from tests.e2e.server_fixture import KEYSAFE, Server, add_agent, cli_env, keysafe_server

RECOVERY_PASSPHRASE = "keygen apart recovery passphrase, offline"
SHARE_KEY = "keygen apart agent share key, agent host only"
POLICY = "version: 1\nrules: []\n"
AUTO_POLICY = """\
version: 1
rules:
  - name: greet
    allow: [solana.sign_message]
    wallets: [auto]
    chains: [solana]
    message_matches: "^hello"
"""


@dataclass
class World:
    root: Path
    cli: Cli
    server: Server
    token: str
    made: dict[str, Created]
    agent_env: dict[str, str]

    def log(self) -> Path:
        return self.root / "share-loads.log"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("keygen-apart")
    home = root / "home"
    env = share_audit.audited(cli_env(home), root / "share-loads.log")
    cli = Cli(home, env)
    cli.ok("init", "--json")
    policy = root / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    token = add_agent(cli, "bot", policy)
    with keysafe_server(env, "--unlock", log_dir=root) as server:
        agent_env = share_audit.audited(
            cli_env(root / "agent-host")
            | {
                "KEYSAFE_URL": server.url,
                "KEYSAFE_AGENT_TOKEN": token,
                "KEYSAFE_AGENT_SHARE_KEY": SHARE_KEY,
            },
            root / "share-loads.log",
        )
        agent_env.pop("KEYSAFE_PASSPHRASE")
        made = {}
        for chain in ("solana", "evm"):
            made[chain] = create_apart(
                cli,
                f"team-{chain}",
                chain,
                "bot",
                recovery_file=root / f"{chain}.recovery",
                share_file=root / f"{chain}.share",
                recovery_passphrase=RECOVERY_PASSPHRASE,
                agent_env=agent_env,
            )
        yield World(root, cli, server, token, made, agent_env)


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_three_processes_create_one_wallet_and_each_keeps_its_own_share(
    world: World, chain: str
) -> None:
    made = world.made[chain]
    assert made.owner == {
        "name": f"team-{chain}",
        "chain": chain,
        "address": made.owner["address"],
        "threshold": "2-of-3",
        "recovery_file": str(world.root / f"{chain}.recovery"),
    }
    assert made.agent["address"] == made.owner["address"]
    assert made.agent["wallet"] == f"team-{chain}"
    assert "keysafe agent threshold join" in made.owner_stderr  # it said what to run
    listed = json.loads(world.cli.ok("wallet", "list", "--json").stdout)
    row = next(w for w in listed if w["name"] == f"team-{chain}")
    assert row["address"] == made.owner["address"]
    agent_doc = share_file.read(world.root / f"{chain}.share", "agent share file")
    agent = share_file.open_agent_share(agent_doc, SecretBytes(bytearray(SHARE_KEY.encode())))
    recovery_doc = share_file.read(world.root / f"{chain}.recovery", "recovery file")
    recovery = share_file.open_recovery_share(
        recovery_doc, SecretBytes(bytearray(RECOVERY_PASSPHRASE.encode()))
    )
    assert (agent.key.identifier, recovery.key.identifier) == (AGENT, RECOVERY)
    assert agent.key.public.group_public_key == recovery.key.public.group_public_key
    if chain == "evm":
        assert sorted(agent.pairs) == [2, 3] and sorted(recovery.pairs) == [1, 2]


def test_new_wallet_signs_with_vault_and_recovery_as_two_processes(world: World) -> None:
    for chain, text in (("solana", "hello from apart"), ("evm", "hello from apart")):
        out = json.loads(
            world.cli.ok(
                "wallet",
                "sign-message",
                f"team-{chain}",
                text,
                "--recovery-file",
                str(world.root / f"{chain}.recovery"),
                "--json",
                env={"KEYSAFE_RECOVERY_PASSPHRASE": RECOVERY_PASSPHRASE},
            ).stdout
        )
        assert out["address"] == world.made[chain].owner["address"]
        assert out["signers"] == "user+recovery"


def test_attack_a_recovery_file_passphrase_is_held_to_the_vault_passphrase_rule(
    world: World,
) -> None:
    r = world.cli(
        "wallet",
        "create",
        "weak",
        "--chain",
        "solana",
        "--threshold",
        "2-of-3",
        "--agent",
        "bot",
        "--recovery-file",
        str(world.root / "weak.recovery"),
        env={"KEYSAFE_RECOVERY_PASSPHRASE": "1234"},
    )
    assert r.exit_code != 0
    assert "recovery-file passphrase is too short" in r.stdout + r.stderr
    assert not (world.root / "weak.recovery").exists()
    assert "weak" not in world.cli.ok("wallet", "list", "--json").stdout


def test_a_taken_name_or_an_unknown_agent_is_refused_before_anything_runs(world: World) -> None:
    r = world.cli(
        "wallet",
        "create",
        "team-evm",
        "--chain",
        "evm",
        "--threshold",
        "2-of-3",
        "--agent",
        "bot",
        "--recovery-file",
        str(world.root / "again.recovery"),
        env={"KEYSAFE_RECOVERY_PASSPHRASE": RECOVERY_PASSPHRASE},
    )
    assert r.exit_code != 0 and "already exists" in r.stderr + r.stdout
    r = world.cli(
        "wallet",
        "create",
        "other",
        "--chain",
        "evm",
        "--threshold",
        "2-of-3",
        "--agent",
        "nobody",
        "--recovery-file",
        str(world.root / "again.recovery"),
        env={"KEYSAFE_RECOVERY_PASSPHRASE": RECOVERY_PASSPHRASE},
    )
    assert r.exit_code != 0 and "nobody" in r.stderr + r.stdout
    assert not (world.root / "again.recovery").exists()


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_all_three_pairs_reshare_as_three_processes_and_the_wallet_still_signs(
    world: World, chain: str
) -> None:
    """vault+recovery (refresh / evict the agent), agent+vault (the recovery file is lost: a
    new one is made at a new path), agent+recovery (the vault's share is rebuilt); after each,
    the owner signs with vault + recovery; the address never changes."""
    name, address = f"team-{chain}", world.made[chain].owner["address"]
    share, recovery = world.root / f"{chain}.share", world.root / f"{chain}.recovery"
    lost = world.root / f"{chain}.recovery-after-loss"
    info = json.loads(world.cli.ok("wallet", "list", "--json").stdout)
    for with_parties, recovery_file in (
        ("vault,recovery", recovery),
        ("agent,vault", lost),
        ("agent,recovery", lost),
    ):
        old_agent = share_file.read(share, "agent share file")
        done = reshare_apart(
            world.cli,
            name,
            with_parties,
            recovery_file=recovery_file,
            share_file=share,
            recovery_passphrase=RECOVERY_PASSPHRASE,
            agent_env=world.agent_env,
        )
        assert done.owner["address"] == done.agent["address"] == address
        assert done.agent["kind"] == "reshare"
        assert share_file.read(share, "agent share file") != old_agent  # replaced in place
        out = json.loads(
            world.cli.ok(
                "wallet",
                "sign-message",
                name,
                f"hello after {with_parties}",
                "--recovery-file",
                str(recovery_file),
                "--json",
                env={"KEYSAFE_RECOVERY_PASSPHRASE": RECOVERY_PASSPHRASE},
            ).stdout
        )
        assert out["address"] == address
    # the recovery file from before the loss is of a dead generation: refused, naming it
    r = world.cli(
        "wallet",
        "sign-message",
        name,
        "hello",
        "--recovery-file",
        str(recovery),
        env={"KEYSAFE_RECOVERY_PASSPHRASE": RECOVERY_PASSPHRASE},
    )
    assert r.exit_code != 0 and "signature" not in r.stdout
    assert info  # the listing before and after names the same wallet
    after = json.loads(world.cli.ok("wallet", "list", "--json").stdout)
    assert next(w for w in after if w["name"] == name)["address"] == address


def test_the_owner_on_another_machine_creates_with_vault_url(world: World) -> None:
    """The recovery party runs in an owner's CLI with no vault of its own (another home: as if
    on a laptop), talking to the vault's server with --vault-url; the agent joins as usual."""
    laptop = world.root / "owner-laptop"
    cli = Cli(laptop, share_audit.audited(cli_env(laptop), world.log()))
    done = run_apart(
        cli,
        [
            "wallet",
            "create",
            "far",
            "--chain",
            "solana",
            "--threshold",
            "2-of-3",
            "--agent",
            "bot",
            "--recovery-file",
            str(world.root / "far.recovery"),
            "--vault-url",
            world.server.url,
        ],
        share_file=world.root / "far.share",
        recovery_passphrase=RECOVERY_PASSPHRASE,
        agent_env=world.agent_env,
    )
    assert done.owner["address"] == done.agent["address"]
    listed = json.loads(world.cli.ok("wallet", "list", "--json").stdout)
    assert any(w["name"] == "far" and w["address"] == done.owner["address"] for w in listed)
    assert not (laptop / "vault.db").exists()  # nothing of the vault on the owner's laptop
    r = cli(
        "wallet",
        "create",
        "far2",
        "--chain",
        "solana",
        "--threshold",
        "2-of-3",
        "--agent",
        "bot",
        "--recovery-file",
        str(world.root / "far2.recovery"),
        "--vault-url",
        "http://vault.example:8420",
        env={"KEYSAFE_RECOVERY_PASSPHRASE": RECOVERY_PASSPHRASE},
    )
    assert r.exit_code != 0 and "in the clear" in r.stderr + r.stdout


def test_a_running_keysafe_mcp_with_the_join_key_joins_by_itself_and_signs_at_once(
    world: World,
) -> None:
    """The owner and the agent's host share a join key (the owner's `--join-key-file`; copied
    to the agent's host, never to the vault's). `keysafe mcp` with KEYSAFE_AGENT_JOIN_KEY_FILE
    joins the owner's keygen by itself (no code handed over) and signs with the new wallet in
    the same session; then a refresh the owner runs is joined the same way."""
    host = world.root / "auto-host"
    host.mkdir()
    key_file = host / "join.key"
    owner_key = world.root / "owner-join.key"
    owner_key.write_text(os.urandom(32).hex(), encoding="ascii")
    key_file.write_bytes(owner_key.read_bytes())  # "copied to the agent's host"
    policy = world.root / "auto-policy.yaml"
    policy.write_text(AUTO_POLICY, encoding="utf-8")
    world.cli.ok("policy", "set", "bot", str(policy))
    env = world.agent_env | {
        "KEYSAFE_HOME": str(host / "home"),
        "KEYSAFE_AGENT_JOIN_KEY_FILE": str(key_file),
        "KEYSAFE_AGENT_SHARE_DIR": str(host),
    }
    env.pop("KEYSAFE_AGENT_SHARE_FILE", None)
    params = StdioServerParameters(command=KEYSAFE, args=["mcp"], env=env)
    with (
        open(host / "mcp-stderr.log", "w") as errlog,
        McpSession(lambda: Client(stdio_client(params, errlog=errlog))) as mcp,
    ):
        made = run_owner_only(
            world.cli,
            [
                "wallet",
                "create",
                "auto",
                "--chain",
                "solana",
                "--threshold",
                "2-of-3",
                "--agent",
                "bot",
                "--recovery-file",
                str(world.root / "auto.recovery"),
                "--join-key-file",
                str(owner_key),
            ],
            recovery_passphrase=RECOVERY_PASSPHRASE,
        )
        assert (host / "auto.share").exists()
        got = ok(mcp.call("sign_message", {"wallet": "auto", "message": "hello auto"}))
        assert Signature.from_string(got["signature"]).verify(
            Pubkey.from_string(made["address"]), b"hello auto"
        )
        before = (host / "auto.share").read_bytes()
        run_owner_only(
            world.cli,
            [
                "wallet",
                "refresh",
                "auto",
                "--with",
                "vault,recovery",
                "--recovery-file",
                str(world.root / "auto.recovery"),
                "--join-key-file",
                str(owner_key),
            ],
            recovery_passphrase=RECOVERY_PASSPHRASE,
        )
        assert (host / "auto.share").read_bytes() != before  # replaced by the new share
        got = ok(mcp.call("sign_message", {"wallet": "auto", "message": "hello again"}))
        assert Signature.from_string(got["signature"]).verify(
            Pubkey.from_string(made["address"]), b"hello again"
        )
    assert "auto-join" in (host / "mcp-stderr.log").read_text(encoding="utf-8")


def test_the_vault_is_lost_agent_and_recovery_rebuild_the_wallet_on_a_new_vault(
    world: World,
) -> None:
    """A new vault (its own home, master key and server) with no record of the wallet: the
    owner's `wallet refresh --with agent,recovery --agent bot` and the agent's join give it a
    share of the same wallet; then it signs with the recovery file, at the same address."""
    home = world.root / "new-vault"
    env = share_audit.audited(cli_env(home), world.log())
    cli = Cli(home, env)
    cli.ok("init", "--json")
    policy = world.root / "policy.yaml"
    token = add_agent(cli, "bot", policy)  # the agent, registered anew with the new vault
    name, address = "team-solana", world.made["solana"].owner["address"]
    recovery = world.root / "solana.recovery-after-loss"
    if not recovery.exists():  # run alone: the reshare test did not make it
        recovery = world.root / "solana.recovery"
    with keysafe_server(env, "--unlock", log_dir=world.root) as server:
        agent_env = world.agent_env | {"KEYSAFE_URL": server.url, "KEYSAFE_AGENT_TOKEN": token}
        r = cli(
            "wallet",
            "refresh",
            name,
            "--with",
            "agent,recovery",
            "--recovery-file",
            str(recovery),
            env={"KEYSAFE_RECOVERY_PASSPHRASE": RECOVERY_PASSPHRASE},
        )
        assert r.exit_code != 0 and "--agent NAME" in r.stderr + r.stdout
        done = run_apart(
            cli,
            [
                "wallet",
                "refresh",
                name,
                "--with",
                "agent,recovery",
                "--agent",
                "bot",
                "--recovery-file",
                str(recovery),
            ],
            share_file=world.root / "solana.share",
            recovery_passphrase=RECOVERY_PASSPHRASE,
            agent_env=agent_env,
        )
        assert done.owner["address"] == done.agent["address"] == address
        listed = json.loads(cli.ok("wallet", "list", "--json").stdout)
        assert [(w["name"], w["address"], w["source"]) for w in listed] == [
            (name, address, "threshold")
        ]
        out = json.loads(
            cli.ok(
                "wallet",
                "sign-message",
                name,
                "hello from the new vault",
                "--recovery-file",
                str(recovery),
                "--json",
                env={"KEYSAFE_RECOVERY_PASSPHRASE": RECOVERY_PASSPHRASE},
            ).stdout
        )
        assert out["address"] == address


def test_attack_no_process_of_the_keygens_or_reshares_made_or_loaded_two_shares(
    world: World,
) -> None:
    """Runs last: covers both keygens, all six reshares and the owner's signatures."""
    commands, two = share_audit.two_shares_in_one_process(world.log())
    assert not two, two
    for who in ("keysafe serve", "keysafe wallet create", "keysafe agent threshold"):
        assert any(c.startswith(who) for c in commands), (who, commands)
    lines = world.log().read_text(encoding="utf-8").splitlines()
    by_command = {(line.split("\t")[1].split()[1], line.split("\t")[3]) for line in lines}
    # the server made share 2, the owner's CLI share 3, the agent's host share 1 (both chains)
    assert {("serve", "2"), ("wallet", "3"), ("agent", "1")} <= by_command
    assert any(c.startswith("keysafe wallet refresh") for c in commands), commands


def test_attack_the_agent_share_key_and_the_shares_appear_nowhere_but_their_files(
    world: World,
) -> None:
    """Runs last: the outputs, logs and audit of every keygen and reshare."""
    outputs = "\n".join(world.cli.outputs)
    logs = "\n".join(p.read_text(errors="replace") for p in world.root.glob("*.log"))
    audit = world.cli.ok("audit", "--json").stdout
    for secret in (SHARE_KEY, RECOVERY_PASSPHRASE):
        assert secret not in outputs and secret not in logs and secret not in audit
    assert world.token not in logs and world.token not in audit  # `agent add` printed it once
    doc = share_file.read(world.root / "evm.share", "agent share file")
    share = share_file.open_agent_share(doc, SecretBytes(bytearray(SHARE_KEY.encode())))
    scalar = share.key.suite.serialize_scalar(share.key.signing_share)
    for blob in (scalar.hex(), scalar.hex().upper()):
        assert blob not in outputs and blob not in logs and blob not in audit
    # The key itself (computed here, in the test, from the agent's and the recovery share: the
    # one place it is ever formed) is in no file, database, log, output or audit row.
    recovery_path = world.root / "evm.recovery-after-loss"
    if not recovery_path.exists():
        recovery_path = world.root / "evm.recovery"
    recovery = share_file.open_recovery_share(
        share_file.read(recovery_path, "recovery file"),
        SecretBytes(bytearray(RECOVERY_PASSPHRASE.encode())),
    )
    suite, pair = share.key.suite, (AGENT, RECOVERY)
    shares = {AGENT: share.key.signing_share, RECOVERY: recovery.key.signing_share}
    secret = sum(lagrange(suite, i, pair) * shares[i] for i in pair) % suite.order
    assert suite.base_mul(secret) == share.key.public.group_public_key
    forms = [secret.to_bytes(32, "big"), secret.to_bytes(32, "little")]
    texts = [f.hex() for f in forms] + [f.hex().upper() for f in forms] + [str(secret)]
    blobs = b"".join(p.read_bytes() for p in world.root.rglob("*") if p.is_file())
    for form in forms:
        assert form not in blobs
    for text in texts:
        assert text not in outputs and text not in audit and text.encode() not in blobs
    created = [e for e in json.loads(audit) if e["action"] == "wallet.create"]
    assert {e["target"] for e in created if e["outcome"] == "success"} >= {
        "wallet:team-solana",
        "wallet:team-evm",
    }
