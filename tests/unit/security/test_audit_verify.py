"""The pure chain walk: every kind of tampering is named at the first bad entry."""

from __future__ import annotations

import os

import pytest

from security.audit.chain import EMPTY_HEAD, GENESIS, AuditRecord, Head, chain_records
from security.audit.verifier import BadRecord, ChainVerifier, VerifyReport
from security.errors import AuditChainBrokenError, KeyRingError
from security.keys import KeySet, Purpose, SymmetricKey

Stream = list[tuple[str, dict[str, str]]]


def _key(kid: str = "audit-1", *, retired: bool = False) -> SymmetricKey:
    return SymmetricKey(kid, Purpose.AUDIT_GATEWAY, os.urandom(32), retired=retired)


KEY = _key()
KEYS = KeySet(Purpose.AUDIT_GATEWAY, [KEY])


def _records(n: int) -> list[AuditRecord]:
    return [
        AuditRecord.make(actor="client:1", action="task.submit", outcome="ok", now=1000.0 + i)
        for i in range(n)
    ]


def _stream(n: int, key: SymmetricKey = KEY, head: Head = EMPTY_HEAD) -> Stream:
    entries = chain_records(head, _records(n), key)
    return [(f"{1000 + e.seq}-0", e.to_fields()) for e in entries]


def _head(stream: Stream) -> str:
    return f"{stream[-1][1]['seq']} {stream[-1][1]['mac']}"


def _run(
    stream: Stream,
    *,
    head: str | None = None,
    late: str | None = None,
    pinned: Head | None = None,
    keys: KeySet[SymmetricKey] = KEYS,
    default_heads: bool = True,
) -> VerifyReport:
    if default_heads and stream:
        head = head or _head(stream)
        late = late or head
    verifier = ChainVerifier(keys, stream="tg:audit", head=head, pinned=pinned)
    for stream_id, fields in stream:
        verifier.feed(stream_id, fields)
    return verifier.finish(late)


def test_intact_chain_verifies() -> None:
    """An untouched chain is ok; count and head are those of the last entry."""
    stream = _stream(5)
    report = _run(stream)
    assert report.ok
    assert report.first_bad is None
    assert (report.count, report.head_seq, report.head_mac) == (5, 5, stream[-1][1]["mac"])


def test_empty_log_verifies() -> None:
    """No entries and no head key is a valid, empty log."""
    report = _run([], default_heads=False)
    assert report.ok
    assert (report.count, report.head_seq, report.head_mac) == (0, 0, GENESIS)


def test_edited_field_is_caught() -> None:
    """An edited field breaks that entry's MAC: bad_mac at its index and id."""
    stream = _stream(5)
    stream[2][1]["reason"] = "nothing to see"
    report = _run(stream)
    assert not report.ok
    assert report.first_bad == BadRecord(2, "1003-0", "bad_mac")
    assert report.count == 2


def test_entry_with_unknown_kid_is_caught() -> None:
    """An entry naming a key that is not in the set is unknown_kid."""
    stream = _stream(3)
    stream[1][1]["kid"] = "audit-9"
    assert _run(stream).first_bad == BadRecord(1, "1002-0", "unknown_kid")


def test_forged_entry_with_a_wrong_key_is_caught() -> None:
    """An entry MACed with another key under the same kid is bad_mac."""
    stream = _stream(3)
    forged = _stream(4, key=_key())[3]
    report = _run([*stream, forged], head=_head([*stream, forged]))
    assert report.first_bad == BadRecord(3, forged[0], "bad_mac")


def test_deleted_middle_entry_is_caught() -> None:
    """A deleted entry leaves a seq gap at the entry that follows it."""
    stream = _stream(5)
    del stream[2]
    assert _run(stream).first_bad == BadRecord(2, "1004-0", "seq_gap")


def test_deleted_first_entry_is_caught() -> None:
    """The first entry must be seq 1."""
    stream = _stream(3)
    assert _run(stream[1:]).first_bad == BadRecord(0, "1002-0", "seq_gap")


def test_reordered_entries_are_caught() -> None:
    """Swapping two entries is caught at the first one out of place."""
    stream = _stream(5)
    stream[2], stream[3] = stream[3], stream[2]
    assert _run(stream).first_bad == BadRecord(2, "1004-0", "seq_gap")


def test_replayed_entry_is_caught() -> None:
    """An authentic entry copied again later is seq_reorder."""
    stream = _stream(4)
    stream.insert(3, ("1999-0", dict(stream[1][1])))
    assert _run(stream).first_bad == BadRecord(3, "1999-0", "seq_reorder")


def test_entry_from_another_chain_is_caught() -> None:
    """Right seq and a valid MAC but the wrong predecessor is prev_mismatch."""
    stream = _stream(3)
    other = _stream(1, head=Head(3, "ab" * 32))[0]
    report = _run([*stream, other], head=_head([*stream, other]))
    assert report.first_bad == BadRecord(3, other[0], "prev_mismatch")


def test_payload_field_added_by_hand_is_caught() -> None:
    """An extra field in an entry is malformed."""
    stream = _stream(3)
    stream[1][1]["payload"] = "password=hunter2"
    assert _run(stream).first_bad == BadRecord(1, "1002-0", "malformed")


def test_retired_key_still_verifies_history() -> None:
    """Entries MACed by a key retired since still verify (rotation keeps history)."""
    old = _key("audit-1")
    first = _stream(3, key=old)
    new = _key("audit-2")
    later = _stream(2, key=new, head=Head(3, first[-1][1]["mac"]))
    keys = KeySet(
        Purpose.AUDIT_GATEWAY,
        [SymmetricKey("audit-1", Purpose.AUDIT_GATEWAY, old.secret, True), new],
    )
    report = _run(first + later, keys=keys)
    assert report.ok
    assert report.count == 5


def test_feeding_after_a_break_is_ignored() -> None:
    """Once broken, the verifier reports the first bad entry and ignores the rest."""
    stream = _stream(4)
    stream[1][1]["actor"] = "admin"
    verifier = ChainVerifier(KEYS, stream="tg:audit", head=_head(stream))
    results = [verifier.feed(i, f) for i, f in stream]
    assert results == [True, False, False, False]
    assert verifier.broken
    assert verifier.finish(None).first_bad == BadRecord(1, "1002-0", "bad_mac")


def test_checkpoint_that_matches_passes() -> None:
    """A checkpoint pinning an entry of the chain verifies."""
    stream = _stream(5)
    assert _run(stream, pinned=Head(3, stream[2][1]["mac"])).ok
    assert _run(stream, pinned=EMPTY_HEAD).ok


def test_entry_differing_from_the_checkpoint_is_caught() -> None:
    """A chain rewritten with the key no longer matches the checkpoint's mac."""
    stream = _stream(5)
    assert _run(stream, pinned=Head(3, "cd" * 32)).first_bad == BadRecord(
        2, "1003-0", "checkpoint_mismatch"
    )


def test_checkpoint_of_an_empty_log_with_a_bad_mac_is_caught() -> None:
    """A seq-0 checkpoint must pin the genesis value."""
    report = _run(_stream(2), pinned=Head(0, "cd" * 32))
    assert report.first_bad == BadRecord(0, None, "checkpoint_mismatch")


def test_truncated_tail_is_caught_with_a_checkpoint() -> None:
    """Entries cut from the end, head rewound, are caught by a checkpoint beyond the end."""
    stream = _stream(5)
    pinned = Head(5, stream[-1][1]["mac"])
    cut = stream[:3]
    report = _run(cut, pinned=pinned)  # head key rewound to entry 3
    assert report.first_bad == BadRecord(3, None, "truncated")


def test_truncated_tail_with_rewound_head_passes_without_a_checkpoint() -> None:
    """The documented limit: without a checkpoint a cut tail plus rewound head verifies."""
    assert _run(_stream(5)[:3]).ok


def test_truncated_tail_with_intact_head_is_caught() -> None:
    """Entries cut from the end while the head key still names them are truncated."""
    stream = _stream(5)
    report = _run(stream[:3], head=_head(stream), late=_head(stream))
    assert report.first_bad == BadRecord(3, None, "truncated")


def test_head_disagreeing_with_its_entry_is_caught() -> None:
    """A head naming an existing seq with another mac is head_mismatch at that entry."""
    stream = _stream(4)
    report = _run(stream, head=f"2 {'ef' * 32}")
    assert report.first_bad == BadRecord(1, "1002-0", "head_mismatch")


@pytest.mark.parametrize("bad", ["garbage", f"0 {GENESIS}"])
def test_malformed_head_is_caught(bad: str) -> None:
    """A head that does not parse, or claims seq 0 (never stored), is bad_head."""
    stream = _stream(2)
    assert _run(stream, head=bad).first_bad == BadRecord(2, None, "bad_head")
    assert _run(stream, late=bad).first_bad == BadRecord(2, None, "bad_head")


def test_head_missing_over_entries_is_caught() -> None:
    """Entries without a head key (before and after the walk) is head_missing."""
    report = _run(_stream(2), default_heads=False)
    assert report.first_bad == BadRecord(2, None, "head_missing")


def test_head_rewound_behind_the_entries_is_caught() -> None:
    """A head read after the walk may be ahead of it, never behind it."""
    stream = _stream(4)
    report = _run(stream, head=f"2 {stream[1][1]['mac']}", late=f"3 {stream[2][1]['mac']}")
    assert report.first_bad == BadRecord(4, None, "head_mismatch")


def test_late_head_at_the_end_must_match_the_last_mac() -> None:
    """A late head at the walk's last seq with another mac is head_mismatch."""
    stream = _stream(3)
    report = _run(stream, head=f"1 {stream[0][1]['mac']}", late=f"3 {'ab' * 32}")
    assert report.first_bad == BadRecord(3, None, "head_mismatch")


def test_entries_appended_during_the_walk_pass() -> None:
    """Heads read before (behind) and after (ahead of) the walk are accepted."""
    stream = _stream(6)
    assert _run(stream[:4], head=_head(stream[:2]), late=_head(stream)).ok
    assert _run(stream[:4], head=None, late=_head(stream)).ok  # log was empty at first


def test_report_to_dict_and_raise_if_broken() -> None:
    """An ok report returns itself; a broken one raises AuditChainBrokenError naming it."""
    stream = _stream(3)
    ok = _run(stream)
    assert ok.raise_if_broken() is ok
    assert ok.to_dict()["ok"] is True
    del stream[1]
    broken = _run(stream)
    assert broken.to_dict()["first_bad"] == {
        "index": 1,
        "stream_id": "1003-0",
        "reason": "seq_gap",
        "detail": "records 2-2 are missing",
    }
    with pytest.raises(AuditChainBrokenError) as info:
        broken.raise_if_broken()
    assert (info.value.index, info.value.record_id, info.value.reason) == (1, "1003-0", "seq_gap")
    truncated = _run(stream[:1], pinned=Head(3, "ab" * 32))
    with pytest.raises(AuditChainBrokenError) as info:
        truncated.raise_if_broken()
    assert info.value.record_id == ""


def test_verifier_refuses_keys_of_another_purpose() -> None:
    """Only audit keys verify the chain."""
    vault = KeySet(Purpose.VAULT, [SymmetricKey("vault-1", Purpose.VAULT, os.urandom(32))])
    with pytest.raises(KeyRingError):
        ChainVerifier(vault, stream="tg:audit", head=None)
