"""The private key never appears in any output, log, audit row or exception text (chains issue, 4).

A random canary key is imported; every signing path (EVM transaction, personal message, typed
data; Solana transaction and message), allowed and refused, runs with logging captured. The key
is then searched for, as hex (both cases), raw bytes and base58/base64, everywhere.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import KeysafeError
from keysafe.service import agents, policies, signing, wallets
from keysafe.service.models import SignMessageRequest, SignTransactionRequest, SignTypedDataRequest
from keysafe.service.vault_admin import init_vault
from keysafe.testing import CHEAP_KDF
from keysafe.vault.home import Home

BOB = "0x1111111111111111111111111111111111111111"
POLICY = (
    """
version: 1
rules:
  - name: small
    allow: [evm.transfer, evm.sign_message, evm.sign_typed_data, solana.transfer, """
    """solana.sign_message]
    wallets: [evm, sol]
    max_per_tx: {ETH: "0.01", SOL: "0.01"}
"""
)
MAIL = {
    "types": {
        "EIP712Domain": [
            {"name": "name", "type": "string"},
            {"name": "chainId", "type": "uint256"},
        ],
        "Mail": [{"name": "contents", "type": "string"}],
    },
    "primaryType": "Mail",
    "domain": {"name": "Ether Mail", "chainId": 1},
    "message": {"contents": "Hello, Bob!"},
}


def _forms(key: bytes) -> list[bytes]:
    from solders.keypair import Keypair as K

    forms = [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key)]
    if len(key) == 32:
        forms.append(str(K.from_seed(key)).encode())  # base58 of the 64-byte keypair
    return forms


def _scan(haystack: bytes, key: bytes) -> None:
    for form in _forms(key):
        assert form not in haystack, "the private key leaked"


def test_private_keys_never_leave_in_outputs_logs_audit_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    evm_key = os.urandom(32)
    sol_seed = os.urandom(32)
    home = Home(tmp_path / "home")
    vault, _ = init_vault(
        home,
        SecretBytes(bytearray(b"passphrase-123")),
        kdf=CHEAP_KDF,
        clock=lambda: datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    )
    outputs: list[Any] = []
    with caplog.at_level(logging.DEBUG):
        evm = wallets.import_wallet(
            vault, "evm", Chain.EVM, SecretBytes(bytearray(evm_key.hex().encode()))
        )
        sol = wallets.import_wallet(
            vault, "sol", Chain.SOLANA, SecretBytes(bytearray(sol_seed.hex().encode()))
        )
        agents.add_agent(vault, "bot")
        policies.set_policy(vault, "bot", POLICY)
        base = {"to": BOB, "chainId": 1, "nonce": 0, "gas": 21000, "gasPrice": 10**9}
        calls = [
            lambda: signing.sign_transaction(
                vault,
                "bot",
                SignTransactionRequest(wallet="evm", transaction=base | {"value": hex(10**15)}),
            ),
            lambda: signing.sign_transaction(
                vault,
                "bot",
                SignTransactionRequest(wallet="evm", transaction=base | {"value": hex(10**18)}),
            ),  # denied
            lambda: signing.sign_transaction(
                vault,
                "bot",
                SignTransactionRequest(
                    wallet="evm", transaction=base | {"value": "0x1"}, declared={"amount": "5"}
                ),
            ),
            lambda: signing.sign_message(
                vault, "bot", SignMessageRequest(wallet="evm", message="hello")
            ),
            lambda: signing.sign_typed_data(
                vault, "bot", SignTypedDataRequest(wallet="evm", typed_data=MAIL)
            ),
            lambda: signing.sign_message_as_owner(vault, "sol", "gm"),
        ]
        payer = Pubkey.from_string(sol.address)
        ix = transfer(
            TransferParams(from_pubkey=payer, to_pubkey=Pubkey.new_unique(), lamports=1_000_000)
        )
        msg = MessageV0.try_compile(payer, [ix], [], Hash.default())
        unsigned = VersionedTransaction.populate(
            msg, [Keypair().sign_message(b"x")]
        )  # placeholder sig
        sol_b64 = base64.b64encode(bytes(unsigned)).decode()
        calls.append(
            lambda: signing.sign_transaction(
                vault, "bot", SignTransactionRequest(wallet="sol", transaction=sol_b64)
            )
        )
        for call in calls:
            try:
                outputs.append(call().model_dump(mode="json"))
            except KeysafeError as exc:
                outputs.append({"error": exc.to_dict(), "str": str(exc), "repr": repr(exc)})
    assert any("error" not in o for o in outputs), outputs
    assert any("error" in o for o in outputs), outputs
    blob = json.dumps(outputs).encode() + caplog.text.encode()
    with vault.db.read() as conn:
        from keysafe.store import tables as t

        blob += json.dumps([dict(r._mapping) for r in conn.execute(t.audit.select())]).encode()
    for f in home.path.iterdir():
        blob += f.read_bytes()  # the database itself: keys are stored only encrypted
    _scan(blob, evm_key)
    _scan(blob, sol_seed)
    assert evm.address.lower() in blob.decode("latin-1").lower()  # the scan really saw the outputs
