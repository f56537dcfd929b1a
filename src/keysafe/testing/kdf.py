"""Argon2id parameters for throwaway vaults."""

from __future__ import annotations

from typing import Final

from keysafe.crypto.kdf import Argon2Params

# 1 MiB, one pass: unlocking takes milliseconds instead of the default's second or so. Only for
# vaults a test or the demo builds and throws away; tests about unlocking use the default.
CHEAP_KDF: Final = Argon2Params(memory_kib=1024, time_cost=1, parallelism=1)
