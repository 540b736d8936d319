"""`taskgate stats`: per task over a recent window - success rate, p50/p95 run time, failure
types - from the workers' per-minute metric counts in Redis (``gateway.stores.task_stats``)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer

from gateway.settings import OperatorSettings
from gateway.stores.task_stats import MAX_WINDOW, TaskStats, read_window
from security.config import load_settings
from security.errors import ConfigError

__all__ = ["stats_command"]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _line(name: str, stats: TaskStats) -> str:
    rate = "-" if stats.success_rate is None else f"{stats.success_rate:.1%}"
    failures = ", ".join(f"{k} {v}" for k, v in sorted(stats.failure_types.items())) or "-"
    return (
        f"{name:<32} {stats.succeeded:>8} {stats.failed:>7} {stats.retried:>8} "
        f"{stats.rejected:>8} {rate:>8} {_seconds(stats.runtime_p50):>9} "
        f"{_seconds(stats.runtime_p95):>9}  {failures}"
    )


def stats_command(
    window: Annotated[
        int, typer.Option(min=60, max=MAX_WINDOW, help="How far back, in seconds.")
    ] = 3600,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Per-task success rate, p50/p95 run time and failure types over a recent window."""
    try:
        settings = load_settings(OperatorSettings)
    except ConfigError as exc:
        typer.echo(f"taskgate stats: refused: {exc}", err=True)
        raise typer.Exit(2) from None

    async def read() -> dict[str, TaskStats]:
        client = settings.redis.async_client()
        try:
            return await read_window(client, time.time(), window)
        finally:
            await client.aclose()

    tasks = asyncio.run(read())
    if as_json:
        doc = {"window_seconds": window, "tasks": {k: v.public() for k, v in tasks.items()}}
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"last {window}s")
    typer.echo(
        f"{'task':<32} {'succeeded':>8} {'failed':>7} {'retried':>8} {'rejected':>8} "
        f"{'success':>8} {'p50':>9} {'p95':>9}  failure types"
    )
    for name, stats in tasks.items():
        typer.echo(_line(name, stats))
