"""Worker liveness from heartbeats: the contract's count and the writer's life cycle (no Redis)."""

from __future__ import annotations

import pytest
import redis

from taskgate.devstack.procs import free_port
from workers.contract import keys
from workers.contract.acl import role_line
from workers.contract.heartbeat import WORKERS, live_workers, worker_id
from workers.heartbeat import HeartbeatWriter

NOW = 1_800_000_000.0


class SortedSet:
    """Just enough of a Redis sorted set for ZCOUNT: inclusive bounds, "+inf"/"-inf"."""

    def __init__(self, members: dict[str, float]) -> None:
        self.members = members
        self.asked: list[str] = []

    def zcount(self, name: str, min: float | str, max: float | str) -> int:
        self.asked.append(name)
        low, high = float(min), float(max)
        return sum(1 for score in self.members.values() if low <= score <= high)


def test_a_beat_within_the_lapse_counts_and_an_older_one_does_not() -> None:
    """A worker that beat 14 s ago is live with a 15 s lapse; one that beat 16 s ago is gone."""
    beats = SortedSet({"a:1": NOW - 14, "b:2": NOW - 16, "c:3": NOW})
    assert live_workers(beats, NOW, 15) == 2
    assert live_workers(beats, NOW, 1) == 1
    assert beats.asked == [WORKERS, WORKERS]


def test_no_beats_means_no_live_workers() -> None:
    """An empty (or missing) heartbeat set counts zero workers."""
    assert live_workers(SortedSet({}), NOW, 15) == 0


def test_a_lapse_that_is_not_positive_is_refused() -> None:
    """A zero lapse would count every worker as gone: refused, not silently used."""
    with pytest.raises(ValueError, match="lapse"):
        live_workers(SortedSet({}), NOW, 0)


def test_worker_id_is_host_and_pid_only() -> None:
    """The member is ``{hostname}:{pid}``, nothing else."""
    assert worker_id("host-a", 42) == "host-a:42"
    assert worker_id().rsplit(":", 1)[1].isdigit()


def test_workers_write_the_heartbeats_and_the_gateway_only_reads_them() -> None:
    """The ACL lets the worker write ``tg:workers`` (and prune it); the gateway reads it."""
    worker = role_line("worker", None)
    gateway = role_line("gateway", None)
    assert f"~{keys.WORKERS} " in worker
    assert "+zremrangebyscore" in worker
    assert f"%R~{keys.WORKERS} " in gateway
    assert "+zcount" in gateway


def test_an_interval_not_below_the_lapse_is_refused() -> None:
    """A writer that beats less often than once per lapse would flap; it is refused."""
    client = redis.Redis(host="127.0.0.1", port=free_port())
    with pytest.raises(ValueError, match="interval"):
        HeartbeatWriter(client, interval=15, lapse=15)


def test_a_writer_without_redis_logs_and_keeps_the_worker_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Redis unreachable, beats fail quietly (logged), and start and stop still work."""
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    writer = HeartbeatWriter(client, interval=0.05, lapse=1, member="host-a:42")
    writer.start()
    try:
        assert writer.running()
        assert writer.beat() is False
    finally:
        writer.stop()
    assert not writer.running()
    assert "heartbeat failed (ConnectionError)" in caplog.text
    assert "host-a" not in caplog.text
