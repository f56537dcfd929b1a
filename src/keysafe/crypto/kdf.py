"""Hazmat: key derivation (Argon2id for passphrases, HKDF-SHA256 for subkeys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Cost parameters; stored beside each wrapped key so they can be raised later."""

    memory_kib: int = 64 * 1024  # 64 MiB (DESIGN.md)
    time_cost: int = 3
    parallelism: int = 4
    length: int = 32

    def to_dict(self) -> dict[str, int]:
        return {
            "memory_kib": self.memory_kib,
            "time_cost": self.time_cost,
            "parallelism": self.parallelism,
            "length": self.length,
        }

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> Argon2Params:
        """Parameters read from a file or a database row, within sane bounds: a crafted header
        must not make an unlock allocate gigabytes or spin for hours.

        Raises:
            ValueError: a parameter is outside its bounds (BOUNDS).
        """
        params = cls(
            memory_kib=int(d["memory_kib"]),
            time_cost=int(d["time_cost"]),
            parallelism=int(d["parallelism"]),
            length=int(d["length"]),
        )
        for name, (low, high) in BOUNDS.items():
            value = getattr(params, name)
            if not low <= value <= high:
                raise ValueError(f"Argon2id {name}={value} is outside {low}..{high}")
        return params


DEFAULT_ARGON2 = Argon2Params()
# What keysafe accepts from a stored header (the default is 64 MiB, 3 passes, 4 lanes).
BOUNDS: Final[dict[str, tuple[int, int]]] = {
    "memory_kib": (8, 2 * 1024 * 1024),  # up to 2 GiB
    "time_cost": (1, 64),
    "parallelism": (1, 64),
    "length": (16, 64),
}


def argon2id(passphrase: bytes | bytearray, salt: bytes, params: Argon2Params) -> bytearray:
    if len(salt) < 16:
        raise ValueError("Argon2id salt must be at least 16 bytes")
    out = hash_secret_raw(
        secret=bytes(passphrase),
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=params.length,
        type=Type.ID,
    )
    return bytearray(out)


def hkdf_sha256(
    ikm: bytes | bytearray, *, info: bytes, salt: bytes | None = None, length: int = 32
) -> bytearray:
    return bytearray(
        HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(bytes(ikm))
    )
