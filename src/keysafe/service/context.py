"""Opening a vault for a use case: home checks, the store, the clock."""

from __future__ import annotations

from keysafe.errors import KeysafeError
from keysafe.store.db import Database
from keysafe.store.faults import translate
from keysafe.store.probe import database_url
from keysafe.vault.home import Home
from keysafe.vault.vault import Clock, Vault, utc_now


def open_vault(home: Home, *, clock: Clock = utc_now) -> Vault:
    """Open an existing vault, locked. Raises NotInitialized / UnsafePermissions / StoreError."""
    home.require()
    db = open_database(home, create=False)
    try:
        return Vault.open(db, clock=clock)
    except BaseException:
        db.close()
        raise


def open_database(home: Home, *, create: bool) -> Database:
    """The home's store: PostgreSQL when KEYSAFE_DATABASE_URL is set, else its SQLite file.
    `create` makes (and migrates) a store with no vault in it yet, for init and restore."""
    if home.database_url is not None:
        return Database.open_postgresql(database_url(home.database_url), create=create)
    return Database.open_sqlite(home.db_path, create=create)


__all__ = ["Home", "open_database", "open_vault"]


def known_fault(exc: BaseException) -> KeysafeError | None:
    """What a database fault means to a person (a damaged row, a full disk), for the surfaces'
    last-resort handlers; None when it is a bug. The mapping lives in store/faults.py."""
    return translate(exc)
