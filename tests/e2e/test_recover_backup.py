"""Black-box tests of `keysafe recover` and `keysafe backup create | restore`.

Known answers: the Hardhat phrase's first EVM account is 0xf39F…2266 (MetaMask path), and a
Solana wallet's address is what solders derives on Phantom's path. Phrases of every BIP-39 length
are checked against eth-account's own HD derivation.

To keep the number of (slow) CLI calls down, one populated vault and its backup are built per
module; tests copy that vault directory (modes preserved) into their own KEYSAFE_HOME.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from mnemonic import Mnemonic
from solders.keypair import Keypair

from tests.conftest import HARDHAT_ADDRESS_0, HARDHAT_PHRASE, PASSPHRASE, Cli, Result, shared_once

NEW_PASSPHRASE = "another long passphrase, chosen later"
CANARY = "canary-ghp-8d1f4e2a9c7b3e5f6a0d"
MAGIC = b"KEYSAFE-BACKUP-1\n"
NONCE_SIZE = 24

Account.enable_unaudited_hdwallet_features()


# -- helpers -------------------------------------------------------------------------------------


def cli_at(home: Path, *, passphrase: str = PASSPHRASE) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    return Cli(home, env | {"KEYSAFE_HOME": str(home), "KEYSAFE_PASSPHRASE": passphrase})


def assert_user_error(r: Result, code: str | tuple[str, ...]) -> str:
    """Exit 1 and exactly one stderr line `Error [CODE]: … Next: …`, no traceback. Returns it."""
    codes = (code,) if isinstance(code, str) else code
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert r.exit_code == 1, f"exit {r.exit_code}: {r.stderr}{r.stdout}"
    assert r.stderr.endswith("\n") and r.stderr.count("\n") == 1, repr(r.stderr)
    line = r.stderr.rstrip("\n")
    assert any(line.startswith(f"Error [{c}]:") for c in codes), line
    assert "Next:" in line, line
    return line


def as_json(r: Result) -> Any:
    return json.loads(r.stdout)


def solana_address(phrase: str, account: int = 0) -> str:
    seed = Mnemonic.to_seed(phrase, "")
    return str(Keypair.from_seed_and_derivation_path(seed, f"m/44'/501'/{account}'/0'").pubkey())


def evm_address(phrase: str, index: int = 0) -> str:
    return str(Account.from_mnemonic(phrase, account_path=f"m/44'/60'/0'/0/{index}").address)


def ciphertext_offset(blob: bytes) -> int:
    """Where the AEAD ciphertext starts: magic, header line, 24-byte nonce."""
    assert blob.startswith(MAGIC)
    return blob.index(b"\n", len(MAGIC)) + 1 + NONCE_SIZE


# -- fixtures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Populated:
    """A vault with a credential, two data records and two wallets, and a backup of it."""

    home: Path
    backup: Path
    vault_id: str
    phrase: str
    credentials: list[dict[str, Any]]
    data: list[dict[str, Any]]
    wallets: list[dict[str, str]]  # name, chain, address as `wallet create --json` printed them


def _populate(root: Path) -> dict[str, Any]:
    cli = cli_at(root / "home")
    init = as_json(cli.ok("init", "--json"))
    cred = cli.ok(
        "credential",
        "add",
        "github",
        "--host",
        "api.github.com",
        "--header",
        "Authorization: token {secret}",
        "--json",
        input=CANARY,
    )
    profile = cli.ok(
        "data",
        "set",
        "profile",
        "--class",
        "sensitive",
        "--json",
        input='{"email": "o@example.com"}',
    )
    note = cli.ok("data", "set", "note", "--json", input="remember the milk")
    main = cli.ok("wallet", "create", "main", "--chain", "evm", "--json")
    sol = cli.ok("wallet", "create", "sol", "--chain", "solana", "--json")
    cli.ok("backup", "create", str(root / "vault.ksbackup"))
    return {
        "vault_id": init["vault_id"],
        "phrase": init["recovery_phrase"],
        "credentials": [as_json(cred)],
        "data": sorted((as_json(profile), as_json(note)), key=lambda d: d["name"]),
        "wallets": [as_json(main), as_json(sol)],
    }


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    root, info = shared_once(tmp_path_factory, "keysafe-test-recover-populated", _populate)
    return Populated(home=root / "home", backup=root / "vault.ksbackup", **info)


def wallets_of(r: Result) -> list[dict[str, str]]:
    """`wallet list --json`, reduced to what `wallet create --json` prints."""
    return [{k: w[k] for k in ("name", "chain", "address")} for w in as_json(r)]


@pytest.fixture
def copy(keysafe: Cli, populated: Populated) -> Cli:
    """`keysafe` bound to a private copy of the populated vault."""
    shutil.copytree(populated.home, keysafe.home)
    return keysafe


@pytest.fixture
def backup_copy(populated: Populated, tmp_path: Path) -> Path:
    dst = tmp_path / "copy.ksbackup"
    shutil.copy2(populated.backup, dst)
    return dst


# -- recover -------------------------------------------------------------------------------------


def test_recover_hardhat_phrase_on_empty_home_gives_known_addresses(keysafe: Cli) -> None:
    out = as_json(keysafe.ok("recover", "--json", input=HARDHAT_PHRASE + "\n"))
    assert out["rebuilt"] is True
    evm = as_json(keysafe.ok("wallet", "create", "a", "--chain", "evm", "--json"))
    assert evm == {"name": "a", "chain": "evm", "address": HARDHAT_ADDRESS_0}
    sol = as_json(keysafe.ok("wallet", "create", "s", "--chain", "solana", "--json"))
    assert sol == {"name": "s", "chain": "solana", "address": solana_address(HARDHAT_PHRASE)}
    assert stat.S_IMODE(keysafe.home.stat().st_mode) == 0o700


@pytest.mark.parametrize("words", [12, 15, 18, 21, 24])
def test_recover_any_valid_phrase_length_on_empty_home_gives_metamask_address(
    keysafe: Cli, words: int
) -> None:
    phrase = Mnemonic("english").generate(strength=words * 32 // 3)
    assert len(phrase.split()) == words
    out = as_json(keysafe.ok("recover", "--json", input=phrase + "\n"))
    assert out["rebuilt"] is True
    evm = as_json(keysafe.ok("wallet", "create", "a", "--chain", "evm", "--json"))
    assert evm["address"] == evm_address(phrase)
    for output in keysafe.outputs:
        assert phrase not in output


def _bad_checksum() -> str:
    words = HARDHAT_PHRASE.split()
    words[-1] = "test"  # 12 x "test" is a wordlist phrase with a wrong checksum
    phrase = " ".join(words)
    assert not Mnemonic("english").check(phrase)
    return phrase


@pytest.mark.parametrize(
    "phrase",
    [_bad_checksum(), HARDHAT_PHRASE.replace("junk", "junkk"), " ".join(["test"] * 10 + ["junk"])],
    ids=["bad-checksum", "unknown-word", "11-words"],
)
def test_recover_invalid_phrase_is_refused_and_creates_nothing(keysafe: Cli, phrase: str) -> None:
    line = assert_user_error(
        keysafe("recover", "--json", input=phrase + "\n"), "WRONG_RECOVERY_PHRASE"
    )
    assert "junkk" not in line and "test test" not in line  # the phrase is not echoed
    assert not (keysafe.home / "vault.db").exists()


def test_recover_existing_vault_with_its_phrase_sets_new_passphrase(
    copy: Cli, populated: Populated
) -> None:
    out = as_json(
        copy.ok(
            "recover",
            "--json",
            input=populated.phrase + "\n",
            env={"KEYSAFE_NEW_PASSPHRASE": NEW_PASSPHRASE},
        )
    )
    assert out == {"vault_id": populated.vault_id, "rebuilt": False}
    assert_user_error(copy("wallet", "list"), "WRONG_PASSPHRASE")
    wallets = wallets_of(
        copy.ok("wallet", "list", "--json", env={"KEYSAFE_PASSPHRASE": NEW_PASSPHRASE})
    )
    assert wallets == populated.wallets


def test_recover_existing_vault_with_another_vaults_phrase_is_refused(copy: Cli) -> None:
    r = copy("recover", input=HARDHAT_PHRASE + "\n", env={"KEYSAFE_NEW_PASSPHRASE": NEW_PASSPHRASE})
    assert_user_error(r, "WRONG_RECOVERY_PHRASE")
    copy.ok("wallet", "list")  # the old passphrase still opens the vault


# -- backup create -------------------------------------------------------------------------------


def test_backup_file_is_0600_and_holds_no_secret_in_clear(populated: Populated) -> None:
    assert stat.S_IMODE(populated.backup.stat().st_mode) == 0o600
    blob = populated.backup.read_bytes()
    assert blob.startswith(MAGIC)
    assert CANARY.encode() not in blob
    assert populated.phrase.encode() not in blob
    assert b"o@example.com" not in blob


def test_backup_create_over_an_existing_file_is_refused_and_leaves_it_alone(
    copy: Cli, tmp_path: Path
) -> None:
    target = tmp_path / "existing.ksbackup"
    target.write_bytes(b"old contents")
    os.chmod(target, 0o644)
    r = copy("backup", "create", str(target))
    assert r.exit_code != 0 and "ALREADY_EXISTS" in r.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.read_bytes() == b"old contents"
    fresh = tmp_path / "fresh.ksbackup"
    copy.ok("backup", "create", str(fresh))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600 and fresh.read_bytes().startswith(MAGIC)


# -- backup restore ------------------------------------------------------------------------------


def test_backup_restore_into_empty_home_rebuilds_everything_under_new_passphrase(
    keysafe: Cli, populated: Populated
) -> None:
    out = as_json(
        keysafe.ok(
            "backup",
            "restore",
            str(populated.backup),
            "--json",
            input=populated.phrase + "\n",
            env={"KEYSAFE_NEW_PASSPHRASE": NEW_PASSPHRASE},
        )
    )
    assert out["vault_id"] == populated.vault_id
    assert out["agents_paused"] is True  # a token rotated after the backup must not come back
    new = {"KEYSAFE_PASSPHRASE": NEW_PASSPHRASE}
    assert as_json(keysafe.ok("credential", "list", "--json")) == populated.credentials
    assert as_json(keysafe.ok("data", "list", "--json")) == populated.data
    assert wallets_of(keysafe.ok("wallet", "list", "--json", env=new)) == populated.wallets
    report = as_json(keysafe.ok("audit", "verify", "--json", env=new))
    assert report["ok"] is True and report["first_bad_seq"] is None
    assert report["entries"] > 1
    assert stat.S_IMODE(keysafe.home.stat().st_mode) == 0o700
    for f in keysafe.home.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for output in keysafe.outputs:
        assert CANARY not in output


def test_backup_restore_into_empty_home_with_wrong_phrase_is_refused(
    keysafe: Cli, populated: Populated
) -> None:
    r = keysafe("backup", "restore", str(populated.backup), input=HARDHAT_PHRASE + "\n")
    assert_user_error(r, "WRONG_RECOVERY_PHRASE")
    assert not (keysafe.home / "vault.db").exists()


def test_backup_restore_into_same_vault_with_yes_brings_back_removed_credential(
    copy: Cli, populated: Populated
) -> None:
    copy.ok("credential", "remove", "github")
    copy.ok("backup", "restore", str(populated.backup), "--yes")
    assert as_json(copy.ok("credential", "list", "--json")) == populated.credentials
    report = as_json(copy.ok("audit", "verify", "--json"))
    assert report["ok"] is True


def test_backup_restore_of_another_vaults_backup_is_refused(
    keysafe: Cli, populated: Populated
) -> None:
    other = as_json(keysafe.ok("init", "--json"))
    r = keysafe("backup", "restore", str(populated.backup), "--yes")
    line = assert_user_error(r, "INTEGRITY_ERROR")
    assert populated.vault_id in line and other["vault_id"] in line


def test_backup_restore_without_yes_and_no_terminal_is_refused(
    copy: Cli, populated: Populated
) -> None:
    line = assert_user_error(copy("backup", "restore", str(populated.backup)), "MALFORMED_REQUEST")
    assert "--yes" in line


def test_backup_restore_with_flipped_ciphertext_byte_is_refused_and_changes_nothing(
    copy: Cli, populated: Populated, backup_copy: Path
) -> None:
    blob = bytearray(backup_copy.read_bytes())
    i = (ciphertext_offset(bytes(blob)) + len(blob)) // 2
    blob[i] ^= 0x01
    backup_copy.write_bytes(bytes(blob))
    copy.ok("credential", "remove", "github")

    assert_user_error(copy("backup", "restore", str(backup_copy), "--yes"), "INTEGRITY_ERROR")
    assert as_json(copy.ok("credential", "list", "--json")) == []  # not restored, not half-done


def test_backup_restore_with_flipped_byte_into_empty_home_creates_no_vault(
    keysafe: Cli, populated: Populated, backup_copy: Path
) -> None:
    blob = bytearray(backup_copy.read_bytes())
    blob[ciphertext_offset(bytes(blob)) + 10] ^= 0x80
    backup_copy.write_bytes(bytes(blob))
    r = keysafe("backup", "restore", str(backup_copy), input=populated.phrase + "\n")
    assert_user_error(r, "INTEGRITY_ERROR")
    assert not (keysafe.home / "vault.db").exists()


def test_backup_restore_of_truncated_backup_is_refused(copy: Cli, backup_copy: Path) -> None:
    blob = backup_copy.read_bytes()
    backup_copy.write_bytes(blob[: len(blob) - 100])
    r = copy("backup", "restore", str(backup_copy), "--yes")
    assert_user_error(r, ("INTEGRITY_ERROR", "MALFORMED_REQUEST"))


def test_backup_restore_of_a_non_backup_file_is_refused_as_malformed(
    copy: Cli, tmp_path: Path
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("these are not the bytes you are looking for\n")
    line = assert_user_error(copy("backup", "restore", str(junk), "--yes"), "MALFORMED_REQUEST")
    assert "keysafe backup create" in line


def test_backup_create_into_missing_directory_is_a_user_error(copy: Cli, tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "vault.ksbackup"
    line = assert_user_error(
        copy("backup", "create", str(target)), ("MALFORMED_REQUEST", "NOT_FOUND")
    )
    assert str(target.parent) in line
