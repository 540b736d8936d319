"""Plumbing for the benchmarks: processes, the load generator, Redis and CPU accounting.

Nothing here asserts anything about speed; it starts things, measures them and writes
``<state dir>/bench.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gateway.stores.clients import ClientRegistry
from security.keystore import KeyRing
from taskgate.devstack.procs import Child, start_child
from taskgate.devstack.redis_server import RedisServer
from tests.bench import wrk
from tests.bench.connections import ConnectionSpread, process_group
from tests.support.logs import register_log

__all__ = [
    "NAIVE",
    "REPEAT",
    "ROOT",
    "LoadRun",
    "aggregate",
    "bench_json_path",
    "bench_logs_dir",
    "commandstats",
    "fetch_token",
    "group_cpu_seconds",
    "http_ready",
    "load_average",
    "log_problems",
    "log_size",
    "machine_cpu_seconds",
    "merge_bench_json",
    "redis_cpu_seconds",
    "register_bench_client",
    "run_loadgen",
    "running",
    "top_commands",
]

ROOT = Path(__file__).resolve().parents[2]
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))  # interleaved runs per measurement (median)
NAIVE = [sys.executable, "-m", "tests.bench.naive_app"]
AUTH_ENV = "BENCH_LOADGEN_AUTH"  # the bearer token reaches the load generator via env, not argv
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def bench_json_path() -> Path:
    """``<state dir>/bench.json``: ``TASKGATE_STATE_DIR`` of the caller, else ``.taskgate``."""
    state = os.environ.get("TASKGATE_STATE_DIR")
    return (Path(state) if state else ROOT / ".taskgate") / "bench.json"


def merge_bench_json(section: str, values: dict[str, Any]) -> Path:
    """Merge ``values`` into ``section`` of bench.json, keeping every other key; mode 0600."""
    path = bench_json_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        document = {}
    if not isinstance(document, dict):
        document = {}
    current = document.get(section)
    document[section] = {**(current if isinstance(current, dict) else {}), **values}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(document, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- processes


def _https(ca: Path, **kwargs: Any) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=10, **kwargs)


def _wait(child: Child, check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            pytest.fail(f"{child.name} exited while {what}:\n{child.log_tail()}", pytrace=False)
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    pytest.fail(f"{child.name} not ready after {timeout}s ({what}):\n{child.log_tail()}")


@contextmanager
def running(
    name: str, argv: list[str], env: dict[str, str], logs: Path, ready: Callable[[Child], bool]
) -> Iterator[Child]:
    """Start a child, wait for ``ready``, stop it (and its process group) afterwards."""
    log_path = logs / f"{name}.log"
    log_path.unlink(missing_ok=True)
    child = start_child(name, argv, log_path=log_path, env=env, cwd=ROOT)
    register_log(child)
    try:
        _wait(child, lambda: ready(child), 60, "starting")
        yield child
    finally:
        child.stop()


def http_ready(url: str, ca: Path) -> Callable[[Child], bool]:
    """A readiness check: ``GET url`` answers 200 over HTTPS."""

    def check(_child: Child) -> bool:
        with _https(ca) as client:
            return client.get(url).status_code == 200

    return check


def bench_logs_dir() -> Path:
    """``<state dir>/bench-logs``: server logs outlive pytest's rotating temp folders."""
    path = bench_json_path().parent / "bench-logs"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def log_problems(child: Child, since: int, limit: int = 20) -> str:
    """Warning and error lines ``child`` logged after byte offset ``since`` (last ``limit``)."""
    try:
        with child.log_path.open("rb") as fh:
            fh.seek(since)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    wanted = ("WARNING", "ERROR", "CRITICAL", "Traceback", "Error")
    lines = [line for line in text.splitlines() if any(w in line for w in wanted)]
    return "\n".join(lines[-limit:])


def log_size(child: Child) -> int:
    try:
        return child.log_path.stat().st_size
    except OSError:
        return 0


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid`` (Linux)."""
    members = process_group(pgid).values()
    return sum(int(fields[11]) + int(fields[12]) for fields in members) / _CLK_TCK


def redis_cpu_seconds(client: redis.Redis) -> float:
    """User + system CPU seconds the Redis server has used (``INFO cpu``), all threads."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def redis_rewrite_cpu_seconds(client: redis.Redis) -> float:
    """CPU seconds of Redis's finished children (``INFO cpu``): its append-only file
    rewrites, which Redis forks as the file grows - part of what each write costs the
    machine, outside ``redis_cpu_seconds``."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user_children"]) + float(cpu["used_cpu_sys_children"])


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (``/proc/stat``):
    on a saturated shared machine, busy CPU per request is what decides the rate."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return (total - idle) / _CLK_TCK, total / _CLK_TCK


def load_average() -> str:
    """The 1/5/15-minute load averages (the bench shares its machine: say how busy it was)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


# --------------------------------------------------------------------------- redis + clients


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT (the harness's own excluded).

    Commands a Lua script runs are counted too (as Redis counts them), plus the EVALSHA.
    """
    stats = client.info("commandstats")
    calls: dict[str, int] = {}
    for key, value in stats.items():
        name = str(key).removeprefix("cmdstat_")
        if name.startswith(("config", "info", "flushdb")):
            continue
        calls[name] = int(value["calls"])
    return calls


def register_bench_client(tls_redis: RedisServer, keys: KeyRing) -> tuple[str, str]:
    """A client allowed every task, with limits high enough never to bite."""

    async def create() -> tuple[str, str]:
        client = tls_redis.tls.async_client()
        try:
            made, secret = await ClientRegistry(client, keys.state).create(
                "bench", "tasks:submit:*", rate_limit="1000000/minute", max_queued=100_000
            )
        finally:
            await client.aclose()
        return made.client_id, secret

    return asyncio.run(create())


def fetch_token(base: str, ca: Path, client_id: str, secret: str) -> str:
    with _https(ca) as http:
        response = http.post(
            f"{base}/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
    if response.status_code != 200:
        pytest.fail(f"token grant refused: {response.status_code}", pytrace=False)
    return str(response.json()["access_token"])


# --------------------------------------------------------------------------- load runs


@dataclass
class LoadRun:
    """One load-generator run against one server, with what it cost Redis and the server."""

    summary: dict[str, Any]
    redis_calls: dict[str, int]
    server_cpu_s: float
    queued: int
    load_before: str = ""
    redis_cpu_s: float = 0.0  # Redis's own CPU over the measured part
    redis_rewrite_cpu_s: float = 0.0  # its AOF rewrites that finished in the measured part
    machine_busy_s: float = 0.0  # every process on the machine (wrk, Redis, server, ...)
    machine_util: float = 0.0  # busy share of all cores over the measured part
    server_log: str = ""  # warning/error lines the server logged during a run with errors
    # The load's connections per server process, sampled once in the measured part.
    connections: ConnectionSpread = field(default_factory=ConnectionSpread)

    @property
    def rps(self) -> float:
        return float(self.summary["rps"])

    @property
    def ok_total(self) -> int:
        return int(self.summary["ok_total"])


def run_loadgen(
    url: str,
    *,
    ca: Path,
    body: Path,
    env: dict[str, str],
    auth: str | None,
    concurrency: int,
    duration: float,
    warmup: float,
    measure_from: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """One closed-loop load run from its own process; its JSON summary.

    wrk when installed (``BENCH_LOADGEN=httpx`` forces the Python generator): it leaves
    the servers the CPU a Python generator would take. ``measure_from`` is called after
    the warm-up (wrk) or before the run (the Python generator, whose ``ok_total`` then
    includes its warm-up), so Redis and CPU counters cover what ``ok_total`` counts.
    """
    if wrk.available() and os.environ.get("BENCH_LOADGEN", "wrk") == "wrk":
        with tempfile.TemporaryDirectory(prefix="tg-wrk-") as scratch:

            def run(seconds: float) -> dict[str, Any]:
                return wrk.run_wrk(
                    url,
                    body=body,
                    env=env,
                    auth=auth,
                    concurrency=concurrency,
                    duration=seconds,
                    script_dir=Path(scratch),
                )

            if warmup > 0:
                run(warmup)
            measure_from()
            return run(duration)
    measure_from()
    argv = [sys.executable, "-m", "tests.bench.loadgen", "--url", url, "--ca", str(ca)]
    argv += ["--concurrency", str(concurrency), "--duration", str(duration)]
    argv += ["--warmup", str(warmup), "--body-file", str(body)]
    child_env = dict(env)
    if auth is not None:
        child_env[AUTH_ENV] = f"Authorization: Bearer {auth}"
        argv += ["--header-env", AUTH_ENV]
    done = subprocess.run(
        argv,
        env=child_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=warmup + duration + 120,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"loadgen failed ({done.returncode}):\n{done.stderr[-3000:]}", pytrace=False)
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    summary["generator"] = "python"
    return summary


def aggregate(runs: list[LoadRun]) -> dict[str, float]:
    """Medians of rps and latencies; Redis calls and CPU per success over all runs."""
    ok = sum(run.ok_total for run in runs)
    calls = sum(sum(run.redis_calls.values()) for run in runs)
    cpu = sum(run.server_cpu_s for run in runs)
    return {
        "rps": round(statistics.median(run.rps for run in runs), 1),
        "p50_ms": round(statistics.median(float(run.summary["p50_ms"]) for run in runs), 2),
        "p99_ms": round(statistics.median(float(run.summary["p99_ms"]) for run in runs), 2),
        "redis_per_ok": round(calls / ok, 2) if ok else 0.0,
        "cpu_ms_per_ok": round(cpu * 1000 / ok, 3) if ok else 0.0,
        "redis_cpu_ms_per_ok": round(sum(r.redis_cpu_s for r in runs) * 1000 / ok, 3)
        if ok
        else 0.0,
        "redis_rewrite_cpu_ms_per_ok": round(
            sum(r.redis_rewrite_cpu_s for r in runs) * 1000 / ok, 3
        )
        if ok
        else 0.0,
        "machine_cpu_ms_per_ok": round(sum(r.machine_busy_s for r in runs) * 1000 / ok, 3)
        if ok
        else 0.0,
        "machine_util": round(statistics.median(r.machine_util for r in runs), 2),
    }


def top_commands(runs: list[LoadRun], n: int = 14) -> str:
    """The commands behind one success, most frequent first (e.g. ``lpush 1.00``)."""
    ok = sum(run.ok_total for run in runs)
    merged: dict[str, int] = {}
    for run in runs:
        for name, count in run.redis_calls.items():
            merged[name] = merged.get(name, 0) + count
    ranked = sorted(merged.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{name} {count / ok:.2f}" for name, count in ranked) if ok else "-"
