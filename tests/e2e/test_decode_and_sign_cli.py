"""Black-box: `keysafe decode` (no vault) and `keysafe wallet sign-message` (the owner)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct
from nacl.signing import VerifyKey
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from tests.conftest import HARDHAT_ADDRESS_0, HARDHAT_PHRASE, Cli

USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
BOB = "0x1111111111111111111111111111111111111111"


def _decode(
    cli: Cli, tmp_path: Path, payload: str, *extra: str
) -> tuple[int, dict[str, object] | str]:
    f = tmp_path / "payload.txt"
    f.write_text(payload)
    r = cli("decode", str(f), "--json", *extra)
    return r.exit_code, (json.loads(r.stdout) if r.exit_code == 0 else r.stderr)


def test_decode_usdc_transfer_on_base_without_a_vault(keysafe: Cli, tmp_path: Path) -> None:
    data = "0xa9059cbb" + encode(["address", "uint256"], [BOB, 25_000_000]).hex()
    tx = {
        "to": USDC_BASE,
        "data": data,
        "value": "0x0",
        "chainId": 8453,
        "nonce": 0,
        "gas": 60000,
        "maxFeePerGas": "0x3b9aca00",
        "maxPriorityFeePerGas": "0x1",
    }
    code, out = _decode(keysafe, tmp_path, json.dumps(tx))
    assert code == 0, out
    assert isinstance(out, dict)
    assert (out["action"], out["chain_id"], out["asset"], out["amount"]) == (
        "evm.transfer",
        8453,
        "USDC",
        "25",
    )
    assert str(out["to"]).lower() == BOB
    assert str(out["contract"]).lower() == USDC_BASE.lower()
    assert out["selector"] == "0xa9059cbb"
    assert "25 USDC" in str(out["summary"])
    assert not keysafe.home.exists()  # decoding needs no vault and creates none


def test_decode_unlimited_approval_prints_unlimited(keysafe: Cli, tmp_path: Path) -> None:
    data = "0x095ea7b3" + encode(["address", "uint256"], ["0x" + "de" * 20, 2**256 - 1]).hex()
    tx = {
        "to": USDC_BASE,
        "data": data,
        "value": 0,
        "chainId": 8453,
        "nonce": 1,
        "gas": 60000,
        "gasPrice": 1000,
    }
    code, out = _decode(keysafe, tmp_path, json.dumps(tx))
    assert code == 0, out
    assert isinstance(out, dict)
    assert (out["action"], out["amount"]) == ("evm.approve", "unlimited")
    assert str(out["spender"]).lower() == "0x" + "de" * 20
    assert "UNLIMITED" in str(out["summary"]).upper()


def test_decode_chain_that_contradicts_the_transaction_is_malformed(
    keysafe: Cli, tmp_path: Path
) -> None:
    tx = {"to": BOB, "value": "0x1", "chainId": 8453, "nonce": 0, "gas": 21000, "gasPrice": 1}
    code, out = _decode(keysafe, tmp_path, json.dumps(tx), "--chain", "ethereum")
    assert code == 1
    assert str(out).startswith("Error [MALFORMED_REQUEST]:")
    assert len(str(out).strip().splitlines()) == 1


def test_decode_garbage_is_malformed_with_one_line(keysafe: Cli, tmp_path: Path) -> None:
    code, out = _decode(keysafe, tmp_path, "0x02zz-not-rlp")
    assert code == 1
    assert "MALFORMED_REQUEST" in str(out)
    assert "Traceback" not in str(out)


def test_decode_solana_system_transfer(keysafe: Cli, tmp_path: Path) -> None:
    payer = Keypair()
    to = Pubkey.new_unique()
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=500_000_000))
    msg = MessageV0.try_compile(payer.pubkey(), [ix], [], Hash.default())
    tx = VersionedTransaction(msg, [payer])
    code, out = _decode(keysafe, tmp_path, base64.b64encode(bytes(tx)).decode())
    assert code == 0, out
    assert isinstance(out, dict)
    assert (out["action"], out["asset"], out["amount"], out["to"]) == (
        "solana.transfer",
        "SOL",
        "0.5",
        str(to),
    )


def test_wallet_sign_message_evm_recovers_to_the_wallet(keysafe: Cli) -> None:
    keysafe.ok("recover", input=HARDHAT_PHRASE + "\n")
    keysafe.ok("wallet", "create", "main", "--chain", "evm")
    out = json.loads(keysafe.ok("wallet", "sign-message", "main", "hello keysafe", "--json").stdout)
    assert out["address"] == HARDHAT_ADDRESS_0
    signer = Account.recover_message(
        encode_defunct(text="hello keysafe"), signature=out["signature"]
    )
    assert signer == HARDHAT_ADDRESS_0


def test_wallet_sign_message_solana_verifies_with_the_address(vault: Cli) -> None:
    from solders.signature import Signature

    address = json.loads(vault.ok("wallet", "create", "sol", "--chain", "solana", "--json").stdout)[
        "address"
    ]
    out = json.loads(vault.ok("wallet", "sign-message", "sol", "gm", "--json").stdout)
    assert out["address"] == address
    signature = bytes(Signature.from_string(out["signature"]))
    VerifyKey(bytes(Pubkey.from_string(address))).verify(b"gm", signature)
