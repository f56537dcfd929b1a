"""The audit hash chain: every kind of tampering is caught, and the first bad entry is named."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keysafe.audit.record import GENESIS_HASH, AuditEntry, entry_hash, verify_chain
from keysafe.crypto import jcs

Row = tuple[int, str, str, str, str, str, str, str, str]
# (seq, time, actor, action, target, outcome, details, prev_hash, hash): verify_chain's input.
FIELDS = ("time", "actor", "action", "target", "outcome", "details")
N = 6


def _entry(seq: int) -> AuditEntry:
    return AuditEntry(
        seq,
        f"2025-01-01T00:00:{seq:02d}.000000Z",
        "owner",
        "credential.add",
        f"credential:c{seq}",
        "success",
        {"name": f"c{seq}", "version": seq},
    )


def _row(entry: AuditEntry, prev: str, digest: str | None = None) -> Row:
    return (
        entry.seq,
        entry.time,
        entry.actor,
        entry.action,
        entry.target,
        entry.outcome,
        jcs.dumps(entry.details).decode(),
        prev,
        entry_hash(prev, entry) if digest is None else digest,
    )


def _as_entry(row: Row) -> AuditEntry:
    return AuditEntry(row[0], *row[1:6], json.loads(row[6]))


def build(entries: list[AuditEntry]) -> list[Row]:
    rows: list[Row] = []
    prev = GENESIS_HASH
    for e in entries:
        rows.append(_row(e, prev))
        prev = rows[-1][8]
    return rows


def chain(n: int = N) -> list[Row]:
    return build([_entry(i) for i in range(1, n + 1)])


def check(rows: list[Row], head: tuple[int, str]) -> tuple[bool, int | None]:
    report = verify_chain(rows, head_seq=head[0], head_hash=head[1])
    return report.ok, report.first_bad_seq


def head_of(rows: list[Row]) -> tuple[int, str]:
    return (rows[-1][0], rows[-1][8]) if rows else (0, GENESIS_HASH)


# -- mutations (positions are 1-based, as seq numbers are) --------------------------------------


def edit(pos: int, field: str) -> Callable[[list[Row]], list[Row]]:
    """Change one field of entry `pos` in place, leaving its stored hashes alone."""

    def go(rows: list[Row]) -> list[Row]:
        r = list(rows[pos - 1])
        i = 1 + FIELDS.index(field) if field in FIELDS else ("prev_hash", "hash").index(field) + 7
        if field == "details":
            r[i] = jcs.dumps({**json.loads(str(r[i])), "tampered": True}).decode()
        elif field in ("prev_hash", "hash"):
            r[i] = ("f" if str(r[i])[0] != "f" else "e") + str(r[i])[1:]
        else:
            r[i] = f"{r[i]}x"
        return [*rows[: pos - 1], tuple(r), *rows[pos:]]  # type: ignore[list-item]

    return go


def edit_rehash(pos: int) -> Callable[[list[Row]], list[Row]]:
    """Edit entry `pos` and recompute its own hash (but not the later entries' links)."""

    def go(rows: list[Row]) -> list[Row]:
        old = _as_entry(rows[pos - 1])
        forged = AuditEntry(
            old.seq, old.time, old.actor, "credential.remove", old.target, old.outcome, old.details
        )
        return [*rows[: pos - 1], _row(forged, rows[pos - 1][7]), *rows[pos:]]

    return go


def delete(pos: int) -> Callable[[list[Row]], list[Row]]:
    return lambda rows: [*rows[: pos - 1], *rows[pos:]]


def swap(pos: int) -> Callable[[list[Row]], list[Row]]:
    """Swap entries `pos` and `pos + 1` (rows keep their own seq)."""

    def go(rows: list[Row]) -> list[Row]:
        out = list(rows)
        out[pos - 1], out[pos] = out[pos], out[pos - 1]
        return out

    return go


def insert(pos: int, *, linked: bool) -> Callable[[list[Row]], list[Row]]:
    """Insert a forged entry as seq `pos`, renumbering the entries after it.

    `linked`: the forger links it to entry pos-1 and computes its hash correctly (the strongest
    forgery possible without rewriting every later entry); otherwise its hashes are junk.
    """

    def go(rows: list[Row]) -> list[Row]:
        prev = rows[pos - 2][8] if pos > 1 else GENESIS_HASH
        forged = AuditEntry(
            pos,
            "2025-01-01T00:00:00.500000Z",
            "owner",
            "policy.set",
            "agent:bot",
            "success",
            {"agent": "bot"},
        )
        new = _row(forged, prev) if linked else _row(forged, "1" * 64, "2" * 64)
        later = [(r[0] + 1, *r[1:]) for r in rows[pos - 1 :]]
        return [*rows[: pos - 1], new, *later]

    return go


def raw_details(pos: int, raw: str) -> Callable[[list[Row]], list[Row]]:
    """Store `raw` as entry `pos`'s details text."""

    def go(rows: list[Row]) -> list[Row]:
        r = rows[pos - 1]
        return [*rows[: pos - 1], (*r[:6], raw, *r[7:]), *rows[pos:]]

    return go


def rewrite_from(pos: int) -> Callable[[list[Row]], list[Row]]:
    """Rewrite entries pos..n with a consistent new chain (only the vault's head disagrees)."""

    def go(rows: list[Row]) -> list[Row]:
        entries = [_as_entry(r) for r in rows]
        for i in range(pos - 1, len(entries)):
            e = entries[i]
            entries[i] = AuditEntry(
                e.seq, e.time, "intruder", e.action, e.target, e.outcome, e.details
            )
        return build(entries)

    return go


@dataclass(frozen=True)
class Case:
    mutate: Callable[[list[Row]], list[Row]]
    first_bad_seq: int


CASES = {
    "edit time of entry 3": Case(edit(3, "time"), 3),
    "edit actor of entry 3": Case(edit(3, "actor"), 3),
    "edit action of entry 1": Case(edit(1, "action"), 1),
    "edit target of entry 6 (newest)": Case(edit(6, "target"), 6),
    "edit outcome of entry 2": Case(edit(2, "outcome"), 2),
    "edit details of entry 4": Case(edit(4, "details"), 4),
    "edit prev_hash of entry 3": Case(edit(3, "prev_hash"), 3),
    "edit stored hash of entry 3": Case(edit(3, "hash"), 3),
    "edit entry 3 and recompute its own hash": Case(edit_rehash(3), 4),
    "edit newest entry and recompute its hash": Case(edit_rehash(6), 6),
    "delete middle entry 3": Case(delete(3), 3),
    "delete first entry": Case(delete(1), 1),
    "delete newest entry (tail)": Case(delete(6), 6),
    "delete two newest entries": Case(lambda rows: rows[:-2], 5),
    "delete every entry": Case(lambda rows: [], 1),
    "swap entries 2 and 3": Case(swap(2), 2),
    "swap the two newest entries": Case(swap(5), 5),
    "move newest entry to the front": Case(lambda rows: [rows[-1], *rows[:-1]], 1),
    "insert linked forgery as entry 3": Case(insert(3, linked=True), 4),
    "insert junk entry as entry 3": Case(insert(3, linked=False), 3),
    "insert linked forgery as entry 1": Case(insert(1, linked=True), 2),
    # A consistent rewrite links up; only the vault's head disagrees, so the newest entry is named.
    "history rewritten consistently from entry 3": Case(rewrite_from(3), 6),
    "duplicate entry 2": Case(lambda rows: [*rows[:2], rows[1], *rows[2:]], 3),
    "unreadable details in entry 2": Case(raw_details(2, "{not json"), 2),
    "details that are not an object in entry 2": Case(raw_details(2, "[1, 2]"), 2),
}


def test_verify_chain_intact_chain_is_ok() -> None:
    rows = chain()
    report = verify_chain(rows, head_seq=N, head_hash=rows[-1][8])
    assert report.ok
    assert (report.entries, report.first_bad_seq, report.problem) == (N, None, None)


def test_verify_chain_empty_chain_with_genesis_head_is_ok() -> None:
    assert verify_chain([], head_seq=0, head_hash=GENESIS_HASH).ok


def test_verify_chain_first_entry_links_to_genesis() -> None:
    rows = chain(1)
    assert rows[0][7] == GENESIS_HASH == "0" * 64


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_verify_chain_tampered_names_first_bad_entry(case: Case) -> None:
    original = chain()
    head = head_of(original)  # the vault header keeps the real head; the rows are tampered
    assert check(case.mutate(original), head) == (False, case.first_bad_seq)


@pytest.mark.parametrize(
    "linked", [pytest.param(True, id="linked"), pytest.param(False, id="junk")]
)
def test_verify_chain_entry_appended_after_head_names_it(linked: bool) -> None:
    original = chain()
    tampered = insert(N + 1, linked=linked)(original)
    assert check(tampered, head_of(original)) == (False, N + 1)


def test_verify_chain_head_seq_beyond_rows_names_first_missing() -> None:
    rows = chain()
    assert check(rows, (N + 2, "a" * 64)) == (False, N + 1)


def test_verify_chain_head_hash_wrong_is_not_ok() -> None:
    rows = chain()
    ok, bad = check(rows, (N, "a" * 64))
    assert not ok
    assert bad == N


def test_verify_chain_problem_says_what_happened() -> None:
    rows = chain()
    report = verify_chain(delete(3)(rows), head_seq=N, head_hash=rows[-1][8])
    assert report.problem is not None
    assert "entry 3 is missing" in report.problem


# -- property ----------------------------------------------------------------------------------

KINDS = ("edit", "edit_rehash", "delete", "swap", "insert_linked", "insert_junk")


@st.composite
def chains(draw: st.DrawFn) -> list[Row]:
    """1..30 entries with random field contents (drawn from one seed: drawing each is slow)."""
    n = draw(st.integers(1, 30))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    alphabet = "abcdefghij.:-_ 0123456789"

    def text() -> str:
        return "".join(rnd.choices(alphabet, k=rnd.randint(0, 12)))

    def entry(seq: int) -> AuditEntry:
        details = {k: rnd.randint(-5, 5) for k in rnd.sample("abc", rnd.randint(0, 3))}
        return AuditEntry(seq, text(), text(), text(), text(), text(), details)

    return build([entry(seq) for seq in range(1, n + 1)])


@st.composite
def mutations(draw: st.DrawFn, n: int) -> tuple[str, int, Callable[[list[Row]], list[Row]]]:
    kind = draw(st.sampled_from(KINDS if n > 1 else [k for k in KINDS if k != "swap"]))
    if kind == "edit":
        pos = draw(st.integers(1, n))
        field = draw(st.sampled_from([*FIELDS, "prev_hash", "hash"]))
        return kind, pos, edit(pos, field)
    if kind == "edit_rehash":
        pos = draw(st.integers(1, n))
        return kind, pos, edit_rehash(pos)
    if kind == "delete":
        pos = draw(st.integers(1, n))
        return kind, pos, delete(pos)
    if kind == "swap":
        pos = draw(st.integers(1, n - 1))
        return kind, pos, swap(pos)
    pos = draw(st.integers(1, n + 1))
    return kind, pos, insert(pos, linked=kind == "insert_linked")


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_verify_chain_any_single_tamper_is_caught_near_its_position(data: st.DataObject) -> None:
    """For a chain of 1..30 entries and one mutation whose first changed row is `pos`:

    verify_chain is not ok, and `min(pos, head) <= first_bad_seq <= pos + 1`. The upper bound
    is `pos + 1` (not `pos`) because a forger who recomputes the changed entry's own hash, or
    inserts a correctly linked entry, is only caught where the *next* entry's link breaks. The
    lower bound is the head entry when the change lies beyond the head.
    """
    rows: list[Row] = data.draw(chains())
    kind, pos, mutate = data.draw(mutations(len(rows)))
    head = head_of(rows)
    tampered = mutate(rows)
    first_diff = next(
        (i + 1 for i, (a, b) in enumerate(zip(rows, tampered, strict=False)) if a != b),
        min(len(rows), len(tampered)) + 1,
    )
    assert first_diff == pos, kind  # the mutation changes exactly from `pos` on
    ok, bad = check(tampered, head)
    assert not ok, kind
    assert bad is not None
    assert min(pos, head[0]) <= bad <= pos + 1, (kind, pos, bad)


# -- malformed rows (a hand-edited SQLite file can hold any type in any column) ------------------


def set_field(pos: int, index: int, value: object) -> Callable[[list[Row]], list[Row]]:
    def go(rows: list[Row]) -> list[Row]:
        r = list(rows[pos - 1])
        r[index] = value
        return [*rows[: pos - 1], tuple(r), *rows[pos:]]  # type: ignore[list-item]

    return go


MALFORMED = {
    "non-ascii stored hash in entry 2": set_field(2, 8, "é" * 64),
    "non-ascii prev_hash in entry 2": set_field(2, 7, "é" * 64),
    "bytes time in entry 2": set_field(2, 1, b"2025-01-01"),
    "bytes prev_hash in entry 2": set_field(2, 7, b"0" * 64),
}


@pytest.mark.parametrize("mutate", MALFORMED.values(), ids=MALFORMED.keys())
def test_verify_chain_malformed_row_is_reported_not_raised(
    mutate: Callable[[list[Row]], list[Row]],
) -> None:
    original = chain()
    assert check(mutate(original), head_of(original)) == (False, 2)


def test_verify_chain_non_ascii_head_hash_is_reported_not_raised() -> None:
    rows = chain()
    ok, _ = check(rows, (N, "é" * 64))
    assert not ok
