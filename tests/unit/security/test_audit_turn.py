"""The exclusive turn in the audit append script, against a real Redis."""

from __future__ import annotations

import os
import time

import pytest
import redis

from security.audit import AuditRecord, AuditWriter, verify
from security.keys import KeySet, Purpose, SymmetricKey

pytestmark = pytest.mark.integration

KEYS = KeySet(
    Purpose.AUDIT_GATEWAY, [SymmetricKey("audit-1", Purpose.AUDIT_GATEWAY, os.urandom(32))]
)


def _record(i: int) -> AuditRecord:
    return AuditRecord.make(actor="test", action="turn", outcome="ok", target=str(i))


def test_another_writers_turn_holds_appends_until_it_lapses(redis_client: redis.Redis) -> None:
    """While someone else holds the turn a writer waits; the turn lapses by itself."""
    writer = AuditWriter(redis_client, KEYS)
    writer.append(_record(0))
    redis_client.set("tg:audit:turn", "someone-else", px=300)
    started = time.monotonic()
    writer.append(_record(1))
    assert time.monotonic() - started >= 0.1  # it waited for the turn to lapse
    assert verify(redis_client, KEYS).count == 2


def test_the_turn_is_released_after_the_starving_writer_appends(redis_client: redis.Redis) -> None:
    """A writer that got its turn appends and deletes the turn key in the same script."""
    first = AuditWriter(redis_client, KEYS)
    second = AuditWriter(redis_client, KEYS)
    first.append(_record(0))
    second.append(_record(1))  # learns the head through a conflict
    for i in range(2, 40):
        (first if i % 2 else second).append(_record(i))
    assert redis_client.exists("tg:audit:turn") == 0
    report = verify(redis_client, KEYS)
    assert report.ok
    assert report.count == 40
