"""The gateway's metric counts: a flush Redis did not take keeps them; roles and keys."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import redis

from gateway.metrics import Metrics
from workers.contract.acl import role_line
from workers.contract.keys import (
    METRICS_GATEWAY,
    METRICS_OPERATOR,
    METRICS_WINDOW_PREFIX,
    METRICS_WORKER,
    WORKER_ACTIVE_PREFIX,
)


class _Pipeline:
    """Records what a flush queues; ``execute`` fails if told to (Redis unreachable)."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.queued: list[tuple[str, str, int]] = []
        self.executed: list[list[tuple[str, str, int]]] = []

    async def __aenter__(self) -> _Pipeline:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.queued = []  # like redis-py: leaving the block resets the pipeline

    def hincrby(self, name: str, key: str, amount: int = 1) -> None:
        self.queued.append((name, key, amount))

    async def execute(self) -> list[Any]:
        if self.fail:
            raise redis.ConnectionError("down")
        self.executed.append(self.queued)
        self.queued = []
        return []


class _Client:
    def __init__(self, fail: bool) -> None:
        self.pipe = _Pipeline(fail)

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        assert transaction is False  # counts need no MULTI
        return self.pipe


async def test_a_flush_writes_every_count_to_the_gateway_hash_once() -> None:
    metrics = Metrics()
    client = _Client(fail=False)
    metrics._client = client  # type: ignore[assignment]
    metrics.accepted("t", "q", 0.003)
    metrics.token("issued")
    assert await metrics.flush() is True
    (written,) = client.pipe.executed
    assert {(name, field) for name, field, _ in written} == {
        (METRICS_GATEWAY, "taskgate_submissions|t|accepted"),
        (METRICS_GATEWAY, "celery_task_sent|t|q"),
        (METRICS_GATEWAY, "taskgate_submit_seconds|t|b1"),
        (METRICS_GATEWAY, "taskgate_submit_seconds|t|sum"),
        (METRICS_GATEWAY, "taskgate_tokens|issued"),
    }
    assert await metrics.flush() is True  # nothing pending: nothing sent
    assert len(client.pipe.executed) == 1


async def test_counts_redis_did_not_take_go_with_the_next_flush() -> None:
    metrics = Metrics()
    client = _Client(fail=True)
    metrics._client = client  # type: ignore[assignment]
    metrics.token("issued")
    assert await metrics.flush() is False
    metrics.token("issued")
    client.pipe.fail = False
    assert await metrics.flush() is True
    assert client.pipe.executed == [[(METRICS_GATEWAY, "taskgate_tokens|issued", 2)]]


async def test_counts_wait_for_a_client() -> None:
    metrics = Metrics()
    metrics.token("issued")
    assert await metrics.flush() is False
    assert metrics.buffer.drain() == {"taskgate_tokens|issued": 1}


def test_each_role_writes_only_its_own_metric_counts() -> None:
    """A compromised worker cannot forge the gateways' counts, nor a gateway the workers'."""
    gateway, worker, operator = (role_line(r, None) for r in ("gateway", "worker", "operator"))
    assert f" ~{METRICS_GATEWAY} " in gateway
    assert f" %R~{METRICS_WORKER} " in gateway
    assert f" %R~{METRICS_WINDOW_PREFIX}* " in gateway
    assert f" %R~{METRICS_OPERATOR} " in gateway
    assert f" %R~{WORKER_ACTIVE_PREFIX}* " in gateway
    assert f" ~{METRICS_WORKER} " in worker
    assert f" ~{METRICS_WINDOW_PREFIX}* " in worker
    assert f" ~{WORKER_ACTIVE_PREFIX}* " in worker
    assert METRICS_GATEWAY not in worker
    assert METRICS_OPERATOR not in worker
    assert f" ~{METRICS_OPERATOR} " in operator
    assert f" %R~{METRICS_WORKER} " in operator
    assert f" %R~{METRICS_GATEWAY} " in operator  # read only (stats)
