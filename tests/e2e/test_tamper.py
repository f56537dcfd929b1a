"""Tamper tests: an attacker with write access to vault.db edits it with the stdlib `sqlite3`.

Records: every edit of a ciphertext, wrapped data key, bound column (name, class, version, epoch,
meta) or a row copied from elsewhere must fail with INTEGRITY_ERROR naming the record, on the
command that opens it, and never yield another record's plaintext or address.

Audit: every edit, deletion, insertion, reordering or truncation of the hash chain must make
`audit verify` fail (exit 1) and name the first bad entry.

One pristine vault is built per xdist worker (module fixture); each test tampers its own copy,
which keeps the number of keysafe subprocesses small.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keysafe.audit.record import AuditEntry, entry_hash
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import ErrorCode, IntegrityError
from keysafe.service.context import Home, open_vault
from tests.conftest import PASSPHRASE, Cli, Result

SECRET_A = b"cred-a-secret-7f3c0e9a51d2"
SECRET_B_OLD = b"cred-b-first-value-1111"
SECRET_B = b"cred-b-second-value-2222"
PROFILE = b'{"email":"owner@example.com","phone":"+1 555 0100"}'
CRYPTO_COLS = ("dek_nonce", "dek_wrapped", "nonce", "ciphertext")
AUDIT_COLS = ("time", "actor", "action", "target", "outcome", "details", "prev_hash", "hash")
ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
# Audit entries of the pristine vault: 1 vault.init, 2 cred-a, 3 cred-b, 4 cred-b replaced,
# 5 data profile, 6 wallet w1, 7 wallet w2.
PRISTINE_ENTRIES = 7


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSAFE_")}
    return env | {"KEYSAFE_HOME": str(home), "KEYSAFE_PASSPHRASE": PASSPHRASE}


@dataclass(frozen=True)
class Pristine:
    home: Path
    phrase: str
    addresses: dict[str, str]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    home = tmp_path_factory.mktemp("pristine") / "home"
    cli = Cli(home, _env(home))
    phrase = json.loads(cli.ok("init", "--json").stdout)["recovery_phrase"]
    cli.ok("credential", "add", "cred-a", "--host", "api.example.com", input=SECRET_A)
    cli.ok("credential", "add", "cred-b", "--host", "api.other.com", input=SECRET_B_OLD)
    cli.ok("credential", "add", "cred-b", "--host", "api.other.com", "--replace", input=SECRET_B)
    cli.ok("data", "set", "profile", "--class", "sensitive", input=PROFILE)
    addresses = {
        name: json.loads(cli.ok("wallet", "create", name, "--chain", "evm", "--json").stdout)[
            "address"
        ]
        for name in ("w1", "w2")
    }
    return Pristine(home, phrase, addresses)


@pytest.fixture
def victim(pristine: Pristine, tmp_path: Path) -> Cli:
    """A CLI bound to a private copy of the pristine vault, free to tamper with."""
    home = tmp_path / "home"
    shutil.copytree(pristine.home, home)
    os.chmod(home, 0o700)
    return Cli(home, _env(home))


# -- the attacker's tools ------------------------------------------------------------------


@contextmanager
def _db(home: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(home / "vault.db")) as conn:
        conn.row_factory = sqlite3.Row
        yield conn
        conn.commit()


def _row(home: Path, kind: str, name: str) -> dict[str, Any]:
    with _db(home) as c:
        row = c.execute("SELECT * FROM records WHERE kind=? AND name=?", (kind, name)).fetchone()
    assert row is not None, f"no {kind} {name} in {home}"
    return dict(row)


def _set(home: Path, kind: str, name: str, /, **cols: Any) -> None:
    assign = ", ".join(f"{c}=?" for c in cols)
    with _db(home) as c:
        cur = c.execute(
            f"UPDATE records SET {assign} WHERE kind=? AND name=?", (*cols.values(), kind, name)
        )
        assert cur.rowcount == 1


def _flip(blob: bytes, index: int) -> bytes:
    out = bytearray(blob)
    out[index] ^= 0x01
    return bytes(out)


def _edit_meta(home: Path, kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    meta = json.loads(_row(home, kind, name)["meta"])
    change(meta)
    _set(home, kind, name, meta=json.dumps(meta, sort_keys=True, separators=(",", ":")))


def _audit_rows(home: Path) -> list[dict[str, Any]]:
    with _db(home) as c:
        return [dict(r) for r in c.execute("SELECT * FROM audit ORDER BY seq")]


def _set_audit(home: Path, seq: int, **cols: Any) -> None:
    assign = ", ".join(f"{c}=?" for c in cols)
    with _db(home) as c:
        assert c.execute(f"UPDATE audit SET {assign} WHERE seq=?", (*cols.values(), seq)).rowcount


def _recomputed_hash(row: dict[str, Any], prev_hash: str) -> str:
    entry = AuditEntry(
        row["seq"],
        row["time"],
        row["actor"],
        row["action"],
        row["target"],
        row["outcome"],
        json.loads(row["details"]),
    )
    return entry_hash(prev_hash, entry)


# -- checks --------------------------------------------------------------------------------


def _assert_integrity_error(r: Result, kind: str, name: str) -> None:
    assert r.exit_code == 1, f"tampering went unnoticed: {r.stdout}{r.stderr}"
    assert r.stderr.startswith("Error [INTEGRITY_ERROR]: "), r.stderr
    assert f"The {kind} '{name}'" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not ADDRESS_RE.search(r.stdout), f"an address was shown: {r.stdout}"


def _verify_json(cli: Cli) -> tuple[int, dict[str, Any]]:
    r = cli("audit", "verify", "--json")
    return r.exit_code, json.loads(r.stdout)


def _open_in_process(home: Path, *targets: tuple[str, str]) -> dict[tuple[str, str], Any]:
    """Unlock in-process and open each record: its plaintext, or the KeysafeError it raised.

    No CLI command opens a credential or a data record today (only `backup restore` checks that
    they open), so the service layer is driven directly, as a future `use`/`read` command will.
    """
    out: dict[tuple[str, str], Any] = {}
    with open_vault(Home(home)) as vault:
        vault.unlock(SecretBytes(bytearray(PASSPHRASE.encode())))
        with vault.db.read() as conn:
            for kind, name in targets:
                info = vault.get_record(conn, kind, name)
                try:
                    with vault.open_record(conn, info) as plain:
                        out[kind, name] = bytes(plain.reveal())
                except IntegrityError as exc:
                    out[kind, name] = exc
    return out


def _assert_record_refused(outcome: Any, kind: str, name: str) -> None:
    assert isinstance(outcome, IntegrityError), f"{kind} '{name}' opened: {outcome!r}"
    assert outcome.code is ErrorCode.INTEGRITY_ERROR
    assert outcome.facts["name"] == name and outcome.facts["kind"] == kind
    assert f"The {kind} '{name}'" in outcome.what


# -- records through the CLI ---------------------------------------------------------------


@pytest.mark.parametrize(("column", "index"), [("ciphertext", 0), ("dek_wrapped", -1)])
def test_wallet_list_when_wallet_byte_flipped_fails_integrity_naming_wallet(
    victim: Cli, column: str, index: int
) -> None:
    row = _row(victim.home, "wallet", "w2")
    _set(victim.home, "wallet", "w2", **{column: _flip(row[column], index)})

    _assert_integrity_error(victim("wallet", "list", "--json"), "wallet", "w2")


def test_wallet_list_when_two_wallets_swap_ciphertexts_fails_for_each_never_wrong_address(
    victim: Cli,
) -> None:
    w1, w2 = _row(victim.home, "wallet", "w1"), _row(victim.home, "wallet", "w2")
    _set(victim.home, "wallet", "w1", **{c: w2[c] for c in CRYPTO_COLS})
    _set(victim.home, "wallet", "w2", **{c: w1[c] for c in CRYPTO_COLS})

    _assert_integrity_error(victim("wallet", "list", "--json"), "wallet", "w1")
    # Put w1 back: w2, still holding w1's key, must fail on its own too.
    _set(victim.home, "wallet", "w1", **{c: w1[c] for c in CRYPTO_COLS})
    _assert_integrity_error(victim("wallet", "list", "--json"), "wallet", "w2")


def test_wallet_list_when_row_copied_from_another_vault_fails_naming_wallet(
    pristine: Pristine, vault: Cli
) -> None:
    own = json.loads(vault.ok("wallet", "create", "w1", "--chain", "evm", "--json").stdout)
    foreign = _row(pristine.home, "wallet", "w1")
    _set(vault.home, "wallet", "w1", **{c: foreign[c] for c in CRYPTO_COLS})

    r = vault("wallet", "list", "--json")

    _assert_integrity_error(r, "wallet", "w1")
    assert pristine.addresses["w1"] not in r.stdout + r.stderr
    assert own["address"] not in r.stdout


def test_wallet_list_when_address_in_meta_redirected_fails_naming_wallet(
    pristine: Pristine, victim: Cli
) -> None:
    def redirect(meta: dict[str, Any]) -> None:
        meta["address"] = pristine.addresses["w1"]

    _edit_meta(victim.home, "wallet", "w2", redirect)

    r = victim("wallet", "list", "--json")

    _assert_integrity_error(r, "wallet", "w2")


def test_wallet_list_when_meta_is_not_json_fails_integrity_naming_wallet(victim: Cli) -> None:
    _set(victim.home, "wallet", "w2", meta='{"address": "0xdead"')

    _assert_integrity_error(victim("wallet", "list", "--json"), "wallet", "w2")


def test_wallet_create_when_hd_seed_ciphertext_flipped_fails_and_creates_nothing(
    victim: Cli,
) -> None:
    seed = _row(victim.home, "hd_seed", "default")
    _set(victim.home, "hd_seed", "default", ciphertext=_flip(seed["ciphertext"], 10))

    r = victim("wallet", "create", "w3", "--chain", "evm", "--json")

    _assert_integrity_error(r, "hd_seed", "default")
    with _db(victim.home) as c:
        assert c.execute("SELECT count(*) FROM records WHERE name='w3'").fetchone()[0] == 0
        assert c.execute("SELECT max(seq) FROM audit").fetchone()[0] == PRISTINE_ENTRIES


def test_backup_create_when_credential_gained_a_host_fails_naming_credential(
    victim: Cli, tmp_path: Path
) -> None:
    # A tampered record never travels into a backup (the restore side checks again, too).
    def widen(meta: dict[str, Any]) -> None:
        meta["hosts"] = sorted([*meta["hosts"], "evil.example.net"])

    _edit_meta(victim.home, "credential", "cred-a", widen)
    backup = tmp_path / "vault.backup"
    r = victim("backup", "create", str(backup))

    _assert_integrity_error(r, "credential", "cred-a")
    assert not backup.exists(), "a backup of a tampered vault was written"


# -- credentials and data, opened in-process (no CLI command opens them yet) ---------------


def test_open_record_when_untampered_returns_each_plaintext(victim: Cli) -> None:
    opened = _open_in_process(
        victim.home, ("credential", "cred-a"), ("credential", "cred-b"), ("data", "profile")
    )

    assert opened == {
        ("credential", "cred-a"): SECRET_A,
        ("credential", "cred-b"): SECRET_B,
        ("data", "profile"): PROFILE,
    }


def _flip_cred_a(column: str, index: int) -> Callable[[Path], tuple[str, str]]:
    def tamper(home: Path) -> tuple[str, str]:
        blob = _row(home, "credential", "cred-a")[column]
        _set(home, "credential", "cred-a", **{column: _flip(blob, index)})
        return "credential", "cred-a"

    return tamper


def _add_host(home: Path) -> tuple[str, str]:
    _edit_meta(home, "credential", "cred-a", lambda m: m["hosts"].append("evil.example.net"))
    return "credential", "cred-a"


def _roll_back_version(home: Path) -> tuple[str, str]:
    assert _row(home, "credential", "cred-b")["version"] == 2
    _set(home, "credential", "cred-b", version=1)
    return "credential", "cred-b"


def _rename(home: Path) -> tuple[str, str]:
    _set(home, "credential", "cred-a", name="cred-z")
    return "credential", "cred-z"


def _other_epoch(home: Path) -> tuple[str, str]:
    _set(home, "credential", "cred-a", epoch=2)
    return "credential", "cred-a"


def _downgrade_class(home: Path) -> tuple[str, str]:
    assert _row(home, "data", "profile")["data_class"] == "sensitive"
    _set(home, "data", "profile", data_class="standard")
    return "data", "profile"


def _change_kind(home: Path) -> tuple[str, str]:
    _set(home, "data", "profile", kind="credential")
    return "credential", "profile"


def _credential_ciphertext_into_data(home: Path) -> tuple[str, str]:
    cred = _row(home, "credential", "cred-a")
    _set(home, "data", "profile", **{c: cred[c] for c in CRYPTO_COLS})
    return "data", "profile"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(_flip_cred_a("ciphertext", 3), id="ciphertext-byte"),
        pytest.param(_flip_cred_a("ciphertext", -1), id="ciphertext-tag-byte"),
        pytest.param(_flip_cred_a("dek_wrapped", 0), id="dek-wrapped-byte"),
        pytest.param(_flip_cred_a("nonce", 7), id="nonce-byte"),
        pytest.param(_add_host, id="meta-extra-host"),
        pytest.param(_roll_back_version, id="version-rolled-back"),
        pytest.param(_rename, id="renamed"),
        pytest.param(_other_epoch, id="epoch-changed"),
        pytest.param(_downgrade_class, id="class-downgraded"),
        pytest.param(_change_kind, id="kind-changed"),
        pytest.param(_credential_ciphertext_into_data, id="ciphertext-from-other-record"),
    ],
)
def test_open_record_when_row_tampered_raises_integrity_error_naming_record(
    victim: Cli, tamper: Callable[[Path], tuple[str, str]]
) -> None:
    kind, name = tamper(victim.home)

    opened = _open_in_process(victim.home, (kind, name))

    _assert_record_refused(opened[kind, name], kind, name)


def test_open_record_when_two_credentials_swap_ciphertexts_refuses_both(victim: Cli) -> None:
    a, b = _row(victim.home, "credential", "cred-a"), _row(victim.home, "credential", "cred-b")
    _set(victim.home, "credential", "cred-a", **{c: b[c] for c in CRYPTO_COLS})
    _set(victim.home, "credential", "cred-b", **{c: a[c] for c in CRYPTO_COLS})

    opened = _open_in_process(victim.home, ("credential", "cred-a"), ("credential", "cred-b"))

    _assert_record_refused(opened["credential", "cred-a"], "credential", "cred-a")
    _assert_record_refused(opened["credential", "cred-b"], "credential", "cred-b")


# -- the audit chain -----------------------------------------------------------------------


def test_audit_verify_when_untampered_reports_ok(victim: Cli) -> None:
    code, report = _verify_json(victim)

    assert (code, report) == (
        0,
        {
            "ok": True,
            "entries": PRISTINE_ENTRIES,
            "first_bad_seq": None,
            "keyed": True,
            "problem": None,
            "unsealed": False,
            "state": [],  # every agent, policy and setting sealed
        },
    )


def test_audit_verify_when_entry_details_edited_names_seq_3_in_json_and_text(
    victim: Cli,
) -> None:
    details = _audit_rows(victim.home)[2]["details"]
    assert "api.other.com" in details
    _set_audit(victim.home, 3, details=details.replace("api.other.com", "api.evil.com"))

    code, report = _verify_json(victim)
    human = victim("audit", "verify")

    assert (code, report["ok"], report["first_bad_seq"]) == (1, False, 3)
    assert human.exit_code == 1
    assert human.stderr.startswith("Error [INTEGRITY_ERROR]: "), human.stderr
    assert "seq 3" in human.stderr, human.stderr


def test_audit_verify_when_entry_deleted_names_seq_3(victim: Cli) -> None:
    with _db(victim.home) as c:
        c.execute("DELETE FROM audit WHERE seq=3")

    code, report = _verify_json(victim)

    assert (code, report["ok"], report["first_bad_seq"]) == (1, False, 3)


def test_audit_verify_when_two_entries_swapped_names_lower_seq(victim: Cli) -> None:
    rows = {r["seq"]: r for r in _audit_rows(victim.home)}
    _set_audit(victim.home, 3, **{c: rows[5][c] for c in AUDIT_COLS})
    _set_audit(victim.home, 5, **{c: rows[3][c] for c in AUDIT_COLS})

    code, report = _verify_json(victim)

    assert (code, report["ok"], report["first_bad_seq"]) == (1, False, 3)


def test_audit_verify_when_forged_entry_inserted_and_rest_renumbered_is_detected(
    victim: Cli,
) -> None:
    rows = _audit_rows(victim.home)
    with _db(victim.home) as c:
        for seq in range(PRISTINE_ENTRIES, 2, -1):
            c.execute("UPDATE audit SET seq=? WHERE seq=?", (seq + 1, seq))
        forged = dict(
            rows[2],
            seq=3,
            action="credential.remove",
            target="credential:cred-a",
            details='{"name":"cred-a"}',
            prev_hash=rows[1]["hash"],
        )
        forged["hash"] = _recomputed_hash(forged, rows[1]["hash"])  # linked like a real entry
        c.execute(
            f"INSERT INTO audit (seq, {', '.join(AUDIT_COLS)}) VALUES (?{', ?' * len(AUDIT_COLS)})",
            (3, *(forged[col] for col in AUDIT_COLS)),
        )
        c.execute("UPDATE vault SET audit_head_seq=?", (PRISTINE_ENTRIES + 1,))

    code, report = _verify_json(victim)

    # The forged entry itself links to entry 2; the break shows at the first renumbered entry.
    assert (code, report["ok"], report["first_bad_seq"]) == (1, False, 4)


def test_audit_verify_when_last_entry_truncated_names_that_seq(victim: Cli) -> None:
    with _db(victim.home) as c:
        c.execute("DELETE FROM audit WHERE seq=?", (PRISTINE_ENTRIES,))

    code, report = _verify_json(victim)

    assert (code, report["ok"], report["first_bad_seq"]) == (1, False, PRISTINE_ENTRIES)


def test_audit_verify_when_entry_edited_and_its_hash_recomputed_names_it_keyed_next_unkeyed(
    victim: Cli,
) -> None:
    row = _audit_rows(victim.home)[2]
    row["details"] = row["details"].replace("api.other.com", "api.evil.com")
    _set_audit(victim.home, 3, details=row["details"], hash=_recomputed_hash(row, row["prev_hash"]))

    code, report = _verify_json(victim)
    unkeyed = victim("audit", "verify", "--json", "--unkeyed")

    # With the owner's key the broken seal names the edited entry itself; the bare hash chain
    # only breaks at the next entry's link.
    assert (code, report["ok"], report["first_bad_seq"]) == (1, False, 3)
    assert (unkeyed.exit_code, json.loads(unkeyed.stdout)["first_bad_seq"]) == (1, 4)


def test_audit_verify_when_last_entry_edited_and_hash_recomputed_fails_at_head(
    victim: Cli,
) -> None:
    row = _audit_rows(victim.home)[-1]
    row["target"] = "wallet:attacker"
    _set_audit(
        victim.home, row["seq"], target=row["target"], hash=_recomputed_hash(row, row["prev_hash"])
    )

    code, report = _verify_json(victim)

    assert (code, report["ok"], report["first_bad_seq"]) == (1, False, PRISTINE_ENTRIES)


def test_audit_verify_when_attacker_rewrites_chain_from_entry_3_and_head_is_detected(
    victim: Cli,
) -> None:
    rows = _audit_rows(victim.home)
    rows[2]["details"] = rows[2]["details"].replace("api.other.com", "api.evil.com")
    prev = rows[1]["hash"]
    for row in rows[2:]:
        row["prev_hash"], row["hash"] = prev, _recomputed_hash(row, prev)
        _set_audit(victim.home, row["seq"], **{c: row[c] for c in AUDIT_COLS})
        prev = row["hash"]
    with _db(victim.home) as c:
        c.execute("UPDATE vault SET audit_head_hash=?", (prev,))

    code, report = _verify_json(victim)

    assert (code, report["ok"]) == (1, False)
