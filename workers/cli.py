"""`taskgate worker`: a Celery worker over TLS."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from security.config import load_settings
from security.errors import ConfigError
from security.redis_check import warn_if_admin
from workers.settings import WorkerSettings

__all__ = ["worker_command"]


def worker_command(
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", help="Worker processes.")
    ] = None,
    queues: Annotated[
        str | None, typer.Option("--queues", "-Q", help="Comma-separated queues to consume.")
    ] = None,
    loglevel: Annotated[str | None, typer.Option("--loglevel", "-l", help="Log level.")] = None,
) -> None:
    """Run a Celery worker that consumes over mutual TLS and accepts no pickle."""
    overrides: dict[str, object] = {}
    if concurrency is not None:
        overrides["concurrency"] = concurrency
    if queues:
        overrides["queues"] = [q.strip() for q in queues.split(",") if q.strip()]
    if loglevel:
        overrides["loglevel"] = loglevel
    from workers.app import create_celery
    from workers.lifecycle_log import configure_worker_logging
    from workers.sentry_setup import init_sentry

    try:
        settings = load_settings(WorkerSettings, **overrides)
        app = create_celery(settings)
        redis_tls = settings.redis
    except ConfigError as exc:
        typer.echo(f"taskgate worker: refused: {exc}", err=True)
        raise typer.Exit(2) from None
    # Celery then sets up logging our way (JSON or text, its per-task lines replaced).
    chosen = configure_worker_logging(settings.log_format, settings.loglevel)
    dsn = settings.sentry_dsn
    try:
        init_sentry(dsn.get_secret_value() if dsn is not None else None)  # no DSN: not loaded
    except ConfigError as exc:
        typer.echo(f"taskgate worker: refused: {exc}", err=True)
        raise typer.Exit(2) from None
    with redis_tls.client(socket_timeout=5, socket_connect_timeout=5) as client:
        warn_if_admin(client, "the worker")
    app.worker_main(
        [
            # JSON lines only: no start-up banner (printed, not logged) on the same stream.
            *(["--quiet"] if chosen == "json" else []),
            "worker",
            f"--loglevel={settings.loglevel}",
            f"--concurrency={settings.concurrency}",
            f"--queues={','.join(settings.queues)}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
            # Worker heartbeats are events too: Flower needs them to show workers online.
            *([] if settings.task_events else ["--without-heartbeat"]),
            f"--hostname=taskgate@%h-{os.getpid()}",
        ]
    )
