"""EIP-712 against the published vectors in tests/vectors/eip712.

- The EIP's Mail example: every intermediate value, the digest and the exact RFC 6979 signature.
- eth-account's own signing test: both signatures, byte for byte.
- eth-account's message corpus: every valid message is accepted and signs; every invalid one is
  refused with MalformedRequestError by both the decoder and the signer.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account._utils.encode_typed_data.encoding_and_hashing import (
    encode_data,
    encode_type,
    hash_domain,
    hash_struct,
    hash_type,
)
from eth_account.messages import encode_typed_data

from keysafe.chains.evm.intents import intent_from_typed_data, typed_data_digest
from keysafe.chains.evm.signing import sign_typed_data
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError
from keysafe.policy.registry import Registry
from tests.vectors import load_json

REG = Registry.builtin()
ETHEREUM = REG.chain("ethereum")
HALF_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2

MAIL = load_json("eip712/eip712_mail_example.json")
ETH_ACCOUNT = load_json("eip712/eth_account_sign_typed_data.json")
VALID = load_json("eip712/eth-account/valid_for_all.json")
INVALID = load_json("eip712/eth-account/invalid.json")


def _key(hex_key: str) -> SecretBytes:
    return SecretBytes(bytes.fromhex(hex_key.removeprefix("0x")))


def _h(value: bytes) -> str:
    return "0x" + bytes(value).hex()


# ---- the EIP's Mail example ---------------------------------------------------------------


def test_mail_example_intermediate_hashes() -> None:
    doc, expected = MAIL["typed_data"], MAIL["expected"]
    types = doc["types"]
    assert encode_type("Mail", types) == expected["encodeType_Mail"]
    assert _h(hash_type("Mail", types)) == expected["typeHash_Mail"]
    assert _h(encode_data("Mail", types, doc["message"])) == expected["encodeData_Mail"]
    assert _h(hash_struct("Mail", types, doc["message"])) == expected["hashStruct_Mail"]
    assert _h(hash_domain(doc["domain"])) == expected["domainSeparator"]


def test_mail_example_digest() -> None:
    assert _h(typed_data_digest(MAIL["typed_data"])) == MAIL["expected"]["digest"]


def test_mail_example_exact_signature_with_cow_key() -> None:
    expected = MAIL["expected"]["signature"]
    signature = sign_typed_data(MAIL["typed_data"], _key(MAIL["private_key"]))
    assert signature == expected["rsv"]
    sig = bytes.fromhex(signature[2:])
    assert _h(sig[:32]) == expected["r"]
    assert _h(sig[32:64]) == expected["s"]
    assert sig[64] == expected["v"] == 28
    assert int.from_bytes(sig[32:64], "big") <= HALF_N
    signable = encode_typed_data(full_message=MAIL["typed_data"])
    recovered = Account.recover_message(signable, signature=sig)
    assert recovered.lower() == MAIL["expected"]["signer_address"]


def test_mail_example_decodes_as_typed_data_on_ethereum() -> None:
    intent = intent_from_typed_data(MAIL["typed_data"], registry=REG, chain=ETHEREUM)
    assert intent.action == "evm.sign_typed_data"
    assert intent.domain == {
        "name": "Ether Mail",
        "version": "1",
        "chainId": 1,
        "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
    }
    assert intent.contract == "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
    assert intent.summary == (
        'sign typed data for "Ether Mail" (0xCcCC…cccC on Ethereum) as a "Mail" message'
    )


def test_mail_example_is_refused_on_another_chain() -> None:
    with pytest.raises(MalformedRequestError, match="chain id 1, but the request is for base"):
        intent_from_typed_data(MAIL["typed_data"], registry=REG, chain=REG.chain("base"))


# ---- eth-account's signing test -----------------------------------------------------------


def _full(vector: dict[str, Any]) -> dict[str, Any]:
    # The vector omits EIP712Domain, as eth-account's 3-argument form does; v4 allows that.
    return {
        "types": vector["types"],
        "primaryType": vector["primaryType"],
        "domain": vector["domain"],
        "message": vector["message"],
    }


@pytest.mark.parametrize("vector", ETH_ACCOUNT["vectors"], ids=lambda v: v["name"])
def test_eth_account_signatures_match_exactly(vector: dict[str, Any]) -> None:
    key = _key(ETH_ACCOUNT["private_key"])
    assert sign_typed_data(_full(vector), key) == vector["expected_signature"]
    intent = intent_from_typed_data(_full(vector), registry=REG, chain=ETHEREUM)
    assert intent.action == "evm.sign_typed_data"


# ---- eth-account's corpus -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_for_all_is_accepted_and_signs(name: str) -> None:
    doc = VALID[name]
    intent = intent_from_typed_data(doc, registry=REG, chain=ETHEREUM)
    assert intent.action == "evm.sign_typed_data"
    assert intent.domain is not None and intent.domain["chainId"] == 1
    key = _key(MAIL["private_key"])
    signature = sign_typed_data(doc, key)
    recovered = Account.recover_message(
        encode_typed_data(full_message=doc), signature=bytes.fromhex(signature[2:])
    )
    assert recovered.lower() == MAIL["expected"]["signer_address"]


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_is_refused_by_decoder_and_signer(name: str) -> None:
    doc = INVALID[name]
    with pytest.raises(MalformedRequestError) as decoded:
        intent_from_typed_data(doc, registry=REG, chain=ETHEREUM)
    with pytest.raises(MalformedRequestError):
        sign_typed_data(doc, _key(MAIL["private_key"]))
    message = str(decoded.value)
    assert message.startswith("typed data is not valid EIP-712")
    assert len(message) < 400, "the refusal must not echo the document"
