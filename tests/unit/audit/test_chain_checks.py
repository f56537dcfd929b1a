"""verify_chain's named checks (audit/record.py), each on its own: a row at its seq, one entry's
link, hash and seal, the head, the unsealed entries and the sealed checkpoint. test_chain.py
tampers with whole chains; these name the check that must catch each kind of damage.
"""

from __future__ import annotations

from keysafe.audit import record
from keysafe.audit.record import (
    GENESIS_HASH,
    AuditEntry,
    ChainReport,
    Keyed,
    checkpoint_mac,
    entry_hash,
    entry_mac,
)
from keysafe.crypto import jcs

KEY = b"k" * 32


def entry(seq: int) -> AuditEntry:
    return AuditEntry(seq, "2026-03-02T12:00:00Z", "owner", "vault.init", "vault", "success", {})


def row(seq: int, prev: str = GENESIS_HASH, *, sealed: bool = False) -> tuple[object, ...]:
    e = entry(seq)
    digest = entry_hash(prev, e)
    mac = entry_mac(KEY, digest) if sealed else None
    return (
        seq,
        e.time,
        e.actor,
        e.action,
        e.target,
        e.outcome,
        jcs.dumps(e.details).decode(),
        prev,
        digest,
        mac,
    )


def walk(keyed: bool = False) -> record._Walk:
    return record._Walk(KEY if keyed else None)


def test_canonical_is_the_jcs_of_every_field() -> None:
    e = entry(1)
    assert e.canonical() == jcs.dumps(e.to_dict())
    assert set(e.to_dict()) == {"seq", "time", "actor", "action", "target", "outcome", "details"}


def test_row_at_refuses_short_rows_gaps_and_repeats() -> None:
    w = walk()
    w.count = 1
    assert isinstance(record._row_at(w, (1, "t")), ChainReport)
    gap = record._row_at(w, row(2))
    assert (
        isinstance(gap, ChainReport) and gap.problem == "entry 1 is missing (the next entry is 2)"
    )
    w.expected_seq = 3
    repeat = record._row_at(w, row(2))
    assert isinstance(repeat, ChainReport) and "out of order after entry 2" in str(repeat.problem)
    w.expected_seq = 2
    assert isinstance(record._row_at(w, row(2)), record.ChainRow)


def test_check_entry_links_hashes_and_moves_on() -> None:
    w = walk()
    first = row(1)
    assert record._check_entry(w, first) is None
    assert (w.expected_seq, w.prev, w.hashes) == (2, first[8], {1: first[8]})
    unlinked = record._check_entry(w, row(2))  # links to genesis, not to entry 1
    assert unlinked is not None and "does not link to entry 1" in str(unlinked.problem)
    w2 = walk()
    edited = list(row(1))
    edited[2] = "mallory"
    bad = record._check_entry(w2, tuple(edited))
    assert bad is not None and bad.problem == "entry 1 was edited after it was written"


def test_check_entry_keyed_refuses_a_wrong_seal_and_remembers_a_missing_one() -> None:
    w = walk(keyed=True)
    assert record._check_entry(w, row(1)) is None and w.first_unsealed == 1
    w = walk(keyed=True)
    forged = list(row(1, sealed=True))
    forged[9] = "0" * 64
    bad = record._check_entry(w, tuple(forged))
    assert bad is not None and bad.keyed and "seal does not match" in str(bad.problem)


def test_check_head_catches_a_cut_tail_an_added_tail_and_a_wrong_head() -> None:
    w = walk()
    first = row(1)
    record._check_entry(w, first)
    head = str(first[8])
    assert record._check_head(w, 1, head) is None
    cut = record._check_head(w, 2, head)
    assert cut is not None and cut.problem == "entries 2…2 were removed from the end"
    added = record._check_head(w, 0, head)
    assert added is not None and "added behind the head" in str(added.problem)
    wrong = record._check_head(w, 1, "a" * 64)
    assert wrong is not None and wrong.problem == "the newest entry does not match the head"
    bad = record._check_head(w, 1, "nope")
    assert bad is not None and bad.problem == "the head of the chain is malformed"


def test_check_sealed_names_the_first_unsealed_entry() -> None:
    w = walk(keyed=True)
    assert record._check_sealed(w) is None
    w.first_unsealed = 3
    report = record._check_sealed(w)
    assert report is not None and (report.first_bad_seq, report.unsealed) == (3, True)


def test_check_checkpoint_matches_only_the_sealed_hash() -> None:
    w = walk(keyed=True)
    first = row(1, sealed=True)
    record._check_entry(w, first)
    good = Keyed(KEY, "v1", 1, checkpoint_mac(KEY, "v1", 1, str(first[8])))
    assert record._check_checkpoint(w, good) is None
    assert record._check_checkpoint(w, None) is None
    rewritten = Keyed(KEY, "v1", 1, checkpoint_mac(KEY, "v1", 1, "b" * 64))
    bad = record._check_checkpoint(w, rewritten)
    assert bad is not None and "sealed checkpoint no longer matches" in str(bad.problem)
