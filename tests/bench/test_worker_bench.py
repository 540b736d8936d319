"""Worker benchmark (``make bench``): it measures and prints, it asserts nothing about speed.

N pre-queued sealed tasks carrying a vault reference (enqueued as ``gateway.submission.stages``
does: vault swap, sealed and signed body, ``LPUSH``) vs N plain JSON tasks, each drained
by real Celery worker processes with the same settings (late acks, prefetch 1, prefork,
same concurrency). Every run starts from the same Redis: flushed, its append-only file
rewritten (so Redis's own automatic rewrite never lands inside a run).

The rate compared (``tasks/s``) is the worker's: N tasks over the time from the worker's
"ready" to the last result present - the queue drained at steady state. Two wider windows
are printed alongside: from the worker process's start (adds its start-up, about the same
for both) and from the first enqueue (adds the harness filling the queue: for sealed tasks
that is the gateway's sealing and signing, measured by the submit benchmark).

Runs come in back-to-back pairs (plain and sealed, the order alternating) and ``ratio`` is
the median of the pairs' ratios: on a shared VM the machine's speed drifts by 10-20 %
between runs a minute apart, and a pair shares most of that drift. Printed and merged
into ``<state dir>/bench.json`` under ``worker``.

Knobs (environment): ``BENCH_TASKS`` (4000), ``BENCH_WORKER_CONCURRENCY`` (2),
``BENCH_WORKER_PAIRS`` (5).
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.submission.codec import JsonCodec, SealedCodec
from gateway.submission.publisher import OutgoingTask, encode_message, result_key
from security.keystore import KeyRing
from security.vault import swap_secrets, write_entries
from taskgate.devstack.procs import start_child, taskgate_argv
from tests.bench.harness import (
    NAIVE,
    ROOT,
    bench_logs_dir,
    commandstats,
    group_cpu_seconds,
    load_average,
    merge_bench_json,
    redis_cpu_seconds,
)
from tests.bench.naive_app import PLAIN_QUEUE, PLAIN_TASK
from tests.bench.workload import SECRET_FIELDS, TASK_NAME, sample_payload
from tests.support.logs import register_log
from workers.contract.wire import message_copy_key, replay_bucket, replay_bucket_expiry

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

TASKS = int(os.environ.get("BENCH_TASKS", "4000"))
WORKER_CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "2"))
PAIRS = int(os.environ.get("BENCH_WORKER_PAIRS", "5"))


def enqueue_sealed(client: redis.Redis, keys: KeyRing, count: int) -> list[str]:
    """Swap the secret into the vault, seal, sign, keep a copy, prepare the seal's final-marker
    bucket, LPUSH - as ``gateway.submission.stages`` does."""
    codec = SealedCodec(keys, ttl=3600)
    spec_name = TASK_NAME
    ids: list[str] = []
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        task_id = str(uuid.uuid4())
        swapped = swap_secrets(sample_payload(), SECRET_FIELDS, task_id=task_id, keys=keys.vault)
        now = time.time()
        body = codec.encode(task_id, spec_name, [], {"payload": swapped.payload}, now=now)
        bucket = replay_bucket(now + codec.ttl)
        pipe.hsetnx(bucket, "-", "0")  # the worker's final commit adds this seal's marker
        pipe.expireat(bucket, replay_bucket_expiry(now + codec.ttl))
        write_entries(pipe, swapped.entries, 3600)
        message = encode_message(
            OutgoingTask(task_id, spec_name, body, codec.content_type, "taskgate", copied=True)
        )
        pipe.set(message_copy_key(task_id), message, ex=3600)  # the sweeper's copy
        pipe.lpush("taskgate", message)
        ids.append(task_id)
        if n % 200 == 199:
            pipe.execute()
    pipe.execute()
    return ids


def enqueue_plain(client: redis.Redis, count: int) -> list[str]:
    """The same Celery protocol-2 message with a plain JSON body, LPUSHed the same way."""
    codec = JsonCodec()
    ids: list[str] = []
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        task_id = str(uuid.uuid4())
        body = codec.encode(task_id, PLAIN_TASK, [], {"payload": sample_payload()})
        pipe.lpush(
            PLAIN_QUEUE,
            encode_message(
                OutgoingTask(task_id, PLAIN_TASK, body, codec.content_type, PLAIN_QUEUE)
            ),
        )
        ids.append(task_id)
        if n % 200 == 199:
            pipe.execute()
    pipe.execute()
    return ids


def compact_aof(client: redis.Redis, *, timeout: float = 60.0) -> None:
    """Rewrite Redis's append-only file now, while nothing is measured.

    A run appends tens of MB to the file; once it has doubled, Redis rewrites it in a
    forked child, and a rewrite inside a run takes CPU from the worker being measured -
    whichever kind happens to be running. Every run therefore starts from a freshly
    rewritten file.
    """
    deadline = time.monotonic() + timeout

    def rewriting() -> bool:
        info = client.info("persistence")
        busy = info.get("aof_rewrite_in_progress", 0) or info.get("aof_rewrite_scheduled", 0)
        if busy and time.monotonic() > deadline:
            pytest.fail(f"Redis was still rewriting its append-only file after {timeout} s")
        return bool(busy)

    while rewriting():
        time.sleep(0.05)
    client.bgrewriteaof()
    while rewriting():
        time.sleep(0.05)


POLL_WINDOW = 64  # results looked for per poll: the oldest still missing ones


def _still_missing(client: redis.Redis, pending: list[str]) -> tuple[list[str], int]:
    """``pending`` minus the results now present, looking at the oldest few only.

    The queue drains in order, so the harness asks for a small window instead of every
    key on each poll (an EXISTS over thousands of keys every 20 ms took CPU from the
    worker being measured). Also returns how many EXISTS calls it made (the harness
    takes its own calls out of the Redis command count).
    """
    calls = 0
    while pending:
        window = pending[:POLL_WINDOW]
        calls += 1
        if int(client.exists(*window)) < len(window):
            break
        pending = pending[POLL_WINDOW:]
    return pending, calls


def drain(
    client: redis.Redis,
    name: str,
    argv: list[str],
    env: dict[str, str],
    logs: Path,
    enqueue: Callable[[], list[str]],
    succeeded: Callable[[str, bytes], bool],
) -> dict[str, Any]:
    """Drain a pre-filled queue with a worker started for it: the time from the worker's
    "ready" to the last result, and the wider windows from its start and from the first
    enqueue.

    Also: the worker's CPU and its Redis commands per task from "ready" to the last result
    (the harness's own polling EXISTS calls are taken out of the count).
    """
    client.flushdb()
    compact_aof(client)
    busy = load_average()
    started = time.perf_counter()
    ids = enqueue()
    enqueued = time.perf_counter()
    keys = [result_key(task_id) for task_id in ids]
    log_path = logs / f"{name}.log"
    log_path.unlink(missing_ok=True)
    client.config_resetstat()
    spawned = time.perf_counter()
    child = start_child(name, argv, log_path=log_path, env=env, cwd=ROOT)
    register_log(child)
    ready_at: float | None = None
    pending = keys
    cpu_ready = redis_ready = 0.0
    polls = 0
    try:
        deadline = time.monotonic() + 300
        while True:
            if not child.alive():
                pytest.fail(f"{name} exited:\n{child.log_tail()}", pytrace=False)
            if ready_at is None and "ready." in log_path.read_text(errors="replace"):
                ready_at = time.perf_counter()
                cpu_ready = group_cpu_seconds(child.pid)
                redis_ready = redis_cpu_seconds(client)
            pending, calls_made = _still_missing(client, pending)
            polls += calls_made
            if not pending:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{name}: results missing after 300 s:\n{child.log_tail()}")
            time.sleep(0.02)
        finished = time.perf_counter()
        cpu_done = group_cpu_seconds(child.pid)
        redis_done = redis_cpu_seconds(client)
        calls = commandstats(client)
    finally:
        child.stop()
    calls["exists"] = calls.get("exists", 0) - polls
    if ready_at is None:
        ready_at = enqueued
    ok = 0
    for task_id, raw in zip(ids, client.mget(keys), strict=True):
        if isinstance(raw, bytes) and succeeded(task_id, raw):
            ok += 1
    return {
        "tasks": len(ids),
        "succeeded": ok,
        "total_s": finished - started,
        "enqueue_s": enqueued - started,
        "startup_s": ready_at - spawned,
        "drain_s": finished - ready_at,
        "tps": len(ids) / (finished - ready_at),
        "from_start_tps": len(ids) / (finished - spawned),
        "from_enqueue_tps": len(ids) / (finished - started),
        "cpu_ms_per_task": (cpu_done - cpu_ready) * 1000 / len(ids),
        "redis_cpu_ms_per_task": (redis_done - redis_ready) * 1000 / len(ids),
        "loadavg": busy,
        "redis_per_task": sum(calls.values()) / len(ids),
        "top": ", ".join(
            f"{k} {v / len(ids):.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:12]
        ),
    }


def _plain_ok(_task_id: str, raw: bytes) -> bool:
    return bool(json.loads(raw).get("status") == "SUCCESS")


def test_worker_throughput_plain_vs_sealed(
    bench_env: dict[str, str],
    plain_redis: redis.Redis,
    keyring: KeyRing,
) -> None:
    """Measure tasks/s of a plain JSON Celery worker and of taskgate's sealed worker."""
    logs = bench_logs_dir()
    codec = SealedCodec(keyring, ttl=3600)

    def sealed_ok(task_id: str, raw: bytes) -> bool:
        return codec.decode_result(task_id, raw).get("status") == "SUCCESS"

    def run_plain() -> dict[str, Any]:
        return drain(
            plain_redis,
            "plain-worker",
            [*NAIVE, "worker", "--concurrency", str(WORKER_CONCURRENCY)],
            bench_env,
            logs,
            lambda: enqueue_plain(plain_redis, TASKS),
            _plain_ok,
        )

    def run_sealed() -> dict[str, Any]:
        return drain(
            plain_redis,
            "sealed-worker",
            taskgate_argv("worker", "--concurrency", str(WORKER_CONCURRENCY), "--loglevel", "INFO"),
            bench_env,
            logs,
            lambda: enqueue_sealed(plain_redis, keyring, TASKS),
            sealed_ok,
        )

    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "sealed": []}
    for n in range(PAIRS):  # back-to-back pairs, the order alternating from pair to pair
        if n % 2 == 0:
            runs["plain"].append(run_plain())
            runs["sealed"].append(run_sealed())
        else:
            runs["sealed"].append(run_sealed())
            runs["plain"].append(run_plain())
    plain_redis.flushdb()

    def median(kind: str, key: str) -> float:
        return float(statistics.median(run[key] for run in runs[kind]))

    def pair_ratios(key: str) -> list[float]:
        return [
            sealed[key] / plain[key]
            for plain, sealed in zip(runs["plain"], runs["sealed"], strict=True)
            if plain[key]
        ]

    def ratio(key: str) -> float:
        """The median of the pairs' ratios: each pair ran back to back, so a machine that
        speeds up or slows down between pairs (a shared VM does) moves both of a pair."""
        ratios = pair_ratios(key)
        return round(statistics.median(ratios), 3) if ratios else 0.0

    values = {
        # The worker's rate: the queue drained from "ready" to the last result.
        "plain_tps": round(median("plain", "tps"), 1),
        "sealed_tps": round(median("sealed", "tps"), 1),
        "ratio": ratio("tps"),
        # Wider windows, for comparison: + the worker's start-up; + filling the queue.
        "plain_from_start_tps": round(median("plain", "from_start_tps"), 1),
        "sealed_from_start_tps": round(median("sealed", "from_start_tps"), 1),
        "from_start_ratio": ratio("from_start_tps"),
        "plain_from_enqueue_tps": round(median("plain", "from_enqueue_tps"), 1),
        "sealed_from_enqueue_tps": round(median("sealed", "from_enqueue_tps"), 1),
        "from_enqueue_ratio": ratio("from_enqueue_tps"),
        "plain_cpu_ms_per_task": round(median("plain", "cpu_ms_per_task"), 3),
        "sealed_cpu_ms_per_task": round(median("sealed", "cpu_ms_per_task"), 3),
        "plain_redis_cpu_ms_per_task": round(median("plain", "redis_cpu_ms_per_task"), 3),
        "sealed_redis_cpu_ms_per_task": round(median("sealed", "redis_cpu_ms_per_task"), 3),
        "plain_redis_commands_per_task": round(median("plain", "redis_per_task"), 2),
        "sealed_redis_commands_per_task": round(median("sealed", "redis_per_task"), 2),
        "tasks": TASKS,
        "concurrency": WORKER_CONCURRENCY,
        "pairs": PAIRS,
        "pair_ratios": [round(r, 3) for r in pair_ratios("tps")],
    }
    path = merge_bench_json("worker", values)
    print()
    print(
        f"worker benchmark: {TASKS} pre-queued no-op tasks (1 KiB payload; sealed: + 1 vault"
        f" secret), prefork concurrency {WORKER_CONCURRENCY}, acks_late, prefetch 1, TLS Redis,"
        f" {PAIRS} back-to-back pairs of runs, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'worker':>7} | {'tasks/s':>8} | {'from start':>10} | {'from enqueue':>12} | "
        f"{'cpu ms/task':>11} | {'redis cmds/task':>15} | {'redis cpu ms/task':>17}"
    )
    print(header)
    print("-" * len(header))
    for kind in ("plain", "sealed"):
        print(
            f"{kind:>7} | {median(kind, 'tps'):>8.1f} | {median(kind, 'from_start_tps'):>10.1f} | "
            f"{median(kind, 'from_enqueue_tps'):>12.1f} | "
            f"{median(kind, 'cpu_ms_per_task'):>11.3f} | {median(kind, 'redis_per_task'):>15.2f} | "
            f"{median(kind, 'redis_cpu_ms_per_task'):>17.3f}"
        )
    spread = pair_ratios("tps")
    print(
        f"ratio sealed/plain: {values['ratio']:.3f} (median of the pairs' ratios of tasks/s"
        f" from worker ready to the last result; pairs {min(spread):.3f}-{max(spread):.3f});"
        f" wider windows: {values['from_start_ratio']:.3f} from the worker's start,"
        f" {values['from_enqueue_ratio']:.3f} from the first enqueue"
    )
    for kind, kind_runs in runs.items():
        for n, run in enumerate(kind_runs, 1):
            print(
                f"  {kind:<6} run {n}: {run['tps']:6.1f} tasks/s  drain {run['drain_s']:.2f} s"
                f" (start-up {run['startup_s']:.2f} s, enqueue {run['enqueue_s']:.2f} s)"
                f"  {run['succeeded']}/{run['tasks']} succeeded"
                f"  cpu {run['cpu_ms_per_task']:.2f} ms/task  loadavg {run['loadavg']}"
            )
        print(f"  {kind:<6} redis/task: {kind_runs[-1]['top']}")
    print(f"written: {path}")
