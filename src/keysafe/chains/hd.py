"""Hierarchical deterministic key derivation: BIP-32 (secp256k1) and SLIP-10 (ed25519).

keysafe derives every wallet from the vault's BIP-39 seed so that addresses match the common
wallets: MetaMask derives EVM keys with BIP-32 along m/44'/60'/0'/0/i, Phantom derives Solana
keys with SLIP-10 ed25519 along m/44'/501'/i'/0'.

Only the derivation protocol is written here. The primitives come from libraries: HMAC-SHA512
from `hmac`/`hashlib`, secp256k1 arithmetic from coincurve (libsecp256k1), Ed25519 from PyNaCl
(libsodium), HASH160 from hashlib (RIPEMD-160 from pycryptodome where OpenSSL lacks it).

Private keys travel as `SecretBytes`; intermediate buffers are bytearrays that are zeroed when no
longer needed. As `SecretBytes` explains, this is best effort: the libraries copy into `bytes`.

Extended keys as xprv/xpub strings are in `keysafe.chains.extended_keys`; Base58 is in
`keysafe.chains.base58`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from coincurve import PrivateKey, PublicKey
from coincurve.utils import GROUP_ORDER_INT
from nacl.signing import SigningKey

from keysafe.chains._buffers import wipe
from keysafe.crypto.secret import SecretBytes

__all__ = [
    "HARDENED",
    "DerivedPublic",
    "ExtendedPrivateKey",
    "ExtendedPublicKey",
    "bip32_ckd_priv",
    "bip32_ckd_pub",
    "bip32_derive",
    "bip32_derive_public",
    "bip32_fingerprint",
    "bip32_master",
    "bip32_neuter",
    "bip32_public_key",
    "format_path",
    "hash160",
    "is_valid_secp256k1_secret",
    "parse_path",
    "slip10_ed25519_derive",
    "slip10_ed25519_master",
    "slip10_ed25519_public",
]

HARDENED = 0x8000_0000
_K = TypeVar("_K", SecretBytes, bytes)  # the key of an extended key: private or public
_MAX_INDEX = 0xFFFF_FFFF
_MAX_DEPTH = 255
_MIN_SEED_LEN = 16  # BIP-32: the seed is 128 to 512 bits
_MAX_SEED_LEN = 64

_BIP32_SEED_KEY = b"Bitcoin seed"
_ED25519_SEED_KEY = b"ed25519 seed"


# --------------------------------------------------------------------------------------------
# Paths


_PATH_COMPONENT = re.compile(r"(0|[1-9][0-9]*)(['hH]?)")


def parse_path(path: str) -> list[int]:
    """Parse "m/44'/60'/0'/0/0" into child indices; `'`, `h` or `H` marks a hardened step.

    "m" alone is the master key (empty list). Raises ValueError saying what is wrong.
    """
    if not isinstance(path, str):
        raise ValueError("derivation path must be a string such as \"m/44'/60'/0'/0/0\"")
    if path == "":
        raise ValueError("derivation path is empty; expected it to start with 'm'")
    parts = path.split("/")
    if parts[0] != "m":
        raise ValueError("derivation path must start with 'm' (for example \"m/44'/60'/0'/0/0\")")
    indices: list[int] = []
    for position, part in enumerate(parts[1:], start=1):
        if part == "":
            raise ValueError(
                f"derivation path component {position} is empty (doubled or trailing '/')"
            )
        match = _PATH_COMPONENT.fullmatch(part)
        if match is None:
            raise ValueError(
                f"derivation path component {position} ({part!r}) is not a decimal index "
                "optionally followed by ' or h (no signs, spaces or leading zeros)"
            )
        number = int(match.group(1))
        if number >= HARDENED:
            raise ValueError(
                f"derivation path component {position} ({part!r}) is out of range: "
                f"indices must be below 2^31 ({HARDENED}); mark hardened steps with '"
            )
        indices.append(number + HARDENED if match.group(2) else number)
    if len(indices) > _MAX_DEPTH:
        raise ValueError(f"derivation path is deeper than {_MAX_DEPTH} levels")
    return indices


def format_path(indices: Sequence[int]) -> str:
    """The inverse of `parse_path`, writing hardened steps with `'`."""
    parts = ["m"]
    for index in _check_indices(indices):
        parts.append(f"{index - HARDENED}'" if index >= HARDENED else str(index))
    return "/".join(parts)


def _check_index(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError("child index must be an int")
    if not 0 <= index <= _MAX_INDEX:
        raise ValueError("child index must be in 0..2^32-1")
    return index


def _check_indices(indices: Sequence[int]) -> list[int]:
    checked = [_check_index(i) for i in indices]
    if len(checked) > _MAX_DEPTH:
        raise ValueError(f"derivation path is deeper than {_MAX_DEPTH} levels")
    return checked


def _resolve_path(path: str | Sequence[int]) -> list[int]:
    return parse_path(path) if isinstance(path, str) else _check_indices(path)


# --------------------------------------------------------------------------------------------
# Hashes


def _ripemd160_hashlib(data: bytes) -> bytes:
    return hashlib.new("ripemd160", data).digest()


def _ripemd160_pycryptodome(data: bytes) -> bytes:
    from Crypto.Hash import RIPEMD160  # pycryptodome, pulled in by eth-account

    return RIPEMD160.new(data).digest()


def _pick_ripemd160() -> Callable[[bytes], bytes]:
    # OpenSSL 3 moved RIPEMD-160 to the legacy provider, so hashlib may not have it.
    try:
        _ripemd160_hashlib(b"")
    except ValueError:
        return _ripemd160_pycryptodome
    return _ripemd160_hashlib


_ripemd160 = _pick_ripemd160()


def hash160(data: bytes | bytearray) -> bytes:
    """RIPEMD-160(SHA-256(data))."""
    return _ripemd160(hashlib.sha256(data).digest())


def bip32_fingerprint(pub33: bytes | bytearray) -> bytes:
    """First 4 bytes of HASH160 of a 33-byte serialized public key.

    For secp256k1 that is the compressed point; SLIP-10 ed25519 uses 0x00 || the 32-byte key.
    """
    if len(pub33) != 33:
        raise ValueError("fingerprint input must be a 33-byte serialized public key")
    return hash160(pub33)[:4]


def _hmac_sha512(key: bytes | bytearray, data: bytes | bytearray) -> bytearray:
    return bytearray(hmac.new(key, data, hashlib.sha512).digest())


# --------------------------------------------------------------------------------------------
# Key types


@dataclass(frozen=True, slots=True)
class _ExtendedKey(Generic[_K]):
    """A key with its chain code and its place in the tree, checked when built."""

    key: _K
    chain_code: bytes
    depth: int
    parent_fingerprint: bytes
    child_number: int

    def __post_init__(self) -> None:
        self._check_key()
        _check_common(self.chain_code, self.depth, self.parent_fingerprint, self.child_number)

    def _check_key(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ExtendedPrivateKey(_ExtendedKey[SecretBytes]):
    """A private key with its chain code. `key` is the 32-byte secret (redacted in repr)."""

    def _check_key(self) -> None:
        if not isinstance(self.key, SecretBytes) or len(self.key) != 32:
            raise ValueError("extended private key must hold a 32-byte SecretBytes key")

    def wipe(self) -> None:
        """Zero the private key (the chain code is immutable bytes and stays)."""
        self.key.wipe()


@dataclass(frozen=True, slots=True)
class ExtendedPublicKey(_ExtendedKey[bytes]):
    """A compressed secp256k1 public key (33 bytes) with its chain code."""

    def _check_key(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != 33:
            raise ValueError("extended public key must hold a 33-byte compressed public key")


def _check_common(chain_code: bytes, depth: int, fingerprint: bytes, child_number: int) -> None:
    if not isinstance(chain_code, bytes) or len(chain_code) != 32:
        raise ValueError("chain code must be 32 bytes")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= _MAX_DEPTH:
        raise ValueError("depth must be an int in 0..255")
    if not isinstance(fingerprint, bytes) or len(fingerprint) != 4:
        raise ValueError("parent fingerprint must be 4 bytes")
    _check_index(child_number)


class DerivedPublic(NamedTuple):
    """Result of one public-only derivation step."""

    key: bytes  # 33-byte compressed child public key
    chain_code: bytes
    child_number: int  # the index actually used (BIP-32 skips an index whose key is invalid)


# --------------------------------------------------------------------------------------------
# BIP-32 (secp256k1)


def _check_seed(seed: bytes | bytearray) -> None:
    if not isinstance(seed, bytes | bytearray):
        raise ValueError("seed must be bytes")
    if not _MIN_SEED_LEN <= len(seed) <= _MAX_SEED_LEN:
        raise ValueError(f"seed must be {_MIN_SEED_LEN} to {_MAX_SEED_LEN} bytes long")


def is_valid_secp256k1_secret(k: bytes | bytearray) -> bool:
    """True when `k` is a secp256k1 private key: 32 bytes, in 1..n-1."""
    return len(k) == 32 and 0 < int.from_bytes(k, "big") < GROUP_ORDER_INT


def _secp256k1_pub(k: bytes | bytearray) -> bytes:
    return PrivateKey(bytes(k)).public_key.format(compressed=True)


def bip32_public_key(xk: ExtendedPrivateKey) -> bytes:
    """The 33-byte compressed secp256k1 public key of a BIP-32 extended private key."""
    return _secp256k1_pub(xk.key.reveal())


def bip32_master(seed: bytes | bytearray) -> ExtendedPrivateKey:
    """BIP-32 master key: HMAC-SHA512(key="Bitcoin seed", seed)."""
    _check_seed(seed)
    i = _hmac_sha512(_BIP32_SEED_KEY, seed)
    try:
        il = i[:32]
        if not is_valid_secp256k1_secret(il):
            wipe(il)
            raise ValueError("this seed gives an invalid BIP-32 master key; use another seed")
        return _master(SecretBytes(il), bytes(i[32:]))  # SecretBytes copies il and zeroes it
    finally:
        wipe(i)


def _master(key: SecretBytes, chain_code: bytes) -> ExtendedPrivateKey:
    """The root of a tree: depth 0, no parent, index 0."""
    return ExtendedPrivateKey(
        key=key, chain_code=chain_code, depth=0, parent_fingerprint=b"\0\0\0\0", child_number=0
    )


def _ckd_priv_once(k: bytearray, chain_code: bytes, index: int) -> tuple[bytearray, bytes] | None:
    """One CKDpriv step, or None when BIP-32 says the child key is invalid."""
    data = bytearray()
    if index >= HARDENED:
        data += b"\0"
        data += k
    else:
        data += _secp256k1_pub(k)
    data += index.to_bytes(4, "big")
    i = _hmac_sha512(chain_code, data)
    wipe(data)
    try:
        tweak = bytes(i[:32])
        try:
            # libsecp256k1 rejects a tweak >= n and a zero result: exactly BIP-32's invalid cases.
            child = PrivateKey(bytes(k)).add(tweak).secret
        except ValueError:
            return None
        return bytearray(child), bytes(i[32:])
    finally:
        wipe(i)


def _next_index(index: int) -> int:
    """BIP-32: when a child key is invalid, proceed with the next index (same hardness)."""
    nxt = index + 1
    if nxt in (HARDENED, _MAX_INDEX + 1):
        raise ValueError("no valid child key left in this index range")
    return nxt


def bip32_ckd_priv(parent: ExtendedPrivateKey, index: int) -> ExtendedPrivateKey:
    """Derive one child private key (hardened when index >= 2^31)."""
    _check_index(index)
    if parent.depth >= _MAX_DEPTH:
        raise ValueError(f"cannot derive below depth {_MAX_DEPTH}")
    k = parent.key.reveal()
    fingerprint = bip32_fingerprint(_secp256k1_pub(k))
    while True:
        result = _ckd_priv_once(k, parent.chain_code, index)
        if result is not None:
            break
        index = _next_index(index)
    child_key, child_chain = result
    return ExtendedPrivateKey(
        key=SecretBytes.adopt(child_key),
        chain_code=child_chain,
        depth=parent.depth + 1,
        parent_fingerprint=fingerprint,
        child_number=index,
    )


def bip32_derive(seed: bytes | bytearray, path: str | Sequence[int]) -> ExtendedPrivateKey:
    """BIP-32 private derivation from a seed along `path` ("m/44'/60'/0'/0/0" or indices)."""
    indices = _resolve_path(path)
    xk = bip32_master(seed)
    for index in indices:
        child = bip32_ckd_priv(xk, index)
        xk.wipe()
        xk = child
    return xk


def bip32_derive_public(parent_pub33: bytes, chain_code: bytes, index: int) -> DerivedPublic:
    """One CKDpub step: a non-hardened child public key from the parent public key alone."""
    _check_index(index)
    if index >= HARDENED:
        raise ValueError("hardened child keys cannot be derived from a public key")
    if len(chain_code) != 32:
        raise ValueError("chain code must be 32 bytes")
    if len(parent_pub33) != 33 or parent_pub33[0] not in (2, 3):
        raise ValueError("parent public key must be a 33-byte compressed secp256k1 point")
    try:
        parent = PublicKey(bytes(parent_pub33))
    except ValueError:
        raise ValueError("parent public key is not a valid secp256k1 point") from None
    while True:
        i = _hmac_sha512(chain_code, bytes(parent_pub33) + index.to_bytes(4, "big"))
        try:
            # Rejects IL >= n and the point at infinity: BIP-32's invalid cases.
            child = parent.add(bytes(i[:32])).format(compressed=True)
        except ValueError:
            index = _next_index(index)
            continue
        return DerivedPublic(key=child, chain_code=bytes(i[32:]), child_number=index)


def bip32_neuter(xk: ExtendedPrivateKey) -> ExtendedPublicKey:
    """The extended public key of an extended private key (BIP-32 "N")."""
    return ExtendedPublicKey(
        key=bip32_public_key(xk),
        chain_code=xk.chain_code,
        depth=xk.depth,
        parent_fingerprint=xk.parent_fingerprint,
        child_number=xk.child_number,
    )


def bip32_ckd_pub(parent: ExtendedPublicKey, index: int) -> ExtendedPublicKey:
    """One public-only derivation step on an extended public key (non-hardened only)."""
    if parent.depth >= _MAX_DEPTH:
        raise ValueError(f"cannot derive below depth {_MAX_DEPTH}")
    child = bip32_derive_public(parent.key, parent.chain_code, index)
    return ExtendedPublicKey(
        key=child.key,
        chain_code=child.chain_code,
        depth=parent.depth + 1,
        parent_fingerprint=bip32_fingerprint(parent.key),
        child_number=child.child_number,
    )


# --------------------------------------------------------------------------------------------
# SLIP-10 ed25519


def slip10_ed25519_public(key32: SecretBytes | bytes | bytearray) -> bytes:
    """The 32-byte Ed25519 public key of a 32-byte private key (seed)."""
    raw = key32.reveal() if isinstance(key32, SecretBytes) else key32
    if len(raw) != 32:
        raise ValueError("ed25519 private key must be 32 bytes")
    return SigningKey(bytes(raw)).verify_key.encode()


def slip10_ed25519_master(seed: bytes | bytearray) -> ExtendedPrivateKey:
    """SLIP-10 ed25519 master key: HMAC-SHA512(key="ed25519 seed", seed)."""
    _check_seed(seed)
    i = _hmac_sha512(_ED25519_SEED_KEY, seed)
    try:
        return _master(SecretBytes(i[:32]), bytes(i[32:]))
    finally:
        wipe(i)


def slip10_ed25519_derive(seed: bytes | bytearray, path: str | Sequence[int]) -> ExtendedPrivateKey:
    """SLIP-10 ed25519 derivation. Every step must be hardened (ed25519 has no public CKD)."""
    indices = _resolve_path(path)
    for position, index in enumerate(indices, start=1):
        if index < HARDENED:
            raise ValueError(
                f"ed25519 (SLIP-10) supports hardened derivation only; "
                f"path component {position} is not hardened (write it as {index}')"
            )
    xk = slip10_ed25519_master(seed)
    for index in indices:
        k = xk.key.reveal()
        fingerprint = bip32_fingerprint(b"\0" + slip10_ed25519_public(k))
        data = bytearray(b"\0")
        data += k
        data += index.to_bytes(4, "big")
        i = _hmac_sha512(xk.chain_code, data)
        wipe(data)
        try:
            child = ExtendedPrivateKey(
                key=SecretBytes(i[:32]),
                chain_code=bytes(i[32:]),
                depth=xk.depth + 1,
                parent_fingerprint=fingerprint,
                child_number=index,
            )
        finally:
            wipe(i)
        xk.wipe()
        xk = child
    return xk
