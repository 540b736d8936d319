"""What Celery task events cost (``TASKGATE_TASK_EVENTS=true``, for Flower): it measures
and prints, it asserts nothing about speed.

The sealed worker of ``test_worker_bench`` drains the same pre-queued tasks with events off
(the default) and on, in back-to-back pairs (the order alternating); no one listens, so
the cost measured is the worker's own: building each event (placeholders, no values) and
a PUBLISH per event (task-received, -started, -succeeded) plus worker heartbeats. Logs are
on (JSON, one line per lifecycle step) in both. Merged into ``<state dir>/bench.json``
under ``worker_events``.

Knobs (environment): ``BENCH_TASKS`` (4000), ``BENCH_WORKER_CONCURRENCY`` (2),
``BENCH_EVENTS_PAIRS`` (3).
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import pytest
import redis

from gateway.submission.codec import SealedCodec
from security.keystore import KeyRing
from taskgate.devstack.procs import taskgate_argv
from tests.bench.harness import bench_logs_dir, merge_bench_json
from tests.bench.test_worker_bench import TASKS, WORKER_CONCURRENCY, drain, enqueue_sealed

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

PAIRS = int(os.environ.get("BENCH_EVENTS_PAIRS", "3"))


def test_worker_throughput_with_and_without_task_events(
    bench_env: dict[str, str],
    plain_redis: redis.Redis,
    keyring: KeyRing,
) -> None:
    """Measure the sealed worker's tasks/s and CPU per task with task events off and on."""
    logs = bench_logs_dir()
    codec = SealedCodec(keyring, ttl=3600)
    argv = taskgate_argv("worker", "--concurrency", str(WORKER_CONCURRENCY), "--loglevel", "INFO")

    def sealed_ok(task_id: str, raw: bytes) -> bool:
        return codec.decode_result(task_id, raw).get("status") == "SUCCESS"

    def run(events: bool) -> dict[str, Any]:
        env = bench_env | {"TASKGATE_TASK_EVENTS": "true" if events else "false"}
        return drain(
            plain_redis,
            f"sealed-worker-events-{'on' if events else 'off'}",
            argv,
            env,
            logs,
            lambda: enqueue_sealed(plain_redis, keyring, TASKS),
            sealed_ok,
        )

    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for n in range(PAIRS):
        order = ("off", "on") if n % 2 == 0 else ("on", "off")
        for kind in order:
            runs[kind].append(run(kind == "on"))
    plain_redis.flushdb()
    for kind_runs in runs.values():
        for one in kind_runs:
            assert one["succeeded"] == one["tasks"]

    def median(kind: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[kind]))

    ratios = [on["tps"] / off["tps"] for off, on in zip(runs["off"], runs["on"], strict=True)]
    values = {
        "events_off_tps": round(median("off", "tps"), 1),
        "events_on_tps": round(median("on", "tps"), 1),
        "ratio": round(statistics.median(ratios), 3),
        "events_off_cpu_ms_per_task": round(median("off", "cpu_ms_per_task"), 3),
        "events_on_cpu_ms_per_task": round(median("on", "cpu_ms_per_task"), 3),
        "events_off_redis_commands_per_task": round(median("off", "redis_per_task"), 2),
        "events_on_redis_commands_per_task": round(median("on", "redis_per_task"), 2),
        "tasks": TASKS,
        "concurrency": WORKER_CONCURRENCY,
        "pairs": PAIRS,
        "pair_ratios": [round(r, 3) for r in ratios],
    }
    path = merge_bench_json("worker_events", values)
    print()
    print(
        f"task events benchmark: sealed worker, {TASKS} pre-queued tasks, concurrency"
        f" {WORKER_CONCURRENCY}, {PAIRS} back-to-back pairs, JSON logs on"
    )
    header = f"{'events':>7} | {'tasks/s':>8} | {'cpu ms/task':>11} | {'redis cmds/task':>15}"
    print(header)
    print("-" * len(header))
    for kind in ("off", "on"):
        print(
            f"{kind:>7} | {median(kind, 'tps'):>8.1f} | {median(kind, 'cpu_ms_per_task'):>11.3f}"
            f" | {median(kind, 'redis_per_task'):>15.2f}"
        )
    print(f"ratio on/off: {values['ratio']:.3f} (median of pairs {values['pair_ratios']})")
    print(f"  events on, redis/task: {runs['on'][-1]['top']}")
    print(f"written: {path}")
