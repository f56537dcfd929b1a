"""Solana value moves that are not `transfer`, judged through the real server over HTTP.

Before, System createAccount/createAccountWithSeed/transferWithSeed/withdrawNonceAccount and SPL
approve/setAuthority/closeAccount all decoded as `solana.call`: an agent whose policy allows
calls could move 100 SOL past a 1 SOL transfer cap, approve a stranger for a token's whole
supply, or hand its accounts away, and keysafe signed it. Each `test_attack_…` here was signed
(200) on the base commit; now each is judged by what it moves and refused (403), while the
same moves within the policy still sign. A transaction that hides one move beside another is
refused as malformed (400).

The vault: one Solana wallet `sol` (imported from the unit tests' fixed seed, so the builders'
WALLET is its address), USDC registered on solana, agent `bot` under `POLICY`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from solders.instruction import Instruction
from solders.pubkey import Pubkey
from solders.system_program import AssignParams, assign
from solders.transaction import VersionedTransaction

from tests.conftest import Cli
from tests.e2e.server_fixture import (
    add_agent,
    agent_headers,
    cli_env,
    error_of,
    keysafe_server,
)
from tests.unit.chains.solana import (
    JUPITER,
    MALLORY,
    SOL,
    SPONSOR,
    U64_MAX,
    USDC_MINT,
    WALLET,
    WALLET_KP,
    WALLET_USDC,
    close_account,
    legacy_b64,
    sol_create_account,
    sol_create_with_seed,
    sol_transfer_with_seed,
    sol_withdraw_nonce,
    spl_approve,
    spl_approve_checked,
    spl_set_authority,
)

SIGN = "/v1/agent/sign-transaction"

# Calls allowed, a broad rule for anything limited on solana (USDC capped at 10), and a 1 SOL
# cap on transfers. Valid on the base commit too, so the attacks can be shown to sign there.
POLICY = """\
version: 1
rules:
  - name: programs
    allow: [solana.call]
    wallets: [sol]
    chains: [solana]
  - name: broad
    allow: ["*"]
    wallets: [sol]
    chains: [solana]
    when: {unlimited: false}
    max_per_tx: {USDC: "10"}
  - name: pay
    allow: [solana.transfer]
    wallets: [sol]
    chains: [solana]
    assets: [SOL]
    max_per_tx: {SOL: "1"}
"""


@dataclass
class Running:
    client: httpx.Client
    token: str

    def sign(self, ixs: list[Instruction], *, payer: Pubkey = WALLET) -> httpx.Response:
        body = {"wallet": "sol", "chain": "solana", "transaction": legacy_b64(ixs, payer=payer)}
        return self.client.post(SIGN, json=body, headers=agent_headers(self.token))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("solana-value-moves")
    home = root / "home"
    cli = Cli(home, cli_env(home))
    cli.ok("init", "--json")
    made = json.loads(
        cli.ok(
            "wallet", "import", "sol", "--chain", "solana", "--json", input=str(WALLET_KP)
        ).stdout
    )
    assert made["address"] == str(WALLET)
    cli.ok(
        "asset", "add", "USDC", "--chain", "solana", "--address", str(USDC_MINT), "--decimals", "6"
    )
    policy = root / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    token = add_agent(cli, "bot", policy)
    with keysafe_server(cli_env(home), "--unlock", log_dir=root) as server, server.client() as c:
        yield Running(c, token)


def _signed_by_wallet(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "signed", body
    tx = VersionedTransaction.from_bytes(base64.b64decode(body["signed_transaction"]))
    slot = list(tx.message.account_keys).index(WALLET)
    assert tx.verify_with_results()[slot]


def _refused(r: httpx.Response, code: str, *words: str) -> dict[str, str]:
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert err["code"] == code, err
    for w in words:
        assert w in err["message"], err
    assert "signed_transaction" not in r.text
    return err


# -- lamports moved by System instructions other than `transfer` ------------------------------

_LAMPORT_MOVES: dict[str, Callable[[], tuple[list[Instruction], Pubkey]]] = {
    # The new account must sign: here it is the fee payer, as keysafe allows one co-signer.
    "createAccount": lambda: ([sol_create_account(SPONSOR, 100 * SOL, JUPITER)], SPONSOR),
    "createAccountWithSeed": lambda: ([sol_create_with_seed("x", 100 * SOL, JUPITER)], WALLET),
    "transferWithSeed": lambda: ([sol_transfer_with_seed("x", MALLORY, 100 * SOL)], WALLET),
    "withdrawNonceAccount": lambda: ([sol_withdraw_nonce(MALLORY, 100 * SOL)], WALLET),
}


@pytest.mark.parametrize("name", list(_LAMPORT_MOVES))
def test_attack_100_sol_moved_outside_a_transfer_is_held_to_the_1_sol_cap(
    running: Running, name: str
) -> None:
    ixs, payer = _LAMPORT_MOVES[name]()
    err = _refused(running.sign(ixs, payer=payer), "POLICY_DENIED", "at most 1 SOL", "100 SOL")
    assert err["rule"] == "pay"


def test_create_account_with_seed_within_the_cap_is_signed(running: Running) -> None:
    _signed_by_wallet(running.sign([sol_create_with_seed("rent", SOL // 100, JUPITER)]))


# -- SPL approvals -------------------------------------------------------------------------


def test_attack_unlimited_spl_approval_is_refused_by_a_limited_only_rule(
    running: Running,
) -> None:
    ix = spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, U64_MAX, 6)
    _refused(running.sign([ix]), "POLICY_DENIED", "No rule", "allows solana.approve")


def test_attack_spl_approval_over_the_usdc_cap_is_refused(running: Running) -> None:
    ix = spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, 50_000_000, 6)
    err = _refused(running.sign([ix]), "POLICY_DENIED", "at most 10 USDC", "50 USDC")
    assert err["rule"] == "broad"


def test_attack_plain_spl_approval_without_a_mint_is_refused(running: Running) -> None:
    _refused(running.sign([spl_approve(WALLET_USDC, MALLORY, 1)]), "POLICY_DENIED")


def test_limited_spl_approval_within_the_cap_is_signed(running: Running) -> None:
    ix = spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, 5_000_000, 6)
    _signed_by_wallet(running.sign([ix]))


# -- handing accounts away -------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: spl_set_authority(WALLET_USDC, 2, MALLORY),  # AccountOwner
        lambda: assign(AssignParams(pubkey=WALLET, owner=JUPITER)),
        lambda: close_account(WALLET_USDC, MALLORY),
    ],
    ids=["setAuthority AccountOwner", "assign the wallet", "closeAccount to a stranger"],
)
def test_attack_handing_an_account_or_its_sol_away_needs_a_rule_that_names_it(
    running: Running, build: Callable[[], Instruction]
) -> None:
    err = _refused(running.sign([build()]), "POLICY_DENIED", "No rule")
    assert "solana.set_authority" in err["message"] or "solana.close_account" in err["message"]


def test_attack_approval_hidden_beside_a_transfer_is_refused(running: Running) -> None:
    ixs = [
        sol_create_with_seed("x", SOL // 100, JUPITER),
        spl_approve_checked(WALLET_USDC, USDC_MINT, MALLORY, U64_MAX, 6),
    ]
    r = running.sign(ixs)
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "MALFORMED_REQUEST"
    assert "only on its own" in err["message"]
