"""Unlocking the vault (`Vault.unlock`: throttle bookkeeping, Argon2id at the vault's configured
cost, unwrapping the master key) beside Argon2id alone with the same parameters and salt."""

from __future__ import annotations

import json
import time
from typing import Any

from benchmarks import common


def measure(vault_copy: common.BenchVault, *, repeats: int) -> dict[str, Any]:
    from sqlalchemy import select

    from keysafe.crypto.kdf import Argon2Params, argon2id
    from keysafe.crypto.secret import SecretBytes
    from keysafe.service.context import open_vault
    from keysafe.store import tables as t
    from keysafe.vault.home import Home

    vault = open_vault(Home(vault_copy.home))
    with vault.db.read() as conn:
        row = conn.execute(select(t.vault.c.kdf_params, t.vault.c.kdf_salt)).one()
    params = Argon2Params.from_dict(json.loads(row.kdf_params))
    passphrase = common.PASSPHRASE.encode()
    unlock_s: list[float] = []
    argon_s: list[float] = []
    try:
        for _ in range(repeats):  # alternate, so machine noise hits both alike
            with SecretBytes(bytearray(passphrase)) as secret:
                t0 = time.perf_counter()
                vault.unlock(secret)
                unlock_s.append(time.perf_counter() - t0)
            vault.lock()
            t0 = time.perf_counter()
            argon2id(passphrase, row.kdf_salt, params)
            argon_s.append(time.perf_counter() - t0)
    finally:
        vault.lock()
        vault.db.close()
    u, a = common.summary(unlock_s), common.summary(argon_s)
    return {
        "figure": "unlock (Argon2id at the configured cost) vs Argon2id alone",
        "argon2_params": params.to_dict(),
        "unlock": u,
        "argon2id_alone": a,
        "ratio": u["p50_ms"] / a["p50_ms"],
        "target": None,
    }
