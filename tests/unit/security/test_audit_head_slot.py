"""The audit head slot: writers of one process tree chain after each other's announced
batches instead of conflicting, and nothing the slot holds can break the chain."""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis

from security.audit import AuditRecord, AuditWriter, verify
from security.audit.chain import Head
from security.audit.head_slot import HeadSlot
from security.keys import KeySet, Purpose, SymmetricKey

KEYS = KeySet(
    Purpose.AUDIT_WORKER, [SymmetricKey("audit-w1", Purpose.AUDIT_WORKER, os.urandom(32))]
)
MAC = "ab" * 32


def _record(i: int) -> AuditRecord:
    return AuditRecord.make(actor="test", action="slot", outcome="ok", target=str(i))


class _CountingScript:
    """Wraps the writer's append script to count the calls Redis receives."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.calls = 0

    def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        return self.script(**kwargs)


def _counted(writer: AuditWriter) -> _CountingScript:
    counting = _CountingScript(writer._script)
    writer._script = counting  # type: ignore[assignment]
    return counting


def test_a_forked_process_sees_the_head_its_parent_announces() -> None:
    slot = HeadSlot()
    pid = os.fork()
    if pid == 0:  # the child announces and leaves at once
        slot.announce(Head(7, MAC))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert slot.read() == Head(7, MAC)


def test_an_empty_or_unreadable_slot_reads_as_nothing() -> None:
    slot = HeadSlot()
    assert slot.read() is None
    slot._map[:8] = b"7 nohex\xff"  # a torn or foreign value: not a head
    assert slot.read() is None


def test_withdraw_replaces_only_the_writers_own_announcement() -> None:
    slot = HeadSlot()
    mine, theirs, actual = Head(5, MAC), Head(6, "cd" * 32), Head(4, "ef" * 32)
    slot.announce(theirs)
    slot.withdraw(mine, actual)  # another writer announced since: left alone
    assert slot.read() == theirs
    slot.withdraw(theirs, actual)
    assert slot.read() == actual


@pytest.mark.integration
def test_writers_sharing_a_slot_chain_after_each_other_without_conflicts(
    redis_client: redis.Redis,
) -> None:
    """Two writers, one slot: each append chains after the other's, first time."""
    slot = HeadSlot()
    first = AuditWriter(redis_client, KEYS, shared=slot)
    second = AuditWriter(redis_client, KEYS, shared=slot)
    calls = [_counted(first), _counted(second)]
    for i in range(20):
        (first if i % 2 else second).append(_record(i))
    assert sum(c.calls for c in calls) == 20  # not one append sent twice
    report = verify(redis_client, KEYS)
    assert report.ok
    assert report.count == 20


@pytest.mark.integration
def test_an_announced_batch_redis_never_ran_costs_one_conflict_at_most(
    redis_client: redis.Redis,
) -> None:
    """A slot announcing a head that never came (its batch refused, its writer gone) is
    read once per batch: the writer conflicts once, learns the real head and appends."""
    slot = HeadSlot()
    writer = AuditWriter(redis_client, KEYS, shared=slot)
    writer.append(_record(0))
    slot.announce(Head(99, MAC))  # ahead of the real head, and never written
    counting = _counted(writer)
    writer.append(_record(1))
    assert counting.calls == 2  # the stale announcement's conflict, then the append
    writer.append(_record(2))
    assert counting.calls == 3  # its own announcement replaced the stale one
    report = verify(redis_client, KEYS)
    assert report.ok
    assert report.count == 3
