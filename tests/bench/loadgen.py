"""A closed-loop HTTPS load generator: fixed concurrency, keep-alive HTTP/1.1, fixed duration.

Run as its own process so the server under test does not share an event loop (or a
GIL) with the client::

    python -m tests.bench.loadgen --url https://localhost:8443/submit --ca ca.pem \\
        --concurrency 64 --warmup 2 --duration 10 --body-file payload.json \\
        --header-env BENCH_AUTH

Prints one JSON document: ``requests`` and ``errors`` counted in the measured window
(after the warm-up), ``rps`` (2xx per second), ``p50_ms``/``p99_ms`` of 2xx latencies,
``status_counts`` and ``ok_total`` (2xx including the warm-up, for per-request Redis
command counts). Header values and bodies are never printed: a header given with
``--header-env NAME`` is read from the environment so a bearer token is not in argv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["LoadResult", "main", "run_load"]

_TRANSPORT_ERROR = "transport-error"


@dataclass
class LoadResult:
    """What one run measured (no request or response content)."""

    duration: float
    latencies_ms: list[float] = field(default_factory=list)
    status_counts: Counter[str] = field(default_factory=Counter)
    ok_total: int = 0

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def requests(self) -> int:
        return sum(self.status_counts.values())

    def summary(self) -> dict[str, object]:
        ordered = sorted(self.latencies_ms)
        return {
            "requests": self.requests,
            "errors": self.requests - self.ok,
            "rps": round(self.ok / self.duration, 1) if self.duration else 0.0,
            "p50_ms": round(_percentile(ordered, 50), 2),
            "p99_ms": round(_percentile(ordered, 99), 2),
            "status_counts": dict(sorted(self.status_counts.items())),
            "ok_total": self.ok_total,
            "duration_s": round(self.duration, 3),
        }


def _percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, round(pct / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


async def run_load(
    url: str,
    *,
    method: str = "POST",
    body: bytes,
    headers: dict[str, str],
    ca_file: Path,
    concurrency: int,
    duration: float,
    warmup: float,
) -> LoadResult:
    """Keep ``concurrency`` requests in flight for ``warmup + duration`` seconds."""
    context = ssl.create_default_context(cafile=str(ca_file))
    result = LoadResult(duration=duration)
    send_headers = {"Content-Type": "application/json", **headers}
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def one_connection() -> None:
        # One client per connection: httpcore's shared pool costs O(connections) per
        # request, which made the generator, not the server, the bottleneck at 64.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            verify=context, limits=limits, timeout=30.0, http1=True, http2=False
        ) as client:
            while True:
                began = time.perf_counter()
                if began >= stop_at:
                    return
                try:
                    response = await client.request(
                        method, url, content=body or None, headers=send_headers
                    )
                    await response.aread()
                    status = str(response.status_code)
                    ok = 200 <= response.status_code < 300
                except httpx.HTTPError:
                    status, ok = _TRANSPORT_ERROR, False
                ended = time.perf_counter()
                result.ok_total += ok
                # Counted when it completes inside the window (a closed-loop convention).
                if measure_from <= ended <= stop_at:
                    result.status_counts[status] += 1
                    if ok:
                        result.latencies_ms.append((ended - began) * 1000)

    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    return result


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise SystemExit("loadgen: a header must look like 'Name: value'")
    return name.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True, type=Path, help="CA file that signed the server")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--method", default="POST", choices=["GET", "POST"])
    parser.add_argument("--body-file", type=Path, help="request body (JSON)")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument(
        "--header-env", action="append", default=[], help="env var holding 'Name: value'"
    )
    args = parser.parse_args(argv)
    headers = dict(_parse_header(h) for h in args.header)
    for name in args.header_env:
        if name not in os.environ:
            raise SystemExit(f"loadgen: environment variable {name} is not set")
        key, value = _parse_header(os.environ[name])
        headers[key] = value
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        runner = asyncio.run
    else:
        runner = uvloop.run
    result = runner(
        run_load(
            args.url,
            method=args.method,
            body=args.body_file.read_bytes() if args.body_file else b"",
            headers=headers,
            ca_file=args.ca,
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
        )
    )
    sys.stdout.write(json.dumps(result.summary()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
