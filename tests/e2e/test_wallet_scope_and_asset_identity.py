"""Issue 12, holes 4 and 6, over the real server's HTTP API.

Hole 4: an agent could sign with any vault wallet its chain rules covered. Now signing rules name
their wallets: an agent whose rules name `main` is refused NO_MATCHING_RULE when it signs from a
second EVM wallet `b`, and neither its capabilities nor `address/b` show `b`.

Hole 6: budget usage was summed per symbol in raw base units, so an 18-decimal "USDC" the owner
registered on the local chain rode on the 6-decimal USDC's window (10 USDC on ethereum used
0.00000000001 of the 18-decimal one's budget). Now a window of 10 USDC holds 10 USDC in token
units across both, each converted with its own decimals.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Cli
from tests.e2e.server_fixture import (
    GWEI,
    MILLI_ETH,
    R1,
    Server,
    add_agent,
    agent_headers,
    cli_env,
    copy_home,
    error_of,
    evm_tx,
    keysafe_server,
    standard_vault,
)

SIGN = "/v1/agent/sign-transaction"
USDC_ON_ETHEREUM = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"  # built in, 6 decimals
USDC18_ON_LOCAL = "0x" + "18" * 20  # registered by the test as "USDC" with 18 decimals
CHAIN_IDS = {"ethereum": 1, "local": 31337}

USDC_POLICY = f"""\
version: 1
rules:
  - name: usdc-on-two-chains
    allow: [evm.transfer]
    wallets: [main]
    chains: [ethereum, local]
    assets: [USDC]
    recipients: ["{R1}"]
    limits:
      - {{window: 24h, max: {{USDC: "10"}}}}
"""


def usdc_transfer(chain: str, base_units: int, *, nonce: int) -> dict[str, Any]:
    """A complete ERC-20 transfer(R1, base_units) of the chain's USDC: no RPC fills anything."""
    token = USDC_ON_ETHEREUM if chain == "ethereum" else USDC18_ON_LOCAL
    data = "0xa9059cbb" + R1[2:].lower().rjust(64, "0") + f"{base_units:064x}"
    return {
        "to": token,
        "value": "0x0",
        "data": data,
        "chainId": CHAIN_IDS[chain],
        "nonce": nonce,
        "gas": 60000,
        "gasPrice": hex(GWEI),
    }


@dataclass
class Running:
    server: Server
    client: httpx.Client
    headers: dict[str, str]

    def sign(self, wallet: str, transaction: dict[str, Any]) -> httpx.Response:
        body = {"wallet": wallet, "transaction": transaction}
        return self.client.post(SIGN, json=body, headers=self.headers)


@pytest.fixture
def two_wallets(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Running]:
    """The standard vault (agent `bot`: rules name wallet `main`) plus a second EVM wallet `b`."""
    vault = standard_vault(tmp_path_factory)
    home = copy_home(vault, tmp_path)
    Cli(home, cli_env(home)).ok("wallet", "create", "b", "--chain", "evm")
    with (
        keysafe_server(cli_env(home), "--unlock", log_dir=tmp_path) as server,
        server.client() as c,
    ):
        yield Running(server, c, agent_headers(vault.tokens["bot"]))


def test_attack_agent_signs_from_a_wallet_no_rule_names_is_refused(
    two_wallets: Running,
) -> None:
    run = two_wallets
    stolen = run.sign("b", evm_tx(MILLI_ETH, to=R1))
    assert stolen.status_code == 403, stolen.text
    err = error_of(stolen)
    assert (err["code"], err["reason_code"]) == ("POLICY_DENIED", "NO_MATCHING_RULE")
    assert "from wallet 'b'" in err["message"]
    assert "signed_transaction" not in stolen.text
    # the same transaction from the wallet the rule names still signs
    own = run.sign("main", evm_tx(MILLI_ETH, to=R1))
    assert own.status_code == 200, own.text
    assert own.json()["wallet"] == "main"


def test_attack_agent_does_not_see_a_wallet_no_rule_names(two_wallets: Running) -> None:
    run = two_wallets
    caps = run.client.get("/v1/agent/capabilities", headers=run.headers)
    assert caps.status_code == 200, caps.text
    assert [w["name"] for w in caps.json()["wallets"]] == ["main"]
    assert run.client.get("/v1/agent/address/main", headers=run.headers).status_code == 200
    hidden = run.client.get("/v1/agent/address/b", headers=run.headers)
    assert hidden.status_code == 404, hidden.text
    assert error_of(hidden)["code"] == "NOT_FOUND"


@pytest.fixture
def usdc_on_two_chains(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> Iterator[Running]:
    """The standard vault with an 18-decimal "USDC" on `local` and agent `usdc-bot` whose one
    rule spends USDC on ethereum and local under a 24h window of 10 USDC."""
    vault = standard_vault(tmp_path_factory)
    home = copy_home(vault, tmp_path)
    cli = Cli(home, cli_env(home))
    cli.ok(
        "asset", "add", "USDC", "--chain", "local", "--address", USDC18_ON_LOCAL, "--decimals", "18"
    )
    policy = tmp_path / "usdc.yaml"
    policy.write_text(USDC_POLICY, encoding="utf-8")
    token = add_agent(cli, "usdc-bot", policy)
    with (
        keysafe_server(cli_env(home), "--unlock", log_dir=tmp_path) as server,
        server.client() as c,
    ):
        yield Running(server, c, agent_headers(token))


def test_attack_same_symbol_other_decimals_cannot_ride_on_one_budget(
    usdc_on_two_chains: Running,
) -> None:
    run = usdc_on_two_chains
    six = run.sign("main", usdc_transfer("ethereum", 6 * 10**6, nonce=0))
    assert six.status_code == 200, six.text
    # 6 + 5 USDC is over the window of 10, though the 5 counts 5 * 10**18 base units of its own
    over = run.sign("main", usdc_transfer("local", 5 * 10**18, nonce=1))
    assert over.status_code == 403, over.text
    err = error_of(over)
    assert (err["code"], err["rule"]) == ("BUDGET_EXCEEDED", "usdc-on-two-chains")
    assert "4 USDC left" in err["message"]
    # what is left is 4 USDC in token units, in either asset's own base units
    four = run.sign("main", usdc_transfer("local", 4 * 10**18, nonce=1))
    assert four.status_code == 200, four.text
    dust = run.sign("main", usdc_transfer("ethereum", 1, nonce=2))
    assert dust.status_code == 403, dust.text
    assert error_of(dust)["code"] == "BUDGET_EXCEEDED"
    caps = run.client.get("/v1/agent/capabilities", headers=run.headers).json()
    assert [(b["asset"], b["limit"], b["left"]) for b in caps["budget"]] == [("USDC", "10", "0")]
