"""Drive a benchmark with wrk (C, epoll): a load generator that costs the machine little.

On a 2-core machine the Python load generator (``tests.bench.loadgen``) burns most of a
core of its own, which the servers under test then lack. wrk runs the same closed loop
(fixed connections, keep-alive, HTTPS) for a fraction of that CPU. Its Lua script sets
method, body and headers and prints one JSON line in the shape ``loadgen`` prints, so the
harness reads either. The bearer token reaches the script through the environment.

wrk does not verify the server certificate: fine for a loopback benchmark, where the CA
check is not what is measured (the Python generator does verify).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["SCRIPT", "available", "run_wrk"]

# wrk's done() sees the aggregate: requests, errors by kind (status = responses >= 400),
# and the latency histogram in microseconds.
SCRIPT = r"""
local body_file = os.getenv("BENCH_WRK_BODY")
local auth = os.getenv("BENCH_WRK_AUTH")
wrk.method = "POST"
if body_file then
  local fh = assert(io.open(body_file, "rb"))
  wrk.body = fh:read("*a")
  fh:close()
end
wrk.headers["Content-Type"] = "application/json"
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end

done = function(summary, latency, requests)
  local e = summary.errors
  local transport = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    '\n{"requests": %d, "status_errors": %d, "transport_errors": %d, "duration_us": %d,'
      .. ' "p50_us": %d, "p99_us": %d}\n',
    summary.requests, e.status, transport, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
"""


def available() -> str | None:
    """The wrk binary, or None when it is not installed."""
    return shutil.which("wrk")


def run_wrk(
    url: str,
    *,
    body: Path,
    env: dict[str, str],
    auth: str | None,
    concurrency: int,
    duration: float,
    script_dir: Path,
) -> dict[str, Any]:
    """One wrk run (one thread, ``concurrency`` connections); a ``loadgen``-shaped summary."""
    binary = available()
    if binary is None:  # pragma: no cover - the harness checks first
        raise RuntimeError("wrk is not installed")
    script = script_dir / "bench.lua"
    script.write_text(SCRIPT)
    child_env = {**env, "BENCH_WRK_BODY": str(body)}
    if auth is not None:
        child_env["BENCH_WRK_AUTH"] = f"Bearer {auth}"
    argv = [binary, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s"]
    argv += ["--timeout", "30s", "-s", str(script), url]
    done = subprocess.run(
        argv, env=child_env, capture_output=True, text=True, timeout=duration + 120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    requests = int(stats["requests"])
    errors = int(stats["status_errors"]) + int(stats["transport_errors"])
    ok = max(requests - errors, 0)
    seconds = int(stats["duration_us"]) / 1e6
    return {
        "requests": requests,
        "errors": errors,
        "rps": round(ok / seconds, 1) if seconds else 0.0,
        "p50_ms": round(int(stats["p50_us"]) / 1000, 2),
        "p99_ms": round(int(stats["p99_us"]) / 1000, 2),
        "status_counts": {"2xx/3xx": ok, ">=400": int(stats["status_errors"])},
        "ok_total": ok,
        "duration_s": round(seconds, 3),
        "generator": "wrk",
    }
