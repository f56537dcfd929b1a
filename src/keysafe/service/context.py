"""Opening a vault for a use case: home checks, the store, the clock."""

from __future__ import annotations

from keysafe.errors import KeysafeError
from keysafe.store.db import Database, translate
from keysafe.vault.home import Home
from keysafe.vault.vault import Clock, Vault, utc_now


def open_vault(home: Home, *, clock: Clock = utc_now) -> Vault:
    """Open an existing vault, locked. Raises NotInitialized / UnsafePermissions / StoreError."""
    home.require()
    db = Database.open_sqlite(home.db_path, create=False)
    return Vault.open(db, clock=clock)


__all__ = ["Home", "open_vault"]


def known_fault(exc: BaseException) -> KeysafeError | None:
    """What a database fault means to a person (a damaged row, a full disk), for the surfaces'
    last-resort handlers; None when it is a bug. The mapping lives in store/db.py."""
    return translate(exc)
