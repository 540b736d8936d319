"""Anchors, archive segments, trims and span verification, against a real TLS Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from security.audit import AuditRecord, AuditWriter, iter_records
from security.audit.anchor import Anchor, append_anchor, newest, parse_anchor, read_anchors
from security.audit.archive import (
    Retention,
    base_key,
    list_segments,
    parse_retention,
    read_base,
    read_segment,
    trim,
    write_segment,
)
from security.audit.chain import Head
from security.audit.checkpoint import sign_checkpoint
from security.audit.read import entry_fields
from security.audit.retention import archive_oldest
from security.audit.span import verify_archives, verify_span
from security.audit.walk import verify_walk
from security.errors import AuditChainBrokenError, AuditError, ConfigError
from security.keys import KeySet, Purpose, SigningKey, SymmetricKey
from security.keystore import KeyRing
from tests.support.audit import entry_stream_id
from tests.support.replies import stream_range

STREAM = "tg:audit"
_PRIVATE = Ed25519PrivateKey.generate()
SIGNER = SigningKey("signing-1", _PRIVATE.public_key(), _PRIVATE)
VERIFIERS = KeySet(Purpose.SIGNING, [SigningKey("signing-1", _PRIVATE.public_key())])
_OTHER = Ed25519PrivateKey.generate()
FORGER = SigningKey("signing-1", _OTHER.public_key(), _OTHER)


def _fill(client: redis.Redis, keys: KeySet[SymmetricKey], n: int, start: int = 0) -> None:
    writer = AuditWriter(client, keys)
    writer.append_many(
        AuditRecord.make(
            actor="admin", action="test.fill", outcome="ok", target=f"t{i}", now=1000.0 + i
        )
        for i in range(start, start + n)
    )


def _anchor_at(client: redis.Redis, seq: int, signer: SigningKey = SIGNER) -> Anchor:
    for entry in iter_records(client):
        if entry.seq == seq:
            cp = sign_checkpoint(Head(entry.seq, entry.mac), signer, stream=STREAM, now=5000.0)
            return Anchor(cp, entry.stream_id)
    raise LookupError(seq)


def test_parse_retention_takes_counts_and_ages() -> None:
    """Retention is a record count or an age with a unit; anything else is refused."""
    assert parse_retention("1000") == Retention(records=1000)
    assert parse_retention("30d") == Retention(age=30 * 86_400)
    assert parse_retention("90m") == Retention(age=5400)
    for bad in ("", "0", "-1", "10x", "1.5d", "d"):
        with pytest.raises(ConfigError):
            parse_retention(bad)


def test_anchor_lines_round_trip_and_refuse_forgery(tmp_path: Path) -> None:
    """Appended anchors read back in order; a line signed by another key is refused."""
    path = tmp_path / "anchors" / "checkpoints.jsonl"
    cps = [sign_checkpoint(Head(i, "ab" * 32), SIGNER, stream=STREAM, now=1.0) for i in (1, 3, 2)]
    for i, cp in enumerate(cps):
        append_anchor(path, Anchor(cp, f"{i}-0"))
    assert path.stat().st_mode & 0o777 == 0o600
    found = read_anchors(path, VERIFIERS)
    assert [a.checkpoint.seq for a in found] == [1, 3, 2]
    best = newest(found, STREAM)
    assert best is not None
    assert best.checkpoint.seq == 3
    assert newest(found, "other") is None
    forged = sign_checkpoint(Head(9, "cd" * 32), FORGER, stream=STREAM, now=1.0)
    append_anchor(path, Anchor(forged, "9-0"))
    with pytest.raises(AuditError) as info:
        read_anchors(path, VERIFIERS)
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[]",
        '{"checkpoint": {}}',
        '{"checkpoint": 1, "stream_id": "1-0"}',
        '{"checkpoint": {}, "stream_id": "x-y"}',
        '{"checkpoint": {}, "stream_id": 5}',
    ],
)
def test_malformed_anchor_lines_are_refused(line: str) -> None:
    """Every malformed anchor line is an AuditError, never skipped."""
    with pytest.raises(AuditError):
        parse_anchor(line, VERIFIERS)


def test_a_missing_anchor_file_is_no_anchors(tmp_path: Path) -> None:
    """No file yet: no anchors (the gateway has not taken any)."""
    assert read_anchors(tmp_path / "none.jsonl", VERIFIERS) == []


@pytest.mark.integration
def test_archive_trim_then_verify_across_archive_and_live(
    redis_client: redis.Redis, keyring: KeyRing, tmp_path: Path
) -> None:
    """Archive 1-6, trim them: archive + live verifies, and the live log alone verifies from
    its first record against the base the trim left."""
    keys = keyring.audit
    all_keys = keyring.audit_keys()
    _fill(redis_client, keys, 10)
    closing = _anchor_at(redis_client, 6)
    entries = [entry_fields(raw) for raw in stream_range(redis_client, STREAM, count=6)]
    path = write_segment(tmp_path, entries, closing)
    assert list_segments(tmp_path) == [path]
    assert trim(redis_client, STREAM, closing) == 6
    assert redis_client.xlen(STREAM) == 4
    base = read_base(redis_client, STREAM, VERIFIERS)
    assert base is not None
    assert base.checkpoint.seq == 6

    report = verify_span(redis_client, all_keys, VERIFIERS, archive_dir=tmp_path)
    assert report.ok, report.describe()
    assert (report.first_seq, report.last_seq, report.archived, report.live) == (1, 10, 6, 4)
    live_only = verify_span(redis_client, all_keys, VERIFIERS)
    assert live_only.ok, live_only.describe()
    assert (live_only.first_seq, live_only.live) == (7, 4)

    seg = read_segment(path, VERIFIERS)
    assert [int(f["seq"]) for _, f in seg.entries] == [1, 2, 3, 4, 5, 6]


@pytest.mark.integration
def test_an_edited_archive_line_is_named(
    redis_client: redis.Redis, keyring: KeyRing, tmp_path: Path
) -> None:
    """Changing one archived record breaks verification in that archive file (bad_mac)."""
    _fill(redis_client, keyring.audit, 4)
    closing = _anchor_at(redis_client, 4)
    path = write_segment(
        tmp_path, [entry_fields(r) for r in stream_range(redis_client, STREAM)], closing
    )
    lines = path.read_text().splitlines()
    doc = json.loads(lines[1])
    doc["target"] = "edited"
    lines[1] = json.dumps(doc)
    path.write_text("\n".join(lines) + "\n")
    result = verify_archives(tmp_path, keyring.audit_keys(), VERIFIERS)
    assert result.bad is not None
    assert result.bad.reason == "bad_mac"
    assert result.where == path.name


@pytest.mark.integration
def test_a_trim_of_a_changed_log_is_refused(redis_client: redis.Redis, keyring: KeyRing) -> None:
    """If the last archived entry changed before the trim, nothing is trimmed."""
    _fill(redis_client, keyring.audit, 3)
    closing = _anchor_at(redis_client, 2)
    wrong = Anchor(sign_checkpoint(Head(2, "ee" * 32), SIGNER, stream=STREAM), closing.stream_id)
    with pytest.raises(AuditError) as info:
        trim(redis_client, STREAM, wrong)
    assert info.value.reason == "trim_refused"
    assert redis_client.xlen(STREAM) == 3
    assert redis_client.get(base_key(STREAM)) is None


@pytest.mark.integration
def test_a_wiped_log_fails_naming_the_missing_range(
    redis_client: redis.Redis, keyring: KeyRing
) -> None:
    """FLUSHALL after an anchor at seq 5: verify fails, records 1-5 missing."""
    _fill(redis_client, keyring.audit, 5)
    anchor = _anchor_at(redis_client, 5)
    redis_client.flushall()
    report = verify_span(redis_client, keyring.audit_keys(), VERIFIERS, anchors=[anchor])
    assert not report.ok
    assert report.bad is not None
    assert report.bad.reason == "truncated"
    assert "records 1-5 are missing" in report.describe()


@pytest.mark.integration
def test_a_cut_tail_with_a_rewound_head_fails(redis_client: redis.Redis, keyring: KeyRing) -> None:
    """Records 4-6 deleted and the head rewound to 3: the anchor at 6 names 4-6 missing,
    incrementally too."""
    _fill(redis_client, keyring.audit, 6)
    anchor = _anchor_at(redis_client, 6)
    third = _anchor_at(redis_client, 3)
    ids = [entry_stream_id(e) for e in iter_records(redis_client)]
    redis_client.xdel(STREAM, *ids[3:])
    redis_client.set(f"{STREAM}:head", f"3 {third.checkpoint.mac}")
    for incremental in (False, True):
        report = verify_span(
            redis_client,
            keyring.audit_keys(),
            VERIFIERS,
            anchors=[anchor],
            incremental=incremental,
        )
        assert not report.ok
        assert report.bad is not None
        assert report.bad.reason == "truncated"
    full = verify_span(redis_client, keyring.audit_keys(), VERIFIERS, anchors=[anchor])
    assert "records 4-6 are missing" in full.describe()


@pytest.mark.integration
def test_a_wiped_trimmed_log_fails_even_without_newer_anchors(
    redis_client: redis.Redis, keyring: KeyRing, tmp_path: Path
) -> None:
    """Archive then FLUSHALL: the base the trim left is gone, and verify says so."""
    _fill(redis_client, keyring.audit, 4)
    closing = _anchor_at(redis_client, 3)
    write_segment(
        tmp_path, [entry_fields(r) for r in stream_range(redis_client, STREAM, count=3)], closing
    )
    trim(redis_client, STREAM, closing)
    redis_client.flushall()
    report = verify_span(redis_client, keyring.audit_keys(), VERIFIERS, archive_dir=tmp_path)
    assert not report.ok
    assert report.bad is not None
    assert report.bad.reason == "base_missing"


@pytest.mark.integration
def test_walks_are_bounded_and_resume_from_a_cursor(
    redis_client: redis.Redis, keyring: KeyRing
) -> None:
    """A limit stops the walk with a cursor; resuming after it verifies the rest; a cursor
    at a forged entry or a gone one fails."""
    keys = keyring.audit_keys()
    _fill(redis_client, keyring.audit, 25)
    first = verify_walk(redis_client, keys, limit=10)
    assert first.report.ok
    assert not first.complete
    assert first.report.count == 10
    assert first.to_dict()["next"] == first.last_id
    rest = verify_walk(redis_client, keys, resume=(first.last_id or "", None))
    assert rest.report.ok
    assert rest.complete
    assert rest.report.count == 15
    assert rest.first_seq == 11
    gone = verify_walk(redis_client, keys, resume=("1-0", None))
    assert gone.report.first_bad is not None
    assert gone.report.first_bad.reason == "truncated"
    anchor = _anchor_at(redis_client, 20)
    wrong = verify_walk(redis_client, keys, resume=(anchor.stream_id or "", Head(20, "00" * 32)))
    assert wrong.report.first_bad is not None
    assert wrong.report.first_bad.reason == "checkpoint_mismatch"
    resumed = verify_walk(
        redis_client, keys, resume=(anchor.stream_id or "", anchor.checkpoint.head)
    )
    assert resumed.report.ok
    assert resumed.report.count == 5


@pytest.mark.integration
def test_archive_oldest_keeps_retention_and_records_itself(
    redis_client: redis.Redis, keyring: KeyRing, tmp_path: Path
) -> None:
    """Keep 4 of 10: seq 1-6 archived in one segment, an operator record says so, all verifies."""
    _fill(redis_client, keyring.audit, 10)
    done = archive_oldest(redis_client, keyring, tmp_path, Retention(records=4), now=2000.0)
    assert [(d.first_seq, d.last_seq, d.trimmed) for d in done] == [(1, 6, 6)]
    last = list(iter_records(redis_client))[-1]
    assert (last.writer, last.record.action, last.record.target) == (
        "gateway",  # the test ring's own audit role
        "audit.archive",
        done[0].path.name,
    )
    report = verify_span(redis_client, keyring.audit_keys(), keyring.signing, archive_dir=tmp_path)
    assert report.ok, report.describe()


@pytest.mark.integration
def test_archive_by_age_and_in_segments(
    redis_client: redis.Redis, keyring: KeyRing, tmp_path: Path
) -> None:
    """Entries older than the age go, in segments of at most max_segment entries."""
    _fill(redis_client, keyring.audit, 10)  # times 1000-1009
    done = archive_oldest(
        redis_client, keyring, tmp_path, Retention(age=100), now=1105.0, max_segment=2
    )
    assert [(d.first_seq, d.last_seq) for d in done] == [(1, 2), (3, 4), (5, 5)]
    report = verify_span(redis_client, keyring.audit_keys(), keyring.signing, archive_dir=tmp_path)
    assert report.ok, report.describe()


@pytest.mark.integration
def test_archive_refuses_a_log_that_does_not_verify(
    redis_client: redis.Redis, keyring: KeyRing, tmp_path: Path
) -> None:
    """A tampered log is neither archived nor trimmed."""
    _fill(redis_client, keyring.audit, 5)
    ids = [entry_stream_id(e) for e in iter_records(redis_client)]
    redis_client.xdel(STREAM, ids[1])
    with pytest.raises(AuditChainBrokenError):
        archive_oldest(redis_client, keyring, tmp_path, Retention(records=1))
    assert redis_client.xlen(STREAM) == 4
    assert list_segments(tmp_path) == []


@pytest.mark.integration
def test_a_segment_written_but_never_trimmed_is_superseded(
    redis_client: redis.Redis, keyring: KeyRing, tmp_path: Path
) -> None:
    """A crash between write and trim leaves a segment; the next run replaces it."""
    _fill(redis_client, keyring.audit, 6)
    closing = _anchor_at(redis_client, 3)
    write_segment(
        tmp_path, [entry_fields(r) for r in stream_range(redis_client, STREAM, count=3)], closing
    )
    archive_oldest(redis_client, keyring, tmp_path, Retention(records=2))
    assert [p.name for p in list_segments(tmp_path)] == ["audit-000000000001-000000000004.jsonl"]
    report = verify_span(redis_client, keyring.audit_keys(), keyring.signing, archive_dir=tmp_path)
    assert report.ok, report.describe()


@pytest.mark.integration
def test_archive_by_age_takes_everything_older(
    redis_client: redis.Redis, keyring: KeyRing, tmp_path: Path
) -> None:
    """When every entry is past the age, all of them are archived; a second run has nothing."""
    _fill(redis_client, keyring.audit, 3)
    done = archive_oldest(redis_client, keyring, tmp_path, Retention(age=60), now=5000.0)
    assert [(d.first_seq, d.last_seq) for d in done] == [(1, 3)]
    again = archive_oldest(redis_client, keyring, tmp_path, Retention(age=60), now=5000.0)
    assert again == []  # the archive record itself is young
