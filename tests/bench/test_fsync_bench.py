"""What ``appendfsync always`` costs the submission path (``make bench``; it measures and
prints, it asserts nothing about speed).

``taskgate up`` runs Redis with ``appendfsync everysec`` unless
``TASKGATE_REDIS_APPENDFSYNC=always`` (docs/operations.md says what each can lose). This
runs taskgate's ``POST /v1/tasks/{name}`` (one uvicorn worker) against the bench Redis,
its append-only file on the same disk, switched between the two policies with ``CONFIG
SET``. Runs come in back-to-back pairs, the order alternating, and the ratio is the median
of the pairs' ratios (a shared machine's speed drifts between runs; a pair shares most of
that drift). Printed as a table and merged into ``<state dir>/bench.json`` under
``submit_appendfsync``.

Knobs (environment): ``BENCH_CONCURRENCY`` (32), ``BENCH_FSYNC_DURATION`` (5 s),
``BENCH_FSYNC_PAIRS`` (3): about 45 s in all.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

import pytest
import redis

from certs.material import CertPaths
from security.keystore import KeyRing
from taskgate.devstack.procs import free_port, taskgate_argv
from taskgate.devstack.redis_server import RedisServer
from tests.bench.harness import (
    LoadRun,
    aggregate,
    bench_logs_dir,
    fetch_token,
    http_ready,
    merge_bench_json,
    register_bench_client,
    running,
)
from tests.bench.test_submit_bench import CONCURRENCY, _one_run
from tests.bench.workload import TASK_NAME, sample_payload

pytestmark = [pytest.mark.bench, pytest.mark.timeout(600)]

DURATION = float(os.environ.get("BENCH_FSYNC_DURATION", "5"))
PAIRS = int(os.environ.get("BENCH_FSYNC_PAIRS", "3"))
POLICIES = ("everysec", "always")


def test_submit_throughput_with_appendfsync_always_vs_everysec(
    bench_env: dict[str, str],
    tls_redis: RedisServer,
    plain_redis: redis.Redis,
    pki: CertPaths,
    keyring: KeyRing,
    tmp_path: Path,
) -> None:
    """Measure taskgate's submit with Redis fsyncing its AOF every second vs every write."""
    body = tmp_path / "payload.json"
    body.write_text(json.dumps(sample_payload()))
    load = {"ca": pki.ca, "body": body, "env": bench_env, "concurrency": CONCURRENCY}
    load |= {"duration": DURATION, "warmup": 1.0}
    port = free_port()
    base = f"https://localhost:{port}"
    argv = [
        *taskgate_argv("serve", "--port", str(port), "--workers", "1"),
        "--log-level",
        "warning",
    ]
    before = str(plain_redis.config_get("appendfsync")["appendfsync"])
    runs: dict[str, list[LoadRun]] = {policy: [] for policy in POLICIES}
    try:
        with running(
            "gateway-fsync",
            argv,
            bench_env,
            bench_logs_dir(),
            http_ready(f"{base}/healthz", pki.ca),
        ) as gateway:
            for pair in range(PAIRS):
                for policy in POLICIES[:: 1 if pair % 2 == 0 else -1]:
                    plain_redis.flushdb()
                    plain_redis.config_set("appendfsync", policy)
                    token = fetch_token(base, pki.ca, *register_bench_client(tls_redis, keyring))
                    url = f"{base}/v1/tasks/{TASK_NAME}"
                    runs[policy].append(
                        _one_run(plain_redis, gateway, url, "taskgate", auth=token, **load)
                    )
    finally:
        plain_redis.config_set("appendfsync", before)
        plain_redis.flushdb()
    result = {policy: aggregate(policy_runs) for policy, policy_runs in runs.items()}
    row: dict[str, Any] = {
        f"{policy}_{name}": result[policy][name]
        for policy in POLICIES
        for name in ("rps", "p50_ms", "p99_ms", "redis_cpu_ms_per_ok")
    }
    pair_ratios = [
        round(always.rps / everysec.rps, 3) if everysec.rps else 0.0
        for everysec, always in zip(runs["everysec"], runs["always"], strict=True)
    ]
    row |= {
        "ratio": statistics.median(pair_ratios),
        "pair_ratios": pair_ratios,
        "concurrency": CONCURRENCY,
        "duration_s": DURATION,
        "pairs": PAIRS,
    }
    path = merge_bench_json("submit_appendfsync", {"workers_1": row})
    print()
    print(
        f"appendfsync cost: taskgate submit, 1 uvicorn worker, {CONCURRENCY} connections,"
        f" 1 s warm-up + {DURATION:g} s, {PAIRS} back-to-back pairs (medians)"
    )
    header = (
        f"{'appendfsync':>11} | {'rps':>8} | {'p50 ms':>7} | {'p99 ms':>7} |"
        f" {'redis cpu ms/submit':>19}"
    )
    print(header)
    print("-" * len(header))
    for policy in POLICIES:
        r = result[policy]
        print(
            f"{policy:>11} | {r['rps']:>8.1f} | {r['p50_ms']:>7.2f} | {r['p99_ms']:>7.2f} |"
            f" {r['redis_cpu_ms_per_ok']:>19.3f}"
        )
    print(f"always / everysec rps: {row['ratio']:.2f} (median of the pairs {pair_ratios})")
    for policy, policy_runs in runs.items():
        for n, run in enumerate(policy_runs, 1):
            s = run.summary
            print(
                f"  {policy:<8} run {n}: {s['rps']:7.1f} rps  p50 {s['p50_ms']:6.1f}"
                f"  p99 {s['p99_ms']:6.1f} ms  {s['requests']} req  {s['errors']} errors"
                f"  status {s['status_counts']}"
            )
    print(f"written: {path}")
