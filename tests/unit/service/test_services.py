"""Service use cases, in process: records, wallets, locked vaults, two vaults at once, backups."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keysafe.audit.redact import hmac_value
from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    AlreadyExistsError,
    IntegrityError,
    MalformedRequestError,
    NotFoundError,
    VaultLockedError,
    WrongPassphraseError,
)
from keysafe.service import audit, backup, credentials, data, wallets
from keysafe.service.context import open_vault
from keysafe.service.models import Attachment, DataClass, RecordKind
from keysafe.service.vault_admin import init_vault, recover_vault
from keysafe.testing import CHEAP_KDF, ManualClock
from keysafe.vault.home import Home
from keysafe.vault.vault import Vault

PASSPHRASE = b"correct horse battery staple"
HARDHAT_PHRASE = b"test test test test test test test test test test test junk"
HARDHAT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
HARDHAT_1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
CANARY = b"CANARY-svc-51c0-ghp_do_not_leak_this"


@dataclass
class Made:
    home: Home
    vault: Vault
    phrase: SecretBytes
    clock: ManualClock


@pytest.fixture
def make_vault(tmp_path: Path) -> Iterator[Callable[[str], Made]]:
    opened: list[Vault] = []

    def make(name: str = "h") -> Made:
        clock = ManualClock(datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC))
        home = Home(tmp_path / name)
        vault, phrase = init_vault(home, SecretBytes(PASSPHRASE), kdf=CHEAP_KDF, clock=clock)
        opened.append(vault)
        return Made(home, vault, phrase, clock)

    yield make
    for v in opened:
        v.lock()
        v.db.close()


@pytest.fixture
def made(make_vault: Callable[[str], Made]) -> Made:
    return make_vault("h")


def _secret_of(vault: Vault, kind: str, name: str) -> bytes:
    with vault.db.read() as conn:
        info = vault.get_record(conn, kind, name)
        with vault.open_record(conn, info) as plain:
            return bytes(plain.reveal())


def _add_github(vault: Vault, secret: bytes = CANARY) -> credentials.CredentialView:
    return credentials.add_credential(
        vault,
        "github",
        SecretBytes(secret),
        hosts=["API.GitHub.com", "api.github.com"],
        attach=Attachment.bearer(),
    )


def _sql(home: Home, query: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(home.db_path) as conn:
        rows = conn.execute(query, params).fetchall()
    conn.close()
    return rows


def _actions(vault: Vault) -> list[str]:
    return [e.action for e in audit.list_entries(vault)]


# -- credentials -------------------------------------------------------------------------------


def test_add_credential_stores_secret_and_lists_public_facts(made: Made) -> None:
    view = _add_github(made.vault)
    assert view.name == "github"
    assert view.hosts == ["api.github.com"]
    assert view.attach == {"type": "header", "name": "Authorization", "template": "Bearer {secret}"}
    assert credentials.list_credentials(made.vault) == [view]
    assert _secret_of(made.vault, RecordKind.CREDENTIAL, "github") == CANARY
    assert _actions(made.vault)[-1] == "credential.add"


def test_add_credential_existing_name_raises_already_exists(made: Made) -> None:
    _add_github(made.vault)
    with pytest.raises(AlreadyExistsError, match="already exists"):
        _add_github(made.vault, b"another")
    assert _secret_of(made.vault, RecordKind.CREDENTIAL, "github") == CANARY


def test_add_credential_replace_bumps_version_and_value(made: Made) -> None:
    _add_github(made.vault)
    credentials.add_credential(
        made.vault,
        "github",
        SecretBytes(b"new-value"),
        hosts=["api.github.com"],
        attach=Attachment.bearer(),
        replace=True,
    )
    with made.vault.db.read() as conn:
        assert made.vault.get_record(conn, RecordKind.CREDENTIAL, "github").version == 2
    assert _secret_of(made.vault, RecordKind.CREDENTIAL, "github") == b"new-value"


@pytest.mark.parametrize(
    ("name", "hosts", "secret"),
    [
        ("bad name", ["a.com"], b"x"),
        ("ok", [], b"x"),
        ("ok", ["https://a.com"], b"x"),
        ("ok", ["a.com"], b""),
    ],
    ids=["name with space", "no host", "host with scheme", "empty secret"],
)
def test_add_credential_bad_input_raises_malformed_request(
    made: Made, name: str, hosts: list[str], secret: bytes
) -> None:
    with pytest.raises(MalformedRequestError):
        credentials.add_credential(
            made.vault, name, SecretBytes(secret), hosts=hosts, attach=Attachment.bearer()
        )
    assert credentials.list_credentials(made.vault) == []


def test_remove_credential_removes_it_and_audits(made: Made) -> None:
    _add_github(made.vault)
    credentials.remove_credential(made.vault, "github")
    assert credentials.list_credentials(made.vault) == []
    assert _actions(made.vault)[-1] == "credential.remove"


def test_remove_credential_unknown_name_raises_not_found(made: Made) -> None:
    with pytest.raises(NotFoundError, match="No credential named 'nope'"):
        credentials.remove_credential(made.vault, "nope")


def test_add_credential_canary_never_in_vault_files_or_audit(made: Made) -> None:
    _add_github(made.vault)
    blobs = b"".join(p.read_bytes() for p in made.home.path.iterdir() if p.is_file())
    text = json.dumps([e.to_dict() for e in audit.list_entries(made.vault)])
    for form in (CANARY, CANARY.hex().encode()):
        assert form not in blobs
        assert form.decode() not in text


def test_add_credential_audit_row_holds_no_fingerprint_of_the_value(made: Made) -> None:
    _add_github(made.vault)
    with made.vault.subkey("audit-hmac") as key:
        fingerprints = [hmac_value(key.reveal(), v) for v in (CANARY.hex(), CANARY.decode())]
    rows = json.dumps([e.to_dict() for e in audit.list_entries(made.vault)])
    assert not any(f in rows for f in fingerprints)


# -- data --------------------------------------------------------------------------------------


def test_set_data_json_object_extracts_sorted_field_names(made: Made) -> None:
    value = b'{"email": "me@example.com", "age": 41, "address": {"city": "Lyon"}}'
    view = data.set_data(made.vault, "profile", SecretBytes(value), data_class=DataClass.STANDARD)
    assert (view.format, view.fields, view.data_class) == (
        "json",
        ["address", "age", "email"],
        "standard",
    )
    assert data.list_data(made.vault) == [view]
    assert _secret_of(made.vault, RecordKind.DATA, "profile") == value
    assert "me@example.com" not in json.dumps([e.to_dict() for e in audit.list_entries(made.vault)])


def test_set_data_json_array_is_json_without_fields(made: Made) -> None:
    view = data.set_data(made.vault, "list", SecretBytes(b"[1, 2]"), data_class=DataClass.STANDARD)
    assert (view.format, view.fields) == ("json", [])


def test_set_data_plain_text_is_text_without_fields(made: Made) -> None:
    view = data.set_data(
        made.vault, "note", SecretBytes(b"door code 4711"), data_class=DataClass.SENSITIVE
    )
    assert (view.format, view.fields, view.data_class) == ("text", [], "sensitive")
    assert _secret_of(made.vault, RecordKind.DATA, "note") == b"door code 4711"


def test_set_data_again_replaces_value_and_bumps_version(made: Made) -> None:
    data.set_data(made.vault, "note", SecretBytes(b"one"), data_class=DataClass.STANDARD)
    view = data.set_data(
        made.vault, "note", SecretBytes(b'{"k": 1}'), data_class=DataClass.STANDARD
    )
    assert (view.format, view.fields) == ("json", ["k"])
    with made.vault.db.read() as conn:
        assert made.vault.get_record(conn, RecordKind.DATA, "note").version == 2
    assert _secret_of(made.vault, RecordKind.DATA, "note") == b'{"k": 1}'


def test_set_data_critical_class_raises_malformed_request(made: Made) -> None:
    with pytest.raises(MalformedRequestError, match="critical"):
        data.set_data(made.vault, "x", SecretBytes(b"v"), data_class=DataClass.CRITICAL)


def test_remove_data_removes_it(made: Made) -> None:
    data.set_data(made.vault, "note", SecretBytes(b"one"), data_class=DataClass.STANDARD)
    data.remove_data(made.vault, "note")
    assert data.list_data(made.vault) == []
    with pytest.raises(NotFoundError):
        data.remove_data(made.vault, "note")


# -- wallets -----------------------------------------------------------------------------------


@pytest.fixture
def hardhat(tmp_path: Path) -> Iterator[Made]:
    clock = ManualClock(datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC))
    home = Home(tmp_path / "hardhat")
    vault, rebuilt = recover_vault(
        home, SecretBytes(HARDHAT_PHRASE), SecretBytes(PASSPHRASE), kdf=CHEAP_KDF, clock=clock
    )
    assert rebuilt
    yield Made(home, vault, SecretBytes(HARDHAT_PHRASE), clock)
    vault.lock()
    vault.db.close()


def test_create_wallet_evm_gives_sequential_indices(made: Made) -> None:
    views = [wallets.create_wallet(made.vault, f"w{i}", Chain.EVM) for i in range(3)]
    assert [v.index for v in views] == [0, 1, 2]
    assert len({v.address for v in views}) == 3
    assert all(v.source == "derived" and v.chain == "evm" for v in views)
    sol = wallets.create_wallet(made.vault, "s0", Chain.SOLANA)
    assert sol.index == 0  # indices count per chain


def test_create_wallet_from_hardhat_phrase_gives_hardhat_addresses(hardhat: Made) -> None:
    w0 = wallets.create_wallet(hardhat.vault, "w0", Chain.EVM)
    w1 = wallets.create_wallet(hardhat.vault, "w1", Chain.EVM)
    assert (w0.index, w0.address) == (0, HARDHAT_0)
    assert (w1.index, w1.address) == (1, HARDHAT_1)
    assert [w.address for w in wallets.list_wallets(hardhat.vault)] == [HARDHAT_0, HARDHAT_1]


def test_create_wallet_explicit_index_gives_that_account(hardhat: Made) -> None:
    view = wallets.create_wallet(hardhat.vault, "second", Chain.EVM, index=1)
    assert view.address == HARDHAT_1
    # The next derived index follows the highest one used.
    assert wallets.create_wallet(hardhat.vault, "next", Chain.EVM).index == 2


def test_create_wallet_existing_name_raises_already_exists(made: Made) -> None:
    wallets.create_wallet(made.vault, "w", Chain.EVM)
    with pytest.raises(AlreadyExistsError):
        wallets.create_wallet(made.vault, "w", Chain.EVM)


def test_list_wallets_edited_address_in_database_raises_integrity_error(hardhat: Made) -> None:
    wallets.create_wallet(hardhat.vault, "w0", Chain.EVM)
    [(meta,)] = _sql(hardhat.home, "SELECT meta FROM records WHERE kind='wallet' AND name='w0'")
    forged = json.loads(str(meta)) | {"address": HARDHAT_1}
    _sql(hardhat.home, "UPDATE records SET meta=? WHERE name='w0'", json.dumps(forged))
    with pytest.raises(IntegrityError, match="w0"):
        wallets.list_wallets(hardhat.vault)
    # Without verification the forged address is shown as stored: that is what verify is for.
    assert wallets.list_wallets(hardhat.vault, verify=False)[0].address == HARDHAT_1


def test_list_wallets_key_not_matching_sealed_address_raises_integrity_error(made: Made) -> None:
    # A record sealed correctly (valid AAD) whose key does not give its address.
    with made.vault.db.write() as conn, SecretBytes(bytes(range(1, 33))) as key:
        made.vault.put_record(
            conn,
            kind=RecordKind.WALLET,
            name="odd",
            data_class=DataClass.CRITICAL,
            meta={"chain": "evm", "address": HARDHAT_0, "source": "imported"},
            plaintext=key,
            replace=False,
        )
    with pytest.raises(IntegrityError, match="does not match its stored address"):
        wallets.list_wallets(made.vault)


# -- locked vault ------------------------------------------------------------------------------

LOCKED_OPS: dict[str, Callable[[Vault], object]] = {
    "add credential": lambda v: credentials.add_credential(
        v, "gitlab", SecretBytes(b"s"), hosts=["gitlab.com"], attach=Attachment.bearer()
    ),
    "set data": lambda v: data.set_data(
        v, "note", SecretBytes(b"v"), data_class=DataClass.STANDARD
    ),
    "create wallet": lambda v: wallets.create_wallet(v, "w9", Chain.EVM),
    "import wallet": lambda v: wallets.import_wallet(v, "imp", Chain.EVM, SecretBytes(b"11" * 32)),
    "list wallets with verification": lambda v: wallets.list_wallets(v),
    "create backup": lambda v: backup.create_backup(v, Path("/nonexistent/never-written.ksb")),
}
LOCKED_REMOVES: dict[str, Callable[[Vault], object]] = {
    "remove credential": lambda v: credentials.remove_credential(v, "github"),
    "remove data": lambda v: data.remove_data(v, "profile"),
}


def _lock_with_records(made: Made) -> int:
    _add_github(made.vault)
    data.set_data(made.vault, "profile", SecretBytes(b"{}"), data_class=DataClass.STANDARD)
    wallets.create_wallet(made.vault, "w0", Chain.EVM)
    made.vault.lock()
    return len(audit.list_entries(made.vault))


def _check_locked_refusal(made: Made, op: Callable[[Vault], object]) -> None:
    entries = _lock_with_records(made)
    with pytest.raises(VaultLockedError, match="locked") as info:
        op(made.vault)
    assert "Next: the owner unlocks it" in str(info.value)
    assert len(audit.list_entries(made.vault)) == entries  # nothing happened, nothing audited
    assert [c.name for c in credentials.list_credentials(made.vault)] == ["github"]
    assert [d.name for d in data.list_data(made.vault)] == ["profile"]


@pytest.mark.parametrize("op", LOCKED_OPS.values(), ids=LOCKED_OPS.keys())
def test_service_op_on_locked_vault_raises_vault_locked(
    made: Made, op: Callable[[Vault], object]
) -> None:
    _check_locked_refusal(made, op)


@pytest.mark.parametrize("op", LOCKED_REMOVES.values(), ids=LOCKED_REMOVES.keys())
def test_remove_on_locked_vault_raises_vault_locked(
    made: Made, op: Callable[[Vault], object]
) -> None:
    _check_locked_refusal(made, op)


def test_listing_on_locked_vault_shows_public_facts_only(made: Made) -> None:
    _lock_with_records(made)
    assert [c.name for c in credentials.list_credentials(made.vault)] == ["github"]
    assert [w.name for w in wallets.list_wallets(made.vault, verify=False)] == ["w0"]
    assert audit.verify(made.vault).ok


def test_reopened_vault_is_locked_until_unlocked(made: Made) -> None:
    _add_github(made.vault)
    reopened = open_vault(made.home, clock=made.clock)
    try:
        assert not reopened.is_unlocked
        with pytest.raises(VaultLockedError):
            _secret_of(reopened, RecordKind.CREDENTIAL, "github")
        reopened.unlock(SecretBytes(PASSPHRASE))
        assert _secret_of(reopened, RecordKind.CREDENTIAL, "github") == CANARY
    finally:
        reopened.lock()
        reopened.db.close()


# -- two vaults in one process -----------------------------------------------------------------


def test_two_vaults_in_one_process_do_not_interfere(make_vault: Callable[[str], Made]) -> None:
    a, b = make_vault("a"), make_vault("b")
    assert a.vault.vault_id != b.vault.vault_id
    _add_github(a.vault, b"secret-of-a")
    b.clock.advance(3600)
    _add_github(b.vault, b"secret-of-b")
    data.set_data(b.vault, "only-b", SecretBytes(b"x"), data_class=DataClass.STANDARD)

    assert _secret_of(a.vault, RecordKind.CREDENTIAL, "github") == b"secret-of-a"
    assert _secret_of(b.vault, RecordKind.CREDENTIAL, "github") == b"secret-of-b"
    assert data.list_data(a.vault) == []
    assert [d.name for d in data.list_data(b.vault)] == ["only-b"]
    # Each vault keeps its own clock and its own audit chain.
    assert credentials.list_credentials(a.vault)[0].created_at.startswith("2025-03-01T09:00")
    assert credentials.list_credentials(b.vault)[0].created_at.startswith("2025-03-01T10:00")
    assert _actions(a.vault) == ["vault.init", "credential.add"]
    assert _actions(b.vault) == ["vault.init", "credential.add", "data.set"]
    assert audit.verify(a.vault).ok
    assert audit.verify(b.vault).ok

    a.vault.lock()
    assert b.vault.is_unlocked
    assert _secret_of(b.vault, RecordKind.CREDENTIAL, "github") == b"secret-of-b"


def test_record_row_copied_into_another_vault_fails_integrity(
    make_vault: Callable[[str], Made],
) -> None:
    a, b = make_vault("a"), make_vault("b")
    _add_github(a.vault, b"secret-of-a")
    _add_github(b.vault, b"secret-of-b")
    cols = "dek_nonce, dek_wrapped, nonce, ciphertext"
    [row] = _sql(a.home, f"SELECT {cols} FROM records WHERE name='github'")
    _sql(
        b.home,
        "UPDATE records SET dek_nonce=?, dek_wrapped=?, nonce=?, ciphertext=? WHERE name='github'",
        *row,
    )
    with pytest.raises(IntegrityError, match="failed its integrity check"):
        _secret_of(b.vault, RecordKind.CREDENTIAL, "github")


# -- backup ------------------------------------------------------------------------------------


def test_backup_restore_new_into_empty_home_preserves_records_and_audit(
    made: Made, tmp_path: Path
) -> None:
    _add_github(made.vault)
    data.set_data(made.vault, "profile", SecretBytes(b'{"a": 1}'), data_class=DataClass.SENSITIVE)
    wallets.create_wallet(made.vault, "w0", Chain.EVM)
    wallets.create_wallet(made.vault, "s0", Chain.SOLANA)
    before = audit.list_entries(made.vault)
    path = tmp_path / "vault.ksb"

    header = backup.create_backup(made.vault, path)
    assert (header.vault_id, header.records, header.entries) == (
        made.vault.vault_id,
        5,
        len(before),  # hd seed + credential + data + 2 wallets
    )
    assert CANARY not in path.read_bytes()

    home2 = Home(tmp_path / "restored")
    restored, header2 = backup.restore_new(
        home2,
        path,
        made.phrase,
        SecretBytes(b"a brand new passphrase"),
        kdf=CHEAP_KDF,
        clock=made.clock,
    )
    try:
        assert restored.vault_id == made.vault.vault_id
        assert header2 == header
        assert credentials.list_credentials(restored) == credentials.list_credentials(made.vault)
        assert data.list_data(restored) == data.list_data(made.vault)
        assert wallets.list_wallets(restored) == wallets.list_wallets(made.vault)
        assert _secret_of(restored, RecordKind.CREDENTIAL, "github") == CANARY
        assert _secret_of(restored, RecordKind.DATA, "profile") == b'{"a": 1}'

        after = audit.list_entries(restored)
        assert after[: len(before)] == before
        assert after[-1].action == "backup.restore"
        assert audit.verify(restored).ok
    finally:
        restored.lock()
        restored.db.close()

    # The rebuilt vault opens with the new passphrase, not the old one.
    reopened = open_vault(home2, clock=made.clock)
    try:
        with pytest.raises(WrongPassphraseError):
            reopened.unlock(SecretBytes(PASSPHRASE))
        reopened.unlock(SecretBytes(b"a brand new passphrase"))
        assert _secret_of(reopened, RecordKind.CREDENTIAL, "github") == CANARY
    finally:
        reopened.lock()
        reopened.db.close()
