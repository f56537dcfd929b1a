"""POST /v1/agent/transfer end to end: keysafe builds the transaction, the gate judges it, and it
lands on a real chain (issue 14, item 3).

One module world, built once: ganache (a real EVM node) with the test ERC-20 `TKN` (6 decimals)
deployed; LiteSVM behind a local Solana JSON-RPC endpoint (tests/solana_node.py: the real System,
SPL Token and associated-token-account programs execute what the vault sends) with the SPL token
`SUSD` (6 decimals); a hostile EVM RPC that quotes absurd fees; one vault (wallets `main` on EVM,
`sol` on Solana, agent `bot` under POLICY) and one `keysafe serve --unlock` on it. Tests talk to
it over HTTP as an agent and as the owner; each uses its own recipient, amounts or assets so they
do not meet in the budget windows.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi import encode
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.service import agents, policies, registry, wallets
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home
from tests.conftest import PASSPHRASE
from tests.e2e.server_fixture import Server, agent_headers, cli_env, error_of, keysafe_server
from tests.evm_node import Node
from tests.evm_node import evm_node_fixture as evm_node_fixture  # the session fixture `evm_node`
from tests.solana_node import SolanaNode, json_rpc_server
from tests.solana_node import running_node as running_solana

TRANSFER = "/v1/agent/transfer"
BOB = "0x1111111111111111111111111111111111111111"
CAROL = "0x2222222222222222222222222222222222222222"  # the owner approves each payment
DAVE = "0x4444444444444444444444444444444444444444"  # no rule: denied
ETH, TKN = 10**18, 10**6
SOL_BOB = str(Keypair.from_seed(bytes([2] * 32)).pubkey())
SOL_CAROL = str(Keypair.from_seed(bytes([3] * 32)).pubkey())
HOSTILE_CHAIN_ID = 31338
DUP_A = "0x" + "d1" * 20  # two registered tokens whose symbols differ only in case
DUP_B = "0x" + "d2" * 20

POLICY = f"""\
version: 1
rules:
  - name: pay-bob
    allow: [evm.transfer]
    wallets: [main]
    chains: [local, hostile]
    assets: [ETH, TKN, WIDE]
    recipients: ["{BOB}"]
    max_per_tx: {{ETH: "1", TKN: "100", WIDE: "100"}}
    limits:
      - {{window: 24h, max: {{ETH: "1.5", TKN: "150"}}}}
  - name: ask-carol
    ask: [evm.transfer]
    wallets: [main]
    chains: [local]
    assets: [ETH]
    recipients: ["{CAROL}"]
    max_per_tx: {{ETH: "1"}}
  - name: pay-sol
    allow: [solana.transfer]
    wallets: [sol]
    chains: [solana-local]
    assets: [SUSD, SOL]
    max_per_tx: {{SUSD: "10", SOL: "0.5"}}
    limits:
      - {{window: 24h, max: {{SUSD: "20"}}}}
"""


# -- a hostile EVM RPC: the right chain id, absurd fees --------------------------------------------


@dataclass
class Hostile:
    url: str = ""
    methods: list[str] = field(default_factory=list)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        method = str(body.get("method"))
        self.methods.append(method)
        huge = hex(10**15)  # 1,000,000 gwei per gas: 21000 gas costs 21 ETH
        results = {
            "eth_chainId": hex(HOSTILE_CHAIN_ID),
            "eth_getTransactionCount": hex(2**64 - 2),
            "eth_gasPrice": huge,
            "eth_feeHistory": {"baseFeePerGas": [huge]},
            "eth_maxPriorityFeePerGas": huge,
            "eth_estimateGas": hex(21000),
            "eth_getBalance": hex(100 * 10**18),
            "eth_sendRawTransaction": "0x" + "ab" * 32,
        }
        if method not in results:
            return {
                "jsonrpc": "2.0",
                "id": body.get("id"),
                "error": {"code": -32601, "message": "no such method"},
            }
        return {"jsonrpc": "2.0", "id": body.get("id"), "result": results[method]}


@dataclass
class World:
    server: Server
    client: httpx.Client
    token: str
    evm: Node
    solana: SolanaNode
    hostile: Hostile
    tkn: str  # the ERC-20's address on ganache
    susd: str  # the SPL mint on the Solana node
    main: str  # the EVM wallet's address
    sol: str  # the Solana wallet's address
    _owner: list[str] = field(default_factory=list)

    def transfer(self, **body: Any) -> httpx.Response:
        return self.client.post(TRANSFER, json=body, headers=agent_headers(self.token))

    def sent(self, **body: Any) -> dict[str, Any]:
        r = self.transfer(**body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["status"] == "sent", got
        return dict(got)

    def refused(self, status: int, code: str, **body: Any) -> dict[str, Any]:
        r = self.transfer(**body)
        assert r.status_code == status, r.text
        err = error_of(r)
        assert err["code"] == code, err
        assert "signed_transaction" not in r.text and "\n" not in err["message"]
        return err

    def left(self, rule: str, asset: str) -> Decimal:
        r = self.client.get("/v1/agent/capabilities", headers=agent_headers(self.token))
        rows = [b for b in r.json()["budget"] if (b["rule"], b["asset"]) == (rule, asset)]
        assert len(rows) == 1, rows
        return Decimal(rows[0]["left"])

    def owner(self, method: str, path: str, body: Any = None) -> httpx.Response:
        if not self._owner:
            self._owner.append(self.server.login())
        headers = {"authorization": f"Bearer {self._owner[0]}"}
        return self.client.request(method, path, json=body, headers=headers)


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    state = Hostile()
    with json_rpc_server(state.answer) as url:
        state.url = url
        yield state


def _vault(root: Path, evm: Node, solana: SolanaNode, hostile: Hostile) -> dict[str, str]:
    """The vault, built in-process with a cheap KDF (the server unlocks it the same way)."""
    vault, _ = init_vault(
        Home(root / "home"),
        SecretBytes(bytearray(PASSPHRASE.encode())),
        kdf=CHEAP_KDF,
        clock=lambda: datetime.now(UTC),
    )
    main = wallets.create_wallet(vault, "main", Chain.EVM).address
    sol = wallets.create_wallet(vault, "sol", Chain.SOLANA).address
    registry.add_chain(vault, "local", family="evm", chain_id=31337, rpc=evm.url)
    registry.add_chain(vault, "hostile", family="evm", chain_id=HOSTILE_CHAIN_ID, rpc=hostile.url)
    registry.add_chain(vault, "solana-local", family="solana", chain_id=None, rpc=solana.url)
    tkn = evm.deploy_token("Test Token", "TKN", 6, 10**6 * TKN)
    registry.add_asset(vault, "TKN", chain="local", address=tkn, decimals=6)
    # A 6-decimal token the owner registered with 18 decimals by mistake.
    wide = evm.deploy_token("Wide Token", "WIDE", 6, 10**6 * TKN)
    registry.add_asset(vault, "WIDE", chain="local", address=wide, decimals=18)
    registry.add_asset(vault, "DUP", chain="local", address=DUP_A, decimals=6)
    registry.add_asset(vault, "dup", chain="local", address=DUP_B, decimals=18)
    susd = solana.create_mint(decimals=6)
    registry.add_asset(vault, "SUSD", chain="solana-local", address=susd, decimals=6)
    _, token = agents.add_agent(vault, "bot")
    assert token is not None
    policies.set_policy(vault, "bot", POLICY)
    # Funds: 5 ETH and 1000 TKN on ganache, 2 SOL and 100 SUSD on the Solana node.
    evm.send_from_node({"to": main, "value": hex(5 * ETH)})
    data = "0xa9059cbb" + encode(["address", "uint256"], [main, 1000 * TKN]).hex()
    evm.send_from_node({"to": tkn, "data": data, "gas": hex(200_000)})
    solana.airdrop(sol, 2 * 10**9)
    solana.fund_tokens(susd, sol, 100 * TKN)
    out = {
        "token": bytes(token.reveal()).decode(),
        "tkn": tkn,
        "susd": susd,
        "main": main,
        "sol": sol,
    }
    vault.lock()
    return out


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, hostile: Hostile, evm_node: Node
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("transfer")
    evm = evm_node
    with running_solana() as solana:
        made = _vault(root, evm, solana, hostile)
        env = cli_env(root / "home")
        with keysafe_server(env, "--unlock", log_dir=root) as server, server.client() as c:
            yield World(
                server,
                c,
                made["token"],
                evm,
                solana,
                hostile,
                made["tkn"],
                made["susd"],
                made["main"],
                made["sol"],
            )


# -- EVM on ganache -------------------------------------------------------------------------------


def test_transfer_of_eth_lands_on_the_node_and_is_charged_with_its_fee(world: World) -> None:
    before, left = world.evm.balance(BOB), world.left("pay-bob", "ETH")

    got = world.sent(wallet="main", asset="native", to=BOB, amount="0.25", chain="local")

    receipt = world.evm.wait(got["tx_hash"])
    assert receipt["status"] == "0x1" and receipt["from"].lower() == world.main.lower()
    assert world.evm.balance(BOB) - before == ETH // 4
    assert (got["wallet"], got["chain"]) == ("main", "local")
    assert "0.25 ETH" in got["summary"]
    spent = left - world.left("pay-bob", "ETH")
    assert Decimal("0.25") < spent < Decimal("0.26")  # the value and the max network fee


def test_transfer_of_an_erc20_by_symbol_lands_and_is_charged_in_tokens(world: World) -> None:
    before, left = world.evm.token_balance(world.tkn, BOB), world.left("pay-bob", "TKN")

    # No chain: TKN is registered on one EVM chain only.
    got = world.sent(wallet="main", asset="tkn", to=BOB.lower(), amount="12.5")

    assert world.evm.wait(got["tx_hash"])["status"] == "0x1"
    assert world.evm.token_balance(world.tkn, BOB) - before == 12_500_000
    assert "12.5 TKN" in got["summary"] and got["chain"] == "local"
    assert left - world.left("pay-bob", "TKN") == Decimal("12.5")


def test_transfer_over_the_per_transaction_cap_is_denied_and_nothing_is_sent(
    world: World,
) -> None:
    nonce = world.evm.nonce(world.main)
    err = world.refused(
        403, "POLICY_DENIED", wallet="main", asset="ETH", to=BOB, amount="2", chain="local"
    )
    assert (err["reason_code"], err["rule"]) == ("OVER_PER_TX_LIMIT", "pay-bob")
    err = world.refused(
        403, "POLICY_DENIED", wallet="main", asset="ETH", to=DAVE, amount="0.01", chain="local"
    )
    assert err["reason_code"] == "NO_MATCHING_RULE"
    assert world.evm.nonce(world.main) == nonce


def test_transfer_the_owner_must_approve_is_built_again_and_sent_on_approval(
    world: World,
) -> None:
    before = world.evm.balance(CAROL)
    body = {
        "wallet": "main",
        "asset": "native",
        "to": CAROL,
        "amount": "0.1",
        "chain": "local",
        "description": "pay Carol",
    }
    r = world.transfer(**body)
    assert r.status_code == 202, r.text
    pending = r.json()
    assert set(pending) == {"status", "approval_id", "expires_at", "summary"}
    assert "0.1 ETH" in pending["summary"]
    # The same transfer asked again (amount written otherwise) waits on the same approval.
    again = world.transfer(**(body | {"amount": "0.10", "asset": "ETH"}))
    assert again.json()["approval_id"] == pending["approval_id"]
    assert world.evm.balance(CAROL) == before

    card = next(
        a
        for a in world.owner("GET", "/v1/owner/approvals").json()
        if a["approval_id"] == pending["approval_id"]
    )
    assert card["kind"] == "transfer" and card["summary"] == pending["summary"]
    r = world.owner("POST", f"/v1/owner/approvals/{pending['approval_id']}/approve")
    assert r.status_code == 200, r.text

    view = world.client.get(
        f"/v1/agent/approvals/{pending['approval_id']}", headers=agent_headers(world.token)
    ).json()
    assert view["status"] == "approved", view
    assert view["result"]["status"] == "sent"
    assert world.evm.wait(view["result"]["tx_hash"])["status"] == "0x1"
    assert world.evm.balance(CAROL) - before == ETH // 10


def test_transfer_retried_with_its_idempotency_key_pays_once(world: World) -> None:
    before = world.evm.token_balance(world.tkn, BOB)
    body = {
        "wallet": "main",
        "asset": "TKN",
        "to": BOB,
        "amount": "1",
        "chain": "local",
        "idempotency_key": "pay-bob-once",
    }
    first = world.sent(**body)
    world.evm.wait(first["tx_hash"])
    assert world.sent(**body)["tx_hash"] == first["tx_hash"]
    assert world.evm.token_balance(world.tkn, BOB) - before == TKN
    err = world.refused(409, "IDEMPOTENCY_CONFLICT", **(body | {"amount": "2"}))
    assert "pay-bob-once" in err["message"]


def test_check_says_what_a_transfer_would_get_and_sends_nothing(world: World) -> None:
    nonce = world.evm.nonce(world.main)

    def check(**request: Any) -> dict[str, Any]:
        r = world.client.post(
            "/v1/agent/check",
            json={"action": "transfer", "request": request},
            headers=agent_headers(world.token),
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    base = {"wallet": "main", "asset": "native", "chain": "local", "amount": "0.01"}
    assert check(**base, to=BOB)["decision"] == "allow"
    assert check(**base, to=CAROL)["decision"] == "ask"
    assert check(**base, to=DAVE)["code"] == "NO_MATCHING_RULE"
    assert world.evm.nonce(world.main) == nonce


# -- attacks --------------------------------------------------------------------------------------


def test_attack_amounts_that_are_not_exact_whole_units_are_refused_naming_the_field(
    world: World,
) -> None:
    nonce = world.evm.nonce(world.main)
    cases = {
        "1.0000001": "more decimal places than TKN has (6)",  # finer than the token's unit
        "1e2": "plain decimal",
        "-1": "plain decimal",
        "NaN": "plain decimal",
        "Infinity": "plain decimal",
        "0x10": "plain decimal",
        "1,5": "plain decimal",
        "0": "more than zero",
        "0.000000": "more than zero",
    }
    for amount, words in cases.items():
        err = world.refused(
            400,
            "MALFORMED_REQUEST",
            wallet="main",
            asset="TKN",
            to=BOB,
            amount=amount,
            chain="local",
        )
        assert err["field"] == "amount" and words in err["message"], (amount, err)
    # A JSON number is not taken either: floats lose digits.
    r = world.transfer(wallet="main", asset="TKN", to=BOB, amount=0.1, chain="local")
    assert r.status_code == 400 and "amount" in r.text, r.text
    assert world.evm.nonce(world.main) == nonce


def test_attack_an_amount_written_in_base_units_is_judged_as_that_many_tokens(
    world: World,
) -> None:
    # An agent confused about decimals writes 5 TKN as 5000000: keysafe reads 5 million TKN
    # (the registry's 6 decimals), more than the wallet holds; within the balance, the policy
    # judges whole tokens too (150 TKN is over the 100 TKN cap). Nothing moves either way.
    before = world.evm.token_balance(world.tkn, BOB)
    err = world.refused(
        400,
        "MALFORMED_REQUEST",
        wallet="main",
        asset="TKN",
        to=BOB,
        amount="5000000",
        chain="local",
    )
    assert err["field"] == "amount" and "needs 5000000" in err["message"], err
    err = world.refused(
        403, "POLICY_DENIED", wallet="main", asset="TKN", to=BOB, amount="150", chain="local"
    )
    assert err["reason_code"] == "OVER_PER_TX_LIMIT" and "150 TKN" in err["message"], err
    assert world.evm.token_balance(world.tkn, BOB) == before


def test_attack_a_token_registered_with_the_wrong_decimals_is_refused(world: World) -> None:
    # Registered with 18 decimals, the token counts 6: "1" WIDE would be judged as 1 WIDE and
    # move 10^12 of them. keysafe asks the token and refuses.
    err = world.refused(
        400, "MALFORMED_REQUEST", wallet="main", asset="WIDE", to=BOB, amount="1", chain="local"
    )
    assert err["field"] == "asset" and "says it has 6 decimals" in err["message"], err


def test_attack_to_the_token_contract_or_the_zero_address_is_refused(world: World) -> None:
    for to in (world.tkn, world.tkn.lower(), DUP_A, "0x" + "0" * 40):
        err = world.refused(
            400, "MALFORMED_REQUEST", wallet="main", asset="TKN", to=to, amount="1", chain="local"
        )
        assert err["field"] == "to" and "lost" in err["message"], (to, err)
    # Mixed case with a wrong EIP-55 checksum: a typo, not an address.
    err = world.refused(
        400,
        "MALFORMED_REQUEST",
        wallet="main",
        asset="native",
        to="0xAbCdEf" + "0" * 34,
        amount="1",
        chain="local",
    )
    assert err["field"] == "to" and "checksum" in err["message"], err


def test_attack_a_chain_that_differs_from_the_wallet_or_the_asset_is_refused(
    world: World,
) -> None:
    err = world.refused(
        400,
        "MALFORMED_REQUEST",
        wallet="main",
        asset="native",
        to=BOB,
        amount="0.01",
        chain="solana-local",
    )
    assert err["field"] == "chain" and "EVM wallet" in err["message"]
    # TKN lives on `local`; on ethereum that symbol names nothing (and never ethereum's USDC).
    err = world.refused(
        404, "NOT_FOUND", wallet="main", asset="TKN", to=BOB, amount="1", chain="ethereum"
    )
    assert err["field"] == "asset" and "it is on local" in err["message"]
    err = world.refused(
        404, "NOT_FOUND", wallet="sol", asset="TKN", to=SOL_BOB, amount="1", chain="solana-local"
    )
    assert "list_capabilities" in err["next"]
    err = world.refused(
        400, "MALFORMED_REQUEST", wallet="main", asset="native", to=BOB, amount="0.01"
    )
    assert err["field"] == "chain" and "'chain' is needed" in err["message"]
    err = world.refused(404, "NOT_FOUND", wallet="main", asset="SUSD", to=BOB, amount="1")
    assert err["field"] == "asset" and "not registered on an EVM chain" in err["message"]
    err = world.refused(
        400,
        "MALFORMED_REQUEST",
        wallet="main",
        asset="native",
        to=BOB,
        amount="0.01",
        chain="no-such-chain",
    )
    assert err["field"] == "chain"


def test_attack_a_symbol_two_tokens_share_is_refused_as_ambiguous(world: World) -> None:
    err = world.refused(
        400, "MALFORMED_REQUEST", wallet="main", asset="DUP", to=BOB, amount="1", chain="local"
    )
    assert err["field"] == "asset" and "2 registered assets" in err["message"]
    assert DUP_A in err["message"] and DUP_B in err["message"]


def test_attack_a_hostile_rpc_quoting_absurd_fees_is_refused_by_the_fee_ceiling(
    world: World,
) -> None:
    world.hostile.methods.clear()
    err = world.refused(
        403, "POLICY_DENIED", wallet="main", asset="native", to=BOB, amount="0.01", chain="hostile"
    )
    assert err["reason_code"] == "FEE_TOO_HIGH"
    assert "eth_estimateGas" in world.hostile.methods
    assert "eth_sendRawTransaction" not in world.hostile.methods


# -- Solana on LiteSVM ----------------------------------------------------------------------------


def _instructions(signed_b64: str, wallet: str) -> list[str]:
    """The programs a signed transaction calls, after checking the wallet's signature."""
    tx = VersionedTransaction.from_bytes(base64.b64decode(signed_b64))
    keys = list(tx.message.account_keys)
    assert tx.verify_with_results()[keys.index(Pubkey.from_string(wallet))]
    return [str(keys[ix.program_id_index]) for ix in tx.message.instructions]


def test_spl_transfer_creates_the_recipients_token_account_then_reuses_it(
    world: World,
) -> None:
    assert world.solana.token_balance(world.susd, SOL_BOB) is None  # no account yet
    left = world.left("pay-sol", "SUSD")

    first = world.sent(wallet="sol", asset="SUSD", to=SOL_BOB, amount="2.5")

    assert world.solana.token_balance(world.susd, SOL_BOB) == 2_500_000
    assert first["summary"].startswith("send 2.5 SUSD") and SOL_BOB in first["summary"]
    programs = _instructions(first["signed_transaction"], world.sol)
    assert programs == [
        "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL",
        "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    ]
    # The account exists now: the second transfer is the token transfer alone.
    second = world.sent(wallet="sol", asset="SUSD", to=SOL_BOB, amount="1", chain="solana-local")
    assert _instructions(second["signed_transaction"], world.sol) == [programs[1]]
    assert world.solana.token_balance(world.susd, SOL_BOB) == 3_500_000
    assert left - world.left("pay-sol", "SUSD") == Decimal("3.5")


def test_sol_transfer_lands_and_an_spl_transfer_over_the_cap_is_denied(world: World) -> None:
    before = world.solana.balance(SOL_CAROL)
    world.sent(wallet="sol", asset="SOL", to=SOL_CAROL, amount="0.125", chain="solana-local")
    assert world.solana.balance(SOL_CAROL) - before == 125_000_000

    sent = len(world.solana.requests)
    err = world.refused(
        403, "POLICY_DENIED", wallet="sol", asset="SUSD", to=SOL_CAROL, amount="10.000001"
    )
    assert err["reason_code"] == "OVER_PER_TX_LIMIT"
    assert "sendTransaction" not in world.solana.methods()[sent:]
    assert world.solana.token_balance(world.susd, SOL_CAROL) is None


def test_attack_spl_transfer_to_a_token_account_or_the_mint_is_refused(world: World) -> None:
    wallet_account = str(
        get_associated_token_address(Pubkey.from_string(world.sol), Pubkey.from_string(world.susd))
    )
    for to in (wallet_account, world.susd):
        err = world.refused(400, "MALFORMED_REQUEST", wallet="sol", asset="SUSD", to=to, amount="1")
        assert err["field"] == "to" and "lost" in err["message"], (to, err)
