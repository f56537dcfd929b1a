"""The agent host's own copy of its policy (mcp_server/own_policy.py): the same engine and
decoders as the vault, on what the agent is about to co-sign; a deny stops the agent's share
from being used, whatever the vault says. Shares here are made with the three keygen parties
in one process (benchmarks do the same); only the public package matters to the check."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from benchmarks.ceremony import keygen
from solders.hash import Hash
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from keysafe.errors import MalformedRequestError, PolicyDeniedError
from keysafe.mcp_server.own_policy import OwnPolicy
from keysafe.mpc.frost.groups import ED25519, SECP256K1
from keysafe.mpc.frost.keys import AGENT

BOB = "0x1111111111111111111111111111111111111111"
EVE = "0x2222222222222222222222222222222222222222"
SOL_BOB = Pubkey.from_string("9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin")
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
  - name: sol-bob
    allow: [solana.transfer]
    wallets: [sol]
    chains: [solana]
    recipients: ["9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"]
    max_per_tx: {SOL: "1"}
  - name: greet
    allow: [evm.sign_message]
    wallets: [team]
    chains: [ethereum]
    message_matches: "^hello"
"""


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> OwnPolicy:
    path = tmp_path_factory.mktemp("own") / "bot.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return OwnPolicy.load(path)


def _evm_tx(to: str, value: int) -> dict[str, object]:
    return {
        "type": 2,
        "chainId": 31337,
        "nonce": 0,
        "to": to,
        "value": value,
        "gas": 21000,
        "maxFeePerGas": 3 * 10**9,
        "maxPriorityFeePerGas": 10**9,
    }


def _sol_tx(payer: Pubkey, to: Pubkey, lamports: int) -> str:
    ix = transfer(TransferParams(from_pubkey=payer, to_pubkey=to, lamports=lamports))
    msg = MessageV0.try_compile(payer, [ix], [], Hash.default())
    return base64.b64encode(
        bytes(VersionedTransaction.populate(msg, [Signature.default()]))
    ).decode()


def test_what_the_copy_allows_passes_and_what_it_denies_never_reaches_the_vault(
    own: OwnPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    evm = keygen(SECP256K1)[0][AGENT]
    own.check_transaction(evm, "team", _evm_tx(BOB, 10**17), None)
    own.check_message(evm, "team", "hello there", "utf8")
    with caplog.at_level(logging.WARNING, logger="keysafe.mcp_server.own_policy"):
        for tx in (_evm_tx(EVE, 10**17), _evm_tx(BOB, 2 * 10**18)):  # other recipient; too much
            with pytest.raises(PolicyDeniedError, match="own copy of its policy") as denied:
                own.check_transaction(evm, "team", tx, None)
            assert denied.value.facts.get("side") == "agent"
        with pytest.raises(PolicyDeniedError):
            own.check_transaction(evm, "other-wallet", _evm_tx(BOB, 10**17), None)
        with pytest.raises(PolicyDeniedError):
            own.check_message(evm, "team", "goodbye", "utf8")
        mail = {
            "types": {
                "EIP712Domain": [{"name": "name", "type": "string"}],
                "Mail": [{"name": "body", "type": "string"}],
            },
            "primaryType": "Mail",
            "domain": {"name": "x"},
            "message": {"body": "hello"},
        }
        with pytest.raises(PolicyDeniedError):  # no rule of the copy allows typed data
            own.check_typed_data(evm, "team", mail)
    assert sum("agent-side policy" in r.getMessage() for r in caplog.records) == 5


def test_solana_transfers_are_decoded_as_the_vault_decodes_them(own: OwnPolicy) -> None:
    sol = keygen(ED25519)[0][AGENT]
    payer = Pubkey.from_bytes(sol.key.public.group_public_key)
    own.check_transaction(sol, "sol", _sol_tx(payer, SOL_BOB, 10**8), None)
    with pytest.raises(PolicyDeniedError):
        own.check_transaction(sol, "sol", _sol_tx(payer, Pubkey.new_unique(), 10**8), None)
    with pytest.raises(PolicyDeniedError):
        own.check_transaction(sol, "sol", _sol_tx(payer, SOL_BOB, 2 * 10**9), None)


def test_a_copy_this_host_cannot_judge_is_refused_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(MalformedRequestError, match="cannot be read"):
        OwnPolicy.load(missing)
    added_chain = tmp_path / "added.yaml"
    added_chain.write_text(POLICY.replace("chains: [local]", "chains: [my-l2]"), encoding="utf-8")
    with pytest.raises(MalformedRequestError, match="built-in chains"):
        OwnPolicy.load(added_chain)


def test_attack_a_solana_cluster_label_does_not_get_a_mainnet_transfer_past_the_copy(
    tmp_path: Path,
) -> None:
    """A Solana signature names no cluster, so "solana-devnet" on a mainnet transfer was only a
    label: with devnet open and mainnet capped, the label got the share used (helper report).
    Mainnet's rules now hold whatever the label."""
    path = tmp_path / "clusters.yaml"
    path.write_text(
        """\
version: 1
rules:
  - name: devnet-anything
    allow: [solana.transfer]
    wallets: [sol]
    chains: [solana-devnet]
  - name: mainnet-small
    allow: [solana.transfer]
    wallets: [sol]
    chains: [solana]
    max_per_tx: {SOL: "1"}
""",
        encoding="utf-8",
    )
    own = OwnPolicy.load(path)
    sol = keygen(ED25519)[0][AGENT]
    payer = Pubkey.from_bytes(sol.key.public.group_public_key)
    big = _sol_tx(payer, SOL_BOB, 500 * 10**9)
    with pytest.raises(PolicyDeniedError):
        own.check_transaction(sol, "sol", big, "solana-devnet")
    own.check_transaction(sol, "sol", _sol_tx(payer, SOL_BOB, 10**8), "solana-devnet")
