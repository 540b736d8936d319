"""Every failure path of archives, anchors, walks and span verification is named, not raised."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from security.audit import AuditRecord, AuditWriter, iter_records
from security.audit.anchor import Anchor, append_anchor, read_anchors
from security.audit.archive import (
    base_key,
    list_segments,
    read_segment,
    trim,
    write_segment,
)
from security.audit.chain import Head
from security.audit.checkpoint import sign_checkpoint
from security.audit.read import entry_fields
from security.audit.span import SpanReport, verify_archives, verify_span
from security.audit.verifier import BadRecord
from security.audit.walk import averify_walk, verify_walk
from security.errors import AuditError
from security.keys import KeySet, Purpose, SigningKey
from security.keystore import KeyRing
from tests.support.replies import stream_range

STREAM = "tg:audit"
NO_RETRY = Retry(NoBackoff(), 0)
ANO_RETRY = AsyncRetry(NoBackoff(), 0)
_PRIVATE = Ed25519PrivateKey.generate()
SIGNER = SigningKey("signing-1", _PRIVATE.public_key(), _PRIVATE)
VERIFIERS = KeySet(Purpose.SIGNING, [SigningKey("signing-1", _PRIVATE.public_key())])


def _anchor(seq: int, sid: str | None = "1-0", mac: str = "ab" * 32) -> Anchor:
    return Anchor(sign_checkpoint(Head(seq, mac), SIGNER, stream=STREAM, now=1.0), sid)


def _fill(client: redis.Redis, ring: KeyRing, n: int) -> list[tuple[str, dict[str, str]]]:
    AuditWriter(client, ring.audit).append_many(
        AuditRecord.make(actor="admin", action="t", outcome="ok", now=1000.0 + i) for i in range(n)
    )
    return [entry_fields(raw) for raw in stream_range(client, STREAM)]


def _closing(entries: list[tuple[str, dict[str, str]]]) -> Anchor:
    sid, last = entries[-1]
    return Anchor(sign_checkpoint(Head(int(last["seq"]), last["mac"]), SIGNER, stream=STREAM), sid)


def test_write_segment_refuses_nothing_or_a_foreign_closing(tmp_path: Path) -> None:
    """No entries, or a closing checkpoint that is not the last entry's, is refused."""
    with pytest.raises(AuditError):
        write_segment(tmp_path, [], _anchor(1))
    with pytest.raises(AuditError):
        write_segment(tmp_path, [("1-0", {"seq": "1"})], _anchor(2))


@pytest.mark.parametrize(
    "body",
    ["", '{"id": "1-0"}\n', 'not json\n{"checkpoint": 1}\n', '{"seq": 1}\n{"checkpoint": 1}\n'],
)
def test_read_segment_refuses_incomplete_or_malformed_files(tmp_path: Path, body: str) -> None:
    """An incomplete file, a line that is not JSON or holds a non-string value: bad_archive."""
    path = tmp_path / "audit-000000000001-000000000001.jsonl"
    path.write_text(body)
    with pytest.raises(AuditError) as info:
        read_segment(path, VERIFIERS)
    assert info.value.reason == "bad_archive"


def test_list_segments_of_no_folder_and_ignores_other_files(tmp_path: Path) -> None:
    """No folder: no segments; only audit-<12 digits>-<12 digits>.jsonl files count, in order."""
    assert list_segments(tmp_path / "none") == []
    for name in ("audit-000000000011-000000000020.jsonl", "audit-000000000001-000000000010.jsonl"):
        (tmp_path / name).write_text("")
    (tmp_path / "checkpoints.jsonl").write_text("")
    (tmp_path / "audit-1-2.jsonl").write_text("")
    assert [p.name[:18] for p in list_segments(tmp_path)] == [
        "audit-000000000001",
        "audit-000000000011",
    ]


def test_the_anchor_tail_skips_a_cut_first_line(tmp_path: Path) -> None:
    """A file over 64 KiB is read from its tail; the first, cut line is skipped."""
    path = tmp_path / "checkpoints.jsonl"
    for seq in range(1, 400):
        append_anchor(path, _anchor(seq, f"{seq}-0"))
    assert path.stat().st_size > 64 * 1024
    tail = read_anchors(path, VERIFIERS)
    assert tail[-1].checkpoint.seq == 399
    assert len(tail) < 399
    assert len(read_anchors(path, VERIFIERS, tail=False)) == 399


def test_span_report_describes_a_break() -> None:
    """A broken report names where, the record, the reason and the missing range."""
    bad = BadRecord(3, "5-0", "truncated", "records 4-6 are missing")
    text = SpanReport(False, 1, 3, 0, 3, "live", bad).describe()
    assert text == "BROKEN in live at record #3 (stream id 5-0): truncated: records 4-6 are missing"
    assert SpanReport(True, 1, 0, 0, 0).describe() == "ok: 0 records, head seq 0"


@pytest.mark.integration
def test_trim_refuses_without_a_stream_id_or_when_the_entry_is_gone(
    redis_client: redis.Redis, keyring: KeyRing
) -> None:
    """No stream id, or the archived entry already gone: trim_refused, nothing trimmed."""
    _fill(redis_client, keyring, 2)
    for closing in (_anchor(2, None), _anchor(2, "1-0")):
        with pytest.raises(AuditError) as info:
            trim(redis_client, STREAM, closing)
        assert info.value.reason == "trim_refused"
    assert redis_client.xlen(STREAM) == 2


@pytest.mark.integration
def test_archives_with_gaps_or_a_wrong_closing_are_named(
    redis_client: redis.Redis, keyring: KeyRing, tmp_path: Path
) -> None:
    """A deleted middle segment is a gap; a closing that does not match is named; a folder
    whose oldest segments were removed starts, said out loud, at its first seq."""
    entries = _fill(redis_client, keyring, 6)
    keys = keyring.audit_keys()
    paths = [
        write_segment(tmp_path, entries[i : i + 2], _closing(entries[i : i + 2])) for i in (0, 2, 4)
    ]
    assert verify_archives(tmp_path, keys, VERIFIERS).count == 6
    paths[0].unlink()
    later = verify_archives(tmp_path, keys, VERIFIERS)
    assert (later.first_seq, later.count, later.bad) == (3, 4, None)
    paths[1].unlink()
    write_segment(tmp_path, entries[:2], _closing(entries[:2]))
    gap = verify_archives(tmp_path, keys, VERIFIERS)
    assert gap.bad is not None
    assert gap.bad.reason == "start_mismatch"
    assert gap.bad.detail == "records 3-4 are missing"

    lines = paths[2].read_text().splitlines()
    other = _closing(entries[4:5])
    paths[2].write_text("\n".join([*lines[:-1], other.to_line()]) + "\n")
    for p in list_segments(tmp_path)[:-1]:
        p.unlink()
    mismatch = verify_archives(tmp_path, keys, VERIFIERS)
    assert mismatch.bad is not None
    assert mismatch.bad.reason == "checkpoint_mismatch"
    paths[2].write_text("garbage\n")
    unreadable = verify_span(redis_client, keys, VERIFIERS, archive_dir=tmp_path)
    assert not unreadable.ok
    assert unreadable.where == f"archive {paths[2].name}"


@pytest.mark.integration
def test_a_forged_base_or_a_base_past_the_archive_fails(
    redis_client: redis.Redis, keyring: KeyRing, tmp_path: Path
) -> None:
    """A base signed by another key is refused; a base beyond the archive names the gap."""
    entries = _fill(redis_client, keyring, 4)
    keys = keyring.audit_keys()
    write_segment(tmp_path, entries[:2], _closing(entries[:2]))
    redis_client.set(base_key(STREAM), _closing(entries[:3]).to_line())
    past = verify_span(redis_client, keys, VERIFIERS, archive_dir=tmp_path)
    assert past.bad is not None
    assert past.bad.detail == "records 3-3 are not in the archive"
    other = Ed25519PrivateKey.generate()
    forger = SigningKey("signing-1", other.public_key(), other)
    sid, last = entries[1]
    forged = Anchor(sign_checkpoint(Head(2, last["mac"]), forger, stream=STREAM), sid)
    redis_client.set(base_key(STREAM), forged.to_line())
    refused = verify_span(redis_client, keys, VERIFIERS)
    assert refused.bad is not None
    assert refused.bad.reason == "bad_signature"


@pytest.mark.integration
def test_incremental_verify_resumes_at_the_newest_live_anchor(
    redis_client: redis.Redis, keyring: KeyRing
) -> None:
    """With an anchor at 4 of 6, an incremental check covers 5-6 only."""
    entries = _fill(redis_client, keyring, 6)
    report = verify_span(
        redis_client,
        keyring.audit_keys(),
        VERIFIERS,
        anchors=[_closing(entries[:4])],
        incremental=True,
    )
    assert report.ok, report.describe()
    assert (report.first_seq, report.live) == (5, 2)


@pytest.mark.integration
async def test_walk_failure_paths(redis_client: redis.Redis, keyring: KeyRing) -> None:
    """A bad limit, a malformed or forged cursor entry and an unreachable Redis are named."""
    keys = keyring.audit_keys()
    _fill(redis_client, keyring, 3)
    with pytest.raises(AuditError):
        verify_walk(redis_client, keys, limit=0)
    ids = [e.stream_id or "" for e in iter_records(redis_client)]
    redis_client.xadd(STREAM, {"seq": "x"}, id="9999999999999-0")
    malformed = verify_walk(redis_client, keys, resume=("9999999999999-0", None))
    assert malformed.report.first_bad is not None
    assert malformed.report.first_bad.reason == "malformed"
    fields = entry_fields(stream_range(redis_client, STREAM, ids[1], ids[1])[0])[1]
    edited: dict[Any, Any] = fields | {"target": "edited"}  # XADD's dict key type is invariant
    redis_client.xadd(STREAM, edited, id="9999999999999-1")
    forged = verify_walk(redis_client, keys, resume=("9999999999999-1", None))
    assert forged.report.first_bad is not None
    assert forged.report.first_bad.reason == "bad_mac"
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=NO_RETRY)
    with pytest.raises(AuditError) as info:
        verify_walk(down, keys)
    assert info.value.reason == "unavailable"
    adown = redis.asyncio.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=ANO_RETRY
    )
    with pytest.raises(AuditError):
        await averify_walk(adown, keys)
    await adown.aclose()


def test_no_line_of_an_anchor_holds_more_than_the_checkpoint(tmp_path: Path) -> None:
    """An anchor line is the checkpoint and a stream id: no record, payload or secret."""
    line = json.loads(_anchor(1).to_line())
    assert set(line) == {"checkpoint", "stream_id"}
    assert set(line["checkpoint"]) == {"v", "stream", "seq", "mac", "time", "kid", "sig"}
