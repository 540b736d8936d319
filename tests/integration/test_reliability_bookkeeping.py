"""A worker's own bookkeeping with Redis unreachable requeues its message, nothing else.

The errors that mean storage is down (connection, loading, timeout, an unavailable audit
log, a failed publish) become a requeue; any other error passes through unchanged.
"""

from __future__ import annotations

import uuid

import pytest
import redis
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from security.errors import AuditError
from workers.execution.runtime import _requeue_if_storage_down

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("gone"),
        redis.BusyLoadingError("loading the append-only file"),
        redis.TimeoutError("slow"),
        AuditError("audit log unavailable", reason="unavailable"),
        Reject(OperationalError("publish failed"), requeue=False),  # from Task.retry
    ],
    ids=type,
)
def test_worker_bookkeeping_with_redis_unreachable_requeues_the_message(error: Exception) -> None:
    """Redis down under the worker's own bookkeeping: requeue, never fail (and so ack) it."""
    with pytest.raises(Reject) as raised, _requeue_if_storage_down(str(uuid.uuid4())):
        raise error
    assert raised.value.requeue is True  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        AuditError("refused", reason="write_failed"),
        Reject("not_sealed", requeue=False),
        redis.ResponseError("WRONGTYPE"),
    ],
    ids=type,
)
def test_worker_bookkeeping_errors_other_than_unreachable_pass_through(error: Exception) -> None:
    """Anything but an unreachable Redis is not turned into a requeue."""
    with pytest.raises(type(error)) as raised, _requeue_if_storage_down(str(uuid.uuid4())):
        raise error
    assert raised.value is error
