"""Writer failure paths, driven by a fake script (no Redis): every refusal is an AuditError."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import redis

from security.audit.chain import EMPTY_HEAD, AuditRecord
from security.audit.store import (
    MAX_BATCH,
    AsyncAuditWriter,
    AuditWriter,
    _backoff,
    head_key,
    text,
)
from security.errors import AuditError, ConfigError
from security.keys import KeySet, Purpose, SymmetricKey

KEYS = KeySet(
    Purpose.AUDIT_GATEWAY, [SymmetricKey("audit-1", Purpose.AUDIT_GATEWAY, os.urandom(32))]
)
RECORD = AuditRecord.make(actor="gateway", action="task.submit", outcome="ok", now=1.0)


class FakeClient:
    """Stands in for redis.Redis: register_script returns a callable replaying ``replies``."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.script = ""
        self.calls: list[tuple[list[str], list[str]]] = []

    def _run(self, keys: list[str], args: list[str]) -> Any:
        self.calls.append((keys, list(args)))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(args)
        return reply

    def register_script(self, script: str) -> Callable[..., Any]:
        self.script = script
        return self._run


class FakeAsyncClient(FakeClient):
    """Stands in for redis.asyncio.Redis."""

    def register_script(self, script: str) -> Callable[..., Any]:
        self.script = script

        async def run(keys: list[str], args: list[str]) -> Any:
            return self._run(keys, args)

        return run


def _ok(args: list[Any]) -> list[Any]:
    entries = len(msgpack.unpackb(args[6], raw=False))
    return [b"ok", *(f"{i}-0".encode() for i in range(1, entries + 1)), *([1] * entries)]


def _writer(*replies: Any, **kwargs: Any) -> tuple[AuditWriter, FakeClient]:
    client = FakeClient(*replies)
    return AuditWriter(client, KEYS, **kwargs), client  # type: ignore[arg-type]


def _async_writer(*replies: Any, **kwargs: Any) -> tuple[AsyncAuditWriter, FakeAsyncClient]:
    client = FakeAsyncClient(*replies)
    return AsyncAuditWriter(client, KEYS, **kwargs), client  # type: ignore[arg-type]


def test_script_gets_expected_head_new_head_and_fields() -> None:
    """One call carries the expected head, the new head, field names and values in order."""
    writer, client = _writer(_ok)
    entry = writer.append(RECORD)
    keys, args = client.calls[0]
    assert keys == ["tg:audit", "tg:audit:head", "tg:audit:turn"]
    assert args[:3] == [EMPTY_HEAD.encode(), EMPTY_HEAD.encode(), f"1 {entry.mac}"]
    assert args[4] == "0"  # a first attempt never asks for an exclusive turn
    assert msgpack.unpackb(args[5], raw=False) == list(entry.to_fields())
    assert msgpack.unpackb(args[6], raw=False) == [list(entry.to_fields().values())]
    assert msgpack.unpackb(args[7], raw=False) == [[]]  # no attached writes
    assert len(args) == 8
    assert entry.stream_id == "1-0"
    assert "XADD" in client.script


def test_conflict_reply_teaches_the_head_and_retries() -> None:
    """On conflict the writer re-chains after the returned head and retries at once."""
    current = f"7 {'ab' * 32}"
    writer, client = _writer([b"conflict", current.encode()], _ok)
    entry = writer.append(RECORD)
    assert (entry.seq, entry.prev) == (8, "ab" * 32)
    assert client.calls[1][1][0] == current


def test_writer_that_keeps_losing_asks_for_a_turn_and_waits_when_another_has_it() -> None:
    """After two conflicts the writer asks for a turn; a 'wait' reply is retried like a conflict."""
    head = f"7 {'ab' * 32}"
    writer, client = _writer(
        [b"conflict", head.encode()],
        [b"conflict", head.encode()],
        [b"wait", head.encode()],
        _ok,
        sleep=lambda _: None,
    )
    entry = writer.append(RECORD)
    flags = [args[4] for _, args in client.calls]
    assert flags == ["0", "0", "1", "1"]
    assert len({args[3] for _, args in client.calls}) == 1  # one writer id throughout
    assert entry.prev == "ab" * 32


def test_steady_state_append_is_one_call() -> None:
    """Once the head is known, each append is exactly one script call."""
    writer, client = _writer(_ok, _ok, _ok)
    assert [writer.append(RECORD).seq for _ in range(3)] == [1, 2, 3]
    assert len(client.calls) == 3


def test_batches_are_split_at_max_batch() -> None:
    """More than MAX_BATCH records go in several atomic calls, chained on."""
    writer, client = _writer(_ok, _ok)
    entries = writer.append_many([RECORD] * (MAX_BATCH + 1))
    assert [e.seq for e in entries] == list(range(1, MAX_BATCH + 2))
    assert len(client.calls) == 2
    assert writer.append_many([]) == []


def test_missing_head_over_an_existing_stream_is_refused() -> None:
    """The script's 'missing' reply becomes head_missing: no new chain over old entries."""
    writer, _ = _writer([b"missing"])
    with pytest.raises(AuditError) as info:
        writer.append(RECORD)
    assert info.value.reason == "head_missing"


def test_malformed_head_in_a_conflict_is_refused() -> None:
    """A conflict naming a head that does not parse is bad_head."""
    writer, _ = _writer([b"conflict", b"garbage"])
    with pytest.raises(AuditError) as info:
        writer.append(RECORD)
    assert info.value.reason == "bad_head"


@pytest.mark.parametrize(
    "reply",
    [None, [], [b"weird"], [b"ok"], [b"ok", b"1-0"], [b"ok", b"1-0", 1, 1], [b"conflict"]],
)
def test_unexpected_script_reply_is_write_failed(reply: Any) -> None:
    """A reply of the wrong shape is write_failed, never silently accepted."""
    writer, _ = _writer(reply)
    with pytest.raises(AuditError) as info:
        writer.append(RECORD)
    assert info.value.reason == "write_failed"


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (redis.ConnectionError("Connection reset"), "unavailable"),
        (redis.TimeoutError("Timeout reading"), "unavailable"),
        (redis.ResponseError("WRONGTYPE Operation"), "write_failed"),
    ],
)
def test_redis_errors_become_audit_errors(exc: Exception, reason: str) -> None:
    """A connection problem is unavailable; Redis refusing the script is write_failed."""
    writer, _ = _writer(exc)
    with pytest.raises(AuditError) as info:
        writer.append(RECORD)
    assert info.value.reason == reason
    assert isinstance(info.value.__cause__, redis.RedisError)


def test_contention_gives_up_after_max_attempts_retrying_conflicts_at_once() -> None:
    """Conflicting on every attempt ends in contention; a conflict is retried at once (it
    means another writer appended, and its reply carries the new head)."""
    sleeps: list[float] = []
    heads = [f"{n} {'ab' * 32}".encode() for n in (1, 2, 3)]
    writer, client = _writer(
        *([b"conflict", h] for h in heads), max_attempts=3, sleep=sleeps.append
    )
    with pytest.raises(AuditError) as info:
        writer.append(RECORD)
    assert info.value.reason == "contention"
    assert len(client.calls) == 3
    assert sleeps == []


def test_a_writer_that_took_the_turn_appends_without_pausing() -> None:
    """Two conflicts, then the third attempt asks for the turn and the script grants it
    (another conflict reply): the fourth attempt goes at once - others wait meanwhile."""
    sleeps: list[float] = []
    heads = [f"{n} {'ab' * 32}".encode() for n in (1, 2, 3)]
    writer, client = _writer(*([b"conflict", h] for h in heads), _ok, sleep=sleeps.append)
    entry = writer.append(RECORD)
    assert [args[4] for _, args in client.calls] == ["0", "0", "1", "1"]
    assert sleeps == []
    assert entry.seq == 4


def test_wait_replies_pause_growing_jittered_and_a_conflict_resets_the_pause() -> None:
    """Told to wait (another writer's turn), the writer pauses before retrying, longer
    after each wait in a row, never over 20 ms; after a conflict it retries at once."""
    sleeps: list[float] = []
    head = f"7 {'ab' * 32}".encode()
    writer, _ = _writer(
        *([b"wait", head] for _ in range(8)),
        [b"conflict", head],
        [b"wait", head],
        _ok,
        sleep=sleeps.append,
    )
    writer.append(RECORD)
    # 8 waits then a conflict (no pause after it), then 1 wait: 9 pauses.
    assert len(sleeps) == 9
    bounds = [min(0.02, 0.00025 * 2**n) for n in range(1, 9)] + [0.0005]
    assert all(0 <= s <= bound for s, bound in zip(sleeps, bounds, strict=True))


def test_backoff_is_none_without_a_wait_then_grows_to_a_bound() -> None:
    """No pause unless told to wait; then a jittered pause whose bound doubles from half a
    millisecond up to 20 ms."""
    assert _backoff(0) == 0.0
    assert all(0 <= _backoff(1) <= 0.0005 for _ in range(200))
    assert all(0 <= _backoff(n) <= 0.02 for n in range(1, 64) for _ in range(5))
    assert max(_backoff(10) for _ in range(200)) > 0.0005  # it does grow


def test_max_attempts_must_be_positive() -> None:
    """A writer that may never try is a configuration error."""
    with pytest.raises(ConfigError):
        _writer(max_attempts=0)


def test_only_audit_records_are_accepted() -> None:
    """A dict (or anything not an AuditRecord) is refused before any call."""
    writer, client = _writer(_ok)
    with pytest.raises(AuditError) as info:
        writer.append_many([{"actor": "x", "password": "y"}])  # type: ignore[list-item]
    assert info.value.reason == "bad_record"
    assert client.calls == []


def test_writer_refuses_keys_of_another_purpose() -> None:
    """The writer MACs only with audit keys."""
    tokens = KeySet(Purpose.TOKEN, [SymmetricKey("token-1", Purpose.TOKEN, os.urandom(32))])
    with pytest.raises(Exception, match="audit"):
        AuditWriter(FakeClient(), tokens)  # type: ignore[arg-type]


def test_custom_stream_uses_its_own_head_key() -> None:
    """The head key is derived from the stream name."""
    writer, client = _writer(_ok, stream="tg:audit:test")
    writer.append(RECORD)
    assert client.calls[0][0] == ["tg:audit:test", head_key("tg:audit:test"), "tg:audit:test:turn"]


def test_text_decodes_bytes_and_replaces_invalid_utf8() -> None:
    """Replies decode as UTF-8; invalid bytes become U+FFFD rather than raising."""
    assert text(b"caf\xc3\xa9") == "café"
    assert text("already") == "already"
    assert text(b"\xff") == "\ufffd"


async def test_async_writer_appends_retries_and_batches() -> None:
    """The asyncio writer shares the chain logic: conflict, retry, batch split."""
    writer, client = _async_writer([b"conflict", f"2 {'cd' * 32}".encode()], _ok, _ok, _ok)
    entry = await writer.append(RECORD)
    assert (entry.seq, entry.prev) == (3, "cd" * 32)
    entries = await writer.append_many([RECORD] * (MAX_BATCH + 1))
    assert [e.seq for e in entries] == list(range(4, MAX_BATCH + 5))
    assert len(client.calls) == 4


async def test_async_writer_notes_when_it_lost_the_race_for_the_head() -> None:
    """``last_conflict`` stays 0 while appends go through at once and is set when another
    writer moved the head first (what the gateway's group commit watches)."""
    writer, _ = _async_writer(_ok, [b"conflict", f"5 {'ef' * 32}".encode()], _ok)
    await writer.append(RECORD)
    assert writer.last_conflict == 0.0
    before = time.monotonic()
    await writer.append(RECORD)
    assert before <= writer.last_conflict <= time.monotonic()


async def test_async_writer_errors_and_contention() -> None:
    """The asyncio writer maps Redis errors and gives up on contention like the sync one."""
    writer, _ = _async_writer(redis.ConnectionError("gone"))
    with pytest.raises(AuditError) as info:
        await writer.append(RECORD)
    assert info.value.reason == "unavailable"

    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    heads = [f"{n} {'ab' * 32}".encode() for n in (1, 2, 3)]
    writer, _ = _async_writer(*([b"conflict", h] for h in heads), max_attempts=3, sleep=sleep)
    with pytest.raises(AuditError) as info:
        await writer.append(RECORD)
    assert info.value.reason == "contention"
    assert slept == []  # conflicts are retried at once

    writer, _ = _async_writer([b"wait", heads[0]], [b"wait", heads[0]], _ok, sleep=sleep)
    await writer.append(RECORD)
    assert len(slept) == 2  # only a 'wait' is waited out
    assert all(0 <= s <= 0.001 for s in slept)


def test_observed_newer_head_saves_the_conflict() -> None:
    """A head learned from elsewhere (the worker's start gate) is used on the next append."""
    current = f"7 {'ab' * 32}"
    writer, client = _writer(_ok)
    writer.observe_head(current)
    entry = writer.append(RECORD)
    assert len(client.calls) == 1  # no conflict round trip
    assert client.calls[0][1][0] == current
    assert (entry.seq, entry.prev) == (8, "ab" * 32)


@pytest.mark.parametrize("raw", [None, "", "garbage", f"0 {'00' * 32}"])
def test_observed_older_or_malformed_head_is_ignored(raw: str | None) -> None:
    """Nothing newer than what the writer knows (or nothing readable) changes nothing."""
    writer, client = _writer(_ok, _ok)
    writer.append(RECORD)
    known = client.calls[0][1][2]  # the new head after the first append
    writer.observe_head(raw)
    writer.append(RECORD)
    assert client.calls[1][1][0] == known
