"""EVM and Solana wallet derivation, addresses and imported-key parsing.

Independent implementations used as references:
- EVM: eth-account's own HD wallet (`Account.from_mnemonic`, pure Python BIP-32), plus
  Hardhat's published default accounts for the "test ... junk" phrase.
- Solana: solders `Keypair.from_seed_and_derivation_path` (Rust, from solana-sdk's SLIP-10).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from coincurve import PrivateKey
from coincurve.utils import GROUP_ORDER, GROUP_ORDER_INT
from eth_account import Account
from mnemonic import Mnemonic
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from keysafe.chains.addresses import (
    EVM_PATH,
    SOLANA_PATH,
    derive_evm,
    derive_solana,
    evm_address_from_private,
    evm_address_from_public,
    is_evm_address,
    is_solana_address,
    parse_evm_private_key,
    parse_solana_private_key,
    solana_address_from_seed,
    to_checksum,
)
from keysafe.chains.base58 import base58_encode
from keysafe.crypto.secret import SecretBytes

PHRASE = "test test test test test test test test test test test junk"
SEED = Mnemonic.to_seed(PHRASE, "")

# Hardhat / Anvil default accounts 0 and 1 for PHRASE (published in their docs).
HARDHAT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
HARDHAT_1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


# --------------------------------------------------------------------------------------------
# Derivation


def test_paths() -> None:
    assert EVM_PATH.format(index=3) == "m/44'/60'/0'/0/3"
    assert SOLANA_PATH.format(index=3) == "m/44'/501'/3'/0'"


def test_evm_hardhat_accounts() -> None:
    assert derive_evm(SEED, 0)[1] == HARDHAT_0
    assert derive_evm(SEED, 1)[1] == HARDHAT_1


@pytest.fixture
def hdwallet() -> Iterator[None]:
    Account.enable_unaudited_hdwallet_features()
    yield


@pytest.mark.parametrize("index", range(5))
def test_evm_matches_eth_account(hdwallet: None, index: int) -> None:
    account = Account.from_mnemonic(PHRASE, account_path=EVM_PATH.format(index=index))
    key, address = derive_evm(SEED, index)
    assert isinstance(key, SecretBytes)
    assert bytes(key.reveal()) == bytes(account.key)
    assert address == account.address
    assert evm_address_from_private(key) == address


@pytest.mark.parametrize("index", range(5))
def test_solana_matches_solders(index: int) -> None:
    reference = Keypair.from_seed_and_derivation_path(SEED, SOLANA_PATH.format(index=index))
    key, address = derive_solana(SEED, index)
    assert isinstance(key, SecretBytes) and len(key) == 32
    assert bytes(key.reveal()) == bytes(reference)[:32]
    assert address == str(reference.pubkey())
    assert solana_address_from_seed(key) == address
    assert str(Keypair.from_seed(bytes(key.reveal())).pubkey()) == address


def test_accounts_differ_per_index() -> None:
    assert len({derive_evm(SEED, i)[1] for i in range(4)}) == 4
    assert len({derive_solana(SEED, i)[1] for i in range(4)}) == 4


@pytest.mark.parametrize("index", [-1, 2**31, True])
def test_bad_account_index(index: int) -> None:
    with pytest.raises(ValueError, match="account index"):
        derive_evm(SEED, index)
    with pytest.raises(ValueError, match="account index"):
        derive_solana(SEED, index)


# --------------------------------------------------------------------------------------------
# EVM addresses


def test_evm_address_from_public_forms() -> None:
    key, address = derive_evm(SEED, 0)
    pub = PrivateKey(bytes(key.reveal())).public_key
    uncompressed = pub.format(compressed=False)
    assert evm_address_from_public(pub.format(compressed=True)) == address
    assert evm_address_from_public(uncompressed) == address
    assert evm_address_from_public(uncompressed[1:]) == address
    with pytest.raises(ValueError, match="not a valid secp256k1 point"):
        evm_address_from_public(b"\x02" + bytes(31) + b"\x07")
    with pytest.raises(ValueError, match="33"):
        evm_address_from_public(bytes(20))


def test_evm_address_from_private_rejects_bad_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        evm_address_from_private(bytearray(31))
    with pytest.raises(ValueError, match="out of range"):
        evm_address_from_private(SecretBytes(bytes(32)))


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        (HARDHAT_0, True),
        (HARDHAT_0.lower(), True),
        ("0x" + HARDHAT_0[2:].upper(), True),
        (HARDHAT_0.replace("f39F", "f39f"), False),  # broken EIP-55 checksum
        (HARDHAT_0[2:], False),  # no 0x
        (HARDHAT_0[:-1], False),
        (HARDHAT_0 + "0", False),
        ("0x" + "g" * 40, False),
        (" " + HARDHAT_0, False),
        ("", False),
        (None, False),
        (b"0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", False),
    ],
)
def test_is_evm_address(text: object, valid: bool) -> None:
    assert is_evm_address(text) is valid


def test_to_checksum() -> None:
    assert to_checksum(HARDHAT_0.lower()) == HARDHAT_0
    assert to_checksum(HARDHAT_1.upper().replace("0X", "0x")) == HARDHAT_1
    assert to_checksum(HARDHAT_0) == HARDHAT_0
    with pytest.raises(ValueError, match="EIP-55"):
        to_checksum(HARDHAT_0.replace("f39F", "f39f"))
    with pytest.raises(ValueError):
        to_checksum("0x1234")


# --------------------------------------------------------------------------------------------
# Solana addresses


def test_is_solana_address() -> None:
    _, address = derive_solana(SEED, 0)
    assert is_solana_address(address)
    assert is_solana_address(str(Pubkey.default()))  # 32 zero bytes: "111...1"
    pda, _bump = Pubkey.find_program_address([b"seed"], Pubkey.from_string(address))
    assert is_solana_address(str(pda))  # off-curve addresses are addresses too
    assert not is_solana_address(address[:-1] + "0")  # '0' is not Base58
    assert not is_solana_address(address[:20])
    assert not is_solana_address(base58_encode(bytes(range(1, 34))))  # 33 bytes
    assert not is_solana_address(HARDHAT_0)
    assert not is_solana_address(None)
    assert not is_solana_address("")


# --------------------------------------------------------------------------------------------
# Imported EVM keys


def test_parse_evm_private_key_valid() -> None:
    key, _ = derive_evm(SEED, 0)
    hexkey = bytes(key.reveal()).hex()
    for text in (hexkey, "0x" + hexkey, "0X" + hexkey.upper(), f"  {hexkey}\n"):
        parsed = parse_evm_private_key(text)
        assert isinstance(parsed, SecretBytes)
        assert parsed == key
    assert evm_address_from_private(parse_evm_private_key(hexkey)) == HARDHAT_0
    n_minus_1 = (GROUP_ORDER_INT - 1).to_bytes(32, "big").hex()
    assert len(parse_evm_private_key(n_minus_1)) == 32
    assert len(parse_evm_private_key("00" * 31 + "01")) == 32


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "64 hex digits"),
        ("0x", "64 hex digits"),
        ("ab" * 31, "64 hex digits"),
        ("ab" * 33, "64 hex digits"),
        ("0x" + "ab" * 31 + "a", "64 hex digits"),
        ("zz" * 32, "64 hex digits"),
        ("ab " * 32, "64 hex digits"),  # bytes.fromhex would accept the spaces
        ("0xx" + "ab" * 32, "64 hex digits"),
        ("ab_" * 21 + "a", "64 hex digits"),
        ("00" * 32, "out of range"),
        (GROUP_ORDER.hex(), "out of range"),
        ("ff" * 32, "out of range"),
    ],
)
def test_parse_evm_private_key_invalid(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_evm_private_key(text)


# --------------------------------------------------------------------------------------------
# Imported Solana keys


def _reference_keypair() -> Keypair:
    return Keypair.from_seed_and_derivation_path(SEED, SOLANA_PATH.format(index=0))


def test_parse_solana_private_key_formats() -> None:
    reference = _reference_keypair()
    raw = bytes(reference)
    assert len(raw) == 64
    seed = SecretBytes(raw[:32])
    phantom = str(reference)  # Base58 of the 64-byte keypair, as Phantom exports it
    assert phantom == base58_encode(raw)
    keygen_file = json.dumps(list(raw))  # solana-keygen's id.json
    for text in (
        phantom,
        f"{phantom}\n",
        keygen_file,
        json.dumps(list(raw), indent=2),
        raw[:32].hex(),
        "0x" + raw[:32].hex(),
    ):
        parsed = parse_solana_private_key(text)
        assert isinstance(parsed, SecretBytes)
        assert parsed == seed
        assert solana_address_from_seed(parsed) == str(reference.pubkey())


def test_parse_solana_rejects_mismatched_public_half() -> None:
    raw = bytes(_reference_keypair())
    other = bytes(Keypair.from_seed_and_derivation_path(SEED, SOLANA_PATH.format(index=1)))
    forged = raw[:32] + other[32:]
    for text in (base58_encode(forged), json.dumps(list(forged))):
        with pytest.raises(ValueError, match="public half does not match"):
            parse_solana_private_key(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "wrong length"),
        ("[]", "array of 64"),
        ("[1, 2, 3]", "array of 64"),
        (json.dumps([0] * 63), "array of 64"),
        (json.dumps([0] * 65), "array of 64"),
        (json.dumps([256] + [0] * 63), "array of 64"),
        (json.dumps([-1] + [0] * 63), "array of 64"),
        (json.dumps([True] + [0] * 63), "array of 64"),
        (json.dumps([1.0] + [0] * 63), "array of 64"),
        (json.dumps(["1"] + [0] * 63), "array of 64"),
        ("[1, 2,", "array of 64"),
        ("not base58 at all!", "not recognised"),
        ("0OIl", "not recognised"),
        ("ab" * 31, "wrong length"),  # 62 hex digits, then not 64 bytes of Base58
        ("1" * 2000, "too long"),
    ],
)
def test_parse_solana_private_key_invalid(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_solana_private_key(text)


def test_parse_solana_rejects_an_address_with_a_hint() -> None:
    _, address = derive_solana(SEED, 0)
    with pytest.raises(ValueError, match="size of a Solana address"):
        parse_solana_private_key(address)


# --------------------------------------------------------------------------------------------
# Error messages never contain the input


CANARY = "CANARYxyz"


def _canary_inputs() -> list[str]:
    raw = bytes(_reference_keypair())
    other = bytes(Keypair.from_seed_and_derivation_path(SEED, SOLANA_PATH.format(index=1)))
    return [
        CANARY,
        f"0x{CANARY}{'a' * 55}",
        f"{CANARY}{'ab' * 28}",
        CANARY * 20,  # valid Base58, wrong length
        f'[1, 2, "{CANARY}"]',
        f'["{CANARY}"',  # JSONDecodeError keeps the input in .doc
        json.dumps([CANARY] * 64),
        base58_encode(raw[:32] + other[32:]),  # mismatched keypair
        json.dumps(list(raw[:32] + other[32:])),
    ]


def _exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


@pytest.mark.parametrize(
    ("parser", "extra"),
    [
        (parse_evm_private_key, ["f" * 64, "0x" + "0" * 64]),  # hex outside 1..n-1
        (parse_solana_private_key, [base58_encode(bytes(range(32)))]),  # an address
    ],
    ids=["evm", "solana"],
)
def test_errors_never_echo_input(parser: Callable[[str], SecretBytes], extra: list[str]) -> None:
    for text in [*_canary_inputs(), *extra]:
        with pytest.raises(ValueError) as info:
            parser(text)
        for exc in _exception_chain(info.value):
            rendered = (
                f"{exc!s} {exc!r} {exc.args!r} {vars(exc) if hasattr(exc, '__dict__') else ''}"
            )
            assert CANARY not in rendered
            assert text not in rendered
            assert text.strip()[:16] not in rendered
